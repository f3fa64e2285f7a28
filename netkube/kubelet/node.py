"""The Node object: registration, status heartbeat with conditions, and the node Lease."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

from netkube.client import LEASES, NODES, ApiClient, ApiError
from netkube.config import ClusterConfig
from netkube.kubelet.status import now_rfc3339

log = logging.getLogger(__name__)
Obj = dict[str, Any]

KUBELET_VERSION = "v1.32.0"
RUNTIME_VERSION = "netkube://0.1.0"
NOT_READY_MESSAGE = (
    "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady "
    "message:Network plugin returns error: cni plugin not initialized"
)
CONTROL_PLANE = "node-role.kubernetes.io/control-plane"


def _read(path: str, default: str = "") -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return default


def _os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return "Linux"


def _memory_ki() -> int:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    return 2 * 1024 * 1024


def node_object(cluster: ClusterConfig, node: str, node_ip: str) -> Obj:
    labels = {
        "kubernetes.io/hostname": node,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": "amd64",
    }
    spec: Obj = {}
    if node == "node1":
        labels[CONTROL_PLANE] = ""
        if cluster.nodes > 1:
            spec["taints"] = [{"key": CONTROL_PLANE, "effect": "NoSchedule"}]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": node, "labels": labels, "annotations": {"node.alpha.kubernetes.io/ttl": "0"}},
        "spec": spec,
    }


def static_status(node: str, node_ip: str, state_dir: Path, kubelet_port: int = 10250) -> Obj:
    mem = _memory_ki()
    try:
        st = os.statvfs(state_dir if state_dir.exists() else "/")
        disk_ki = st.f_blocks * st.f_frsize // 1024
    except OSError:
        disk_ki = 0
    capacity = {
        "cpu": "2",
        "memory": f"{mem}Ki",
        "pods": "110",
        "ephemeral-storage": f"{disk_ki}Ki",
        "hugepages-1Gi": "0",
        "hugepages-2Mi": "0",
    }
    # Allocatable = capacity minus the default hard eviction thresholds (memory.available<100Mi,
    # nodefs.available<10%).
    allocatable = dict(capacity, memory=f"{max(0, mem - 102400)}Ki", **{"ephemeral-storage": str(disk_ki * 1024 * 9 // 10)})
    uname = platform.uname()
    return {
        "addresses": [{"type": "InternalIP", "address": node_ip}, {"type": "Hostname", "address": node}],
        "capacity": capacity,
        "allocatable": allocatable,
        "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},  # where the apiserver proxies logs/exec
        "nodeInfo": {
            "machineID": _read("/etc/machine-id"),
            "systemUUID": _read("/etc/machine-id"),
            "bootID": _read("/proc/sys/kernel/random/boot_id"),
            "kernelVersion": uname.release,
            "osImage": _os_image(),
            "containerRuntimeVersion": RUNTIME_VERSION,
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
    }


def conditions(network_ready: bool, prev: list[Obj], now: str) -> list[Obj]:
    old = {c["type"]: c for c in prev}

    def cond(ctype: str, status: str, reason: str, message: str) -> Obj:
        was = old.get(ctype)
        since = was["lastTransitionTime"] if was and was.get("status") == status else now
        return {"type": ctype, "status": status, "reason": reason, "message": message,
                "lastHeartbeatTime": now, "lastTransitionTime": since}

    out = [
        cond("NetworkUnavailable", "False", "FlannelIsUp", "Flannel is running on this node") if network_ready
        else cond("NetworkUnavailable", "True", "NoRouteCreated", "Node created without a route"),
        cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ]
    if network_ready:
        out.append(cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"))
    else:
        out.append(cond("Ready", "False", "KubeletNotReady", NOT_READY_MESSAGE))
    return out


class NodeReporter:
    def __init__(self, client: ApiClient, cluster: ClusterConfig, node: str, node_ip: str,
                 network_ready: Callable[[], bool], interval: float = 10.0) -> None:
        self.client, self.cluster, self.node, self.node_ip = client, cluster, node, node_ip
        self.network_ready = network_ready
        self.interval = interval
        self._conditions: list[Obj] = []
        self._lease_supported = True
        self.kubelet_port = 10250  # the kubelet sets the port its server actually bound

    async def register(self) -> None:
        """Create the Node (or adopt an existing one), retrying until the apiserver answers."""
        delay = 0.2
        while True:
            try:
                try:
                    await self.client.create(NODES, node_object(self.cluster, self.node, self.node_ip))
                except ApiError as e:
                    if e.code != 409:
                        raise
                    obj = node_object(self.cluster, self.node, self.node_ip)
                    await self.client.patch(NODES, self.node, {"metadata": {"labels": obj["metadata"]["labels"]}})
                await self.heartbeat(full=True)
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:  # apiserver not up yet, or a transient error: keep trying
                log.warning("registering node %s failed, retrying in %.1fs: %s", self.node, delay, e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def heartbeat(self, full: bool = False) -> None:
        self._conditions = conditions(self.network_ready(), self._conditions, now_rfc3339())
        status: Obj = {"conditions": self._conditions}
        if full:
            status.update(static_status(self.node, self.node_ip, self.cluster.state_dir, self.kubelet_port))
        await self.client.patch(NODES, self.node, {"status": status}, sub="status")
        await self.renew_lease()

    async def renew_lease(self) -> None:
        if not self._lease_supported:
            return
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        spec = {"holderIdentity": self.node, "leaseDurationSeconds": 40, "renewTime": now}
        try:
            try:
                await self.client.patch(LEASES, self.node, {"spec": spec}, "kube-node-lease")
            except ApiError as e:
                if e.code != 404:
                    raise
                lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                         "metadata": {"name": self.node, "namespace": "kube-node-lease"}, "spec": spec}
                await self.client.create(LEASES, lease, "kube-node-lease")
        except ApiError as e:
            if e.code == 404:
                self._lease_supported = False  # the server has no Lease API (or namespace): skip
            else:
                log.warning("renewing lease of node %s failed: %s", self.node, e)

    async def run(self) -> None:
        """Heartbeat forever (after register()); a failure is logged and retried next beat."""
        beats = 0
        while True:
            # Beat every interval, and at once when the network plugin becomes (un)ready, so a
            # node turns Ready the moment flannel writes its CNI config, as the real kubelet does.
            reported = self.network_ready()
            waited = 0.0
            while waited < self.interval and self.network_ready() == reported:
                await asyncio.sleep(0.1)
                waited += 0.1
            beats += 1
            try:
                await self.heartbeat(full=beats % 30 == 0)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("node %s heartbeat failed: %s", self.node, e)
