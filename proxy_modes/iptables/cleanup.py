"""Remove exactly what kube-proxy's iptables mode owns: its base-chain jumps and KUBE-* chains."""

from __future__ import annotations

import logging

from proxy_modes.iptables import chains as C
from proxy_modes.kernel.iptables import Iptables, IptablesError

log = logging.getLogger(__name__)

# Fixed chains we own, per table (service chains are found by prefix in the nat table).
OWNED: dict[str, tuple[str, ...]] = {
    "nat": (*C.NAT_CHAINS, C.KUBE_PROXY_CANARY),
    "filter": (*C.FILTER_CHAINS, C.KUBE_PROXY_CANARY),
    "mangle": (C.KUBE_PROXY_CANARY,),
}


def owned_nat_service_chains(ipt: Iptables) -> list[str]:
    return [c for c in chain_names(ipt.save("nat")) if C.is_service_chain(c)]


def chain_names(save_text: str) -> list[str]:
    return [line[1:].split()[0] for line in save_text.splitlines() if line.startswith(":")]


def remove_chains(ipt: Iptables, table: str, flush: list[str], delete: list[str], what: str) -> bool:
    """One transaction: a chain line flushes (dropping references between our chains), -X deletes."""
    text = f"*{table}\n" + "".join(f":{c} - [0:0]\n" for c in flush) + "".join(f"-X {c}\n" for c in delete)
    try:
        ipt.restore(text + "COMMIT\n", noflush=True)
    except IptablesError as e:
        log.warning("removing %s chains from %s: %s", what, table, e)
        return False
    return True


def remove_jump(ipt: Iptables, j: C.Jump) -> bool:
    try:
        ipt.delete_rule(j.table, j.source, j.args())
    except IptablesError as e:
        log.warning("removing jump %s %s -> %s: %s", j.table, j.source, j.chain, e)
        return False
    return True


def present_chains(ipt: Iptables, table: str) -> set[str] | None:
    """The chains of `table`, or None (logged) when it cannot be read."""
    try:
        return set(chain_names(ipt.save(table)))
    except IptablesError as e:
        log.warning("reading table %s: %s", table, e)
        return None


def cleanup(ipt: Iptables) -> bool:
    """Idempotent; returns False if something could not be removed (logged)."""
    ok = True
    for j in C.JUMPS:
        ok = remove_jump(ipt, j) and ok
    for table, fixed in OWNED.items():
        present = present_chains(ipt, table)
        if present is None:
            ok = False
            continue
        ours = [c for c in fixed if c in present]
        if table == "nat":
            ours += sorted(c for c in present if C.is_service_chain(c))
        if ours:
            ok = remove_chains(ipt, table, ours, ours, "kube-proxy") and ok
    return ok
