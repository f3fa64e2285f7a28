"""Server-side apply: field sets, merging, conflicts, force, removal; over HTTP and with the real kubectl."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from netkube.api import apply as ssa
from netkube.api import managedfields as mf
from netkube.api.testing import ThreadedApiServer

DEPLOYS = "/apis/apps/v1/namespaces/default/deployments"


def cfg(name: str, replicas: int | None = 2, containers: list[dict[str, Any]] | None = None,
        labels: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"selector": {"matchLabels": {"app": name}},
                            "template": {"metadata": {"labels": {"app": name}},
                                         "spec": {"containers": containers or [
                                             {"name": "web", "image": "nginx:1.25", "ports": [{"containerPort": 80}]}]}}}
    if replicas is not None:
        spec["replicas"] = replicas
    md: dict[str, Any] = {"name": name}
    if labels:
        md["labels"] = labels
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": md, "spec": spec}


# --- pure functions -----------------------------------------------------------------------------
def test_field_set_and_fieldsv1_round_trip() -> None:
    s = mf.strip(mf.field_set(cfg("a", labels={"tier": "x"})), True, None)
    fields = mf.encode(s)
    assert fields == {
        "f:metadata": {"f:labels": {"f:tier": {}}},
        "f:spec": {"f:replicas": {}, "f:selector": {}, "f:template": {
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {"f:containers": {'k:{"name":"web"}': {
                ".": {}, "f:image": {}, "f:name": {},
                "f:ports": {'k:{"containerPort":80,"protocol":"TCP"}': {".": {}, "f:containerPort": {}}}}}}}}}
    assert mf.decode(fields) == s
    p = ((("f", "spec"), ("f", "template"), ("f", "spec"), ("f", "containers"), ("k", '{"name":"web"}'),
          ("f", "ports"), ("k", '{"containerPort":80,"protocol":"TCP"}'), ("f", "containerPort")))
    assert mf.path_text(p) == '.spec.template.spec.containers[name="web"].ports[containerPort=80,protocol="TCP"].containerPort'


def test_merge_keyed_lists_by_their_keys() -> None:
    live = cfg("a", containers=[{"name": "web", "image": "v1", "ports": [{"containerPort": 80, "protocol": "TCP"}]},
                                {"name": "side", "image": "s"}])
    applied = {"spec": {"template": {"spec": {"containers": [
        {"name": "web", "image": "v2", "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 53, "protocol": "UDP"}]}]}}}}
    out = ssa.merge(live, applied)
    cs = out["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in cs] == ["web", "side"] and cs[0]["image"] == "v2"
    assert cs[0]["ports"] == [{"containerPort": 80, "protocol": "TCP", "name": "http"}, {"containerPort": 53, "protocol": "UDP"}]
    # an atomic list (args) and an atomic map (selector) are replaced whole
    out2 = ssa.merge({"spec": {"selector": {"matchLabels": {"a": "1", "b": "2"}}, "args": ["x", "y"]}},
                     {"spec": {"selector": {"matchLabels": {"a": "1"}}, "args": ["z"]}})
    assert out2 == {"spec": {"selector": {"matchLabels": {"a": "1"}}, "args": ["z"]}}


def test_conflict_messages_follow_upstream() -> None:
    csa = ssa.Entry("kubectl-client-side-apply", "Update", "apps/v1", set())
    one = ssa.conflict_error([(csa, (("f", "spec"), ("f", "replicas")))])
    assert (one.code, one.reason) == (409, "Conflict")
    assert one.message == 'Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: .spec.replicas'
    assert one.details == {"causes": [{"type": "FieldManagerConflict", "field": ".spec.replicas",
                                       "message": 'conflict with "kubectl-client-side-apply" using apps/v1'}]}
    other = ssa.Entry("bob", "Apply", "apps/v1", set())
    two = ssa.conflict_error([(other, (("f", "spec"), ("f", "replicas"))), (csa, (("f", "spec"), ("f", "paused")))])
    assert two.message == ('Apply failed with 2 conflicts: conflicts with "bob":\n- .spec.replicas\n'
                           'conflicts with "kubectl-client-side-apply" using apps/v1:\n- .spec.paused')


def test_apply_conflict_force_and_removal_in_memory() -> None:
    live = cfg("a", replicas=2)
    entries = [ssa.Entry("ctl", "Update", "apps/v1", {(("f", "spec"), ("f", "replicas"))})]
    with pytest.raises(Exception) as e:
        ssa.apply(live, cfg("a", replicas=3), entries, "me", "apps/v1", False, True)
    assert "conflict with \"ctl\" using apps/v1: .spec.replicas" in str(e.value)
    # the same value is shared ownership, no conflict
    merged, managed = ssa.apply(live, cfg("a", replicas=2), entries, "me", "apps/v1", False, True)
    assert {m["manager"] for m in managed} == {"ctl", "me"}
    merged, managed = ssa.apply(merged, cfg("a", replicas=5), ssa.decode_entries(managed) or [], "me", "apps/v1", True, True)
    assert merged["spec"]["replicas"] == 5 and [m["manager"] for m in managed] == ["me"]  # ctl lost its only field
    # the applier stops setting replicas: nobody else owns it, so it goes
    merged, managed = ssa.apply(merged, cfg("a", replicas=None), ssa.decode_entries(managed) or [], "me", "apps/v1", False, True)
    assert "replicas" not in merged["spec"]
    assert "f:replicas" not in managed[0]["fieldsV1"]["f:spec"]


# --- over HTTP ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedApiServer]:
    s = ThreadedApiServer(str(tmp_path_factory.mktemp("ssa") / "store.sqlite")).start()
    try:
        yield s
    finally:
        s.stop()
        s.cleanup()


def call(s: ThreadedApiServer, method: str, path: str, body: Any = None,
         ctype: str = "application/apply-patch+yaml") -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(s.url + path, data=data, method=method, headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def managers(obj: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(m["manager"], m["operation"]): m["fieldsV1"] for m in obj["metadata"]["managedFields"]}


def test_http_apply_lifecycle(srv: ThreadedApiServer) -> None:
    url = f"{DEPLOYS}/h1?fieldManager=alice"
    code, obj = call(srv, "PATCH", url, cfg("h1", labels={"team": "a"}))
    assert code == 201 and set(managers(obj)) == {("alice", "Apply")}
    # bob co-owns the label by applying the same value, then sets another
    code, obj = call(srv, "PATCH", f"{DEPLOYS}/h1?fieldManager=bob",
                     {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "h1", "labels": {"team": "a", "env": "x"}}})
    assert code == 200 and set(managers(obj)) == {("alice", "Apply"), ("bob", "Apply")}
    # alice drops the label she shares with bob: it stays; bob changes replicas: conflict with alice
    code, obj = call(srv, "PATCH", url, cfg("h1"))
    assert code == 200 and obj["metadata"]["labels"] == {"team": "a", "env": "x"}
    code, st = call(srv, "PATCH", f"{DEPLOYS}/h1?fieldManager=bob",
                    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "h1"}, "spec": {"replicas": 7}})
    assert code == 409 and st["reason"] == "Conflict"
    assert st["message"] == 'Apply failed with 1 conflict: conflict with "alice": .spec.replicas'
    code, obj = call(srv, "PATCH", f"{DEPLOYS}/h1?fieldManager=bob&force=true",
                     {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "h1"}, "spec": {"replicas": 7}})
    assert code == 200 and obj["spec"]["replicas"] == 7
    assert "f:replicas" not in managers(obj)[("alice", "Apply")]["f:spec"]
    # bob's last apply no longer sets labels, and alice dropped team before: nobody owns them, they go
    assert "labels" not in obj["metadata"]


def test_update_writes_take_ownership_and_apply_removes_containers(srv: ThreadedApiServer) -> None:
    two = [{"name": "web", "image": "nginx:1.25"}, {"name": "side", "image": "busybox"}]
    code, _ = call(srv, "PATCH", f"{DEPLOYS}/h2?fieldManager=alice", cfg("h2", containers=two))
    assert code == 201
    # a merge patch by another manager is an Update: it takes the field it changed, no conflict
    code, obj = call(srv, "PATCH", f"{DEPLOYS}/h2?fieldManager=ed", {"spec": {"replicas": 4}},
                     "application/merge-patch+json")
    assert code == 200 and managers(obj)[("ed", "Update")] == {"f:spec": {"f:replicas": {}}}
    assert "f:replicas" not in managers(obj)[("alice", "Apply")]["f:spec"]
    # alice re-applies with one container and no replicas: the sidecar is removed, ed's replicas stay
    code, obj = call(srv, "PATCH", f"{DEPLOYS}/h2?fieldManager=alice", cfg("h2", replicas=None, containers=two[:1]))
    assert code == 200
    assert [c["name"] for c in obj["spec"]["template"]["spec"]["containers"]] == ["web"]
    assert obj["spec"]["replicas"] == 4
    code, st = call(srv, "PATCH", f"{DEPLOYS}/h2", cfg("h2"))
    assert code == 422 and "fieldManager: Required value" in st["message"]
    code, st = call(srv, "PATCH", f"{DEPLOYS}/h2?fieldManager=x&force=true", {"spec": {}}, "application/merge-patch+json")
    assert code == 422 and "force: Forbidden" in st["message"]
    code, st = call(srv, "PATCH", f"{DEPLOYS}/h2?fieldManager=x", {**cfg("h2"), "spec": {"replicaz": 1}})
    assert code == 400
    assert st["message"] == ("failed to create typed patch object (default/h2; apps/v1, Kind=Deployment): "
                             ".spec.replicaz: field not declared in schema")


def test_create_records_an_update_entry_with_defaulted_fields(srv: ThreadedApiServer) -> None:
    code, obj = call(srv, "POST", f"{DEPLOYS}?fieldManager=kubectl-create", cfg("h3"), "application/json")
    assert code == 201
    fields = managers(obj)[("kubectl-create", "Update")]
    c = fields["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"web"}']
    assert {"f:image", "f:imagePullPolicy", "f:terminationMessagePath"} <= set(c)  # the writer owns defaults
    # a client replacing managedFields ([{}] resets them) is obeyed
    code, obj = call(srv, "PATCH", f"{DEPLOYS}/h3", {"metadata": {"managedFields": [{}]}}, "application/merge-patch+json")
    assert code == 200 and "managedFields" not in obj["metadata"]


# --- the real kubectl ---------------------------------------------------------------------------
def test_kubectl_server_side_apply(srv: ThreadedApiServer) -> None:
    def manifest(replicas: int, env: str = "") -> str:
        return (f"apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: kssa}}\nspec:\n  replicas: {replicas}\n"
                "  selector: {matchLabels: {app: kssa}}\n  template:\n    metadata: {labels: {app: kssa}}\n"
                "    spec:\n      containers:\n      - name: web\n        image: nginx:1.25\n"
                f"        ports: [{{containerPort: 80}}]\n{env}")

    r = srv.kubectl("apply", "-f", "-", stdin=manifest(2))  # client-side first
    assert r.returncode == 0, r.stderr
    r = srv.kubectl("apply", "--server-side", "-f", "-", stdin=manifest(3))
    assert r.returncode == 1
    assert ('error: Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: '
            '.spec.replicas') in r.stderr, r.stderr
    assert "--force-conflicts" in r.stderr
    r = srv.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-",
                    stdin=manifest(3, "        env: [{name: A, value: '1'}]\n"))
    assert r.returncode == 0 and "deployment.apps/kssa serverside-applied" in r.stdout, r.stderr
    out = srv.kubectl("get", "deploy", "kssa", "-o", "json", "--show-managed-fields").stdout
    obj = json.loads(out)
    assert obj["spec"]["replicas"] == 3
    assert ("kubectl", "Apply") in managers(obj)
    assert "managedFields" not in json.loads(srv.kubectl("get", "deploy", "kssa", "-o", "json").stdout)["metadata"]
    # the applier stops setting env: the server removes it
    r = srv.kubectl("apply", "--server-side", "-f", "-", stdin=manifest(3))
    assert r.returncode == 0, r.stderr
    obj = json.loads(srv.kubectl("get", "deploy", "kssa", "-o", "json").stdout)
    assert "env" not in obj["spec"]["template"]["spec"]["containers"][0]
    r = srv.kubectl("apply", "--server-side", "-f", "-", stdin=manifest(3).replace("replicas:", "replicaz:"))
    assert r.returncode == 1 and ".spec.replicaz: field not declared in schema" in r.stderr


def test_kubectl_scale_owns_replicas_through_the_scale_subresource(srv: ThreadedApiServer) -> None:
    m = ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: kscale}\nspec:\n  replicas: 1\n"
         "  selector: {matchLabels: {app: kscale}}\n  template:\n    metadata: {labels: {app: kscale}}\n"
         "    spec:\n      containers: [{name: web, image: nginx}]\n")
    assert srv.kubectl("apply", "--server-side", "-f", "-", stdin=m).returncode == 0
    r = srv.kubectl("scale", "deploy", "kscale", "--replicas=4")
    assert r.returncode == 0, r.stderr
    obj = json.loads(srv.kubectl("get", "deploy", "kscale", "-o", "json", "--show-managed-fields").stdout)
    scale = [e for e in obj["metadata"]["managedFields"] if e.get("subresource") == "scale"]
    assert len(scale) == 1 and scale[0]["fieldsV1"] == {"f:spec": {"f:replicas": {}}}
    assert scale[0]["operation"] == "Update" and scale[0]["apiVersion"] == "apps/v1"
    r = srv.kubectl("apply", "--server-side", "-f", "-", stdin=m)
    assert r.returncode == 1
    assert (f'Apply failed with 1 conflict: conflict with "{scale[0]["manager"]}" with subresource "scale" '
            'using apps/v1: .spec.replicas') in r.stderr, r.stderr


def test_apply_patch_duplicates_and_managed_fields_in_the_configuration(srv: ThreadedApiServer) -> None:
    text = (b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ydup}\ndata:\n  a: '1'\n  a: '2'\n")
    for mode, want in (("Strict", 400), ("Warn", 201), ("Ignore", 200)):
        req = urllib.request.Request(f"{srv.url}/api/v1/namespaces/default/configmaps/ydup?fieldManager=y&fieldValidation={mode}",
                                     data=text, method="PATCH", headers={"Content-Type": "application/apply-patch+yaml"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                code, body, warn = r.status, json.loads(r.read()), r.headers.get_all("Warning") or []
        except urllib.error.HTTPError as e:
            code, body, warn = e.code, json.loads(e.read()), []
        assert code == want, (mode, body)
        if mode == "Strict":
            assert body["message"] == ('error strict decoding YAML: error converting YAML to JSON: yaml: unmarshal '
                                       'errors:\n  line 6: key "a" already set in map')
        if mode == "Warn":
            assert body["data"] == {"a": "2"} and len(warn) == 1 and 'key \\"a\\" already set in map' in warn[0]
    code, st = call(srv, "PATCH", "/api/v1/namespaces/default/configmaps/ydup?fieldManager=y",
                    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ydup", "managedFields": []}})
    assert code == 400 and st["message"].startswith("managed fields must be nil")


def test_service_ports_are_keyed_by_port_and_protocol() -> None:
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
           "spec": {"ports": [{"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}]}}
    fields = mf.encode(mf.strip(mf.field_set(svc), True, None))
    assert set(fields["f:spec"]["f:ports"]) == {'k:{"port":80,"protocol":"TCP"}', 'k:{"port":53,"protocol":"UDP"}'}
    merged, managed = ssa.apply(svc, svc, [], "me", "v1", False, True)
    one = {**svc, "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}
    merged, managed = ssa.apply(merged, one, ssa.decode_entries(managed) or [], "me", "v1", False, True)
    assert merged["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": 8080}]
    # an atomic list elsewhere (EndpointSlice ports at the top level) is owned whole
    eps = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "ports": [{"port": 80}]}
    assert mf.encode(mf.strip(mf.field_set(eps), False, None)) == {"f:ports": {}}
