{%- set release = salt['environ.get']('LEAPFROG_LAB_RELEASE', '2024.1') %}
nova:
  compute: {enabled: true, version: "{{ release }}", virt_driver: fake}
