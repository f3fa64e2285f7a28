"""Workloads as the tutorials teach them, on one 3-node cluster: probes, rolling updates, node power."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import pytest

from tests.netns.test_e2e_cluster import Cluster, live_cluster

pytestmark = pytest.mark.netns

# Pods leave an unreachable node after 2 s instead of the default 300 s (DefaultTolerationSeconds).
FAST_EVICT = [{"key": k, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2}
              for k in ("node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready")]


def until(pred: Callable[[], object], timeout: float, what: str, every: float = 0.3) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with live_cluster("wl", "--node-monitor-grace-period", "4s", down_timeout=90) as (c, _):
        yield c


def apply(c: Cluster, obj: dict) -> None:
    c.kubectl("apply", "-f", "-", stdin=json.dumps(obj))


def pod(c: Cluster, name: str) -> dict:
    return dict(json.loads(c.kubectl("get", "pod", name, "-o", "json").stdout))


def events(c: Cluster, name: str) -> list[dict]:
    items = json.loads(c.kubectl("get", "events", "-o", "json").stdout)["items"]
    return [e for e in items if e["involvedObject"].get("name") == name]


def ready(p: dict) -> bool:
    return any(x["type"] == "Ready" and x["status"] == "True" for x in p.get("status", {}).get("conditions", []))


def web_deployment(replicas: int = 10) -> dict:
    container = {"name": "httpd", "image": "httpd", "ports": [{"containerPort": 80, "name": "http"}],
                 "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
                 # The endpoint removal races the SIGTERM; upstream's advice is a short preStop pause.
                 "lifecycle": {"preStop": {"exec": {"command": ["sleep", "2"]}}}}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [container], "tolerations": FAST_EVICT,
                                           "terminationGracePeriodSeconds": 5}}}}


def test_statefulset_starts_in_order_each_ready_first(cluster: Cluster) -> None:
    probe = {"tcpSocket": {"port": 80}, "periodSeconds": 1}
    apply(cluster, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "nginx"},
                    "spec": {"clusterIP": "None", "selector": {"app": "nginx"}, "ports": [{"port": 80}]}})
    apply(cluster, {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web-sts"},
                    "spec": {"serviceName": "nginx", "replicas": 3, "selector": {"matchLabels": {"app": "nginx"}},
                             "template": {"metadata": {"labels": {"app": "nginx"}}, "spec": {"containers": [
                                 {"name": "nginx", "image": "nginx", "readinessProbe": probe}]}}}})
    seen: list[tuple[set[str], set[str]]] = []

    def observe() -> bool:
        pods = json.loads(cluster.kubectl("get", "pods", "-l", "app=nginx", "-o", "json").stdout)["items"]
        names = {p["metadata"]["name"] for p in pods}
        seen.append((names, {p["metadata"]["name"] for p in pods if ready(p)}))
        return len(seen[-1][1]) == 3

    until(observe, 60, "3 Ready StatefulSet pods", every=0.1)
    for names, ready_names in seen:
        for i in (1, 2):  # web-sts-i exists only once web-sts-(i-1) is Ready
            if f"web-sts-{i}" in names:
                assert f"web-sts-{i - 1}" in ready_names, seen
    table = cluster.kubectl("get", "statefulset", "web-sts").stdout.split()
    assert table[:3] == ["NAME", "READY", "AGE"] and table[4] == "3/3"


def test_exec_liveness_restarts_with_137(cluster: Cluster) -> None:
    # The tutorial's liveness-exec pod, faster: healthy for 3 s, then three failed probes.
    apply(cluster, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "liveness-exec"}, "spec": {
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "liveness", "image": "busybox", "args": [
            "/bin/sh", "-c", "touch /tmp/healthy; sleep 3; rm -f /tmp/healthy; sleep 600"],
            "livenessProbe": {"exec": {"command": ["cat", "/tmp/healthy"]}, "initialDelaySeconds": 1,
                              "periodSeconds": 1}}]}})
    p = until(lambda: (lambda x: x if x["status"].get("containerStatuses", [{}])[0].get("restartCount", 0) >= 1 else None)(
        pod(cluster, "liveness-exec")), 40, "a liveness restart")
    last = p["status"]["containerStatuses"][0]["lastState"]["terminated"]  # type: ignore[index]
    assert last["exitCode"] == 137 and last["reason"] == "Error"
    msgs = {(e["reason"], e["message"]) for e in events(cluster, "liveness-exec")}
    assert ("Killing", "Container liveness failed liveness probe, will be restarted") in msgs
    assert any(r == "Unhealthy" and m.startswith("Liveness probe failed: cat: can't open '/tmp/healthy'") for r, m in msgs)
    assert ("Started", "Started container liveness") in msgs
    row = cluster.kubectl("get", "pod", "liveness-exec", "--no-headers").stdout.split()
    assert int(row[3]) >= 1  # RESTARTS


def test_readiness_removes_and_restores_endpoint(cluster: Cluster) -> None:
    apply(cluster, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "gate", "labels": {"app": "gate"}}, "spec": {
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "srv", "image": "busybox", "command": [
            "sh", "-c", "echo up > /tmp/index.html; touch /tmp/ready; exec httpd -f -p 80 -h /tmp"],
            "readinessProbe": {"exec": {"command": ["test", "-f", "/tmp/ready"]}, "periodSeconds": 1}}]}})
    apply(cluster, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "gate"},
                    "spec": {"selector": {"app": "gate"}, "ports": [{"port": 80}]}})
    p = until(lambda: (lambda x: x if ready(x) else None)(pod(cluster, "gate")), 30, "gate Ready")
    ip, node = p["status"]["podIP"], p["spec"]["nodeName"]  # type: ignore[index]

    def state() -> tuple[bool, bool]:
        ep = json.loads(cluster.kubectl("get", "endpoints", "gate", "-o", "json").stdout)
        addrs = {a["ip"] for s in ep.get("subsets") or [] for a in s.get("addresses") or []}
        rules = cluster.node_exec(node, "iptables-save", "-t", "nat").stdout
        return ip in addrs, f"{ip}:80" in rules

    until(lambda: state() == (True, True), 10, "endpoint and DNAT rule present")
    cluster.pod_exec("gate", "rm", "/tmp/ready")
    t0 = time.monotonic()
    until(lambda: state() == (False, False), 10, "endpoint and DNAT rule removed", every=0.1)
    assert time.monotonic() - t0 < 4.0  # one 1 s period plus controller and proxy sync
    assert any(e["reason"] == "Unhealthy" and e["message"].startswith("Readiness probe failed")
               for e in events(cluster, "gate"))
    cluster.pod_exec("gate", "touch", "/tmp/ready")
    until(lambda: state() == (True, True), 10, "endpoint back", every=0.1)


def _svc_ip(cluster: Cluster, name: str) -> str:
    return str(json.loads(cluster.kubectl("get", "svc", name, "-o", "json").stdout)["spec"]["clusterIP"])


def test_rolling_update_without_failed_requests(cluster: Cluster) -> None:
    apply(cluster, web_deployment())
    apply(cluster, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                    "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 80}]}})
    cluster.wait_ready("app=web", 10, timeout=90)
    ip = _svc_ip(cluster, "web")
    loop = f"while true; do if timeout 3 wget -q -O /dev/null http://{ip}/; then echo OK; else echo FAIL; fi; sleep 0.1; done"
    apply(cluster, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client"}, "spec": {
        "nodeName": "node3", "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "c", "image": "busybox", "command": ["sh", "-c", loop]}]}})
    until(lambda: cluster.kubectl("logs", "client", check=False).stdout.count("OK") >= 5, 30, "client requests")
    cluster.kubectl("set", "image", "deployment/web", "httpd=httpd:2.4")
    cluster.kubectl("rollout", "status", "deployment/web", "--timeout=150s", timeout=160)
    time.sleep(3)  # the last old pods' preStop pauses run out
    out = cluster.kubectl("logs", "client").stdout.split()
    assert out.count("OK") > 50 and out.count("FAIL") == 0, f"{out.count('FAIL')} failed of {len(out)}"
    scaling = [e["message"] for e in sorted(events(cluster, "web"), key=lambda e: e["firstTimestamp"])
               if e["reason"] == "ScalingReplicaSet"]
    new_rs = scaling[1].split()[4]  # "Scaled up replica set web-<hash> to 1": the first step of the rollout
    old_rs = scaling[0].split()[4]  # "Scaled up replica set web-<hash> to 10": its creation
    ups = [m.split(" to ")[1] for m in scaling if m.startswith(f"Scaled up replica set {new_rs} ")]
    downs = [m.split(" to ")[1] for m in scaling if m.startswith(f"Scaled down replica set {old_rs} ")]
    assert ups == ["1"] + [f"{n} from {n - 1}" for n in range(2, 11)], scaling  # one up ...
    assert downs == [f"{n} from {n + 1}" for n in range(9, -1, -1)], scaling  # ... one down


def test_rollout_that_never_gets_ready_stalls_and_undo_restores(cluster: Cluster) -> None:
    patch = {"spec": {"strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                      "template": {"spec": {"containers": [{"name": "httpd", "image": "httpd:2.4.62",
                                                            "readinessProbe": {"httpGet": {"path": "/never", "port": 80},
                                                                               "periodSeconds": 1}}]}}}}
    cluster.kubectl("patch", "deployment", "web", "-p", json.dumps(patch))

    def stalled() -> list[str] | None:
        row = cluster.kubectl("get", "deploy", "web", "--no-headers").stdout.split()
        return row if row[1] == "8/10" and row[2] == "5" else None

    until(stalled, 60, "READY 8/10 with 5 up to date")
    time.sleep(3)
    row = cluster.kubectl("get", "deploy", "web", "--no-headers").stdout.split()
    assert row[1:3] == ["8/10", "5"], row  # and it stays there
    pods = [p for p in cluster.pods("app=web") if not p["metadata"].get("deletionTimestamp")]
    assert len(pods) == 13 and sum(ready(p) for p in pods) == 8
    cluster.kubectl("rollout", "undo", "deployment/web")
    until(lambda: cluster.kubectl("get", "deploy", "web", "--no-headers").stdout.split()[1:3] == ["10/10", "10"],
          90, "10/10 after undo")


def test_node_stop_evicts_and_service_keeps_answering(cluster: Cluster) -> None:
    ip = _svc_ip(cluster, "web")
    on_node2 = [p["metadata"]["name"] for p in cluster.pods("app=web") if p["spec"].get("nodeName") == "node2"]
    assert on_node2, "the scheduler spread no web pod to node2"
    cluster.netkube("node", "--name", cluster.cfg.name, "stop", "node2")

    def node2() -> dict:
        return dict(json.loads(cluster.kubectl("get", "node", "node2", "-o", "json").stdout))

    until(lambda: any(c["type"] == "Ready" and c["status"] != "True" for c in node2()["status"]["conditions"]),
          30, "node2 NotReady")
    until(lambda: any(t["key"] == "node.kubernetes.io/unreachable" and t["effect"] == "NoExecute"
                      for t in node2()["spec"].get("taints") or []), 30, "unreachable NoExecute taint")
    # Evicted after tolerationSeconds (2 s): replacements are all on node3 and Ready.
    until(lambda: len([p for p in cluster.pods("app=web") if not p["metadata"].get("deletionTimestamp")
                       and p["spec"].get("nodeName") == "node3" and ready(p)]) == 10, 90, "10 Ready web pods on node3")
    for _ in range(10):
        cluster.node_exec("node1", "curl", "-sf", "-m", "2", "-o", "/dev/null", f"http://{ip}/")
    cluster.netkube("node", "--name", cluster.cfg.name, "start", "node2", timeout=90)
    assert any(c["type"] == "Ready" and c["status"] == "True" for c in node2()["status"]["conditions"])
    # The restarted kubelet adopts the evicted pods and finishes their deletion.
    until(lambda: not [p for p in cluster.pods("app=web") if p["spec"].get("nodeName") == "node2"], 60,
          "node2's evicted pods gone")
