"""The Kubernetes basics tutorial, with the real kubectl, on one live 3-node netkube cluster.

The tests run in file order on one cluster and follow the tutorial: create and expose the
kubernetes-bootcamp Deployment, explore it (get -o wide, describe, logs, exec -it), label, scale,
roll out v2, a broken v10 and back (rollout status/history/undo), taint, cordon, drain; then apply
/ diff / wait / explain / List and the discovery commands. Outputs are checked for the columns and
messages a real cluster prints, not only exit codes.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.netns.test_e2e_cluster import Cluster, live_cluster

pytestmark = pytest.mark.netns

APP = "kubernetes-bootcamp"
DEPLOY = f"deployments/{APP}"
V1 = "gcr.io/google-samples/kubernetes-bootcamp:v1"
V2 = "jocatalin/kubernetes-bootcamp:v2"
V10 = "gcr.io/google-samples/kubernetes-bootcamp:v10"

WEB = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: tut-web
  labels: {app: tut-web, version: "1.0"}
spec:
  replicas: 2
  selector: {matchLabels: {app: tut-web}}
  template:
    metadata: {labels: {app: tut-web}}
    spec:
      containers:
      - name: web
        image: httpd
        ports: [{containerPort: 80}]
        env: [{name: GREETING, value: hello}]
"""
CONFIG_LIST = """apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: ConfigMap, metadata: {name: tut-a}, data: {k: a}}
- {apiVersion: v1, kind: ConfigMap, metadata: {name: tut-b}, data: {k: b}}
"""


class Tutorial(Cluster):
    def k(self, *args: str, timeout: float = 60) -> str:
        return self.kubectl(*args, timeout=timeout).stdout

    def table(self, *args: str) -> tuple[list[str], list[list[str]]]:
        lines = self.k(*args).strip().splitlines()
        return re.split(r"\s{2,}", lines[0].strip()), [re.split(r"\s{2,}", ln.strip()) for ln in lines[1:]]

    def app_pods(self) -> list[dict]:
        return [p for p in self.pods(f"app={APP}") if not p["metadata"].get("deletionTimestamp")]

    def until(self, what: str, fn, timeout: float = 40):  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = fn()
            if last:
                return last
            time.sleep(0.3)
        raise AssertionError(f"timed out waiting for {what}; last: {last!r}")

    def curl_nodeport(self) -> str:
        svc = json.loads(self.k("get", "svc", APP, "-o", "json"))
        port = svc["spec"]["ports"][0]["nodePort"]
        return self.node_exec("node1", "curl", "-sS", "--max-time", "5", f"http://{self.node2_ip}:{port}/").stdout


@pytest.fixture(scope="module")
def tut(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tutorial]:
    with live_cluster("kc", cls=Tutorial) as (c, _):
        c.files = tmp_path_factory.mktemp("manifests")  # type: ignore[attr-defined]
        yield c


def test_create_and_expose_the_bootcamp_app(tut: Tutorial) -> None:
    assert tut.k("create", "deployment", APP, f"--image={V1}") == f"deployment.apps/{APP} created\n"
    assert tut.k("expose", f"deployment/{APP}", "--type=NodePort", "--port", "8080") == f"service/{APP} exposed\n"
    assert tut.k("wait", "--for=condition=Available", f"deployment/{APP}", "--timeout=60s") == \
        f"deployment.apps/{APP} condition met\n"
    head, rows = tut.table("get", "deployments")
    assert head == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert rows[0][:4] == [APP, "1/1", "1", "1"]
    head, rows = tut.table("get", "nodes", "-o", "wide")
    assert head[:7] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP", "EXTERNAL-IP"]
    tut.node2_ip = {r[0]: r[5] for r in rows}["node2"]  # type: ignore[attr-defined]
    head, rows = tut.table("get", "services")
    assert head == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    svc = {r[0]: r for r in rows}[APP]
    assert svc[1] == "NodePort" and svc[3] == "<none>" and re.fullmatch(r"8080:3\d{4}/TCP", svc[4])
    body = tut.curl_nodeport()
    assert re.fullmatch(rf"Hello Kubernetes bootcamp! \| Running on: {APP}-[a-z0-9]+-[a-z0-9]{{5}} \| v=1\n", body)


