"""Delete stale UDP conntrack entries after endpoint changes, else UDP clients (DNS) stay blackholed."""

from __future__ import annotations

import logging
import subprocess
from dataclasses import dataclass, field
from typing import Protocol

from proxy_modes.model import ProxyState

log = logging.getLogger(__name__)


class Conntrack(Protocol):
    def delete(self, args: list[str]) -> int:
        """`conntrack -D <args>`; returns entries deleted (0 is not an error)."""


class RealConntrack:
    def __init__(self, binary: str = "conntrack") -> None:
        self.binary = binary

    def delete(self, args: list[str]) -> int:
        r = subprocess.run([self.binary, "-D", *args], capture_output=True, text=True, timeout=30)
        # conntrack exits 1 and prints "0 flow entries have been deleted" when nothing matched.
        for line in (r.stderr + r.stdout).splitlines():
            if "flow entries have been deleted" in line:
                return int(line.split()[-6]) if line.split()[-6].isdigit() else 0
        if r.returncode != 0:
            raise RuntimeError(f"conntrack -D {' '.join(args)} failed: {r.stderr.strip()}")
        return 0


@dataclass
class Flow:
    proto: str
    orig_dst: str
    orig_dport: int
    reply_src: str  # the endpoint after DNAT


@dataclass
class FakeConntrack:
    flows: list[Flow] = field(default_factory=list)
    calls: list[list[str]] = field(default_factory=list)

    def delete(self, args: list[str]) -> int:
        self.calls.append(list(args))
        opts = dict(zip(args[::2], args[1::2], strict=False))
        if "-p" not in opts:
            raise RuntimeError("conntrack v1.4.7 (conntrack-tools): -D needs a protocol filter here")

        def hit(f: Flow) -> bool:
            return (
                f.proto == opts["-p"]
                and opts.get("--orig-dst", f.orig_dst) == f.orig_dst
                and int(opts.get("--orig-port-dst", f.orig_dport)) == f.orig_dport
                and opts.get("--reply-src", f.reply_src) == f.reply_src
            )

        before = len(self.flows)
        self.flows = [f for f in self.flows if not hit(f)]
        return before - len(self.flows)


def clear_stale_udp(ct: Conntrack, state: ProxyState) -> int:
    """Entries to a ClusterIP that had no endpoints (cached REJECT/unreplied) and to removed endpoints."""
    n = 0
    calls: list[list[str]] = []
    for sp in state.stale_udp_services:
        calls.append(["-p", "udp", "--orig-dst", sp.cluster_ip, "--orig-port-dst", str(sp.port)])
        for ip in sp.external_ips + sp.load_balancer_ips:
            calls.append(["-p", "udp", "--orig-dst", ip, "--orig-port-dst", str(sp.port)])
        if sp.node_port:
            calls.append(["-p", "udp", "--orig-port-dst", str(sp.node_port)])
    for sp, ip in state.stale_udp_endpoints:
        calls.append(["-p", "udp", "--orig-dst", sp.cluster_ip, "--reply-src", ip])
    for args in calls:
        try:
            n += ct.delete(args)
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            log.warning("clearing stale UDP conntrack entries failed: %s", e)
    return n
