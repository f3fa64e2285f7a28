"""Pure renderer: proxy state + config → nft commands, as one script or as bounded transactions."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from proxy_modes.model import ProxyState
from proxy_modes.nftables import names as N
from proxy_modes.nftables.base import BaseConfig, base_commands, chain_block, declare
from proxy_modes.nftables.names import T
from proxy_modes.nftables.service_rules import Element, ServicePlan, add_service_port


@dataclass(frozen=True)
class RenderConfig:
    node_name: str
    node_ips: tuple[str, ...]
    cluster_cidr: str = "10.244.0.0/16"  # sources outside it are off-cluster and get masqueraded
    service_cidr: str = "172.30.0.0/16"
    masquerade_bit: int = 14
    # Up to this many service ports, endpoints are picked by upstream's anonymous `numgen … vmap`;
    # above it by one `numgen random mod K 0 goto` rule per endpoint (service_rules._dispatch).
    vmap_max_services: int = 2000

    @property
    def base(self) -> BaseConfig:
        return BaseConfig(self.service_cidr, hex(1 << self.masquerade_bit))


def plans(state: ProxyState, cfg: RenderConfig, only: set[str] | None = None) -> dict[str, ServicePlan]:
    """"<ns>/<name>" → its objects, for every service (or those in `only`), ports in sorted order."""
    out: dict[str, ServicePlan] = {}
    vmap = len(state.services) <= cfg.vmap_max_services
    keys = state.services if only is None else [spn for spn in state.services if spn.service in only]
    for spn in sorted(keys):  # filtered first: sorting 10k names costs more than a partial sync's nft run
        plan = out.setdefault(spn.service, ServicePlan())
        add_service_port(plan, state.services[spn], state.endpoints.get(spn, []), cfg.cluster_cidr, vmap)
    return out


def set_command(name: str, timeout: int) -> str:
    return f"add set {T} {name} {{ type ipv4_addr ; flags dynamic,timeout ; timeout {timeout}s ; }}"


def _chains(plan: ServicePlan, existing: set[str] | frozenset[str], endpoints: bool) -> list[str]:
    out: list[str] = []
    for chain, rules in plan.chains.items():
        if chain.startswith("endpoint-") != endpoints:
            continue
        if chain in existing:
            out.append(f"flush chain {T} {chain}")  # same transaction: never seen empty
        out.append(chain_block(chain, rules))
    return out


def endpoint_commands(plan: ServicePlan, existing: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """Affinity sets and endpoint chains: they only reference fixed chains and their own sets."""
    return [set_command(name, t) for name, t in plan.sets.items()] + _chains(plan, existing, True)


def service_commands(plan: ServicePlan, existing: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """Service, local and external chains (in that order: external ones jump to the others).

    The affinity sets they look up are declared again (a no-op for the kernel): with only its
    table cache, nft resolves `@set` only against sets declared in the same run.
    """
    return [set_command(name, t) for name, t in plan.sets.items()] + _chains(plan, existing, False)


def chain_commands(plan: ServicePlan, existing: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """Everything of one service but its map elements, in dependency order."""
    return endpoint_commands(plan, existing) + _chains(plan, existing, False)


def element_commands(elements: Iterable[Element], op: str = "add", chunk: int = 1000) -> list[str]:
    """Element adds as re-declarations of their map (table cache only), deletes as `delete element`."""
    by_owner: dict[str, list[Element]] = {}
    for e in elements:
        by_owner.setdefault(e.owner, []).append(e)
    out: list[str] = []
    for owner, items in by_owner.items():
        for i in range(0, len(items), chunk):
            part = items[i : i + chunk]
            if op == "delete":
                out.append(f"delete element {T} {owner} {{ {' , '.join(e.key for e in part)} }}")
            else:
                out.append(declare(owner, " , ".join(e.body() for e in part)))
    return out


def full_script(state: ProxyState, cfg: RenderConfig) -> str:
    """The whole table as ONE transaction into an empty namespace (golden tests, bench baseline)."""
    lines = base_commands(cfg.base, flush=False)
    for plan in plans(state, cfg).values():
        lines += chain_commands(plan)
        lines += element_commands(plan.elements)
    return "\n".join(lines) + "\n"


def batches(commands: Iterator[list[str]], limit: int) -> Iterator[list[str]]:
    """Group per-service command lists into transactions of about `limit` lines, never splitting one."""
    cur: list[str] = []
    for cmds in commands:
        if cur and len(cur) + len(cmds) > limit:
            yield cur
            cur = []
        cur += cmds
    if cur:
        yield cur


def stale_commands(chains: Iterable[str], sets: Iterable[str]) -> list[str]:
    """Flush every stale chain first (dropping their jumps to each other), then delete chains and sets."""
    chains, sets = sorted(chains), sorted(sets)
    return ([f"flush chain {T} {c}" for c in chains] + [f"delete chain {T} {c}" for c in chains]
            + [f"delete set {T} {s}" for s in sets])


def switch_commands(elements: Iterable[Element], chunk: int = 1000) -> list[str]:
    """Atomically replace the contents of every dispatch map/set (the last step of a full sync)."""
    out = [f"flush {'set' if o == N.CLUSTER_IPS else 'map'} {T} {o}" for o in N.ELEMENT_OWNERS]
    return out + element_commands(elements, chunk=chunk)
