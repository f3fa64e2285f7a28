"""The cluster PKI made at `netkube up`: CA, apiserver serving cert, client certs, service-account key."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=365)  # kubeadm's leaf certificates last one year (its CA ten)
MASTERS = "system:masters"  # upstream's group that RBAC binds to cluster-admin


def _key() -> ec.EllipticCurvePrivateKey:
    # P-256 ECDSA: kubeadm's `--encryption-algorithm ECDSA-P256`; instant to generate, unlike RSA
    return ec.generate_private_key(ec.SECP256R1())


def _name(cn: str, orgs: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    return x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class CertKey:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def write(self, base: Path) -> None:
        """base.crt and base.key (0600), as kubeadm lays out /etc/kubernetes/pki."""
        base.parent.mkdir(parents=True, exist_ok=True)
        base.with_suffix(".crt").write_bytes(cert_pem(self.cert))
        fd = os.open(base.with_suffix(".key"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key_pem(self.key))


def make_ca(cn: str = "kubernetes") -> CertKey:
    key = _key()
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + 10 * VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return CertKey(cert, key)


def issue(ca: CertKey, cn: str, orgs: tuple[str, ...] = (), sans: list[str] | None = None) -> CertKey:
    """A leaf signed by ca: a serving cert when sans are given, else a client cert (CN = user, O = groups)."""
    key = _key()
    now = dt.datetime.now(dt.UTC)
    usage = [ExtendedKeyUsageOID.SERVER_AUTH] if sans is not None else [ExtendedKeyUsageOID.CLIENT_AUTH]
    b = (x509.CertificateBuilder().subject_name(_name(cn, orgs)).issuer_name(ca.cert.subject)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.ExtendedKeyUsage(usage), critical=False))
    if sans is not None:
        alt: list[x509.GeneralName] = []
        for s in sans:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(s)))
            except ValueError:
                alt.append(x509.DNSName(s))
        b = b.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    return CertKey(b.sign(ca.key, hashes.SHA256()), key)


def apiserver_sans(api_host: str, kubernetes_ip: str, domain: str) -> list[str]:
    """kubeadm's apiserver SANs: loopback, the advertise address, the `kubernetes` ClusterIP and names."""
    return ["127.0.0.1", api_host, kubernetes_ip, "localhost", "kubernetes", "kubernetes.default",
            "kubernetes.default.svc", f"kubernetes.default.svc.{domain}"]


@dataclass(frozen=True)
class PkiPaths:
    """Where one cluster's PKI lives (ca, apiserver, admin, controller-manager, nodes/<node>, sa)."""

    root: Path

    @property
    def ca(self) -> Path:
        return self.root / "ca.crt"

    def cert(self, who: str) -> Path:
        return self.root / f"{who}.crt"

    def key(self, who: str) -> Path:
        return self.root / f"{who}.key"

    def node(self, node: str) -> str:
        return f"nodes/{node}"

    @property
    def sa_key(self) -> Path:
        return self.root / "sa.key"

    @property
    def tokens(self) -> Path:
        return self.root / "tokens.csv"


def create_cluster_pki(root: Path, api_host: str, kubernetes_ip: str, domain: str, nodes: list[str]) -> PkiPaths:
    """All the files a cluster needs; nothing is reused from another cluster."""
    p = PkiPaths(root)
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    ca = make_ca()
    ca.write(root / "ca")
    issue(ca, "kube-apiserver", sans=apiserver_sans(api_host, kubernetes_ip, domain)).write(root / "apiserver")
    issue(ca, "kubernetes-admin", (MASTERS,)).write(root / "admin")
    issue(ca, "system:kube-controller-manager").write(root / "controller-manager")
    for n in nodes:
        # the Node authorizer's identity: user system:node:<name> in group system:nodes
        issue(ca, f"system:node:{n}", ("system:nodes",)).write(root / p.node(n))
    sa = _key()  # signs service-account tokens (ES256), as kubeadm's sa.key
    fd = os.open(p.sa_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem(sa))
    return p
