"""flanneld's masquerade and forward rules (FLANNEL_IPMASQ=true), written once per node.

With them the bridge plugin needs no per-pod CNI-<hash> nat chain (flannel-cni turns the bridge's
ipMasq off when flannel masquerades), so a pod ADD runs no iptables at all.
"""

from __future__ import annotations

import subprocess

from netkube.config import MASQ_MARK

MASQ = '-m comment --comment "flanneld masq"'
FWD = '-m comment --comment "flanneld forward"'


def rules(network: str, subnet: str) -> str:
    """iptables-restore text for the node owning `subnet` in the flannel `network`.

    Rule order as flanneld writes it: leave kube-proxy's marked packets to KUBE-POSTROUTING, never
    NAT pod-to-pod traffic inside the network, masquerade pods leaving the network (not
    multicast) and host traffic entering it.
    """
    mark = f"{MASQ_MARK:#x}/{MASQ_MARK:#x}"
    return "\n".join([
        "*nat",
        ":FLANNEL-POSTRTG - [0:0]",
        f"-A FLANNEL-POSTRTG -m mark --mark {mark} {MASQ} -j RETURN",
        f"-A FLANNEL-POSTRTG -s {subnet} -d {network} {MASQ} -j RETURN",
        f"-A FLANNEL-POSTRTG -s {network} -d {subnet} {MASQ} -j RETURN",
        f"-A FLANNEL-POSTRTG ! -s {network} -d {subnet} {MASQ} -j RETURN",
        f"-A FLANNEL-POSTRTG -s {network} ! -d 224.0.0.0/4 {MASQ} -j MASQUERADE --random-fully",
        f"-A FLANNEL-POSTRTG ! -s {network} -d {network} {MASQ} -j MASQUERADE --random-fully",
        "COMMIT",
        "*filter",
        ":FLANNEL-FWD - [0:0]",
        f"-A FLANNEL-FWD -s {network} {FWD} -j ACCEPT",
        f"-A FLANNEL-FWD -d {network} {FWD} -j ACCEPT",
        "COMMIT",
        "",
    ])


JUMPS = (("nat", "POSTROUTING", f"{MASQ} -j FLANNEL-POSTRTG"), ("filter", "FORWARD", f"{FWD} -j FLANNEL-FWD"))


def _run(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30)


def apply(network: str, subnet: str) -> None:
    """Write the chains (flushed and rewritten: --noflush keeps everything else) and ensure the jumps."""
    p = _run(["iptables-restore", "-w", "5", "--noflush"], rules(network, subnet))
    if p.returncode:
        raise RuntimeError(f"iptables-restore of flannel's masquerade rules failed: {p.stderr.strip()}")
    for table, chain, spec in JUMPS:
        args = _split(spec)
        if _run(["iptables", "-w", "5", "-t", table, "-C", chain, *args]).returncode != 0:
            p = _run(["iptables", "-w", "5", "-t", table, "-A", chain, *args])
            if p.returncode:
                raise RuntimeError(f"adding flannel's {chain} jump failed: {p.stderr.strip()}")


def _split(spec: str) -> list[str]:
    import shlex

    return shlex.split(spec)


def cleanup() -> None:
    """Remove exactly flannel's jumps and chains (what `apply` wrote); absent ones are skipped."""
    for table, chain, spec in JUMPS:
        args = _split(spec)
        while _run(["iptables", "-w", "5", "-t", table, "-C", chain, *args]).returncode == 0:
            if _run(["iptables", "-w", "5", "-t", table, "-D", chain, *args]).returncode != 0:
                break
    for table, chain in (("nat", "FLANNEL-POSTRTG"), ("filter", "FLANNEL-FWD")):
        if _run(["iptables", "-w", "5", "-t", table, "-n", "-L", chain]).returncode == 0:
            _run(["iptables", "-w", "5", "-t", table, "-F", chain])
            _run(["iptables", "-w", "5", "-t", table, "-X", chain])
