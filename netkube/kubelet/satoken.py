"""The projected service-account volume: token (TokenRequest), ca.crt and namespace, mounted in pods."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from netkube.client import SA_DIR, ApiClient, ApiError
from netkube.config import ClusterConfig

log = logging.getLogger(__name__)
TOKEN_SECONDS = 365 * 86400  # no refresher yet, so ask for a long-lived token (legacy Secret tokens never expired)


async def service_account_binds(client: ApiClient, cluster: ClusterConfig, pod: dict[str, Any],
                                pod_dir: Path) -> list[tuple[str, str]]:
    """Fetch the pod's token and return the bind mount for it; none with --insecure-http or opt-out."""
    spec, md = pod.get("spec") or {}, pod["metadata"]
    if cluster.insecure_http or spec.get("automountServiceAccountToken") is False:
        return []
    sa = spec.get("serviceAccountName") or "default"
    req = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
           "spec": {"audiences": [], "expirationSeconds": TOKEN_SECONDS,
                    "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": md["name"], "uid": md.get("uid", "")}}}
    try:
        out = await client.request("POST", f"/api/v1/namespaces/{md['namespace']}/serviceaccounts/{sa}/token", req)
    except ApiError as e:
        log.warning("no service-account token for %s/%s: %s", md["namespace"], md["name"], e)
        return []
    d = pod_dir / "serviceaccount"
    d.mkdir(parents=True, exist_ok=True)
    (d / "token").write_text(out["status"]["token"])
    (d / "ca.crt").write_bytes((cluster.pki_dir / "ca.crt").read_bytes())
    (d / "namespace").write_text(md["namespace"])
    # A bind mount needs its target: the empty directory is made once and shared by all clusters,
    # as `ip netns` leaves /run/netns behind; the pod's private mount namespace holds the mount.
    os.makedirs(SA_DIR, exist_ok=True)
    return [(str(d), str(SA_DIR))]
