"""The pure DNS handler on static indexes; expected answers written the way dig prints them."""

from __future__ import annotations

import struct

import pytest
from dnslib import EDNS0, QTYPE, RCODE, DNSRecord

from netkube.dns.handler import FORWARD, Handler
from netkube.dns.index import Index
from netkube.dns.model import trim_service, trim_slice

# Address plan: services in 10.96.0.0/12, pods in 10.244.0.0/16, "outside" names in example.com.
WEB_IP = "10.96.0.20"
DB_IP = "10.96.0.30"
PODS = ["10.244.1.5", "10.244.2.7"]


def service(name: str, ns: str = "default", cluster_ip: str | None = None, ports=(), typ="ClusterIP",
            external: str | None = None) -> dict:
    spec: dict = {"type": typ, "ports": [dict(p) for p in ports]}
    if cluster_ip:
        spec["clusterIP"] = cluster_ip
        spec["clusterIPs"] = [cluster_ip]
    if external:
        spec["externalName"] = external
    return {"metadata": {"name": name, "namespace": ns}, "spec": spec}


def eslice(name: str, svc: str, endpoints: list[dict], ports=(), ns: str = "default") -> dict:
    return {"metadata": {"name": name, "namespace": ns, "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4", "endpoints": endpoints, "ports": [dict(p) for p in ports]}


def build_index() -> Index:
    ix = Index()
    for ns in ("default", "prod", "empty"):
        ix.set_namespace(ns)
    http = {"name": "http", "port": 80, "protocol": "TCP"}
    ix.set_service(trim_service(service("web", cluster_ip=WEB_IP, ports=[http, {"port": 8443, "protocol": "TCP"}])))
    ix.set_service(trim_service(service("db", ns="prod", cluster_ip=DB_IP,
                                        ports=[{"name": "pg", "port": 5432, "protocol": "TCP"}])))
    ix.set_service(trim_service(service("nginx", cluster_ip="None", ports=[http])))
    ix.set_slice(trim_slice(eslice("nginx-abc", "nginx", [
        {"addresses": [PODS[0]], "hostname": "web-0", "conditions": {"ready": True}},
        {"addresses": [PODS[1]], "conditions": {"ready": True}},
        {"addresses": ["10.244.3.9"], "hostname": "web-2", "conditions": {"ready": False}},
    ], ports=[http])))
    ix.set_service(trim_service(service("ext", typ="ExternalName", external="www.example.com")))
    ix.set_service(trim_service(service("alias", typ="ExternalName", external="web.default.svc.cluster.local")))
    return ix


@pytest.fixture
def handler() -> Handler:
    ix = build_index()
    ix.mark_synced()
    return Handler(ix, "cluster.local", ttl=5)


def dig(h: Handler, name: str, qtype: str = "A", udp: bool = True) -> DNSRecord:
    raw = h.handle(DNSRecord.question(name, qtype).pack(), udp=udp)
    assert isinstance(raw, bytes), raw
    return DNSRecord.parse(raw)


def lines(rrs) -> list[str]:
    """Records as dig prints them, whitespace collapsed."""
    return sorted(" ".join(str(rr).split()) for rr in rrs)


def status(r: DNSRecord) -> str:
    return RCODE.get(r.header.rcode)


SOA = "cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. {serial} 7200 1800 86400 5"


def test_clusterip_a(handler: Handler) -> None:
    r = dig(handler, "web.default.svc.cluster.local")
    assert status(r) == "NOERROR" and r.header.aa == 1 and r.header.ra == 0
    assert lines(r.rr) == ["web.default.svc.cluster.local. 5 IN A 10.96.0.20"]


def test_other_namespace(handler: Handler) -> None:
    assert lines(dig(handler, "db.prod.svc.cluster.local").rr) == ["db.prod.svc.cluster.local. 5 IN A 10.96.0.30"]
    assert status(dig(handler, "db.default.svc.cluster.local")) == "NXDOMAIN"


def test_case_insensitive_keeps_question_case(handler: Handler) -> None:
    r = dig(handler, "WeB.DeFault.SVC.Cluster.Local")
    assert lines(r.rr) == ["WeB.DeFault.SVC.Cluster.Local. 5 IN A 10.96.0.20"]


def test_nxdomain_has_soa(handler: Handler) -> None:
    r = dig(handler, "nope.default.svc.cluster.local")
    assert status(r) == "NXDOMAIN" and r.header.aa == 1 and not r.rr
    assert lines(r.auth) == [SOA.format(serial=handler.index.serial)]


def test_nodata_for_missing_type(handler: Handler) -> None:
    r = dig(handler, "web.default.svc.cluster.local", "AAAA")
    assert status(r) == "NOERROR" and not r.rr
    assert lines(r.auth) == [SOA.format(serial=handler.index.serial)]


@pytest.mark.parametrize("name,rcode", [
    ("svc.cluster.local", "NOERROR"), ("default.svc.cluster.local", "NOERROR"),
    ("missing-ns.svc.cluster.local", "NXDOMAIN"), ("empty.svc.cluster.local", "NOERROR"),
    # CoreDNS reads `_tcp.web...` as an endpoint named "_tcp" of web: there is none.
    ("_tcp.web.default.svc.cluster.local", "NXDOMAIN"), ("pod.cluster.local", "NOERROR"),
    ("empty.pod.cluster.local", "NOERROR"), ("missing-ns.pod.cluster.local", "NXDOMAIN"),
    ("foo.cluster.local", "NXDOMAIN"), ("a.b.c.web.default.svc.cluster.local", "NXDOMAIN"),
    ("web.default.svc.cluster.local.default.svc.cluster.local", "NXDOMAIN"),  # search-path expansion
])
def test_empty_non_terminals(handler: Handler, name: str, rcode: str) -> None:
    r = dig(handler, name)
    assert status(r) == rcode and not r.rr and len(r.auth) == 1


def test_headless_one_a_per_ready_endpoint(handler: Handler) -> None:
    r = dig(handler, "nginx.default.svc.cluster.local")
    assert lines(r.rr) == ["nginx.default.svc.cluster.local. 5 IN A 10.244.1.5",
                           "nginx.default.svc.cluster.local. 5 IN A 10.244.2.7"]


def test_headless_endpoint_hostname(handler: Handler) -> None:
    r = dig(handler, "web-0.nginx.default.svc.cluster.local")
    assert lines(r.rr) == ["web-0.nginx.default.svc.cluster.local. 5 IN A 10.244.1.5"]
    # Not ready endpoints are not published; unnamed ones answer under their dashed address.
    assert status(dig(handler, "web-2.nginx.default.svc.cluster.local")) == "NXDOMAIN"
    assert lines(dig(handler, "10-244-2-7.nginx.default.svc.cluster.local").rr) == [
        "10-244-2-7.nginx.default.svc.cluster.local. 5 IN A 10.244.2.7"]


def test_srv_named_port(handler: Handler) -> None:
    r = dig(handler, "_http._tcp.web.default.svc.cluster.local", "SRV")
    assert lines(r.rr) == ["_http._tcp.web.default.svc.cluster.local. 5 IN SRV 0 100 80 web.default.svc.cluster.local."]
    assert lines(r.ar) == ["web.default.svc.cluster.local. 5 IN A 10.96.0.20"]
    assert status(dig(handler, "_http._udp.web.default.svc.cluster.local", "SRV")) == "NXDOMAIN"
    assert status(dig(handler, "_nope._tcp.web.default.svc.cluster.local", "SRV")) == "NXDOMAIN"


def test_srv_headless_one_per_endpoint(handler: Handler) -> None:
    r = dig(handler, "_http._tcp.nginx.default.svc.cluster.local", "SRV")
    assert lines(r.rr) == [
        "_http._tcp.nginx.default.svc.cluster.local. 5 IN SRV 0 50 80 10-244-2-7.nginx.default.svc.cluster.local.",
        "_http._tcp.nginx.default.svc.cluster.local. 5 IN SRV 0 50 80 web-0.nginx.default.svc.cluster.local.",
    ]
    assert lines(r.ar) == ["10-244-2-7.nginx.default.svc.cluster.local. 5 IN A 10.244.2.7",
                           "web-0.nginx.default.svc.cluster.local. 5 IN A 10.244.1.5"]


def test_ptr(handler: Handler) -> None:
    r = dig(handler, "20.0.96.10.in-addr.arpa", "PTR")
    assert lines(r.rr) == ["20.0.96.10.in-addr.arpa. 5 IN PTR web.default.svc.cluster.local."]
    r = dig(handler, "5.1.244.10.in-addr.arpa", "PTR")
    assert lines(r.rr) == ["5.1.244.10.in-addr.arpa. 5 IN PTR web-0.nginx.default.svc.cluster.local."]
    assert status(dig(handler, "99.0.96.10.in-addr.arpa", "PTR")) == "NXDOMAIN"


def test_externalname_cname(handler: Handler) -> None:
    r = dig(handler, "ext.default.svc.cluster.local")
    assert lines(r.rr) == ["ext.default.svc.cluster.local. 5 IN CNAME www.example.com."]
    # An in-zone target is chased, as CoreDNS does.
    r = dig(handler, "alias.default.svc.cluster.local")
    assert lines(r.rr) == ["alias.default.svc.cluster.local. 5 IN CNAME web.default.svc.cluster.local.",
                           "web.default.svc.cluster.local. 5 IN A 10.96.0.20"]


def test_dns_version_and_soa(handler: Handler) -> None:
    # CoreDNS hard-codes 28800 s for this record.
    assert lines(dig(handler, "dns-version.cluster.local", "TXT").rr) == [
        'dns-version.cluster.local. 28800 IN TXT "1.1.0"']
    assert lines(dig(handler, "cluster.local", "SOA").rr) == [SOA.format(serial=handler.index.serial)]
    # NS: CoreDNS names the Service whose endpoints hold its own address (kube-dns), glue in additional.
    ix = handler.index
    ix.set_namespace("kube-system")
    ix.set_service(trim_service(service("kube-dns", "kube-system", "10.96.0.10", [{"port": 53, "protocol": "UDP"}])))
    ix.set_slice(trim_slice(eslice("kube-dns-1", "kube-dns", [{"addresses": ["10.244.0.3"]}],
                                   [{"port": 53, "protocol": "UDP"}], ns="kube-system")))
    h = Handler(ix, local_ips=("10.244.0.3",))
    r = dig(h, "cluster.local", "NS")
    assert lines(r.rr) == ["cluster.local. 5 IN NS kube-dns.kube-system.svc.cluster.local."]
    assert lines(r.ar) == ["kube-dns.kube-system.svc.cluster.local. 5 IN A 10.96.0.10"]
    assert lines(dig(h, "ns.dns.cluster.local").rr) == ["ns.dns.cluster.local. 5 IN A 10.96.0.10"]
    # Not an endpoint of any service: ns.dns.<zone> with the pod's own address.
    h = Handler(ix, local_ips=("10.244.9.9",))
    assert lines(dig(h, "cluster.local", "NS").rr) == ["cluster.local. 5 IN NS ns.dns.cluster.local."]
    assert lines(dig(h, "ns.dns.cluster.local").rr) == ["ns.dns.cluster.local. 5 IN A 10.244.9.9"]


def test_pod_records_insecure(handler: Handler) -> None:
    assert lines(dig(handler, "10-244-1-5.default.pod.cluster.local").rr) == [
        "10-244-1-5.default.pod.cluster.local. 5 IN A 10.244.1.5"]
    assert status(dig(handler, "10-244-1.default.pod.cluster.local")) == "NXDOMAIN"


def test_outside_zone_refused_or_forwarded(handler: Handler) -> None:
    r = dig(handler, "www.example.com")
    assert status(r) == "REFUSED" and r.header.aa == 0
    fwd = Handler(handler.index, "cluster.local", forward=True)
    assert fwd.handle(DNSRecord.question("www.example.com").pack()) is FORWARD


def test_servfail_before_sync() -> None:
    h = Handler(build_index())
    assert status(dig(h, "web.default.svc.cluster.local")) == "SERVFAIL"
    h.index.mark_synced()
    assert status(dig(h, "web.default.svc.cluster.local")) == "NOERROR"


def test_cache_invalidated_on_change(handler: Handler) -> None:
    q = DNSRecord.question("web.default.svc.cluster.local")
    first = handler.handle(q.pack())
    q.header.id = 4242
    again = handler.handle(q.pack())
    assert isinstance(first, bytes) and isinstance(again, bytes)
    assert again[:2] == struct.pack("!H", 4242) and again[2:] == first[2:]
    handler.index.delete_service("default", "web")
    assert status(dig(handler, "web.default.svc.cluster.local")) == "NXDOMAIN"


@pytest.mark.parametrize("packet", [
    b"", b"\x12", b"\x12\x34\x01\x00\x00\x01", b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xff\xff",
    b"\x12\x34\x01\x00\x00\x05\x00\x00\x00\x00\x00\x00\x03abc\x00\x00\x01\x00\x01", bytes(range(256)),
])
def test_malformed_no_crash(handler: Handler, packet: bytes) -> None:
    out = handler.handle(packet)
    if out is None:
        return  # dropped: too short, or it claimed to be a response
    assert isinstance(out, bytes) and out[:2] == packet[:2]
    assert out[3] & 0x0F == RCODE.FORMERR and out[2] & 0x80


def test_udp_truncates_large_answers() -> None:
    ix = Index()
    ix.set_namespace("default")
    ix.set_service(trim_service(service("big", cluster_ip="None")))
    eps = [{"addresses": [f"10.244.{i // 250}.{i % 250 + 1}"], "conditions": {"ready": True}} for i in range(100)]
    ix.set_slice(trim_slice(eslice("big-1", "big", eps)))
    ix.mark_synced()
    h = Handler(ix)
    r = dig(h, "big.default.svc.cluster.local")
    # As miekg's Truncate: as many answers as fit in 512 bytes, and TC set.
    assert r.header.tc == 1 and 0 < len(r.rr) < 100 and len(r.pack()) <= 512
    assert len(dig(h, "big.default.svc.cluster.local", udp=False).rr) == 100


def test_edns_echoed(handler: Handler) -> None:
    q = DNSRecord.question("web.default.svc.cluster.local", "A")
    q.add_ar(EDNS0(udp_len=4096))
    r = DNSRecord.parse(handler.handle(q.pack()))
    assert any(rr.rtype == QTYPE.OPT for rr in r.ar)
