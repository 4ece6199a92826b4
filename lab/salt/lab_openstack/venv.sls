{#- The lab's "install a release's code ahead" (data_plane:prestage_sls): the release's venv
    built on this node, no service touched (lab/salt/_states/lab_openstack.py):
      salt cmp01 state.apply lab_openstack.venv pillar='{"leapfrog": {"release": "2025.1"}}' #}
{%- set release = pillar.get('leapfrog', {}).get('release') %}
{%- if release %}
lab_openstack_venv_{{ release }}:
  lab_openstack.venv_ready:
    - release: "{{ release }}"
{%- else %}
lab_openstack_venv_needs_release:
  test.fail_without_changes:
    - name: leapfrog:release
    - comment: "lab_openstack.venv needs the pillar key leapfrog:release (the OpenStack release whose code to install, e.g. 2025.1)"
{%- endif %}