def test_get_wide_describe_logs(tut: Tutorial) -> None:
    head, rows = tut.table("get", "pods", "-o", "wide")
    assert head == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED NODE", "READINESS GATES"]
    pod, node = rows[0][0], rows[0][6]
    assert rows[0][1:3] == ["1/1", "Running"] and node in ("node2", "node3")
    tut.pod = pod  # type: ignore[attr-defined]
    d = tut.k("describe", "pods", pod)
    for line in (rf"Name:\s+{pod}", r"Namespace:\s+default", rf"Node:\s+{node}/192\.168\.\d+\.\d+",
                 rf"Controlled By:\s+ReplicaSet/{APP}-\w+", rf"Image:\s+{re.escape(V1)}", r"State:\s+Running",
                 r"Ready:\s+True", r"Restart Count:\s+0", r"QoS Class:\s+BestEffort"):
        assert re.search(line, d), f"{line!r} not in\n{d}"
    for section in ("Containers:", "Conditions:", "Volumes:", "Events:"):
        assert f"\n{section}" in d
    assert re.search(r"\n  Type\s+Reason\s+Age\s+From\s+Message\n  ----\s+------\s+----\s+----\s+-------\n", d)
    assert re.search(rf"Normal\s+Scheduled\s+\S+\s+default-scheduler\s+Successfully assigned default/{pod} to {node}", d)
    assert re.search(rf"Normal\s+Pulled\s+\S+\s+kubelet\s+Container image \"{re.escape(V1)}\" already present on machine", d)
    assert re.search(r"Normal\s+Started\s+\S+\s+kubelet\s+Started container kubernetes-bootcamp", d)

    d = tut.k("describe", f"services/{APP}")
    for line in (r"Type:\s+NodePort", r"Port:\s+<unset>\s+8080/TCP", r"TargetPort:\s+8080/TCP",
                 r"NodePort:\s+<unset>\s+3\d{4}/TCP", r"Endpoints:\s+10\.244\.\d+\.\d+:8080", r"Selector:\s+app=kubernetes-bootcamp"):
        assert re.search(line, d), f"{line!r} not in\n{d}"
    d = tut.k("describe", "deployment")
    for line in (r"Replicas:\s+1 desired \| 1 updated \| 1 total \| 1 available \| 0 unavailable",
                 r"StrategyType:\s+RollingUpdate", r"RollingUpdateStrategy:\s+25% max unavailable, 25% max surge",
                 r"Available\s+True\s+MinimumReplicasAvailable", rf"NewReplicaSet:\s+{APP}-\w+ \(1/1 replicas created\)",
                 rf"Normal\s+ScalingReplicaSet\s+\S+\s+deployment-controller\s+Scaled up replica set {APP}-\w+ to 1"):
        assert re.search(line, d), f"{line!r} not in\n{d}"
    d = tut.k("describe", "nodes", node)
    for line in (rf"Name:\s+{node}", r"Taints:\s+<none>", r"Unschedulable:\s+false", r"Ready\s+True\s+.*KubeletReady",
                 r"Non-terminated Pods:\s+\(\d+ in total\)", r"Allocated resources:", r"Kubelet Version:\s+v1\.32"):
        assert re.search(line, d), f"{line!r} not in\n{d}"
    assert re.search(rf"default\s+{pod}\s+0 \(0%\)", d)
    logs = tut.until("the app's log line", lambda: tut.k("logs", pod))
    assert "Kubernetes Bootcamp App Started At" in logs
    assert tut.k("exec", pod, "--", "hostname") == f"{pod}\n"


