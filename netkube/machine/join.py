"""`netkube join`: pin the cluster CA by its hash, trade the bootstrap token for a node cert, start the agent."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from netkube.client import cluster_client
from netkube.config import ClusterConfig, ConfigError
from netkube.lab.records import Records
from netkube.machine import host, tokens
from netkube.pki import key_pem

TIMEOUT = 10.0


def parse_url(url: str) -> tuple[str, int]:
    u = urlparse(url)
    if u.scheme != "https" or not u.hostname:
        raise ConfigError(f"{url!r} is not the apiserver URL https://IP:PORT from the join command")
    return u.hostname, u.port or 443


def _fetch(url: str, ctx: ssl.SSLContext, body: dict[str, Any] | None = None, token: str = "") -> dict[str, Any]:
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json", "Accept": "application/json",
                                          **({"Authorization": f"Bearer {token}"} if token else {})})
    with urllib.request.urlopen(req, timeout=TIMEOUT, context=ctx) as resp:
        return dict(json.loads(resp.read()))


def _unreachable(base: str, e: BaseException) -> ConfigError:
    reason = getattr(e, "reason", None) or e
    return ConfigError(f"cannot reach the apiserver at {base}: {reason}. Check the address and port in the join "
                       f"command, that `netkube server` runs there, and that this machine can reach it")


def discover(base: str, pin: str) -> tuple[bytes, str]:
    """The CA (fetched without trusting the server, as kubeadm's token discovery) if it matches pin."""
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE  # nothing is trusted yet: the hash check below is the trust
    try:
        info = _fetch(f"{base}/netkube/cluster-info", insecure)
    except urllib.error.HTTPError as e:
        raise ConfigError(f"{base} answered {e.code} to the cluster-info request: is it a `netkube server`?") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise _unreachable(base, e) from None
    ca = str(info.get("ca.crt", "")).encode()
    try:
        got = tokens.ca_hash(ca)
    except ValueError:
        raise ConfigError(f"{base} sent no usable CA certificate") from None
    if got != pin:
        raise ConfigError(f"the cluster CA at {base} has public key hash {got}, not the {pin} given with "
                          f"--discovery-token-ca-cert-hash: refusing to trust it. Check the join command (or make "
                          f"a new one on the server with `netkube token create --print-join-command`)")
    return ca, str(info.get("cluster", "netkube"))


def make_csr(node: str) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    from cryptography.hazmat.primitives import serialization

    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node}")]))
           .sign(key, hashes.SHA256()))
    return key, csr.public_bytes(serialization.Encoding.PEM)


def request_cert(base: str, ca: bytes, token: str, node: str, csr: bytes) -> dict[str, Any]:
    ctx = ssl.create_default_context(cadata=ca.decode())  # from here on the pinned CA is the trust
    try:
        return _fetch(f"{base}/netkube/join", ctx, {"nodeName": node, "csr": csr.decode()}, token)
    except urllib.error.HTTPError as e:
        try:
            message = json.loads(e.read()).get("message", "")
        except ValueError:
            message = ""
        raise ConfigError(f"the apiserver refused to join this machine ({e.code}): {message or e.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise _unreachable(base, e) from None


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def join(args: argparse.Namespace) -> int:
    from netkube.machine.node import install_node_files, log_tail, start_agent, wait_node_ready
    from netkube.machine.reset import reset_state_dir

    try:
        tokens.parse(args.token)
        pin = tokens.parse_hash(args.discovery_token_ca_cert_hash)
    except tokens.TokenError as e:
        raise ConfigError(str(e)) from None
    api_host, api_port = parse_url(args.url)
    base = f"https://{api_host}:{api_port}"
    node = args.node_name or socket.gethostname().split(".")[0]
    host.confirm("join", args.yes)
    ca, name = discover(base, pin)
    iface, addr = host.pick_interface(args.iface, None, towards=api_host)
    state_dir = Path(args.state_root) / name
    host.preflight(state_dir)
    key, csr = make_csr(node)
    answer = request_cert(base, ca, args.token, node, csr)
    # Everything above only read; from here on this machine changes, and any failure undoes it all.
    cluster = ClusterConfig(**answer["cluster"])
    cluster.state_root, cluster.api_address, cluster.api_port = args.state_root, api_host, api_port
    cluster.store, cluster.etcd_endpoints = "sqlite", ""  # the server's business, not this node's
    machine = host.Machine("join", node, iface, str(addr.ip), base)
    t0 = time.monotonic()
    print(f"netkube join: {node} ({addr.ip} on {iface}) joins cluster {name!r} at {base}", flush=True)
    machine.save(state_dir)
    try:
        cluster.save()
        machine.sysctls_before = host.apply_sysctls()
        machine.save(state_dir)
        pki = cluster.pki_dir
        _write_private(pki / "ca.crt", ca)
        _write_private(pki / "nodes" / f"{node}.crt", answer["certificate"].encode())
        _write_private(pki / "nodes" / f"{node}.key", key_pem(key))
        install_node_files(cluster)
        start_agent(cluster, machine, Records(cluster.records_path))
        asyncio.run(_wait_ready(cluster, node, base, args.timeout, wait_node_ready))
    except BaseException as e:
        tail = log_tail(cluster.log_dir / "agent.log")
        reset_state_dir(state_dir)
        if isinstance(e, (ConfigError, TimeoutError)):
            raise ConfigError(f"{e}\nEverything it set up was undone. The end of the agent log:\n{tail}") from None
        raise
    print(f"This machine joined as node {node} and is Ready ({time.monotonic() - t0:.1f}s). "
          f"On the control plane: `kubectl get nodes`.")
    return 0


async def _wait_ready(cluster: ClusterConfig, node: str, base: str, timeout: float, wait) -> None:  # type: ignore[no-untyped-def]
    client = cluster_client(cluster, f"nodes/{node}", base)
    try:
        await wait(client, node, timeout)
    finally:
        await client.close()
