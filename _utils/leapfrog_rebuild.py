"""Master side of rebuilding a control-plane VM on a new OS (``leapfrog.rebuild_node``).

Steps, each timed (``phases`` in the summary, seconds):

1. ``check``: the node's hypervisor knows its domain (``vm_backup.info``); a running domain
   is refused unless ``stop=True`` -- checked before the master's keys change.
2. ``key``: ``key.gen_accept(id_=node, force=True)`` (wheel): a new key pair whose public key
   the master accepts now, before the VM exists (never auto-accept, no manual step). The
   previously accepted public key is kept under ``<cachedir>/leapfrog/keys/<node>/`` (a
   rollback puts it back) and put back at once if the rebuild fails before the VM boots.
3. ``rebuild``: ``vm_backup.rebuild`` on the hypervisor with the pair, the master address and
   the target OS grains; the private key travels *sealed* to the hypervisor's own minion key
   (RSA-OAEP + AES-256-GCM, see ``seal``), so neither the master's job cache nor a log holds
   it in clear; it exists in clear only in the seed ISO the hypervisor writes.
4. ``boot``: wait for the node's ``salt/minion/<node>/start`` event on the master bus.
5. ``grains``: ``grains.item os oscodename`` on the node must answer (the new minion is in)
   and equal ``vms:os``.
6. ``seed``: as soon as the node answered (before the OS is compared), the seed ISO holding
   its private key is ejected from the domain and deleted (``vm_backup.detach_seed``); the
   summary's ``seed`` says so (``path``, ``detached``, ``removed``). A rebuild whose minion
   never answers keeps its seed (the VM still needs it).
7. ``sync``: once its OS is the expected one, ``saltutil.sync_all`` on the node: a new VM's
   minion has none of the master's modules and states, which its redeploy SLS may use.

``restore_node_key`` (a rollback) accepts again only a key kept here for a node listed in
``vms:nodes``: ``kept_key`` resolves it inside ``<cachedir>/leapfrog/keys/<node>/`` (real
paths, no ``..``, no link out) and it must parse as a PEM public key.

The master address written into the seed is ``vms:master`` when set (``host`` or
``host:port``), else the master's ``interface`` with ``:<ret_port>`` appended when the port
is not Salt's default 4506 (the minion learns the publish port from the master).
"""
import base64
import glob
import json
import logging
import os
import re
import time

import leapfrog_errors

NODE_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")

log = logging.getLogger(__name__)

SEAL_ALG = "RSA-OAEP-SHA256+AES-256-GCM"
DEFAULT_RET_PORT = 4506


class RebuildFailed(leapfrog_errors.LeapfrogError):
    """A rebuild step failed; ``phases`` holds the timings of the steps that ran."""

    def __init__(self, message, phases=None, step=None):
        super().__init__(message)
        self.phases = dict(phases or {})
        self.step = step


# -- sealing a secret to a minion's key ----------------------------------------------------
def seal(secret, recipient_pub):
    """Encrypt ``secret`` (str) so only the holder of ``recipient_pub``'s private key (a
    minion's ``minion.pem``) can read it. Returns a JSON-safe dict."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    pub = serialization.load_pem_public_key(recipient_pub.encode())
    key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(12)
    data = AESGCM(key).encrypt(nonce, secret.encode(), None)
    wrapped = pub.encrypt(key, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()),
                                            algorithm=hashes.SHA256(), label=None))
    b64 = lambda raw: base64.b64encode(raw).decode()  # noqa: E731
    return {"sealed": SEAL_ALG, "key": b64(wrapped), "nonce": b64(nonce), "data": b64(data)}


def is_sealed(value):
    return isinstance(value, dict) and value.get("sealed") == SEAL_ALG


def unseal(sealed, private_key_path):
    """Decrypt what ``seal`` produced with the PEM private key at ``private_key_path``."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if not is_sealed(sealed):
        raise leapfrog_errors.LeapfrogError("not a sealed secret (expected the output of seal)")
    with open(private_key_path, "rb") as handle:
        priv = serialization.load_pem_private_key(handle.read(), password=None)
    try:
        key = priv.decrypt(base64.b64decode(sealed["key"]),
                           padding.OAEP(mgf=padding.MGF1(hashes.SHA256()),
                                        algorithm=hashes.SHA256(), label=None))
        return AESGCM(key).decrypt(base64.b64decode(sealed["nonce"]),
                                   base64.b64decode(sealed["data"]), None).decode()
    except Exception as exc:  # wrong key or tampered data
        raise leapfrog_errors.LeapfrogError(
            f"cannot unseal the secret with {private_key_path}: it was sealed to another key "
            f"or altered ({type(exc).__name__})") from None


