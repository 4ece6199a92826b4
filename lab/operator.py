"""Drive leapfrog on the lab the way an operator does: ``salt-run state.orch ...`` on cfg01,
with its progress lines on the terminal, and ``salt-run leapfrog.approve`` from "another
shell" when the run waits at an approval gate.

    result = operator.orchestrate(lab.salt, "orch.upgrade_control_plane",
                                  {"cluster": "lab", "to": "2025.1"}, approve=True)
    result.returncode, result.states, result.run, result.approved
"""
import json
import os
import subprocess
import threading
import time

from lab.salt_cluster import SALT_BIN


class Result:
    """What an orchestration left: exit code, states by id, the run id, approvals sent."""

    def __init__(self, returncode, stdout, run=None, approved=()):
        self.returncode = returncode
        self.stdout = stdout
        self.run = run
        self.approved = list(approved)
        try:
            data = json.loads(stdout or "{}")
        except ValueError:
            data = {}
        states = next(iter(data.get("data", {}).values()), {}) if isinstance(data, dict) else {}
        self.states = ({v["__id__"]: v for v in states.values() if isinstance(v, dict)}
                       if isinstance(states, dict) else {})

    def failed(self):
        """Ids of the states that failed (in run order)."""
        ordered = sorted(self.states.values(), key=lambda s: s.get("__run_num__", 0))
        return [s["__id__"] for s in ordered if s.get("result") is False]


def status(salt, cluster, run=None):
    """``salt-run leapfrog.status`` as a dict ({} when it cannot be read)."""
    args = ["leapfrog.status", f"cluster={cluster}"] + ([f"run={run}"] if run else [])
    proc = salt.run(*args, check=False, timeout=120)
    try:
        return json.loads(proc.stdout or "{}")
    except ValueError:
        return {}


def _approver(salt, cluster, since, stop, approved, gates, log):
    """Approve each gate of the newest run (created after ``since``) once it waits."""
    while not stop.wait(2):
        found = status(salt, cluster)
        if not found.get("run") or found.get("created", "") < since:
            continue
        steps = {s["name"]: s for s in found.get("steps") or []}
        for gate in gates:
            if steps.get(gate, {}).get("status") == "running" and \
                    (found["run"], gate) not in approved:
                log(f"[operator] salt-run leapfrog.approve cluster={cluster} "
                    f"run={found['run']} step={gate}")
                salt.run("leapfrog.approve", f"cluster={cluster}", f"run={found['run']}",
                         f"step={gate}", check=False, timeout=120)
                approved.append((found["run"], gate))


def orchestrate(salt, orch, pillar, test=False, approve=True, gates=("approval",),
                timeout=5400, log=print):
    """Run ``salt-run state.orch ORCH pillar=...`` on the lab's master; progress lines
    (stderr) go to ``log`` as they come; approval gates are approved when ``approve``."""
    args = [os.path.join(SALT_BIN, "salt-run"), "-c", salt.master_conf_dir, "--out=json",
            "state.orch", orch, f"pillar={json.dumps(pillar)}"] + (["test=True"] if test else [])
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 1))
    stop, approved = threading.Event(), []
    cluster = pillar.get("cluster", "lab")
    watcher = threading.Thread(target=_approver, daemon=True,
                               args=(salt, cluster, since, stop, approved, gates, log))
    if approve and not test:
        watcher.start()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=salt.env)
    out = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True)
    reader.start()
    try:
        for line in proc.stderr:
            line = line.rstrip()
            if line and not line.startswith("[WARNING ]"):
                log(line)
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
        stop.set()
        reader.join(10)
    run = None
    found = status(salt, cluster)
    if found.get("created", "") >= since:
        run = found.get("run")
    return Result(proc.returncode, "".join(out), run=run, approved=approved)


def _applied(answers):
    """Raise unless every minion's state run succeeded."""
    for minion, states in answers.items():
        bad = [v.get("comment") for v in states.values() if not v.get("result")] \
            if isinstance(states, dict) else [states]
        if bad:
            raise RuntimeError(f"{minion}: {bad}")


def stop_everything_upgrade(salt, frm, to, controllers="ctl*", first="ctl01", log=print):
    """The naive control-plane upgrade (as MCP's pipeline did it), with leapfrog's modules
    but none of its care: every controller's services stopped at once and redeployed at
    ``to`` (``lab_openstack.node``), the DB syncs on ``first`` (nova ``frm`` -> ``to`` with
    online migrations, keystone and glance expand+migrate+contract, placement), every
    controller started, then the API waited for. No backup, no drain, no rebuild: the
    baseline ``bench/bench_upgrade.py`` measures leapfrog against."""
    pillar = {"leapfrog": {"release": to, "services": "stopped"}}
    log(f"[naive] every controller stopped and redeployed at {to}")
    _applied(salt.salt(controllers, "state.apply", "lab_openstack.node",
                       f"pillar={json.dumps(pillar)}", timeout=900))
    log(f"[naive] DB syncs on {first}")
    salt.salt(first, "nova_manage.staged_sync", json.dumps([frm, to]), "online=True",
              timeout=1800)
    for service, stages in (("keystone", ("expand", "migrate", "contract")),
                            ("glance", ("expand", "migrate", "contract")),
                            ("placement", ("sync",))):
        for stage in stages:
            salt.salt(first, "openstack_db.sync", f"service={service}", f"stage={stage}",
                      f"release={to}", timeout=900)
    log("[naive] every controller started")
    pillar["leapfrog"]["services"] = "running"
    _applied(salt.salt(controllers, "state.apply", "lab_openstack.node",
                       f"pillar={json.dumps(pillar)}", timeout=900))
    salt.salt(first, "openstack_verify.wait", "timeout=300", timeout=400)
