"""`netkube server` on a machine: control plane, DNS add-on and this machine's node agent as node1."""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import time

from netkube.client import cluster_client
from netkube.config import ClusterConfig, ConfigError
from netkube.lab.processes import python_module_argv, spawn_detached
from netkube.lab.records import Records
from netkube.machine import host, tokens
from netkube.machine.node import install_node_files, log_tail, start_agent, wait_node_ready

NODE = "node1"  # the control-plane machine is node1 (labelled control-plane, NoSchedule), as in the emulator
LAB_NODES = 3  # the lab size validation and the control-plane taint assume; more machines may join


def cluster_from_args(args: argparse.Namespace, iface_addr: str, node_net: str) -> ClusterConfig:
    return ClusterConfig(name=args.name, nodes=LAB_NODES, pod_cidr=args.pod_cidr, service_cidr=args.service_cidr,
                         node_cidr=node_net, proxy_mode=args.proxy_mode, network=args.network,
                         api_port=args.api_port, state_root=args.state_root, api_address=iface_addr)


def dns_answers(cluster: ClusterConfig) -> bool:
    # from this machine's own netns, through kube-proxy's rules for the kube-dns ClusterIP
    p = subprocess.run(["busybox", "nslookup", f"kubernetes.default.svc.{cluster.cluster_domain}",
                        cluster.dns_service_ip], capture_output=True, text=True, timeout=10)
    return p.returncode == 0 and cluster.kubernetes_service_ip in p.stdout


async def _bring_up(cluster: ClusterConfig, machine: host.Machine, records: Records, server_pid: int,
                    timeout: float) -> None:
    from netkube.cli.network import install
    from netkube.cli.up import _create_addons, _wait_api

    client = cluster_client(cluster, "admin")
    try:
        await _wait_api(client, 30.0, server_pid, cluster.log_dir / "server.log")
        await _create_addons(client, cluster)
        await install(client, cluster.network, cluster.pod_cidr)
        start_agent(cluster, machine, records)
        await wait_node_ready(client, machine.node, timeout)
        deadline = time.monotonic() + timeout
        while not await asyncio.to_thread(dns_answers, cluster):
            if time.monotonic() > deadline:
                raise TimeoutError(f"cluster DNS did not answer at {cluster.dns_service_ip} within {timeout:.0f}s")
            await asyncio.sleep(0.3)
    finally:
        await client.close()


def server(args: argparse.Namespace) -> int:
    from netkube import kubeconfig
    from netkube.machine.reset import reset_state_dir
    from netkube.pki import create_cluster_pki

    try:
        ttl = tokens.parse_ttl(args.token_ttl)
    except tokens.TokenError as e:
        raise ConfigError(str(e)) from None
    iface, addr = host.pick_interface(args.iface, args.advertise_address)
    cluster = cluster_from_args(args, str(addr.ip), str(addr.network))
    cluster.validate()
    host.preflight(cluster.state_dir)
    host.confirm("server", args.yes)
    url = f"https://{addr.ip}:{cluster.api_port}"
    machine = host.Machine("server", NODE, iface, str(addr.ip), url)
    t0 = time.monotonic()
    print(f"netkube server: cluster {cluster.name!r}, this machine is {NODE} at {addr.ip} on {iface}, "
          f"proxy mode {cluster.proxy_mode}, network {cluster.network}", flush=True)
    machine.save(cluster.state_dir)  # first: `netkube reset` finds whatever follows
    try:
        cluster.save()
        machine.sysctls_before = host.apply_sysctls()
        machine.save(cluster.state_dir)
        records = Records(cluster.records_path)
        install_node_files(cluster)
        # the apiserver's SANs include the advertise address, so joiners verify it by IP
        create_cluster_pki(cluster.pki_dir, cluster.api_host, cluster.kubernetes_service_ip,
                           cluster.cluster_domain, [NODE])
        token = tokens.generate(ttl)
        tokens.TokenFile(cluster.pki_dir / "bootstrap-tokens.csv").add(token)
        server_pid = spawn_detached(
            python_module_argv("netkube.server", "--cluster-config", str(cluster.state_dir / "cluster.json"),
                               "--listen-address", str(addr.ip)),
            cluster.log_dir / "server.log", records, "netkube server",
        )
        # kubeadm's admin.conf, pointing at the advertise address so it works from other machines too
        kubeconfig.write(cluster.kubeconfig_path, kubeconfig.render(cluster.name, url, cluster.pki_dir, "admin"))
        asyncio.run(_bring_up(cluster, machine, records, server_pid, args.timeout))
    except BaseException as e:
        logs = "\n".join(f"--- {n}.log\n{log_tail(cluster.log_dir / f'{n}.log')}" for n in ("server", "agent"))
        reset_state_dir(cluster.state_dir)
        if isinstance(e, (ConfigError, TimeoutError)):
            raise ConfigError(f"{e}\nEverything it set up was undone. The end of its logs:\n{logs}") from None
        raise
    command = tokens.join_command(url, token, (cluster.pki_dir / "ca.crt").read_bytes())
    (cluster.state_dir / "join-command").write_text(command + "\n")
    print(f"Control plane up in {time.monotonic() - t0:.1f}s: apiserver {url}, {NODE} Ready, cluster DNS answers.")
    print(f"  kubectl: export KUBECONFIG={cluster.kubeconfig_path}   (or `netkube kubectl --name {cluster.name} -- get nodes`)")
    exp = f"expires {token.expires:%Y-%m-%d %H:%M} UTC" if token.expires else "never expires"
    print(f"Join other machines with (as root; the token {exp}; `netkube token create --print-join-command` "
          f"makes another):\n")
    print(command)
    return 0


def token_create(args: argparse.Namespace) -> int:
    from netkube.machine.reset import machine_state_dirs

    dirs = [d for d in machine_state_dirs(args.state_root, args.name)
            if (m := host.Machine.load(d)) is not None and m.role == "server"]
    if not dirs:
        raise ConfigError("no `netkube server` runs on this machine; run this where the control plane is")
    if len(dirs) > 1:
        raise ConfigError(f"several clusters here ({', '.join(d.name for d in dirs)}); pick one with --name")
    try:
        token = tokens.generate(tokens.parse_ttl(args.ttl))
    except tokens.TokenError as e:
        raise ConfigError(str(e)) from None
    pki = dirs[0] / "pki"
    tokens.TokenFile(pki / "bootstrap-tokens.csv").add(token)
    machine = host.Machine.load(dirs[0])
    assert machine is not None
    print(tokens.join_command(machine.api_url, token, (pki / "ca.crt").read_bytes())
          if args.print_join_command else str(token))
    return 0
