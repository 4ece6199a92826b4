"""Bad inputs to vm_backup on a real private libvirtd, a real running TCG guest and real
qcow2 files: every case is refused with an error (a CommandExecutionError: Salt prints its
text, no traceback) that names the argument, the bad value and what is accepted, and changes
nothing a user could see: the disk's sha256, the backups on disk (and every file under the
backup dir), the domain's state and its XML, the files beside its disk.

The domain ``vmbad01`` runs the tiny bookworm guest. Cases named ``tight.<function>`` run
with pillar ``leapfrog:backups:headroom`` larger than the disk's filesystem, so a restore
has no room for its copy.
"""
import os
import shutil

import pytest
from salt.exceptions import CommandExecutionError

from lab import guest
from tests.functional.test_vm_backup import (  # noqa: F401  (fixtures)
    _sha256, loaders, make_loaders, remove_domain, vm, work)
from tests.keypair import rsa_pair

DOMAIN = "vmbad01"
HUGE = 2 ** 49  # bytes of headroom
INACTIVE = 2  # libvirt.VIR_DOMAIN_XML_INACTIVE
RANGE = "(seconds) must be a number (from 1 to 86400)"
RANGE_OUT = "(seconds) must be from 1 to 86400"
KEEP = "keep must be a whole number (from 1 to 1000)"
NOT_OURS = "is not a backup of this hypervisor: give an id <domain>/<name>"
NAME = "must be 1 to 128 letters, digits, '.', '_' or '-'"

# (case id, vm_backup function, args, kwargs, text the error must hold); "{...}" strings
# are filled from the fixture's facts (the real backup id, the disk, the folder links)
BAD_INPUTS = [
    ("stop-timeout-nan", "stop", ["{domain}"], {"timeout": "nan"}, f"timeout {RANGE}, got 'nan' (not finite)"),
    ("stop-timeout-negative", "stop", ["{domain}"], {"timeout": -1}, f"timeout {RANGE_OUT}, got -1"),
    ("stop-timeout-inf", "stop", ["{domain}"], {"timeout": "inf"}, f"timeout {RANGE}, got 'inf' (not finite)"),
    ("stop-timeout-bool", "stop", ["{domain}"], {"timeout": True}, f"timeout {RANGE}, got True"),
    ("backup-timeout-nan", "backup", ["{domain}"], {"timeout": float("nan")},
     f"timeout {RANGE}, got nan (not finite)"),
    ("backup-mode-bogus", "backup", ["{domain}"], {"mode": "bogus"},
     "mode must be one of offline, live, got 'bogus'"),
    ("backup-restart-maybe", "backup", ["{domain}"], {"restart": "maybe"},
     "restart must be true or false, got 'maybe'"),
    ("backup-tag-newline", "backup", ["{domain}"], {"tag": "run1\n"},
     "tag must be letters, digits, '.', '_' or '-' (at most 64), got 'run1\\n'"),
    ("backup-domain-newline", "backup", ["{domain}\n"], {}, f"domain {NAME}"),
    ("backup-domain-dotdot", "backup", ["../etc"], {}, f"domain {NAME}"),
    ("prune-keep-abc", "prune", [], {"keep": "abc"}, f"{KEEP}, got 'abc'"),
    ("prune-keep-zero", "prune", [], {"keep": 0}, "keep must be from 1 to 1000, got 0"),
    ("prune-keep-fraction", "prune", [], {"keep": 2.5}, f"{KEEP}, got 2.5"),
    ("verify-dotdot", "verify", ["../../etc"], {}, NOT_OURS),
    ("verify-absolute", "verify", ["/etc"], {}, NOT_OURS),
    ("verify-symlink-out", "verify", ["{link}"], {}, NOT_OURS),
    ("verify-domain-link-out", "verify", ["{domain_link}"], {}, NOT_OURS),
    ("manifest-id-newline", "manifest", ["{backup}\n"], {}, NOT_OURS),
    ("restore-id-dotdot", "restore", ["{domain}", "{domain}/../../{backup}"], {"stop": True},
     NOT_OURS),
    ("restore-stop-maybe", "restore", ["{domain}", "{backup}"], {"stop": "maybe"},
     "stop must be true or false, got 'maybe'"),
    ("restore-timeout-negative", "restore", ["{domain}", "{backup}"],
     {"stop": True, "timeout": -5}, f"timeout {RANGE_OUT}, got -5"),
    ("restore-no-room", "tight.restore", ["{domain}", "{backup}"], {"stop": True},
     "bytes free, "),
    ("rebuild-method-bogus", "rebuild", ["{domain}", "{image}"], {"method": "bogus", "stop": True},
     "method must be one of overlay, copy, got 'bogus'"),
    ("rebuild-clear-pem", "rebuild", ["{domain}", "{image}"],
     {"minion_pem": "{pem}", "minion_pub": "{pub}", "master": "10.0.0.5", "stop": True},
     "minion_pem is a private key in clear: refused"),
    ("seed-clear-pem", "seed", ["{images}/x-seed.iso", "{domain}", "10.0.0.5", "{pub}", "{pem}"],
     {}, "minion_pem is a private key in clear: refused"),
    ("detach-seed-not-a-cdrom", "detach_seed", ["{domain}", "{disk}"], {},
     "is not in a CD-ROM of domain 'vmbad01': not removed"),
]


