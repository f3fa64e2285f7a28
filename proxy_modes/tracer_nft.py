"""Packet tracer over `nft list table ip kube-proxy` output: hooks, vmaps, numgen odds, DNAT, masquerade."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, replace

from proxy_modes.tracer import Packet, Path, TraceResult

HOOK_ORDER = {  # the netfilter hooks a packet meets, in order, for each way it can go
    "forward": ("prerouting", "forward", "postrouting"),
    "input": ("prerouting", "input"),
    "output": ("output", "postrouting"),
}
_ITEMS = re.compile(r',\s*(?=(?:[^"]*"[^"]*")*[^"]*$)')  # commas outside quotes


@dataclass
class NftTable:
    chains: dict[str, list[str]] = field(default_factory=dict)
    base: dict[str, tuple[str, str, int]] = field(default_factory=dict)  # chain → (type, hook, prio)
    sets: dict[str, dict[str, str | None]] = field(default_factory=dict)  # key → verdict


PRIO_NAMES = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50, "srcnat": 100}


def _prio(text: str) -> int:
    parts = text.split()
    value = PRIO_NAMES[parts[0]] if parts[0] in PRIO_NAMES else int(parts[0])
    if len(parts) == 3:
        value += int(parts[2]) * (1 if parts[1] == "+" else -1)
    return value


def parse_listing(text: str) -> NftTable:
    """Parse one `nft list table` output (element lists may span several lines)."""
    t = NftTable()
    lines = iter(text.splitlines())
    cur_chain: str | None = None
    cur_set: str | None = None
    for raw in lines:
        line = raw.strip()
        if m := re.fullmatch(r"chain (\S+) \{", line):
            cur_chain, cur_set = m.group(1), None
            t.chains[cur_chain] = []
        elif m := re.fullmatch(r"(?:set|map) (\S+) \{", line):
            cur_set, cur_chain = m.group(1), None
            t.sets[cur_set] = {}
        elif line == "}":
            cur_chain = cur_set = None
        elif cur_chain is not None:
            if m := re.fullmatch(r"type (\w+) hook (\w+) priority ([^;]+); policy \w+;", line):
                t.base[cur_chain] = (m.group(1), m.group(2), _prio(m.group(3)))
            elif not line.startswith("comment "):
                t.chains[cur_chain].append(line)
        elif cur_set is not None and line.startswith("elements = {"):
            body = line[len("elements = {"):]
            while not body.rstrip().endswith("}"):
                body += " " + next(lines).strip()
            for item in _ITEMS.split(body.rstrip()[:-1].strip()):
                key, _, verdict = item.partition(" : ")
                key = re.sub(r' comment "[^"]*"', "", key).strip()
                t.sets[cur_set][key] = verdict.strip() or None
    return t


def _in(ip: str, spec: str, t: NftTable) -> bool:
    if spec.startswith("@"):
        return ip in t.sets.get(spec[1:], {})
    items = [s.strip() for s in spec.strip("{} ").split(",")] if spec.startswith("{") else [spec]
    return any(ipaddress.IPv4Address(ip) in ipaddress.IPv4Network(i, strict=False) for i in items)


class NftTracer:
    """Same interface and result type as proxy_modes.tracer.Tracer, for nftables mode."""

    def __init__(self, listing: str) -> None:
        self.table = parse_listing(listing)

    def trace(self, pkt: Packet) -> TraceResult:
        done: list[Path] = []
        hooks = HOOK_ORDER["output"] if pkt.in_iface is None else None
        for p in self._hook(pkt, "output" if hooks else "prerouting", [Path(dst=pkt.dst, dport=pkt.dport)]):
            if p.verdict != "ACCEPT":
                done.append(p)
                continue
            if hooks is None:  # routing decision after prerouting DNAT
                way = "input" if self._local(pkt, p.dst) else "forward"
                rest = HOOK_ORDER[way][1:]
            else:
                rest = hooks[1:]
            paths = [p]
            for hook in rest:
                nxt: list[Path] = []
                for q in paths:
                    if q.verdict == "ACCEPT":
                        nxt += self._hook(pkt, hook, [replace(q, verdict="", hits=list(q.hits))])
                    else:
                        nxt.append(q)
                paths = nxt
            done += paths
        return TraceResult(done)

    def _hook(self, pkt: Packet, hook: str, paths: list[Path]) -> list[Path]:
        chains = sorted((prio, name) for name, (_, h, prio) in self.table.base.items() if h == hook)
        for _, name in chains:
            nxt: list[Path] = []
            for p in paths:
                if p.verdict not in ("", "ACCEPT"):
                    nxt.append(p)
                    continue
                p.verdict = ""
                for q in self._run(pkt, name, 0, p):
                    q.verdict = q.verdict or "ACCEPT"  # base chain policy accept
                    nxt.append(q)
            paths = nxt
        for p in paths:
            p.verdict = p.verdict or "ACCEPT"
        return paths

    def _local(self, pkt: Packet, ip: str) -> bool:
        return ip in pkt.local_ips or ipaddress.IPv4Address(ip).is_loopback

    def _run(self, pkt: Packet, chain: str, i: int, p: Path) -> list[Path]:
        """Run `chain` from rule i; returned paths have verdict "" if they fell off / returned."""
        rules = self.table.chains.get(chain, [])
        while i < len(rules):
            outcome = self._rule(pkt, chain, rules[i], p)
            if outcome is None:  # no match
                i += 1
                continue
            out: list[Path] = []
            for kind, target, q in outcome:
                if kind == "continue":
                    out += self._run(pkt, chain, i + 1, q)
                elif kind == "jump":
                    for r in self._run(pkt, target, 0, q):
                        out += self._run(pkt, chain, i + 1, r) if r.verdict == "" else [r]
                elif kind == "goto":
                    out += self._run(pkt, target, 0, q)  # a return there returns from this chain too
                else:
                    out.append(q)  # terminal verdict or "return"
            return out
        return [p]

    def _rule(self, pkt: Packet, chain: str, rule: str, p: Path) -> list[tuple[str, str, Path]] | None:
        hit = replace(p, hits=[*p.hits, f"{chain}: {rule}"])
        return self._match(pkt, re.sub(r' comment "[^"]*"', "", rule), hit, p)

    def _match(self, pkt: Packet, rest: str, p: Path, before: Path) -> list[tuple[str, str, Path]] | None:
        """Statements of one rule from `rest` on; `before` is the path as it entered the rule."""
        while rest:
            m = re.match(r"ip (saddr|daddr) (!= )?(\{[^}]*\}|\S+) ?", rest)
            if m and "vmap" not in rest[: m.end()] and not rest.startswith("ip daddr . "):
                ip = pkt.src if m.group(1) == "saddr" else p.dst
                if _in(ip, m.group(3), self.table) == bool(m.group(2)):
                    return None
                rest = rest[m.end():]
                continue
            if m := re.match(r"(ip daddr \. )?meta l4proto \. th dport vmap @(\S+) ?", rest):
                key = (f"{p.dst} . " if m.group(1) else "") + f"{pkt.proto} . {p.dport}"
                verdict = self.table.sets.get(m.group(2), {}).get(key)
                return None if verdict is None else [self._verdict(verdict, p)]
            if m := re.match(r"fib (saddr|daddr) type local ?", rest):
                ok = (pkt.in_iface is None or pkt.src in pkt.local_ips) if m.group(1) == "saddr" else self._local(pkt, p.dst)
                if not ok:
                    return None
                rest = rest[m.end():]
                continue
            if m := re.match(r"(ct state new|update @\S+ \{ ip saddr \}) ?", rest):
                rest = rest[m.end():]  # a traced packet opens a new connection; updates change nothing here
                continue
            if m := re.match(r"meta l4proto (\w+) ?", rest):
                if m.group(1) != pkt.proto:
                    return None
                rest = rest[m.end():]
                continue
            if m := re.match(r"meta mark & (0x[0-9a-f]+) == (0x[0-9a-f]+) ?", rest):
                if p.mark & int(m.group(1), 16) != int(m.group(2), 16):
                    return None
                rest = rest[m.end():]
                continue
            if m := re.match(r"meta mark set meta mark ([|^]) (0x[0-9a-f]+) ?", rest):
                v = int(m.group(2), 16)
                p.mark = p.mark | v if m.group(1) == "|" else p.mark ^ v
                rest = rest[m.end():]
                if not rest:
                    return [("continue", "", p)]
                continue
            if m := re.match(r"numgen random mod (\d+) (\d+) ?", rest):
                # Matches with odds 1/K; both ways go on (the miss to the next rule, unrecorded).
                k, v = int(m.group(1)), int(m.group(2))
                if v >= k:
                    return None
                miss = replace(before, prob=before.prob * (k - 1) / k, hits=list(before.hits))
                taken = replace(p, prob=p.prob / k, hits=list(p.hits))
                out = self._match(pkt, rest[m.end():], taken, before) or [("continue", "", taken)]
                return ([("continue", "", miss)] if k > 1 else []) + out
            if m := re.match(r"numgen random mod (\d+) vmap \{ (.*) \}", rest):
                arms = [a.split(" : ", 1)[1] for a in m.group(2).split(", ")]
                return [self._verdict(v, replace(p, prob=p.prob / len(arms), hits=list(p.hits))) for v in arms]
            if m := re.match(r"dnat to ([\d.]+):(\d+)", rest):
                p.dnat, p.dst, p.dport = f"{m.group(1)}:{m.group(2)}", m.group(1), int(m.group(2))
                p.verdict = "ACCEPT"
                return [("stop", "", p)]
            if rest.startswith("masquerade"):
                p.masquerade, p.verdict = True, "ACCEPT"
                return [("stop", "", p)]
            return [self._verdict(rest.strip(), p)]
        return [("continue", "", p)]

    @staticmethod
    def _verdict(v: str, p: Path) -> tuple[str, str, Path]:
        kind, _, target = v.partition(" ")
        if kind in ("jump", "goto"):
            return kind, target, p
        if kind == "return":
            return "stop", "", p
        p.verdict = kind.upper()
        return "stop", "", p