# -- what to rebuild --------------------------------------------------------------------------
def master_address(opts, vms):
    """The address a rebuilt minion reaches this master at (see the module docstring)."""
    if vms.get("master"):
        return str(vms["master"])
    host = opts.get("interface") or ""
    if host in ("", "0.0.0.0", "::"):
        raise leapfrog_errors.LeapfrogError(
            f"the master listens on {host or 'every address'}: set vms:master in the cluster "
            "pillar to the address the rebuilt VMs reach the master at")
    port = int(opts.get("ret_port") or DEFAULT_RET_PORT)
    if port == DEFAULT_RET_PORT:
        return host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def target(config, node, image=None):
    """Resolve the node's hypervisor, domain, image and expected OS from ``vms``."""
    vms = config["vms"]
    entry = (vms.get("nodes") or {}).get(node) if isinstance(node, str) else None
    if not isinstance(entry, dict) or not entry.get("hypervisor"):
        known = ", ".join(sorted(vms.get("nodes") or {})) or "none"
        raise leapfrog_errors.LeapfrogError(
            f"node {node!r} is not in vms:nodes (or has no hypervisor); known: {known}")
    wanted = {k: str(v) for k, v in (vms.get("os") or {}).items()}
    return {
        "node": node,
        "hypervisor": entry["hypervisor"],
        "domain": entry.get("domain") or node,
        "image": image or vms["image"],
        "method": entry.get("method") or vms.get("method") or "overlay",
        "os": wanted,
    }


# -- keys on the master ------------------------------------------------------------------------
def wheel_fun(wheel, name):
    """A wheel function called directly through the WheelClient's loader: unlike
    ``WheelClient.cmd`` this neither prints the return nor fires it as a
    ``salt/wheel/<jid>/ret`` event on the master bus (where reactors and event returners
    would see the private key ``key.gen_accept`` returns)."""
    return wheel.functions[name]


def key_of(wheel, minion_id):
    """The master's accepted public key of ``minion_id`` (None when none is accepted)."""
    found = wheel_fun(wheel, "key.print")(minion_id) or {}
    accepted = found.get("minions") or {}
    return accepted.get(minion_id) if isinstance(accepted, dict) else None


def _keep_dir(opts, node):
    return os.path.join(opts["cachedir"], "leapfrog", "keys", node)


def _backup_slug(backup):
    return re.sub(r"[^A-Za-z0-9._-]", "_", str(backup))


def keep_previous_key(opts, node, pub, backup=None):
    """Store the public key accepted before the rebuild (a rollback re-accepts it); with
    ``backup`` (the VM backup the rebuild started from) the file is named after it, so a
    rollback to that backup finds the key that goes with its disk."""
    folder = _keep_dir(opts, node)
    os.makedirs(folder, exist_ok=True)
    name = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    if backup:
        name += f"--{_backup_slug(backup)}"
    path = os.path.join(folder, f"{name}.pub")
    with open(path, "w") as handle:
        handle.write(pub)
    return path


