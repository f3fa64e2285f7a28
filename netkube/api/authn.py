"""Authentication: client certificates, static tokens and service-account JWTs; 401 for the rest.

There is no authorization (RBAC): every authenticated user may do everything, as with
`--authorization-mode=AlwaysAllow`. Anonymous requests reach only /healthz, /livez, /readyz and
/version, which upstream's system:public-info-viewer role grants to everyone (and the two
`netkube join` endpoints, see netkube/api/joinapi.py).
"""

from __future__ import annotations

import base64
import csv
import json
import re
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

PUBLIC = ("/healthz", "/livez", "/readyz", "/version",
          # `netkube join` (netkube/api/joinapi.py): the CA, public as kube-public/cluster-info is, and the
          # token-for-certificate exchange, which checks the bootstrap token itself
          "/netkube/cluster-info", "/netkube/join")
TOKEN_REQUEST = re.compile(r"^/api/v1/namespaces/([^/]+)/serviceaccounts/([^/]+)/token$")
ISSUER = "https://kubernetes.default.svc.cluster.local"  # upstream's default --service-account-issuer
TOKEN_TTL = 3607  # kubelet-requested projected tokens: one hour (+7 s, as upstream pads it)
USER = web.RequestKey("user", object)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = field(default=())


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class TokenSigner:
    """ES256 JWTs in upstream's service-account token shape (iss, sub, aud, exp, kubernetes.io)."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, issuer: str = ISSUER) -> None:
        self.key, self.issuer = key, issuer

    @classmethod
    def from_file(cls, path: Path) -> TokenSigner:
        key = serialization.load_pem_private_key(path.read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return cls(key)

    def sign(self, namespace: str, sa: str, ttl: int = TOKEN_TTL, pod: dict[str, str] | None = None) -> tuple[str, int]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer, "aud": [self.issuer], "iat": now, "nbf": now, "exp": now + ttl,
            "sub": f"system:serviceaccount:{namespace}:{sa}",
            "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": sa}},
        }
        if pod:
            claims["kubernetes.io"]["pod"] = pod
        head = _b64url(json.dumps({"alg": "ES256", "typ": "JWT"}).encode())
        body = _b64url(json.dumps(claims, separators=(",", ":")).encode())
        der = self.key.sign(f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)  # JWS ES256 wants raw r||s, not DER
        return f"{head}.{body}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}", now + ttl

    def verify(self, token: str) -> User | None:
        try:
            head, body, sig = token.split(".")
            raw = _unb64url(sig)
            der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
            self.key.public_key().verify(der, f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256()))
            claims = json.loads(_unb64url(body))
        except (ValueError, InvalidSignature, json.JSONDecodeError):
            return None
        if claims.get("iss") != self.issuer or int(claims.get("exp", 0)) < time.time():
            return None
        ns = claims.get("kubernetes.io", {}).get("namespace", "")
        return User(str(claims.get("sub")), ("system:serviceaccounts", f"system:serviceaccounts:{ns}",
                                             "system:authenticated"))


def load_token_file(path: Path) -> dict[str, User]:
    """--token-auth-file format: token,user,uid[,"group1,group2"] per line."""
    out: dict[str, User] = {}
    if not path.exists():
        return out
    for row in csv.reader(path.read_text().splitlines()):
        if len(row) >= 3 and not row[0].startswith("#"):
            groups = tuple(g for g in (row[3].split(",") if len(row) > 3 else []) if g)
            out[row[0]] = User(row[1], groups)
    return out


def server_ssl_context(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    """Serving cert plus optional client certs checked against the cluster CA (--client-ca-file)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ca))
    ctx.load_cert_chain(str(cert), str(key))
    ctx.verify_mode = ssl.CERT_OPTIONAL  # no cert is fine (tokens); a bad one fails the handshake
    return ctx


def cert_user(peercert: dict[str, Any] | None) -> User | None:
    if not peercert:
        return None
    cn, orgs = "", []
    for rdn in peercert.get("subject", ()):
        for k, v in rdn:
            if k == "commonName":
                cn = v
            elif k == "organizationName":
                orgs.append(v)
    return User(cn, (*orgs, "system:authenticated")) if cn else None


def unauthorized() -> web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "Unauthorized", "reason": "Unauthorized", "code": 401}
    return web.json_response(body, status=401)


class Authenticator:
    def __init__(self, signer: TokenSigner | None, tokens: dict[str, User] | None = None) -> None:
        self.signer = signer
        self.tokens = tokens or {}

    @classmethod
    def from_pki(cls, sa_key: Path, token_file: Path) -> Authenticator:
        return cls(TokenSigner.from_file(sa_key), load_token_file(token_file))

    def authenticate(self, request: web.Request) -> User | None:
        transport = request.transport
        user = cert_user(transport.get_extra_info("peercert") if transport is not None else None)
        if user is not None:
            return user
        auth = request.headers.get("Authorization", "")
        if auth[:7].lower() == "bearer ":
            token = auth[7:].strip()
            if token in self.tokens:
                u = self.tokens[token]
                return User(u.name, (*u.groups, "system:authenticated"))
            if self.signer is not None:
                return self.signer.verify(token)
        return None

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        user = self.authenticate(request)
        if user is None:
            if request.path in PUBLIC:
                return await handler(request)
            return unauthorized()
        request[USER] = user
        m = TOKEN_REQUEST.match(request.path)
        if m and request.method == "POST" and self.signer is not None:
            return await self.token_request(request, m.group(1), m.group(2))
        return await handler(request)

    async def token_request(self, request: web.Request, ns: str, sa: str) -> web.Response:
        """TokenRequest (authentication.k8s.io/v1), the API the kubelet uses for projected tokens."""
        try:
            spec = (await request.json()).get("spec") or {}
        except (ValueError, AttributeError):
            spec = {}
        ttl = int(spec.get("expirationSeconds") or TOKEN_TTL)
        ref = spec.get("boundObjectRef") or {}
        pod = {"name": ref["name"], "uid": ref.get("uid", "")} if ref.get("kind") == "Pod" and ref.get("name") else None
        token, exp = self.signer.sign(ns, sa, max(ttl, 600), pod)  # type: ignore[union-attr]
        body = {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                "metadata": {"name": sa, "namespace": ns, "uid": str(uuid.uuid4())},
                "spec": {**spec, "expirationSeconds": max(ttl, 600)},
                "status": {"token": token,
                           "expirationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(exp))}}
        return web.json_response(body, status=201)
