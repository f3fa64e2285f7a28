"""kubeadm's ConfigMap kube-system/kube-proxy: its `mode:` chooses every node's proxy backend, live."""

from __future__ import annotations

from typing import Any

import yaml

from netkube.config import ClusterConfig

NAME, NAMESPACE, KEY = "kube-proxy", "kube-system", "config.conf"
DEFAULT_MODE = "iptables"  # upstream: an empty mode means iptables on Linux
MODE_ANNOTATION = "netkube.io/proxy-mode"  # set by each node agent once the mode is programmed


def config_text(cluster: ClusterConfig, mode: str) -> str:
    """A KubeProxyConfiguration as kubeadm writes it (the fields netkube honours)."""
    return (
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1\n"
        "kind: KubeProxyConfiguration\n"
        f"clusterCIDR: {cluster.pod_cidr}\n"
        f"mode: {mode}\n"
        f"nodePortAddresses: null\n"
    )


def configmap(cluster: ClusterConfig, mode: str | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": {"app": "kube-proxy"}},
        "data": {KEY: config_text(cluster, mode or cluster.proxy_mode)},
    }


def manifests(cluster: ClusterConfig) -> list[dict[str, Any]]:
    return [configmap(cluster)]


def mode_of(cm: dict[str, Any]) -> str:
    """The mode a ConfigMap asks for; raises ValueError with a user-facing reason if unreadable."""
    text = (cm.get("data") or {}).get(KEY)
    if text is None:
        raise ValueError(f"ConfigMap {NAMESPACE}/{NAME} has no {KEY!r} key")
    try:
        conf = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"ConfigMap {NAMESPACE}/{NAME} {KEY} is not YAML: {e}") from e
    if not isinstance(conf, dict):
        raise ValueError(f"ConfigMap {NAMESPACE}/{NAME} {KEY} is not a KubeProxyConfiguration mapping")
    return str(conf.get("mode") or DEFAULT_MODE)


def with_mode(cm: dict[str, Any], mode: str) -> str:
    """The config text of `cm` with only its mode replaced (a user's other fields stay)."""
    text = (cm.get("data") or {}).get(KEY) or ""
    try:
        conf = yaml.safe_load(text) or {}
    except yaml.YAMLError:
        conf = {}
    if not isinstance(conf, dict):
        conf = {}
    conf["mode"] = mode
    return yaml.safe_dump(conf, sort_keys=False)
