"""A throwaway cluster for the start-up and pod benches: its own state root under /var/tmp, a free
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
def bench_cluster(prefix: str) -> Iterator[BenchCluster]:
    state_root = tempfile.mkdtemp(prefix="netkube-bench-", dir="/var/tmp")
    name = f"{prefix}{uuid.uuid4().hex[:5]}"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = [*NETKUBE, "--state-root", state_root]
    try:
        t0 = time.monotonic()
        up = subprocess.run([*base, "up", "--name", name, "--api-port", str(port)], capture_output=True, text=True)
        up_s = time.monotonic() - t0
        if up.returncode != 0:
            print(up.stdout, up.stderr)
            sys.exit(1)
        yield BenchCluster(ClusterConfig.load(name, state_root), up_s)
    finally:
        subprocess.run([*base, "down", "--name", name], capture_output=True)
        shutil.rmtree(state_root, ignore_errors=True)
