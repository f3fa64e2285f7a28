"""Remove exactly what ipvs mode owns: its jumps and chains, ipsets, virtual servers and kube-ipvs0."""

from __future__ import annotations

import errno
import ipaddress
import logging

from proxy_modes.iptables import chains as iptables_chains
from proxy_modes.iptables.cleanup import present_chains, remove_chains, remove_jump
from proxy_modes.ipvs import names as N
from proxy_modes.kernel.ipset import Ipset, IpsetError, parse_save
from proxy_modes.kernel.iptables import Iptables, IptablesError
from proxy_modes.kernel.ipvs import Ipvs, IpvsError
from proxy_modes.kernel.links import DummyLinks, LinkError

log = logging.getLogger(__name__)

# Chains iptables mode also uses: when another mode is active they are only flushed (it rewrites them).
SHARED = {"nat": {N.KUBE_SERVICES, N.KUBE_POSTROUTING, N.KUBE_MARK_MASQ, N.KUBE_PROXY_CANARY},
          "filter": {N.KUBE_FORWARD, N.KUBE_PROXY_FIREWALL, N.KUBE_PROXY_CANARY},
          "mangle": {N.KUBE_PROXY_CANARY}}
OWNED = {"nat": (*N.NAT_CHAINS, N.KUBE_PROXY_CANARY), "filter": (*N.FILTER_CHAINS, N.KUBE_PROXY_CANARY),
         "mangle": (N.KUBE_PROXY_CANARY,)}


def owned_address(ip: str, bound: set[str], node_ips: tuple[str, ...], service_cidr: str) -> bool:
    """A virtual server is ours if its address is on kube-ipvs0, a node IP, or a service IP."""
    return ip in bound or ip in node_ips or ipaddress.IPv4Address(ip) in ipaddress.IPv4Network(service_cidr)


def cleanup_iptables(ipt: Iptables, shared: bool = True) -> bool:
    ok = True
    for j in N.JUMPS:
        if not shared and j in iptables_chains.JUMPS:
            continue  # the very same jump iptables mode uses: its cleanup (or its sync) owns it
        try:
            if not ipt.chain_exists(j.table, j.chain):
                continue  # no chain, so no jump to it
        except IptablesError as e:
            ok = False
            log.warning("checking chain %s %s: %s", j.table, j.chain, e)
            continue
        ok = remove_jump(ipt, j) and ok
    for table, fixed in OWNED.items():
        present = present_chains(ipt, table)
        if present is None:
            ok = False
            continue
        ours = [c for c in fixed if c in present]
        delete = [c for c in ours if shared or c not in SHARED[table]]
        if delete:  # none: no ipvs-only chain here, another mode's shared chains are left untouched
            ok = remove_chains(ipt, table, ours, delete, "ipvs-mode") and ok
    return ok


def cleanup(ipt: Iptables | None, ipset: Ipset | None, ipvs: Ipvs | None, links: DummyLinks | None,
            node_ips: tuple[str, ...] = (), service_cidr: str = "10.96.0.0/12", shared: bool = True) -> bool:
    """Idempotent; any part may be None (not available here). Order matters: the iptables rules that
    reference the sets go first (the kernel refuses to destroy a set in use)."""
    ok = True
    if ipt is not None:
        ok = cleanup_iptables(ipt, shared) and ok
    if ipset is not None:
        try:
            present = parse_save(ipset.save())
            ours = [s.name for s in N.IPSETS if s.name in present]
            if ours:
                ipset.restore("".join(f"destroy {n}\n" for n in ours))
        except (IpsetError, OSError) as e:
            ok = False
            log.warning("removing ipvs-mode ipsets: %s", e)
    bound = links.addresses(N.DUMMY) if links is not None else set()
    if ipvs is not None:
        try:
            for vs in ipvs.services():
                if owned_address(vs.address, bound, node_ips, service_cidr):
                    ipvs.delete_service(vs)
        except IpvsError as e:  # a kernel without IPVS (ENOENT) has none to clean
            (log.debug if e.errno == errno.ENOENT else log.warning)("IPVS virtual servers not cleaned up: %s", e)
    if links is not None:
        try:
            links.delete_link(N.DUMMY)
        except (LinkError, OSError) as e:
            ok = False
            log.warning("removing %s: %s", N.DUMMY, e)
    return ok
