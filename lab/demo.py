"""The README's main job: bring the lab up and run leapfrog on it.

Today it starts the lab's salt-master and minions, runs ``orch.inventory`` (pillar check
and the cluster's nodes by role) exactly as an operator would with ``salt-run``, prints the
inventory, and stops the lab (``--keep`` leaves it running).
"""
import argparse
import json
import shutil
import tempfile
import time

from lab import salt_cluster, topology


def print_inventory(states):
    inventory = next(v for v in states.values() if v["__id__"] == "inventory")
    roles = inventory["changes"]["return"]["roles"]
    print(f"\ninventory of cluster 'lab' ({sum(len(r['nodes']) for r in roles.values())} "
          "nodes)")
    for role, found in roles.items():
        print(f"  {role:10} {found['target']}")
        for node, info in found["nodes"].items():
            print(f"    {node:6} roles={','.join(info['roles'])} os={info['os']} "
                  f"{info['oscodename']} release={info['release']}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="leave the lab running")
    parser.add_argument("--computes", type=int, default=2)
    args = parser.parse_args(argv)
    run_dir = tempfile.mkdtemp(prefix="leapfrog-lab-", dir="/var/tmp")
    lab = salt_cluster.SaltCluster(run_dir, topology.nodes(computes=args.computes))
    started = time.monotonic()
    try:
        print(f"[demo] starting salt-master {topology.MASTER_ID} and "
              f"{len(lab.nodes)} minions under {run_dir}", flush=True)
        lab.up()
        print(f"[demo] lab up in {time.monotonic() - started:.0f} s; running: salt-run "
              "state.orch orch.inventory pillar='{\"cluster\": \"lab\"}'", flush=True)
        proc = lab.run("state.orch", "orch.inventory", 'pillar={"cluster": "lab"}')
        states = next(iter(json.loads(proc.stdout)["data"].values()))
        print_inventory(states)
        print(f"\n[demo] orchestration succeeded in {time.monotonic() - started:.0f} s total")
    finally:
        if not args.keep:
            lab.down()
            shutil.rmtree(run_dir, ignore_errors=True)
            print("[demo] lab stopped")
        else:
            print(f"[demo] lab left running: python -m lab down --run-dir {run_dir}")


if __name__ == "__main__":
    main()
