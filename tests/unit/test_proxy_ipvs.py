"""ipvs mode without a kernel: golden desired state, iptables text, the proxier on stateful fakes."""

from __future__ import annotations

import errno
import logging

import pytest

from netkube.config import ClusterConfig, ConfigError
from proxy_modes.ipvs import names as N
from proxy_modes.ipvs.desired import IpvsConfig, compute
from proxy_modes.ipvs.proxier import IpvsProxier
from proxy_modes.ipvs.rules import render
from proxy_modes.kernel.ipset import IpsetError, parse_save
from proxy_modes.kernel.ipset_fake import FakeIpset
from proxy_modes.kernel.iptables_fake import FakeIptables
from proxy_modes.kernel.ipvs import IpvsError, RealServer, VirtualServer
from proxy_modes.kernel.ipvs_fake import FakeIpvs
from proxy_modes.kernel.links import FakeLinks
from proxy_modes.kernel.sysctl import FakeSysctl
from proxy_modes.runner import resolve_mode
from proxy_modes.testing import endpoint_slice, service
from proxy_modes.tracker import ChangeTracker

# Address plan: node1 192.168.56.101 (pods 10.244.0.0/24), node2 .102 (10.244.1.0/24);
# services in 10.96.0.0/12; 203.0.113.0/24 is "outside" (external IPs).
NODE, NODE_IP = "node1", "192.168.56.101"
CFG = IpvsConfig(NODE, (NODE_IP,), "10.244.0.0/16", "10.96.0.0/12", "rr")
WEB = ("10.244.0.5", "10.244.1.6", "10.244.1.7")


def world(tr: ChangeTracker) -> None:
    tr.on_service("ADDED", service("default", "web", "10.96.0.20", [("http", 80, "TCP")], "NodePort", [30080]))
    tr.on_endpoint_slice("ADDED", endpoint_slice("default", "web", list(WEB), [("http", 8080, "TCP")],
                                                 node={WEB[0]: NODE, WEB[1]: "node2", WEB[2]: "node2"}))
    tr.on_service("ADDED", service("kube-system", "kube-dns", "10.96.0.10", [("dns", 53, "UDP")]))
    tr.on_endpoint_slice("ADDED", endpoint_slice("kube-system", "kube-dns", ["10.244.1.2"], [("dns", 53, "UDP")],
                                                 node="node2"))
    tr.on_service("ADDED", service("default", "sticky", "10.96.0.30", [("", 80, "TCP")],
                                   sessionAffinity="ClientIP", externalIPs=["203.0.113.9"]))
    tr.on_endpoint_slice("ADDED", endpoint_slice("default", "sticky", ["10.244.1.9"], [("", 80, "TCP")]))


def state():
    tr = ChangeTracker(NODE)
    world(tr)
    return tr, tr.snapshot()


def test_desired_virtual_and_real_servers_golden() -> None:
    d = compute(state()[1], CFG)
    assert d.listing() == (
        "UDP  10.96.0.10:53 rr\n"
        "  -> 10.244.1.2:53  Masq  1\n"
        "TCP  10.96.0.20:80 rr\n"
        "  -> 10.244.0.5:8080  Masq  1\n"
        "  -> 10.244.1.6:8080  Masq  1\n"
        "  -> 10.244.1.7:8080  Masq  1\n"
        "TCP  10.96.0.30:80 rr persistent 10800\n"
        "  -> 10.244.1.9:80  Masq  1\n"
        "TCP  192.168.56.101:30080 rr\n"
        "  -> 10.244.0.5:8080  Masq  1\n"
        "  -> 10.244.1.6:8080  Masq  1\n"
        "  -> 10.244.1.7:8080  Masq  1\n"
        "TCP  203.0.113.9:80 rr persistent 10800\n"
        "  -> 10.244.1.9:80  Masq  1\n"
    )
    assert d.bound == {"10.96.0.10", "10.96.0.20", "10.96.0.30", "203.0.113.9"}
    nonempty = {k: sorted(v) for k, v in d.ipsets.items() if v}
    assert nonempty == {
        "KUBE-CLUSTER-IP": ["10.96.0.10,udp:53", "10.96.0.20,tcp:80", "10.96.0.30,tcp:80"],
        "KUBE-EXTERNAL-IP": ["203.0.113.9,tcp:80"],
        "KUBE-IPVS-IPS": ["10.96.0.10", "10.96.0.20", "10.96.0.30", "203.0.113.9"],
        "KUBE-LOOP-BACK": ["10.244.0.5,tcp:8080,10.244.0.5"],  # only this node's endpoints
        "KUBE-NODE-PORT-TCP": ["30080"],
    }


