"""Probes, init containers, env sources and kubelet Events against the fake runtime (no root)."""

import asyncio
import base64
from pathlib import Path

import pytest

from netkube.api.tables.workloads import pod_status
from netkube.client import CONFIGMAPS, EVENTS
from netkube.kubelet import envfrom
from netkube.kubelet.actions import http_get, tcp_socket
from netkube.kubelet.probes import ProbeSpec, Threshold
from netkube.kubelet.sandbox import Timings
from tests.unit.test_kubelet_lifecycle import Env, cstatus, until

# Probe periods of 10 s become 0.1 s; restart back-off 0.2 s.
FAST = Timings(restart_base=0.2, restart_max=0.8, image_base=0.1, image_max=0.2, sandbox_retry=0.05,
               max_grace=0.3, heartbeat=0.05, probe_scale=0.01)


@pytest.fixture
async def env(tmp_path: Path):
    e = Env(tmp_path)
    e.kubelet.timings = e.kubelet.ctx.timings = FAST
    task = asyncio.create_task(e.kubelet.run())
    await asyncio.wait_for(e.kubelet.ready.wait(), 5)
    yield e
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def events(env: Env, reason: str) -> list[str]:
    return [ev["message"] for ev in env.api.objects(EVENTS, "default") if ev["reason"] == reason]


def ready(pod: dict | None) -> bool:
    conds = {c["type"]: c["status"] for c in ((pod or {}).get("status") or {}).get("conditions") or []}
    return conds.get("Ready") == "True"


def test_threshold_counts_equal_results_in_a_row():
    th = Threshold(ProbeSpec("Readiness", {}, success_threshold=2, failure_threshold=3))
    assert [th.feed(r) for r in (True, True, False, False, True, False, False, False)] == \
        [None, True, None, None, None, None, None, False]


def test_probe_defaults_as_the_apiserver_sets_them():
    spec = ProbeSpec.of("Liveness", {"exec": {"command": ["true"]}, "successThreshold": 5})
    assert spec is not None
    assert (spec.period, spec.timeout, spec.failure_threshold, spec.success_threshold) == (10.0, 1.0, 3, 1)