def previous_keys(opts, node, backup=None):
    """Kept public keys of ``node``, newest first (only those kept with ``backup``)."""
    found = sorted(glob.glob(os.path.join(_keep_dir(opts, node), "*.pub")), reverse=True)
    if backup:
        found = [p for p in found if p.endswith(f"--{_backup_slug(backup)}.pub")]
    return found


def kept_key(opts, config, node, backup=None, key=None):
    """(path, public key) of the key ``restore_node_key`` may accept again for ``node``: a
    node of ``vms:nodes`` only, and a file of its own keep dir only (``key``, else the one
    kept with ``backup``, else the newest), which must parse as a PEM public key."""
    if not isinstance(node, str) or not NODE_RE.match(node):
        raise leapfrog_errors.LeapfrogError(
            f"node must be a minion id (letters, digits, '.', '_', '-'), got {node!r}")
    target(config, node)  # listed in vms:nodes, or an error naming the known nodes
    folder = os.path.realpath(_keep_dir(opts, node))
    if key is None:
        kept = previous_keys(opts, node, backup)
        if not kept:
            what = f" kept with backup {backup}" if backup else ""
            raise leapfrog_errors.LeapfrogError(
                f"no key of {node}{what} under {folder} (a rebuild keeps one)")
        key = kept[0]
    if not isinstance(key, str):
        raise leapfrog_errors.LeapfrogError(f"key must be a file name, got {key!r}")
    path = os.path.realpath(os.path.join(folder, key))  # an absolute key stays absolute
    if os.path.dirname(path) != folder or not os.path.isfile(path):
        raise leapfrog_errors.LeapfrogError(
            f"key {key!r} is not a key kept for {node}: only files of {folder} are accepted "
            "(leapfrog.rebuild_node keeps them); nothing was changed")
    with open(path) as handle:
        pub = handle.read()
    try:
        from cryptography.hazmat.primitives import serialization

        serialization.load_pem_public_key(pub.encode())
    except (ValueError, TypeError, UnicodeError):
        raise leapfrog_errors.LeapfrogError(
            f"{path} is not a PEM public key: not accepted; nothing was changed") from None
    return path, pub


def accept_pub(opts, node, pub):
    """Make ``pub`` the master's accepted key of ``node`` (as ``key.gen_accept`` stores it)."""
    import salt.cache

    driver = opts.get("keys.cache_driver")
    if driver:
        salt.cache.Cache(opts, driver=driver).store("keys", node, {"pub": pub,
                                                                   "state": "accepted"})
        return
    path = os.path.join(opts["pki_dir"], "minions", node)  # Salt < 3008: one file per key
    with open(path, "w") as handle:
        handle.write(pub)


def finger(pub):
    """sha256 fingerprint (colon-separated hex) of a PEM public key."""
    import hashlib

    body = "".join(line for line in pub.strip().splitlines() if "-----" not in line)
    digest = hashlib.sha256(base64.b64decode(body)).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


# -- the run ----------------------------------------------------------------------------------
def call_minion(local, tgt, fun, timeout, arg=None, kwarg=None):
    """One job on one minion: its return, or RebuildFailed with the minion's error text."""
    ret = local.cmd(tgt, fun, arg=list(arg or []), kwarg=kwarg or {}, timeout=timeout,
                    full_return=True)
    got = (ret or {}).get(tgt)
    if not isinstance(got, dict) or "ret" not in got:
        raise leapfrog_errors.LeapfrogError(f"{tgt} did not answer {fun} within {timeout} s")
    if got.get("retcode", 0) not in (0, None) or (isinstance(got["ret"], str)
                                                  and got["ret"].startswith("ERROR")):
        raise leapfrog_errors.LeapfrogError(f"{fun} on {tgt} failed: {got['ret']}")
    return got["ret"]


def _cached_grains(opts, node):
    try:
        import salt.utils.master

        util = salt.utils.master.MasterPillarUtil(node, "list", use_cached_grains=True,
                                                  grains_fallback=False, opts=opts)
        return util.get_minion_grains().get(node) or {}
    except Exception:  # no cache, another driver's error: fall back to the VM's metadata
        return {}


