"""Table-driven tests of the pure parts: hashing, rollout maths, pod order, filters, scoring, rendering."""

from __future__ import annotations

import pytest

from netkube.controllers.endpoints_render import render_slices, render_subsets, resolve_target_port
from netkube.controllers.hashing import compute_hash, fnv1a_32, safe_encode
from netkube.controllers.nodeipam import CIDRExhausted, next_free_cidr
from netkube.controllers.podorder import pods_to_delete
from netkube.controllers.rollout import RolloutError, fenceposts, new_rs_replicas, scaled_value
from netkube.labels import SelectorError, parse_label_selector, selector_matches
from netkube.scheduler.filters import filter_node_affinity, fit_error_message, node_fits, tolerates
from netkube.scheduler.scoring import rank_nodes
from netkube.testing.helpers import node


def test_fnv_and_safe_encode_known_values() -> None:
    assert fnv1a_32(b"") == 0x811C9DC5
    assert fnv1a_32(b"a") == 0xE40C292C  # published FNV-1a 32 test vector
    assert safe_encode("0123456789") == "456789bcdf"  # ord('0')=48, 48 % 27 = 21 -> '4'
    t = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c"}]}}
    assert compute_hash(t) == compute_hash({"spec": t["spec"], "metadata": t["metadata"]})
    assert compute_hash(t) != compute_hash(t, 1) != compute_hash(t, 2)


@pytest.mark.parametrize("value,total,up,expect", [
    ("25%", 3, True, 1), ("25%", 3, False, 0), ("50%", 5, True, 3), ("50%", 5, False, 2), (2, 10, True, 2),
    ("3", 10, False, 3), (None, 4, True, 1),
])
def test_scaled_value(value: object, total: int, up: bool, expect: int) -> None:
    assert scaled_value(value, total, up, "25%") == expect


