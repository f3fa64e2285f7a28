"""flannel: plugin delegate config, subnet.env/conflist files, vxlan reconcile on fake netlink, daemon."""

from __future__ import annotations

import asyncio
import errno
import json

import pytest

from cni.flannel import files, vxlan
from cni.flannel.daemon import FlannelDaemon
from cni.flannel.fake_netlink import FakeNetlink
from cni.flannel.netlink import Route
from cni.plugins.flannel import delegate_conf, load_subnet_env
from cni.spec import CniError
from netkube.client import NODES
from netkube.config import ClusterConfig

# Address plan: node1 192.168.56.101 / 10.244.0.0/24, node2 .102 / 10.244.1.0/24, node3 .103 / 10.244.2.0/24
MAC2, MAC3 = "aa:bb:cc:00:00:02", "aa:bb:cc:00:00:03"


def node(name: str, cidr: str | None, ip: str | None = None, mac: str | None = None) -> dict:
    ann = {}
    if ip and mac:
        ann = {"flannel.alpha.coreos.com/backend-type": "vxlan",
               "flannel.alpha.coreos.com/backend-data": json.dumps({"VNI": 1, "VtepMAC": mac}),
               "flannel.alpha.coreos.com/public-ip": ip}
    spec = {"podCIDR": cidr} if cidr else {}
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "annotations": ann}, "spec": spec}


def fake_node_netlink() -> FakeNetlink:
    nl = FakeNetlink()
    nl.add_physical("eth0", 1500)
    return nl


# --- plugin config --------------------------------------------------------------------------
def test_subnet_env_roundtrip(tmp_path) -> None:
    p = tmp_path / "subnet.env"
    p.write_text(files.subnet_env("10.244.0.0/16", "10.244.1.0/24", 1450))
    assert p.read_text() == ("FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\n"
                             "FLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n")
    assert load_subnet_env(str(p)) == {"network": "10.244.0.0/16", "subnet": "10.244.1.1/24", "mtu": 1450,
                                       "ipmasq": False}


def test_missing_subnet_env_message(tmp_path) -> None:
    with pytest.raises(CniError, match="failed to load flannel 'subnet.env' file: open .*Check the flannel pod log"):
        load_subnet_env(str(tmp_path / "nope"))


def test_delegate_conf_like_upstream() -> None:
    conf = {"cniVersion": "1.0.0", "name": "cbr0", "type": "flannel",
            "delegate": {"hairpinMode": True, "isDefaultGateway": True, "ipam": {"dataDir": "/n/networks"}}}
    fenv = {"network": "10.244.0.0/16", "subnet": "10.244.1.1/24", "mtu": 1450, "ipmasq": False}
    assert delegate_conf(conf, fenv) == {
        "type": "bridge", "name": "cbr0", "cniVersion": "1.0.0", "mtu": 1450, "ipMasq": True, "isGateway": True,
        "hairpinMode": True, "isDefaultGateway": True,
        "ipam": {"type": "host-local", "dataDir": "/n/networks", "ranges": [[{"subnet": "10.244.1.0/24"}]],
                 "routes": [{"dst": "10.244.0.0/16"}]}}
    # user delegate keys win; FLANNEL_IPMASQ=true turns the bridge masquerade off
    d = delegate_conf({"name": "x", "delegate": {"mtu": 1400}}, dict(fenv, ipmasq=True))
    assert d["mtu"] == 1400 and d["ipMasq"] is False


def test_conflist_paths_are_per_node(tmp_path) -> None:
    path = files.write_conflist(tmp_path / "node2")
    data = json.loads(path.read_text())
    assert path == tmp_path / "node2/cni/net.d/10-flannel.conflist"
    p = data["plugins"][0]
    assert data["name"] == "cbr0" and data["cniVersion"] == "1.0.0" and p["type"] == "flannel"
    assert p["subnetFile"] == str(tmp_path / "node2/run/flannel/subnet.env")
    assert p["dataDir"] == str(tmp_path / "node2/cni/flannel")
    assert p["delegate"]["ipam"]["dataDir"] == str(tmp_path / "node2/cni/networks")


