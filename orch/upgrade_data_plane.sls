{#- Upgrade the computes: canary first, approval, then the rest in batches, with pacing.

      salt-run state.orch orch.upgrade_data_plane pillar='{"cluster": "prod1", "to": "2025.1"}'
      salt-run state.orch orch.upgrade_data_plane pillar='{"cluster": "prod1", "to": "2025.1", "canary": "cmp001*", "servers": "force"}'
      salt-run state.orch orch.upgrade_data_plane pillar='{"cluster": "prod1", "to": "2025.1"}' test=True   # per-host plan
      salt-run state.orch orch.upgrade_data_plane pillar='{"cluster": "prod1", "run": "RUN", "to": "2025.1"}'  # resume
      salt-run leapfrog.approve cluster=prod1 run=RUN        # after checking the canary

    Stages: the control plane's databases must already be at <to>'s heads (nova refuses
    computes newer than their control plane) -> the target release's code installed on
    every compute ahead (leapfrog.prestage_computes: data_plane:prestage_sls, no service
    touched; skipped when unset) and runnable there (its nova code reads its own
    migrations; nothing is restarted) -> per host what the switch would change
    (leapfrog.compute_changes: the redeploy SLS with test=True, recorded in the journal) ->
    canary hosts, one at a time (leapfrog.switch_compute: disable with a reason, wait until
    idle, apply data_plane:redeploy_sls at <to>, wait until up with the release's service
    version, enable, servers unchanged) -> approval (expires after
    approval:expiry or pillar expiry seconds: the rest stays untouched) -> the other hosts in
    batches of data_plane:batch (a batch's hosts are switched together:
    leapfrog.switch_computes), a pause (data_plane:pause) between batches, stopping at the
    first failed batch (its hosts that came back are enabled, the failed one stays disabled) ->
    once every compute runs <to>: the controllers' [upgrade_levels] compute cap lifted
    (leapfrog.unpin_compute_rpc: nova services restarted one controller at a time) ->
    verify through the VIP -> report. Hosts with servers follow data_plane:servers
    (skip | migrate | force; pillar servers= overrides).
    Pillar: cluster, to (default releases:target), canary, batch, servers, timeout (seconds
    a host may take to come back: data_plane:timeout), expiry, run, testing (fail_at /
    stall_at: test only). #}
{%- from "orch/run.jinja" import run_states with context %}
{%- set cluster = pillar.get('cluster') %}
{%- set overrides = {'leapfrog': {'clusters': {cluster: {'testing': pillar.get('testing') or {}}}}} if cluster else {} %}
{%- set info = salt['saltutil.runner']('leapfrog.validate', cluster=cluster) %}
{%- set hosts = salt['saltutil.runner']('leapfrog.data_plane_hosts', cluster=cluster, canary=pillar.get('canary'), batch=pillar.get('batch')) if info.get('valid') else {} %}
{%- if not info.get('valid') or hosts.get('retcode') %}

refused:
  test.fail_without_changes:
    - comment: {{ ((info.get('problems') or []) + ([hosts['error']] if hosts.get('error') else [])) | join('\n') | json }}
{%- else %}
{%- set cluster = info['cluster'] %}
{%- set to = pillar.get('to') or info['path'].split(' -> ')[-1] %}
{%- set run = salt['saltutil.runner']('leapfrog.run_id', run=pillar.get('run')) %}
{%- set switch = {'release': to} %}
{%- for key in ('servers', 'timeout') if pillar.get(key) %}
{%-   do switch.update({key: pillar[key]}) %}
{%- endfor %}
{%- set steps = [
  ['control_plane_at_target', 'leapfrog.call', {'func': 'nova_manage.versions', 'role': 'controller', 'first': True, 'kwargs': {'release': to}, 'expect': {'at_head': True}}],
  ['prestage', 'leapfrog.prestage_computes', {'release': to}],
  ['prestaged', 'leapfrog.call', {'func': 'nova_manage.revisions', 'role': 'compute', 'kwargs': {'release': to}}],
  ['changes', 'leapfrog.compute_changes', {'release': to}],
] %}
{%- for host in hosts['canary'] %}
{%-   do steps.append([host ~ '_switch', 'leapfrog.switch_compute', dict(switch, host=host)]) %}
{%- endfor %}
{%- do steps.append(['approval', None, {}]) %}
{#- a batch of one host is that host's step; a bigger batch is switched together (one
    step, the redeploy applied on its hosts at once) #}
{%- for batch in hosts['batches'] %}
{%-   if batch | length == 1 %}
{%-     set name, func, args = batch[0], 'leapfrog.switch_compute', dict(switch, host=batch[0]) %}
{%-   else %}
{%-     set name, func, args = 'batch%02d' | format(loop.index), 'leapfrog.switch_computes', dict(switch, hosts=batch) %}
{%-   endif %}
{%-   do steps.append([name ~ '_switch', func, args]) %}
{%-   if hosts['pause'] and not loop.last %}
{%-     do steps.append(['pause_after_' ~ name, 'leapfrog.pause', {'seconds': hosts['pause']}]) %}
{%-   endif %}
{%- endfor %}
{#- every compute at <to>: the controllers' compute RPC cap lifted (skipped, with the reason,
    while one is older) #}
{%- do steps.append(['unpin_compute_rpc', 'leapfrog.unpin_compute_rpc', {'release': to}]) %}
{%- do steps.append(['verify', 'leapfrog.call', {'func': 'openstack_verify.wait', 'role': 'controller', 'first': True, 'kwargs': {'timeout': 300}}]) %}
{%- set names = steps | map(attribute=0) | list %}

{%- if opts.get('test') %}
{%- set shown = salt['saltutil.runner']('leapfrog.begin', cluster=cluster, run=run, steps=names, pillar=overrides, test=True, orch='orch.upgrade_data_plane', target=to) %}
{%- set changes = salt['saltutil.runner']('leapfrog.compute_changes', cluster=cluster, release=to) %}

plan:
  test.show_notification:
    - text: {{ ('data plane of ' ~ cluster ~ ' to ' ~ to ~ '\ncanary: ' ~ (hosts['canary'] | join(', ') or 'none') ~ '\nthen, after approval, in batches: ' ~ (hosts['batches'] | json) ~ ' (pause ' ~ hosts['pause'] ~ ' s between batches)\nper host now: ' ~ (changes.get('summary') or changes.get('error', '')) ~ '\nper host: disable (reason), wait idle, apply the redeploy SLS at ' ~ to ~ ', wait up with its service version, enable, servers unchanged\n' ~ shown.get('text', '')) | json }}
{%- else %}
{{ run_states(cluster, run, steps, overrides, 'orch.upgrade_data_plane', expiry=pillar.get('expiry'), target=to) }}
{%- endif %}
{%- endif %}