def test_exec_it_under_a_pty(tut: Tutorial) -> None:
    pod = tut.pod  # type: ignore[attr-defined]
    master, slave = pty.openpty()
    argv = ["kubectl", "--kubeconfig", str(tut.cfg.kubeconfig_path), "--cache-dir", str(tut.cfg.state_dir / "kubectl-cache"),
            "exec", "-it", pod, "--", "sh"]
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    out = b""
    try:
        def read_until(token: bytes, timeout: float = 15) -> None:
            nonlocal out
            deadline = time.monotonic() + timeout
            while token not in out and time.monotonic() < deadline:
                if select.select([master], [], [], 0.2)[0]:
                    try:
                        out += os.read(master, 4096)
                    except OSError:
                        break
            assert token in out, f"{token!r} never appeared in {out!r}"

        os.write(master, b"[ -t 0 ] && echo tty-$((6*7)); hostname\n")
        read_until(b"tty-42")
        read_until(pod.encode() + b"\r\n")  # the pty turns \n into \r\n: a real terminal
        os.write(master, b"exit 3\n")
        assert proc.wait(timeout=15) == 3
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def test_labels_and_selectors(tut: Tutorial) -> None:
    pod = tut.pod  # type: ignore[attr-defined]
    assert tut.k("label", "pods", pod, "version=v1") == f"pod/{pod} labeled\n"
    assert re.search(r"Labels:\s+app=kubernetes-bootcamp\n\s+pod-template-hash=\w+\n\s+version=v1\n",
                     tut.k("describe", "pods", pod))
    head, rows = tut.table("get", "pods", "-l", "version=v1")
    assert head[0] == "NAME" and [r[0] for r in rows] == [pod]
    assert tut.k("get", "services", "-l", "app=kubernetes-bootcamp", "-o", "name") == f"service/{APP}\n"
    assert tut.kubectl("get", "pods", "-l", "version=v9").stderr == "No resources found in default namespace.\n"
    assert tut.k("label", "deployment", APP, "version=1.1") == f"deployment.apps/{APP} labeled\n"
    tut.k("create", "deployment", "tut-other", "--image=busybox", "--", "sleep", "3600")
    tut.k("label", "deployment", "tut-other", "version=2.0")
    names = tut.k("get", "deployments", "-l", "version in (1.0,1.1)", "-o", "name").split()
    assert names == [f"deployment.apps/{APP}"]
    names = tut.k("get", "deployments", "-l", "version!=1.1", "-o", "name").split()
    assert names == ["deployment.apps/tut-other"]
    assert tut.k("delete", "deployment", "tut-other") == 'deployment.apps "tut-other" deleted\n'


def test_scale_to_four_then_rolling_update_to_v2(tut: Tutorial) -> None:
    assert tut.k("scale", DEPLOY, "--replicas=4") == f"deployment.apps/{APP} scaled\n"
    tut.until("4 available", lambda: tut.table("get", "deployments", APP)[1][0][1] == "4/4")
    head, rows = tut.table("get", "deployments")
    assert head == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"] and rows[0][:4] == [APP, "4/4", "4", "4"]
    head, rows = tut.table("get", "pods", "-o", "wide", "-l", f"app={APP}")
    assert len(rows) == 4 and {r[6] for r in rows} == {"node2", "node3"}
    assert re.search(rf"Scaled up replica set {APP}-\w+ to 4 from 1", tut.k("describe", DEPLOY))

    assert tut.k("set", "image", DEPLOY, f"{APP}={V2}") == f"deployment.apps/{APP} image updated\n"
    status = tut.k("rollout", "status", DEPLOY, "--timeout=60s")
    assert status.endswith(f'deployment "{APP}" successfully rolled out\n'), status
    assert re.search(rf"Waiting for deployment \"{APP}\" rollout to finish: \d+ (out of 4 new replicas have been updated|"
                     r"old replicas are pending termination|of 4 updated replicas are available)\.\.\.", status)
    tut.until("only v2 pods", lambda: {c["image"] for p in tut.app_pods() for c in p["spec"]["containers"]} == {V2}
              and len(tut.app_pods()) == 4)
    assert tut.k("describe", "pods").count(f"Image:          {V2}") == 4
    assert tut.curl_nodeport().endswith("| v=2\n")
    out = tut.k("rollout", "history", DEPLOY)
    assert out == f"deployment.apps/{APP} \nREVISION  CHANGE-CAUSE\n1         <none>\n2         <none>\n\n"


