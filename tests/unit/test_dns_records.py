"""CoreDNS kubernetes-plugin semantics: namespaces, pod modes, endpoints, PTR, types, protocol corners."""

from __future__ import annotations

import random
import struct

import pytest
from dnslib import EDNS0, QTYPE, DNSRecord

from netkube.dns.config import Block, DnsConfig, Kubernetes
from netkube.dns.handler import Handler
from netkube.dns.model import trim_service, trim_slice
from tests.unit.test_dns_handler import build_index, dig, eslice, lines, service, status


def handler_with(pods: str = "insecure", loadbalance: bool = False) -> Handler:
    ix = build_index()
    ix.mark_synced()
    kube = Kubernetes(("cluster.local", "in-addr.arpa", "ip6.arpa"), 5, pods, None)
    return Handler(ix, config=DnsConfig((Block(kube.zones, kubernetes=kube, loadbalance=loadbalance),)))


@pytest.mark.parametrize("name,qtype,want", [
    ("10-244-1-5.default.pod.cluster.local", "A", ["10-244-1-5.default.pod.cluster.local. 5 IN A 10.244.1.5"]),
    ("fd00--5.default.pod.cluster.local", "AAAA", ["fd00--5.default.pod.cluster.local. 5 IN AAAA fd00::5"]),
    ("10-244-1-5.missing.pod.cluster.local", "A", "NXDOMAIN"),  # the namespace must exist
    ("10-244-1-5.empty.pod.cluster.local", "AAAA", "NOERROR"),  # exists, wrong type: NODATA
    ("x-y.default.pod.cluster.local", "A", "NXDOMAIN"),
])
def test_pods_insecure(name: str, qtype: str, want: object) -> None:
    r = dig(handler_with("insecure"), name, qtype)
    assert (lines(r.rr) if isinstance(want, list) else status(r)) == want


def test_pods_verified_and_disabled() -> None:
    h = handler_with("verified")
    assert status(dig(h, "10-244-1-5.default.pod.cluster.local")) == "NXDOMAIN"
    h.index.set_pod("default", "web-0", ("10.244.1.5",))
    assert lines(dig(h, "10-244-1-5.default.pod.cluster.local").rr) == [
        "10-244-1-5.default.pod.cluster.local. 5 IN A 10.244.1.5"]
    assert status(dig(h, "10-244-1-5.prod.pod.cluster.local")) == "NXDOMAIN"  # other namespace
    h.index.delete_pod("default", "web-0")
    assert status(dig(h, "10-244-1-5.default.pod.cluster.local")) == "NXDOMAIN"
    assert status(dig(handler_with("disabled"), "10-244-1-5.default.pod.cluster.local")) == "NXDOMAIN"


def test_endpoints_ptr_and_empty_headless() -> None:
    h = handler_with()
    ix = h.index
    ix.set_slice(trim_slice(eslice("web-1", "web", [{"addresses": ["10.244.4.4"], "hostname": "w"}],
                                   [{"name": "http", "port": 8080, "protocol": "TCP"}])))
    # Endpoint names resolve for ClusterIP services too, and their addresses get PTRs.
    assert lines(dig(h, "w.web.default.svc.cluster.local").rr) == ["w.web.default.svc.cluster.local. 5 IN A 10.244.4.4"]
    assert lines(dig(h, "4.4.244.10.in-addr.arpa", "PTR").rr) == [
        "4.4.244.10.in-addr.arpa. 5 IN PTR w.web.default.svc.cluster.local."]
    assert status(dig(h, "4.4.244.10.in-addr.arpa", "A")) == "NXDOMAIN"  # CoreDNS: reverse names hold PTR only
    ix.set_service(trim_service(service("lonely", cluster_ip="None")))
    assert status(dig(h, "lonely.default.svc.cluster.local")) == "NXDOMAIN"  # headless, no endpoints


