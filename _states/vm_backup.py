"""
States over the ``vm_backup`` execution module (run on the hypervisor minion).

- ``vm_backup.present``: a verified backup of a domain exists (per tag, or younger than a
  maximum age); otherwise one is taken.
- ``vm_backup.runs_image``: a domain is defined, built from a given OS image, and running;
  otherwise it is rebuilt from that image (``vm_backup.rebuild``).
- ``vm_backup.restored``: a domain's disks are those of a given backup; otherwise the
  backup is restored.

.. code-block:: yaml

    ctl01-backup:
      vm_backup.present:
        - name: ctl01
        - tag: run42
        - restart: false

    ctl01-trixie:
      vm_backup.runs_image:
        - name: ctl01
        - image: /var/lib/libvirt/images/trixie.qcow2
        - os_release: trixie
        - master: 10.0.0.5
        - minion_pub: ...
        - minion_pem: {sealed: ...}   # only sealed to kvm01's minion key (leapfrog_rebuild.seal)

``minion_pem`` is refused in clear (it would sit in the job cache and events); the
arguments go through ``vm_backup``'s checks (names, numbers, flags), whose errors become
the state's comment.
"""
import datetime
import os

from salt.exceptions import CommandExecutionError

import leapfrog_files

__virtualname__ = "vm_backup"


def __virtual__():
    if "vm_backup.backup" in __salt__:
        return __virtualname__
    return False, "the vm_backup execution module is not available"


def _ret(name):
    return {"name": name, "result": False, "changes": {}, "comment": ""}


def _test():
    return bool(__opts__.get("test"))


def _age_seconds(created):
    then = datetime.datetime.fromisoformat(created)
    return (datetime.datetime.now(datetime.timezone.utc) - then).total_seconds()


def _find(name, tag, max_age, backup_dir):
    """The newest backup matching tag/max_age that verifies, or None; and any problems."""
    problems = []
    for item in __salt__["vm_backup.list"](domain=name, backup_dir=backup_dir):
        if tag is not None and item.get("tag") != tag:
            continue
        if max_age is not None and (not item.get("created")
                                    or _age_seconds(item["created"]) > float(max_age)):
            continue
        try:
            __salt__["vm_backup.verify"](item["id"], backup_dir=backup_dir)
        except Exception as exc:  # a broken backup does not count; say so
            problems.append(str(exc).splitlines()[0])
            continue
        return item, problems
    return None, problems


def present(name, tag=None, max_age=None, mode="offline", restart=True, timeout=None,
            os_release=None, uri=None, backup_dir=None):
    """
    Ensure a verified backup of domain ``name`` exists: one with ``tag`` (when given) and
    younger than ``max_age`` seconds (when given); otherwise take one with
    ``vm_backup.backup`` (same arguments) and verify it.

    name
        The libvirt domain.
    tag
        e.g. the upgrade run id: a re-run finds the backup of its own run.
    """
    ret = _ret(name)
    found, problems = _find(name, tag, max_age, backup_dir)
    if found:
        ret["result"] = True
        ret["comment"] = f"Verified backup {found['id']} of {name} exists"
        return ret
    what = f"back up domain {name} ({mode}" + (f", tag {tag}" if tag else "") + ")"
    if problems:
        what += "; unusable backups: " + "; ".join(problems)
    if _test():
        ret["result"] = None
        ret["comment"] = f"Would {what}"
        ret["changes"] = {"old": None, "new": f"a new {mode} backup of {name}"}
        return ret
    try:
        made = __salt__["vm_backup.backup"](name, mode=mode, tag=tag, restart=restart,
                                            timeout=timeout, os_release=os_release, uri=uri,
                                            backup_dir=backup_dir)
        __salt__["vm_backup.verify"](made["backup"], backup_dir=backup_dir)
    except CommandExecutionError as exc:
        ret["comment"] = f"Backup of {name} failed: {exc}"
        return ret
    found, _ = _find(name, tag, max_age, backup_dir)
    if not found or found["id"] != made["backup"]:
        ret["comment"] = f"Backup {made['backup']} was taken but is not found as expected"
        return ret
    ret["result"] = True
    ret["comment"] = f"Backed up and verified {name} as {made['backup']}"
    ret["changes"] = {"old": None, "new": made["backup"]}
    return ret


def _current(name, uri):
    try:
        return __salt__["vm_backup.info"](name, uri=uri)
    except Exception as exc:  # DomainNotFound
        if "is not defined" in str(exc):
            return None
        raise


