"""Pure formatting of a packet trace: rules hit per path, DNAT targets with odds, where each ends."""

from __future__ import annotations

from dataclasses import dataclass

from proxy_modes.tracer import TraceResult


@dataclass(frozen=True)
class Flow:
    """What `netkube trace` traces, already resolved to addresses."""

    src: str
    src_label: str  # e.g. "pod default/client on node2", "node node1", "client"
    dst: str
    dport: int
    proto: str
    dst_label: str  # e.g. "svc default/web:http", or ""
    node: str  # where the packet enters netfilter
    in_iface: str | None  # None: generated on the node itself
    mode: str


def pct(p: float) -> str:
    return f"{100 * p:.1f}%"


def format_trace(flow: Flow, result: TraceResult, owners: dict[str, str],
                 expand: dict[str, list[str]] | None = None, verbose: bool = True) -> str:
    """`owners`: IP → "node2 pod default/web-1" (or "node node2"); `expand`: for userspace mode,
    a proxy address "ip:port" → the endpoints its round-robin balancer picks from."""
    dst = f"{flow.dst}:{flow.dport}" + (f" ({flow.dst_label})" if flow.dst_label else "")
    via = f"from {flow.in_iface}" if flow.in_iface else "locally generated (OUTPUT)"
    lines = [f"trace {flow.proto} {flow.src} ({flow.src_label}) -> {dst}",
             f"netfilter on {flow.node}, {flow.mode} mode, {via}"]
    if verbose:
        for i, path in enumerate(result.paths, 1):
            lines.append(f"path {i} (p={path.prob:.3f}):")
            lines += [f"  {hit}" for hit in path.hits] or ["  (no rule matched)"]
            end = f"DNAT {path.dnat}" if path.dnat else path.verdict
            lines.append(f"  => {end}, masquerade {'yes' if path.masquerade else 'no'}")
    lines.append("targets:")
    masq: dict[str, bool] = {}
    for p in result.paths:
        key = p.dnat if p.dnat and p.verdict == "ACCEPT" else p.verdict
        masq[key] = masq.get(key, False) or p.masquerade
    for target, prob in sorted(result.targets().items(), key=lambda kv: (-kv[1], kv[0])):
        m = "yes" if masq.get(target) else "no"
        inner = (expand or {}).get(target)
        if inner is not None:
            lines.append(f"  {target:<22} {pct(prob):>6}  userspace proxy on {flow.node}, round-robin over "
                         f"{len(inner)} endpoint(s); the proxy connects from the node (source rewritten)")
            for ep in inner:
                share = prob / len(inner)
                lines.append(f"    {ep:<20} {pct(share):>6}  ends on {owners.get(ep.rpartition(':')[0], '?')}")
            if not inner:
                lines.append("    (no endpoints: the proxy closes the connection)")
            continue
        where = owners.get(target.rpartition(":")[0], "?") if ":" in target else _verdict_note(target, flow)
        lines.append(f"  {target:<22} {pct(prob):>6}  masquerade {m:<3}  ends on {where}")
    return "\n".join(lines)


def _verdict_note(verdict: str, flow: Flow) -> str:
    return {
        "REJECT": "nothing: rejected (no endpoints; the client sees connection refused)",
        "DROP": "nothing: dropped (no local endpoint for externalTrafficPolicy Local)",
        "ACCEPT": f"not rewritten: delivered as addressed ({flow.dst})",
    }.get(verdict, verdict)
