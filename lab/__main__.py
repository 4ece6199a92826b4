"""The lab: ``python -m lab up|down|status [--run-dir DIR] [--controllers N] [--computes N]
[--no-vms] [--neutron-cinder] [--db mariadb|galera]``, ``python -m lab [--run-dir DIR]
openstack ARGS...``.

``up`` brings up the OpenStack cloud at 2024.1, its Salt cluster and (unless ``--no-vms``)
kvm01's libvirtd with a VM per controller and the bridge tying each controller's minion and
services to its VM (idempotent); ``down`` stops every process and domain by its PID/name and
removes the run dir; ``status`` shows each part (each VM: running or shut off, its OS image);
``openstack ARGS`` runs the ``openstack`` CLI (the client venv) with the rc file ``up`` wrote
(``DIR/openrc``) sourced, e.g. ``python -m lab openstack server list``.
"""
import argparse
import os
import sys

from lab import stack

DEFAULT_RUN_DIR = os.environ.get("LEAPFROG_LAB_DIR", "/var/tmp/leapfrog-lab")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["up", "down", "status", "openstack"])
    parser.add_argument("--run-dir", default=DEFAULT_RUN_DIR)
    parser.add_argument("--controllers", type=int, default=3)
    parser.add_argument("--computes", type=int, default=2)
    parser.add_argument("--no-vms", dest="vms", action="store_false",
                        help="no libvirtd, controller VMs nor bridge")
    parser.add_argument("--db", choices=["mariadb", "galera"], default="mariadb",
                        help="the cloud's databases on one MariaDB (default) or on a "
                             "three-node Galera cluster behind haproxy's DB frontend")
    parser.add_argument("--neutron-cinder", action="store_true",
                        help="real neutron (ML2/OVN) and cinder in the cloud (up)")
    parser.add_argument("cli_args", nargs=argparse.REMAINDER, metavar="ARGS",
                        help="openstack: the CLI's arguments")
    args = parser.parse_args(argv)
    if args.action == "openstack":
        from lab import openstack_cloud  # pylint: disable=import-outside-toplevel

        rc_file = os.path.join(args.run_dir, "openrc")
        if not os.path.exists(rc_file):
            print(f"no {rc_file}: run `python -m lab up` first", file=sys.stderr)
            return 3
        return openstack_cloud.run_cli(rc_file, args.cli_args, capture=False).returncode
    if args.cli_args:
        parser.error(f"unrecognized arguments: {' '.join(args.cli_args)}")
    lab = stack.Lab(args.run_dir, controllers=args.controllers, computes=args.computes,
                    vms=args.vms, neutron_cinder=args.neutron_cinder, db=args.db, log=lambda line: print(line, file=sys.stderr, flush=True))
    if args.action == "up":
        lab.up()
        print(f"lab up in {args.run_dir}; memory: OpenStack {lab.rss_mb()} MB, "
              f"Salt {lab.salt.rss_mb()} MB")
    elif args.action == "down":
        lab.down()
        print("lab down")
        return 0
    status = lab.status()
    print(stack.describe(status))
    return 0 if all(v.get("running") for v in status.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
