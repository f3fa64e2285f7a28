"""No-root checks of what the kubectl tutorial needs from the apiserver: pods/eviction, the minimal
/openapi/v2, OpenAPI v3 schemas for `kubectl explain`, `kind: List` apply, dry-run and templates."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from netkube.api import openapi, protobuf
from netkube.api.testing import ThreadedApiServer
from netkube.controllers.rollout import template_without_hash

LIST = """apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: ConfigMap, metadata: {name: la}, data: {k: a}}
- {apiVersion: v1, kind: ConfigMap, metadata: {name: lb}, data: {k: b}}
"""
POD = """apiVersion: v1
kind: Pod
metadata: {name: victim}
spec:
  nodeName: nowhere
  containers: [{name: c, image: busybox}]
"""
DEPLOY = """apiVersion: apps/v1
kind: Deployment
metadata: {name: d1}
spec:
  replicas: 2
  selector: {matchLabels: {app: d1}}
  template:
    metadata: {labels: {app: d1}}
    spec: {containers: [{name: c, image: nginx}]}
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedApiServer]:
    s = ThreadedApiServer(str(tmp_path_factory.mktemp("api") / "store.sqlite")).start()
    try:
        yield s
    finally:
        s.stop()
        s.cleanup()


def ok(s: ThreadedApiServer, *args: str, stdin: str | None = None) -> str:
    r = s.kubectl(*args, stdin=stdin)
    assert r.returncode == 0, f"kubectl {' '.join(args)} failed: {r.stderr}"
    return r.stdout


def test_eviction_is_discovered_and_deletes_the_pod(srv: ThreadedApiServer) -> None:
    res = {r["name"]: r for r in json.loads(ok(srv, "get", "--raw", "/api/v1"))["resources"]}
    assert res["pods/eviction"] == {"name": "pods/eviction", "singularName": "", "namespaced": True,
                                    "group": "policy", "version": "v1", "kind": "Eviction", "verbs": ["create"]}
    ok(srv, "apply", "-f", "-", stdin=POD)
    body = json.dumps({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "other"}})
    r = srv.kubectl("create", "--raw", "/api/v1/namespaces/default/pods/victim/eviction", "-f", "-", stdin=body)
    assert r.returncode == 1 and "name in URL does not match name in Eviction object" in r.stderr
    body = json.dumps({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "victim"},
                       "deleteOptions": {"gracePeriodSeconds": 0}})
    out = json.loads(ok(srv, "create", "--raw", "/api/v1/namespaces/default/pods/victim/eviction", "-f", "-", stdin=body))
    assert out == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
    gone = srv.kubectl("get", "pod", "victim", "-o", "jsonpath={.metadata.deletionTimestamp}")
    assert gone.returncode == 1 or gone.stdout, "evicted: deleted or being deleted"


def test_protobuf_eviction_and_delete_options_decode() -> None:
    # what kubectl drain sends: k8s\0 + Unknown{TypeMeta{policy/v1, Eviction}, raw=Eviction{metadata, deleteOptions}}
    def ld(field: int, data: bytes) -> bytes:
        return bytes([field << 3 | 2, len(data)]) + data
    meta = ld(1, b"victim") + ld(3, b"default")
    opts = bytes([1 << 3, 5])  # gracePeriodSeconds: 5
    raw = ld(1, meta) + ld(2, opts)
    body = protobuf.MAGIC + ld(1, ld(1, b"policy/v1") + ld(2, b"Eviction")) + ld(2, raw)
    assert protobuf.decode_object(body) == {"apiVersion": "policy/v1", "kind": "Eviction",
                                            "metadata": {"name": "victim", "namespace": "default"},
                                            "deleteOptions": {"gracePeriodSeconds": 5}}


def test_openapi_v2_is_an_empty_protobuf_document_and_list_apply_validates(srv: ThreadedApiServer) -> None:
    assert openapi.v2_protobuf() == b"\n\x032.0\x12\x15\n\nKubernetes\x12\x07v1.32.0"
    assert ok(srv, "apply", "-f", "-", stdin=LIST) == "configmap/la created\nconfigmap/lb created\n"
    assert ok(srv, "apply", "-f", "-", stdin=LIST.replace("k: b", "k: c")) == \
        "configmap/la unchanged\nconfigmap/lb configured\n"
    ok(srv, "delete", "cm", "la", "lb")


def test_explain_reads_the_v3_schemas(srv: ThreadedApiServer) -> None:
    out = ok(srv, "explain", "deployment.spec.replicas")
    assert out.startswith("GROUP:      apps\nKIND:       Deployment\nVERSION:    v1\n\nFIELD: replicas <integer>\n")
    assert "Number of desired pods. This is a pointer to distinguish between explicit" in out
    out = ok(srv, "explain", "pods.spec.containers")
    assert "FIELD: containers <[]Container>" in out and "image\t<string>" in out and "name\t<string> -required-" in out
    doc = openapi.gv_document("apps", "v1")
    assert doc is not None
    for path in doc["paths"].values():  # no requestBody: kubectl keeps its built-in patch metadata
        assert "requestBody" not in path["patch"]


def test_dry_run_patch_keeps_resource_version_and_template_timestamp_is_null(srv: ThreadedApiServer) -> None:
    ok(srv, "apply", "-f", "-", stdin=DEPLOY)
    live = json.loads(ok(srv, "get", "deploy", "d1", "-o", "json"))
    assert live["spec"]["template"]["metadata"] == {"creationTimestamp": None, "labels": {"app": "d1"}}
    dry = json.loads(ok(srv, "patch", "deploy", "d1", "--dry-run=server", "-o", "json", "-p", '{"spec":{"replicas":5}}'))
    assert dry["spec"]["replicas"] == 5 and dry["metadata"]["resourceVersion"] == live["metadata"]["resourceVersion"]
    assert json.loads(ok(srv, "get", "deploy", "d1", "-o", "json"))["spec"]["replicas"] == 2
    ok(srv, "delete", "deploy", "d1")


def test_template_comparison_ignores_a_null_creation_timestamp() -> None:
    a = {"metadata": {"labels": {"app": "x", "pod-template-hash": "abc"}}, "spec": {"containers": []}}
    b = {"metadata": {"creationTimestamp": None, "labels": {"app": "x"}}, "spec": {"containers": []}}
    assert template_without_hash(a) == template_without_hash(b)