# --- fake netlink ---------------------------------------------------------------------------
def test_fake_refuses_like_kernel() -> None:
    nl = fake_node_netlink()
    with pytest.raises(OSError) as e:
        nl.add_vxlan("flannel.1", 1, 8472, "192.168.56.102", "eth9", 1450)
    assert e.value.errno == errno.ENODEV
    nl.add_vxlan("flannel.1", 1, 8472, "192.168.56.102", "eth0", 1450)
    with pytest.raises(OSError) as e:
        nl.add_vxlan("flannel.1", 1, 8472, "192.168.56.102", "eth0", 1450)
    assert e.value.errno == errno.EEXIST
    nl.add_route(Route("10.244.2.0/24", "10.244.2.0"), "flannel.1")
    with pytest.raises(OSError) as e:
        nl.add_route(Route("10.244.2.0/24", "10.244.2.0"), "flannel.1")
    assert e.value.errno == errno.EEXIST
    with pytest.raises(OSError) as e:
        nl.del_route(Route("10.244.9.0/24", "10.244.9.0"), "flannel.1")
    assert e.value.errno == errno.ESRCH
    with pytest.raises(ValueError):
        nl.add_route(Route("10.244.2.1/24", "10.244.2.0"), "flannel.1")


# --- reconcile ------------------------------------------------------------------------------
def test_ensure_device_and_reconcile_exact_state() -> None:
    nl = fake_node_netlink()
    mac = vxlan.ensure_device(nl, 1, 8472, "192.168.56.101", "eth0", 1450, "10.244.0.0/24")
    assert mac == nl.links["flannel.1"].mac and nl.links["flannel.1"].up
    assert nl.vxlan["flannel.1"] == {"vni": 1, "port": 8472, "local": "192.168.56.101", "dev": "eth0",
                                     "learning": False}
    assert nl.addrs("flannel.1") == {"10.244.0.0/32"}
    vxlan.ensure_device(nl, 1, 8472, "192.168.56.101", "eth0", 1450, "10.244.0.0/24")  # idempotent
    peers = [vxlan.Peer("node2", "10.244.1.0/24", MAC2, "192.168.56.102"),
             vxlan.Peer("node3", "10.244.2.0/24", MAC3, "192.168.56.103")]
    vxlan.reconcile(nl, peers)
    assert nl.routes("flannel.1") == {Route("10.244.1.0/24", "10.244.1.0"), Route("10.244.2.0/24", "10.244.2.0")}
    assert nl.neighs("flannel.1") == {"10.244.1.0": MAC2, "10.244.2.0": MAC3}
    assert nl.fdbs("flannel.1") == {MAC2: "192.168.56.102", MAC3: "192.168.56.103"}
    nl.calls.clear()
    vxlan.reconcile(nl, peers)
    assert nl.calls == []  # nothing to do the second time
    # node3 moves to a new public IP and MAC; node2 disappears
    vxlan.reconcile(nl, [vxlan.Peer("node3", "10.244.2.0/24", "aa:bb:cc:00:00:33", "192.168.56.113")])
    assert nl.routes("flannel.1") == {Route("10.244.2.0/24", "10.244.2.0")}
    assert nl.neighs("flannel.1") == {"10.244.2.0": "aa:bb:cc:00:00:33"}
    assert nl.fdbs("flannel.1") == {"aa:bb:cc:00:00:33": "192.168.56.113"}