def _fill(value, facts):
    if isinstance(value, str):
        return value.format(**facts)
    if isinstance(value, list):
        return [_fill(v, facts) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, facts) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def bad(libvirt_lab, guest_images, work, vm):  # noqa: F811
    images = os.path.join(work, "bad-images")
    conn = libvirt_lab.connect()
    try:
        made = guest.define_node(conn, DOMAIN, images, release=guest.OLD)
        guest.wait_ready(made["console"], 1, timeout=90)
        backup = vm.backup(DOMAIN, mode="live", tag="bad")["backup"]
        root = os.path.dirname(os.path.dirname(vm.verify(backup)["path"]))
        # a sound backup's copy outside the backup dir, reached through links from inside
        outside = os.path.join(work, "outside")
        shutil.copytree(vm.verify(backup)["path"], os.path.join(outside, DOMAIN, "copy"))
        link = f"{DOMAIN}/20990101T000000Z-link"
        os.symlink(os.path.join(outside, DOMAIN, "copy"), os.path.join(root, link))
        os.symlink(os.path.join(outside, DOMAIN), os.path.join(root, "vmlink01"))
        pub, pem = rsa_pair()
        yield {"facts": {"domain": DOMAIN, "backup": backup, "link": link,
                         "domain_link": "vmlink01/copy", "disk": made["disk"],
                         "images": images, "image": guest_images["images"]["trixie"],
                         "pub": pub, "pem": pem},
               "conn": conn, "disk": made["disk"], "images": images, "root": root}
    finally:
        remove_domain(conn, DOMAIN)


@pytest.fixture(scope="module")
def tight(libvirt_lab, work):  # noqa: F811
    """vm_backup with a headroom no filesystem here has."""
    return make_loaders(libvirt_lab, work, headroom=HUGE).modules.vm_backup


def _seen(bad, vm):  # noqa: F811
    """What a user can see of the domain and its backups."""
    dom = bad["conn"].lookupByName(DOMAIN)
    files = sorted(os.path.join(d, f) for d, _, names in os.walk(os.path.dirname(bad["root"]))
                   for f in names)
    return {"disk": _sha256(bad["disk"]), "backups": [b["id"] for b in vm.list()],
            "files": files, "active": bool(dom.isActive()), "xml": dom.XMLDesc(INACTIVE),
            "beside the disk": sorted(os.listdir(bad["images"]))}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_refused_and_changes_nothing(bad, vm, tight, case):  # noqa: F811
    _, func, args, kwargs, text = case
    module = vm
    if func.startswith("tight."):
        module, func = tight, func.split(".", 1)[1]
    facts = bad["facts"]
    before = _seen(bad, vm)
    assert before["active"] and DOMAIN in [b.split("/")[0] for b in before["backups"]]
    with pytest.raises(CommandExecutionError) as info:
        getattr(module, func)(*_fill(args, facts), **_fill(kwargs, facts))
    message = str(info.value)
    assert text in message, message
    assert facts["pem"] not in message
    assert _seen(bad, vm) == before


def test_no_room_names_the_need_and_the_fix(bad, tight):
    with pytest.raises(CommandExecutionError) as info:
        tight.restore(DOMAIN, bad["facts"]["backup"], stop=True)
    message = str(info.value)
    assert f"not enough space in {bad['images']} to restore {bad['facts']['backup']}" in message
    assert f"+ {HUGE} headroom); free " in message
    assert "(or lower leapfrog:backups:headroom) and run the restore again" in message
    assert message.endswith("nothing was changed")
