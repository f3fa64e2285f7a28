"""The docker runtime: each pod is a pause container plus one container per spec container (dockershim).

The pause container starts with network "none"; its network namespace is bound to the pod's named
netns (`ip netns attach`), which CNI ADD then wires up in the node. App containers join it with
network_mode/ipc_mode container:<pause> and get the kubelet's resolv.conf, hosts and service-account
files as bind mounts. A container's Proc is its init's host pid, so liveness, signals (the kernel's
PID 1 rule included), exec (nsexec joins its namespaces) and probes work as for the process runtime;
exit codes come from the engine and stdout/stderr are copied into the kubelet's log file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netkube.kubelet import dockerd
from netkube.kubelet.docker_images import DockerImages
from netkube.kubelet.interfaces import Proc
from netkube.kubelet.runtime import DEFAULT_PATH, NSEXEC, ProcessRuntime, RuntimeFailure
from netkube.kubelet.streaming.server import nsexec_launcher
from netkube.kubelet.streaming.targets import ContainerRef
from netkube.lab.records import Records

log = logging.getLogger(__name__)
PAUSE_ARGV = ["sleep", "2147483647"]  # busybox sleep as the sandbox's PID 1 (no SIGTERM handler, like pause)
FILE_TARGETS = ("/etc/resolv.conf", "/etc/hosts")  # the kubelet rewrites these: mounted read-write

# nsexec for exec and probes: as the process runtime's, but with `warnings` imported before it
# joins the container's mount namespace, where os.execvpe's lazy import finds no Python library.
NSEXEC_ARGS = ["-I", "-S", "-c", f"import sys,warnings;sys.path.append({os.path.dirname(NSEXEC)!r});"
               "import nsexec;sys.exit(nsexec.main())"]


def docker_launcher(c: ContainerRef, command: list[str]) -> tuple[list[str], dict[str, str], str | None]:
    """kubectl exec into a docker container: nsexec_launcher's argv, started the way above."""
    argv, env, cwd = nsexec_launcher(c, command)
    assert argv[3] == NSEXEC, argv
    return [argv[0], *NSEXEC_ARGS, *argv[4:]], env, cwd


@dataclass
class _Container:
    cid: str
    binds: list[str] = field(default_factory=list)
    logger: threading.Thread | None = None
    code: int | None = None
    exited: bool = False


def container_name(what: str) -> str:
    """dockershim's k8s_<container>_<pod>_<namespace>_<suffix> from "pause ns/pod" or "container ns/pod/c"."""
    kind, _, path = what.partition(" ")
    parts = path.split("/")
    ns, pod = (parts + ["", ""])[:2]
    cname = "POD" if kind == "pause" else (parts[2] if len(parts) > 2 else "c")
    raw = f"k8s_{cname}_{pod}_{ns}_{secrets.token_hex(4)}"
    return re.sub(r"[^a-zA-Z0-9_.-]", "_", raw)


def _follow_logs(api: Any, cid: str, log_path: Path) -> None:
    """Copy the container's stdout and stderr (as they come) into the kubelet's log file."""
    try:
        with open(log_path, "ab", buffering=0) as out:
            for chunk in api.logs(cid, stream=True, follow=True, stdout=True, stderr=True):
                out.write(chunk)
    except Exception as e:  # noqa: BLE001 - engine gone or container removed: the log just ends
        log.debug("log copy of %s ended: %s", cid[:12], e)


