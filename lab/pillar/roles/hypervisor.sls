{#- LEAPFROG_LAB_DIR is the lab's private run directory (set by lab/): its libvirtd socket. #}
{%- from 'lab_dir.jinja' import run %}
libvirt:
  server: {enabled: true}
leapfrog:
  libvirt:
    uri: "qemu:///system?socket={{ run }}/libvirt/sock/libvirt-sock"
  backups:
    dir: {{ run }}/backups
  vms:
    shutdown_timeout: 30
