{#- The rehearsal: the whole staged DB sync of the upgrade path, run on clones of the
    production databases, with production proved untouched.

      salt-run state.orch orch.test_upgrade pillar='{"cluster": "prod1"}'
      salt-run state.orch orch.test_upgrade pillar='{"cluster": "prod1", "run": "RUN"}'   # resume
      salt-run state.orch orch.test_upgrade pillar='{"cluster": "prod1"}' test=True         # plan

    Stages: snapshot (structure and migration versions of every production DB on the
    database role: a live cloud keeps writing rows meanwhile) -> clone each
    DB to <name>_upgrade -> isolate the clones (the cloned nova_api's cell mappings point at
    the cloned cell DBs, never at production) -> staged sync of the whole path on the clones,
    on the first controller, with each hop's release -> verify the clones are at the target
    release's heads -> prove production not migrated (equal to the snapshot) -> drop the
    clones. On a failure the clones are dropped too and the run can be re-run.
    Pillar: cluster, run (resume), suffix (default _upgrade: '_' and lower-case letters,
    digits, '_'; refused when a database with it would name another production database),
    testing (fail_at / stall_at: test only). The clones' cleanup after a failure runs only
    for a run that began (one refused by the lock drops nothing). #}
{%- set cluster = pillar.get('cluster') %}
{%- set suffix = pillar.get('suffix', '_upgrade') %}
{%- set overrides = {'leapfrog': {'clusters': {cluster: {'testing': pillar.get('testing') or {}}}}} if cluster else {} %}
{%- set info = salt['saltutil.runner']('leapfrog.validate', cluster=cluster, suffix=suffix) %}
{%- if not info.get('valid') %}

invalid_pillar:
  test.fail_without_changes:
    - name: {{ (info.get('problems') or [info]) | join('; ') | json }}
{%- else %}
{%- set cluster = info['cluster'] %}
{%- set path = info['path'].split(' -> ') %}
{%- set run = salt['saltutil.runner']('leapfrog.run_id', run=pillar.get('run')) %}
{%- set steps = ['snapshot', 'clone', 'isolate', 'staged_sync', 'verify', 'production_unchanged', 'drop_clones'] %}
{%- set common = {'cluster': cluster, 'pillar': overrides} %}
{%- set calls = {
  'snapshot': {'func': 'mysql_backup.schema', 'role': 'database'},
  'clone': {'func': 'mysql_backup.clone', 'role': 'database', 'kwargs': {'suffix': suffix, 'force': True}},
  'isolate': {'func': 'nova_manage.isolate_cells', 'role': 'controller', 'first': True, 'kwargs': {'suffix': suffix}},
  'staged_sync': {'func': 'nova_manage.staged_sync', 'role': 'controller', 'first': True, 'kwargs': {'suffix': suffix, 'path': path}},
  'verify': {'func': 'nova_manage.versions', 'role': 'controller', 'first': True, 'kwargs': {'suffix': suffix, 'release': path[-1]}, 'expect': {'at_head': True}},
  'drop_clones': {'func': 'mysql_backup.drop_clone', 'role': 'database', 'kwargs': {'suffix': suffix}},
} %}

{%- if opts.get('test') %}
{%- set shown = salt['saltutil.runner']('leapfrog.begin', cluster=cluster, run=run, steps=steps, pillar=overrides, test=True, orch='orch.test_upgrade', target=path[-1]) %}

plan:
  test.show_notification:
    - text: {{ ('rehearsal of ' ~ info['path'] ~ ' on ' ~ suffix ~ ' clones\n' ~ shown.get('text', '')) | json }}
{%- else %}

begin:
  salt.runner:
    - name: leapfrog.begin
    - cluster: {{ cluster | json }}
    - run: {{ run | json }}
    - steps: {{ steps | json }}
    - orch: orch.test_upgrade
    - target: {{ path[-1] | json }}
    - pillar: {{ overrides | json }}

{%- for step in steps %}

{{ step | json }}:
  salt.runner:
    - name: leapfrog.step
    - cluster: {{ cluster | json }}
    - run: {{ run | json }}
    - step: {{ step | json }}
{%- if step == 'production_unchanged' %}
    - function: leapfrog.unchanged_since
    - function_kwargs: {{ {'step': 'snapshot', 'run': run, 'cluster': cluster} | json }}
{%- else %}
    - function: leapfrog.call
    - function_kwargs: {{ dict(calls[step], cluster=cluster) | json }}
{%- endif %}
    - pillar: {{ overrides | json }}
    - require:
      - salt: {{ ('begin' if loop.first else loop.previtem) | json }}
{%- endfor %}

drop_clones_after_failure:
  salt.runner:
    - name: leapfrog.call
    - func: mysql_backup.drop_clone
    - role: database
    - kwargs: {{ {'suffix': suffix} | json }}
    - cluster: {{ cluster | json }}
    - require:
      - salt: begin
    - onfail_any:
      - salt: clone
      - salt: isolate
      - salt: staged_sync
      - salt: verify
      - salt: production_unchanged

finish:
  salt.runner:
    - name: leapfrog.finish
    - cluster: {{ cluster | json }}
    - run: {{ run | json }}
    - pillar: {{ overrides | json }}
    - require:
      - salt: drop_clones
{%- endif %}
{%- endif %}