def test_iptables_rules_golden() -> None:
    text = render(compute(state()[1], CFG), CFG)
    nat = text.split("*nat\n")[1]
    assert nat == (
        ":KUBE-SERVICES - [0:0]\n:KUBE-POSTROUTING - [0:0]\n:KUBE-NODE-PORT - [0:0]\n"
        ":KUBE-LOAD-BALANCER - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n"
        '-A KUBE-POSTROUTING -m comment --comment "Kubernetes endpoints dst ip:port, source ip for solving '
        'hairpin purpose" -m set --match-set KUBE-LOOP-BACK dst,dst,src -j MASQUERADE\n'
        '-A KUBE-NODE-PORT -p tcp -m comment --comment "Kubernetes nodeport TCP port for masquerade purpose" '
        "-m set --match-set KUBE-NODE-PORT-TCP dst -j KUBE-MARK-MASQ\n"
        "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n"
        "-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000\n"
        '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE\n'
        "-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000\n"
        '-A KUBE-SERVICES -m comment --comment "Kubernetes service cluster ip + port for masquerade purpose" '
        "-m set --match-set KUBE-CLUSTER-IP dst,dst ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ\n"
        '-A KUBE-SERVICES -m comment --comment "Kubernetes service external ip + port for masquerade and filter '
        'purpose" -m set --match-set KUBE-EXTERNAL-IP dst,dst -j KUBE-MARK-MASQ\n'
        '-A KUBE-SERVICES -m comment --comment "Kubernetes service external ip + port for masquerade and filter '
        'purpose" -m set --match-set KUBE-EXTERNAL-IP dst,dst -m addrtype --dst-type LOCAL -j ACCEPT\n'
        "-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT\n"
        "-A KUBE-LOAD-BALANCER -j KUBE-MARK-MASQ\n"
        "-A KUBE-SERVICES -m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT\n"
        "COMMIT\n"
    )
    assert "-A KUBE-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set KUBE-IPVS-IPS dst -j REJECT" in text


class Kernel:
    """The fakes wired together as the kernel couples them: a set named by a rule cannot be destroyed."""

    def __init__(self) -> None:
        self.ipt = FakeIptables()
        self.ipset = FakeIpset(in_use=lambda name: any(
            f"--match-set {name} " in self.ipt.save(t) for t in ("nat", "filter")))
        self.ipvs = FakeIpvs()
        self.links = FakeLinks()
        self.sysctl = FakeSysctl({k: "0" for k, _ in N.SYSCTLS} | {N.CONN_REUSE[0]: "1"})

    def proxier(self, cfg: IpvsConfig = CFG) -> IpvsProxier:
        return IpvsProxier(self.ipvs, self.ipset, self.ipt, self.links, self.sysctl, cfg, kernel_release="6.1.0-56-amd64")


def test_proxier_programs_fakes_and_cleans_up() -> None:
    k = Kernel()
    p = k.proxier()
    tr, st = state()
    p.sync(st, full=True)
    assert k.ipvs.listing() == compute(st, CFG).listing().replace("  Masq  1\n", "  Masq  1  0  0\n")
    assert k.links.addresses("kube-ipvs0") == {"10.96.0.10", "10.96.0.20", "10.96.0.30", "203.0.113.9"}
    assert k.sysctl.values == {"net.ipv4.vs.conntrack": "1", "net.ipv4.vs.expire_nodest_conn": "1",
                               "net.ipv4.vs.expire_quiescent_template": "1",
                               "net.ipv4.vs.conn_reuse_mode": "1"}  # >= 5.9: left as the kernel has it
    assert parse_save(k.ipset.save())["KUBE-NODE-PORT-TCP"].members == {"30080"}
    assert "-j KUBE-SERVICES" in k.ipt.save("nat") and p.tables_intact()
    # The kernel refuses to destroy a set a rule still names.
    with pytest.raises(IpsetError, match="in use"):
        k.ipset.restore("destroy KUBE-CLUSTER-IP\n")
    # A second identical sync changes nothing in IPVS.
    before = len(k.ipvs.calls)
    p.sync(tr.snapshot(), full=False)
    assert k.ipvs.calls[before:] == []
    p.cleanup()
    assert k.ipvs.services() == [] and "kube-ipvs0" not in k.links.links
    assert not any(s.name.startswith("KUBE-") for s in parse_save(k.ipset.save()).values())
    assert "KUBE-" not in k.ipt.save("nat") + k.ipt.save("filter") + k.ipt.save("mangle")


