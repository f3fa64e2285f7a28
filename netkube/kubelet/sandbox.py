"""The pod sandbox: named netns + CNI ADD + a pause process holding hostname, resolv.conf and hosts."""

from __future__ import annotations

import json
import logging
import shutil
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netkube.client import ApiClient
from netkube.config import ClusterConfig
from netkube.kubelet import podstate
from netkube.kubelet.interfaces import Cni, CniFailure, ImageStore, Proc, Runtime
from netkube.kubelet.podfiles import pod_hostname, render_hosts, render_resolv_conf, write_pod_files
from netkube.kubelet.satoken import service_account_binds
from netkube.lab.records import Records

log = logging.getLogger(__name__)


class SandboxError(Exception):
    """The sandbox cannot be made yet (e.g. no CNI config); retried with back-off."""


@dataclass
class Timings:
    """Every delay the kubelet uses; tests scale them down."""

    restart_base: float = 10.0  # CrashLoopBackOff: 10 s doubling ...
    restart_max: float = 300.0  # ... to 5 min, as upstream
    restart_reset: float = 600.0  # a container that ran this long starts its back-off afresh
    image_base: float = 10.0
    image_max: float = 300.0
    sandbox_retry: float = 1.0
    sandbox_retry_max: float = 30.0
    max_grace: float = 30.0
    heartbeat: float = 10.0
    probe_scale: float = 1.0  # multiplies probe initialDelay/period (tests only; timeouts stay real)


@dataclass
class NodeContext:
    """What every pod worker shares: one object instead of a dozen constructor parameters."""

    client: ApiClient
    cluster: ClusterConfig
    node_name: str
    node_ip: str
    records: Records
    cni: Cni
    images: ImageStore
    runtime: Runtime
    timings: Timings = field(default_factory=Timings)
    services: Callable[[], list[dict[str, Any]]] = lambda: []
    host_resolv: str = ""
    cgroups: Any = None  # cgroups.PodCgroups when this node enforces resource limits, else None

    @property
    def pods_dir(self) -> Path:
        return podstate.pods_dir(self.cluster, self.node_name)

    @property
    def cni_bin_dir(self) -> str:
        return str(self.cluster.state_dir / "cni" / "bin")

    def conflist(self) -> Path | None:
        found = sorted((self.cluster.node_dir(self.node_name) / "cni" / "net.d").glob("*.conflist"))
        return found[0] if found else None


def cni_args(st: podstate.PodState) -> dict[str, str]:
    # IgnoreUnknown first, as containerd passes it: plugins that know no K8S_* args must not fail.
    return {
        "IgnoreUnknown": "1",
        "K8S_POD_NAMESPACE": st.namespace,
        "K8S_POD_NAME": st.name,
        "K8S_POD_INFRA_CONTAINER_ID": st.uid,
        "K8S_POD_UID": st.uid,
    }


def runtime_config(pod: dict[str, Any]) -> dict[str, Any]:
    """CNI capability args as containerd derives them: portMappings from every container port with a
    hostPort (containerPort, protocol lower-case, hostIP when set)."""
    maps = []
    for c in pod["spec"].get("containers", []):
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                m = {"hostPort": int(p["hostPort"]), "containerPort": int(p["containerPort"]),
                     "protocol": str(p.get("protocol") or "TCP").lower()}
                if p.get("hostIP"):
                    m["hostIP"] = p["hostIP"]
                maps.append(m)
    return {"portMappings": maps} if maps else {}


