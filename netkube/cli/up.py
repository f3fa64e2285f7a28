"""`netkube up`: build the lab, start the control plane and node agents, wait until it serves."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

from netkube.client import NODES, PODS, ApiClient, ApiError, cluster_client
from netkube.config import ClusterConfig, ConfigError
from netkube.lab import topology
from netkube.lab.processes import python_module_argv, spawn_detached
from netkube.lab.records import Records


class Progress:
    """Prints each step with its duration, as a user watching `netkube up` expects."""

    def __init__(self, quiet: bool = False) -> None:
        self.t0 = time.monotonic()
        self.quiet = quiet

    def step(self, text: str) -> _Step:
        return _Step(self, text)


class _Step:
    def __init__(self, progress: Progress, text: str) -> None:
        self.progress = progress
        self.text = text

    def __enter__(self) -> _Step:
        self.start = time.monotonic()
        if not self.progress.quiet:
            print(f" • {self.text} ...", end="", flush=True)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:  # type: ignore[no-untyped-def]
        if self.progress.quiet:
            return
        took = time.monotonic() - self.start
        print(f" {'failed' if exc_type else 'done'} ({took:.2f}s)", flush=True)


def write_kubeconfig(cluster: ClusterConfig) -> Path:
    from netkube import kubeconfig

    if not cluster.insecure_http:  # kubeadm's admin.conf: CA data + admin client cert (system:masters)
        text = kubeconfig.render(cluster.name, cluster.api_url_host, cluster.pki_dir, "admin")
        return kubeconfig.write(cluster.kubeconfig_path, text)
    name = cluster.name
    text = f"""apiVersion: v1
kind: Config
clusters:
- name: {name}
  cluster:
    server: {cluster.api_url_host}
users:
- name: {name}-admin
  user: {{}}
contexts:
- name: {name}
  context:
    cluster: {name}
    user: {name}-admin
    namespace: default