def runs_image(name, image, node=None, os_release=None, master=None, minion_pub=None,
               minion_pem=None, seed_iso=None, template=None, method="overlay",
               images_dir=None, grains=None, stop=False, backup=None, uri=None,
               backup_dir=None):
    """
    Ensure domain ``name`` runs a disk built from ``image`` (its leapfrog metadata names that
    image) and is active; otherwise rebuild it with ``vm_backup.rebuild`` (same arguments;
    ``node`` defaults to ``name``). A domain that runs another image is only replaced when
    ``stop=True``: take its backup first (``vm_backup.present``) and name it in ``backup``
    so the rebuild refuses to run unless that backup verifies.
    """
    ret = _ret(name)
    image = os.path.abspath(image)
    current = _current(name, uri)
    if current and current.get("image") == image and current["active"]:
        ret["result"] = True
        ret["comment"] = f"Domain {name} runs image {image}"
        return ret
    if current and current.get("image") == image and not current["active"]:
        if _test():
            ret["result"] = None
            ret["comment"] = f"Would start domain {name} (built from {image})"
            ret["changes"] = {"old": {"active": False}, "new": {"active": True}}
            return ret
        __salt__["vm_backup.start"](name, uri=uri)
        ret["result"] = True
        ret["comment"] = f"Started domain {name} (built from {image})"
        ret["changes"] = {"old": {"active": False}, "new": {"active": True}}
        return ret
    old = {"image": current.get("image"), "active": current["active"]} if current else None
    if _test():
        ret["result"] = None
        ret["comment"] = f"Would rebuild domain {name} from {image}"
        ret["changes"] = {"old": old, "new": {"image": image, "active": True}}
        return ret
    try:
        __salt__["vm_backup.rebuild"](node or name, image, minion_pub=minion_pub,
                                      minion_pem=minion_pem, master=master, seed_iso=seed_iso,
                                      domain=name, template=template, method=method,
                                      images_dir=images_dir, os_release=os_release,
                                      grains=grains, stop=stop, start=True, backup=backup,
                                      uri=uri, backup_dir=backup_dir)
    except CommandExecutionError as exc:
        ret["comment"] = f"Rebuild of {name} from {image} failed: {exc}"
        return ret
    now = _current(name, uri)
    if not now or now.get("image") != image or not now["active"]:
        ret["comment"] = f"Rebuilt {name} but it does not run {image}: {now}"
        return ret
    ret["result"] = True
    ret["comment"] = f"Rebuilt domain {name} from {image}"
    ret["changes"] = {"old": old, "new": {"image": image, "active": True}}
    return ret


def restored(name, backup, stop=False, start=True, uri=None, backup_dir=None):
    """
    Ensure domain ``name`` is the one saved in ``backup`` (its UUID, and disks whose sha256
    still equal the manifest's while it is stopped, or it runs); otherwise restore it with
    ``vm_backup.restore``. A domain that booted since the restore has changed its disks, so
    a defined domain with the backup's UUID counts as restored once it runs.
    """
    ret = _ret(name)
    try:
        checked = __salt__["vm_backup.verify"](backup, backup_dir=backup_dir, domain=name)
    except CommandExecutionError as exc:
        ret["comment"] = f"Backup {backup} of {name} is not usable: {exc}"
        return ret
    manifest_disks = {d["target"]: d["sha256"] for d in checked["disks"]}
    manifest = __salt__["vm_backup.manifest"](backup, backup_dir=backup_dir, domain=name)
    current = _current(name, uri)
    same = False
    if current and current["uuid"] == manifest["uuid"]:
        if current["active"]:
            same = True
        else:
            same = all(leapfrog_files.sha256(d["source"]) == manifest_disks.get(d["target"])
                       for d in current["disks"] if os.path.exists(d["source"]))
    if same and (current["active"] or not start):
        ret["result"] = True
        ret["comment"] = f"Domain {name} is the one of backup {checked['backup']}"
        return ret
    old = {"uuid": current["uuid"], "active": current["active"]} if current else None
    new = {"uuid": manifest["uuid"], "backup": checked["backup"], "active": bool(start)}
    if _test():
        ret["result"] = None
        ret["comment"] = f"Would restore {name} from backup {checked['backup']}"
        ret["changes"] = {"old": old, "new": new}
        return ret
    try:
        if same:
            __salt__["vm_backup.start"](name, uri=uri)
        else:
            __salt__["vm_backup.restore"](name, checked["backup"], stop=stop, start=start,
                                          uri=uri, backup_dir=backup_dir)
    except CommandExecutionError as exc:
        ret["comment"] = f"Restore of {name} from {checked['backup']} failed: {exc}"
        return ret
    now = _current(name, uri)
    if not now or now["uuid"] != manifest["uuid"] or (start and not now["active"]):
        ret["comment"] = f"Restore of {name} from {checked['backup']} did not take: {now}"
        return ret
    ret["result"] = True
    ret["comment"] = f"Restored {name} from backup {checked['backup']}"
    ret["changes"] = {"old": old, "new": new}
    return ret