def test_bad_image_then_undo_and_history(tut: Tutorial) -> None:
    tut.k("set", "image", DEPLOY, f"{APP}={V10}")

    def pull_errors() -> list[list[str]]:
        _, rows = tut.table("get", "pods", "-l", f"app={APP}")
        return [r for r in rows if r[2] in ("ErrImagePull", "ImagePullBackOff")]

    bad = tut.until("ErrImagePull/ImagePullBackOff", pull_errors)
    assert all(r[1] == "0/1" for r in bad)
    d = tut.k("describe", "pods", bad[0][0])
    assert re.search(r"State:\s+Waiting\n\s+Reason:\s+(ErrImagePull|ImagePullBackOff)", d)
    assert re.search(rf"Warning\s+Failed\s+\S+\s+kubelet\s+Failed to pull image \"{re.escape(V10)}\"", d)
    assert re.search(r"Warning\s+Failed\s+\S+\s+kubelet\s+Error: ErrImagePull", d)
    _, rows = tut.table("get", "deployments")
    assert rows[0][1] == "3/4", "maxUnavailable 25% keeps 3 of 4 serving"
    assert tut.curl_nodeport().endswith("| v=2\n")

    assert tut.k("rollout", "undo", DEPLOY) == f"deployment.apps/{APP} rolled back\n"
    tut.k("rollout", "status", DEPLOY, "--timeout=60s")
    tut.until("the v10 pods gone", lambda: not pull_errors())
    # the v2 ReplicaSet is reused and becomes revision 4: revision 2 leaves the history
    out = tut.k("rollout", "history", DEPLOY)
    assert out == f"deployment.apps/{APP} \nREVISION  CHANGE-CAUSE\n1         <none>\n3         <none>\n4         <none>\n\n"
    assert len(tut.k("get", "rs", "-l", f"app={APP}", "-o", "name").split()) == 3, "no new ReplicaSet for the undo"
    rev4 = tut.k("rollout", "history", DEPLOY, "--revision=4")
    assert rev4.startswith(f"deployment.apps/{APP} with revision #4\nPod Template:\n") and f"Image:\t{V2}" in rev4

    tut.k("annotate", DEPLOY, "kubernetes.io/change-cause=back to v2 after the v10 typo")
    tut.until("the change-cause on revision 4", lambda: "4         back to v2 after the v10 typo\n"
              in tut.k("rollout", "history", DEPLOY))
    assert tut.k("rollout", "undo", DEPLOY, "--to-revision=1") == f"deployment.apps/{APP} rolled back\n"
    tut.k("rollout", "status", DEPLOY, "--timeout=60s")
    out = tut.k("rollout", "history", DEPLOY)
    assert out == (f"deployment.apps/{APP} \nREVISION  CHANGE-CAUSE\n3         <none>\n"
                   "4         back to v2 after the v10 typo\n5         <none>\n\n")
    tut.until("v=1 again", lambda: tut.curl_nodeport().endswith("| v=1\n"))
    proc = tut.kubectl("rollout", "undo", DEPLOY, "--to-revision=9", check=False)
    assert proc.returncode == 1 and proc.stderr == "error: unable to find specified revision 9 in history\n"