async def test_readiness_probe_drives_ready_and_events(env):
    env.runtime.exec_results["cat /tmp/ready"] = (1, "cat: can't open '/tmp/ready': No such file or directory")
    probe = {"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 10}
    await env.pod("r", [{"name": "app", "image": "busybox", "readinessProbe": probe}])
    await until(lambda: events(env, "Unhealthy"))
    pod = env.get("r")
    assert pod["status"]["phase"] == "Running" and not ready(pod) and not cstatus(pod)["ready"]
    assert events(env, "Unhealthy")[0] == "Readiness probe failed: cat: can't open '/tmp/ready': No such file or directory"
    env.runtime.exec_results["cat /tmp/ready"] = (0, "")
    await until(lambda: ready(env.get("r")))
    env.runtime.exec_results["cat /tmp/ready"] = (1, "gone")
    await until(lambda: not ready(env.get("r")))
    assert cstatus(env.get("r"))["restartCount"] == 0  # readiness never restarts
    assert env.runtime.execs[0] == ["cat", "/tmp/ready"]
    await until(lambda: events(env, "Started"))
    assert events(env, "Created") == ["Created container: app"] and events(env, "Started") == ["Started container app"]
    assert events(env, "Pulled") == ['Successfully pulled image "busybox" in 0s (0s including waiting)']


async def test_liveness_failure_kills_with_137_and_restarts(tmp_path: Path):
    e = Env(tmp_path, ignore_term={"live"})  # PID 1 without a SIGTERM handler: only SIGKILL ends it
    e.kubelet.timings = e.kubelet.ctx.timings = FAST
    task = asyncio.create_task(e.kubelet.run())
    try:
        e.runtime.exec_results["cat /tmp/healthy"] = (0, "")
        probe = {"exec": {"command": ["cat", "/tmp/healthy"]}, "periodSeconds": 5, "failureThreshold": 3}
        await e.pod("l", [{"name": "live", "image": "busybox", "livenessProbe": probe}], terminationGracePeriodSeconds=1)
        await until(lambda: e.runtime.execs)
        await asyncio.sleep(0.15)
        assert cstatus(e.get("l")).get("restartCount") == 0
        e.runtime.exec_results["cat /tmp/healthy"] = (1, "cat: can't open '/tmp/healthy': No such file or directory")
        await until(lambda: cstatus(e.get("l")).get("restartCount") == 1 and "running" in cstatus(e.get("l"))["state"])
        last = cstatus(e.get("l"))["lastState"]["terminated"]
        assert last["exitCode"] == 137 and last["reason"] == "Error"
        assert len(events(e, "Unhealthy")) == 1  # one coalesced Event whose count grows
        ev = [x for x in e.api.objects(EVENTS, "default") if x["reason"] == "Unhealthy"][0]
        assert ev["count"] >= 3 and ev["message"].startswith("Liveness probe failed: cat: can't open")
        assert "Container live failed liveness probe, will be restarted" in events(e, "Killing")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_startup_probe_gates_liveness_and_readiness(env):
    env.runtime.exec_results["started"] = (1, "not yet")
    c = {"name": "s", "image": "busybox", "startupProbe": {"exec": {"command": ["started"]}, "failureThreshold": 30},
         "livenessProbe": {"exec": {"command": ["alive"]}}}
    await env.pod("s", [c])
    await until(lambda: env.runtime.execs)
    await asyncio.sleep(0.2)
    assert ["alive"] not in env.runtime.execs and not cstatus(env.get("s"))["started"]
    env.runtime.exec_results["started"] = (0, "")
    await until(lambda: ready(env.get("s")) and cstatus(env.get("s"))["started"])
    await until(lambda: ["alive"] in env.runtime.execs)


async def test_init_containers_run_in_order_then_app(env):
    spec = [{"name": "app", "image": "busybox"}]
    inits = [{"name": "i1", "image": "busybox"}, {"name": "i2", "image": "busybox"}]
    await env.pod("p", spec, initContainers=inits)
    await until(lambda: env.runtime.running("default/p/i1"))
    await until(lambda: pod_status(env.get("p") or {})[0] == "Init:0/2")
    assert not env.runtime.running("default/p/i2") and not env.runtime.running("default/p/app")
    env.runtime.exit("default/p/i1", 0)
    await until(lambda: env.runtime.running("default/p/i2"))
    await until(lambda: pod_status(env.get("p") or {})[0] == "Init:1/2")
    env.runtime.exit("default/p/i2", 0)
    await until(lambda: ready(env.get("p")))
    st = env.get("p")["status"]
    assert [c["state"]["terminated"]["reason"] for c in st["initContainerStatuses"]] == ["Completed", "Completed"]
    assert pod_status(env.get("p"))[0] == "Running"


async def test_init_failure_statuses(env):
    await env.pod("n", [{"name": "app", "image": "busybox"}], initContainers=[{"name": "i", "image": "busybox"}],
                  restartPolicy="Never")
    await env.pod("a", [{"name": "app", "image": "busybox"}], initContainers=[{"name": "i", "image": "busybox"}])
    await until(lambda: env.runtime.running("default/n/i") and env.runtime.running("default/a/i"))
    env.runtime.exit("default/n/i", 1)
    await until(lambda: (env.get("n") or {}).get("status", {}).get("phase") == "Failed")
    assert pod_status(env.get("n"))[0] == "Init:Error" and not env.runtime.running("default/n/app")
    env.runtime.exit("default/a/i", 1)  # first restart is immediate
    await until(lambda: env.runtime.running("default/a/i"))
    env.runtime.exit("default/a/i", 1)
    await until(lambda: pod_status(env.get("a") or {})[0] == "Init:CrashLoopBackOff")
    assert env.get("a")["status"]["phase"] == "Pending"


async def test_env_from_configmap_fieldref_and_expansion(env):
    await env.api.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap",
                                      "metadata": {"name": "cfg", "namespace": "default"}, "data": {"MODE": "fast", "K": "v"}})
    c = {"name": "app", "image": "busybox", "command": ["echo", "$(GREETING)", "$$(GREETING)", "$(UNSET)"],
         "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
         "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                 {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                 {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                 {"name": "M", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "MODE"}}},
                 {"name": "GREETING", "value": "hi $(POD) on $(NODE)"}]}
    await env.pod("e", [c])
    await until(lambda: env.runtime.running("default/e/app"))
    p = env.runtime.running("default/e/app")[0]
    assert p.env["CFG_MODE"] == "fast" and p.env["POD"] == "e" and p.env["IP"] == "10.244.1.2"
    assert p.env["M"] == "fast" and p.env["GREETING"] == "hi e on node2"
    assert p.argv == ["echo", "hi e on node2", "$(GREETING)", "$(UNSET)"]


