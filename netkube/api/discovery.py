"""Discovery documents: /version, /api, /apis and the per group-version APIResourceLists."""

from __future__ import annotations

from typing import Any

from .resources import GROUP_VERSIONS, VERBS, kinds_in

Obj = dict[str, Any]
GIT_VERSION = "v1.32.0"
# The pod subresources proxied to the kubelet, with the options kind upstream lists for them.
STREAMING = {"exec": "PodExecOptions", "attach": "PodAttachOptions", "portforward": "PodPortForwardOptions"}


def version() -> Obj:
    return {
        "major": "1", "minor": "32", "gitVersion": GIT_VERSION, "gitCommit": "netkube",
        "gitTreeState": "clean", "buildDate": "2024-12-11T00:00:00Z", "goVersion": "go1.23.3",
        "compiler": "gc", "platform": "linux/amd64",
    }


def api_versions(server: str) -> Obj:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server}]}


def api_group_list() -> Obj:
    groups = []
    for group, ver in GROUP_VERSIONS:
        if not group:
            continue
        gv = {"groupVersion": f"{group}/{ver}", "version": ver}
        groups.append({"name": group, "versions": [gv], "preferredVersion": gv})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(group: str) -> Obj | None:
    for g in api_group_list()["groups"]:
        if g["name"] == group:
            return {"kind": "APIGroup", "apiVersion": "v1", **g}
    return None


def resource_list(group: str, ver: str) -> Obj | None:
    kinds = kinds_in(group, ver)
    if not kinds:
        return None
    resources: list[Obj] = []
    for k in kinds:
        entry: Obj = {"name": k.plural, "singularName": k.singular, "namespaced": k.namespaced,
                      "kind": k.kind, "verbs": VERBS}
        if k.short_names:
            entry["shortNames"] = list(k.short_names)
        if k.plural in ("pods", "services", "deployments", "replicasets"):
            entry["categories"] = ["all"]  # makes `kubectl get all` list them
        resources.append(entry)
        for sub in k.subresources:
            s: Obj = {"name": f"{k.plural}/{sub}", "singularName": "", "namespaced": k.namespaced,
                      "kind": k.kind, "verbs": ["get", "patch", "update"]}
            if sub == "scale":
                s.update(group="autoscaling", version="v1", kind="Scale")
            elif sub == "binding":
                s.update(kind="Binding", verbs=["create"])
            elif sub == "eviction":  # kubectl drain looks for this entry, else it falls back to DELETE
                s.update(group="policy", version="v1", kind="Eviction", verbs=["create"])
            elif sub == "finalize":
                s.update(verbs=["update"])
            elif sub == "log":
                s.update(verbs=["get"])
            elif sub in STREAMING:
                s.update(kind=STREAMING[sub], verbs=["create", "get"])
            resources.append(s)
    return {"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": f"{group}/{ver}" if group else ver, "resources": resources}
