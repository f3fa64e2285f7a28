"""CLI of the multi-machine lab: `netkube server` (machine mode), `join`, `reset`, `token create`."""

from __future__ import annotations

import argparse

from netkube.config import PROXY_MODES

SERVER_DESCRIPTION = """Run a cluster's control plane on this machine: apiserver (HTTPS on
--advertise-address:6443), controllers, scheduler, cluster DNS, and this machine's own node agent
as node1 (tainted NoSchedule). Prints a `netkube join` command for the other machines. With
--cluster-config it is instead the bare control-plane process `netkube up` starts."""


def server_parser(state_root: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="netkube server", description=SERVER_DESCRIPTION)
    p.add_argument("--advertise-address", default=None, help="this machine's IP on the node network "
                   "(default: the address of --iface, else of the default route's interface)")
    p.add_argument("--iface", default=None, help="the node network interface (flannel's --iface), e.g. eth1")
    p.add_argument("--name", default="netkube", help="cluster name (state in <state-root>/<name>)")
    p.add_argument("--pod-cidr", default="10.244.0.0/16")
    p.add_argument("--service-cidr", default="10.96.0.0/12")
    p.add_argument("--proxy-mode", default="iptables", choices=list(PROXY_MODES))
    p.add_argument("--network", default="flannel-vxlan", choices=["flannel-vxlan", "flannel-host-gw"])
    p.add_argument("--api-port", type=int, default=6443)
    p.add_argument("--token-ttl", default="24h", help="lifetime of the printed join token (0 = never expires)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for node1 Ready and DNS")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask before changing this machine's network")
    p.set_defaults(state_root=state_root)
    return p


def cmd_server(args: argparse.Namespace) -> int:
    rest = list(args.rest)
    if any(a == "--cluster-config" or a.startswith("--cluster-config=") for a in rest):
        from netkube.server import main  # the control-plane process `netkube up` starts

        main(rest)
        return 0
    from netkube.machine.server import server

    return server(server_parser(args.state_root).parse_args(rest))


def cmd_join(args: argparse.Namespace) -> int:
    from netkube.machine.join import join

    return join(args)


def cmd_reset(args: argparse.Namespace) -> int:
    from netkube.machine.host import confirm
    from netkube.machine.reset import reset

    confirm("reset", args.yes)
    return reset(args.state_root, args.name)


def cmd_token_create(args: argparse.Namespace) -> int:
    from netkube.machine.server import token_create

    return token_create(args)


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    j = sub.add_parser("join", help="join this machine to a cluster as a node (kubeadm join style)")
    j.add_argument("url", help="the apiserver, https://IP:6443")
    j.add_argument("--token", required=True, help="bootstrap token <id>.<secret>")
    j.add_argument("--discovery-token-ca-cert-hash", required=True, help="sha256:<hash of the CA public key>")
    j.add_argument("--iface", default=None, help="the node network interface (default: the route to the server)")
    j.add_argument("--node-name", default=None, help="this node's name (default: the hostname)")
    j.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the node to be Ready")
    j.add_argument("--yes", "-y", action="store_true", help="do not ask before changing this machine's network")
    j.set_defaults(fn=cmd_join)

    r = sub.add_parser("reset", help="undo `netkube server` / `netkube join` on this machine, from its records")
    r.add_argument("--name", default=None, help="only this cluster (default: every server/join set-up here)")
    r.add_argument("--yes", "-y", action="store_true", help="do not ask")
    r.set_defaults(fn=cmd_reset)

    t = sub.add_parser("token", help="bootstrap tokens for `netkube join` (on the server machine)")
    tsub = t.add_subparsers(dest="token_command", required=True)
    tc = tsub.add_parser("create", help="make a new bootstrap token")
    tc.add_argument("--ttl", default="24h", help="lifetime, e.g. 24h, 30m (0 = never expires)")
    tc.add_argument("--print-join-command", action="store_true", help="print the whole join command")
    tc.add_argument("--name", default=None, help="the cluster (when this machine serves several)")
    tc.set_defaults(fn=cmd_token_create)