def test_types_any_axfr_and_srv_plain() -> None:
    h = handler_with()
    r = dig(h, "web.default.svc.cluster.local", "ANY")
    assert status(r) == "NOERROR" and not r.rr  # CoreDNS answers ANY like a type it lacks
    assert status(dig(h, "cluster.local", "AXFR", udp=False)) == "REFUSED"
    r = dig(h, "web.default.svc.cluster.local", "SRV")  # every port, named or not
    assert lines(r.rr) == ["web.default.svc.cluster.local. 5 IN SRV 0 50 80 web.default.svc.cluster.local.",
                           "web.default.svc.cluster.local. 5 IN SRV 0 50 8443 web.default.svc.cluster.local."]


def _raw(name: str, qtype: str = "A", edns: EDNS0 | None = None, qid: int = 7) -> bytes:
    q = DNSRecord.question(name, qtype)
    q.header.id = qid
    if edns is not None:
        q.add_ar(edns)
    return bytes(q.pack())


def test_edns_echo_badvers_and_rejects() -> None:
    h = handler_with()
    r = DNSRecord.parse(h.handle(_raw("web.default.svc.cluster.local", edns=EDNS0(udp_len=4000, flags="do"))))
    opt = [rr for rr in r.ar if rr.rtype == QTYPE.OPT]
    assert len(opt) == 1 and opt[0].rclass == 4000 and opt[0].ttl & 0x8000  # size and DO echoed
    out = h.handle(_raw("web.default.svc.cluster.local", edns=EDNS0(udp_len=1232, version=1)))
    r = DNSRecord.parse(out)
    opt = [rr for rr in r.ar if rr.rtype == QTYPE.OPT][0]
    assert (opt.ttl >> 24) == 1 and not r.rr  # extended rcode 1 << 4 | 0 = BADVERS
    two = bytearray(_raw("web.default.svc.cluster.local"))
    two[5] = 2  # QDCOUNT 2: FORMERR, header only
    out = h.handle(bytes(two))
    assert out[3] & 0xF == 1 and struct.unpack("!HHHH", out[4:12]) == (0, 0, 0, 0)
    upd = bytearray(_raw("cluster.local", "SOA"))
    upd[2] = (upd[2] & 0x87) | (5 << 3)  # opcode UPDATE
    out = h.handle(bytes(upd))
    assert out[3] & 0xF == 4 and (out[2] >> 3) & 0xF == 5  # NOTIMP, opcode kept


def test_mixed_case_shares_cache_and_keeps_case() -> None:
    h = handler_with()
    dig(h, "web.default.svc.cluster.local")
    r = DNSRecord.parse(h.handle(_raw("wEb.DEFAULT.svc.cluster.LOCAL")))
    assert lines(r.rr) == ["wEb.DEFAULT.svc.cluster.LOCAL. 5 IN A 10.96.0.20"]
    assert str(r.q.qname) == "wEb.DEFAULT.svc.cluster.LOCAL."


def test_loadbalance_rotates_addresses() -> None:
    h = handler_with(loadbalance=True)
    firsts = {str(dig(h, "nginx.default.svc.cluster.local").rr[0].rdata) for _ in range(4)}
    assert firsts == {"10.244.1.5", "10.244.2.7"}


def test_fuzz_random_and_truncated_packets_never_raise() -> None:
    h = handler_with()
    rng = random.Random(7)
    good = [_raw("web.default.svc.cluster.local", edns=EDNS0(udp_len=1232)),
            _raw("_http._tcp.nginx.default.svc.cluster.local", "SRV"), _raw("www.example.com")]
    for i in range(3000):
        base = good[i % len(good)]
        kind = i % 3
        if kind == 0:
            pkt = base[: rng.randrange(len(base))]
        elif kind == 1:
            pkt = bytearray(base)
            for _ in range(rng.randrange(1, 6)):
                pkt[rng.randrange(len(pkt))] = rng.randrange(256)
            pkt = bytes(pkt)
        else:
            pkt = rng.randbytes(rng.randrange(0, 80))
        out = h.handle(pkt)
        assert out is None or isinstance(out, bytes) and (len(pkt) < 2 or out[:2] == pkt[:2])
    assert lines(dig(h, "web.default.svc.cluster.local").rr) == ["web.default.svc.cluster.local. 5 IN A 10.96.0.20"]
