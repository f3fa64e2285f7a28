"""`netkube join` pieces without root: kubeadm-format tokens and CA hash, the join endpoint, reset's CNI
rule cleanup, and the confirmation server/join/reset ask for."""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from netkube.api.app import make_app
from netkube.api.authn import Authenticator, User
from netkube.api.joinapi import JOIN, JoinApi
from netkube.api.sqlite_store import SqliteStore
from netkube.config import ClusterConfig, ConfigError
from netkube.machine import host, tokens
from netkube.machine.join import make_csr
from netkube.machine.reset import cni_container_ids, cni_teardowns
from netkube.pki import create_cluster_pki

NOW = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def test_token_format_ttl_and_expiry() -> None:
    t = tokens.generate(dt.timedelta(hours=24), NOW)
    assert tokens.TOKEN_RE.match(str(t)) and t.expires == NOW + dt.timedelta(hours=24)
    assert not t.expired(NOW) and t.expired(NOW + dt.timedelta(hours=24))
    assert tokens.parse("abcdef.0123456789abcdef") == ("abcdef", "0123456789abcdef")
    with pytest.raises(tokens.TokenError, match="not in the form"):
        tokens.parse("ABCDEF.0123456789abcdef")
    assert tokens.parse_ttl("1h30m") == dt.timedelta(minutes=90) and tokens.parse_ttl("0") is None
    with pytest.raises(tokens.TokenError, match="not a duration"):
        tokens.parse_ttl("5x")
    with pytest.raises(tokens.TokenError, match="sha256:<64 hex digits>"):
        tokens.parse_hash("sha256:abc")


def test_token_file_check(tmp_path: Path) -> None:
    f = tokens.TokenFile(tmp_path / "bootstrap-tokens.csv")
    good, old = tokens.generate(dt.timedelta(hours=1), NOW), tokens.generate(dt.timedelta(seconds=1), NOW)
    forever = tokens.generate(None)
    for t in (good, old, forever):
        f.add(t)
    assert f.check(str(good), NOW) == good and f.check(str(forever), NOW + dt.timedelta(days=999)) == forever
    with pytest.raises(tokens.TokenError, match="expired"):
        f.check(str(old), NOW + dt.timedelta(seconds=2))
    with pytest.raises(tokens.TokenError, match="not valid"):
        f.check(f"{good.id}.{'0' * 16}", NOW)
    assert (tmp_path / "bootstrap-tokens.csv").stat().st_mode & 0o077 == 0


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl (Debian package openssl) is not installed")
def test_ca_hash_is_kubeadms(tmp_path: Path) -> None:
    create_cluster_pki(tmp_path, "192.0.2.101", "10.96.0.1", "cluster.local", [])
    # kubeadm's documented recipe: openssl x509 -pubkey | openssl pkey -pubin -outform der | sha256
    pub = subprocess.run(["openssl", "x509", "-pubkey", "-noout", "-in", str(tmp_path / "ca.crt")],
                         capture_output=True, check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pub, capture_output=True,
                         check=True).stdout
    assert tokens.ca_hash((tmp_path / "ca.crt").read_bytes()) == "sha256:" + hashlib.sha256(der).hexdigest()


@pytest.fixture
async def api(tmp_path: Path):  # type: ignore[no-untyped-def]
    cluster = ClusterConfig(name="lab", api_address="192.0.2.101")
    pki = tmp_path / "pki"
    create_cluster_pki(pki, "192.0.2.101", "10.96.0.1", "cluster.local", ["node1"])
    authn = Authenticator(None, {"admintoken": User("admin", ("system:masters",))})
    app = make_app(SqliteStore(str(tmp_path / "store.sqlite")), cluster, authn)
    JoinApi(cluster, pki).add_routes(app)
    f = tokens.TokenFile(pki / "bootstrap-tokens.csv")
    good, old = tokens.generate(dt.timedelta(hours=1)), tokens.generate(dt.timedelta(seconds=-1))
    f.add(good)
    f.add(old)
    async with TestClient(TestServer(app)) as client:
        yield client, pki, str(good), str(old)