async def test_missing_configmap_is_create_container_config_error(env):
    c = {"name": "app", "image": "busybox", "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k"}}}]}
    await env.pod("m", [c])
    await until(lambda: cstatus(env.get("m")).get("state", {}).get("waiting", {}).get("reason") == "CreateContainerConfigError")
    assert cstatus(env.get("m"))["state"]["waiting"]["message"] == 'configmap "nope" not found'
    assert pod_status(env.get("m"))[0] == "CreateContainerConfigError"


def test_env_secret_and_resource_field_ref():
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "web"}}, "spec": {"nodeName": "node2"}}
    secret = {"metadata": {"name": "s", "namespace": "ns"}, "data": {"pw": base64.b64encode(b"hunter2").decode()}}
    c = {"env": [{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}},
                 {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k", "optional": True}}},
                 {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                 {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                 {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu"}}},
                 {"name": "HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}],
         "resources": {"limits": {"memory": "128Mi"}, "requests": {"cpu": "250m"}}}
    out = envfrom.resolve(pod, c, {"SVC": "1"}, envfrom.Sources(secrets={"s": secret, "gone": None}), "192.168.56.102",
                          "10.244.1.9", alloc={"cpu": 2.0, "memory": 1e9})
    assert out == {"SVC": "1", "PW": "hunter2", "APP": "web", "MEM": "128", "CPU": "1", "HOST": "192.168.56.102"}
    with pytest.raises(envfrom.EnvError, match='secret "x" not found'):
        envfrom.resolve(pod, {"envFrom": [{"secretRef": {"name": "x"}}]}, {}, envfrom.Sources(secrets={"x": None}), "", "")


async def _serve(handler) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_http_get_and_tcp_socket_on_loopback():
    seen: list[bytes] = []

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            req = await r.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return  # the tcpSocket probe only connects
        seen.append(req)
        code = b"200 OK" if b"GET /healthz" in req else (b"302 Found" if b"GET /moved" in req else b"500 Oops")
        w.write(b"HTTP/1.1 " + code + b"\r\nContent-Length: 2\r\n\r\nok")
        await w.drain()
        w.close()

    server, port = await _serve(handler)
    c = {"name": "app", "ports": [{"name": "http", "containerPort": port}]}
    try:
        ok = await http_get({"path": "/healthz", "port": "http", "httpHeaders": [{"name": "X-Probe", "value": "1"}]},
                            c, "127.0.0.1", 1.0)
        assert ok.ok and b"X-Probe: 1" in seen[0] and b"User-Agent: kube-probe/1.32" in seen[0]
        assert (await http_get({"path": "/moved", "port": port}, c, "127.0.0.1", 1.0)).ok
        bad = await http_get({"path": "/x", "port": port}, c, "127.0.0.1", 1.0)
        assert not bad.ok and bad.output == "HTTP probe failed with statuscode: 500"
        assert (await tcp_socket({"port": port}, c, "127.0.0.1", 1.0)).ok
    finally:
        server.close()
        await server.wait_closed()
    refused = await tcp_socket({"port": port}, c, "127.0.0.1", 1.0)
    assert not refused.ok and refused.output == f"dial tcp 127.0.0.1:{port}: connect: connection refused"
    res = await http_get({"path": "/", "port": port}, c, "127.0.0.1", 1.0)
    assert res.output == f'Get "http://127.0.0.1:{port}/": dial tcp 127.0.0.1:{port}: connect: connection refused'
