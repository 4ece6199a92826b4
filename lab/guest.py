"""The lab's tiny guest: a Debian kernel + busybox initramfs, and two qcow2 "OS releases".

Built once and cached under ``$LEAPFROG_CACHE/guest`` (default /var/cache/leapfrog/guest):

- ``vmlinuz``: the kernel of Debian's ``linux-image-amd64`` (``apt-get download`` of the
  versioned package it depends on, unpacked with ``dpkg-deb -x``);
- ``initrd.gz``: busybox-static plus the few kernel modules the guest needs (virtio disk,
  ext4, ACPI button/evdev, IDE CD-ROM + iso9660 for a cloud-init seed) and ``/init``;
- ``bookworm.qcow2`` / ``trixie.qcow2``: base disks (ext2, 256 MiB virtual) whose
  ``/etc/os-release`` names the release, so a rebuild from the other image visibly changes
  the OS the guest reports.

The guest's ``/init`` mounts the first virtio disk (formatting a blank one on first boot),
keeps a marker (a UUID chosen at the disk's first boot) and a boot count on it, reads the
NoCloud seed from a CD-ROM labelled ``cidata`` when one is attached, and writes one line to
the serial console (libvirt logs it to a file)::

    LEAPFROG-GUEST os=bookworm boot=2 marker=<uuid> seed=<instance-id|none> host=<name>

That line is the guest's health signal (no network in the guest). The ACPI power button
(``virsh shutdown``) makes it sync, unmount and power off.

``python -m lab.guest build`` builds (or reuses) everything and prints the paths.
"""
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from xml.sax.saxutils import escape

CACHE = os.environ.get("LEAPFROG_CACHE", "/var/cache/leapfrog")
BUILD_VERSION = "3"  # bump to rebuild cached artefacts after changing this file

RELEASES = {
    "bookworm": {"ID": "debian", "NAME": "Debian GNU/Linux", "VERSION_ID": "12",
                 "VERSION_CODENAME": "bookworm"},
    "trixie": {"ID": "debian", "NAME": "Debian GNU/Linux", "VERSION_ID": "13",
               "VERSION_CODENAME": "trixie"},
}
OLD, NEW = "bookworm", "trixie"

# Modules /init loads, in this order after their dependencies (resolved from .modinfo).
MODULES = [
    "virtio_pci", "virtio_blk", "crc32c_generic", "ext4", "button", "evdev",
    "ata_piix", "sr_mod", "isofs",
]
DISK_SIZE = "256M"
CONSOLE_RE = re.compile(
    r"LEAPFROG-GUEST os=(?P<os>\S+) boot=(?P<boot>\d+) marker=(?P<marker>\S+) "
    r"seed=(?P<seed>\S+) host=(?P<host>\S+)"
)
METADATA_NS = "https://leapfrog.invalid/xmlns/vm/1"

INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /etc/modules.list); do insmod /lib/modules/$m.ko 2>/dev/null; done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do usleep 100000; i=$((i+1)); done
if ! mount /dev/vda /mnt 2>/dev/null; then
  echo "leapfrog-guest: blank disk, formatting /dev/vda"
  mke2fs -q -L leapfrog /dev/vda && mount /dev/vda /mnt
  mkdir -p /mnt/etc && cp /etc/os-release /mnt/etc/os-release
fi
mkdir -p /mnt/leapfrog
[ -s /mnt/leapfrog/marker ] || cat /proc/sys/kernel/random/uuid > /mnt/leapfrog/marker
boot=$(( $(cat /mnt/leapfrog/boots 2>/dev/null || echo 0) + 1 ))
echo $boot > /mnt/leapfrog/boots
sync
codename=$(sed -n 's/^VERSION_CODENAME=//p' /mnt/etc/os-release 2>/dev/null)
seed=none
host=$(cat /etc/hostname)
for dev in /dev/sr0 /dev/sr1; do
  [ -b $dev ] || continue
  mkdir -p /seed
  if mount -t iso9660 -o ro $dev /seed 2>/dev/null; then
    seed=$(sed -n 's/^instance-id: *//p' /seed/meta-data | tr -d '"' | tr -d "'")
    h=$(sed -n 's/^local-hostname: *//p' /seed/meta-data | tr -d '"' | tr -d "'")
    [ -n "$h" ] && host=$h
    umount /seed
    break
  fi
