{#- LEAPFROG_LAB_DIR is the lab's private run directory (set by lab/): its libvirtd socket. #}
{%- set run = salt['environ.get']('LEAPFROG_LAB_DIR', '/var/lib/leapfrog-lab') %}
libvirt:
  server: {enabled: true}
leapfrog:
  libvirt:
    uri: "qemu:///system?socket={{ run }}/libvirt/sock/libvirt-sock"
  backups:
    dir: {{ run }}/backups
  vms:
    shutdown_timeout: 30
