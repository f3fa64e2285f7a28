"""kubeconfig files as kubeadm's admin.conf: server, CA data and an embedded client cert/key."""

from __future__ import annotations

import base64
from pathlib import Path

import yaml


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def render(name: str, server: str, pki: Path | None = None, who: str = "admin") -> str:
    """A kubeconfig for user `who` of the cluster PKI in pki; pki None = plain HTTP, no credentials."""
    cluster: dict[str, str] = {"server": server}
    user: dict[str, str] = {}
    if pki is not None:
        cluster["certificate-authority-data"] = _b64(pki / "ca.crt")
        user = {"client-certificate-data": _b64(pki / f"{who}.crt"),
                "client-key-data": _b64(pki / f"{who}.key")}
    doc = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": f"{name}-{who.replace('/', '-')}", "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": f"{name}-{who.replace('/', '-')}",
                                                "namespace": "default"}}],
        "current-context": name,
    }
    return yaml.safe_dump(doc, sort_keys=False)


def write(path: Path, text: str) -> Path:
    """The file holds a private key: 0600, as kubeadm writes admin.conf."""
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(text)
    return path
