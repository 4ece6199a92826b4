"""Benchmark: nova_manage.staged_sync against the raw nova-manage calls it wraps.

Same run, same machine, identical starting points: nova DB sets created by 2024.1's
nova-manage and seeded alike on a private MariaDB. Set A is upgraded 2024.1 -> 2025.1 ->
2026.1 by ``nova_manage.staged_sync`` (through Salt's loader); sets B (before) and C (after)
by running exactly the nova-manage commands staged_sync runs, directly, with no checks in
between: overhead ratio = staged / mean(raw B, raw C), target <= 1.10 (the two raw runs
bracket the staged one, since the machine is shared). ``--naive`` adds set D, upgraded by the
sequence an operator types for every hop (api_db sync, db sync, online_data_migrations).

    python -m bench.bench_staged_sync [--naive]
"""
import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "_utils"))
sys.path.insert(0, REPO)

PATH = ["2024.1", "2025.1", "2026.1"]


def seed(db, instances=20):
    """A compute service and node (ratios unset) and instances without compute_id."""
    with db.connect("main") as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO services (created_at, host, `binary`, topic, report_count, "
                    "disabled, deleted, version, uuid, forced_down) VALUES (NOW(), 'cmp01', "
                    "'nova-compute', 'compute', 1, 0, 0, 66, %s, 0)", (str(uuid.uuid4()),))
        service_id = cur.lastrowid
        cur.execute("INSERT INTO compute_nodes (created_at, service_id, host, vcpus, memory_mb, "
                    "local_gb, vcpus_used, memory_mb_used, local_gb_used, hypervisor_type, "
                    "hypervisor_version, cpu_info, hypervisor_hostname, deleted, mapped, uuid) VALUES "
                    "(NOW(), %s, 'cmp01', 8, 16384, 100, 0, 512, 0, 'fake', 1, '{}', 'cmp01', 0, "
                    "0, %s)", (service_id, str(uuid.uuid4())))
        for index in range(instances):
            instance = str(uuid.uuid4())
            cur.execute("INSERT INTO instances (created_at, uuid, host, node, project_id, "
                        "user_id, vm_state, power_state, deleted, display_name, locked, cleaned, "
                        "instance_type_id, memory_mb, vcpus, root_gb, ephemeral_gb) VALUES "
                        "(NOW(), %s, 'cmp01', 'cmp01', 'p1', 'u1', 'active', 1, 0, %s, 0, 0, 1, "
                        "512, 1, 1, 0)", (instance, f"vm{index}"))
            cur.execute("INSERT INTO instance_extra (created_at, instance_uuid, deleted) "
                        "VALUES (NOW(), %s, 0)", (instance,))
        conn.commit()


def loader(db, venvs, base):
    import salt.config  # pylint: disable=import-outside-toplevel
    import salt.loader  # pylint: disable=import-outside-toplevel

    opts = salt.config.minion_config(None)
    opts.update({"file_client": "local", "cachedir": os.path.join(base, "cache"), "id": "bench",
                 "module_dirs": [os.path.join(REPO, "_modules")],
                 "utils_dirs": [os.path.join(REPO, "_utils")],
                 "pillar": {"leapfrog": {"releases": {"venvs": venvs, "path": PATH}, **db.pillar()}}})
    return salt.loader.minion_mods(opts, whitelist=["cmd", "pillar", "config", "nova_manage"])


def commands_of(result, venvs):
    """The nova-manage commands staged_sync ran, in order: (venv, args)."""
    out = []
    for hop in result["hops"]:
        venv = venvs[hop["release"]]
        for step in hop["steps"]:
            if step["step"] == "api_db sync" and step["ran"]:
                out.append((venv, ["api_db", "sync", step["target"]]))
            elif step["step"] == "db sync" and step["ran"]:
                out.append((venv, ["db", "sync", step["target"]]))
            elif step["step"] == "online_data_migrations":
                out += [(venv, ["db", "online_data_migrations"])] * step["calls"]
            elif step["step"] == "cell mapping" and step["ran"]:
                raise RuntimeError("the bench's DBs are mapped already: unexpected cell mapping")
    return out


def run_raw(db, commands):
    started = time.monotonic()
    for venv, args in commands:
        db.manage(venv, *args)
    return time.monotonic() - started


def naive(venvs):
    """What an operator types: every step of every hop, the current release's ODM first."""
    out = [(venvs[PATH[0]], ["db", "online_data_migrations"])]
    for release in PATH[1:]:
        out += [(venvs[release], ["api_db", "sync"]), (venvs[release], ["db", "sync"]),
                (venvs[release], ["db", "online_data_migrations"])]
    return out


