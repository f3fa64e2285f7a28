"""The two endpoints `netkube join` uses: cluster-info (the CA, anonymous) and join (token → node cert).

kubeadm does the same in two steps: it reads the CA from ConfigMap kube-public/cluster-info without
trusting the server, pins it by its SPKI hash, then presents the bootstrap token (authenticated as
system:bootstrap:<id>) to get the kubelet's client certificate signed through a CSR. Here the
second step is one call: the token is checked on every request (unknown or expired → 401) and the
node's own key never leaves its machine — only a CSR comes in, and the subject is set by the server.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from netkube.api.app import REGISTRY
from netkube.api.resources import BY_KIND
from netkube.config import ClusterConfig
from netkube.machine.tokens import TokenError, TokenFile
from netkube.pki import VALIDITY

log = logging.getLogger(__name__)
CLUSTER_INFO = "/netkube/cluster-info"
JOIN = "/netkube/join"
NODE_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-.")


def _status(code: int, reason: str, message: str) -> web.Response:
    return web.json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                              "reason": reason, "message": message, "code": code}, status=code)


def valid_node_name(name: str) -> bool:
    # a DNS-1123 subdomain, what the apiserver accepts as a Node name
    return 0 < len(name) <= 253 and set(name) <= NODE_NAME_CHARS and name[0].isalnum() and name[-1].isalnum()


def sign_node_csr(ca_cert: x509.Certificate, ca_key: Any, csr_pem: bytes, node: str) -> x509.Certificate:
    """A kubelet client cert for the CSR's key; the subject is ours (system:node:<node>), not the CSR's."""
    csr = x509.load_pem_x509_csr(csr_pem)
    if not csr.is_signature_valid:
        raise ValueError("the CSR's signature does not verify")
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                         x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node}")])
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_cert.subject)
            .public_key(csr.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))


def _node_ready(node: dict[str, Any] | None) -> bool:
    for c in (node or {}).get("status", {}).get("conditions", []):
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


class JoinApi:
    """Handlers bound to one cluster's PKI directory; add_routes() mounts them on the apiserver app."""

    def __init__(self, cluster: ClusterConfig, pki: Path) -> None:
        self.cluster, self.pki = cluster, pki
        self.tokens = TokenFile(pki / "bootstrap-tokens.csv")

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get(CLUSTER_INFO, self.cluster_info)
        app.router.add_post(JOIN, self.join)

    async def cluster_info(self, request: web.Request) -> web.Response:
        # public: the joiner cannot verify us yet; it pins what we send by the hash it was given
        return web.json_response({"ca.crt": (self.pki / "ca.crt").read_text(), "cluster": self.cluster.name})

    async def join(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        if auth[:7].lower() != "bearer ":
            return _status(401, "Unauthorized", "a bootstrap token is required (Authorization: Bearer <id>.<secret>)")
        try:
            token = self.tokens.check(auth[7:].strip())
        except TokenError as e:
            return _status(401, "Unauthorized", str(e))
        try:
            body = await request.json()
            node, csr = str(body["nodeName"]), str(body["csr"]).encode()
        except (ValueError, KeyError, TypeError):
            return _status(400, "BadRequest", 'the body must be JSON {"nodeName": ..., "csr": PEM}')
        if not valid_node_name(node):
            return _status(400, "BadRequest", f"node name {node!r} is invalid: use lower-case letters, digits, "
                                              f"'-' and '.', starting and ending with a letter or digit")
        existing = request.app[REGISTRY].store.get(BY_KIND["Node"].key(None, node))
        if _node_ready(existing):
            return _status(409, "AlreadyExists",
                           f"a Ready node named {node!r} is already in the cluster; give this machine another "
                           f"name (--node-name) or run `netkube reset` on the machine that holds it")
        ca_cert = x509.load_pem_x509_certificate((self.pki / "ca.crt").read_bytes())
        ca_key = serialization.load_pem_private_key((self.pki / "ca.key").read_bytes(), None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        try:
            cert = sign_node_csr(ca_cert, ca_key, csr, node)
        except ValueError as e:
            return _status(400, "BadRequest", f"the certificate signing request is unusable: {e}")
        log.info("node %s joined with bootstrap token %s", node, token.id)
        return web.json_response({
            "certificate": cert.public_bytes(serialization.Encoding.PEM).decode(),
            "ca.crt": (self.pki / "ca.crt").read_text(),
            "cluster": asdict(self.cluster),
        }, status=201)
