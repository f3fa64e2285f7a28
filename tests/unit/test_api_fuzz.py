"""Fuzz the apiserver with generated paths, queries, content types and bodies (hypothesis).

Whatever a client sends, the answer is a success or a well-formed Status (kind Status, status
Failure, code equal to the HTTP code) and never a 500; no request hangs; the server keeps
serving and objects nobody addressed stay as they were. Bounded: 1500 requests to a
server on 127.0.0.1, well under a minute.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from netkube.api.testing import ThreadedApiServer  # noqa: E402

KEEP_NS = "fz-keep"  # the fuzzer never addresses it
KIND_PATHS = ["/api/v1/namespaces/{ns}/configmaps", "/api/v1/namespaces/{ns}/services",
              "/api/v1/namespaces/{ns}/pods", "/apis/apps/v1/namespaces/{ns}/deployments",
              "/apis/apps/v1/namespaces/{ns}/replicasets", "/api/v1/namespaces/{ns}/secrets",
              "/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices", "/api/v1/namespaces",
              "/api/v1/nodes", "/apis/batch/v1/namespaces/{ns}/jobs", "/api/v1/namespaces/{ns}/events"]
SUBS = ["", "", "", "/status", "/scale", "/binding", "/eviction", "/finalize", "/nope"]
CTYPES = ["application/json", "application/merge-patch+json", "application/strategic-merge-patch+json",
          "application/json-patch+json", "application/apply-patch+yaml", "application/yaml", "text/plain",
          "application/vnd.kubernetes.protobuf"]

SCALARS = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=10))
JSON = st.recursive(SCALARS, lambda ch: st.lists(ch, max_size=4) | st.dictionaries(st.text(max_size=8), ch, max_size=4),
                    max_leaves=10)

TEMPLATES: dict[str, dict[str, Any]] = {
    "deployments": {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "fz-d", "labels": {"a": "b"}},
                    "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}},
                             "template": {"metadata": {"labels": {"a": "b"}},
                                          "spec": {"containers": [{"name": "c", "image": "i",
                                                                   "ports": [{"containerPort": 80}]}]}}}},
    "services": {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "fz-s"},
                 "spec": {"selector": {"a": "b"}, "ports": [{"port": 80, "targetPort": 8080}]}},
    "configmaps": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fz-c"}, "data": {"k": "v"}},
    "pods": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "fz-p"},
             "spec": {"containers": [{"name": "c", "image": "i"}]}},
}
MUTABLE = ["metadata", "metadata.name", "metadata.labels", "metadata.managedFields", "metadata.resourceVersion",
           "spec", "spec.replicas", "spec.selector", "spec.template.spec.containers", "spec.ports", "spec.type",
           "spec.template.spec.containers.0.ports", "spec.ports.0.port", "spec.containers.0", "data", "kind",
           "apiVersion", "status", "spec.unknownField", "metadata.labels.x"]


def _mutated(template: dict[str, Any], edits: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = json.loads(json.dumps(template))
    for path, value in edits:
        cur: Any = obj
        parts = path.split(".")
        for p in parts[:-1]:
            if isinstance(cur, list) and p.isdigit() and int(p) < len(cur):
                cur = cur[int(p)]
            elif isinstance(cur, dict) and p in cur:
                cur = cur[p]
            else:
                cur = None
                break
        if isinstance(cur, dict):
            cur[parts[-1]] = value
    return obj


SHAPED = st.builds(_mutated, st.sampled_from(list(TEMPLATES.values())),
                   st.lists(st.tuples(st.sampled_from(MUTABLE), JSON), max_size=3))
JSON_PATCH = st.lists(st.fixed_dictionaries({"op": st.sampled_from(["add", "remove", "replace", "move", "copy", "test", "x"]),
                                             "path": st.sampled_from(["", "/", "/spec", "/spec/replicas", "/metadata/name",
                                                                      "/spec/template/spec/containers/0", "/a/b/c", "/data/k",
                                                                      "/spec/ports/-", "/metadata/labels/~1x"]),
                                             "from": st.sampled_from(["/spec", "/nope", "/metadata/labels"]),
                                             "value": JSON}), max_size=3)
BODY = st.one_of(SHAPED.map(json.dumps), JSON.map(json.dumps), JSON_PATCH.map(json.dumps),
                 st.binary(max_size=40).map(lambda b: b.decode("latin-1")), st.just(""),
                 SHAPED.map(lambda o: json.dumps(o).replace('"name":', '"name": "dup", "name":', 1)))
NAMES = st.sampled_from(["fz-d", "fz-s", "fz-c", "fz-p", "default", "a", "UPPER", "x" * 300, "a b", "..", "%"])
QUERY = st.dictionaries(st.sampled_from(["fieldValidation", "fieldManager", "force", "dryRun", "labelSelector",
                                          "fieldSelector", "limit", "continue", "resourceVersion",
                                          "gracePeriodSeconds", "propagationPolicy", "timeoutSeconds"]),
                        st.sampled_from(["Strict", "Warn", "Ignore", "true", "All", "x", "", "a=b", "a in (b)",
                                         "-1", "5", "metadata.name=fz-d", "Orphan", "!!", "abc"]), max_size=3)


def _group(plural: str) -> str:
    return "/apis/apps/v1" if plural == "deployments" else "/api/v1"


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, str, str]:
    ns = draw(st.sampled_from(["default", "fz", "kube-system"]))
    if draw(st.integers(0, 3)):
        ns = ns if ns != "kube-system" else "fz"  # mostly a kind with its own (mutated) object, to get past the first checks
        plural = draw(st.sampled_from(list(TEMPLATES)))
        tpl = TEMPLATES[plural]
        base = f"{_group(plural)}/namespaces/{ns}/{plural}"
        named = draw(st.integers(0, 3)) > 0
        if named:
            base += f"/{tpl['metadata']['name']}" + draw(st.sampled_from(SUBS))
            method = draw(st.sampled_from(["PUT", "PUT", "PATCH", "PATCH", "PATCH", "PATCH", "PATCH", "GET", "GET", "DELETE"]))
        else:
            method = draw(st.sampled_from(["POST", "POST", "POST", "GET"]))
        body = draw(st.one_of(st.builds(_mutated, st.just(tpl), st.lists(st.tuples(st.sampled_from(MUTABLE), JSON),
                                                                         max_size=2)).map(json.dumps),
                              st.just(json.dumps(tpl)), st.just(json.dumps(tpl)), BODY))
        query = draw(QUERY)
        path = base + ("?" + urllib.parse.urlencode(query) if query else "")
        ctype = draw(st.sampled_from(CTYPES[:5]))
        return method, path, ctype, body
    base = draw(st.sampled_from(KIND_PATHS)).format(ns=ns)
    if draw(st.booleans()):
        base += "/" + urllib.parse.quote(draw(NAMES), safe="") + draw(st.sampled_from(SUBS))
    if draw(st.integers(0, 9)) == 0:  # now and then a path nobody serves
        base += "/" + urllib.parse.quote(draw(st.text(max_size=6)), safe="")
    query = draw(QUERY)
    path = base + ("?" + urllib.parse.urlencode(query) if query else "")
    method = draw(st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"]))
    return method, path, draw(st.sampled_from(CTYPES)), draw(BODY)


def send(s: ThreadedApiServer, method: str, path: str, ctype: str = "application/json",
         body: str | None = None) -> tuple[int, bytes]:
    data = body.encode("utf-8", "surrogatepass") if body is not None and method != "GET" else None
    req = urllib.request.Request(s.url + path, data=data, method=method, headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:  # a hang fails the example
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ThreadedApiServer, dict[str, str]]]:
    s = ThreadedApiServer(str(tmp_path_factory.mktemp("fuzz") / "store.sqlite")).start()
    try:
        ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": KEEP_NS}}
        assert send(s, "POST", "/api/v1/namespaces", body=json.dumps(ns))[0] == 201
        assert send(s, "POST", "/api/v1/namespaces", body=json.dumps({**ns, "metadata": {"name": "fz"}}))[0] == 201
        kept: dict[str, str] = {}
        for plural, tpl in TEMPLATES.items():
            group = _group(plural)
            for ns_ in ("default", "fz"):  # targets for the fuzzer's updates and patches
                assert send(s, "POST", f"{group}/namespaces/{ns_}/{plural}", body=json.dumps(tpl))[0] == 201
            code, out = send(s, "POST", f"{group}/namespaces/{KEEP_NS}/{plural}", body=json.dumps(tpl))
            assert code == 201, out
            kept[f"{group}/namespaces/{KEEP_NS}/{plural}/{tpl['metadata']['name']}"] = json.loads(out)["metadata"]["uid"]
        yield s, kept
    finally:
        s.stop()
        s.cleanup()


@settings(max_examples=1500, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(req=requests())
def test_every_answer_is_a_success_or_a_status(srv: tuple[ThreadedApiServer, dict[str, str]],
                                               req: tuple[str, str, str, str]) -> None:
    s, _ = srv
    method, path, ctype, body = req
    code, raw = send(s, method, path, ctype, body)
    event(f"{method} {code}")  # --hypothesis-show-statistics shows how deep the examples got
    assert code < 500, f"{method} {path} [{ctype}] {body[:300]!r} -> {code} {raw[:400]!r}"
    if code >= 400:
        st_ = json.loads(raw)
        assert st_["kind"] == "Status" and st_["status"] == "Failure" and st_["code"] == code, st_
        assert isinstance(st_.get("message"), str) and isinstance(st_.get("reason", ""), str)


# --- bodies shaped by the OpenAPI documents the server itself serves ---------------------------------
def _from_schema(node: dict[str, Any], comps: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    ref = node.get("$ref") or ((node.get("allOf") or [{}])[0].get("$ref"))
    if ref:
        node = comps.get(ref.rsplit("/", 1)[-1], {})
    typ = node.get("type")
    if depth > 7 or typ is None:
        return JSON
    if node.get("format") == "int-or-string":
        return st.integers(0, 70000) | st.sampled_from(["http", "50%", ""])
    if typ == "object":
        props = node.get("properties")
        if props:
            return st.fixed_dictionaries({}, optional={k: _from_schema(v, comps, depth + 1) for k, v in props.items()})
        extra = node.get("additionalProperties")
        inner = _from_schema(extra, comps, depth + 1) if isinstance(extra, dict) else JSON
        return st.dictionaries(st.text(max_size=6), inner, max_size=3)
    if typ == "array":
        return st.lists(_from_schema(node.get("items") or {}, comps, depth + 1), max_size=2)
    if "enum" in node:
        return st.sampled_from(node["enum"])
    if typ == "integer":
        return st.integers(-3, 70000) | st.integers(-(2**64), 2**64)
    if typ == "boolean":
        return st.booleans()
    return st.text(max_size=8) | st.sampled_from(["a", "web", "TCP", "None", "10.96.0.10"])


@pytest.fixture(scope="module")
def served_kinds(srv: tuple[ThreadedApiServer, dict[str, str]]) -> list[tuple[str, st.SearchStrategy[Any]]]:
    """(item path, body strategy) for each PATCH operation of the served /openapi/v3 documents."""
    s, _ = srv
    out = []
    for entry in json.loads(send(s, "GET", "/openapi/v3")[1])["paths"].values():
        doc = json.loads(send(s, "GET", entry["serverRelativeURL"])[1])
        comps = doc["components"]["schemas"]
        for path, ops in doc["paths"].items():
            gvk = ops["patch"]["x-kubernetes-group-version-kind"]
            root = next(v for v in comps.values()
                        if v.get("x-kubernetes-group-version-kind", [{}])[0].get("kind") == gvk["kind"])
            out.append((path, _from_schema(root, comps)))
    assert len(out) >= 15
    return out


@settings(max_examples=700, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(data=st.data())
def test_schema_shaped_writes(srv: tuple[ThreadedApiServer, dict[str, str]],
                              served_kinds: list[tuple[str, st.SearchStrategy[Any]]], data: st.DataObject) -> None:
    s, _ = srv
    path, bodies = data.draw(st.sampled_from(served_kinds))
    name = data.draw(st.sampled_from(["fz-d", "fz-s", "fz-c", "fz-p", "fz", "default"]))
    item = path.replace("{namespace}", data.draw(st.sampled_from(["default", "fz"]))).replace("{name}", name)
    body = data.draw(bodies)
    if isinstance(body, dict) and data.draw(st.booleans()):
        body.setdefault("metadata", {}) if isinstance(body.get("metadata", {}), dict) else None
        if isinstance(body.get("metadata"), dict):
            body["metadata"]["name"] = name
    mode = data.draw(st.sampled_from(["Strict", "Warn", "Ignore"]))
    method, url, ctype = data.draw(st.sampled_from([
        ("POST", item.rsplit("/", 1)[0], "application/json"), ("PUT", item, "application/json"),
        ("PATCH", item, "application/merge-patch+json"), ("PATCH", item, "application/strategic-merge-patch+json"),
        ("PATCH", item + "?fieldManager=fz", "application/apply-patch+yaml"),
        ("PATCH", item + "?fieldManager=fz2&force=true", "application/apply-patch+yaml")]))
    url += ("&" if "?" in url else "?") + f"fieldValidation={mode}"
    code, raw = send(s, method, url, ctype, json.dumps(body))
    event(f"{method} {ctype} {code}")
    assert code < 500, f"{method} {url} [{ctype}] {json.dumps(body)[:300]} -> {code} {raw[:400]!r}"
    if code >= 400:
        st_ = json.loads(raw)
        assert st_["kind"] == "Status" and st_["code"] == code, st_


def test_server_still_serves_and_kept_objects_are_intact(srv: tuple[ThreadedApiServer, dict[str, str]]) -> None:
    s, kept = srv
    assert send(s, "GET", "/healthz")[0] == 200
    for path, uid in kept.items():
        code, raw = send(s, "GET", path)
        assert code == 200 and json.loads(raw)["metadata"]["uid"] == uid, path
    # every object a LIST shows can be read one by one (nothing half-written)
    for plural in ("configmaps", "services", "pods"):
        code, raw = send(s, "GET", f"/api/v1/{plural}")
        assert code == 200
        for item in json.loads(raw)["items"]:
            md = item["metadata"]
            assert send(s, "GET", f"/api/v1/namespaces/{md['namespace']}/{plural}/{urllib.parse.quote(md['name'], safe='')}")[0] == 200



def test_scale_with_mistyped_parts_is_a_bad_request(srv: tuple[ThreadedApiServer, dict[str, str]]) -> None:
    """Found by the fuzzer: PUT /scale with "metadata": 1 or "spec": [] was a 500."""
    s, _ = srv
    name = TEMPLATES["deployments"]["metadata"]["name"]
    for body in ({"metadata": 1, "spec": {"replicas": 1}}, {"spec": []}):
        code, out = send(s, "PUT", f"/apis/apps/v1/namespaces/fz/deployments/{name}/scale", body=json.dumps(body))
        status = json.loads(out)
        assert code == 400 and status["reason"] == "BadRequest", out
        assert "cannot unmarshal" in status["message"]
