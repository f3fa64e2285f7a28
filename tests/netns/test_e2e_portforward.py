"""kubectl port-forward on a live 2-node netkube cluster (root): pod/, svc/ and deploy/ targets.

The apiserver runs in the host and reaches node2's kubelet from node1's netns; the kubelet dials
localhost:80 inside the httpd pod's netns. Local ports are chosen by kubectl (`:80`), so parallel
runs do not collide.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.netns.test_e2e_cluster import Cluster, live_cluster
from tests.unit.test_kubelet_portforward import PortForward

pytestmark = [pytest.mark.netns, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]
IT_WORKS = b"<html><body><h1>It works!</h1></body></html>\n"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with live_cluster("pf", "--nodes", "2", up_timeout=240, nodes=2) as (c, _):
        c.kubectl("create", "deployment", "pfweb", "--image=httpd", "--port=80")
        c.kubectl("expose", "deployment", "pfweb", "--port=8080", "--target-port=80")
        c.wait_ready("app=pfweb", 1, timeout=90)
        yield c


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
