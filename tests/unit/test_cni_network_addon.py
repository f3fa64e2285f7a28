"""Pod network add-on: net-conf.json parsing, host-gw reconcile on fake netlink, portmap rules, hostPorts."""

from __future__ import annotations

import json

import pytest

from cni import netconf, portmap_rules
from cni.flannel import hostgw
from cni.flannel.daemon import FlannelDaemon
from cni.flannel.fake_netlink import FakeNetlink
from cni.flannel.netlink import Route
from cni.invoke import _net
from netkube.config import ClusterConfig, ConfigError
from netkube.kubelet.sandbox import runtime_config

# Address plan: nodes 192.168.56.101-103 on eth0 (/24), pod subnets 10.244.0-2.0/24; 203.0.113.7 = off-link
ANN = "flannel.alpha.coreos.com/"


def node(name: str, cidr: str, ip: str, backend: str = "host-gw") -> dict:
    return {"metadata": {"name": name, "annotations": {ANN + "backend-type": backend, ANN + "public-ip": ip}},
            "spec": {"podCIDR": cidr}}


def node_nl() -> FakeNetlink:
    nl = FakeNetlink()
    nl.add_physical("eth0", 1500)
    nl.add_addr("eth0", "192.168.56.101/24")
    return nl


def test_net_conf_parse_and_errors() -> None:
    assert netconf.parse('{"Network": "10.244.0.0/16", "Backend": {"Type": "host-gw"}}', "10.244.0.0/16") == \
        netconf.NetConf("10.244.0.0/16", "host-gw")
    for text, msg in [("{nope", "not valid JSON"), ('{"Network": "10.244.0.0/16", "Backend": {"Type": "udp"}}',
                                                     "not supported"),
                      ('{"Network": "10.9.0.0/16", "Backend": {"Type": "vxlan"}}', "differs from the cluster")]:
        with pytest.raises(netconf.NetConfError, match=msg):
            netconf.parse(text, "10.244.0.0/16")
    ns, cm = netconf.manifests("flannel-host-gw", "10.244.0.0/16")
    assert (ns["metadata"]["name"], cm["metadata"]["name"]) == ("kube-flannel", "kube-flannel-cfg")
    assert json.loads(cm["data"]["net-conf.json"]) == {"Network": "10.244.0.0/16", "Backend": {"Type": "host-gw"}}


def test_cluster_config_network_flags() -> None:
    ClusterConfig(network="flannel-host-gw", cni_plugins="reference").validate()
    with pytest.raises(ConfigError, match="--network 'weave' is unknown"):
        ClusterConfig(network="weave").validate()
    with pytest.raises(ConfigError, match="--cni-plugins"):
        ClusterConfig(cni_plugins="calico").validate()


def test_bin_dirs_reference_first() -> None:
    from pathlib import Path

    assert netconf.bin_dirs(Path("/s"), "netkube") == ["/s/cni/bin"]
    assert netconf.bin_dirs(Path("/s"), "reference") == ["/usr/lib/cni", "/s/cni/bin"]


def test_hostgw_routes_follow_nodes_and_leave_other_routes() -> None:
    nl = node_nl()
    nl.add_route(Route("0.0.0.0/0", "192.168.56.1"), "eth0")  # the node's own default route: never touched
    peers = [hostgw.peer_of(node("node2", "10.244.1.0/24", "192.168.56.102")),
             hostgw.peer_of(node("node3", "10.244.2.0/24", "192.168.56.103"))]
    assert hostgw.reconcile(nl, [p for p in peers if p], "eth0", "10.244.0.0/16") == []
    assert nl.routes("eth0") == {Route("0.0.0.0/0", "192.168.56.1"), Route("10.244.1.0/24", "192.168.56.102"),
                                 Route("10.244.2.0/24", "192.168.56.103")}
    hostgw.reconcile(nl, [p for p in peers[1:] if p], "eth0", "10.244.0.0/16")  # node2 left
    assert nl.routes("eth0") == {Route("0.0.0.0/0", "192.168.56.1"), Route("10.244.2.0/24", "192.168.56.103")}


def test_hostgw_refuses_off_link_next_hop_with_a_clear_message() -> None:
    nl = node_nl()
    far = hostgw.peer_of(node("far", "10.244.5.0/24", "203.0.113.7"))
    assert far is not None
    refused = hostgw.reconcile(nl, [far], "eth0", "10.244.0.0/16")
    assert len(refused) == 1 and "not on a directly connected subnet" in refused[0] and "vxlan" in refused[0]
    assert nl.routes("eth0") == set()
    assert hostgw.peer_of(node("v", "10.244.1.0/24", "192.168.56.102", backend="vxlan")) is None


