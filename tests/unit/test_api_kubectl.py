"""The real /usr/bin/kubectl against the netkube apiserver on 127.0.0.1 (no root needed)."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
from collections.abc import Iterator

import pytest

from netkube.api.etcd_store import EtcdStore
from netkube.api.testing import ThreadedApiServer
from netkube.client import PODS, ApiClient

from .conftest import etcd_root

MANIFEST = """apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data: {a: "1"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: app2, labels: {app: app2}}
spec:
  replicas: 2
  selector: {matchLabels: {app: app2}}
  template:
    metadata: {labels: {app: app2}}
    spec:
      containers:
      - name: c
        image: nginx:1.25
        ports: [{containerPort: 80}]
"""


@pytest.fixture(scope="module", params=["sqlite", "etcd"])
def srv(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedApiServer]:
    factory = None
    if request.param == "etcd":  # the same kubectl suite against the etcd store
        url, root = request.getfixturevalue("etcd_url"), etcd_root()
        factory = lambda: EtcdStore(url, root)  # noqa: E731
    s = ThreadedApiServer(str(tmp_path_factory.mktemp("api") / "store.sqlite"), store_factory=factory).start()
    try:
        yield s
    finally:
        s.stop()
        s.cleanup()


def ok(s: ThreadedApiServer, *args: str, stdin: str | None = None) -> str:
    r = s.kubectl(*args, stdin=stdin)
    assert r.returncode == 0, f"kubectl {' '.join(args)} failed: {r.stderr}"
    return r.stdout


def header(out: str) -> list[str]:
    return re.split(r"\s{2,}", out.splitlines()[0].strip())


def test_get_namespaces(srv: ThreadedApiServer) -> None:
    out = ok(srv, "get", "ns")
    assert header(out) == ["NAME", "STATUS", "AGE"]
    assert re.search(r"^default\s+Active\s+\d+s$", out, re.M)
    assert "kube-system" in out


def test_deployment_expose_scale_delete(srv: ThreadedApiServer) -> None:
    assert "deployment.apps/web created" in ok(srv, "create", "deployment", "web", "--image=httpd", "--replicas=3")
    out = ok(srv, "get", "deploy", "web")
    assert header(out) == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert re.search(r"^web\s+0/3\s+0\s+0\s+\d+s$", out, re.M)
    wide = ok(srv, "get", "deploy", "web", "-o", "wide")
    assert header(wide)[-3:] == ["CONTAINERS", "IMAGES", "SELECTOR"] and "app=web" in wide
    assert "service/web exposed" in ok(srv, "expose", "deployment", "web", "--port=8080", "--target-port=80")
    svc = ok(srv, "get", "svc", "web")
    assert header(svc) == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert re.search(r"^web\s+ClusterIP\s+10\.(9[6-9]|10[0-9]|11[01])\.\d+\.\d+\s+<none>\s+8080/TCP\s+\d+s$", svc, re.M)
    spec = json.loads(ok(srv, "get", "svc", "web", "-o", "json"))["spec"]
    assert spec["ports"][0]["targetPort"] == 80 and spec["selector"] == {"app": "web"}
    assert spec["ipFamilies"] == ["IPv4"] and spec["sessionAffinity"] == "None"
    assert "deployment.apps/web scaled" in ok(srv, "scale", "deployment", "web", "--replicas=5")
    assert ok(srv, "get", "deploy", "web", "-o", "jsonpath={.spec.replicas}") == "5"
    assert ok(srv, "get", "deploy", "web", "-o", "name") == "deployment.apps/web\n"
    t0 = time.monotonic()
    assert 'deployment.apps "web" deleted' in ok(srv, "delete", "deployment", "web")
    assert time.monotonic() - t0 < 10
    r = srv.kubectl("get", "deploy", "web")
    assert r.returncode != 0 and 'deployments.apps "web" not found' in r.stderr
    ok(srv, "delete", "svc", "web")


def test_apply_twice(srv: ThreadedApiServer) -> None:
    out = ok(srv, "apply", "-f", "-", stdin=MANIFEST)
    assert "configmap/cfg created" in out and "deployment.apps/app2 created" in out
    out = ok(srv, "apply", "-f", "-", stdin=MANIFEST)
    assert "configmap/cfg unchanged" in out and "deployment.apps/app2 unchanged" in out
    out = ok(srv, "apply", "-f", "-", stdin=MANIFEST.replace("replicas: 2", "replicas: 4"))
    assert "configmap/cfg unchanged" in out and "deployment.apps/app2 configured" in out
    dep = json.loads(ok(srv, "get", "deploy", "app2", "-o", "json"))
    assert dep["spec"]["replicas"] == 4 and dep["metadata"]["generation"] == 2
    assert dep["spec"]["template"]["spec"]["containers"][0]["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": "25%", "maxUnavailable": "25%"}
    assert "app2" in ok(srv, "get", "deploy", "-l", "app=app2") and "app2" not in ok(srv, "get", "deploy", "-l", "app!=app2")
    yml = ok(srv, "get", "cm", "cfg", "-o", "yaml")
    assert "kubectl.kubernetes.io/last-applied-configuration" in yml


def test_invalid_manifest_stores_nothing(srv: ThreadedApiServer) -> None:
    bad = "apiVersion: v1\nkind: Pod\nmetadata: {name: Web_1}\nspec: {}\n"
    r = srv.kubectl("apply", "-f", "-", stdin=bad)
    assert r.returncode != 0
    assert 'The Pod "Web_1" is invalid' in r.stderr
    assert 'metadata.name: Invalid value: "Web_1": a lowercase RFC 1123 subdomain' in r.stderr
    assert "spec.containers: Required value" in r.stderr
    assert "Web_1" not in ok(srv, "get", "pods", "-A")


def test_pods_wide_with_status_and_watch(srv: ThreadedApiServer) -> None:
    ok(srv, "run", "p1", "--image=busybox:1.36", "--labels=app=p")

    async def set_status() -> None:
        c = ApiClient(srv.url)
        try:
            pod = await c.get(PODS, "p1", "default")
            await c.bind(pod, "node2")
            pod = await c.get(PODS, "p1", "default")
            pod["status"].update(phase="Running", podIP="10.244.1.5", containerStatuses=[{
                "name": "p1", "ready": True, "restartCount": 0, "image": "busybox:1.36",
                "state": {"running": {"startedAt": "2024-01-01T00:00:00Z"}}}])
            await c.update_status(PODS, pod)
        finally:
            await c.close()

    asyncio.run(set_status())
    out = ok(srv, "get", "pods", "-o", "wide")
    assert header(out) == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED NODE", "READINESS GATES"]
    assert re.search(r"^p1\s+1/1\s+Running\s+0\s+\d+s\s+10\.244\.1\.5\s+node2\s+<none>\s+<none>$", out, re.M)
    assert "app=p" in ok(srv, "get", "pods", "--show-labels")
    proc = subprocess.Popen(srv.kubectl_cmd("get", "pods", "-w", "--request-timeout=15s"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.split()[0] == "NAME"
        assert proc.stdout.readline().startswith("p1 ")
        ok(srv, "label", "pod", "p1", "tier=x")
        line = proc.stdout.readline()
        assert line.startswith("p1 ") and "Running" in line
        # graceful delete of a bound pod: marked Terminating, object kept
        ok(srv, "delete", "pod", "p1", "--wait=false")
        assert "Terminating" in proc.stdout.readline()
    finally:
        proc.kill()
        proc.wait()
    out = ok(srv, "get", "pod", "p1")
    assert re.search(r"^p1\s+1/1\s+Terminating", out, re.M)
    ok(srv, "delete", "pod", "p1", "--grace-period=0", "--force")
    assert "p1" not in ok(srv, "get", "pods")


def test_nodes_and_namespace_lifecycle(srv: ThreadedApiServer) -> None:
    node = ('{"apiVersion":"v1","kind":"Node","metadata":{"name":"node1","labels":'
            '{"node-role.kubernetes.io/control-plane":""}},"spec":{"unschedulable":true},"status":{'
            '"conditions":[{"type":"Ready","status":"True"}],"addresses":[{"type":"InternalIP","address":"192.168.56.101"}],'
            '"nodeInfo":{"kubeletVersion":"v1.32.0","osImage":"Debian","kernelVersion":"6.1","containerRuntimeVersion":"netkube://0.1"}}}')
    ok(srv, "apply", "-f", "-", stdin=node)
    out = ok(srv, "get", "nodes", "-o", "wide")
    assert re.search(r"^node1\s+Ready,SchedulingDisabled\s+control-plane\s+\d+s\s+v1\.32\.0\s+192\.168\.56\.101\s+<none>", out, re.M)
    ok(srv, "create", "ns", "tmp1")
    ok(srv, "create", "cm", "x", "-n", "tmp1", "--from-literal=a=b")
    assert 'namespace "tmp1" deleted' in ok(srv, "delete", "ns", "tmp1")
    r = srv.kubectl("get", "cm", "x", "-n", "tmp1")
    assert r.returncode != 0
    r = srv.kubectl("create", "cm", "y", "-n", "nope")
    assert 'namespaces "nope" not found' in r.stderr
