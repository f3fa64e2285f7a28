"""The kubelet: registers the node, watches its pods and runs each in its own asyncio task."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from cni.netconf import bin_dirs as cni_bin_dirs
from netkube.client import PODS, SERVICES, ApiClient, ApiError, Informer
from netkube.config import ClusterConfig
from netkube.controllers.events import EventRecorder
from netkube.kubelet import cgroups, podstate, sandbox
from netkube.kubelet.cgroups import PodCgroups
from netkube.kubelet.interfaces import BuiltinImages, Cni, ImageStore, NetkubeCni, Proc, Runtime
from netkube.kubelet.node import NodeReporter
from netkube.kubelet.podworker import PodWorker
from netkube.kubelet.runtime import ProcessRuntime
from netkube.kubelet.sandbox import NodeContext, Timings
from netkube.kubelet.streaming.kubeletpods import KubeletPods
from netkube.kubelet.streaming.server import KUBELET_PORT, KubeletServer, Launcher, nsexec_launcher
from netkube.lab.records import Records

log = logging.getLogger(__name__)
Obj = dict[str, Any]


def pod_cgroups(records: Records, cluster: str, node: str) -> tuple[PodCgroups | None, str]:
    """The node's pod cgroups, or None and why (logged once; pods then run without limits)."""
    fs, why = cgroups.detect()
    if fs is None:
        msg = f"resource limits are not enforced on this node: {why}"
        log.warning("%s", msg)
        return None, msg
    log.info("pod resource limits enforced with %r", fs)
    return PodCgroups(fs, records, f"netkube/{cluster}/{node}"), ""


def heartbeat_for(cluster: ClusterConfig) -> float:
    """Upstream's 10 s node status/lease period assumes the 40 s grace; with a shorter
    node-monitor-grace-period (a test set-up) report four times per grace period."""
    from netkube.controllers.nodelifecycle import settings

    grace, _ = settings(cluster.extra)
    return min(10.0, max(0.2, grace / 4))


