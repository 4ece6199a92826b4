"""The lab's private libvirtd + virtlogd (no systemd), started and stopped by their own PIDs.

Everything lives under ``RUN_DIR/libvirt``: the daemons' configs, sockets, pid files, logs,
and libvirt's own state. libvirtd run as root keeps its state in fixed system paths
(/etc/libvirt, /run/libvirt, /var/lib/libvirt, ...), which two lab instances (or a host
libvirtd) would share; so the daemons start inside a private mount namespace
(``unshare --mount``) where those paths are bind mounts of directories under RUN_DIR.
Clients connect through the unix socket in ``RUN_DIR/libvirt/sock`` (no TCP listener)::

    qemu:///system?socket=RUN_DIR/libvirt/sock/libvirt-sock

qemu runs as root there (private qemu.conf, no security driver). ``down`` destroys and
undefines every domain of this private daemon (all of them were created through it, by the
lab or by leapfrog's modules), kills any qemu left by its pid file, then stops libvirtd and
virtlogd by their pid files.

    python -m lab.libvirt up RUN_DIR     # prints the URI
    python -m lab.libvirt down RUN_DIR
"""
import os
import shutil
import subprocess
import sys
import time

from lab import procs

BIND = {  # private dir (under RUN_DIR/libvirt) -> system path it replaces in the namespace
    "etc": "/etc/libvirt",
    "state": "/run/libvirt",
    "lib": "/var/lib/libvirt",
    "cache": "/var/cache/libvirt",
    "syslog": "/var/log/libvirt",
}


class Libvirt:
    """One private libvirtd + virtlogd pair rooted at ``run_dir/libvirt``."""

    def __init__(self, run_dir):
        self.run_dir = os.path.abspath(run_dir)
        self.dir = os.path.join(self.run_dir, "libvirt")
        self.sock_dir = os.path.join(self.dir, "sock")
        self.log_dir = os.path.join(self.dir, "log")
        self.libvirtd_pid = os.path.join(self.dir, "libvirtd.pid")
        self.virtlogd_pid = os.path.join(self.dir, "virtlogd.pid")
        self.uri = f"qemu:///system?socket={self.sock_dir}/libvirt-sock"
        if len(os.path.join(self.sock_dir, "libvirt-sock-admin")) > 100:
            raise ValueError(f"run dir {run_dir!r} is too long for a unix socket path")

    # -- configuration -------------------------------------------------------------------
    def _write_config(self):
        for sub in list(BIND) + ["sock", "log"]:
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        os.makedirs(os.path.join(self.dir, "etc", "qemu"), exist_ok=True)
        os.chmod(self.run_dir, 0o755)
        os.chmod(self.dir, 0o755)
        files = {
            "libvirtd.conf": (
                f'unix_sock_dir = "{self.sock_dir}"\n'
                'unix_sock_rw_perms = "0700"\n'
                'auth_unix_rw = "none"\n'
                'auth_unix_ro = "none"\n'
                'log_outputs = "3:file:{log}/libvirtd.log"\n'
            ).format(log=self.log_dir),
            "virtlogd.conf": f'log_outputs = "3:file:{self.log_dir}/virtlogd.log"\n',
            "qemu.conf": (
                'user = "root"\ngroup = "root"\ndynamic_ownership = 0\n'
                'security_driver = "none"\nremember_owner = 0\n'
            ),
            "libvirt.conf": "",
        }
        for name, text in files.items():
            with open(os.path.join(self.dir, "etc", name), "w") as handle:
                handle.write(text)

    # -- processes -----------------------------------------------------------------------
    _read_pid = staticmethod(procs.read_pid)
    _alive = staticmethod(procs.pid_alive)

    def running(self):
        return self._alive(self._read_pid(self.libvirtd_pid))

    def up(self, timeout=60):
        """Start virtlogd and libvirtd (if not running) and wait until the URI answers."""
        if self.running():
            return self.uri
        self._write_config()
        os.makedirs(BIND["state"], exist_ok=True)  # the mount point must exist on the host
        binds = "\n".join(
            f"mount --bind {os.path.join(self.dir, src)} {dst}" for src, dst in BIND.items()
        )
        script = f"""set -e
mount --make-rprivate / 2>/dev/null || true
{binds}
virtlogd -d -f {self.dir}/etc/virtlogd.conf -p {self.virtlogd_pid}
libvirtd -d -f {self.dir}/etc/libvirtd.conf -p {self.libvirtd_pid}
"""
        with open(os.path.join(self.log_dir, "start.log"), "ab") as log:
            subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                           check=True, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if os.path.exists(os.path.join(self.sock_dir, "libvirt-sock")):
                try:
                    self._probe()
                    return self.uri
                except Exception as exc:  # libvirt.libvirtError while it starts
                    last = exc
            time.sleep(0.2)
        raise RuntimeError(f"libvirtd did not answer on {self.uri} in {timeout}s: {last}; "
                           f"see {self.log_dir}")

    def _probe(self):
        try:
            import libvirt  # noqa: F401
        except ImportError:  # plain python3: ask virsh
            subprocess.run(["virsh", "-c", self.uri, "version"], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            return
        conn = self.connect()
        conn.getLibVersion()
        conn.close()

    def cleanup_domains_virsh(self):
        """cleanup_domains without libvirt-python (the CLI under plain python3)."""
        names = subprocess.run(["virsh", "-c", self.uri, "list", "--all", "--name"], check=True,
                               capture_output=True, text=True).stdout.split()
        for name in names:
            subprocess.run(["virsh", "-c", self.uri, "destroy", name], capture_output=True)
            subprocess.run(["virsh", "-c", self.uri, "undefine", name, "--nvram"],
                           capture_output=True)
        return names

    def connect(self):
        import libvirt  # libvirt-python, in the test venv

        return libvirt.open(self.uri)

    def cleanup_domains(self):
        """Destroy and undefine every domain of this private daemon; return their names."""
        names = []
        if not self.running():
            return names
        try:
            import libvirt
        except ImportError:
            return self.cleanup_domains_virsh()
        conn = self.connect()
        try:
            for dom in conn.listAllDomains():
                names.append(dom.name())
                try:
                    if dom.isActive():
                        dom.destroy()
                except libvirt.libvirtError:
                    pass
                try:
                    if dom.isPersistent():
                        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
                                          | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
                except libvirt.libvirtError:
                    dom.undefine()
        finally:
            conn.close()
        return names

    @staticmethod
    def _stop_pid(pid, timeout=15):
        procs.stop_pid(pid, timeout)

    def down(self):
        """Remove every domain, then stop libvirtd and virtlogd by their pid files."""
        try:
            self.cleanup_domains()
        except Exception:  # daemon half-dead: the pid-file sweep below still stops qemu
            pass
        # qemu processes left behind (libvirt keeps their pid files in its state dir)
        for root, _dirs, files in os.walk(os.path.join(self.dir, "state", "qemu")):
            for name in files:
                if name.endswith(".pid"):
                    self._stop_pid(self._read_pid(os.path.join(root, name)), timeout=5)
        self._stop_pid(self._read_pid(self.libvirtd_pid))
        self._stop_pid(self._read_pid(self.virtlogd_pid))

    def remove(self):
        """down() and delete the private directory."""
        self.down()
        shutil.rmtree(self.dir, ignore_errors=True)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] not in ("up", "down"):
        print("usage: python -m lab.libvirt up|down RUN_DIR", file=sys.stderr)
        return 2
    lab = Libvirt(argv[1])
    if argv[0] == "up":
        print(lab.up())
    else:
        lab.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
