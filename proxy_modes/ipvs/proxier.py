"""The ipvs backend: kube-ipvs0 addresses, ipsets, companion iptables rules, then virtual/real servers."""

from __future__ import annotations

import logging
import platform

from proxy_modes.conntrack import Conntrack, clear_stale_udp
from proxy_modes.ipvs import names as N
from proxy_modes.ipvs.cleanup import cleanup, owned_address
from proxy_modes.ipvs.desired import Desired, IpvsConfig, compute
from proxy_modes.ipvs.rules import render
from proxy_modes.kernel.ipset import Ipset, parse_save
from proxy_modes.kernel.iptables import Iptables
from proxy_modes.kernel.ipvs import Ipvs, RealServer, VirtualServer
from proxy_modes.kernel.links import DummyLinks
from proxy_modes.kernel.sysctl import Sysctl
from proxy_modes.model import ProxyState

log = logging.getLogger(__name__)
GraceKey = tuple[tuple[str, str, int], tuple[str, int]]


def kernel_version(release: str | None = None) -> tuple[int, int]:
    parts = (release or platform.release()).split(".")
    return int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or 0)


class IpvsProxier:
    """Implements proxy_modes.backend.Backend for ipvs mode (upstream pkg/proxy/ipvs)."""

    def __init__(self, ipvs: Ipvs, ipset: Ipset, ipt: Iptables, links: DummyLinks, sysctl: Sysctl,
                 cfg: IpvsConfig, conntrack: Conntrack | None = None, kernel_release: str | None = None) -> None:
        self.ipvs, self.ipset, self.ipt, self.links, self.sysctl = ipvs, ipset, ipt, links, sysctl
        self.cfg = cfg
        self.conntrack = conntrack
        self.kernel_release = kernel_release
        self._base_ok = False
        self.graceful: dict[GraceKey, tuple[VirtualServer, RealServer]] = {}  # weight 0, draining
        self.desired: Desired | None = None
        self.last_restore = ""

    # --- setup ----------------------------------------------------------------------------------
    def ensure_base(self) -> None:
        for key, value in N.SYSCTLS:
            self.sysctl.set(key, value)
        if kernel_version(self.kernel_release) < N.CONN_REUSE_FIXED:
            self.sysctl.set(*N.CONN_REUSE)
        self.links.ensure_dummy(N.DUMMY)
        for table in N.CANARY_TABLES:
            self.ipt.ensure_chain(table, N.KUBE_PROXY_CANARY)
        for j in N.JUMPS:
            self.ipt.ensure_chain(j.table, j.chain)
            self.ipt.ensure_rule("prepend", j.table, j.source, j.args())
        self._base_ok = True

    # --- sync -----------------------------------------------------------------------------------
    def sync(self, state: ProxyState, full: bool) -> None:
        if full or not self._base_ok:
            self.ensure_base()
        d = compute(state, self.cfg)
        self._sync_ipsets(d)  # before iptables: a rule may only name an existing set
        text = render(d, self.cfg)
        self.ipt.restore(text, noflush=True)
        self.last_restore = text
        bound = self.links.addresses(N.DUMMY)
        for ip in sorted(d.bound - bound):
            self.links.add_address(N.DUMMY, ip)
        self._sync_servers(d, bound | d.bound)
        for ip in sorted(bound - d.bound):
            self.links.del_address(N.DUMMY, ip)
        self.desired = d
        self.drain()
        if self.conntrack is not None:
            clear_stale_udp(self.conntrack, state)

    def _sync_ipsets(self, d: Desired) -> None:
        current = parse_save(self.ipset.save())
        lines = [spec.create_line() + " -exist" for spec in N.IPSETS]
        for spec in N.IPSETS:
            have = current[spec.name].members if spec.name in current else set()
            want = d.ipsets[spec.name]
            lines += [f"add {spec.name} {m} -exist" for m in sorted(want - have)]
            lines += [f"del {spec.name} {m} -exist" for m in sorted(have - want)]
        self.ipset.restore("\n".join(lines) + "\n")

    def _sync_servers(self, d: Desired, bound: set[str]) -> None:
        current = {vs.key: vs for vs in self.ipvs.services()}
        for vs, reals in d.servers.items():
            cur = current.get(vs.key)
            if cur is None:
                self.ipvs.add_service(vs)
            elif cur != vs:
                self.ipvs.update_service(vs)  # scheduler or persistence changed
            have = {rs.key: rs for rs in self.ipvs.dests(vs)} if cur is not None else {}
            want = {rs.key: rs for rs in reals}
            for k, rs in want.items():
                if k not in have:
                    self.ipvs.add_dest(vs, rs)
                elif have[k].weight != rs.weight:
                    self.ipvs.update_dest(vs, rs)  # back from graceful termination
                self.graceful.pop((vs.key, k), None)
            for k, rs in have.items():
                if k not in want:
                    self._graceful_delete(vs, rs)
        wanted = {vs.key for vs in d.servers}
        for key, vs in current.items():
            if key in wanted or not owned_address(vs.address, bound, self.cfg.node_ips, self.cfg.service_cidr):
                continue
            for rs in self.ipvs.dests(vs):
                self._graceful_delete(vs, rs)
            if not self.ipvs.dests(vs):
                self.ipvs.delete_service(vs)

    def _graceful_delete(self, vs: VirtualServer, rs: RealServer) -> None:
        """Upstream gracefulTerminationManager: delete now if idle (or UDP/SCTP), else weight 0 and wait."""
        key = (vs.key, rs.key)
        if vs.protocol != "TCP" or rs.active_conns + rs.inactive_conns == 0:
            self.ipvs.delete_dest(vs, rs)
            self.graceful.pop(key, None)
            return
        if rs.weight != 0:
            self.ipvs.update_dest(vs, RealServer(rs.address, rs.port, 0))
            log.info("graceful termination of %s in %s: weight 0 until its %d connection(s) drain",
                     rs, vs, rs.active_conns + rs.inactive_conns)
        self.graceful[key] = (vs, rs)

    def drain(self) -> int:
        """Delete real servers in graceful termination whose connections are gone; returns how many.
        Called on every sync (at least every full-sync interval), as upstream's one-minute check."""
        done = 0
        wanted = {vs.key for vs in self.desired.servers} if self.desired else set()
        by_vs: dict[tuple[str, str, int], list[RealServer]] = {}
        for key, (vs, rs) in sorted(self.graceful.items()):
            if vs.key not in by_vs:
                known = {v.key for v in self.ipvs.services()}
                by_vs[vs.key] = self.ipvs.dests(vs) if vs.key in known else []
            now = next((r for r in by_vs[vs.key] if r.key == rs.key), None)
            if now is None:
                del self.graceful[key]
            elif now.active_conns + now.inactive_conns == 0:
                self.ipvs.delete_dest(vs, now)
                del self.graceful[key]
                done += 1
                if vs.key not in wanted and not self.ipvs.dests(vs):
                    self.ipvs.delete_service(vs)  # a removed service whose last server drained
        return done

    # --- Backend --------------------------------------------------------------------------------
    def cleanup(self) -> None:
        cleanup(self.ipt, self.ipset, self.ipvs, self.links, self.cfg.node_ips, self.cfg.service_cidr)
        self._base_ok = False
        self.graceful.clear()

    def tables_intact(self) -> bool:
        return all(self.ipt.chain_exists(t, N.KUBE_PROXY_CANARY) for t in N.CANARY_TABLES)
