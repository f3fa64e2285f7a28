"""Container environment: the Docker-link style service variables plus the container's own env."""

from __future__ import annotations

from typing import Any

from netkube.config import ClusterConfig


def _service_vars(name: str, ip: str, ports: list[dict[str, Any]]) -> dict[str, str]:
    prefix = name.upper().replace("-", "_")
    out: dict[str, str] = {f"{prefix}_SERVICE_HOST": ip}
    for i, p in enumerate(ports):
        port, proto = p["port"], (p.get("protocol") or "TCP")
        if i == 0:
            out[f"{prefix}_SERVICE_PORT"] = str(port)
            out[f"{prefix}_PORT"] = f"{proto.lower()}://{ip}:{port}"
        if p.get("name"):
            out[f"{prefix}_SERVICE_PORT_{p['name'].upper().replace('-', '_')}"] = str(port)
        base = f"{prefix}_PORT_{port}_{proto.upper()}"
        out[base] = f"{proto.lower()}://{ip}:{port}"
        out[f"{base}_PROTO"] = proto.lower()
        out[f"{base}_PORT"] = str(port)
        out[f"{base}_ADDR"] = ip
    return out


def service_env(pod: dict[str, Any], services: list[dict[str, Any]], cluster: ClusterConfig) -> dict[str, str]:
    """Variables for services existing at container start (upstream: only the pod's namespace,
    plus the master service `kubernetes`, always)."""
    out: dict[str, str] = {}
    ns = pod["metadata"]["namespace"]
    links = pod["spec"].get("enableServiceLinks", True)
    for svc in sorted(services, key=lambda s: s["metadata"]["name"]):
        md, spec = svc["metadata"], svc.get("spec", {})
        ip = spec.get("clusterIP")
        if not ip or ip == "None" or md.get("namespace") != ns or not links:
            continue
        out.update(_service_vars(md["name"], ip, spec.get("ports") or []))
    out.update(
        _service_vars(
            "kubernetes", cluster.kubernetes_service_ip, [{"name": "https", "port": 443, "protocol": "TCP"}]
        )
    )
    return out


def container_env(
    pod: dict[str, Any],
    container: dict[str, Any],
    services: list[dict[str, Any]],
    cluster: ClusterConfig,
    hostname: str,
    image_env: dict[str, str],
) -> dict[str, str]:
    env: dict[str, str] = dict(image_env)
    env["HOSTNAME"] = hostname
    env.update(service_env(pod, services, cluster))
    for item in container.get("env") or []:
        if "value" in item or "valueFrom" not in item:
            env[item["name"]] = str(item.get("value", ""))
    return env