def test_taint_cordon_and_drain(tut: Tutorial) -> None:
    assert tut.k("taint", "nodes", "node2", "key=value:NoSchedule") == "node/node2 tainted\n"
    assert re.search(r"Taints:\s+key=value:NoSchedule\n", tut.k("describe", "nodes", "node2"))
    tut.k("scale", DEPLOY, "--replicas=6")
    tut.until("6 ready", lambda: len([p for p in tut.wait_ready(f"app={APP}", 6)]) == 6)
    on = [p["spec"]["nodeName"] for p in tut.app_pods()]
    assert on.count("node3") >= 4, f"the two new pods avoid the tainted node2: {on}"
    assert tut.k("taint", "nodes", "node2", "key=value:NoSchedule-") == "node/node2 untainted\n"

    assert tut.k("cordon", "node3") == "node/node3 cordoned\n"
    _, rows = tut.table("get", "nodes")
    assert {r[0]: r[1] for r in rows}["node3"] == "Ready,SchedulingDisabled"
    assert re.search(r"Unschedulable:\s+true", tut.k("describe", "nodes", "node3"))
    assert tut.k("uncordon", "node3") == "node/node3 uncordoned\n"
    assert {r[0]: r[1] for r in tut.table("get", "nodes")[1]}["node3"] == "Ready"

    victims = [f"{p['metadata']['namespace']}/{p['metadata']['name']}"
               for p in json.loads(tut.k("get", "pods", "-A", "--field-selector", "spec.nodeName=node3", "-o", "json"))["items"]]
    out = tut.k("drain", "node3", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=60s", timeout=90)
    lines = out.splitlines()
    assert lines[0] == "node/node3 cordoned" and lines[-1] == "node/node3 drained"
    for v in victims:
        assert f"evicting pod {v}" in lines and f"pod/{v.split('/')[1]} evicted" in lines, out
    pods = tut.wait_ready(f"app={APP}", 6)
    assert {p["spec"]["nodeName"] for p in pods} == {"node2"}
    assert "Ready,SchedulingDisabled" in tut.k("get", "nodes", "node3")
    assert tut.k("uncordon", "node3") == "node/node3 uncordoned\n"
    reasons = tut.k("get", "events", "--field-selector", "involvedObject.kind=Node,involvedObject.name=node3")
    assert re.search(r"Normal\s+NodeNotSchedulable\s+node/node3|Normal\s+RegisteredNode\s+node/node3", reasons)


def test_apply_diff_reapply_wait_and_clusterip(tut: Tutorial) -> None:
    f1, f2 = tut.files / "web.yaml", tut.files / "web2.yaml"  # type: ignore[attr-defined]
    f1.write_text(WEB)
    f2.write_text(WEB.replace("replicas: 2", "replicas: 3").replace("value: hello", "value: bonjour"))
    assert tut.k("apply", "-f", str(f1)) == "deployment.apps/tut-web created\n"
    assert tut.k("label", "deployment", "tut-web", "tier=frontend") == "deployment.apps/tut-web labeled\n"
    diff = tut.kubectl("diff", "-f", str(f2), check=False)
    assert diff.returncode == 1, diff.stderr
    assert re.search(r"^diff -u -N \S+/LIVE-\d+/apps\.v1\.Deployment\.default\.tut-web \S+/MERGED-\d+/", diff.stdout)
    changed = [ln for ln in diff.stdout.splitlines() if ln[:1] in "+-" and ln[:3] not in ("+++", "---")]
    assert changed == ["-  generation: 1", "+  generation: 2", "-  replicas: 2", "+  replicas: 3",
                       "-          value: hello", "+          value: bonjour"], diff.stdout
    assert tut.k("apply", "-f", str(f2)) == "deployment.apps/tut-web configured\n"
    d = json.loads(tut.k("get", "deployment", "tut-web", "-o", "json"))
    assert d["spec"]["replicas"] == 3
    assert d["metadata"]["labels"] == {"app": "tut-web", "version": "1.0", "tier": "frontend"}, "strategic merge keeps the label"
    c = d["spec"]["template"]["spec"]["containers"][0]
    assert c["env"] == [{"name": "GREETING", "value": "bonjour"}] and c["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert '"replicas":3' in d["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
    assert tut.k("apply", "-f", str(f2)) == "deployment.apps/tut-web unchanged\n"
    assert tut.kubectl("diff", "-f", str(f2), check=False).returncode == 0
    assert tut.k("wait", "--for=condition=Available", "deployment/tut-web", "--timeout=60s") == \
        "deployment.apps/tut-web condition met\n"
    assert tut.k("expose", "deployment/tut-web", "--port", "80") == "service/tut-web exposed\n"
    _, rows = tut.table("get", "svc", "tut-web")
    assert rows[0][1] == "ClusterIP" and rows[0][4] == "80/TCP"
    tut.until("the ClusterIP answering", lambda: "It works!" in tut.node_exec(
        "node1", "curl", "-sS", "--max-time", "3", f"http://{rows[0][2]}/", check=False).stdout)
    tut.wait_ready("app=tut-web", 3)
    assert tut.k("exec", "deploy/tut-web", "--", "printenv", "GREETING") == "bonjour\n"

    lst = tut.files / "list.yaml"  # type: ignore[attr-defined]
    lst.write_text(CONFIG_LIST)
    assert tut.k("apply", "-f", str(lst)) == "configmap/tut-a created\nconfigmap/tut-b created\n"
    lst.write_text(CONFIG_LIST.replace("data: {k: b}", "data: {k: b2}"))
    assert tut.k("apply", "-f", str(lst)) == "configmap/tut-a unchanged\nconfigmap/tut-b configured\n"
    assert tut.k("get", "cm", "tut-b", "-o", "jsonpath={.data.k}") == "b2"
    assert tut.k("delete", "-f", str(lst)) == 'configmap "tut-a" deleted\nconfigmap "tut-b" deleted\n'


def test_events_explain_and_discovery(tut: Tutorial) -> None:
    head, rows = tut.table("get", "events", "--field-selector", f"involvedObject.kind=Deployment,involvedObject.name={APP}")
    assert head == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert {r[3] for r in rows} == {f"deployment/{APP}"} and {r[2] for r in rows} == {"ScalingReplicaSet"}
    assert any(re.fullmatch(rf"Scaled up replica set {APP}-\w+ to 4 from 1", r[4]) for r in rows)
    out = tut.k("explain", "deployment.spec.replicas")
    assert out.startswith("GROUP:      apps\nKIND:       Deployment\nVERSION:    v1\n\nFIELD: replicas <integer>\n")
    assert "Number of desired pods." in out
    out = tut.k("explain", "service.spec.ports")
    assert "FIELD: ports <[]ServicePort>" in out and re.search(r"port\t<integer> -required-", out)
    assert re.search(r"targetPort\t<string>", out)  # upstream prints <IntOrString>: see openapi_schemas.py
    head, rows = tut.table("api-resources")
    assert head == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    res = {r[0]: r for r in rows}
    assert res["deployments"] == ["deployments", "deploy", "apps/v1", "true", "Deployment"]
    assert res["nodes"] == ["nodes", "no", "v1", "false", "Node"]
    versions = tut.k("api-versions").split()
    assert {"v1", "apps/v1", "batch/v1", "discovery.k8s.io/v1"} <= set(versions) and versions == sorted(versions)


def test_delete_everything_the_tutorial_made(tut: Tutorial) -> None:
    assert tut.k("delete", "service", "tut-web", APP) == f'service "tut-web" deleted\nservice "{APP}" deleted\n'
    assert tut.k("delete", "-f", str(tut.files / "web2.yaml")) == 'deployment.apps "tut-web" deleted\n'  # type: ignore[attr-defined]
    assert tut.k("delete", "deployment", APP) == f'deployment.apps "{APP}" deleted\n'
    tut.until("the pods gone", lambda: tut.kubectl("get", "pods").stderr == "No resources found in default namespace.\n",
              timeout=60)
    assert tut.kubectl("get", "rs").stderr == "No resources found in default namespace.\n"
    proc = tut.kubectl("get", "deployment", APP, check=False)
    assert proc.returncode == 1
    assert proc.stderr == f'Error from server (NotFound): deployments.apps "{APP}" not found\n'