done
hostname "$host"
ev=""
for d in /sys/class/input/event*; do
  grep -q "Power Button" $d/device/name 2>/dev/null && ev=/dev/input/${d##*/}
done
if [ -n "$ev" ]; then
  # listen before saying ready: a shutdown request right after the ready line is not lost
  (
    dd if=$ev of=/dev/null bs=24 count=1 2>/dev/null
    echo "LEAPFROG-GUEST power button: shutting down"
    sync
    umount /mnt
    poweroff -f
  ) &
  usleep 200000
fi
echo "LEAPFROG-GUEST os=${codename:-unknown} boot=$boot marker=$(cat /mnt/leapfrog/marker) seed=${seed:-none} host=$host"
while true; do sleep 3600; done
"""


def guest_dir(cache=None):
    return os.path.join(cache or CACHE, "guest")


def _run(argv, **kwargs):
    return subprocess.run(argv, check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, **kwargs)


def kernel_package():
    """The versioned linux-image package linux-image-amd64 depends on."""
    out = subprocess.run(["apt-cache", "depends", "linux-image-amd64"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True).stdout
    if "Depends: linux-image-" not in out:  # no package lists yet on a fresh machine
        _run(["apt-get", "update", "-qq"])
        out = _run(["apt-cache", "depends", "linux-image-amd64"]).stdout
    match = re.search(r"Depends: (linux-image-\S+)", out)
    if not match:
        raise RuntimeError(f"cannot find the kernel package behind linux-image-amd64: {out}")
    return match.group(1)


def _modinfo_depends(path):
    with open(path, "rb") as handle:
        data = handle.read()
    match = re.search(rb"depends=([^\0]*)\0", data)
    return [d for d in match.group(1).decode().split(",") if d] if match else []


def _module_closure(moddir, wanted):
    index = {}
    for path in glob.glob(os.path.join(moddir, "kernel", "**", "*.ko"), recursive=True):
        index[os.path.basename(path)[:-3].replace("-", "_")] = path
    order = []

    def visit(name):
        name = name.replace("-", "_")
        if name in order:
            return
        if name not in index:
            return  # built into the kernel
        for dep in _modinfo_depends(index[name]):
            visit(dep)
        order.append(name)

    for name in wanted:
        visit(name)
    return [(name, index[name]) for name in order]


def _write_os_release(path, release):
    fields = RELEASES[release]
    with open(path, "w") as handle:
        handle.write(f'PRETTY_NAME="{fields["NAME"]} {fields["VERSION_ID"]} ({release})"\n')
        for key, value in fields.items():
            handle.write(f'{key}="{value}"\n' if " " in value else f"{key}={value}\n")


def build_kernel(out, work):
    pkg = kernel_package()
    _run(["apt-get", "download", pkg], cwd=work)
    deb = glob.glob(os.path.join(work, f"{pkg}_*.deb"))[0]
    root = os.path.join(work, "kernel")
    _run(["dpkg-deb", "-x", deb, root])
    vmlinuz = glob.glob(os.path.join(root, "boot", "vmlinuz-*"))[0]
    shutil.copy(vmlinuz, os.path.join(out, "vmlinuz.tmp"))
    os.rename(os.path.join(out, "vmlinuz.tmp"), os.path.join(out, "vmlinuz"))
    return glob.glob(os.path.join(root, "lib", "modules", "*"))[0]


def build_initramfs(out, work, moddir, release=OLD):
    root = os.path.join(work, "initramfs")
    for sub in ("bin", "dev", "proc", "sys", "mnt", "etc", "lib/modules", "seed", "tmp"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    shutil.copy("/bin/busybox", os.path.join(root, "bin", "busybox"))
    os.symlink("busybox", os.path.join(root, "bin", "sh"))
    names = []
    for name, path in _module_closure(moddir, MODULES):
        shutil.copy(path, os.path.join(root, "lib", "modules", f"{name}.ko"))
        names.append(name)
    with open(os.path.join(root, "etc", "modules.list"), "w") as handle:
        handle.write("\n".join(names) + "\n")
    _write_os_release(os.path.join(root, "etc", "os-release"), release)
    with open(os.path.join(root, "etc", "hostname"), "w") as handle:
        handle.write("leapfrog-guest\n")
    with open(os.path.join(root, "init"), "w") as handle:
        handle.write(INIT)
    os.chmod(os.path.join(root, "init"), 0o755)
    files = _run(["find", "."], cwd=root).stdout
    cpio = subprocess.run(["busybox", "cpio", "-o", "-H", "newc"], cwd=root, input=files.encode(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True).stdout
    tmp = os.path.join(out, "initrd.gz.tmp")
    with open(tmp, "wb") as handle:
        handle.write(subprocess.run(["gzip", "-9"], input=cpio, stdout=subprocess.PIPE,
                                    check=True).stdout)
    os.rename(tmp, os.path.join(out, "initrd.gz"))
    return names


def build_base_image(out, work, release):
    """An ext2 disk (qcow2) whose /etc/os-release names ``release``."""
    stage = os.path.join(work, f"disk-{release}")
    os.makedirs(os.path.join(stage, "etc"), exist_ok=True)
    os.makedirs(os.path.join(stage, "leapfrog"), exist_ok=True)
    _write_os_release(os.path.join(stage, "etc", "os-release"), release)
    raw = os.path.join(work, f"{release}.raw")
    _run(["mke2fs", "-q", "-t", "ext2", "-L", "leapfrog", "-d", stage, raw, DISK_SIZE])
    tmp = os.path.join(out, f"{release}.qcow2.tmp")
    _run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, tmp])
    os.rename(tmp, os.path.join(out, f"{release}.qcow2"))


def ensure(cache=None):
    """Build what is missing and return the paths: kernel, initrd, images {release: path}."""
    out = guest_dir(cache)
    os.makedirs(out, exist_ok=True)
    stamp = os.path.join(out, f"complete-{BUILD_VERSION}")
    paths = {
        "kernel": os.path.join(out, "vmlinuz"),
        "initrd": os.path.join(out, "initrd.gz"),
        "images": {release: os.path.join(out, f"{release}.qcow2") for release in RELEASES},
    }
    if os.path.exists(stamp):
        return paths
    work = tempfile.mkdtemp(prefix="leapfrog-guest-")
    try:
        moddir = build_kernel(out, work)
        build_initramfs(out, work, moddir)
        for release in RELEASES:
            build_base_image(out, work, release)
        with open(stamp, "w") as handle:
            json.dump({"built": time.time()}, handle)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return paths


def overlay(base, path, size=None):
    """A qcow2 overlay of ``base`` at ``path`` (the lab's node disk)."""
    argv = ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, path]
    if size:
        argv.append(size)
    _run(argv)
    return path


def copy_image(base, path):
    """A standalone copy of ``base`` at ``path``."""
    _run(["qemu-img", "convert", "-O", "qcow2", base, path])
    return path


def domain_xml(name, disk, console_log, kernel, initrd, seed=None, memory_mib=192,
               os_release=None, image=None, vcpus=1):
    """Domain XML of a tiny guest: TCG, direct kernel boot, ACPI, console to a file."""
    seed_xml = ""
    if seed:
        seed_xml = f"""
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file='{escape(seed)}'/>
      <target dev='hdc' bus='ide'/>
      <readonly/>
    </disk>"""
    meta = ""
    if os_release or image:
        meta = f"""
  <metadata>
    <leapfrog:vm xmlns:leapfrog='{METADATA_NS}'>
      <leapfrog:os>{escape(os_release or '')}</leapfrog:os>
      <leapfrog:image>{escape(image or '')}</leapfrog:image>
    </leapfrog:vm>
  </metadata>"""
    return f"""<domain type='qemu'>
  <name>{escape(name)}</name>{meta}
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>{vcpus}</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{escape(kernel)}</kernel>
    <initrd>{escape(initrd)}</initrd>
    <cmdline>console=ttyS0 quiet panic=-1</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{escape(disk)}'/>
      <target dev='vda' bus='virtio'/>
    </disk>{seed_xml}
    <serial type='file'>
      <source path='{escape(console_log)}' append='on'/>
      <target port='0'/>
    </serial>
    <console type='file'>
      <source path='{escape(console_log)}' append='on'/>
      <target type='serial' port='0'/>
    </console>
    <memballoon model='none'/>
  </devices>
</domain>
"""


def define_node(conn, name, folder, release=OLD, start=True, memory_mib=192, cache=None):
    """Create ``folder/<name>.qcow2`` (a copy of the release's base disk) and define the
    node's domain (console in ``folder/<name>.console``); start it if ``start``.

    Returns {"domain", "disk", "console", "xml"}. ``conn`` is a libvirt connection.
    """
    paths = ensure(cache)
    os.makedirs(folder, exist_ok=True)
    disk = copy_image(paths["images"][release], os.path.join(folder, f"{name}.qcow2"))
    console = os.path.join(folder, f"{name}.console")
    xml = domain_xml(name, disk, console, paths["kernel"], paths["initrd"],
                     memory_mib=memory_mib, os_release=release, image=paths["images"][release])
    dom = conn.defineXML(xml)
    if start:
        dom.create()
    return {"domain": name, "disk": disk, "console": console, "xml": xml}


def read_seed(path):
    """Read a NoCloud seed ISO (what cloud-init would): {"user_data": dict, "meta_data":
    dict, "label": str}. The lab's cloud-init stand-in uses it; it needs pycdlib + PyYAML."""
    import io

    import pycdlib
    import yaml

    iso = pycdlib.PyCdlib()
    iso.open(path)
    try:
        out = {"label": iso.pvd.volume_identifier.decode().strip()}
        for name in ("user-data", "meta-data"):
            data = io.BytesIO()
            iso.get_file_from_iso_fp(data, rr_path=f"/{name}")
            out[name.replace("-", "_")] = yaml.safe_load(data.getvalue().decode()) or {}
    finally:
        iso.close()
    return out


def console_lines(path):
    """Every LEAPFROG-GUEST line of a console log, parsed, oldest first."""
    if not os.path.exists(path):
        return []
    with open(path, errors="replace") as handle:
        return [m.groupdict() for m in CONSOLE_RE.finditer(handle.read())]


def wait_ready(path, count=1, timeout=120):
    """Wait until the console log holds ``count`` LEAPFROG-GUEST lines; return the last."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = console_lines(path)
        if len(lines) >= count:
            return lines[-1]
        time.sleep(0.25)
    tail = ""
    if os.path.exists(path):
        with open(path, errors="replace") as handle:
            tail = handle.read()[-2000:]
    raise TimeoutError(f"guest console {path} showed no ready line #{count} in {timeout}s:\n{tail}")


def new_marker():
    return str(uuid.uuid4())


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] != ["build"]:
        print("usage: python -m lab.guest build", file=sys.stderr)
        return 2
    print(json.dumps(ensure(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
