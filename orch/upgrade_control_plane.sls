{#- Upgrade the control plane, one hop, controllers one at a time (strategy rolling).

      salt-run state.orch orch.upgrade_control_plane pillar='{"cluster": "prod1"}'
      salt-run state.orch orch.upgrade_control_plane pillar='{"cluster": "prod1", "to": "2025.1"}'
      salt-run state.orch orch.upgrade_control_plane pillar='{"cluster": "prod1"}' test=True   # plan
      salt-run state.orch orch.upgrade_control_plane pillar='{"cluster": "prod1", "run": "RUN"}'  # resume
      salt-run leapfrog.approve cluster=prod1 run=RUN        # from another shell, at the gate

    Stages: precheck (every problem collected) -> plan -> DB revisions before -> back up every
    DB (verified) -> approval gate -> per controller: drain all its haproxy backends, stop its
    VM and back up its disk (offline, verified), rebuild the VM on the new OS image with a
    pre-accepted key, redeploy (vms:redeploy_sls with pillar leapfrog:release=<to>,
    leapfrog:services=stopped), on the first controller the DB syncs of the hop (nova staged
    sync, keystone/glance expand+migrate, placement), start (the same SLS with
    services=running), check its own endpoints, ready in haproxy -> finish (nova online data
    migrations, keystone/glance contract) -> verify through the VIP -> revisions after ->
    report. A failure stops the run: re-run with the run id to resume, or roll back with
    orch.rollback_control_plane and the same run id.
    Pillar: cluster, to (default: the next hop the computes allow is refused unless it is
    releases:target; one hop per run), run (resume), testing (fail_at / stall_at: test only). #}
{%- set cluster = pillar.get('cluster') %}
{%- set overrides = {'leapfrog': {'clusters': {cluster: {'testing': pillar.get('testing') or {}}}}} if cluster else {} %}
{%- set info = salt['saltutil.runner']('leapfrog.validate', cluster=cluster) %}
{%- set decided = salt['saltutil.runner']('leapfrog.plan', cluster=cluster, to=pillar.get('to')) if info.get('valid') else {} %}
{%- if not info.get('valid') or not decided.get('possible') %}

refused:
  test.fail_without_changes:
    - comment: {{ ((info.get('problems') or []) + (decided.get('problems') or []) + ([decided['text']] if decided.get('text') else [])) | join('\n') | json }}
{%- elif decided['strategy'] != 'rolling' or decided['hops'] | length != 1 %}

refused:
  test.fail_without_changes:
    - comment: {{ ('orch.upgrade_control_plane runs one rolling hop per run; the plan asks for ' ~ decided['strategy'] ~ ' over ' ~ (decided['hops'] | length) ~ ' hop(s): name the hop with to=<release> (fast_forward is not written yet)') | json }}
{%- else %}
{%- set cluster = info['cluster'] %}
{%- set config = salt['saltutil.runner']('leapfrog.cluster_config', cluster=cluster) %}
{%- set frm, to = decided['hops'][0] %}
{%- set run = salt['saltutil.runner']('leapfrog.run_id', run=pillar.get('run')) %}
{%- set controllers = config['controllers'] %}
{%- set sls = config['vms']['redeploy_sls'] %}
{%- set db_call = {'role': 'controller', 'first': True} %}

{#- name, runner function, its kwargs: the run in order. #}
{%- set steps = [
  ['precheck', 'leapfrog.precheck', {'to': to}],
  ['revisions_before', 'leapfrog.revisions', {'release': to}],
  ['backup_dbs', 'leapfrog.call', {'func': 'mysql_backup.backup', 'role': 'database', 'kwargs': {'label': run}}],
  ['verify_db_backup', 'leapfrog.call', {'func': 'mysql_backup.verify', 'role': 'database', 'kwargs': {'label': run}, 'expect': {'valid': True}}],
  ['approval', None, {}],
] %}
{%- for node in controllers %}
{%-   set vm = config['vms']['nodes'][node] %}
{%-   set on_vm = {'target': 'L@' ~ vm['hypervisor']} %}
{%-   set on_node = {'target': 'L@' ~ node} %}
{%-   do steps.append([node ~ '_drain', 'leapfrog.call', {'func': 'haproxy_admin.drain', 'role': 'haproxy', 'kwargs': {'server': node}}]) %}
{%-   do steps.append([node ~ '_backup_disk', 'leapfrog.call', dict(on_vm, func='vm_backup.backup', kwargs={'domain': vm['domain'], 'tag': run, 'restart': False})]) %}
{%-   do steps.append([node ~ '_rebuild', 'leapfrog.rebuild_node', {'node': node, 'backup': 'latest'}]) %}
{%-   do steps.append([node ~ '_redeploy', 'leapfrog.call', dict(on_node, func='state.apply', kwargs={'mods': sls, 'pillar': {'leapfrog': {'release': to, 'services': 'stopped'}}})]) %}
{%-   if loop.first %}
{%-     do steps.append(['dbsync_nova', 'leapfrog.call', dict(db_call, func='nova_manage.staged_sync', kwargs={'path': [frm, to], 'online': False})]) %}
{%-     for service, stages in [['keystone', ['expand', 'migrate']], ['glance', ['expand', 'migrate']], ['placement', ['sync']]] %}
{%-       for stage in stages %}
{%-         do steps.append(['dbsync_' ~ service ~ '_' ~ stage, 'leapfrog.call', dict(db_call, func='openstack_db.sync', kwargs={'service': service, 'stage': stage, 'release': to})]) %}
{%-       endfor %}
{%-     endfor %}
{%-   endif %}
{%-   do steps.append([node ~ '_start', 'leapfrog.call', dict(on_node, func='state.apply', kwargs={'mods': sls, 'pillar': {'leapfrog': {'release': to, 'services': 'running'}}})]) %}
{%-   do steps.append([node ~ '_check', 'leapfrog.call', {'func': 'haproxy_admin.check', 'role': 'haproxy', 'kwargs': {'server': node}}]) %}
{%-   do steps.append([node ~ '_ready', 'leapfrog.call', {'func': 'haproxy_admin.ready', 'role': 'haproxy', 'kwargs': {'server': node}}]) %}
{%- endfor %}
{%- do steps.append(['finish_nova', 'leapfrog.call', dict(db_call, func='nova_manage.online_data_migrations', kwargs={'release': to})]) %}
{%- for service in ['keystone', 'glance'] %}
{%-   do steps.append(['finish_' ~ service, 'leapfrog.call', dict(db_call, func='openstack_db.sync', kwargs={'service': service, 'stage': 'contract', 'release': to})]) %}
{%- endfor %}
{%- do steps.append(['verify', 'leapfrog.call', dict(db_call, func='openstack_verify.wait', kwargs={'timeout': 300})]) %}
{%- do steps.append(['revisions_after', 'leapfrog.revisions', {'release': to}]) %}
{%- do steps.append(['nodes_after', 'leapfrog.call', {'func': 'leapfrog.node_info', 'role': 'controller'}]) %}
{%- set names = steps | map(attribute=0) | list %}

{%- if opts.get('test') %}
{%- set shown = salt['saltutil.runner']('leapfrog.begin', cluster=cluster, run=run, steps=names, pillar=overrides, test=True) %}

plan:
  test.show_notification:
    - text: {{ (decided['text'] ~ '\n\nwhy: ' ~ decided['why'] ~ '\n\nsteps of run ' ~ shown.get('text', '')) | json }}
{%- else %}

begin:
  salt.runner:
    - name: leapfrog.begin
    - cluster: {{ cluster }}
    - run: {{ run }}
    - steps: {{ (names + ['report']) | json }}
    - orch: orch.upgrade_control_plane
    - pillar: {{ overrides | json }}

probe:
  salt.runner:
    - name: leapfrog.probe_start
    - cluster: {{ cluster }}
    - run: {{ run }}
    - require:
      - salt: begin
{%- for name, function, kwargs in steps %}

{{ name }}:
  salt.runner:
{%-   if name == 'approval' %}
    - name: leapfrog.wait_approval
    - step: approval
{%-   else %}
    - name: leapfrog.step
    - step: {{ name }}
    - function: {{ function }}
    - function_kwargs: {{ dict(kwargs, cluster=cluster) | json }}
{%-   endif %}
    - cluster: {{ cluster }}
    - run: {{ run }}
    - pillar: {{ overrides | json }}
    - require:
      - salt: {{ 'probe' if loop.first else loop.previtem[0] }}
{%- endfor %}

report:
  salt.runner:
    - name: leapfrog.report
    - cluster: {{ cluster }}
    - run: {{ run }}
    - pillar: {{ overrides | json }}
    - require:
      - salt: {{ names[-1] }}

finish:
  salt.runner:
    - name: leapfrog.finish
    - cluster: {{ cluster }}
    - run: {{ run }}
    - pillar: {{ overrides | json }}
    - require:
      - salt: report

stopped_after_a_failure:
  salt.runner:
    - name: leapfrog.stopped
    - cluster: {{ cluster }}
    - run: {{ run }}
    - orch: orch.upgrade_control_plane
    - rollback: orch.rollback_control_plane
    - onfail_any:
{%- for name in names %}
      - salt: {{ name }}
{%- endfor %}
      - salt: report
{%- endif %}
{%- endif %}
