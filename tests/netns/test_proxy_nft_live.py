"""Real nft and the userspace proxy in fresh namespaces: ClusterIP connections spread over 3 endpoints."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest

from proxy_modes.kernel.nft import RealNft
from proxy_modes.nftables.proxier import NftablesProxier
from proxy_modes.nftables.render import RenderConfig, full_script
from proxy_modes.testing import endpoint_slice, service
from proxy_modes.tracer import Packet
from proxy_modes.tracer_nft import NftTracer
from proxy_modes.tracker import ChangeTracker

# Inside our namespaces only: client pod 10.244.1.2 ↔ node 10.244.1.1; servers 10.244.2.11-13 ↔
# node 10.244.2.1; ClusterIP 172.30.0.41:80 → endpoints :8080.
NODE_IP, CLIENT, SVC = "10.244.1.1", "10.244.1.2", "172.30.0.41"
EPS = ["10.244.2.11", "10.244.2.12", "10.244.2.13"]
SERVER = textwrap.dedent("""
    import socket, threading
    def serve(ip):
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((ip, 8080)); s.listen()
        while True:
            c, _ = s.accept(); c.sendall(ip.encode()); c.close()
    for ip in IPS: threading.Thread(target=serve, args=(ip,), daemon=True).start()
    threading.Event().wait()
""")
CLIENT_CODE = textwrap.dedent(f"""
    import socket
    for _ in range(30):
        s = socket.create_connection(("{SVC}", 80), timeout=3); print(s.recv(100).decode()); s.close()
""")


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=30).stdout


def host_state() -> tuple[str, str]:
    ipt = "\n".join(ln for ln in sh("iptables-save").splitlines() if not ln.startswith("#"))
    return sh("nft", "list", "ruleset"), ipt


@pytest.fixture
def lab() -> Iterator[tuple[str, str, str]]:
    tag = secrets.token_hex(3)
    node, client, srv = (f"nkt-pnft-{tag}{s}" for s in ("n", "c", "s"))
    made: list[str] = []
    procs: list[subprocess.Popen[str]] = []
    try:
        for ns in (node, client, srv):
            sh("ip", "netns", "add", ns)
            made.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        for dev, peer, ns in (("c0", "eth0", client), ("s0", "eth0", srv)):
            sh("ip", "-n", node, "link", "add", dev, "type", "veth", "peer", "name", peer, "netns", ns)
            sh("ip", "-n", node, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", peer, "up")
        sh("ip", "-n", node, "addr", "add", f"{NODE_IP}/24", "dev", "c0")
        sh("ip", "-n", node, "addr", "add", "10.244.2.1/24", "dev", "s0")
        sh("ip", "-n", client, "addr", "add", f"{CLIENT}/24", "dev", "eth0")
        sh("ip", "-n", client, "route", "add", "default", "via", NODE_IP)
        for ip in EPS:
            sh("ip", "-n", srv, "addr", "add", f"{ip}/24", "dev", "eth0")
        sh("ip", "-n", srv, "route", "add", "default", "via", "10.244.2.1")
        sh("ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.ip_forward=1")  # our namespace's own sysctl
        procs.append(subprocess.Popen(["ip", "netns", "exec", srv, sys.executable, "-c", f"IPS={EPS!r}\n" + SERVER]))
        time.sleep(0.5)
        yield node, client, srv
    finally:
        for p in procs:
            p.kill()
            p.wait()
        for ns in reversed(made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)


def tracker() -> ChangeTracker:
    t = ChangeTracker("node1")
    t.on_service("ADDED", service("ns1", "svc1", SVC, ports=[("p80", 80, "TCP")]))
    t.on_endpoint_slice("ADDED", endpoint_slice("ns1", "svc1", EPS, ports=[("p80", 8080, "TCP")]))
    return t


def connect_30(client: str) -> list[str]:
    return sh("ip", "netns", "exec", client, sys.executable, "-c", CLIENT_CODE).split()


@pytest.mark.netns
def test_nftables_mode_real_kernel(lab: tuple[str, str, str]) -> None:
    node, client, _ = lab
    before = host_state()
    nft = RealNft(netns=node)
    px = NftablesProxier(nft, RenderConfig("node1", (NODE_IP,), "10.244.0.0/16", "172.30.0.0/16"))
    px.sync(tracker().snapshot(), full=True)
    px.sync(tracker().snapshot(), full=True)  # resync over itself
    listing = nft.list_table("ip", "kube-proxy")
    res = NftTracer(listing).trace(Packet(CLIENT, SVC, 80, "tcp", "c0", (NODE_IP,)))
    assert res.targets() == pytest.approx({f"{ip}:8080": 1 / 3 for ip in EPS})
    seen = connect_30(client)
    assert len(seen) == 30 and set(seen) == set(EPS)
    px.cleanup()
    assert not nft.table_exists("ip", "kube-proxy")
    assert host_state() == before


USERSPACE = textwrap.dedent("""
    import sys, threading
    from proxy_modes.kernel.iptables import RealIptables
    from proxy_modes.userspace.proxier import UserspaceProxier
    from tests.netns.test_proxy_nft_live import tracker, NODE_IP
    px = UserspaceProxier(RealIptables(), NODE_IP)
    px.sync(tracker().snapshot(), True)
    print("ready", flush=True)
    sys.stdin.readline()
    px.cleanup()
    print("clean", flush=True)
