"""The lab: ``python -m lab up|down|status [--run-dir DIR] [--computes N]``.

Brings up the lab cluster's parts on this machine (today: the salt-master cfg01 and the
minions of every node), stops them by their PIDs, and shows what runs.
"""
import argparse
import os

from lab import salt_cluster, topology

DEFAULT_RUN_DIR = os.environ.get("LEAPFROG_LAB_DIR", "/var/tmp/leapfrog-lab")


def cluster(run_dir, computes):
    return salt_cluster.SaltCluster(run_dir, topology.nodes(computes=computes))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("--run-dir", default=DEFAULT_RUN_DIR)
    parser.add_argument("--computes", type=int, default=2)
    args = parser.parse_args(argv)
    salt = cluster(args.run_dir, args.computes)
    if args.action == "up":
        salt.up()
    elif args.action == "down":
        salt.down()
    status = salt.status()
    for name, running in status.items():
        print(f"{name:8} minion {'up' if running else 'down'}" if name != topology.MASTER_ID
              else f"{name:8} master {'up' if running else 'down'}")
    return 0 if args.action == "down" or all(status.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
