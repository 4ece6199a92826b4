{%- set release = salt['environ.get']('LEAPFROG_LAB_RELEASE', '2024.1') %}
keystone:
  server: {enabled: true, version: "{{ release }}"}
glance:
  server: {enabled: true, version: "{{ release }}"}
placement:
  server: {enabled: true, version: "{{ release }}"}
nova:
  controller: {enabled: true, version: "{{ release }}"}