def planned_commands(mods, venvs):
    """The nova-manage commands staged_sync will run, from its own dry plan (staged_pending):
    per hop not yet passed, api_db sync / db sync when migrations are pending, then one
    online_data_migrations call (nova loops its batches itself)."""
    plan = mods["nova_manage.staged_pending"](path=PATH)
    if plan["cells_to_map"]:
        raise RuntimeError("the bench's DBs are mapped already: unexpected cell mapping")
    out = []
    for hop in plan["hops"]:
        if hop.get("skipped"):
            continue
        venv = venvs[hop["release"]]
        if hop["pending"].get("api"):
            out.append((venv, ["api_db", "sync", hop["pending"]["api"][-1]]))
        if hop["pending"].get("main") or hop["pending"].get("cell0"):
            target = (hop["pending"].get("main") or hop["pending"]["cell0"])[-1]
            out.append((venv, ["db", "sync", target]))
        out.append((venv, ["db", "online_data_migrations"]))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--naive", action="store_true",
                        help="also time the naive every-step sequence on a fourth DB set")
    args = parser.parse_args(argv)

    from lab import openstack_venv  # pylint: disable=import-outside-toplevel
    from lab.mariadb import MariaDB  # pylint: disable=import-outside-toplevel
    from tests.fixtures.openstack import NovaDB  # pylint: disable=import-outside-toplevel

    started = time.monotonic()
    venvs = openstack_venv.ensure_all()
    print(f"venvs ready in {time.monotonic() - started:.1f} s")
    base = tempfile.mkdtemp(prefix="lf-bench-", dir="/tmp")
    server = MariaDB(os.path.join(base, "db"))
    try:
        server.start()
        names = ["bench_a", "bench_b", "bench_c"] + (["bench_d"] if args.naive else [])
        sets = {}
        for name in names:
            t = time.monotonic()
            sets[name] = NovaDB(server, name).create()
            sets[name].create_schema(venvs[PATH[0]])
            seed(sets[name])
            print(f"{name}: 2024.1 DB set created and seeded in {time.monotonic() - t:.1f} s")

        mods = loader(sets["bench_a"], venvs, base)  # the pillar names bench_a's databases
        commands = planned_commands(mods, venvs)
        # raw B, staged A, raw C: the two raw runs bracket the staged one (shared machine)
        raw_b = run_raw(sets["bench_b"], commands)
        t = time.monotonic()
        result = mods["nova_manage.staged_sync"](path=PATH)
        staged = time.monotonic() - t
        raw_c = run_raw(sets["bench_c"], commands)
        ran = commands_of(result, venvs)
        if ran != commands:
            raise RuntimeError(f"staged_sync ran {ran}, its plan said {commands}")
        revisions = {n: sets[n].revisions() for n in ("bench_a", "bench_b", "bench_c")}
        if len({str(r) for r in revisions.values()}) != 1:
            raise RuntimeError(f"the DB sets differ after the upgrade: {revisions}")
        inside = sum(s.get("seconds", 0) for h in result["hops"] for s in h["steps"])
        migrated = sum(s.get("migrated", 0) for h in result["hops"] for s in h["steps"])
        raw = (raw_b + raw_c) / 2
        print()
        print(f"path                         {' -> '.join(PATH)}")
        print(f"revisions after              {revisions['bench_a']}")
        print(f"online rows migrated         {migrated}")
        print(f"nova-manage calls            {len(commands)}: "
              + ", ".join(f"{os.path.basename(v)}:{' '.join(a[:2])}" for v, a in commands))
        print(f"raw, same calls (before)     {raw_b:6.1f} s")
        print(f"staged_sync                  {staged:6.1f} s")
        print(f"raw, same calls (after)      {raw_c:6.1f} s")
        print(f"overhead ratio               {staged / raw:6.3f}  (staged / mean raw; target <= 1.10)")
        print(f"in-run overhead              {staged - inside:6.2f} s of {staged:.1f} s "
              f"(checks, config files, loader: ratio {staged / inside:.3f})")
        if args.naive:
            plain = naive(venvs)
            naive_s = run_raw(sets["bench_d"], plain)
            print(f"naive sequence ({len(plain)} calls)    {naive_s:6.1f} s")
            print(f"staged_sync / naive          {staged / naive_s:6.3f}")
        t = time.monotonic()
        again = mods["nova_manage.staged_sync"](path=PATH)
        print(f"re-run, changed={again['changed']}        {time.monotonic() - t:6.1f} s")
        return 0 if staged / raw <= 1.10 else 1
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