def test_daemon_host_gw_setup_has_no_vxlan_device(tmp_path) -> None:
    nl = node_nl()
    d = FlannelDaemon(None, ClusterConfig(), "node1", "192.168.56.101", tmp_path, netlink=nl,  # type: ignore[arg-type]
                      backend="host-gw")
    d.pod_cidr = "10.244.0.0/24"
    assert d.setup_node("10.244.0.0/24") == ""
    assert nl.get_link("flannel.1") is None
    assert "FLANNEL_MTU=1500" in (tmp_path / "run/flannel/subnet.env").read_text()
    assert d.annotations("")[ANN + "backend-type"] == "host-gw"
    d.sync([node("node1", "10.244.0.0/24", "192.168.56.101"), node("node2", "10.244.1.0/24", "192.168.56.102")])
    assert nl.routes("eth0") == {Route("10.244.1.0/24", "192.168.56.102")}


def test_vxlan_setup_keeps_existing_device(tmp_path) -> None:
    """A flannel restart must not delete and re-make a correct flannel.1 (live connections use it)."""
    nl = node_nl()
    d = FlannelDaemon(None, ClusterConfig(), "node1", "192.168.56.101", tmp_path, netlink=nl)  # type: ignore[arg-type]
    mac = d.setup_node("10.244.0.0/24")
    d2 = FlannelDaemon(None, ClusterConfig(), "node1", "192.168.56.101", tmp_path, netlink=nl)  # type: ignore[arg-type]
    assert d2.setup_node("10.244.0.0/24") == mac
    assert nl.calls.count("add_vxlan flannel.1") == 1


PORTMAP_SAVE_EMPTY = "*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n"


def test_portmap_rules_as_upstream_writes_them() -> None:
    maps = portmap_rules.parse_mappings([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}])
    text = portmap_rules.setup_rules(PORTMAP_SAVE_EMPTY, "mynet", "abc", maps, "10.99.1.2", "10.99.1.0/24")
    chain = portmap_rules.dn_chain("mynet", "abc")
    assert chain == "CNI-DN-e88f49d94512ff752ebe6"  # what reference portmap 1.1.1 names it
    assert text.splitlines() == [
        "*nat", ":CNI-HOSTPORT-DNAT - [0:0]", ":CNI-HOSTPORT-SETMARK - [0:0]", ":CNI-HOSTPORT-MASQ - [0:0]",
        f":{chain} - [0:0]",
        '-A CNI-HOSTPORT-SETMARK -m comment --comment "CNI portfwd masquerade mark" -j MARK --set-xmark 0x2000/0x2000',
        "-A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE",
        "-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
        "-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
        '-A POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ',
        f"-A {chain} -s 10.99.1.0/24 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK",
        f"-A {chain} -s 127.0.0.1/32 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK",
        f"-A {chain} -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.99.1.2:80",
        '-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \\"mynet\\" id: \\"abc\\"" '
        f"-m multiport --dports 8080 -j {chain}",
        "COMMIT"]
    # Second container: shared chains exist, so they are not re-declared (that would flush them).
    save = "\n".join(text.splitlines()[:-1]) + "\nCOMMIT\n"
    second = portmap_rules.setup_rules(save, "mynet", "def", maps, "10.99.1.3", "10.99.1.0/24")
    assert ":CNI-HOSTPORT-DNAT - [0:0]" not in second and "-A PREROUTING" not in second
    down = portmap_rules.teardown_rules(save, "mynet", "abc")
    assert down is not None and f"-X {chain}" in down and "-D CNI-HOSTPORT-DNAT -p tcp" in down
    assert portmap_rules.teardown_rules(PORTMAP_SAVE_EMPTY, "mynet", "abc") is None


def test_portmap_rejects_bad_mappings() -> None:
    from cni.spec import CniError

    for bad in ([{"hostPort": 0, "containerPort": 80}], [{"hostPort": 80}], [{"hostPort": 1, "containerPort": 2,
                                                                              "protocol": "icmp"}]):
        with pytest.raises(CniError):
            portmap_rules.parse_mappings(bad)


def test_runtime_config_only_to_plugins_with_the_capability() -> None:
    conflist = {"name": "cbr0", "cniVersion": "1.0.0",
                "plugins": [{"type": "flannel"}, {"type": "portmap", "capabilities": {"portMappings": True}}]}
    rc = {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}
    assert "runtimeConfig" not in _net(conflist, conflist["plugins"][0], None, rc)
    pm = _net(conflist, conflist["plugins"][1], {"ips": []}, rc)
    assert pm["runtimeConfig"] == rc and "capabilities" not in pm and pm["prevResult"] == {"ips": []}


def test_kubelet_port_mappings_from_host_ports() -> None:
    pod = {"spec": {"containers": [{"ports": [{"containerPort": 80, "hostPort": 8080},
                                              {"containerPort": 53, "protocol": "UDP", "hostPort": 5353,
                                               "hostIP": "192.168.56.102"},
                                              {"containerPort": 9000}]}]}}
    assert runtime_config(pod) == {"portMappings": [
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
        {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "192.168.56.102"}]}
    assert runtime_config({"spec": {"containers": [{"ports": [{"containerPort": 80}]}]}}) == {}
