"""`netkube reset`: undo what server or join set up on this machine, from its records (as kubeadm reset)."""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import shutil
import subprocess
from pathlib import Path

from netkube.config import ClusterConfig, ConfigError
from netkube.lab.cleanup import remove_recorded
from netkube.lab.records import Records
from netkube.machine.host import MACHINE_FILE, OWNED_LINKS, Machine, restore_sysctls

log = logging.getLogger(__name__)
CNI_NETWORK = "cbr0"  # the conflist's network name (cni/netconf.py), in every CNI rule's comment
_COMMENT_ID = re.compile(r'name: \\?"([^"\\]+)\\?" id: \\?"([^"\\]+)\\?"')


def cni_container_ids(nat_save: str, network: str = CNI_NETWORK) -> list[str]:
    """Containers whose bridge-masquerade or portmap rules are still in `iptables-save -t nat`: the
    kubelet never ran CNI DEL for them because reset stopped it (the pods' netns go with it)."""
    ids: list[str] = []
    for m in _COMMENT_ID.finditer(nat_save):
        if m.group(1) == network and m.group(2) not in ids:
            ids.append(m.group(2))
    return ids


def cni_teardowns(nat_save: str, network: str = CNI_NETWORK) -> list[str]:
    """iptables-restore texts removing those containers' chains and the jumps to them."""
    from cni import masq, portmap_rules

    out = []
    for cid in cni_container_ids(nat_save, network):
        for text in (masq.teardown_rules(nat_save, masq.chain_name(network, cid)),
                     portmap_rules.teardown_rules(nat_save, network, cid)):
            if text:
                out.append(text)
    return out


def _run(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30)


def _kernel_cleanup(cluster: ClusterConfig | None, machine: Machine) -> None:
    from proxy_modes.runner import cleanup_other_modes

    # kube-proxy --cleanup: every mode removes exactly the chains, tables, sets it owns
    cleanup_other_modes("")
    from cni.flannel import masq

    masq.cleanup()  # flanneld's FLANNEL-POSTRTG / FLANNEL-FWD and their jumps
    nat = _run(["iptables-save", "-t", "nat"]).stdout
    for text in cni_teardowns(nat):
        p = _run(["iptables-restore", "-w", "5", "--noflush"], text)
        if p.returncode:
            log.warning("removing CNI rules: %s", p.stderr.strip())
    links = {link["ifname"] for link in json.loads(_run(["ip", "-j", "link", "show"]).stdout or "[]")}
    for name in OWNED_LINKS:  # preflight refused machines that had them; so they are ours
        if name in links:
            _run(["ip", "link", "delete", name])
    if cluster is None:
        return
    # LoadBalancer IPs the speaker held (/32 on the node interface)
    pool = set(cluster.lb_pool_ips)
    data = json.loads(_run(["ip", "-j", "-4", "addr", "show", "dev", machine.iface]).stdout or "[]")
    for link in data:
        for a in link.get("addr_info", []):
            if a.get("local") in pool and a.get("prefixlen") == 32:
                _run(["ip", "addr", "del", f"{a['local']}/32", "dev", machine.iface])
    # host-gw routes to other nodes' pod subnets (vxlan's went with flannel.1)
    pods = ipaddress.IPv4Network(cluster.pod_cidr)
    for r in json.loads(_run(["ip", "-j", "-4", "route", "show"]).stdout or "[]"):
        dst = r.get("dst", "")
        try:
            net = ipaddress.IPv4Network(dst if "/" in dst else f"{dst}/32")
        except ValueError:
            continue
        if dst != "default" and net.subnet_of(pods):
            _run(["ip", "route", "del", dst])


def reset_state_dir(state_dir: Path) -> str:
    """Undo one server/join set-up; returns a one-line summary."""
    machine = Machine.load(state_dir)
    if machine is None:
        raise ConfigError(f"{state_dir} was not made by `netkube server` or `netkube join`; for an emulator "
                          f"cluster use `netkube down --name {state_dir.name}`")
    cluster_file = state_dir / "cluster.json"
    cluster = ClusterConfig.from_file(cluster_file) if cluster_file.exists() else None
    counts = remove_recorded(Records(state_dir / "records.jsonl"))
    _kernel_cleanup(cluster, machine)
    restore_sysctls(machine.sysctls_before)
    shutil.rmtree(state_dir, ignore_errors=True)
    return (f"reset {machine.role} {machine.node} of cluster {state_dir.name!r}: {counts.get('process', 0)} "
            f"processes stopped, {counts.get('netns', 0)} pod namespaces deleted, kube-proxy and CNI rules, "
            f"{'/'.join(OWNED_LINKS)} and sysctls restored, {state_dir} removed")


def machine_state_dirs(state_root: str, name: str | None = None) -> list[Path]:
    root = Path(state_root)
    dirs = sorted(p.parent for p in root.glob(f"*/{MACHINE_FILE}")) if root.exists() else []
    return [d for d in dirs if name is None or d.name == name]


def reset(state_root: str, name: str | None = None) -> int:
    dirs = machine_state_dirs(state_root, name)
    if not dirs:
        print(f"nothing to reset: no `netkube server` or `netkube join` set-up under {state_root}")
        return 0
    for d in dirs:
        print(reset_state_dir(d))
    return 0