class Kubelet:
    def __init__(
        self,
        client: ApiClient,
        cluster: ClusterConfig,
        node_name: str,
        node_ip: str,
        records: Records,
        cni: Cni | None = None,
        images: ImageStore | None = None,
        runtime: Runtime | None = None,
        timings: Timings | None = None,
        port: int = KUBELET_PORT,
        launcher: Launcher = nsexec_launcher,
    ) -> None:
        self.client = client
        self.cluster = cluster
        self.node_name = node_name
        self.timings = timings or Timings(heartbeat=heartbeat_for(cluster))
        if runtime is None and getattr(cluster, "runtime", "process") == "docker":
            from netkube.kubelet.docker_runtime import docker_seams  # needs PyPI docker: imported only here

            runtime, docker_images = docker_seams(cluster, node_name, records)
            images = images or docker_images
            if launcher is nsexec_launcher:
                from netkube.kubelet.docker_runtime import docker_launcher

                launcher = docker_launcher
        self.pods = Informer(client, PODS, field_selector=f"spec.nodeName={node_name}")
        self.services = Informer(client, SERVICES)
        self.ctx = NodeContext(
            client=client,
            cluster=cluster,
            node_name=node_name,
            node_ip=node_ip,
            records=records,
            cni=cni or NetkubeCni(cni_bin_dirs(cluster.state_dir, getattr(cluster, "cni_plugins", "netkube"))),
            images=images or BuiltinImages(cluster.state_dir / "images"),
            runtime=runtime or ProcessRuntime(records),
            timings=self.timings,
            services=self.services.items,
        )
        self.cgroups_unavailable = ""  # why pods run without resource limits ("" when enforced)
        if runtime is None:  # cgroups are the process runtime's; another runtime brings its own
            self.ctx.cgroups, self.cgroups_unavailable = pod_cgroups(records, cluster.name, node_name)
        self.node = NodeReporter(
            client, cluster, node_name, node_ip, lambda: self.ctx.conflist() is not None, self.timings.heartbeat
        )
        self.workers: dict[str, PodWorker] = {}
        self.server = KubeletServer(KubeletPods(self), node_ip, port, launcher)
        self._tasks: set[asyncio.Task[None]] = set()
        self.ready = asyncio.Event()  # set once pods are adopted and the watch handler is live

    async def run(self) -> None:
        try:
            self.ctx.host_resolv = Path("/etc/resolv.conf").read_text()
        except OSError:
            self.ctx.host_resolv = ""
        serving = await self._serve()
        await self.node.register()
        if self.cgroups_unavailable:
            await EventRecorder(self.client, "kubelet", self.node_name).warning(
                {"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.node_name, "uid": self.node_name}},
                "ResourceLimitsNotEnforced", self.cgroups_unavailable)
        informers = [asyncio.create_task(self.pods.run()), asyncio.create_task(self.services.run())]
        try:
            await self.pods.synced.wait()
            adopted = await self._recover()
            # No await between adding the handler and walking the cache: no event is missed.
            self.pods.add_handler(self._on_pod)
            for pod in self.pods.items():
                self._on_pod("ADDED", pod, None, adopted.get(pod["metadata"]["uid"]))
            self.ready.set()
            await self.node.run()
        finally:
            # Pods keep running when the kubelet stops (as with containerd); a restarted kubelet adopts them.
            for t in [*informers, *self._tasks]:
                t.cancel()
            await asyncio.gather(*informers, *self._tasks, return_exceptions=True)
            if serving:
                await self.server.stop()

    async def _serve(self) -> bool:
        """Start the logs/exec/attach server; without it pods still run, so a bind failure is logged."""
        try:
            await self.server.start()
        except OSError as e:
            log.warning("kubelet server on %s:%s not started: %s", self.server.host, self.server.port, e)
            return False
        self.node.kubelet_port = self.server.port
        log.info("kubelet server listening on %s:%d", self.server.host, self.server.port)
        return True

    async def _recover(self) -> dict[str, podstate.PodState]:
        """Adopt live pods from state.json; tear down what is dead or no longer bound here."""
        bound = {p["metadata"]["uid"] for p in self.pods.items()}
        adopted: dict[str, podstate.PodState] = {}
        for uid, st in podstate.load_all(self.cluster, self.node_name).items():
            if uid in bound and self.ctx.runtime.alive(Proc(st.pause_pid, st.pause_start)):
                adopted[uid] = st
                continue
            log.info("tearing down leftover pod %s/%s (%s)", st.namespace, st.name, uid)
            for rec in st.containers.values():
                if rec.pid:
                    proc = Proc(rec.pid, rec.start)
                    self.ctx.runtime.signal(proc, 9)
                    await self.ctx.runtime.wait(proc)
                    self.ctx.runtime.forget(proc)
            await sandbox.teardown(self.ctx, st, self.ctx.pods_dir / uid)
            if self.ctx.cgroups is not None:
                self.ctx.cgroups.release_pod(uid)
        return adopted

    def _on_pod(self, kind: str, pod: Obj, old: Obj | None, adopted: podstate.PodState | None = None) -> None:
        md = pod["metadata"]
        uid = md["uid"]
        worker = self.workers.get(uid)
        if kind == "DELETED":
            if worker is not None:
                worker.vanish()
            return
        if worker is not None:
            worker.update(pod)
            return
        phase = (pod.get("status") or {}).get("phase")
        if adopted is None and md.get("deletionTimestamp"):
            self._spawn(self._finish_delete(pod))  # never started here: nothing to tear down
            return
        if adopted is None and phase in ("Succeeded", "Failed"):
            return  # a finished pod is not run again
        worker = PodWorker(self.ctx, pod, adopted)
        self.workers[uid] = worker
        task = self._spawn(worker.run())
        task.add_done_callback(lambda _t: self.workers.pop(uid, None))

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _finish_delete(self, pod: Obj) -> None:
        md = pod["metadata"]
        try:
            await self.client.delete(PODS, md["name"], md["namespace"], grace_period=0)
        except ApiError as e:
            if e.code != 404:
                log.warning("deleting pod %s/%s failed: %s", md["namespace"], md["name"], e)
