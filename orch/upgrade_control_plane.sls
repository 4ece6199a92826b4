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
{%- from "orch/run.jinja" import orchestrate with context %}
{{ orchestrate('orch.upgrade_control_plane', rollback='orch.rollback_control_plane') }}
