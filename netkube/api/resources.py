"""Registry of the served kinds: group, version, plural, kind, scope, short names, subresources."""

from __future__ import annotations

from dataclasses import dataclass

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True)
class Kind:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    def key(self, namespace: str | None, name: str) -> str:
        """Storage key, laid out like etcd's /registry tree so a namespace prefix lists one namespace."""
        if self.namespaced:
            return f"{self.prefix(namespace)}{name}"
        return f"{self.prefix(None)}{name}"

    def prefix(self, namespace: str | None) -> str:
        base = f"/registry/{self.group or 'core'}/{self.plural}/"
        return base + f"{namespace}/" if self.namespaced and namespace else base


KINDS: list[Kind] = [
    Kind("", "v1", "namespaces", "Namespace", False, ("ns",), ("status", "finalize")),
    Kind("", "v1", "nodes", "Node", False, ("no",), ("status",)),
    Kind("", "v1", "pods", "Pod", True, ("po",), ("status", "binding", "eviction", "log", "exec", "attach", "portforward")),
    Kind("", "v1", "services", "Service", True, ("svc",), ("status",)),
    Kind("", "v1", "endpoints", "Endpoints", True, ("ep",)),
    Kind("", "v1", "events", "Event", True, ("ev",)),
    Kind("", "v1", "configmaps", "ConfigMap", True, ("cm",)),
    Kind("", "v1", "secrets", "Secret", True),
    Kind("", "v1", "serviceaccounts", "ServiceAccount", True, ("sa",)),
    Kind("apps", "v1", "deployments", "Deployment", True, ("deploy",), ("status", "scale")),
    Kind("apps", "v1", "replicasets", "ReplicaSet", True, ("rs",), ("status", "scale")),
    Kind("apps", "v1", "daemonsets", "DaemonSet", True, ("ds",), ("status",)),
    Kind("apps", "v1", "statefulsets", "StatefulSet", True, ("sts",), ("status", "scale")),
    Kind("apps", "v1", "controllerrevisions", "ControllerRevision", True),
    Kind("batch", "v1", "jobs", "Job", True, (), ("status",)),
    Kind("batch", "v1", "cronjobs", "CronJob", True, ("cj",), ("status",)),
    Kind("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True),
    Kind("coordination.k8s.io", "v1", "leases", "Lease", True),
]

BY_PATH: dict[tuple[str, str, str], Kind] = {(k.group, k.version, k.plural): k for k in KINDS}
BY_KIND: dict[str, Kind] = {k.kind: k for k in KINDS}
GROUP_VERSIONS: list[tuple[str, str]] = list(dict.fromkeys((k.group, k.version) for k in KINDS))
NAMESPACES = BY_PATH[("", "v1", "namespaces")]


def kinds_in(group: str, version: str) -> list[Kind]:
    return [k for k in KINDS if k.group == group and k.version == version]
