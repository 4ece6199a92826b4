{#- The runner core on its own: a run with a journal, a lock, events, an approval gate and
    the test-only fault switch, over harmless steps (runner test.arg).

    salt-run state.orch orch.test_core pillar='{"cluster": "lab"}'
    salt-run state.orch orch.test_core pillar='{"cluster": "lab", "run": "RUN"}'         # resume
    salt-run state.orch orch.test_core pillar='{"cluster": "lab", "gate": true}'         # + approval
    salt-run state.orch orch.test_core pillar='{"cluster": "lab", "schedules": true}'    # + schedulers off
    salt-run state.orch orch.test_core pillar='{"cluster": "lab", "testing": {"fail_at": "two"}}'
    salt-run state.orch orch.test_core pillar='{"cluster": "lab"}' test=True             # plan only

    pillar: cluster, run (resume that run), gate (wait for approval between one and two),
    schedules (true: turn the cluster minions' Salt schedulers off for the run, and back on
    at its end or after its failure),
    expiry (seconds of that wait), testing (fail_at / stall_at / stall_seconds: test only). #}
{%- set cluster = pillar.get('cluster', 'lab') %}
{%- set run = salt['saltutil.runner']('leapfrog.run_id', run=pillar.get('run')) %}
{%- set gate = pillar.get('gate', False) %}
{%- set steps = ['one', 'gate', 'two'] if gate else ['one', 'two'] %}
{%- set overrides = {'leapfrog': {'clusters': {cluster: {'testing': pillar.get('testing') or {}}}}} %}

{%- if opts.get('test') %}
{%- set shown = salt['saltutil.runner']('leapfrog.begin', cluster=cluster, run=run, steps=steps,
                                        pillar=overrides, test=True) %}
plan:
  test.show_notification:
    - text: {{ shown.get('text', shown) | json }}
{%- else %}

begin:
  salt.runner:
    - name: leapfrog.begin
    - cluster: {{ cluster | json }}
    - run: {{ run | json }}
    - steps: {{ steps | json }}
    - orch: orch.test_core
    - schedules: {{ (pillar.get('schedules') is sameas true) | json }}
    - pillar: {{ overrides | json }}

one:
  salt.runner:
    - name: leapfrog.step
    - cluster: {{ cluster | json }}
    - run: {{ run | json }}
    - step: one
    - function: test.arg
    - function_kwargs: {"step": "one"}
    - pillar: {{ overrides | json }}
    - require:
      - salt: begin

{%- if gate %}

gate:
  salt.runner:
    - name: leapfrog.wait_approval
    - cluster: {{ cluster | json }}
    - run: {{ run | json }}
    - step: gate
{%- if pillar.get('expiry') is not none %}
    - expiry: {{ pillar['expiry'] | json }}
{%- endif %}
    - pillar: {{ overrides | json }}
    - require:
      - salt: one
{%- endif %}

two:
  salt.runner:
    - name: leapfrog.step
    - cluster: {{ cluster | json }}
    - run: {{ run | json }}
    - step: two
    - function: test.arg
    - function_kwargs: {"step": "two"}
    - pillar: {{ overrides | json }}
    - require:
      - salt: {{ ('gate' if gate else 'one') | json }}

finish:
  salt.runner:
    - name: leapfrog.finish
    - cluster: {{ cluster | json }}
    - run: {{ run | json }}
    - pillar: {{ overrides | json }}
    - require:
      - salt: two
{%- if pillar.get('schedules') is sameas true %}

stopped_after_a_failure:
  salt.runner:
    - name: leapfrog.stopped
    - cluster: {{ cluster | json }}
    - run: {{ run | json }}
    - orch: orch.test_core
    - require:
      - salt: begin
    - onfail_any:
{%- for name in steps %}
      - salt: {{ name | json }}
{%- endfor %}
{%- endif %}
{%- endif %}