class MinionFailed(leapfrog_errors.LeapfrogError):
    """A new VM's minion did not come in as it should, at ``step``."""

    def __init__(self, message, step):
        super().__init__(message)
        self.step = step


def await_minion(local, event, hyp, node, domain, seed_path, wanted_os, deadline, timeout,
                 phases):
    """Steps 4-7 of a new VM (rebuilt or throwaway): its minion's start event, its grains,
    the seed detached, its OS compared with ``wanted_os``, the master's modules synced to
    it (``saltutil.sync_all``); each timed into ``phases``.
    Returns (the new grains, the seed's fate) or raises MinionFailed."""
    now, step = time.monotonic(), "boot"

    def left():
        return max(5, int(deadline - time.monotonic()))

    def mark(name, since):
        phases[name] = round(time.monotonic() - since, 2)
        return time.monotonic()

    try:
        tag = f"salt/minion/{node}/start"
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise leapfrog_errors.LeapfrogError(
                    f"no {tag} event within {timeout} s: the new VM's minion did not "
                    "connect with the pre-accepted key")
            if event.get_event(wait=min(remaining, 5), tag=tag, full=True):
                break
        now = mark("boot", now)

        step = "grains"
        while True:
            try:
                new = call_minion(local, node, "grains.item", min(15, left()),
                                  arg=["os", "oscodename"])
                break
            except leapfrog_errors.LeapfrogError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        now = mark("grains", now)

        step = "seed"  # the new minion is in: the seed's private key has no use left
        seed = {"path": seed_path, "detached": False, "removed": False}
        if seed_path:
            seed.update(call_minion(local, hyp, "vm_backup.detach_seed", min(60, left()),
                                    arg=[domain, seed_path]))
            seed.pop("domain", None)
        now = mark("seed", now)
        step = "grains"
        differ = {k: (new.get(k), v) for k, v in wanted_os.items() if str(new.get(k)) != v}
        if differ:
            text = ", ".join(f"{k}={got!r} (expected {want!r})"
                             for k, (got, want) in sorted(differ.items()))
            raise leapfrog_errors.LeapfrogError(f"{node} came back with the wrong OS: {text}")
        # a new VM's minion has none of the master's own modules and states: its
        # redeploy SLS may use them (a formula's _states, leapfrog's _modules)
        step = "sync"
        call_minion(local, node, "saltutil.sync_all", min(120, left()))
        now = mark("sync", now)
    except leapfrog_errors.LeapfrogError as exc:
        mark(step, now)
        raise MinionFailed(str(exc), step) from None
    return new, seed


