"""The DNS server over real loopback sockets, fed by the watcher from a fake apiserver."""

from __future__ import annotations

import asyncio
import shutil
import socket
import struct

import aiohttp
import pytest
from dnslib import RCODE, DNSRecord

from netkube.client import ENDPOINTSLICES, NAMESPACES, SERVICES
from netkube.dns.forward import Forwarder, parse_upstreams
from netkube.dns.handler import Handler
from netkube.dns.health import HealthServer
from netkube.dns.index import Index
from netkube.dns.server import DnsServer
from netkube.dns.watch import ClusterWatcher
from netkube.testing.fake_api import FakeApiClient


async def udp_query(port: int, name: str, qtype: str = "A") -> DNSRecord:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(sock, DNSRecord.question(name, qtype).pack())
        return DNSRecord.parse(await asyncio.wait_for(loop.sock_recv(sock, 4096), 3))
    finally:
        sock.close()


async def tcp_query(port: int, names: list[str]) -> list[DNSRecord]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    out = []
    try:
        for name in names:  # several queries on one connection
            q = DNSRecord.question(name).pack()
            writer.write(struct.pack("!H", len(q)) + q)
            (n,) = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), 3))
            out.append(DNSRecord.parse(await reader.readexactly(n)))
    finally:
        writer.close()
    return out


def rrs(r: DNSRecord) -> list[str]:
    return sorted(" ".join(str(rr).split()) for rr in r.rr)


