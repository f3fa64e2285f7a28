"""Corefile parsing and reload, forwarding with cache and stub domains, metrics, a server-level fuzz."""

from __future__ import annotations

import asyncio
import random
import socket
import struct

import aiohttp
import pytest
from dnslib import RCODE, DNSRecord

from netkube.dns.cache import ResponseCache
from netkube.dns.config import Cache, default_config
from netkube.dns.corefile import CorefileError, parse_corefile
from netkube.dns.handler import Handler
from netkube.dns.index import Index
from netkube.dns.metrics import Metrics, MetricsServer
from netkube.dns.model import Port, Service
from netkube.dns.reload import ConfigReloader
from netkube.dns.server import DnsServer
from netkube.dns.wire import parse_query
from tests.unit.test_dns_server import rrs, tcp_query, udp_query

KUBEADM = """.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    forward . 1.2.3.4 {
       max_concurrent 1000
    }
    cache 30
    loop
    reload
    loadbalance
}
example.com:53 {
    forward . 10.0.0.5:5353
}
"""


def test_kubeadm_corefile_with_stub_domain() -> None:
    cfg = parse_corefile(KUBEADM)
    main, stub = cfg.blocks
    assert main.zones == ("",) and main.kubernetes is not None and main.kubernetes.ttl == 30
    assert main.kubernetes.pods == "insecure" and main.kubernetes.fallthrough == ("in-addr.arpa", "ip6.arpa")
    assert main.forward is not None and main.forward.to == (("1.2.3.4", 53),)
    assert main.cache == Cache(30, 30) and main.reload and main.loadbalance
    assert stub.forward is not None and stub.forward.to == (("10.0.0.5", 5353),)
    assert cfg.route("www.example.com") == (stub, "example.com")
    assert cfg.route("www.example.org") == (main, "")


@pytest.mark.parametrize("text,msg", [
    (".:53 {\n  kubernetes cluster.local {\n    pods maybe\n  }\n}\n", "line 3: pods takes one of"),
    (".:53 {\n  frobnicate\n}\n", "line 2: unknown directive 'frobnicate'"),
    (".:53 {\n  forward .\n}\n", "line 2: forward needs FROM and at least one TO"),
    (".:53 {\n  forward . example.net\n}\n", "not an IP address"),
    (".:53 {\n  errors\n", "is not closed"),
    (".:53 {\n}\n.:53 {\n}\n", "already served"),
])
def test_corefile_errors_name_the_line(text: str, msg: str) -> None:
    with pytest.raises(CorefileError, match=msg):
        parse_corefile(text)


def test_reload_keeps_old_config_on_error_and_needs_reload_plugin() -> None:
    applied = []
    failures = []
    r = ConfigReloader(applied.append, default_config(), on_failure=lambda: failures.append(1))
    cm = {"metadata": {"name": "coredns", "namespace": "kube-system"}, "data": {"Corefile": KUBEADM}}
    r.on_event("ADDED", cm, None)
    assert len(applied) == 1 and applied[0].blocks[0].kubernetes.ttl == 30
    r.on_event("MODIFIED", {**cm, "data": {"Corefile": ".:53 {\n  bogus\n}\n"}}, cm)
    assert len(applied) == 1 and failures == [1] and r.current is applied[0]
    no_reload = KUBEADM.replace("    reload\n", "").replace("ttl 30", "ttl 10")
    r.on_event("MODIFIED", {**cm, "data": {"Corefile": no_reload}}, cm)
    assert len(applied) == 2 and applied[1].blocks[0].kubernetes.ttl == 10
    r.on_event("MODIFIED", {**cm, "data": {"Corefile": KUBEADM}}, cm)
    assert len(applied) == 2  # the running config has no `reload`: CoreDNS would not notice


def _answer(name: str, ttl: int, rcode: int = 0) -> tuple[bytes, bytes]:
    q = DNSRecord.question(name)
    r = q.reply()
    r.header.rcode = rcode
    if rcode == 0:
        r.add_answer(*__import__("dnslib").RR.fromZone(f"{name}. {ttl} IN A 192.0.2.1"))
    else:
        r.add_auth(*__import__("dnslib").RR.fromZone(f"example.com. 600 IN SOA a. b. 1 2 3 4 {ttl}"))
    return bytes(q.pack()), bytes(r.pack())