def test_scaled_value_rejects_garbage_and_fenceposts_never_both_zero() -> None:
    with pytest.raises(RolloutError):
        scaled_value("abc", 3, True, "25%")
    d = {"spec": {"replicas": 3, "strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}}}
    assert fenceposts(d) == (0, 1)


@pytest.mark.parametrize("replicas,old_total,new_cur,expect", [
    (3, 3, 0, 1),  # surge 1: 3 old + 1 new
    (3, 4, 1, 1),  # at max total: no growth
    (3, 2, 1, 2),  # room for one more
    (4, 0, 0, 4),
])
def test_new_rs_replicas(replicas: int, old_total: int, new_cur: int, expect: int) -> None:
    d = {"spec": {"replicas": replicas}}
    old = {"spec": {"replicas": old_total}}
    new = {"spec": {"replicas": new_cur}}
    assert new_rs_replicas(d, [old, new], new) == expect


def _pod(name: str, node_name: str | None, phase: str, ready: bool, created: str) -> dict:
    return {"metadata": {"name": name, "creationTimestamp": created},
            "spec": {"nodeName": node_name} if node_name else {},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def test_deletion_order_upstream_preference() -> None:
    pods = [
        _pod("ready-old", "n1", "Running", True, "2024-01-01T00:00:00Z"),
        _pod("ready-new", "n1", "Running", True, "2024-01-02T00:00:00Z"),
        _pod("notready", "n1", "Running", False, "2024-01-01T00:00:00Z"),
        _pod("pending", "n1", "Pending", False, "2024-01-01T00:00:00Z"),
        _pod("unscheduled", None, "Pending", False, "2024-01-01T00:00:00Z"),
    ]
    order = [p["metadata"]["name"] for p in pods_to_delete(pods, 5)]
    assert order == ["unscheduled", "pending", "notready", "ready-new", "ready-old"]


@pytest.mark.parametrize("toleration,taint,ok", [
    ({"operator": "Exists"}, {"key": "k", "value": "v", "effect": "NoSchedule"}, True),
    ({"key": "k", "operator": "Exists"}, {"key": "k", "value": "v", "effect": "NoExecute"}, True),
    ({"key": "k", "value": "v"}, {"key": "k", "value": "v", "effect": "NoSchedule"}, True),
    ({"key": "k", "operator": "Equal", "value": "w"}, {"key": "k", "value": "v", "effect": "NoSchedule"}, False),
    ({"key": "k", "operator": "Exists", "effect": "NoExecute"}, {"key": "k", "effect": "NoSchedule"}, False),
    ({"key": "other", "operator": "Exists"}, {"key": "k", "effect": "NoSchedule"}, False),
])
def test_toleration_matching(toleration: dict, taint: dict, ok: bool) -> None:
    assert tolerates(toleration, taint) is ok


CP = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}


@pytest.mark.parametrize("pod_spec,nd,reason", [
    ({}, node("n", taints=[CP]), "node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"),
    ({"tolerations": [{"key": CP["key"], "operator": "Exists"}]}, node("n", taints=[CP]), None),
    ({}, node("n", taints=[{"key": "a", "value": "b", "effect": "PreferNoSchedule"}]), None),
    ({}, node("n", ready=False), "node(s) had untolerated taint {node.kubernetes.io/not-ready: }"),
    ({}, node("n", unschedulable=True), "node(s) were unschedulable"),
    ({"nodeSelector": {"disk": "ssd"}}, node("n"), "node(s) didn't match Pod's node affinity/selector"),
    ({"nodeSelector": {"disk": "ssd"}}, node("n", labels={"disk": "ssd"}), None),
    ({"nodeSelector": {"disk": "ssd"}}, node("n", taints=[CP]),  # taints are checked before affinity
     "node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"),
])
def test_node_fits(pod_spec: dict, nd: dict, reason: str | None) -> None:
    assert node_fits({"metadata": {"name": "p"}, "spec": pod_spec}, nd) == reason


def test_required_node_affinity_terms_are_ored() -> None:
    aff = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
        {"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}]}}}
    pod = {"spec": {"affinity": aff}}
    assert filter_node_affinity(pod, node("n", labels={"zone": "a"})) is None
    assert filter_node_affinity(pod, node("n", labels={"gpu": "1"})) is None
    assert filter_node_affinity(pod, node("n", labels={"zone": "b"})) is not None


def test_fit_error_message_format() -> None:
    msg = fit_error_message(3, {"node(s) didn't match Pod's node affinity/selector": 2,
                                "node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }": 1})
    assert msg == ("0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, "
                   "2 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: "
                   "3 Preemption is not helpful for scheduling.")


def test_rank_nodes_spreads_owner_then_balances() -> None:
    own = {"metadata": {"ownerReferences": [{"uid": "rs1", "controller": True}]}}
    other = {"metadata": {"ownerReferences": [{"uid": "rs2", "controller": True}]}}
    assert rank_nodes(own, ["n2", "n3"], []) == ["n2", "n3"]
    assert rank_nodes(own, ["n2", "n3"], [("n2", own)]) == ["n3", "n2"]
    assert rank_nodes(own, ["n2", "n3"], [("n3", other), ("n3", other), ("n2", own)]) == ["n3", "n2"]
    assert rank_nodes(own, ["n2", "n3"], [("n3", other)]) == ["n2", "n3"]


def test_next_free_cidr() -> None:
    assert next_free_cidr("10.244.0.0/16", set()) == "10.244.0.0/24"
    assert next_free_cidr("10.244.0.0/16", {"10.244.0.0/24", "10.244.2.0/24"}) == "10.244.1.0/24"
    with pytest.raises(CIDRExhausted, match="larger"):
        next_free_cidr("10.244.0.0/24", {"10.244.0.0/24"})


def _epod(name: str, ip: str, ready: bool, terminating: bool = False, ports: list | None = None) -> dict:
    md = {"name": name, "namespace": "default", "uid": f"uid-{name}", "labels": {"app": "w"}}
    if terminating:
        md["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    return {"metadata": md, "spec": {"nodeName": "node2", "containers": [{"ports": ports or []}]},
            "status": {"phase": "Running", "podIP": ip,
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def test_render_subsets_and_slices() -> None:
    svc = {"metadata": {"name": "w", "namespace": "default"},
           "spec": {"selector": {"app": "w"}, "ports": [{"name": "http", "port": 80, "targetPort": "web"}]}}
    pods = [_epod("a", "10.244.1.10", True, ports=[{"name": "web", "containerPort": 8080}]),
            _epod("b", "10.244.1.9", False, ports=[{"name": "web", "containerPort": 8080}]),
            _epod("c", "10.244.1.11", True, terminating=True, ports=[{"name": "web", "containerPort": 8080}]),
            _epod("d", "10.244.1.12", True, ports=[{"name": "web", "containerPort": 9090}]),
            _epod("e", "10.244.1.13", True)]  # no port named "web": left out
    subsets = render_subsets(svc, pods)
    assert [[a["ip"] for a in s.get("addresses", [])] for s in subsets] == [["10.244.1.10"], ["10.244.1.12"]]
    assert subsets[0]["notReadyAddresses"][0]["ip"] == "10.244.1.9"
    assert subsets[1]["ports"] == [{"name": "http", "port": 9090, "protocol": "TCP"}]
    slices = render_slices(svc, pods)
    assert [p for p, _ in slices] == [[{"name": "http", "port": 8080, "protocol": "TCP"}],
                                      [{"name": "http", "port": 9090, "protocol": "TCP"}]]
    conds = {e["addresses"][0]: e["conditions"] for e in slices[0][1]}
    assert conds["10.244.1.11"] == {"ready": False, "serving": True, "terminating": True}
    assert conds["10.244.1.9"] == {"ready": False, "serving": False, "terminating": False}
    assert resolve_target_port({"port": 80}, pods[0]) == 80


def test_label_selector_parsing() -> None:
    assert selector_matches({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1"]}]}, {"a": "1"})
    assert not selector_matches({"matchLabels": {"a": "1"}}, {"a": "2"})
    assert len(parse_label_selector("a=1,b in (x, y),!c")) == 3
    with pytest.raises(SelectorError):
        parse_label_selector("a b c")
