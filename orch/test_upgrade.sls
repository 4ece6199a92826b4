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
{%- from "orch/run.jinja" import orchestrate with context %}
{{ orchestrate('orch.test_upgrade') }}