async def _join(client: TestClient, token: str, node: str, csr: bytes | str) -> tuple[int, dict]:
    r = await client.post(JOIN, json={"nodeName": node, "csr": csr if isinstance(csr, str) else csr.decode()},
                          headers={"Authorization": f"Bearer {token}"})
    return r.status, await r.json()


async def test_join_endpoint(api) -> None:  # type: ignore[no-untyped-def]
    client, pki, good, old = api
    key, csr = make_csr("anything")  # the subject is the server's choice, not the CSR's
    code, body = await _join(client, good, "node2", csr)
    assert code == 201, body
    cert = x509.load_pem_x509_certificate(body["certificate"].encode())
    ca = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    cert.verify_directly_issued_by(ca)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:node:node2"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:nodes"
    assert isinstance(key, ec.EllipticCurvePrivateKey) and cert.public_key() == key.public_key()
    assert body["cluster"]["name"] == "lab" and body["ca.crt"] == (pki / "ca.crt").read_text()

    assert (await _join(client, old, "node2", csr))[1]["message"].startswith(f"bootstrap token {old[:6]!r} expired")
    assert (await _join(client, f"{good[:6]}.{'0' * 16}", "node2", csr))[0] == 401
    assert (await _join(client, "admintoken", "node2", csr))[0] == 401  # only bootstrap tokens here
    assert (await _join(client, good, "Node_2", csr))[0] == 400
    assert (await _join(client, good, "node2", "not a csr"))[0] == 400
    # anonymous: only the CA; bootstrap tokens open nothing else
    info = await client.get("/netkube/cluster-info")
    assert info.status == 200 and (await info.json())["ca.crt"].startswith("-----BEGIN CERTIFICATE-----")
    assert (await client.get("/api/v1/nodes", headers={"Authorization": f"Bearer {good}"})).status == 401

    # a Ready node of that name blocks the join; a NotReady one (its machine gone or reset) does not
    admin = {"Authorization": "Bearer admintoken"}
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node2"}}
    assert (await client.post("/api/v1/nodes", json=node, headers=admin)).status == 201
    assert (await _join(client, good, "node2", csr))[0] == 201
    status = {**node, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    r = await client.put("/api/v1/nodes/node2/status", json=status, headers=admin)
    assert r.status == 200, await r.text()
    code, body = await _join(client, good, "node2", csr)
    assert code == 409 and "a Ready node named 'node2' is already in the cluster" in body["message"]


NAT = """*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:CNI-0a1b2c3d4e5f6a7b8c9d0e1f - [0:0]
:KUBE-POSTROUTING - [0:0]
-A POSTROUTING -s 10.244.1.2/32 -m comment --comment "name: \\"cbr0\\" id: \\"c1\\"" -j CNI-0a1b2c3d4e5f6a7b8c9d0e1f
-A POSTROUTING -s 10.244.1.3/32 -m comment --comment "name: \\"other\\" id: \\"c2\\"" -j CNI-ffff
-A POSTROUTING -j KUBE-POSTROUTING
COMMIT
"""


def test_reset_finds_cni_rules_of_our_network_only() -> None:
    assert cni_container_ids(NAT) == ["c1"]
    from cni import masq

    chain = masq.chain_name("cbr0", "c1")
    nat = NAT.replace("CNI-0a1b2c3d4e5f6a7b8c9d0e1f", chain)
    [text] = cni_teardowns(nat)
    assert f"-X {chain}" in text and "-D POSTROUTING -s 10.244.1.2/32" in text and "KUBE" not in text


def test_confirm_needs_yes_without_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    with pytest.raises(ConfigError, match="Pass --yes"):
        host.confirm("join", yes=False)
    host.confirm("join", yes=True)