def test_graceful_termination_weight_zero_then_delete() -> None:
    k = Kernel()
    p = k.proxier()
    tr, st = state()
    p.sync(st, full=True)
    vs = VirtualServer("10.96.0.20", "TCP", 80, "rr")
    k.ipvs.conns[(vs.key, ("10.244.1.7", 8080))] = (1, 0)  # one open connection to the leaving endpoint
    tr.on_endpoint_slice("MODIFIED", endpoint_slice("default", "web", list(WEB[:2]), [("http", 8080, "TCP")],
                                                    node={WEB[0]: NODE, WEB[1]: "node2"}))
    p.sync(tr.snapshot(), full=False)
    assert RealServer("10.244.1.7", 8080, 0, 1, 0) in k.ipvs.dests(vs)  # weight 0, still draining
    # The node port's copy had no connections: deleted at once, as upstream does when idle.
    assert [r.address for r in k.ipvs.dests(VirtualServer(NODE_IP, "TCP", 30080))] == ["10.244.0.5", "10.244.1.6"]
    assert p.drain() == 0 and RealServer("10.244.1.7", 8080, 0, 1, 0) in k.ipvs.dests(vs)
    k.ipvs.conns[(vs.key, ("10.244.1.7", 8080))] = (0, 0)  # the connection closed
    assert p.drain() == 1
    assert [r.address for r in k.ipvs.dests(vs)] == ["10.244.0.5", "10.244.1.6"]
    # UDP real servers are deleted at once (upstream: no graceful termination for UDP/SCTP).
    dns = VirtualServer("10.96.0.10", "UDP", 53, "rr")
    k.ipvs.conns[(dns.key, ("10.244.1.2", 53))] = (0, 3)
    tr.on_endpoint_slice("DELETED", endpoint_slice("kube-system", "kube-dns", ["10.244.1.2"], [("dns", 53, "UDP")]))
    p.sync(tr.snapshot(), full=False)
    assert k.ipvs.dests(dns) == []


def test_removed_service_unbinds_and_deletes_virtual_servers() -> None:
    k = Kernel()
    p = k.proxier()
    tr, st = state()
    p.sync(st, full=True)
    tr.on_service("DELETED", service("default", "sticky", "10.96.0.30", [("", 80, "TCP")]))
    p.sync(tr.snapshot(), full=False)
    assert "10.96.0.30" not in k.links.addresses("kube-ipvs0")
    assert all(vs.address not in ("10.96.0.30", "203.0.113.9") for vs in k.ipvs.services())
    assert "10.96.0.30,tcp:80" not in parse_save(k.ipset.save())["KUBE-CLUSTER-IP"].members


def test_scheduler_from_config_and_unknown_scheduler_refused() -> None:
    k = Kernel()
    k.proxier(IpvsConfig(NODE, (NODE_IP,), scheduler="wlc")).sync(state()[1], full=True)
    assert {vs.scheduler for vs in k.ipvs.services()} == {"wlc"}
    k2 = Kernel()
    k2.ipvs.schedulers = ("rr",)  # ip_vs_wlc not loadable on that kernel
    with pytest.raises(IpvsError) as e:
        k2.proxier(IpvsConfig(NODE, (NODE_IP,), scheduler="wlc")).sync(state()[1], full=True)
    assert e.value.errno == errno.ENOENT


def test_fakes_refuse_what_the_kernel_refuses() -> None:
    ipvs = FakeIpvs()
    vs = VirtualServer("10.96.0.1", "TCP", 443)
    with pytest.raises(IpvsError) as e:
        ipvs.add_dest(vs, RealServer("10.244.0.2", 6443))
    assert e.value.errno == errno.ESRCH
    ipvs.add_service(vs)
    with pytest.raises(IpvsError) as e:
        ipvs.add_service(vs)
    assert e.value.errno == errno.EEXIST
    ipvs.add_dest(vs, RealServer("10.244.0.2", 6443))
    with pytest.raises(IpvsError) as e:
        ipvs.delete_dest(vs, RealServer("10.244.0.3", 6443))
    assert e.value.errno == errno.ENOENT
    ipset = FakeIpset()
    ipset.restore("create S hash:ip,port family inet\nadd S 10.96.0.1,tcp:443\n")
    for bad, msg in (("add S 10.96.0.1,tcp:443\n", "already added"), ("add S 10.96.0.1\n", "not a valid"),
                     ("add T 1.2.3.4\n", "does not exist"), ("create S bitmap:port range 0-65535 -exist\n", "exists"),
                     ("create P bitmap:port\n", "range")):
        with pytest.raises(IpsetError, match=msg):
            ipset.restore(bad)
    with pytest.raises(Exception, match="File exists"):
        links = FakeLinks()
        links.ensure_dummy("kube-ipvs0")
        links.add_address("kube-ipvs0", "10.96.0.1")
        links.add_address("kube-ipvs0", "10.96.0.1")


def test_ipvs_falls_back_to_iptables_without_kernel_support(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        assert resolve_mode("ipvs", probe=lambda: "the kernel has no IPVS") == "iptables"
    assert "can't use the IPVS proxier: the kernel has no IPVS" in caplog.text
    assert resolve_mode("ipvs", probe=lambda: None) == "ipvs"
    assert resolve_mode("nftables", probe=lambda: "unused") == "nftables"


def test_config_accepts_every_mode_and_checks_the_scheduler(tmp_path) -> None:
    for mode in ("iptables", "nftables", "userspace", "ipvs"):
        ClusterConfig(name="t", proxy_mode=mode, state_root="/var/tmp/x").validate()
    with pytest.raises(ConfigError, match="--ipvs-scheduler 'fifo' is unknown"):
        ClusterConfig(name="t", proxy_mode="ipvs", ipvs_scheduler="fifo", state_root="/var/tmp/x").validate()
