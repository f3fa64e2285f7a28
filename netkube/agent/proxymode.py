"""kube-proxy under a mode switch: follows ConfigMap kube-system/kube-proxy and swaps backends live."""

from __future__ import annotations

import asyncio
import logging

from netkube.addons import kubeproxy
from netkube.client import CONFIGMAPS, NODES, ApiClient, ApiError, Informer, Obj
from netkube.config import ClusterConfig
from proxy_modes import runner as proxy_runner
from proxy_modes.syncrunner import SyncRunner

log = logging.getLogger(__name__)


class ProxyModeSwitcher:
    """Runs kube-proxy in the ConfigMap's mode; on a change the old backend removes its own
    objects (its data-driven cleanup) before the new one programs the kernel. Upstream kube-proxy
    needs a restart for this; here the agent does it in place, which is what a lab user wants."""

    def __init__(self, client: ApiClient, cluster: ClusterConfig, node: str, node_ip: str) -> None:
        self.client, self.cluster, self.node, self.node_ip = client, cluster, node, node_ip
        self.wanted = cluster.proxy_mode  # until the ConfigMap says otherwise (older clusters have none)
        self.current: str | None = None
        self._changed = asyncio.Event()

    def on_configmap(self, etype: str, obj: Obj, old: Obj | None) -> None:
        if obj.get("metadata", {}).get("name") != kubeproxy.NAME or etype == "DELETED":
            return
        try:
            mode = kubeproxy.mode_of(obj)
        except ValueError as e:
            log.error("%s; keeping proxy mode %s", e, self.current or self.wanted)
            return
        if mode not in proxy_runner.MODES:
            log.error("ConfigMap %s/%s asks for proxy mode %r, which this node cannot run (choose one of %s); "
                      "keeping %s", kubeproxy.NAMESPACE, kubeproxy.NAME, mode, ", ".join(proxy_runner.MODES),
                      self.current or self.wanted)
            return
        if mode != self.wanted:
            self.wanted = mode
            self._changed.set()

    async def run(self) -> None:
        cms = Informer(self.client, CONFIGMAPS, namespace=kubeproxy.NAMESPACE)
        cms.add_handler(self.on_configmap)
        watch = asyncio.create_task(cms.run())
        try:
            try:  # start in the ConfigMap's mode, not in a default we would leave a moment later
                await asyncio.wait_for(cms.synced.wait(), timeout=10)
            except TimeoutError:
                log.warning("no ConfigMap list yet; starting kube-proxy in %s mode", self.wanted)
            while True:
                await self._run_mode(self.wanted)
        finally:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)

    async def _run_mode(self, mode: str) -> None:
        """Run `mode` until the wanted mode changes, then clean it up and return."""
        self._changed.clear()
        runners: list[SyncRunner] = []
        proxy = asyncio.create_task(proxy_runner.run_proxy(
            self.client, self.cluster, self.node, self.node_ip, mode, runner_out=runners))
        self.current = mode
        announce = asyncio.create_task(self._announce(mode, runners))
        changed = asyncio.create_task(self._changed.wait())
        try:
            done, _ = await asyncio.wait({proxy, changed}, return_when=asyncio.FIRST_COMPLETED)
            if proxy in done:
                proxy.result()  # raises: the agent's supervisor logs and restarts us
                return
            log.info("proxy mode %s -> %s: removing %s's rules", mode, self.wanted, mode)
        finally:
            for t in (proxy, announce, changed):
                t.cancel()
            await asyncio.gather(proxy, announce, changed, return_exceptions=True)
        if runners:
            await asyncio.to_thread(runners[0].backend.cleanup)

    async def _announce(self, mode: str, runners: list[SyncRunner]) -> None:
        """Annotate our Node once the mode's first sync is in the kernel (`netkube proxy-mode` waits on it)."""
        while not runners or runners[0].syncs == 0:
            await asyncio.sleep(0.05)
        patch = {"metadata": {"annotations": {kubeproxy.MODE_ANNOTATION: mode}}}
        for _ in range(50):
            try:
                await self.client.patch(NODES, self.node, patch)
                log.info("kube-proxy now in %s mode", mode)
                return
            except (ApiError, OSError) as e:
                log.warning("annotating node %s with proxy mode: %s", self.node, e)
                await asyncio.sleep(0.2)
