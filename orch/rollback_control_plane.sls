{#- Roll the control plane back to where an upgrade run started, from that run's backups.

      salt-run state.orch orch.rollback_control_plane pillar='{"cluster": "prod1", "upgrade_run": "RUN"}'
      salt-run state.orch orch.rollback_control_plane pillar='{"cluster": "prod1", "upgrade_run": "RUN"}' test=True
      salt-run state.orch orch.rollback_control_plane pillar='{"cluster": "prod1", "upgrade_run": "RUN", "run": "RB"}'  # resume

    Works from any point after the upgrade's verified DB backup. Stages (the API is down from
    the first stop until the first ready): drain every controller and stop its VM -> restore
    every DB from the run's backup once no session uses it (after 60 s the sessions left are
    killed and named in the result; checksums compared with the manifest) -> per controller
    rebuilt or stopped for its rebuild: accept its old minion key again and restore its disk
    from the backup taken before the rebuild; every controller's (old) VM started; its
    services come back with the VM -> per controller: ready in haproxy once its health checks pass
    -> verify through the VIP. The rollback is a run of its own (journal, lock, resume).
    Pillar: cluster, upgrade_run (the run to undo), run (resume this rollback), testing. #}
{%- set cluster = pillar.get('cluster') %}
{%- set overrides = {'leapfrog': {'clusters': {cluster: {'testing': pillar.get('testing') or {}}}}} if cluster else {} %}
{%- set sources = salt['saltutil.runner']('leapfrog.rollback_sources', cluster=cluster, upgrade_run=pillar.get('upgrade_run')) %}
{%- if sources.get('retcode') %}

refused:
  test.fail_without_changes:
    - comment: {{ sources.get('error', sources) | json }}
{%- else %}
{%- set cluster = sources['cluster'] %}
{%- set config = salt['saltutil.runner']('leapfrog.cluster_config', cluster=cluster) %}
{%- set run = salt['saltutil.runner']('leapfrog.run_id', run=pillar.get('run')) %}
{%- set controllers = config['controllers'] %}
{%- set steps = [] %}
{%- for node in controllers %}
{%-   set vm = config['vms']['nodes'][node] %}
{%-   do steps.append([node ~ '_drain', 'leapfrog.call', {'func': 'haproxy_admin.drain', 'role': 'haproxy', 'kwargs': {'server': node, 'on_timeout': 'maint'}}]) %}
{%-   do steps.append([node ~ '_stop', 'leapfrog.call', {'func': 'vm_backup.stop', 'target': 'L@' ~ vm['hypervisor'], 'kwargs': {'domain': vm['domain']}}]) %}
{%- endfor %}
{%- for mid, backup in sources['db_backups'] | dictsort %}
{%-   do steps.append(['restore_dbs_' ~ mid, 'leapfrog.call', {'func': 'mysql_backup.restore', 'target': 'L@' ~ mid, 'kwargs': {'backup_id': backup, 'force': True, 'clients_timeout': 60, 'kill_clients': True}, 'expect': {'matches_manifest': True}}]) %}
{%- endfor %}
{%- for node in controllers %}
{%-   set vm = config['vms']['nodes'][node] %}
{%-   set on_vm = {'target': 'L@' ~ vm['hypervisor']} %}
{%-   if node in sources['disks'] %}
{%-     if node in sources['keys'] %}
{%-       do steps.append([node ~ '_restore_key', 'leapfrog.restore_node_key', {'node': node, 'backup': sources['disks'][node]}]) %}
{%-     endif %}
{%-     do steps.append([node ~ '_restore_disk', 'leapfrog.call', dict(on_vm, func='vm_backup.restore', kwargs={'domain': vm['domain'], 'backup': sources['disks'][node], 'stop': True, 'start': True})]) %}
{%-   else %}
{%-     do steps.append([node ~ '_start', 'leapfrog.call', dict(on_vm, func='vm_backup.start', kwargs={'domain': vm['domain']})]) %}
{%-   endif %}
{%- endfor %}
{#- ready waits (up to 300 s) until haproxy's own health checks see the old VM's services UP #}
{%- for node in controllers %}
{%-   do steps.append([node ~ '_ready', 'leapfrog.call', {'func': 'haproxy_admin.ready', 'role': 'haproxy', 'kwargs': {'server': node, 'timeout': 300}}]) %}
{%- endfor %}
{%- do steps.append(['verify', 'leapfrog.call', {'func': 'openstack_verify.wait', 'role': 'controller', 'first': True, 'kwargs': {'timeout': 300}}]) %}
{%- set names = steps | map(attribute=0) | list %}

{%- if opts.get('test') %}
{%- set shown = salt['saltutil.runner']('leapfrog.begin', cluster=cluster, run=run, steps=names, pillar=overrides, test=True) %}

plan:
  test.show_notification:
    - text: {{ ('roll back run ' ~ sources['upgrade_run'] ~ ' of ' ~ cluster ~ ': DB backups ' ~ (sources['db_backups'] | json) ~ ', disks ' ~ (sources['disks'] | json) ~ '\n' ~ shown.get('text', '')) | json }}
{%- else %}

begin:
  salt.runner:
    - name: leapfrog.begin
    - cluster: {{ cluster }}
    - run: {{ run }}
    - steps: {{ names | json }}
    - orch: orch.rollback_control_plane
    - pillar: {{ overrides | json }}
{%- for name, function, kwargs in steps %}

{{ name }}:
  salt.runner:
    - name: leapfrog.step
    - step: {{ name }}
    - function: {{ function }}
    - function_kwargs: {{ dict(kwargs, cluster=cluster) | json }}
    - cluster: {{ cluster }}
    - run: {{ run }}
    - pillar: {{ overrides | json }}
    - require:
      - salt: {{ 'begin' if loop.first else loop.previtem[0] }}
{%- endfor %}

finish:
  salt.runner:
    - name: leapfrog.finish
    - cluster: {{ cluster }}
    - run: {{ run }}
    - pillar: {{ overrides | json }}
    - require:
      - salt: {{ names[-1] }}
{%- endif %}
{%- endif %}
