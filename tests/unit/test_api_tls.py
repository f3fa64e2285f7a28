"""HTTPS with a cluster CA: client certs, tokens, TokenRequest, 401s, kubectl and the kubernetes client."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from netkube.api.testing import ThreadedApiServer
from netkube.client import NAMESPACES, PODS, ApiClient, ApiError
from netkube.pki import create_cluster_pki, issue, make_ca

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
       "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedApiServer]:
    d = tmp_path_factory.mktemp("tls")
    pki = d / "pki"
    create_cluster_pki(pki, "192.0.2.101", "10.96.0.1", "cluster.local", ["node1"])
    (pki / "tokens.csv").write_text('abcdef.0123456789abcdef,bootstrap,uid1,"system:bootstrappers"\n')
    s = ThreadedApiServer(str(d / "store.sqlite"), pki=pki).start()
    try:
        yield s
    finally:
        s.stop()
        s.cleanup()


async def _status(url: str, path: str, ctx: ssl.SSLContext, token: str | None = None) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as s, s.get(url + path, ssl=ctx, headers=headers) as r:
        return r.status, await r.json(content_type=None) if r.content_type == "application/json" else {}


def test_authentication(tls: ThreadedApiServer) -> None:
    assert tls.pki is not None
    anon = ssl.create_default_context(cafile=str(tls.pki / "ca.crt"))

    async def go() -> None:
        code, body = await _status(tls.url, "/api/v1/namespaces", anon)
        assert code == 401 and body == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                        "message": "Unauthorized", "reason": "Unauthorized", "code": 401}
        assert (await _status(tls.url, "/healthz", anon))[0] == 200  # public, as upstream
        assert (await _status(tls.url, "/api/v1/namespaces", anon, "wrong.token"))[0] == 401
        assert (await _status(tls.url, "/api/v1/namespaces", anon, "abcdef.0123456789abcdef"))[0] == 200
        for who in ("admin", "nodes/node1", "controller-manager"):
            c = tls.client(who)
            try:
                assert (await c.list(NAMESPACES))["items"]
            finally:
                await c.close()
        # a node asks for a pod's service-account token; the token then authenticates on its own
        node = tls.client("nodes/node1")
        try:
            out = await node.request("POST", "/api/v1/namespaces/default/serviceaccounts/default/token",
                                     {"spec": {"boundObjectRef": {"kind": "Pod", "name": "p", "uid": "u"}}})
        finally:
            await node.close()
        token = out["status"]["token"]
        sa = ApiClient(tls.url, ca_file=tls.pki / "ca.crt", token=token)
        try:
            assert (await sa.create(PODS, POD, "default"))["metadata"]["name"] == "p"
        finally:
            await sa.close()
        forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        assert (await _status(tls.url, "/api/v1/pods", anon, forged))[0] == 401
        # a certificate from another CA fails the TLS handshake
        other = make_ca("other")
        stranger = issue(other, "kubernetes-admin", ("system:masters",))
        stranger.write(tls.pki.parent / "stranger")
        bad = ApiClient(tls.url, ca_file=tls.pki / "ca.crt", cert_file=tls.pki.parent / "stranger.crt",
                        key_file=tls.pki.parent / "stranger.key")
        try:
            with pytest.raises((aiohttp.ClientError, ApiError)):
                await bad.list(NAMESPACES)
        finally:
            await bad.close()

    asyncio.run(go())


def test_serving_cert_sans_and_kubectl(tls: ThreadedApiServer) -> None:
    from cryptography import x509

    assert tls.pki is not None
    cert = x509.load_pem_x509_certificate((tls.pki / "apiserver.crt").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = {str(v) for v in sans.get_values_for_type(x509.IPAddress)} | set(sans.get_values_for_type(x509.DNSName))
    assert {"127.0.0.1", "192.0.2.101", "10.96.0.1", "kubernetes.default.svc.cluster.local"} <= names
    kc = tls.kubeconfig.read_text()
    assert "certificate-authority-data" in kc and "client-certificate-data" in kc
    r = tls.kubectl("get", "namespaces", "-o", "name")  # the real kubectl with the admin.conf-style file
    assert r.returncode == 0 and "namespace/kube-system" in r.stdout, r.stderr


def test_kubernetes_python_client(tls: ThreadedApiServer) -> None:
    k8s = pytest.importorskip("kubernetes", reason="pip install kubernetes (the test extra)")
    from kubernetes import client, config, watch

    api_client = config.new_client_from_config(config_file=str(tls.kubeconfig))
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    core.create_namespace({"metadata": {"name": "py"}})
    assert "py" in [n.metadata.name for n in core.list_namespace().items]
    cm = core.create_namespaced_config_map("py", {"metadata": {"name": "c"}, "data": {"a": "1"}})
    rv = cm.metadata.resource_version
    core.patch_namespaced_config_map("c", "py", {"data": {"a": "2"}})
    events = [(e["type"], e["object"].data["a"]) for e in watch.Watch().stream(
        core.list_namespaced_config_map, "py", resource_version=rv, timeout_seconds=1)]
    assert events == [("MODIFIED", "2")]
    dep = {"metadata": {"name": "web"}, "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
           "template": {"metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "w", "image": "httpd"}]}}}}
    apps.create_namespaced_deployment("py", dep)
    apps.patch_namespaced_deployment_scale("web", "py", {"spec": {"replicas": 3}})
    got = apps.read_namespaced_deployment("web", "py")
    assert got.spec.replicas == 3 and got.metadata.generation == 2
    assert [d.metadata.name for d in apps.list_namespaced_deployment("py").items] == ["web"]
    apps.delete_namespaced_deployment("web", "py")
    core.delete_namespaced_config_map("c", "py")
    with pytest.raises(k8s.client.exceptions.ApiException) as e:
        core.read_namespaced_config_map("c", "py")
    assert e.value.status == 404
    api_client.close()


def test_kubeconfig_is_private(tls: ThreadedApiServer, tmp_path: Path) -> None:
    from netkube import kubeconfig

    assert tls.pki is not None
    p = kubeconfig.write(tmp_path / "kc", kubeconfig.render("x", tls.url, tls.pki))
    assert p.stat().st_mode & 0o777 == 0o600 and (tls.pki / "admin.key").stat().st_mode & 0o777 == 0o600