def test_peer_of_skips_incomplete_nodes() -> None:
    assert vxlan.peer_of(node("n", "10.244.1.0/24")) is None
    assert vxlan.peer_of(node("n", None, "192.168.56.102", MAC2)) is None
    bad = node("n", "10.244.1.0/24", "192.168.56.102", MAC2)
    bad["metadata"]["annotations"]["flannel.alpha.coreos.com/backend-data"] = "{nope"
    assert vxlan.peer_of(bad) is None
    assert vxlan.peer_of(node("n", "10.244.1.0/24", "192.168.56.102", MAC2.upper())) == vxlan.Peer(
        "n", "10.244.1.0/24", MAC2, "192.168.56.102")


# --- daemon end to end on fakes -------------------------------------------------------------
async def install_network(api, network: str = "flannel-vxlan") -> None:  # type: ignore[no-untyped-def]
    """What `netkube network install` does: kube-flannel namespace + ConfigMap kube-flannel-cfg."""
    from cni.netconf import manifests
    from netkube.client import CONFIGMAPS, NAMESPACES

    ns, cm = manifests(network, "10.244.0.0/16")
    await api.create(NAMESPACES, ns)
    await api.create(CONFIGMAPS, cm, "kube-flannel")


async def _until(cond, timeout: float = 3.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def test_daemon_waits_for_podcidr_then_publishes_and_follows_nodes(tmp_path) -> None:
    from netkube.testing.fake_api import FakeApiClient

    api = FakeApiClient()
    await install_network(api)
    await api.create(NODES, node("node1", None))
    await api.create(NODES, node("node2", "10.244.1.0/24", "192.168.56.102", MAC2))
    nl = fake_node_netlink()
    d = FlannelDaemon(api, ClusterConfig(), "node1", "192.168.56.101", tmp_path, netlink=nl)  # type: ignore[arg-type]
    task = asyncio.create_task(d.run())
    try:
        await asyncio.sleep(0.2)
        assert not (tmp_path / "cni/net.d/10-flannel.conflist").exists()
        assert nl.get_link("flannel.1") is None
        await api.patch(NODES, "node1", {"spec": {"podCIDR": "10.244.0.0/24"}})
        await asyncio.wait_for(d.ready.wait(), 3)
        assert (tmp_path / "run/flannel/subnet.env").read_text().splitlines()[1:3] == [
            "FLANNEL_SUBNET=10.244.0.1/24", "FLANNEL_MTU=1450"]
        ann = (await api.get(NODES, "node1"))["metadata"]["annotations"]
        mac = nl.links["flannel.1"].mac
        assert ann["flannel.alpha.coreos.com/backend-data"] == json.dumps({"VNI": 1, "VtepMAC": mac}, separators=(",", ":"))
        assert ann["flannel.alpha.coreos.com/public-ip"] == "192.168.56.101"
        assert ann["flannel.alpha.coreos.com/kube-subnet-manager"] == "true"
        await _until(lambda: nl.routes("flannel.1") == {Route("10.244.1.0/24", "10.244.1.0")})
        await api.create(NODES, node("node3", "10.244.2.0/24", "192.168.56.103", MAC3))
        await _until(lambda: len(nl.fdbs("flannel.1")) == 2, 1.0)
        await api.delete(NODES, "node2")
        await _until(lambda: nl.fdbs("flannel.1") == {MAC3: "192.168.56.103"}, 1.0)
        assert nl.neighs("flannel.1") == {"10.244.2.0": MAC3}
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_daemon_reports_missing_underlay_and_keeps_running(tmp_path, caplog) -> None:
    from netkube.testing.fake_api import FakeApiClient

    api = FakeApiClient()
    await install_network(api)
    await api.create(NODES, node("node1", "10.244.0.0/24"))
    nl = FakeNetlink()  # no eth0
    d = FlannelDaemon(api, ClusterConfig(), "node1", "192.168.56.101", tmp_path, netlink=nl)  # type: ignore[arg-type]
    task = asyncio.create_task(d.run())
    try:
        await _until(lambda: "underlay interface 'eth0' not found" in caplog.text)
        assert not task.done()
        nl.add_physical("eth0", 1500)
        await asyncio.wait_for(d.ready.wait(), 4)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
