"""Bootstrap tokens and CA pinning in kubeadm's formats (`<id>.<secret>`, `sha256:<hex SPKI hash>`)."""

from __future__ import annotations

import csv
import datetime as dt
import fcntl
import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

# kubeadm's bootstrap token: 6 + 16 characters of [a-z0-9] (k8s.io/cluster-bootstrap/token/api)
TOKEN_RE = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")
HASH_RE = re.compile(r"^sha256:([0-9a-f]{64})$")
DEFAULT_TTL = dt.timedelta(hours=24)  # kubeadm's --token-ttl default
_ALPHABET = string.ascii_lowercase + string.digits


class TokenError(ValueError):
    """A token or hash the user gave is malformed, unknown or expired; the message says which."""


@dataclass(frozen=True)
class BootstrapToken:
    id: str
    secret: str
    expires: dt.datetime | None  # None: never (kubeadm --ttl 0)

    def __str__(self) -> str:
        return f"{self.id}.{self.secret}"

    def expired(self, now: dt.datetime | None = None) -> bool:
        return self.expires is not None and (now or dt.datetime.now(dt.UTC)) >= self.expires


def generate(ttl: dt.timedelta | None = DEFAULT_TTL, now: dt.datetime | None = None) -> BootstrapToken:
    def pick(n: int) -> str:
        return "".join(secrets.choice(_ALPHABET) for _ in range(n))

    expires = None if ttl is None else (now or dt.datetime.now(dt.UTC)) + ttl
    return BootstrapToken(pick(6), pick(16), expires)


def parse(text: str) -> tuple[str, str]:
    m = TOKEN_RE.match(text.strip())
    if not m:
        raise TokenError(f"token {text!r} is not in the form <6 chars>.<16 chars> of a-z and 0-9 "
                         f"(e.g. abcdef.0123456789abcdef); copy it from the join command `netkube server` printed")
    return m.group(1), m.group(2)


def parse_ttl(text: str) -> dt.timedelta | None:
    """A Go-style duration (24h, 90m, 30s, 1h30m); 0 = never expires, as kubeadm's --ttl 0."""
    t = text.strip()
    if t in ("0", "0s"):
        return None
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", t)
    if not t or not parts or not any(parts.groups()):
        raise TokenError(f"--ttl {text!r} is not a duration such as 24h, 90m or 30s (0 = never expires)")
    h, m, s = (int(g or 0) for g in parts.groups())
    return dt.timedelta(hours=h, minutes=m, seconds=s)


def ca_hash(ca_pem: bytes) -> str:
    """kubeadm's --discovery-token-ca-cert-hash: SHA-256 of the CA's DER SubjectPublicKeyInfo."""
    cert = x509.load_pem_x509_certificate(ca_pem)
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def parse_hash(text: str) -> str:
    t = text.strip().lower()
    if not HASH_RE.match(t):
        raise TokenError(f"--discovery-token-ca-cert-hash {text!r} is not sha256:<64 hex digits>; "
                         f"copy it from the join command `netkube server` printed")
    return t


def join_command(url: str, token: BootstrapToken, ca_pem: bytes) -> str:
    return f"netkube join {url} --token {token} --discovery-token-ca-cert-hash {ca_hash(ca_pem)}"


class TokenFile:
    """<state>/pki/bootstrap-tokens.csv: `id,secret,expiry (RFC 3339 or never)` per line.

    The apiserver re-reads it on every join, so `netkube token create` takes effect at once."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def add(self, token: BootstrapToken) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        exp = token.expires.strftime("%Y-%m-%dT%H:%M:%SZ") if token.expires else "never"
        with open(self.path, "a") as f:
            self.path.chmod(0o600)  # the secrets are credentials
            fcntl.flock(f, fcntl.LOCK_EX)
            f.write(f"{token.id},{token.secret},{exp}\n")

    def tokens(self) -> dict[str, BootstrapToken]:
        out: dict[str, BootstrapToken] = {}
        try:
            rows = list(csv.reader(self.path.read_text().splitlines()))
        except FileNotFoundError:
            return out
        for row in rows:
            if len(row) != 3:
                continue
            exp = None if row[2] == "never" else dt.datetime.strptime(row[2], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
            out[row[0]] = BootstrapToken(row[0], row[1], exp)
        return out

    def check(self, presented: str, now: dt.datetime | None = None) -> BootstrapToken:
        """The matching unexpired token, else TokenError saying why (unknown or expired)."""
        tid, secret = parse(presented)
        have = self.tokens().get(tid)
        # constant-time compare of the secret, as upstream's bootstrap authenticator does
        if have is None or not hmac.compare_digest(have.secret, secret):
            raise TokenError(f"bootstrap token {tid!r} is not valid for this cluster; make a new one on the "
                             f"server with `netkube token create --print-join-command`")
        if have.expired(now):
            raise TokenError(f"bootstrap token {tid!r} expired at {have.expires:%Y-%m-%d %H:%M:%S} UTC; make a new one "
                             f"on the server with `netkube token create --print-join-command`")
        return have
