"""The `netkube` command: a few lines per subcommand, calling into the lab and cluster code."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from netkube.config import STATE_ROOT, ClusterConfig, ConfigError


def _cluster(args: argparse.Namespace) -> ClusterConfig:
    return ClusterConfig.load(args.name, args.state_root)


def cmd_up(args: argparse.Namespace) -> int:
    from netkube.cli.up import up

    cluster = ClusterConfig(
        name=args.name,
        nodes=args.nodes,
        pod_cidr=args.pod_cidr,
        service_cidr=args.service_cidr,
        node_cidr=args.node_cidr,
        proxy_mode=args.proxy_mode,
        ipvs_scheduler=args.ipvs_scheduler,
        api_port=args.api_port,
        state_root=args.state_root,
        lb_pool=args.lb_pool,
        store=args.store,
        etcd_endpoints=args.etcd_endpoints,
        insecure_http=args.insecure_http,
        network="none" if args.no_network else args.network,
        cni_plugins=args.cni_plugins,
        runtime=args.runtime,
        docker_host=args.docker_host,
    )
    if args.node_monitor_grace_period:
        cluster.extra["node-monitor-grace-period"] = _seconds("--node-monitor-grace-period", args.node_monitor_grace_period)
    return up(cluster, timeout=args.timeout)


def _seconds(flag: str, value: str) -> str:
    """A Go-style duration in whole seconds or minutes (40s, 5m, 90) as seconds."""
    v = value.strip()
    try:
        n = float(v[:-1]) * 60 if v.endswith("m") else float(v.removesuffix("s"))
    except ValueError:
        raise ConfigError(f"{flag} {value!r} is not a duration such as 5s, 40s or 2m") from None
    if n <= 0:
        raise ConfigError(f"{flag} {value!r} must be positive")
    return f"{n:g}"


def cmd_network_install(args: argparse.Namespace) -> int:
    from netkube.cli.network import install_cmd

    return install_cmd(_cluster(args), args.network, args.timeout)


def cmd_down(args: argparse.Namespace) -> int:
    from netkube.cli.teardown import down

    return down(_cluster(args))


def cmd_clean(args: argparse.Namespace) -> int:
    from netkube.cli.teardown import clean

    return clean(args.state_root)


def cmd_status(args: argparse.Namespace) -> int:
    from netkube.lab.records import Records, process_start_time

    root = Path(args.state_root)
    clusters = sorted(p.parent.name for p in root.glob("*/cluster.json")) if root.exists() else []
    if not clusters:
        print("no netkube clusters (start one with `sudo netkube up`)")
        return 0
    for name in clusters:
        cluster = ClusterConfig.load(name, args.state_root)
        live = Records(cluster.records_path).live()
        procs = [r for r in live if r.kind == "process"]
        running = [p for p in procs if process_start_time(p.data["pid"]) == p.data["start"]]
        netns = [r.data["name"] for r in live if r.kind == "netns"]
        print(f"cluster {name}: {cluster.nodes} nodes, proxy mode {cluster.proxy_mode}, "
              f"api {cluster.api_url_host}")
        print(f"  kubeconfig: {cluster.kubeconfig_path}")
        for p in procs:
            state = "running" if p in running else "NOT RUNNING"
            if p.data.get("what", "").startswith("netkube"):
                print(f"  {p.data['what']:<24} pid {p.data['pid']:<8} {state}")
        print(f"  namespaces: {len(netns)} ({sum(1 for n in netns if '-pod-' in n)} pods)")
    return 0


def cmd_kubeconfig(args: argparse.Namespace) -> int:
    print(_cluster(args).kubeconfig_path)
    return 0


def cmd_kubectl(args: argparse.Namespace) -> int:
    cluster = _cluster(args)
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise ConfigError("kubectl is not installed; run `sudo scripts/setup` (it installs one)")
    rest = args.args[1:] if args.args[:1] == ["--"] else args.args
    os.execve(kubectl, [kubectl, *rest], {**os.environ, "KUBECONFIG": str(cluster.kubeconfig_path)})
    return 127


def _rest(args: list[str]) -> list[str]:
    rest = args[1:] if args[:1] == ["--"] else args
    if not rest:
        raise ConfigError("give the command to run after `--`, e.g. `-- sh`")
    return rest


def cmd_exec(args: argparse.Namespace) -> int:
    from netkube.cli.inside import exec_in_pod

    return exec_in_pod(_cluster(args), args.namespace, args.pod, _rest(args.args), args.container)


def cmd_node_power(args: argparse.Namespace) -> int:
    from netkube.cli.nodepower import node_start, node_stop

    return (node_stop if args.action == "stop" else node_start)(_cluster(args), args.node)


def cmd_node_exec(args: argparse.Namespace) -> int:
    from netkube.cli.inside import exec_in_node

    return exec_in_node(_cluster(args), args.node, _rest(args.args))


def cmd_capture(args: argparse.Namespace) -> int:
    from netkube.cli.inside import capture

    extra = args.filter[1:] if args.filter[:1] == ["--"] else args.filter
    return capture(_cluster(args), args.target, args.namespace, args.iface, args.write, args.count, extra)


def cmd_doctor(args: argparse.Namespace) -> int:
    from netkube.cli.doctor import doctor

    return doctor()


def cmd_proxy_mode(args: argparse.Namespace) -> int:
    from netkube.cli.proxymode import set_proxy_mode

    return set_proxy_mode(_cluster(args), args.mode, args.timeout)


def cmd_client(args: argparse.Namespace) -> int:
    from netkube.cli.inside import exec_in_client

    return exec_in_client(_cluster(args), _rest(args.args))


def cmd_rules(args: argparse.Namespace) -> int:
    from netkube.debug.rules import print_rules

    return print_rules(_cluster(args), args.node)


def cmd_trace(args: argparse.Namespace) -> int:
    from netkube.debug.trace import trace

    return trace(_cluster(args), args.source, args.dest, args.namespace, args.proto, not args.brief, args.probe)


def cmd_config(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    print(json.dumps(asdict(_cluster(args)), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="netkube", description="Kubernetes networking on Linux network namespaces")
    p.add_argument("--state-root", default=str(STATE_ROOT), help=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", required=True)

    def named(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("--name", default="netkube", help="cluster name (default: netkube)")
        return sp

    up = named(sub.add_parser("up", help="create a cluster and wait until it serves"))
    up.add_argument("--nodes", type=int, default=3)
    up.add_argument("--pod-cidr", default="10.244.0.0/16")
    up.add_argument("--service-cidr", default="10.96.0.0/12")
    up.add_argument("--node-cidr", default="192.168.56.0/24")
    up.add_argument("--proxy-mode", default="iptables", choices=["iptables", "nftables", "userspace", "ipvs"],
                    help="kube-proxy mode; ipvs falls back to iptables on a kernel without IPVS (with a warning)")
    up.add_argument("--ipvs-scheduler", default="rr",
                    help="IPVS scheduler in ipvs mode: rr (default), wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq")
    up.add_argument("--api-port", type=int, default=6443)
    up.add_argument("--lb-pool", default="", help="LoadBalancer addresses FIRST-LAST (default .240-.250 of --node-cidr)")
    up.add_argument("--store", choices=["sqlite", "etcd"], default="sqlite",
                    help="apiserver storage; etcd without --etcd-endpoints starts Debian's etcd for the cluster")
    up.add_argument("--etcd-endpoints", default="", help="use this etcd (http://HOST:PORT) for --store etcd")
    up.add_argument("--insecure-http", action="store_true",
                    help="serve the API over plain HTTP without authentication (default: HTTPS with a cluster CA)")
    up.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for Ready nodes and DNS")
    up.add_argument("--node-monitor-grace-period", default=None, metavar="DURATION",
                    help="how long a silent node stays Ready before NotReady (default 40s, as upstream)")
    up.add_argument("--network", choices=["flannel-vxlan", "flannel-host-gw"], default="flannel-vxlan",
                    help="pod network add-on installed with the cluster (default flannel-vxlan)")
    up.add_argument("--no-network", action="store_true",
                    help="no pod network: nodes stay NotReady until `netkube network install`")
    up.add_argument("--cni-plugins", choices=["netkube", "reference"], default="netkube",
                    help="CNI plugin binaries: netkube's, or Debian's reference plugins from /usr/lib/cni")
    up.add_argument("--runtime", choices=["process", "docker"], default="process",
                    help="pod runtime: processes in namespaces (default) or Docker containers (docs/runtime-docker.md)")
    up.add_argument("--docker-host", default="", metavar="URL",
                    help="with --runtime docker: use this engine (unix://PATH) instead of starting one for the cluster")
    up.set_defaults(fn=cmd_up)

    net = sub.add_parser("network", help="the pod network add-on")
    net_sub = net.add_subparsers(dest="network_command", required=True)
    ni = named(net_sub.add_parser("install", help="install the pod network (kube-flannel ConfigMap) and wait "
                                                  "until every node is Ready"))
    ni.add_argument("network", choices=["flannel-vxlan", "flannel-host-gw"])
    ni.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for Ready nodes")
    ni.set_defaults(fn=cmd_network_install)

    named(sub.add_parser("down", help="remove a cluster and everything it created")).set_defaults(fn=cmd_down)
    sub.add_parser("clean", help="remove what any netkube cluster left behind, from its records").set_defaults(
        fn=cmd_clean
    )
    sub.add_parser("status", help="list clusters and their processes").set_defaults(fn=cmd_status)
    sub.add_parser("doctor", help="check kernel features and tools").set_defaults(fn=cmd_doctor)
    named(sub.add_parser("kubeconfig", help="print the kubeconfig path")).set_defaults(fn=cmd_kubeconfig)
    named(sub.add_parser("config", help="print the cluster configuration")).set_defaults(fn=cmd_config)

    kc = named(sub.add_parser("kubectl", help="kubectl with this cluster's kubeconfig"))
    kc.add_argument("args", nargs=argparse.REMAINDER)
    kc.set_defaults(fn=cmd_kubectl)

    ex = named(sub.add_parser("exec", help="run a command in a pod's namespaces"))
    ex.add_argument("-n", "--namespace", default="default")
    ex.add_argument("-c", "--container", default=None)
    ex.add_argument("pod")
    ex.add_argument("args", nargs=argparse.REMAINDER)
    ex.set_defaults(fn=cmd_exec)

    nx = named(sub.add_parser("node-exec", help="run a command in a node's network namespace"))
    nx.add_argument("node")
    nx.add_argument("args", nargs=argparse.REMAINDER)
    nx.set_defaults(fn=cmd_node_exec)

    npw = named(sub.add_parser("node", help="power a node off or on: `node stop NODE`, `node start NODE`"))
    npw.add_argument("action", choices=["stop", "start"])
    npw.add_argument("node")
    npw.set_defaults(fn=cmd_node_power)

    cap = named(sub.add_parser("capture", help="tcpdump in a pod (POD) or node (node/NODE)"))
    cap.add_argument("-n", "--namespace", default="default")
    cap.add_argument("-i", "--iface", default=None)
    cap.add_argument("-w", "--write", default=None, help="write a pcap file instead of printing")
    cap.add_argument("-c", "--count", type=int, default=None)
    cap.add_argument("target")
    cap.add_argument("filter", nargs=argparse.REMAINDER, help="tcpdump filter expression")
    cap.set_defaults(fn=cmd_capture)

    pm = named(sub.add_parser("proxy-mode", help="switch every node's kube-proxy mode on a running cluster"))
    pm.add_argument("mode", help="iptables, nftables or userspace (ipvs where the kernel has it)")
    pm.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for every node to switch")
    pm.set_defaults(fn=cmd_proxy_mode)

    cl = named(sub.add_parser("client", help="run a command in the external client namespace on the node network"))
    cl.add_argument("args", nargs=argparse.REMAINDER)
    cl.set_defaults(fn=cmd_client)

    ru = named(sub.add_parser("rules", help="print a node's kube-proxy rules for the active proxy mode"))
    ru.add_argument("node")
    ru.set_defaults(fn=cmd_rules)

    tr = named(sub.add_parser("trace", help="walk a flow through a node's live rules: hits, DNAT targets, odds"))
    tr.add_argument("--from", dest="source", required=True, help="POD, node/NODE or client")
    tr.add_argument("--to", dest="dest", required=True, help="IP:PORT or svc/NAME:PORT")
    tr.add_argument("-n", "--namespace", default="default")
    tr.add_argument("--proto", choices=["tcp", "udp"], default="tcp")
    tr.add_argument("--brief", action="store_true", help="only the targets, not every rule hit")
    tr.add_argument("--probe", action="store_true", help="also send a real packet and show where it was seen")
    tr.set_defaults(fn=cmd_trace)

    # `server` without --cluster-config: the multi-machine control plane (netkube/cli/machine.py), which
    # parses its own options (and -h); with it, the bare control-plane process `up` starts.
    from netkube.cli import machine

    sv = sub.add_parser("server", add_help=False, prefix_chars="\0",  # so every --option lands in rest
                        help="run a control plane on this machine and print a join command (`netkube server -h`)")
    sv.add_argument("rest", nargs=argparse.REMAINDER)
    sv.set_defaults(fn=machine.cmd_server)
    machine.add_commands(sub)
    ag = sub.add_parser("agent", help="run a node agent in the foreground (used by `up`)")
    ag.add_argument("rest", nargs=argparse.REMAINDER)
    ag.set_defaults(fn=lambda a: _delegate("netkube.agent.__main__", a.rest))
    return p


def _delegate(module: str, rest: list[str]) -> int:
    import importlib

    importlib.import_module(module).main(rest)
    return 0


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        code = args.fn(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        code = 2
    except TimeoutError as e:
        print(f"error: {e}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
