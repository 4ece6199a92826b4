{#- The lab's deployment of this node's OpenStack services (lab/salt/_states/lab_openstack.py):
      salt ctl01 state.apply lab_openstack.node pillar='{"leapfrog": {"release": "2025.1", "services": "running"}}'
    leapfrog:services is running (default) or stopped; leapfrog:ffu (default false) sets nova's
    [workarounds] disable_compute_service_check_for_ffu, leapfrog:compute_rpc (default null)
    its [upgrade_levels] compute; leapfrog:reload (a list of service kinds) reloads those
    running (HUP or restart: cinder's RPC pins once every cinder service runs the release). #}
{%- set lf = pillar.get('leapfrog', {}) %}
{%- if lf.get('release') %}
lab_openstack_{{ grains['id'] }}:
  lab_openstack.deployed:
    - name: {{ grains['id'] }}
    - release: "{{ lf['release'] }}"
    - services: {{ lf.get('services', 'running') }}
    - ffu: {{ lf.get('ffu', False) | json }}
    - compute_rpc: {{ lf.get('compute_rpc') | json }}
{%-   if lf.get('reload') %}
lab_openstack_reload_{{ grains['id'] }}:
  lab_openstack.reloaded:
    - name: {{ grains['id'] }}
    - kinds: {{ lf['reload'] | json }}
    - require:
      - lab_openstack: lab_openstack_{{ grains['id'] }}
{%-   endif %}
{%- else %}
lab_openstack_needs_release:
  test.fail_without_changes:
    - name: leapfrog:release
    - comment: "lab_openstack.node needs the pillar key leapfrog:release (the OpenStack release to deploy, e.g. 2025.1)"
{%- endif %}
