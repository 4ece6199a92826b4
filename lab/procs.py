"""Process helpers every lab starter shares: free ports, pid files, stop by PID, memory."""
import os
import signal
import socket
import subprocess
import threading
import time


_HANDED_OUT = set()
_HANDED_OUT_LOCK = threading.Lock()


def free_port(address="127.0.0.1"):
    """Return a TCP port that is free on ``address`` right now.

    A port is never handed out twice by one process (the lab starts services from several
    threads, each choosing its ports before it binds them).
    """
    with _HANDED_OUT_LOCK:
        for _ in range(50):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((address, 0))
                port = sock.getsockname()[1]
            if port not in _HANDED_OUT:
                _HANDED_OUT.add(port)
                return port
    raise OSError(f"no free TCP port on {address} that this process has not used already")


def listening(address, port, timeout=1):
    """True when something accepts TCP connections on ``address:port``."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def tail(path, lines=15):
    """The last ``lines`` lines of a text file ('' when it is missing)."""
    try:
        with open(path, errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])
    except OSError:
        return ""


def read_pid(pid_file):
    """Return the PID in ``pid_file``, or None when the file is missing or empty."""
    try:
        with open(pid_file) as handle:
            text = handle.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def pid_alive(pid):
    """True when ``pid`` runs and is not a zombie."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def alive(pid_file):
    """True when the process named by ``pid_file`` runs."""
    return pid_alive(read_pid(pid_file))


def wait_for(predicate, timeout, what, interval=0.2):
    """Poll ``predicate`` until true; raise TimeoutError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout} s")
        time.sleep(interval)


def stop_pid(pid, timeout=20):
    """TERM ``pid``, wait up to ``timeout`` s, then KILL it. Returns True if it was running."""
    if not pid_alive(pid):
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
        while pid_alive(pid):
            time.sleep(0.05)
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    return True


def stop(pid_file, timeout=20):
    """Stop the process named by ``pid_file`` (see ``stop_pid``) and remove the file."""
    stopped = stop_pid(read_pid(pid_file), timeout)
    try:
        os.unlink(pid_file)
    except OSError:
        pass
    return stopped


def stop_child(proc, timeout=20, kill_wait=10):
    """Stop a ``subprocess.Popen`` child: TERM, wait ``timeout`` s, then KILL and reap it."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(kill_wait)


def vm_rss_kb(pid):
    """VmRSS of one process in KiB (0 when it is gone or ``pid`` is None)."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def rss_kb(pid):
    """VmRSS of one process and its descendants (e.g. gunicorn master + worker), in KiB."""
    total = 0
    pids = [pid]
    seen = set()
    while pids:
        current = pids.pop()
        if current in seen:
            continue
        seen.add(current)
        total += vm_rss_kb(current)
        try:
            with open(f"/proc/{current}/task/{current}/children") as handle:
                pids.extend(int(child) for child in handle.read().split())
        except (OSError, ValueError):
            pass
    return total