class DockerRuntime(ProcessRuntime):
    """Runtime over a Docker engine; netns bookkeeping, signals, probes and exec come from ProcessRuntime."""

    runs_images = True  # start_container takes the resolved image (podworker passes it)
    pause_before_cni = True  # the pause container owns the netns CNI wires (sandbox.create order)

    def __init__(self, records: Records, url: str, cluster: str, node: str) -> None:
        super().__init__(records)
        self.url = url
        self.labels = {"netkube.cluster": cluster, "netkube.node": node}
        self._docker = dockerd.client(url)
        self._containers: dict[Proc, _Container] = {}
        self._gone = 0  # containers that exited before their pid was read

    @property
    def api(self) -> Any:
        return self._docker.api

    # --- sandbox -----------------------------------------------------------------------------
    async def create_netns(self, name: str) -> str:
        # Recorded now; made by start_pause, which binds the pause container's netns to this name.
        self.records.add_netns(name)
        return f"/run/netns/{name}"

    def _create(self, **kw: Any) -> tuple[str, int]:
        """Create and start a container; (id, host pid of its init)."""
        # The kubelet does graceful stops itself; the engine's own stop (at its shutdown, from
        # `netkube down`) need not wait docker's default 10 s per container.
        cid = self.api.create_container(stop_timeout=1, **kw)["Id"]
        try:
            self.api.start(cid)
            pid = int(self.api.inspect_container(cid)["State"]["Pid"])
        except Exception:
            self.api.remove_container(cid, force=True)
            raise
        return cid, pid  # pid 0: it already exited (the engine has its exit code and output)

    async def start_pause(
        self, netns_path: str | None, hostname: str | None, binds: list[tuple[str, str]], log_path: Path, what: str
    ) -> Proc:
        if not netns_path:
            raise RuntimeFailure("hostNetwork pods are not supported by the docker runtime: the engine runs in "
                                 "the host, not in the node's network namespace (use --runtime process)")
        vols = [f"{src}:{dst}:{'rw' if dst in FILE_TARGETS else 'ro'}" for src, dst in binds]
        host_config = self.api.create_host_config(network_mode="none", ipc_mode="shareable", binds=vols)
        try:
            cid, pid = await asyncio.to_thread(
                self._create, image=dockerd.BUSYBOX_IMAGE, entrypoint=PAUSE_ARGV, hostname=hostname,
                labels={**self.labels, "netkube.what": what}, host_config=host_config, name=container_name(what),
            )
        except Exception as e:
            raise RuntimeFailure(f"pod sandbox container failed to start: {e}") from e
        if pid <= 0:
            await asyncio.to_thread(self.api.remove_container, cid, force=True)
            raise RuntimeFailure("pod sandbox container exited at once")
        proc = await self._started(pid, what)
        self._containers[proc] = _Container(cid, vols)
        name = Path(netns_path).name
        try:
            await self._ip("netns", "attach", name, str(pid))
        except RuntimeFailure:
            self.signal(proc, signal.SIGKILL)
            raise
        return proc

    # --- containers --------------------------------------------------------------------------
    async def _lookup(self, proc: Proc) -> _Container | None:
        """The container whose init is proc (adopted after a kubelet restart: found by pid)."""
        found = self._containers.get(proc)
        if found is not None:
            return found

        def scan() -> _Container | None:
            filters = {"label": [f"{k}={v}" for k, v in self.labels.items()], "status": "running"}
            for c in self.api.containers(filters=filters):
                info = self.api.inspect_container(c["Id"])
                if int(info["State"]["Pid"]) == proc.pid:
                    return _Container(c["Id"], list(info["HostConfig"].get("Binds") or []))
            return None

        found = await asyncio.to_thread(scan)
        if found is not None:
            self._containers[proc] = found
        return found

    async def start_container(
        self, target: Proc, argv: list[str], env: dict[str, str], cwd: str | None, log_path: Path, what: str,
        stdin: bool = False, tty: bool = False, image: Any = None,
    ) -> Proc:
        pause = await self._lookup(target)
        if pause is None:
            raise RuntimeFailure(f"the pod sandbox container (pid {target.pid}) is gone")
        docker_image = getattr(image, "docker_image", dockerd.BUSYBOX_IMAGE)
        vols = [*pause.binds, *getattr(image, "binds", [])]
        host_config = self.api.create_host_config(
            network_mode=f"container:{pause.cid}", ipc_mode=f"container:{pause.cid}", binds=vols,
        )
        log_path.parent.mkdir(parents=True, exist_ok=True)
        cid, pid = await asyncio.to_thread(
            self._create, image=docker_image, entrypoint=argv, command=[], environment=env,
            working_dir=cwd or None, stdin_open=stdin, tty=tty, labels={**self.labels, "netkube.what": what},
            host_config=host_config, name=container_name(what),
        )
        if pid > 0:
            proc = await self._started(pid, what)
        else:  # exited before we saw its pid: a Proc no live process can match
            self._gone += 1
            proc = Proc(0, -self._gone)
        entry = _Container(cid)
        entry.logger = threading.Thread(target=_follow_logs, args=(self.api, cid, log_path),
                                        name=f"logs-{cid[:12]}", daemon=True)
        entry.logger.start()
        self._containers[proc] = entry
        return proc

    async def exec_in(self, target: Proc, argv: list[str], env: dict[str, str], timeout: float) -> tuple[int | None, str]:
        """Probes and hooks: the process runtime's nsexec way in, started as docker_launcher does."""
        full = [self.python, *NSEXEC_ARGS, "--target", str(target.pid), "--", *argv]
        proc = await asyncio.create_subprocess_exec(
            *full, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, env={"PATH": DEFAULT_PATH, **env}, start_new_session=True,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except BaseException as e:  # timeout or cancelled: end the command and what it started
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await asyncio.shield(proc.wait())
            if isinstance(e, TimeoutError):
                return None, ""
            raise
        return proc.returncode, out.decode("utf-8", "replace")

    def console(self, proc: Proc) -> Any:
        return None  # attach to a docker container's stdin is not offered

    async def wait(self, proc: Proc) -> int | None:
        code = await super().wait(proc) if proc.pid > 0 else None  # the pidfd: the init has exited
        entry = self._containers.get(proc)
        if entry is None:
            return code
        if not entry.exited:
            try:
                res = await asyncio.to_thread(self.api.wait, entry.cid, 30)
                entry.code = int(res.get("StatusCode", 0))
            except Exception as e:  # noqa: BLE001 - engine gone: exit code unknown
                log.warning("exit code of container %s unknown: %s", entry.cid[:12], e)
            entry.exited = True
            if entry.logger is not None:  # the copy ends with the container's output
                await asyncio.to_thread(entry.logger.join, 5)
        return entry.code

    def forget(self, proc: Proc) -> None:
        super().forget(proc)
        entry = self._containers.pop(proc, None)
        if entry is not None and not self.alive(proc):
            task = asyncio.get_running_loop().create_task(self._remove(entry.cid))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _remove(self, cid: str) -> None:
        try:
            await asyncio.to_thread(self.api.remove_container, cid, force=True)
        except Exception as e:  # noqa: BLE001 - already gone, or the engine stopped
            log.debug("removing container %s: %s", cid[:12], e)


def docker_seams(cluster: Any, node: str, records: Records) -> tuple[DockerRuntime, DockerImages]:
    """The runtime and image store for a cluster started with `--runtime docker`."""
    url = getattr(cluster, "docker_host", "") or dockerd.socket_url(dockerd.engine_dirs(cluster.state_dir, cluster.name)[1])
    runtime = DockerRuntime(records, url, cluster.name, node)
    try:
        image_id = str(runtime.api.inspect_image(dockerd.BUSYBOX_IMAGE)["Id"])
    except Exception:  # noqa: BLE001 - the engine answers later; pulls then fail with its error
        image_id = ""
    return runtime, DockerImages(image_id)
