"""A throwaway cluster for the start-up, pod and programming benches: its own state root under /var/tmp, a free
API port, `netkube up`, and `netkube down` plus the state root removed afterwards, also when `up`
fails (what it made is recorded and `down` removes it)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from netkube.config import ClusterConfig
from netkube.lab.cleanup import remove_recorded
from netkube.lab.records import Records

NETKUBE = [sys.executable, "-m", "netkube.cli.main"]


@dataclass
class BenchCluster:
    cfg: ClusterConfig
    up_seconds: float

    @property
    def kubectl(self) -> list[str]:
        return ["kubectl", "--kubeconfig", str(self.cfg.kubeconfig_path),
                "--cache-dir", str(self.cfg.state_dir / "kubectl-cache")]


def ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))


def bench_manifest(n: int) -> str:
    """N bare httpd pods labelled app=bench, as one multi-document YAML for `kubectl create -f -`."""
    import yaml

    return "---\n".join(
        yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"bench-{i}", "labels": {"app": "bench"}},
                        "spec": {"containers": [{"name": "httpd", "image": "httpd"}]}})
        for i in range(n))


@contextmanager
def bench_cluster(prefix: str, up_args: tuple[str, ...] = (), attempts: int = 1) -> Iterator[BenchCluster]:
    """attempts: `netkube up` tries (a busy 2-core machine can miss its start-up deadline); the
    cluster is taken down between them."""
    state_root = tempfile.mkdtemp(prefix="netkube-bench-", dir="/var/tmp")
    name = f"{prefix}{uuid.uuid4().hex[:5]}"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = [*NETKUBE, "--state-root", state_root]
    try:
        for attempt in range(attempts):
            t0 = time.monotonic()
            up = subprocess.run([*base, "up", "--name", name, "--api-port", str(port), *up_args],
                                capture_output=True, text=True)
            up_s = time.monotonic() - t0
            if up.returncode == 0:
                break
            if attempt == attempts - 1:
                print(up.stdout[-4000:], up.stderr[-4000:])
                sys.exit(1)
            subprocess.run([*base, "down", "--name", name], capture_output=True, timeout=120)
        yield BenchCluster(ClusterConfig.load(name, state_root), up_s)
    finally:
        subprocess.run([*base, "down", "--name", name], capture_output=True, timeout=120)
        records = ClusterConfig(name=name, state_root=state_root).records_path
        if records.exists():  # whatever `down` could not remove
            remove_recorded(Records(records))
        shutil.rmtree(state_root, ignore_errors=True)
