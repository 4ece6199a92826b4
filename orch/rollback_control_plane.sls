{#- Roll the control plane back to where an upgrade run started, from that run's backups.

      salt-run state.orch orch.rollback_control_plane pillar='{"cluster": "prod1", "upgrade_run": "RUN"}'
      salt-run state.orch orch.rollback_control_plane pillar='{"cluster": "prod1", "upgrade_run": "RUN"}' test=True
      salt-run state.orch orch.rollback_control_plane pillar='{"cluster": "prod1", "upgrade_run": "RUN", "run": "RB"}'  # resume

    Works from any point after the upgrade's verified DB backup. Stages (the API is down from
    the first stop until the first ready): every DB backup and every disk backup it will use
    verified on its own minion (sha256, decompression) before anything stops -> drain every controller and stop its VM -> the
    computes a fast-forward run stopped: stopped again at the release they ran -> restore
    every DB from the run's backup once no session uses it (after 60 s the sessions left are
    killed and named in the result; checksums compared with the manifest) -> per controller
    rebuilt or stopped for its rebuild: accept its old minion key again and restore its disk
    from the backup taken before the rebuild; every controller's (old) VM started; its
    services come back with the VM -> per controller: ready in haproxy once its health checks pass
    -> computes a fast-forward run stopped: started again at the release they ran -> verify
    through the VIP. The rollback is a run of its own (journal, lock, resume).
    Refused when a later upgrade run finished after upgrade_run (it built on it), unless
    force is true.
    Pillar: cluster, upgrade_run (the run to undo), run (resume this rollback), force,
    testing. #}
{%- from "orch/run.jinja" import run_states with context %}
{%- set cluster = pillar.get('cluster') %}
{%- set overrides = {'leapfrog': {'clusters': {cluster: {'testing': pillar.get('testing') or {}}}}} if cluster else {} %}
{%- set sources = salt['saltutil.runner']('leapfrog.rollback_sources', cluster=cluster, upgrade_run=pillar.get('upgrade_run'), force=pillar.get('force', False)) %}
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
{#- every backup it will use verified on its minion first: nothing stops before #}
{%- for mid, backup in sources['db_backups'] | dictsort %}
{%-   do steps.append(['verify_db_backup_' ~ mid, 'leapfrog.call', {'func': 'mysql_backup.verify', 'target': 'L@' ~ mid, 'kwargs': {'backup_id': backup}, 'expect': {'valid': True}}]) %}
{%- endfor %}
{%- for node, backup in sources['disks'] | dictsort %}
{%-   do steps.append([node ~ '_verify_disk_backup', 'leapfrog.call', {'func': 'vm_backup.verify', 'target': 'L@' ~ config['vms']['nodes'][node]['hypervisor'], 'kwargs': {'backup': backup}}]) %}
{%- endfor %}
{%- for node in controllers %}
{%-   set vm = config['vms']['nodes'][node] %}
{%-   do steps.append([node ~ '_drain', 'leapfrog.call', {'func': 'haproxy_admin.drain', 'role': 'haproxy', 'kwargs': {'server': node, 'on_timeout': 'maint', 'allow_last': True}}]) %}
{%-   do steps.append([node ~ '_stop', 'leapfrog.call', {'func': 'vm_backup.stop', 'target': 'L@' ~ vm['hypervisor'], 'kwargs': {'domain': vm['domain']}}]) %}
{%- endfor %}
{#- computes a fast-forward stopped: kept stopped, at the release they ran, until the
    databases and the controllers are back #}
{%- set compute_sls = config['data_plane']['redeploy_sls'] %}
{%- for host, release in sources['computes'] | dictsort %}
{%-   do steps.append([host ~ '_stop', 'leapfrog.call', {'target': 'L@' ~ host, 'func': 'state.apply', 'kwargs': {'mods': compute_sls, 'pillar': {'leapfrog': {'release': release, 'services': 'stopped'}}}}]) %}
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
{#- ... then started (their service rows came back with the databases) #}
{%- for host, release in sources['computes'] | dictsort %}
{%-   do steps.append([host ~ '_restart', 'leapfrog.call', {'target': 'L@' ~ host, 'func': 'state.apply', 'kwargs': {'mods': compute_sls, 'pillar': {'leapfrog': {'release': release, 'services': 'running'}}}}]) %}
{%- endfor %}
{%- do steps.append(['verify', 'leapfrog.call', {'func': 'openstack_verify.wait', 'role': 'controller', 'first': True, 'kwargs': {'timeout': 300}}]) %}
{%- set names = steps | map(attribute=0) | list %}

{%- if opts.get('test') %}
{%- set shown = salt['saltutil.runner']('leapfrog.begin', cluster=cluster, run=run, steps=names, pillar=overrides, test=True, orch='orch.rollback_control_plane', target=sources['upgrade_run']) %}

plan:
  test.show_notification:
    - text: {{ ('roll back run ' ~ sources['upgrade_run'] ~ ' of ' ~ cluster ~ ': DB backups ' ~ (sources['db_backups'] | json) ~ ', disks ' ~ (sources['disks'] | json) ~ '\n' ~ shown.get('text', '')) | json }}
{%- else %}
{{ run_states(cluster, run, steps, overrides, 'orch.rollback_control_plane', probe=False, report=False, target=sources['upgrade_run']) }}
{%- endif %}
{%- endif %}
