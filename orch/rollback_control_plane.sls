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
{%- from "orch/run.jinja" import orchestrate with context %}
{{ orchestrate('orch.rollback_control_plane') }}
