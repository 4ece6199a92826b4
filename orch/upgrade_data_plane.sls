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
{%- from "orch/run.jinja" import orchestrate with context %}
{{ orchestrate('orch.upgrade_data_plane') }}
