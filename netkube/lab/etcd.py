"""Running Debian's etcd for a cluster or a test: argv on loopback with free ports, readiness."""

from __future__ import annotations

import os
import shutil
import socket
import time
import urllib.request
from pathlib import Path

ETCD_HINT = "run `sudo scripts/setup` (it unpacks Debian's etcd into /opt/netkube/etcd) or install etcd-server"
# scripts/setup unpacks Debian's etcd here rather than installing the package, which would also
# enable and start a system etcd service on the machine.
UNPACKED = Path("/opt/netkube/etcd/usr/bin/etcd")


def etcd_binary() -> str | None:
    if os.access(UNPACKED, os.X_OK):
        return str(UNPACKED)
    return shutil.which("etcd")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def etcd_argv(data_dir: Path, client_port: int, peer_port: int, name: str = "netkube") -> list[str]:
    """One member listening on 127.0.0.1 only; revision-mode auto-compaction keeps the last 10000
    revisions, the same history a watch can resume from as the sqlite store's event log."""
    binary = etcd_binary()
    if binary is None:
        raise FileNotFoundError(f"etcd is not installed; {ETCD_HINT}")
    client, peer = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
    return [binary, "--name", name, "--data-dir", str(data_dir),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"{name}={peer}", "--initial-cluster-state", "new",
            "--auto-compaction-mode", "revision", "--auto-compaction-retention", "10000",
            "--log-level", "warn", "--logger", "zap"]


def wait_etcd(url: str, timeout: float = 20.0, alive: object = None) -> None:
    """Until /health answers; alive() returning False means the process died (its log says why)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if callable(alive) and not alive():
            raise RuntimeError(f"etcd for {url} exited during start-up")
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError as e:
            last = e
        time.sleep(0.05)
    raise TimeoutError(f"etcd at {url} did not become healthy within {timeout:.0f}s ({last})")


def start_cluster_etcd(state_dir: Path, records: object, log_path: Path) -> str:
    """Debian's etcd for one cluster: data in <state>/etcd, loopback ports, recorded like the others."""
    from netkube.lab.processes import spawn_detached
    from netkube.lab.records import Records

    assert isinstance(records, Records)
    client_port, peer_port = free_port(), free_port()
    argv = etcd_argv(state_dir / "etcd", client_port, peer_port)
    pid = spawn_detached(argv, log_path, records, "etcd")
    url = f"http://127.0.0.1:{client_port}"
    wait_etcd(url, alive=lambda: _alive(pid))
    return url


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)  # reap it if it died (a zombie still has /proc/pid)
    except ChildProcessError:
        waited = 0
    return waited != pid and Path(f"/proc/{pid}").exists()
