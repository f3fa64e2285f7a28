"""kubectl port-forward on a live 2-node netkube cluster (root): pod/, svc/ and deploy/ targets.

The apiserver runs in the host and reaches node2's kubelet from node1's netns; the kubelet dials
localhost:80 inside the httpd pod's netns. Local ports are chosen by kubectl (`:80`), so parallel
runs do not collide.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from netkube.config import ClusterConfig
from netkube.lab.records import Records
from tests.netns.test_e2e_cluster import NETKUBE, Cluster, _logs, free_port, run
from tests.unit.test_kubelet_portforward import PortForward

pytestmark = [pytest.mark.netns, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]
IT_WORKS = b"<html><body><h1>It works!</h1></body></html>\n"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    state_root = tempfile.mkdtemp(prefix="netkube-pf-", dir="/var/tmp")  # containers get a private /tmp
    name = f"pf{uuid.uuid4().hex[:6]}"
    cfg = ClusterConfig(name=name, api_port=free_port(), state_root=state_root, nodes=2)
    c = Cluster(cfg, state_root)
    proc = run([*NETKUBE, "--state-root", state_root, "up", "--name", name, "--nodes", "2",
                "--api-port", str(cfg.api_port)], timeout=240, check=False)
    try:
        assert proc.returncode == 0, f"netkube up failed:\n{proc.stdout}\n{proc.stderr}\n{_logs(cfg)}"
        c.kubectl("create", "deployment", "pfweb", "--image=httpd", "--port=80")
        c.kubectl("expose", "deployment", "pfweb", "--port=8080", "--target-port=80")
        c.wait_ready("app=pfweb", 1, timeout=90)
        yield c
    finally:
        c.netkube("down", "--name", name, timeout=60, check=False)
        from netkube.lab.cleanup import remove_recorded

        remove_recorded(Records(cfg.records_path))
        shutil.rmtree(state_root, ignore_errors=True)


def kubectl_of(c: Cluster) -> tuple[list[str], dict[str, str]]:
    return (["kubectl", "--kubeconfig", str(c.cfg.kubeconfig_path), "--cache-dir", str(c.cfg.state_dir / "kubectl-cache")],
            dict(os.environ))


@pytest.mark.parametrize("target,remote,websockets", [
    ("pod/{pod}", 80, True), ("pod/{pod}", 80, False), ("svc/pfweb", 8080, True), ("deploy/pfweb", 80, True),
])
def test_port_forward_fetches_pages_concurrently(cluster: Cluster, target: str, remote: int, websockets: bool) -> None:
    pod = cluster.pods("app=pfweb")[0]["metadata"]["name"]
    with PortForward(kubectl_of(cluster), target.format(pod=pod), remote, websockets) as pf:
        assert pf.first_line.endswith(" -> 80\n"), pf.first_line
        with ThreadPoolExecutor(6) as pool:
            pages = list(pool.map(lambda _: pf.get("/"), range(12)))
        assert pages == [IT_WORKS] * 12
        assert pf.proc.poll() is None