def run(opts, config, node, local, wheel, event, image=None, timeout=300, backup=None,
        stop=False):
    """Rebuild ``node``; return the summary or raise RebuildFailed (see module docstring).

    ``local`` is a LocalClient, ``wheel`` a WheelClient, ``event`` a master event listener
    already subscribed (created before anything is published, so no start event is missed).
    """
    started = time.monotonic()
    deadline = started + float(timeout)
    phases = {}
    step = "check"

    def left():
        return max(5, int(deadline - time.monotonic()))

    def mark(name, since):
        phases[name] = round(time.monotonic() - since, 2)
        return time.monotonic()

    plan = target(config, node, image)
    hyp, domain = plan["hypervisor"], plan["domain"]
    old_pub = None
    try:
        now = time.monotonic()
        master = master_address(opts, config["vms"])
        info = call_minion(local, hyp, "vm_backup.info", min(60, left()), arg=[domain])
        if info.get("active") and not stop:
            raise leapfrog_errors.LeapfrogError(
                f"domain {domain} on {hyp} is running: back it up and stop it first "
                "(vm_backup.backup restart=False), or pass stop=True")
        if backup:  # verified before anything changes; 'latest' becomes the backup's id
            backup = call_minion(local, hyp, "vm_backup.verify", min(600, left()),
                                 arg=[backup], kwarg={"domain": domain})["backup"]
        hyp_pub = key_of(wheel, hyp)
        if not hyp_pub:
            raise leapfrog_errors.LeapfrogError(f"no accepted key for hypervisor {hyp}")
        old_grains = _cached_grains(opts, node)
        old = {"os": old_grains.get("os"),
               "oscodename": old_grains.get("oscodename") or info.get("os_release")}
        now = mark("check", now)

        step = "key"
        old_pub = key_of(wheel, node)
        kept = keep_previous_key(opts, node, old_pub, backup) if old_pub else None
        pair = wheel_fun(wheel, "key.gen_accept")(id_=node, force=True)
        if not pair or "pub" not in pair or "priv" not in pair:
            raise leapfrog_errors.LeapfrogError(f"key.gen_accept gave no key pair for {node}")
        new_pub = pair["pub"]
        sealed = seal(pair.pop("priv"), hyp_pub)
        del pair
        now = mark("key", now)

        step = "rebuild"
        kwarg = {"node": node, "image": plan["image"], "domain": domain,
                 "minion_pub": new_pub, "minion_pem": sealed, "master": master,
                 "method": plan["method"], "os_release": plan["os"].get("oscodename"),
                 "grains": plan["os"], "stop": bool(stop), "start": True}
        if backup:
            kwarg["backup"] = backup
        rebuilt = call_minion(local, hyp, "vm_backup.rebuild", left(), kwarg=kwarg)
        del sealed, kwarg
        now = mark("rebuild", now)
    except leapfrog_errors.LeapfrogError as exc:
        if old_pub and step in ("key", "rebuild"):  # the VM was not replaced: old key back
            accept_pub(opts, node, old_pub)
            log.warning("leapfrog: rebuild of %s failed at %s; its previous key is accepted "
                        "again", node, step)
        mark(step, now)
        raise RebuildFailed(f"rebuild of {node} failed at {step}: {exc}", phases, step) from None

    try:
        new, seed = await_minion(local, event, hyp, node, domain,
                                  (rebuilt.get("seed") or {}).get("path"), plan["os"],
                                  deadline, timeout, phases)
    except MinionFailed as exc:
        raise RebuildFailed(f"rebuild of {node} failed at {exc.step}: {exc}", phases,
                            exc.step) from None

    return {
        "node": node,
        "hypervisor": hyp,
        "domain": domain,
        "image": plan["image"],
        "master": master,
        "old": old,
        "new": {"os": new.get("os"), "oscodename": new.get("oscodename")},
        "key": {"finger": finger(new_pub), "previous_kept": kept},
        "disk": rebuilt.get("disk"),
        "seed": seed,
        "phases": phases,
        "seconds": round(time.monotonic() - started, 2),
    }


def on_master(opts, func, *args, **kwargs):
    """``func(*args, local=, wheel=, event=, **kwargs)`` with this master's clients (a
    LocalClient, a WheelClient and the event bus listening before anything is published),
    destroyed at the end."""
    import salt.client  # pylint: disable=import-outside-toplevel
    import salt.utils.event  # pylint: disable=import-outside-toplevel
    import salt.wheel  # pylint: disable=import-outside-toplevel

    local = salt.client.get_local_client(opts["conf_file"])
    wheel = salt.wheel.WheelClient(opts)
    event = salt.utils.event.get_master_event(opts, opts["sock_dir"], listen=True)
    try:
        return func(*args, local=local, wheel=wheel, event=event, **kwargs)
    finally:
        event.destroy()
        wheel.destroy()
        local.destroy()


def run_on_master(opts, config, node, **kwargs):
    """``run`` with this master's clients (``on_master``)."""
    return on_master(opts, run, opts, config, node, **kwargs)


def summary_line(result):
    """One log line of a summary (never holds a key)."""
    return json.dumps({k: result.get(k) for k in ("node", "old", "new", "phases", "seconds")})
