{#- The lab's deployment of this node's OpenStack services (lab/salt/_states/lab_openstack.py):
      salt ctl01 state.apply lab_openstack.node pillar='{"leapfrog": {"release": "2025.1", "services": "running"}}'
    leapfrog:services is running (default) or stopped; leapfrog:ffu (default false) sets nova's
    [workarounds] disable_compute_service_check_for_ffu, leapfrog:compute_rpc (default null)
    its [upgrade_levels] compute; leapfrog:reload (a list of service kinds) reloads those
    running (HUP or restart: cinder's RPC pins once every cinder service runs the release).
    A rehearsal's throwaway controller (leapfrog's dress rehearsal) also gets leapfrog:db_suffix,
    leapfrog:transport_vhost and leapfrog:address: its services on the clones, that vhost, that
    address (lab/rehearsal_node.py). #}
{%- set lf = pillar.get('leapfrog', {}) %}
{%- if lf.get('release') %}
lab_openstack_{{ grains['id'] }}:
  lab_openstack.deployed:
    - name: {{ grains['id'] }}
    - release: "{{ lf['release'] }}"
    - services: {{ lf.get('services', 'running') }}
    - ffu: {{ lf.get('ffu', False) | json }}
    - compute_rpc: {{ lf.get('compute_rpc') | json }}
{%-   if lf.get('db_suffix') %}
    - throwaway: {{ {'address': lf.get('address'), 'suffix': lf['db_suffix'],
                     'vhost': lf.get('transport_vhost')} | json }}
{%-   endif %}
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
