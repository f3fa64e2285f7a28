"""The flannel node daemon: net-conf.json + podCIDR → subnet.env + conflist + backend routes from Nodes."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

from cni import netconf
from cni.flannel import files, hostgw, masq, vxlan
from cni.flannel.netlink import PyRoute2Netlink, VxlanNetlink
from netkube.client import CONFIGMAPS, NODES, ApiClient, Informer
from netkube.config import VXLAN_PORT, VXLAN_VNI, ClusterConfig

log = logging.getLogger(__name__)

VXLAN_OVERHEAD = 50  # outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14
RESYNC_SECONDS = 10.0


async def _wait_event(event: asyncio.Event, timeout: float) -> bool:
    # Not asyncio.wait_for: on 3.11 it can swallow a cancel that races with the event firing.
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter}, timeout=timeout)
    finally:
        waiter.cancel()
    return event.is_set()


class FlannelDaemon:
    def __init__(self, client: ApiClient, cluster: ClusterConfig, node_name: str, node_ip: str,
                 node_dir: Path, iface: str = "eth0", netlink: VxlanNetlink | None = None,
                 backend: str = "vxlan") -> None:
        self.client = client
        self.cluster = cluster
        self.node_name = node_name
        self.node_ip = node_ip
        self.node_dir = Path(node_dir)
        self.iface = iface
        self.nl: VxlanNetlink = netlink if netlink is not None else PyRoute2Netlink()
        self.pod_cidr: str | None = None
        self.backend = backend  # replaced by net-conf.json's Backend.Type when run() reads the ConfigMap
        self.refused: list[str] = []  # host-gw peers it could not route to, with the reason
        self.ready = asyncio.Event()  # set once the conflist is written (NetworkReady)
        self._changed = asyncio.Event()
        self._executor: Any = None
        # Off only for tests on fake netlink (no iptables there) and for a bridge-masquerade setup.
        self.ip_masq = netlink is None

    # --- steps, each usable on its own (tests drive them with static node data) -------------
    def setup_node(self, pod_cidr: str) -> str:
        """Backend device + subnet.env; returns the VTEP MAC ("" for host-gw). The conflist comes later."""
        under = self.nl.get_link(self.iface)
        if under is None:
            raise RuntimeError(f"underlay interface {self.iface!r} not found in this netns; "
                               "pass the interface holding the node IP as iface")
        if self.backend == "host-gw":
            mac, mtu = "", under.mtu  # plain routing: no encapsulation, no overhead, no device
        else:
            mtu = under.mtu - VXLAN_OVERHEAD
            # An existing, working flannel.1 is kept (never deleted and re-made), so a flannel
            # restart does not drop the neighbour/FDB entries live connections depend on.
            mac = vxlan.ensure_device(self.nl, VXLAN_VNI, VXLAN_PORT, self.node_ip, self.iface, mtu, pod_cidr)
        # flanneld masquerades for the node (FLANNEL_IPMASQ=true, as kube-flannel.yml runs it with
        # --ip-masq), so the bridge plugin skips its per-pod nat chain.
        if self.ip_masq:
            masq.apply(self.cluster.pod_cidr, pod_cidr)
        files.write_atomic(self.node_dir / "run/flannel/subnet.env",
                           files.subnet_env(self.cluster.pod_cidr, pod_cidr, mtu, ipmasq=self.ip_masq))
        return mac

    def annotations(self, mac: str) -> dict[str, str]:
        a = vxlan.ANN
        data = (json.dumps({"VNI": VXLAN_VNI, "VtepMAC": mac}, separators=(",", ":"))
                if self.backend == "vxlan" else "null")  # upstream host-gw publishes no backend data
        return {a + "backend-type": self.backend, a + "backend-data": data,
                a + "public-ip": self.node_ip, a + "kube-subnet-manager": "true"}

    def peers(self, nodes: list[dict[str, Any]]) -> list[vxlan.Peer]:
        out = []
        for n in nodes:
            if n.get("metadata", {}).get("name") == self.node_name:
                continue
            p = vxlan.peer_of(n)
            if p is not None and p.subnet != self.pod_cidr:
                out.append(p)
        return out

    def hostgw_peers(self, nodes: list[dict[str, Any]]) -> list[hostgw.Peer]:
        return [p for n in nodes if n.get("metadata", {}).get("name") != self.node_name
                for p in [hostgw.peer_of(n)] if p is not None and p.subnet != self.pod_cidr]

    def sync(self, nodes: list[dict[str, Any]]) -> None:
        if self.backend == "host-gw":
            refused = hostgw.reconcile(self.nl, self.hostgw_peers(nodes), self.iface, self.cluster.pod_cidr)
            for msg in sorted(set(refused) - set(self.refused)):
                log.error("flannel: %s", msg)
            self.refused = refused
        else:
            vxlan.reconcile(self.nl, self.peers(nodes))

    # --- the running daemon -----------------------------------------------------------------
    def _on_event(self, _kind: str, _obj: dict[str, Any], _old: dict[str, Any] | None) -> None:
        self._changed.set()

    async def _wait_pod_cidr(self, informer: Informer) -> str:
        while True:
            self._changed.clear()
            node = informer.get(self.node_name)
            cidr = (node or {}).get("spec", {}).get("podCIDR")
            if cidr:
                return str(cidr)
            if not await _wait_event(self._changed, 5.0):
                log.info("flannel: waiting for node %s to get spec.podCIDR", self.node_name)

    async def _start_node(self, informer: Informer) -> None:
        while True:
            self.pod_cidr = await self._wait_pod_cidr(informer)
            try:
                mac = await self._netlink_call(self.setup_node, self.pod_cidr)
                await self.client.patch(NODES, self.node_name, {"metadata": {"annotations": self.annotations(mac)}})
                files.write_conflist(self.node_dir)  # last: its existence means NetworkReady
                self.ready.set()
                log.info("flannel: node %s subnet %s vtep %s", self.node_name, self.pod_cidr, mac)
                return
            except Exception as e:
                log.error("flannel: setting up node %s failed: %s; retrying in 2 s", self.node_name, e)
                await asyncio.sleep(2.0)

    async def _netlink_call(self, fn, *args):  # type: ignore[no-untyped-def]
        """pyroute2's synchronous IPRoute runs its own event loop, so it cannot be used from a
        thread whose loop is running: every netlink call goes to one dedicated worker thread."""
        if self._executor is None:
            from concurrent.futures import ThreadPoolExecutor

            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flannel-netlink")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _wait_net_conf(self) -> netconf.NetConf:
        """The add-on model: nothing happens on the node until kube-flannel-cfg exists (as a node
        without a CNI add-on stays NotReady); a bad net-conf.json is reported and waited out."""
        cms = Informer(self.client, CONFIGMAPS, namespace=netconf.NAMESPACE)
        changed = asyncio.Event()
        cms.add_handler(lambda *_: changed.set())
        task = asyncio.create_task(cms.run())
        reported = ""
        try:
            await cms.synced.wait()
            while True:
                changed.clear()
                cm = cms.get(netconf.CONFIGMAP, netconf.NAMESPACE)
                text = ((cm or {}).get("data") or {}).get(netconf.NET_CONF_KEY)
                msg = f"waiting for ConfigMap {netconf.NAMESPACE}/{netconf.CONFIGMAP} (netkube network install)"
                if text is not None:
                    try:
                        return netconf.parse(text, self.cluster.pod_cidr)
                    except netconf.NetConfError as e:
                        msg = f"ConfigMap {netconf.NAMESPACE}/{netconf.CONFIGMAP}: {e}"
                if msg != reported:
                    (log.error if text is not None else log.info)("flannel: %s", msg)
                    reported = msg
                await _wait_event(changed, 30.0)
        finally:
            task.cancel()

    async def run(self) -> None:
        conf = await self._wait_net_conf()
        self.backend = conf.backend
        informer = Informer(self.client, NODES)
        informer.add_handler(self._on_event)
        task = asyncio.create_task(informer.run())
        try:
            await informer.synced.wait()
            await self._start_node(informer)
            while True:
                self._changed.clear()
                try:
                    await self._netlink_call(self.sync, informer.items())
                    timeout = RESYNC_SECONDS
                except Exception as e:  # never die of a bad sync: log, retry soon
                    log.error("flannel: %s sync failed: %s; retrying in 1 s", self.backend, e)
                    timeout = 1.0
                await _wait_event(self._changed, timeout)
        finally:
            task.cancel()
            if isinstance(self.nl, PyRoute2Netlink):
                if self._executor is not None:
                    self._executor.submit(self.nl.close)
                else:
                    self.nl.close()
            if self._executor is not None:
                self._executor.shutdown(wait=False)
                self._executor = None
