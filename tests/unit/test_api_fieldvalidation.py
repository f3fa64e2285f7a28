"""?fieldValidation=Strict|Warn|Ignore on create, update and patch, over HTTP and with the real kubectl."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from netkube.api import strict
from netkube.api.resources import BY_PATH
from netkube.api.testing import ThreadedApiServer

DEPLOYS = "/apis/apps/v1/namespaces/default/deployments"


def deploy(name: str, **spec_extra: Any) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": {"x.io/any-key": "v"}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx:1.25",
                                                           "securityContext": {"runAsUser": 1}}]}},
                     **spec_extra}}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedApiServer]:
    s = ThreadedApiServer(str(tmp_path_factory.mktemp("fv") / "store.sqlite")).start()
    try:
        yield s
    finally:
        s.stop()
        s.cleanup()


def call(s: ThreadedApiServer, method: str, path: str, body: Any = None, ctype: str = "application/json",
         raw: bytes | None = None) -> tuple[int, list[str], Any]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(s.url + path, data=data, method=method, headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers.get_all("Warning") or [], json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get_all("Warning") or [], json.loads(e.read())


def test_strict_create_rejects_unknown_fields_at_any_depth(srv: ThreadedApiServer) -> None:
    body = deploy("fv-a", foo=1)
    body["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    code, _, st = call(srv, "POST", DEPLOYS + "?fieldValidation=Strict", body)
    assert code == 400 and st["reason"] == "BadRequest" and st["kind"] == "Status"
    # in document order (foo comes after template in this body), joined with ", "
    assert st["message"] == ('Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: '
                             'unknown field "spec.template.spec.containers[0].imagePullPolicyy", '
                             'unknown field "spec.foo"')
    assert call(srv, "GET", DEPLOYS + "/fv-a")[0] == 404


def test_strict_accepts_declared_fields_maps_and_opaque_objects(srv: ThreadedApiServer) -> None:
    code, warn, obj = call(srv, "POST", DEPLOYS + "?fieldValidation=Strict", deploy("fv-b"))
    assert code == 201 and warn == []
    assert obj["metadata"]["labels"] == {"x.io/any-key": "v"}  # a map takes any key
    assert obj["spec"]["template"]["spec"]["containers"][0]["securityContext"] == {"runAsUser": 1}
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fv-cm"}, "data": {"any": "thing"}}
    assert call(srv, "POST", "/api/v1/namespaces/default/configmaps?fieldValidation=Strict", cm)[0] == 201
    cm2 = {**cm, "metadata": {"name": "fv-cm2"}, "datta": {}}
    code, _, st = call(srv, "POST", "/api/v1/namespaces/default/configmaps?fieldValidation=Strict", cm2)
    assert code == 400 and st["message"].endswith('strict decoding error: unknown field "datta"')


def test_duplicate_fields_are_strict_errors(srv: ThreadedApiServer) -> None:
    text = json.dumps(deploy("fv-dup")).replace('"replicas": 1', '"replicas": 1, "replicas": 2')
    code, _, st = call(srv, "POST", DEPLOYS + "?fieldValidation=Strict", raw=text.encode())
    assert code == 400 and st["message"].endswith('strict decoding error: duplicate field "spec.replicas"')
    code, warn, obj = call(srv, "POST", DEPLOYS + "?fieldValidation=Warn", raw=text.encode())
    assert code == 201 and obj["spec"]["replicas"] == 2  # the last one wins
    assert warn == ['299 - "duplicate field \\"spec.replicas\\""']


def test_warn_answers_with_warning_headers_and_drops_the_fields(srv: ThreadedApiServer) -> None:
    for query, name in (("?fieldValidation=Warn", "fv-w"), ("", "fv-default")):  # Warn is the default
        code, warn, obj = call(srv, "POST", DEPLOYS + query, deploy(name, foo=1, bar={"x": 1}))
        assert code == 201
        assert warn == ['299 - "unknown field \\"spec.bar\\""', '299 - "unknown field \\"spec.foo\\""'] or \
            warn == ['299 - "unknown field \\"spec.foo\\""', '299 - "unknown field \\"spec.bar\\""']
        assert "foo" not in obj["spec"] and "foo" not in call(srv, "GET", f"{DEPLOYS}/{name}")[2]["spec"]


def test_ignore_accepts_silently_and_drops(srv: ThreadedApiServer) -> None:
    code, warn, obj = call(srv, "POST", DEPLOYS + "?fieldValidation=Ignore", deploy("fv-i", foo=1))
    assert (code, warn) == (201, []) and "foo" not in obj["spec"]


def test_wrong_types_are_refused_in_every_mode(srv: ThreadedApiServer) -> None:
    body = deploy("fv-t")
    body["spec"]["replicas"] = "two"
    for mode in ("Ignore", "Warn", "Strict"):
        code, _, st = call(srv, "POST", DEPLOYS + f"?fieldValidation={mode}", body)
        assert code == 400
        assert st["message"] == ('Deployment in version "v1" cannot be handled as a Deployment: json: cannot '
                                 'unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32')


def test_unsupported_directive(srv: ThreadedApiServer) -> None:
    code, _, st = call(srv, "POST", DEPLOYS + "?fieldValidation=Loose", deploy("fv-x"))
    assert code == 400 and "Unsupported value" in st["message"]


def test_update_and_patches(srv: ThreadedApiServer) -> None:
    _, _, obj = call(srv, "POST", DEPLOYS, deploy("fv-u"))
    obj["spec"]["foo"] = 1
    code, _, st = call(srv, "PUT", f"{DEPLOYS}/fv-u?fieldValidation=Strict", obj)
    assert code == 400 and st["message"].endswith('strict decoding error: unknown field "spec.foo"')
    for ctype, patch in (("application/merge-patch+json", {"spec": {"foo": 1}}),
                         ("application/strategic-merge-patch+json", {"spec": {"foo": 1}}),
                         ("application/json-patch+json", [{"op": "add", "path": "/spec/foo", "value": 1}])):
        code, _, st = call(srv, "PATCH", f"{DEPLOYS}/fv-u?fieldValidation=Strict", patch, ctype)
        assert code == 400, ctype
        assert st["message"] == 'strict decoding error: unknown field "spec.foo"'
        code, warn, got = call(srv, "PATCH", f"{DEPLOYS}/fv-u?fieldValidation=Warn", patch, ctype)
        assert code == 200 and warn == ['299 - "unknown field \\"spec.foo\\""'] and "foo" not in got["spec"]
    raw = b'{"spec": {"replicas": 3, "replicas": 4}}'
    code, _, st = call(srv, "PATCH", f"{DEPLOYS}/fv-u?fieldValidation=Strict", ctype="application/merge-patch+json",
                       raw=raw)
    assert code == 400 and st["message"] == 'strict decoding error: duplicate field "spec.replicas"'
    code, _, st = call(srv, "PATCH", f"{DEPLOYS}/fv-u", {"spec": {"replicas": "x"}}, "application/merge-patch+json")
    assert code == 422 and "cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas" in st["message"]


def test_walker_honours_preserve_unknown_fields_and_maps() -> None:
    comps = {"T": {"type": "object", "properties": {
        "open": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {"a": {"type": "string"}}},
        "m": {"type": "object", "additionalProperties": {"type": "object", "properties": {"k": {"type": "integer"}}}},
        "l": {"type": "array", "items": {"$ref": "#/components/schemas/T"}},
    }}}
    w = strict._Walker(comps, prune=True)
    value = {"open": {"a": "x", "free": 1}, "m": {"any": {"k": 1, "bad": 2}}, "l": [{"nope": 1}], "top": 0}
    w.walk(comps["T"], value, (), "T")
    assert sorted(strict.dotted(p) for p in w.found.unknown) == ["l[0].nope", "m.any.bad", "top"]
    assert value == {"open": {"a": "x", "free": 1}, "m": {"any": {"k": 1}}, "l": [{}]}
    w2 = strict._Walker(comps, prune=False)
    w2.walk(comps["T"], {"open": {"a": 5}}, (), "T")
    assert w2.found.mistyped == "json: cannot unmarshal number into Go struct field T.open.a of type string"


def test_every_served_kind_accepts_its_own_generic_fields() -> None:
    # bootstrap/controllers write these: none may be taken for an unknown field
    samples = {"Secret": {"type": "Opaque", "stringData": {"a": "b"}}, "Node": {"spec": {"podCIDR": "x"}},
               "EndpointSlice": {"addressType": "IPv4", "endpoints": [], "ports": []},
               "Event": {"involvedObject": {}, "reason": "r", "count": 1}, "Lease": {"spec": {}}}
    for kind in BY_PATH.values():
        body = {"apiVersion": kind.api_version, "kind": kind.kind, "metadata": {"name": "n"},
                **samples.get(kind.kind, {})}
        assert strict.walk(kind, body, prune=False).unknown == [], kind.kind


# --- the real kubectl ---------------------------------------------------------------------------
TYPO = """apiVersion: apps/v1
kind: Deployment
metadata: {name: kc-typo}
spec:
  replicas: 1
  selector: {matchLabels: {app: kc-typo}}
  template:
    metadata: {labels: {app: kc-typo}}
    spec:
      containers:
      - name: c
        image: nginx:1.25
        imagePullPolicyy: Always
