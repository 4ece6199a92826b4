{#- Upgrade the control plane: one rolling hop (API up), or fast-forward straight to the
    target (API closed meanwhile, computes switched too). Strategy: pillar
    releases:strategy, or strategy= here.

      salt-run state.orch orch.upgrade_control_plane pillar='{"cluster": "prod1", "to": "2025.1"}'
      salt-run state.orch orch.upgrade_control_plane pillar='{"cluster": "prod1", "to": "2026.1", "strategy": "fast_forward"}'
      salt-run state.orch orch.upgrade_control_plane pillar='{"cluster": "prod1"}' test=True   # plan
      salt-run state.orch orch.upgrade_control_plane pillar='{"cluster": "prod1", "run": "RUN"}'  # resume
      salt-run leapfrog.approve cluster=prod1 run=RUN        # from another shell, at the gate

    Both: precheck (every problem collected) -> plan -> DB revisions before -> back up every
    DB (verified) -> approval gate -> ... -> finish (nova online data migrations,
    keystone/glance contract) -> verify through the VIP -> revisions after -> report.
    rolling, one hop: per controller: drain all its haproxy backends, stop its VM and back
    up its disk (offline, verified), rebuild the VM on the new OS image with a pre-accepted
    key, redeploy (vms:redeploy_sls with pillar leapfrog:release=<to>,
    leapfrog:services=stopped), on the first controller the DB syncs of the hop (nova staged
    sync, keystone/glance expand+migrate, placement), start (services=running), check its own
    endpoints, ready in haproxy.
    fast_forward, every hop at once: nova-compute stopped on every compute (disabled with a
    reason; servers keep running) -> every controller's disk backed up, rebuilt, redeployed
    stopped (leapfrog:ffu=true: nova's [workarounds] disable_compute_service_check_for_ffu;
    the API is down from the last one) -> nova's staged syncs through every release of the
    path (online migrations per hop), keystone/glance expand+migrate, placement -> every
    controller started, UP in haproxy -> every compute switched to <to>
    (leapfrog.switch_compute) -> the workaround removed, one controller at a time.
    A failure stops the run: re-run with the run id to resume, or roll back with
    orch.rollback_control_plane and the same run id (it restarts the stopped computes at
    their old release too).
    Pillar: cluster, to (default releases:target; rolling: one hop per run), strategy, run
    (resume), testing (fail_at / stall_at: test only). #}
{%- from "orch/run.jinja" import run_states with context %}
{%- set cluster = pillar.get('cluster') %}
{%- set overrides = {'leapfrog': {'clusters': {cluster: {'testing': pillar.get('testing') or {}}}}} if cluster else {} %}
{%- set info = salt['saltutil.runner']('leapfrog.validate', cluster=cluster) %}
{%- set decided = salt['saltutil.runner']('leapfrog.plan', cluster=cluster, to=pillar.get('to'), strategy=pillar.get('strategy'), run=pillar.get('run')) if info.get('valid') else {} %}
{%- if not info.get('valid') or not decided.get('possible') %}

refused:
  test.fail_without_changes:
    - comment: {{ ((info.get('problems') or []) + (decided.get('problems') or []) + ([decided['text']] if decided.get('text') else [])) | join('\n') | json }}
{%- elif not decided['hops'] or (decided['strategy'] == 'rolling' and decided['hops'] | length != 1) %}

refused:
  test.fail_without_changes:
    - comment: {{ ('nothing to do: the control plane already runs ' ~ decided.get('control') if not decided['hops'] else 'orch.upgrade_control_plane runs one rolling hop per run; the plan asks for ' ~ (decided['hops'] | length) ~ ' hops: name the hop with to=<release>, or choose strategy=fast_forward') | json }}
{%- else %}
{%- set cluster = info['cluster'] %}
{%- set strategy = decided['strategy'] %}
{%- set config = salt['saltutil.runner']('leapfrog.cluster_config', cluster=cluster) %}
{%- set path = [decided['hops'][0][0]] + decided['hops'] | map(attribute=1) | list %}
{%- set frm, to = path[0], path[-1] %}
{%- set ffu = strategy == 'fast_forward' %}
{%- set run = salt['saltutil.runner']('leapfrog.run_id', run=pillar.get('run')) %}
{%- set controllers = config['controllers'] %}
{%- set computes = decided['computes'] | dictsort | map(attribute=0) | list %}
{%- set sls = config['vms']['redeploy_sls'] %}
{%- set db_call = {'role': 'controller', 'first': True} %}

{#- name, runner function, its kwargs: the run in order. #}
{%- set steps = [
  ['precheck', 'leapfrog.precheck', {'to': to, 'strategy': strategy}],
  ['revisions_before', 'leapfrog.revisions', {'release': to}],
  ['backup_dbs', 'leapfrog.call', {'func': 'mysql_backup.backup', 'role': 'database', 'kwargs': {'label': run}}],
  ['verify_db_backup', 'leapfrog.call', {'func': 'mysql_backup.verify', 'role': 'database', 'kwargs': {'label': run}, 'expect': {'valid': True}}],
  ['approval', None, {}],
] %}
{#- fast_forward: nova-compute stopped everywhere first (disabled with a reason; servers run on) #}
{%- set reason = 'leapfrog: fast-forward to ' ~ to %}
{%- if ffu %}
{%-   for host in computes %}
{%-     do steps.append([host ~ '_stop', 'leapfrog.stop_compute', {'host': host, 'release': decided['computes'][host], 'reason': reason}]) %}
{%-   endfor %}
{%- endif %}
{#- the redeploy SLS's pillar: the target release, services stopped or running, whether
    nova runs with [workarounds] disable_compute_service_check_for_ffu, and its
    [upgrade_levels] compute: auto while computes may be older (orch.upgrade_data_plane
    lifts it once they all run the release; fast_forward once they are switched) #}
{%- set deployed = {
  'stopped': {'leapfrog': {'release': to, 'services': 'stopped', 'ffu': ffu, 'compute_rpc': 'auto'}},
  'running': {'leapfrog': {'release': to, 'services': 'running', 'ffu': ffu, 'compute_rpc': 'auto'}},
  'ffu_off': {'leapfrog': {'release': to, 'services': 'running', 'ffu': False, 'compute_rpc': None}},
} %}
{%- macro dbsyncs() %}
{%-   do steps.append(['dbsync_nova', 'leapfrog.call', dict(db_call, func='nova_manage.staged_sync', kwargs={'path': path, 'online': ffu})]) %}
{%-   for service, stages in [['keystone', ['expand', 'migrate']], ['glance', ['expand', 'migrate']], ['placement', ['sync']]] %}
{%-     for stage in stages %}
{%-       do steps.append(['dbsync_' ~ service ~ '_' ~ stage, 'leapfrog.call', dict(db_call, func='openstack_db.sync', kwargs={'service': service, 'stage': stage, 'release': to})]) %}
{%-     endfor %}
{%-   endfor %}
{%- endmacro %}
{#- rolling: each controller out of haproxy, rebuilt, synced (first), started, back in.
    fast_forward: every controller rebuilt and deployed stopped (the API goes down with the
    last one), the staged syncs, then every controller started with the FFU workaround. #}
{%- for node in controllers %}
{%-   set vm = config['vms']['nodes'][node] %}
{%-   set on_node = {'target': 'L@' ~ node, 'func': 'state.apply'} %}
{%-   if not ffu %}
{%-     do steps.append([node ~ '_drain', 'leapfrog.call', {'func': 'haproxy_admin.drain', 'role': 'haproxy', 'kwargs': {'server': node, 'allow_last': controllers | length == 1}}]) %}
{%-   endif %}
{%-   do steps.append([node ~ '_backup_disk', 'leapfrog.call', {'target': 'L@' ~ vm['hypervisor'], 'func': 'vm_backup.backup', 'kwargs': {'domain': vm['domain'], 'tag': run, 'restart': False}}]) %}
{%-   do steps.append([node ~ '_rebuild', 'leapfrog.rebuild_node', {'node': node, 'backup': 'latest'}]) %}
{%-   do steps.append([node ~ '_redeploy', 'leapfrog.call', dict(on_node, kwargs={'mods': sls, 'pillar': deployed['stopped']})]) %}
{%-   if not ffu %}
{%-     if loop.first %}{{ dbsyncs() }}{% endif %}
{%-     do steps.append([node ~ '_start', 'leapfrog.call', dict(on_node, kwargs={'mods': sls, 'pillar': deployed['running']})]) %}
{%-     do steps.append([node ~ '_check', 'leapfrog.call', {'func': 'haproxy_admin.check', 'role': 'haproxy', 'kwargs': {'server': node}}]) %}
{%-     do steps.append([node ~ '_ready', 'leapfrog.call', {'func': 'haproxy_admin.ready', 'role': 'haproxy', 'kwargs': {'server': node}}]) %}
{%-   endif %}
{%- endfor %}
{%- if ffu %}
{{- dbsyncs() }}
{#-   haproxy's health checks bring each controller back as its services come up #}
{%-   for node in controllers %}
{%-     set on_node = {'target': 'L@' ~ node, 'func': 'state.apply'} %}
{%-     do steps.append([node ~ '_start', 'leapfrog.call', dict(on_node, kwargs={'mods': sls, 'pillar': deployed['running']})]) %}
{%-     do steps.append([node ~ '_ready', 'leapfrog.call', {'func': 'haproxy_admin.ready', 'role': 'haproxy', 'kwargs': {'server': node, 'timeout': 120}}]) %}
{%-   endfor %}
{%-   for host in computes %}
{%-     do steps.append([host ~ '_switch', 'leapfrog.switch_compute', {'host': host, 'release': to, 'servers': 'force', 'reason': reason}]) %}
{%-   endfor %}
{#-   the workaround off: controllers restarted one at a time, out of haproxy meanwhile
      (a cloud's only controller stays in: its keystone serves nova's restart) #}
{%-   set drain = controllers | length > 1 %}
{%-   for node in controllers %}
{%-     set on_node = {'target': 'L@' ~ node, 'func': 'state.apply'} %}
{%-     if drain %}
{%-       do steps.append([node ~ '_ffu_off_drain', 'leapfrog.call', {'func': 'haproxy_admin.drain', 'role': 'haproxy', 'kwargs': {'server': node}}]) %}
{%-     endif %}
{%-     do steps.append([node ~ '_ffu_off', 'leapfrog.call', dict(on_node, kwargs={'mods': sls, 'pillar': deployed['ffu_off']})]) %}
{%-     do steps.append([node ~ '_ffu_off_ready', 'leapfrog.call', {'func': 'haproxy_admin.ready', 'role': 'haproxy', 'kwargs': {'server': node}}]) %}
{%-   endfor %}
{%- endif %}
{%- do steps.append(['finish_nova', 'leapfrog.call', dict(db_call, func='nova_manage.online_data_migrations', kwargs={'release': to})]) %}
{%- for service in ['keystone', 'glance'] %}
{%-   do steps.append(['finish_' ~ service, 'leapfrog.call', dict(db_call, func='openstack_db.sync', kwargs={'service': service, 'stage': 'contract', 'release': to})]) %}
{%- endfor %}
{%- do steps.append(['verify', 'leapfrog.call', dict(db_call, func='openstack_verify.wait', kwargs={'timeout': 300})]) %}
{%- do steps.append(['revisions_after', 'leapfrog.revisions', {'release': to}]) %}
{%- do steps.append(['nodes_after', 'leapfrog.call', {'func': 'leapfrog.node_info', 'role': 'controller'}]) %}
{%- if ffu %}
{%-   do steps.append(['computes_after', 'leapfrog.call', dict(db_call, func='nova_service.list')]) %}
{%- endif %}
{%- set names = steps | map(attribute=0) | list %}

{%- if opts.get('test') %}
{%- set shown = salt['saltutil.runner']('leapfrog.begin', cluster=cluster, run=run, steps=names, pillar=overrides, test=True, orch='orch.upgrade_control_plane', target=to) %}

plan:
  test.show_notification:
    - text: {{ (decided['text'] ~ '\n\nwhy: ' ~ decided['why'] ~ '\n\nsteps of run ' ~ shown.get('text', '')) | json }}
{%- else %}
{%- set kept = {} %}
{%- for key in ['strategy', 'why', 'control', 'releases_from', 'hops', 'computes', 'text'] %}
{%-   do kept.update({key: decided.get(key)}) %}
{%- endfor %}
{{ run_states(cluster, run, steps, overrides, 'orch.upgrade_control_plane', rollback='orch.rollback_control_plane', plan=kept, target=to) }}
{%- endif %}
{%- endif %}