def test_cache_ages_ttls_and_caches_negative_by_soa_minimum() -> None:
    now = [100.0]
    c = ResponseCache(Cache(30, 30), clock=lambda: now[0])
    qd, ans = _answer("www.example.com", 20)
    q = parse_query(qd)
    c.put(q, ans)
    now[0] += 8
    hit = c.get(q, qd)
    assert hit is not None and DNSRecord.parse(hit).rr[0].ttl == 12
    now[0] += 13
    assert c.get(q, qd) is None
    qd, ans = _answer("nope.example.com", 7, rcode=3)
    q = parse_query(qd)
    c.put(q, ans)
    now[0] += 6
    assert c.get(q, qd) is not None and c.hits["denial"] == 1
    now[0] += 2
    assert c.get(q, qd) is None  # min(SOA TTL 600, MINIMUM 7)


async def _upstream(zone: str, ip: str, many: int = 0) -> DnsServer:
    ix = Index()
    ix.set_namespace("default")
    ix.set_service(Service("www", "default", (ip,), False, None, (Port("", 80, "TCP"),)))
    if many:  # a big answer: 60 addresses only fit over TCP
        ix.set_service(Service("big", "default", tuple(f"192.0.2.{i}" for i in range(1, many + 1)), False, None,
                               (Port("", 80, "TCP"),)))
    ix.mark_synced()
    s = DnsServer(Handler(ix, zone), "127.0.0.1", 0)
    await s.start()
    return s


async def test_forward_stub_domain_cache_tc_retry_and_metrics() -> None:
    up = await _upstream("example.test", "192.0.2.10", many=60)
    stub = await _upstream("corp.internal", "198.51.100.7")
    text = (f".:53 {{\n  kubernetes cluster.local\n  forward . 127.0.0.1:{up.port}\n  cache 30\n}}\n"
            f"corp.internal {{\n  forward . 127.0.0.1:{stub.port}\n}}\n")
    ix = Index()
    ix.mark_synced()
    metrics = Metrics("dns://:53")
    front = DnsServer(Handler(ix, config=parse_corefile(text)), "127.0.0.1", 0, metrics=metrics)
    await front.start()
    ms = MetricsServer(metrics, "127.0.0.1", 0)
    await ms.start()
    try:
        for _ in range(2):
            r = await udp_query(front.port, "www.default.svc.example.test")
            assert rrs(r) == ["www.default.svc.example.test. 5 IN A 192.0.2.10"]
        assert rrs(await udp_query(front.port, "www.default.svc.corp.internal")) == [
            "www.default.svc.corp.internal. 5 IN A 198.51.100.7"]
        # 60 A records: the upstream truncates over UDP, the forwarder retries over TCP, and the
        # client (no EDNS, 512 bytes) gets TC and then the whole answer over TCP.
        r = await udp_query(front.port, "big.default.svc.example.test")
        assert r.header.tc == 1
        (r,) = await tcp_query(front.port, ["big.default.svc.example.test"])
        assert len(r.rr) == 60
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{ms.port}/metrics") as resp:
                text = await resp.text()
        assert 'coredns_cache_hits_total{server="dns://:53",type="success",view="",zones="."} 2' in text
        assert f'coredns_forward_requests_total{{to="127.0.0.1:{up.port}"}} 2' in text
        assert ('coredns_dns_requests_total{family="1",proto="udp",server="dns://:53",type="A",view="",'
                'zone="."} 3') in text
        assert 'coredns_dns_responses_total{plugin="cache",rcode="NOERROR",server="dns://:53",view="",zone="."} 2' in text
        assert "coredns_dns_request_duration_seconds_bucket{" in text and 'le="+Inf"' in text
    finally:
        await ms.close()
        for s in (front, up, stub):
            await s.close()


async def test_server_survives_garbage_udp_and_tcp() -> None:
    ix = Index()
    ix.set_namespace("default")
    ix.set_service(Service("web", "default", ("10.96.0.20",), False, None, (Port("", 80, "TCP"),)))
    ix.mark_synced()
    srv = DnsServer(Handler(ix), "127.0.0.1", 0)
    await srv.start()
    rng = random.Random(1)
    good = bytes(DNSRecord.question("web.default.svc.cluster.local").pack())
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(400):
                pkt = good[: rng.randrange(len(good))] if i % 2 else rng.randbytes(rng.randrange(0, 600))
                s.sendto(pkt, ("127.0.0.1", srv.port))
        for junk in (b"\x00\x05abc", b"\xff\xff" + rng.randbytes(50), struct.pack("!H", 3) + b"\x00\x01\x02"):
            _, w = await asyncio.open_connection("127.0.0.1", srv.port)
            w.write(junk)
            await w.drain()
            w.close()
        await asyncio.sleep(0.05)
        assert rrs(await udp_query(srv.port, "web.default.svc.cluster.local")) == [
            "web.default.svc.cluster.local. 5 IN A 10.96.0.20"]
        (r,) = await tcp_query(srv.port, ["web.default.svc.cluster.local"])
        assert RCODE.get(r.header.rcode) == "NOERROR"
    finally:
        await srv.close()