"""


def test_kubectl_apply_and_create_print_the_strict_error(srv: ThreadedApiServer) -> None:
    for verb in ("apply", "create"):
        r = srv.kubectl(verb, "-f", "-", stdin=TYPO)
        assert r.returncode == 1
        assert ('Error from server (BadRequest): error when creating "STDIN": Deployment in version "v1" cannot be '
                'handled as a Deployment: strict decoding error: unknown field '
                '"spec.template.spec.containers[0].imagePullPolicyy"') in r.stderr, r.stderr
    r = srv.kubectl("apply", "--validate=warn", "-f", "-", stdin=TYPO)
    assert r.returncode == 0 and 'Warning: unknown field "spec.template.spec.containers[0].imagePullPolicyy"' in r.stderr
    got = json.loads(srv.kubectl("get", "deploy", "kc-typo", "-o", "json").stdout)
    assert "imagePullPolicyy" not in got["spec"]["template"]["spec"]["containers"][0]
    # an existing object: kubectl apply sends a strategic merge patch, still Strict
    r = srv.kubectl("apply", "-f", "-", stdin=TYPO.replace("replicas: 1", "replicas: 2"))
    assert r.returncode == 1 and 'strict decoding error: unknown field "spec.template.spec.containers[0].imagePullPolicyy"' in r.stderr
    r = srv.kubectl("apply", "--validate=false", "-f", "-", stdin=TYPO.replace("replicas: 1", "replicas: 2"))
    assert r.returncode == 0 and "Warning" not in r.stderr, r.stderr
    assert json.loads(srv.kubectl("get", "deploy", "kc-typo", "-o", "json").stdout)["spec"]["replicas"] == 2


def test_warnings_about_odd_field_names_stay_valid_headers(srv: ThreadedApiServer) -> None:
    raw = json.dumps({**deploy("fv-odd"), "a\r\nX-Injected: 1\u00e9\ud800": 1}).encode()
    code, warn, _ = call(srv, "POST", DEPLOYS + "?fieldValidation=Warn", raw=raw)
    assert code == 201
    assert warn == ['299 - "unknown field \\"a\\u000d\\u000aX-Injected: 1\\u00e9\\ud800\\""']
