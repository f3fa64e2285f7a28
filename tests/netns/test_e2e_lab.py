"""The Vagrant lab on emulated machines: provision scripts unchanged, server + join, Services, reset.

Three "machines" (network + mount + UTS namespaces, tests/netns/labmachines.py) on 192.168.56.0/24
run vagrant/provision/{setup,server,join}.sh exactly as the VMs do; then a Deployment behind a
ClusterIP answers node1 across VXLAN and a pod resolves it by DNS; bad join input is refused with
nothing left behind; `netkube reset` gives every machine back its network as it was.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netns.hostsnap import diff, snapshot
from tests.netns.labmachines import Lab, Machine

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[2]
PROVISION = REPO / "vagrant" / "provision"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    tag = f"lab{uuid.uuid4().hex[:5]}"
    root = Path("/var/tmp") / f"netkube-{tag}"  # containers get a private /tmp
    lab = Lab(tag, root)
    host_before = snapshot()
    try:
        lab.create()
        shared = root / "shared"
        shared.mkdir()
        for m in lab.machines:
            m.env = {"NETKUBE_SRC": str(REPO), "NETKUBE_SHARED": str(shared), "NETKUBE_CLUSTER": tag,
                     "NETKUBE_JOIN_WAIT": "5"}
        lab.before = {m.hostname: m.snapshot() for m in lab.machines}  # type: ignore[attr-defined]
        yield lab
    finally:
        for m in reversed(lab.machines):
            if m.holder is not None:
                m.run(["netkube", "reset", "--yes"], check=False, timeout=60)
        lab.destroy()
    assert diff(host_before, snapshot()) == {}, "the host's root namespace changed"


def kubectl(m: Machine, tag: str, *args: str, check: bool = True, timeout: float = 60) -> str:
    return m.run(["kubectl", "--kubeconfig", f"/var/lib/netkube/{tag}/kubeconfig",
                  "--cache-dir", f"/var/lib/netkube/{tag}/kubectl-cache", *args], check=check, timeout=timeout).stdout


def join_parts(lab: Lab) -> tuple[str, str, str]:
    words = (lab.root / "shared" / "join-command").read_text().split()
    assert words[:2] == ["netkube", "join"] and words[3] == "--token" and words[5] == "--discovery-token-ca-cert-hash"
    return words[2], words[4], words[6]


def refused(m: Machine, lab: Lab, args: list[str], message: str) -> None:
    p = m.run(["netkube", "join", *args, "--yes"], check=False, timeout=60)
    assert p.returncode != 0 and message in p.stderr, f"{args}: rc {p.returncode}\n{p.stdout}\n{p.stderr}"
    after = m.snapshot()
    assert after == lab.before[m.hostname], f"{args} left something behind"  # type: ignore[attr-defined]


def wait_ready_pods(m: Machine, tag: str, selector: str, count: int, timeout: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout
    pods: list[dict] = []
    while time.monotonic() < deadline:
        pods = json.loads(kubectl(m, tag, "get", "pods", "-l", selector, "-o", "json"))["items"]
        ready = [p for p in pods if any(c["type"] == "Ready" and c["status"] == "True"
                                        for c in p.get("status", {}).get("conditions", []))]
        if len(ready) == count == len(pods):
            return ready
        time.sleep(0.5)
    raise AssertionError(f"{selector}: {[(p['metadata']['name'], p.get('status', {}).get('phase')) for p in pods]}")


def test_provision_join_refusals_and_service_routing(lab: Lab) -> None:
    m1, m2, m3 = lab.machines
    tag = lab.tag
    for m in lab.machines:
        m.run(["bash", str(PROVISION / "setup.sh")], timeout=300)
    out = m1.run(["bash", str(PROVISION / "server.sh")], env={"NETKUBE_NODE_IP": m1.ip}, timeout=180).stdout
    assert "netkube join https://192.168.56.101:6443 --token " in out
    url, token, ca_hash = join_parts(lab)

    # bad input: refused with a clear message, the machine untouched
    wrong = token.split(".")[0] + "." + "0" * 16
    refused(m2, lab, [url, "--token", wrong, "--discovery-token-ca-cert-hash", ca_hash], "is not valid for this cluster")
    refused(m2, lab, [url, "--token", token, "--discovery-token-ca-cert-hash", "sha256:" + "0" * 64],
            "refusing to trust it")
    refused(m2, lab, ["https://192.168.56.101:6999", "--token", token, "--discovery-token-ca-cert-hash", ca_hash],
            "cannot reach the apiserver")
    short = m1.run(["netkube", "token", "create", "--name", tag, "--ttl", "1s"]).stdout.strip()
    time.sleep(1.2)
    refused(m2, lab, [url, "--token", short, "--discovery-token-ca-cert-hash", ca_hash], "expired")

    m2.run(["bash", str(PROVISION / "join.sh")], timeout=120)
    refused(m3, lab, [url, "--token", token, "--discovery-token-ca-cert-hash", ca_hash, "--node-name", "node2"],
            "a Ready node named 'node2' is already in the cluster")
    m3.run(["bash", str(PROVISION / "join.sh")], timeout=120)

    nodes = json.loads(kubectl(m1, tag, "get", "nodes", "-o", "json"))["items"]
    addrs = {n["metadata"]["name"]: n["status"]["addresses"][0]["address"] for n in nodes}
    assert addrs == {"node1": m1.ip, "node2": m2.ip, "node3": m3.ip}

    kubectl(m1, tag, "create", "deployment", "web", "--image=httpd", "--replicas=2")
    kubectl(m1, tag, "expose", "deployment", "web", "--port=8080", "--target-port=80")
    pods = wait_ready_pods(m1, tag, "app=web", 2)
    assert {p["spec"]["nodeName"] for p in pods} <= {"node2", "node3"}  # node1 is NoSchedule
    ip = kubectl(m1, tag, "get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}")
    # Ready pods reach node1's kube-proxy a moment later (endpoints → slice → watch → sync), as on
    # a real cluster: wait for the first answer, then every request must succeed.
    deadline = time.monotonic() + 15
    while m1.run(["curl", "-sS", "--max-time", "2", f"http://{ip}:8080/"], check=False).returncode != 0:
        assert time.monotonic() < deadline, f"ClusterIP {ip}:8080 never answered from node1"
        time.sleep(0.2)
    for _ in range(4):  # from node1's root namespace, through its kube-proxy rules and VXLAN
        assert "It works!" in m1.run(["curl", "-sS", "--max-time", "5", f"http://{ip}:8080/"]).stdout

    kubectl(m1, tag, "run", "client", "--image=busybox", "--", "sleep", "3600")
    wait_ready_pods(m1, tag, "run=client", 1)
    answer = kubectl(m1, tag, "exec", "client", "--", "nslookup", "web.default.svc.cluster.local", timeout=30)
    assert ip in answer, answer


def test_reset_returns_every_machine_to_before(lab: Lab) -> None:
    for m in reversed(lab.machines):  # workers first, as one tears a kubeadm cluster down
        out = m.run(["netkube", "reset", "--yes"], timeout=60).stdout
        assert "reset " in out, out
    for m in lab.machines:
        after = m.snapshot()
        before = lab.before[m.hostname]  # type: ignore[attr-defined]
        assert {k: (before[k], after[k]) for k in before if before[k] != after[k]} == {}, m.hostname