async def wait_for(cond, timeout: float = 3.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if cond():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


async def test_watch_serve_udp_tcp_and_health() -> None:
    api = FakeApiClient()
    await api.create(NAMESPACES, {"metadata": {"name": "default"}})
    await api.create(SERVICES, {"metadata": {"name": "web", "namespace": "default"},
                                "spec": {"clusterIP": "10.96.0.20", "ports": [{"name": "http", "port": 80}]}})
    index = Index()
    dns = DnsServer(Handler(index), "127.0.0.1", 0)
    health = HealthServer(index, "127.0.0.1", 0, 0)
    await dns.start()
    await health.start()
    watcher = None
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{health.ready_port}/ready") as resp:
                assert resp.status == 503
            async with http.get(f"http://127.0.0.1:{health.health_port}/health") as resp:
                assert resp.status == 200 and await resp.text() == "OK"
            assert RCODE.get((await udp_query(dns.port, "web.default.svc.cluster.local")).header.rcode) == "SERVFAIL"

            watcher = asyncio.create_task(ClusterWatcher(api, index).run())  # type: ignore[arg-type]
            await wait_for(lambda: index.synced)
            async with http.get(f"http://127.0.0.1:{health.ready_port}/ready") as resp:
                assert resp.status == 200
        assert rrs(await udp_query(dns.port, "web.default.svc.cluster.local")) == [
            "web.default.svc.cluster.local. 5 IN A 10.96.0.20"]

        # A headless service appears through the watch, then its EndpointSlice.
        await api.create(SERVICES, {"metadata": {"name": "db", "namespace": "default"},
                                    "spec": {"clusterIP": "None", "ports": [{"port": 5432}]}})
        await api.create(ENDPOINTSLICES, {
            "metadata": {"name": "db-x1", "namespace": "default", "labels": {"kubernetes.io/service-name": "db"}},
            "addressType": "IPv4", "ports": [{"port": 5432}],
            "endpoints": [{"addresses": ["10.244.1.5"], "hostname": "db-0"}]})
        await wait_for(lambda: ("default", "db-x1") in index.slices)
        got = await tcp_query(dns.port, ["db.default.svc.cluster.local", "db-0.db.default.svc.cluster.local"])
        assert rrs(got[0]) == ["db.default.svc.cluster.local. 5 IN A 10.244.1.5"]
        assert rrs(got[1]) == ["db-0.db.default.svc.cluster.local. 5 IN A 10.244.1.5"]

        await api.delete(SERVICES, "web", "default")
        await wait_for(lambda: index.service("default", "web") is None)
        r = await udp_query(dns.port, "web.default.svc.cluster.local")
        assert RCODE.get(r.header.rcode) == "NXDOMAIN"

        if shutil.which("dig"):
            proc = await asyncio.create_subprocess_exec(
                "dig", "@127.0.0.1", "-p", str(dns.port), "+noall", "+answer", "+tries=1", "+time=2",
                "db-0.db.default.svc.cluster.local", stdout=asyncio.subprocess.PIPE)
            out, _ = await proc.communicate()
            assert " ".join(out.decode().split()) == "db-0.db.default.svc.cluster.local. 5 IN A 10.244.1.5"
    finally:
        if watcher:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        await dns.close()
        await health.close()


async def test_forwarding_to_upstream() -> None:
    # The "upstream" is a second instance of our own server answering its zone example.test.
    up_index = Index()
    up_index.set_namespace("default")
    from netkube.dns.model import Port, Service
    up_index.set_service(Service("www", "default", ("192.0.2.10",), False, None, (Port("", 80, "TCP"),)))
    up_index.mark_synced()
    upstream = DnsServer(Handler(up_index, "example.test"), "127.0.0.1", 0)
    await upstream.start()
    index = Index()
    index.mark_synced()
    dead = ("127.0.0.1", 9)  # discard port: nothing answers, so the forwarder must move on
    front = DnsServer(Handler(index, forward=True), "127.0.0.1", 0,
                      Forwarder([dead, ("127.0.0.1", upstream.port)], timeout=0.5))
    await front.start()
    try:
        r = await udp_query(front.port, "www.default.svc.example.test")
        assert rrs(r) == ["www.default.svc.example.test. 5 IN A 192.0.2.10"]
        (r,) = await tcp_query(front.port, ["www.default.svc.example.test"])
        assert rrs(r) == ["www.default.svc.example.test. 5 IN A 192.0.2.10"]
    finally:
        await front.close()
        await upstream.close()


def test_parse_upstreams() -> None:
    assert parse_upstreams(["8.8.8.8", "10.0.0.1:5353,[::1]:53", "::1"]) == [
        ("8.8.8.8", 53), ("10.0.0.1", 5353), ("::1", 53), ("::1", 53)]
    with pytest.raises(ValueError, match="port must be a number"):
        parse_upstreams(["10.0.0.1:dns"])


def test_main_rejects_missing_apiserver(monkeypatch: pytest.MonkeyPatch) -> None:
    from netkube.dns.__main__ import apiserver_url, parse_args
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(SystemExit, match="KUBERNETES_SERVICE_HOST"):
        apiserver_url(None)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    assert apiserver_url(None) == "http://10.96.0.1:443"
    args, extra = parse_args(["-conf", "/etc/coredns/Corefile", "--port", "5353"])
    assert args.port == 5353 and extra == ["-conf", "/etc/coredns/Corefile"]


def test_module_entry_point_runs_and_stops_on_sigterm() -> None:
    import os
    import signal
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    def free(kind: int) -> int:
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    port, hp, rp = free(socket.SOCK_STREAM), free(socket.SOCK_STREAM), free(socket.SOCK_STREAM)
    # No apiserver answers on port 9 (discard): the server must stay up, unready, answering SERVFAIL.
    p = subprocess.Popen([sys.executable, "-m", "netkube.dns", "--bind", "127.0.0.1", "--port", str(port),
                          "--health-port", str(hp), "--ready-port", str(rp), "--apiserver", "http://127.0.0.1:9",
                          "-conf", "/etc/coredns/Corefile"], stderr=subprocess.PIPE,
                         env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{hp}/health", timeout=1) as r:
                    assert r.status == 200 and r.read() == b"OK"
                break
            except (urllib.error.URLError, ConnectionError):
                assert p.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(f"http://127.0.0.1:{rp}/ready", timeout=2)
        assert exc.value.code == 503
        r = asyncio.run(udp_query(port, "kubernetes.default.svc.cluster.local"))
        assert RCODE.get(r.header.rcode) == "SERVFAIL"
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=5) == 0
        assert p.stderr is not None and b"ignoring CoreDNS arguments: -conf /etc/coredns/Corefile" in p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