current-context: {name}
"""
    cluster.kubeconfig_path.write_text(text)
    return cluster.kubeconfig_path


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


async def _wait_api(client: ApiClient, timeout: float, server_pid: int | None = None,
                    log_path: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if server_pid is not None and not _pid_alive(server_pid):
            tail = _log_tail(log_path) if log_path else ""
            raise ConfigError(f"netkube server exited during start-up; the end of its log:\n{tail}")
        try:
            await client.request("GET", "/version")
            return
        except Exception as e:  # noqa: BLE001 - anything means "not yet"
            last = e
            await asyncio.sleep(0.05)
    raise TimeoutError(f"the apiserver did not answer within {timeout:.0f}s ({last})")


def _pid_alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)  # reap it if it was our child and died
    except ChildProcessError:
        waited = 0
    if waited == pid:
        return False
    return Path(f"/proc/{pid}").exists()


def _ready(node: dict) -> bool:
    for c in node.get("status", {}).get("conditions", []):
        if c.get("type") == "Ready":
            return bool(c.get("status") == "True")
    return False


async def _wait_nodes_ready(client: ApiClient, names: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = (await client.list(NODES)).get("items", [])
        ready = {n["metadata"]["name"] for n in items if _ready(n)}
        if set(names) <= ready:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"nodes not Ready after {timeout:.0f}s: {sorted(set(names) - ready)}")


async def _create_addons(client: ApiClient, cluster: ClusterConfig) -> None:
    from netkube.addons import coredns, kubeproxy
    from netkube.client import CONFIGMAPS, DEPLOYMENTS, SERVICES

    kinds = {"Service": SERVICES, "Deployment": DEPLOYMENTS, "ConfigMap": CONFIGMAPS}
    for obj in [*kubeproxy.manifests(cluster), *coredns.manifests(cluster)]:
        res = kinds[obj["kind"]]
        for _ in range(50):
            try:
                await client.create(res, obj)
                break
            except ApiError as e:
                if e.code == 409:
                    break
                if e.code == 404:  # namespace kube-system not bootstrapped yet
                    await asyncio.sleep(0.05)
                    continue
                raise


def dns_answers(cluster: ClusterConfig, name: str = "kubernetes.default.svc.cluster.local") -> bool:
    proc = subprocess.run(
        ["ip", "netns", "exec", cluster.node_netns("node1"), "busybox", "nslookup", name, cluster.dns_service_ip],
        capture_output=True,
        text=True,
        timeout=10,
    )
    return proc.returncode == 0 and cluster.kubernetes_service_ip in proc.stdout


async def _wait_dns(client: ApiClient, cluster: ClusterConfig, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pods = (await client.list(PODS, "kube-system", label_selector="k8s-app=kube-dns")).get("items", [])
        if any(p.get("status", {}).get("podIP") for p in pods):
            if await asyncio.to_thread(dns_answers, cluster):
                return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"cluster DNS did not answer at {cluster.dns_service_ip} within {timeout:.0f}s")


def up(cluster: ClusterConfig, timeout: float = 120.0, quiet: bool = False) -> int:
    from netkube.cli.doctor import problems

    cluster.validate()
    if cluster.cni_plugins == "reference" and not Path("/usr/lib/cni/bridge").exists():
        raise ConfigError("--cni-plugins reference needs Debian's reference CNI plugins in /usr/lib/cni; "
                          "install them with `apt-get install containernetworking-plugins` (scripts/setup does)")
    if cluster.state_dir.exists() and (cluster.state_dir / "cluster.json").exists():
        raise ConfigError(
            f"a cluster named {cluster.name!r} already exists ({cluster.state_dir}); "
            f"use `netkube down --name {cluster.name}` first or pick another --name"
        )
    missing = problems()
    if missing:
        lines = "\n".join(f"  - {m}" for m in missing)
        raise ConfigError(f"netkube cannot start a cluster on this machine:\n{lines}")
    progress = Progress(quiet)
    t0 = time.monotonic()
    if not quiet:
        print(f"Creating cluster {cluster.name!r} with {cluster.nodes} node(s), proxy mode {cluster.proxy_mode}")
    if cluster.proxy_mode == "ipvs":
        from proxy_modes.kernel.ipvs import probe as ipvs_probe

        reason = ipvs_probe()  # a read-only IPVS dump; the node namespaces share this kernel
        if reason:
            print(f"WARNING: can't use the IPVS proxier: {reason}. kube-proxy falls back to iptables mode, "
                  "as upstream does; for real IPVS use a kernel with ip_vs (scripts/vm-test boots one)",
                  file=sys.stderr)
    cluster.save()
    records = Records(cluster.records_path)
    try:
        with progress.step(f"underlay {cluster.node_cidr} and {cluster.nodes} node namespaces"):
            topology.realize(cluster, records)
        with progress.step("CNI plugins and built-in images"):
            from cni.install import install_plugins
            from netkube.images.registry import prepare_assets

            install_plugins(cluster.state_dir / "cni" / "bin", sys.executable)
            prepare_assets(cluster.state_dir / "images")
        log_dir = cluster.log_dir
        if cluster.runtime == "docker":
            with progress.step("Docker engine and image netkube/busybox (--runtime docker)"):
                _docker_engine(cluster, records)
        if not cluster.insecure_http:
            with progress.step("cluster CA and certificates (HTTPS, client-cert and token authentication)"):
                from netkube.pki import create_cluster_pki

                create_cluster_pki(cluster.pki_dir, cluster.api_host, cluster.kubernetes_service_ip,
                                   cluster.cluster_domain, cluster.node_names)
        if cluster.store == "etcd" and not cluster.etcd_endpoints:
            with progress.step("etcd (Debian's etcd on loopback, data in the state dir)"):
                from netkube.lab.etcd import start_cluster_etcd

                cluster.etcd_endpoints = start_cluster_etcd(cluster.state_dir, records, log_dir / "etcd.log")
                cluster.save()  # the server and `netkube status` read the endpoint from cluster.json
        with progress.step(f"control plane (apiserver on 127.0.0.1:{cluster.api_port} and {cluster.api_host}:{cluster.api_port})"):
            server_pid = spawn_detached(
                python_module_argv(
                    "netkube.server",
                    "--cluster-config", str(cluster.state_dir / "cluster.json"),
                    "--listen-netns", cluster.node_netns("node1"),
                ),
                log_dir / "server.log", records, "netkube server",
            )
            write_kubeconfig(cluster)
            asyncio.run(_run_async_step(_wait_api_only, cluster, 20.0, server_pid, log_dir / "server.log"))
        with progress.step(f"node agents on {', '.join(cluster.node_names)}"):
            for node in cluster.node_names:
                spawn_detached(
                    python_module_argv(
                        "netkube.agent", "--cluster-config", str(cluster.state_dir / "cluster.json"), "--node", node
                    ),
                    log_dir / f"agent-{node}.log", records, f"netkube agent {node}",
                    netns=cluster.node_netns(node),
                )
            asyncio.run(_run_async_step(_nodes_ready, cluster, timeout))
        if cluster.network == "none":
            if not quiet:
                print(f"No pod network: nodes stay NotReady and pods Pending until "
                      f"`netkube network install flannel-vxlan --name {cluster.name}` (or flannel-host-gw).")
        else:
            with progress.step(f"cluster DNS (coredns behind kube-dns {cluster.dns_service_ip})"):
                asyncio.run(_run_async_step(_dns, cluster, timeout))
    except BaseException:
        if not quiet:
            print(f"netkube up failed; logs are in {cluster.log_dir}. `netkube down --name {cluster.name}` removes what was made.",
                  file=sys.stderr)
        raise
    if not quiet:
        print(f"Cluster {cluster.name!r} is up in {time.monotonic() - t0:.1f}s.")
        print(f"  export KUBECONFIG={cluster.kubeconfig_path}")
    return 0


def _docker_engine(cluster: ClusterConfig, records: Records) -> None:
    """Start the cluster's own dockerd (recorded: `netkube down` stops it) unless --docker-host names
    one, and build the local image pods run from."""
    try:
        import docker  # noqa: F401 - PyPI docker, the engine API client
    except ImportError:
        raise ConfigError("--runtime docker needs the Python package docker; run `sudo scripts/setup`") from None
    from netkube.kubelet import dockerd

    try:
        if not cluster.docker_host:
            data_root, exec_root = dockerd.engine_dirs(cluster.state_dir, cluster.name)
            cluster.docker_host, _ = dockerd.start_engine(data_root, exec_root, cluster.log_dir / "dockerd.log", records)
            cluster.save()  # the node agents read the engine's address from cluster.json
        dockerd.ensure_image(cluster.docker_host)
    except dockerd.EngineError as e:
        raise ConfigError(str(e)) from e
    except Exception as e:  # noqa: BLE001 - the SDK's connection and API errors
        raise ConfigError(f"the Docker engine at {cluster.docker_host} failed: {e}") from e


async def _run_async_step(fn, cluster: ClusterConfig, timeout: float, *extra) -> None:  # type: ignore[no-untyped-def]
    client = cluster_client(cluster, "admin")
    try:
        await fn(client, cluster, timeout, *extra)
    finally:
        await client.close()


async def _wait_api_only(client: ApiClient, cluster: ClusterConfig, timeout: float, pid: int, log: Path) -> None:
    await _wait_api(client, timeout, pid, log)
    # Add-ons go in as soon as the API serves, so their pods schedule the moment nodes are Ready.
    await _create_addons(client, cluster)
    if cluster.network != "none":  # the pod network add-on, before the agents so flannel starts at once
        from netkube.cli.network import install

        await install(client, cluster.network, cluster.pod_cidr)


async def _nodes_ready(client: ApiClient, cluster: ClusterConfig, timeout: float) -> None:
    if cluster.network == "none":  # --no-network: nodes register but stay NotReady, as without a CNI add-on
        await _wait_nodes_registered(client, cluster.node_names, timeout)
        return
    await _wait_nodes_ready(client, cluster.node_names, timeout)


async def _wait_nodes_registered(client: ApiClient, names: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        have = {n["metadata"]["name"] for n in (await client.list(NODES)).get("items", [])}
        if set(names) <= have:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"nodes did not register within {timeout:.0f}s: {sorted(set(names) - have)}")


async def _dns(client: ApiClient, cluster: ClusterConfig, timeout: float) -> None:
    await _wait_dns(client, cluster, timeout)