def _saved_runtime_config(pod_dir: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads((pod_dir / "cni-runtime-config.json").read_text())
        return data
    except (OSError, ValueError):
        return None


async def create(ctx: NodeContext, pod: dict[str, Any], st: podstate.PodState, pod_dir: Path) -> Proc:
    """Make the sandbox, recording each piece in st (saved to state.json) before it is made."""
    pod_dir.mkdir(parents=True, exist_ok=True)
    host_network = bool(pod["spec"].get("hostNetwork"))
    netns_path: str | None = None
    if host_network:
        st.pod_ip = ctx.node_ip
    else:
        conflist = ctx.conflist()
        if conflist is None:
            raise SandboxError(
                "network plugin not ready: cni config uninitialized "
                f"(no *.conflist in {ctx.cluster.node_dir(ctx.node_name) / 'cni' / 'net.d'})"
            )
        st.netns = ctx.cluster.pod_netns(st.uid)
        podstate.save(pod_dir / "state.json", st)
        netns_path = await ctx.runtime.create_netns(st.netns)
        rc = runtime_config(pod)
        if rc:  # kept for DEL, which must see the same capability args as ADD
            (pod_dir / "cni-runtime-config.json").write_text(json.dumps(rc))
        if getattr(ctx.runtime, "pause_before_cni", False):
            # dockershim's order: the pause container makes the netns, then CNI wires it up. The
            # pod files are bind-mounted before the IP is known and rewritten in place after.
            pause = await _start_pause(ctx, pod, st, pod_dir, netns_path)
            st.pod_ip = await _cni_add(ctx, conflist, st, netns_path, rc)
            write_pod_files(pod_dir, render_resolv_conf(pod, ctx.cluster, ctx.host_resolv),
                            render_hosts(pod, ctx.cluster, [st.pod_ip]))
            podstate.save(pod_dir / "state.json", st)
            return pause
        st.pod_ip = await _cni_add(ctx, conflist, st, netns_path, rc)
    return await _start_pause(ctx, pod, st, pod_dir, netns_path)


async def _cni_add(ctx: NodeContext, conflist: Path, st: podstate.PodState, netns_path: str,
                   rc: dict[str, Any]) -> str:
    # runtime_config only when there is one: Cni implementations without the parameter keep working
    result = await (ctx.cni.add(conflist, st.uid, netns_path, cni_args(st), rc) if rc
                    else ctx.cni.add(conflist, st.uid, netns_path, cni_args(st)))
    try:
        return str(result["ips"][0]["address"].split("/")[0])
    except (KeyError, IndexError, AttributeError) as e:
        raise CniFailure(f"CNI result has no IP address: {result!r}") from e


async def _start_pause(ctx: NodeContext, pod: dict[str, Any], st: podstate.PodState, pod_dir: Path,
                       netns_path: str | None) -> Proc:
    resolv = render_resolv_conf(pod, ctx.cluster, ctx.host_resolv)
    hosts = render_hosts(pod, ctx.cluster, [st.pod_ip] if st.pod_ip else [])
    resolv_path, hosts_path = write_pod_files(pod_dir, resolv, hosts)
    md = pod["metadata"]
    host_network = bool(pod["spec"].get("hostNetwork"))
    sa_binds = await service_account_binds(ctx.client, ctx.cluster, pod, pod_dir)
    pause = await ctx.runtime.start_pause(
        netns_path,
        None if host_network else pod_hostname(pod),
        [(str(resolv_path), "/etc/resolv.conf"), (str(hosts_path), "/etc/hosts"), *sa_binds],
        pod_dir / "pause.log",
        f"pause {md['namespace']}/{md['name']}",
    )
    st.pause_pid, st.pause_start = pause.pid, pause.start
    podstate.save(pod_dir / "state.json", st)
    return pause


async def teardown(ctx: NodeContext, st: podstate.PodState, pod_dir: Path, remove_dir: bool = True) -> None:
    """Undo create() from whatever st says was made; each step tolerates a missing object."""
    if st.pause_pid:
        pause = Proc(st.pause_pid, st.pause_start)
        ctx.runtime.signal(pause, signal.SIGKILL)
        await ctx.runtime.wait(pause)
        ctx.runtime.forget(pause)
        st.pause_pid = st.pause_start = 0
    if st.netns:
        conflist = ctx.conflist()
        if conflist is not None:
            try:
                saved = _saved_runtime_config(pod_dir)
                netns_path = f"/run/netns/{st.netns}"
                await (ctx.cni.delete(conflist, st.uid, netns_path, cni_args(st), saved) if saved
                       else ctx.cni.delete(conflist, st.uid, netns_path, cni_args(st)))
            except CniFailure as e:
                log.warning("CNI DEL for pod %s/%s failed (continuing): %s", st.namespace, st.name, e)
        await ctx.runtime.delete_netns(st.netns)
        st.netns = ""
    st.pod_ip = ""
    if remove_dir:
        shutil.rmtree(pod_dir, ignore_errors=True)
    elif pod_dir.is_dir():
        podstate.save(pod_dir / "state.json", st)