""")


@pytest.mark.netns
def test_userspace_mode_real_kernel(lab: tuple[str, str, str]) -> None:
    node, client, _ = lab
    before = host_state()
    p = subprocess.Popen(["ip", "netns", "exec", node, sys.executable, "-c", USERSPACE], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdin is not None
        assert p.stdout.readline().strip() == "ready"
        rules = sh("ip", "netns", "exec", node, "iptables-save", "-t", "nat")
        assert "-A KUBE-PORTALS-CONTAINER -d 172.30.0.41/32 -p tcp -m comment --comment \"ns1/svc1:p80\" -m tcp --dport 80 -j REDIRECT --to-ports" in rules
        seen = connect_30(client)
        assert len(seen) == 30 and set(seen) == set(EPS)
        p.stdin.write("\n")
        p.stdin.flush()
        assert p.stdout.readline().strip() == "clean"
        assert "KUBE-PORTALS" not in sh("ip", "netns", "exec", node, "iptables-save", "-t", "nat")
    finally:
        p.kill()
        p.wait()
    assert host_state() == before


def many_services(n: int, variant: int) -> ChangeTracker:
    """n services of mixed kinds (NodePort, affinity, no endpoints, eTP=Local); `variant` moves
    endpoints and drops/adds a few services, so a re-sync rewrites, adds and deletes chains."""
    t = ChangeTracker("node1")
    for i in range(n):
        if variant and i % 37 == 5:
            continue  # deleted in the second state
        name, cip, ports = f"svc{i}", f"172.30.{i // 250}.{i % 250 + 1}", [("http", 80, "TCP")]
        kind: dict[str, object] = {}
        if i % 5 == 1:
            kind = {"svc_type": "NodePort", "node_ports": [30000 + i]}
        if i % 9 == 2:
            kind["sessionAffinity"] = "ClientIP"
        if i % 11 == 3:
            kind.update(svc_type="LoadBalancer", node_ports=[30000 + i], externalTrafficPolicy="Local",
                        externalIPs=[f"192.168.77.{i % 250 + 1}"])
        t.on_service("ADDED", service(f"ns{i % 7}", name, cip, ports, **kind))  # type: ignore[arg-type]
        if i % 13 == 4:
            continue  # no endpoints: reject
        count = 1 + (i + variant) % 4
        ips = [f"10.245.{i // 60}.{(i % 60) * 4 + k + variant % 2}" for k in range(count)]
        t.on_endpoint_slice("ADDED", endpoint_slice(f"ns{i % 7}", name, ips, [("http", 8080, "TCP")],
                                                    node={ips[0]: "node1"}))
    for i in range(n, n + 3 * variant):  # new services in the second state
        t.on_service("ADDED", service("ns-new", f"svc{i}", f"172.30.9.{i - n + 1}"))
        t.on_endpoint_slice("ADDED", endpoint_slice("ns-new", f"svc{i}", [f"10.246.0.{i - n + 1}"]))
    return t


def normalized(nft: RealNft) -> dict[str, object]:
    """`nft -j list table ip kube-proxy` without handles and creation order: chains → rules, sets →
    declaration and sorted elements."""
    out = sh(*nft.prefix, "nft", "-j", "list", "table", "ip", "kube-proxy")
    chains: dict[str, list[object]] = {}
    sets: dict[str, object] = {}
    for obj in json.loads(out)["nftables"]:
        kind, body = next(iter(obj.items()))
        body.pop("handle", None)
        if kind == "chain":
            chains.setdefault(body["name"], [])
            sets["chain " + body["name"]] = body
        elif kind == "rule":
            chains.setdefault(body["chain"], []).append(body["expr"])
        elif kind in ("set", "map"):
            body["elem"] = sorted(json.dumps(e, sort_keys=True) for e in body.get("elem", []))
            sets[f"{kind} {body['name']}"] = body
    return {"chains": chains, "sets": sets}


@pytest.mark.netns
@pytest.mark.parametrize("vmap_max_services", [2000, 0])  # upstream's anonymous vmaps, and numgen rules
def test_multi_transaction_full_sync_equals_single_transaction(two_namespaces: tuple[str, str],
                                                              vmap_max_services: int) -> None:
    """A few hundred services written in many small transactions (and then re-synced to a changed
    state: rewritten, new and stale chains) end in the same table as one `nft -f` of the whole."""
    multi_ns, single_ns = two_namespaces
    before = host_state()
    cfg = RenderConfig("node1", (NODE_IP,), "10.244.0.0/16", "172.30.0.0/16", vmap_max_services=vmap_max_services)
    multi, single = RealNft(netns=multi_ns), RealNft(netns=single_ns)
    px = NftablesProxier(multi, cfg, batch_lines=150)
    for variant in (0, 1):
        state = many_services(300, variant).snapshot()
        px.sync(state, full=True)
        assert [w for w, _ in px.last_timings].count("services") > 1
        if variant:
            assert "stale" in [w for w, _ in px.last_timings]
        if single.table_exists("ip", "kube-proxy"):
            single.run("delete table ip kube-proxy\n")
        single.run(full_script(state, cfg))
        got, want = normalized(multi), normalized(single)
        assert got["sets"] == want["sets"]
        assert got["chains"] == want["chains"]
        assert len(got["chains"]) > 1000  # type: ignore[arg-type]
    px.cleanup()
    assert host_state() == before


@pytest.mark.netns
@pytest.mark.parametrize("vmap_max_services", [2000, 0])
def test_partial_syncs_on_real_nft_then_full_sync_converges(two_namespaces: tuple[str, str],
                                                            vmap_max_services: int) -> None:
    """One-run partial syncs (new service, endpoints moved, endpoints gone, service deleted) are
    accepted by the real nft and route as they should; the next full sync equals one `nft -f`."""
    ns, single_ns = two_namespaces
    cfg = RenderConfig("node1", (NODE_IP,), "10.244.0.0/16", "172.30.0.0/16", vmap_max_services=vmap_max_services)
    nft, single = RealNft(netns=ns), RealNft(netns=single_ns)
    px = NftablesProxier(nft, cfg)
    t = many_services(40, 0)
    st = t.snapshot()
    px.sync(st, full=True)
    t.ack(st)

    def targets(ip: str) -> dict[str, float]:
        return NftTracer(nft.list_table("ip", "kube-proxy")).trace(Packet(CLIENT, ip, 80, "tcp", "c0", (NODE_IP,))).targets()

    steps = [
        (lambda: t.on_service("ADDED", service("ns-new", "fresh", "172.30.9.1")), None),
        (lambda: t.on_endpoint_slice("ADDED", endpoint_slice("ns-new", "fresh", ["10.246.0.1", "10.246.0.2"])),
         ("172.30.9.1", {"10.246.0.1:80": 0.5, "10.246.0.2:80": 0.5})),
        (lambda: t.on_endpoint_slice("MODIFIED", endpoint_slice("ns-new", "fresh", ["10.246.0.3"])),
         ("172.30.9.1", {"10.246.0.3:80": 1.0})),
        (lambda: t.on_endpoint_slice("DELETED", endpoint_slice("ns-new", "fresh", [])), ("172.30.9.1", {"REJECT": 1.0})),
        (lambda: t.on_service("DELETED", service("ns-new", "fresh", "172.30.9.1")), ("172.30.9.1", {"DROP": 1.0})),
        (lambda: t.on_service("DELETED", service("ns0", "svc0", "172.30.0.1")), ("172.30.0.1", {"DROP": 1.0})),
    ]
    for change, expect in steps:
        change()
        st = t.snapshot()
        px.sync(st, full=False)
        t.ack(st)
        assert [w for w, _ in px.last_timings] == ["partial"]
        if expect:
            assert targets(expect[0]) == pytest.approx(expect[1])
    px.sync(t.snapshot(), full=True)
    single.run(full_script(t.snapshot(), cfg))
    assert normalized(nft) == normalized(single)
