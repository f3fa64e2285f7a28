"""Pure renderer: proxy state + node config → iptables-restore input for the nat and filter tables."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from proxy_modes.iptables import chains as C
from proxy_modes.iptables.service_rules import service_chains, write_service
from proxy_modes.model import ProxyState


@dataclass(frozen=True)
class RenderConfig:
    node_name: str
    node_ips: tuple[str, ...]
    cluster_cidr: str = "10.244.0.0/16"  # sources outside it are off-cluster and get masqueraded
    masquerade_bit: int = 14

    @property
    def mark(self) -> str:
        return hex(1 << self.masquerade_bit)


@dataclass
class Buffers:
    """Chain declarations and rules per table, written in the order iptables-restore will read them."""

    filter_chains: list[str] = field(default_factory=list)
    filter_rules: list[str] = field(default_factory=list)
    nat_chains: list[str] = field(default_factory=list)
    nat_rules: list[str] = field(default_factory=list)
    active_nat: set[str] = field(default_factory=set)
    groups: list[int] = field(default_factory=list)  # len(nat_chains) after each service (batching)
    stale: list[str] = field(default_factory=list)
    skipped: set[str] = field(default_factory=set)

    def nat_chain(self, name: str) -> None:
        self.nat_chains.append(f":{name} - [0:0]")
        self.active_nat.add(name)

    def text(self) -> str:
        lines = ["*filter", *self.filter_chains, *self.filter_rules, "COMMIT",
                 "*nat", *self.nat_chains, *self.nat_rules, "COMMIT"]
        return "\n".join(lines) + "\n"


def quote(comment: str) -> str:
    """Upstream writes comments with spaces in double quotes, others bare."""
    return f'"{comment}"' if " " in comment else comment


def render(
    state: ProxyState,
    cfg: RenderConfig,
    existing_nat_chains: Iterable[str] = (),
    only: set[str] | None = None,
) -> str:
    """iptables-restore --noflush input. With `only` (partial sync, KEP-3453) the per-service chains
    of services not in it are neither rewritten nor deleted; the shared chains always are."""
    return build(state, cfg, existing_nat_chains, only).text()


def build(
    state: ProxyState,
    cfg: RenderConfig,
    existing_nat_chains: Iterable[str] = (),
    only: set[str] | None = None,
) -> Buffers:
    """The buffers behind render(), with per-service group boundaries for split_restores()."""
    b = Buffers()
    mark = cfg.mark
    for name in C.FILTER_CHAINS:
        b.filter_chains.append(f":{name} - [0:0]")
    for name in C.NAT_CHAINS:
        b.nat_chain(name)
    b.nat_rules += [
        f"-A {C.KUBE_POSTROUTING} -m mark ! --mark {mark}/{mark} -j RETURN",
        # Clear the bit so a packet re-traversing the stack (e.g. via a tunnel) is not masqueraded twice.
        f"-A {C.KUBE_POSTROUTING} -j MARK --xor-mark {mark}",
        f'-A {C.KUBE_POSTROUTING} -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE',
        f"-A {C.KUBE_MARK_MASQ} -j MARK --or-mark {mark}",
    ]
    b.filter_rules += [
        f"-A {C.KUBE_FORWARD} -m conntrack --ctstate INVALID -j DROP",
        f'-A {C.KUBE_FORWARD} -m comment --comment "kubernetes forwarding rules" -m mark --mark {mark}/{mark} -j ACCEPT',
        f'-A {C.KUBE_FORWARD} -m comment --comment "kubernetes forwarding conntrack rule" '
        "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    ]
    skipped: set[str] = set()
    for spn in sorted(state.services):
        sp = state.services[spn]
        skip = only is not None and spn.service not in only
        write_service(b, cfg, sp, state.endpoints.get(spn, []), skip_chains=skip)
        if skip:
            skipped |= service_chains(sp, state)
        b.groups.append(len(b.nat_chains))
    b.nat_rules.append(
        f'-A {C.KUBE_SERVICES} -m comment --comment "kubernetes service nodeports; NOTE: this must be the '
        f'last rule in this chain" -m addrtype --dst-type LOCAL -j {C.KUBE_NODEPORTS}'
    )
    # Stale service chains: a chain line flushes them (dropping their references), then -X deletes.
    stale = sorted(c for c in existing_nat_chains if C.is_service_chain(c) and c not in b.active_nat | skipped)
    for c in stale:
        b.nat_chains.append(f":{c} - [0:0]")
        b.nat_rules.append(f"-X {c}")
    b.stale, b.skipped = stale, skipped
    return b


def split_restores(b: Buffers, limit: int) -> list[str]:
    """The same rules as b.text(), cut into several iptables-restore --noflush inputs.

    iptables-nft-restore 1.8.9 --noflush is quadratic in the size of ONE input (3k services: 8.7 s in
    one run, 1.2 s in batches of 500), not in the size of the table. So the per-service chains go
    first, a few thousand lines per run (no shared chain references them yet, or the old references
    keep working), then ONE final run rewrites the shared chains (KUBE-SERVICES, filter, ...) and
    deletes stale chains: the switch itself stays atomic. Small inputs stay a single restore."""
    per_chain: dict[str, list[str]] = {}
    own = {line[1:].split()[0] for line in b.nat_chains[len(C.NAT_CHAINS):b.groups[-1] if b.groups else 0]}
    rest: list[str] = []
    for r in b.nat_rules:
        parts = r.split(maxsplit=2)
        if parts[0] == "-A" and parts[1] in own:
            per_chain.setdefault(parts[1], []).append(r)
        else:
            rest.append(r)
    if sum(len(v) for v in per_chain.values()) + len(own) <= limit:
        return [b.text()]
    out: list[str] = []
    cur_decl: list[str] = []
    cur_rules: list[str] = []
    start = len(C.NAT_CHAINS)
    for end in b.groups:
        decls = b.nat_chains[start:end]
        start = end
        names = [d[1:].split()[0] for d in decls]
        rules = [r for n in names for r in per_chain.get(n, [])]
        if cur_decl and len(cur_decl) + len(cur_rules) + len(decls) + len(rules) > limit:
            out.append("\n".join(["*nat", *cur_decl, *cur_rules, "COMMIT"]) + "\n")
            cur_decl, cur_rules = [], []
        cur_decl += decls
        cur_rules += rules
    if cur_decl:
        out.append("\n".join(["*nat", *cur_decl, *cur_rules, "COMMIT"]) + "\n")
    final = ["*filter", *b.filter_chains, *b.filter_rules, "COMMIT",
             "*nat", *b.nat_chains[: len(C.NAT_CHAINS)], *b.nat_chains[b.groups[-1]:], *rest, "COMMIT"]
    out.append("\n".join(final) + "\n")
    return out

