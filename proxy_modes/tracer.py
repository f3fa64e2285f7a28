"""Packet tracer over iptables-save text: which rules a packet hits, its DNAT targets and their odds."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace

from proxy_modes.kernel.rules import Rule, parse

BUILTIN_TARGETS = {"ACCEPT", "DROP", "REJECT", "RETURN", "DNAT", "MASQUERADE", "MARK", "SNAT", "REDIRECT"}
Tables = dict[str, dict[str, list[tuple[str, Rule]]]]


def parse_save(text: str) -> Tables:
    """iptables-save output (any number of tables) → table → chain → [(rule text, parsed rule)]."""
    tables: Tables = {}
    cur: dict[str, list[tuple[str, Rule]]] = {}
    for line in text.splitlines():
        if line.startswith("*"):
            cur = tables.setdefault(line[1:].strip(), {})
        elif line.startswith(":"):
            cur.setdefault(line[1:].split()[0], [])
        elif line.startswith("-A "):
            chain, _, spec = line[3:].partition(" ")
            cur.setdefault(chain, []).append((line, parse(spec)))
    return tables


@dataclass
class Path:
    """One way through the rules, with the probability of taking it."""

    prob: float = 1.0
    dst: str = ""
    dport: int = 0
    mark: int = 0
    verdict: str = ""  # ACCEPT, DROP, REJECT ("" while running)
    dnat: str | None = None  # "ip:port"
    masquerade: bool = False
    hits: list[str] = field(default_factory=list)


@dataclass
class Packet:
    src: str
    dst: str
    dport: int
    proto: str = "tcp"
    in_iface: str | None = None  # None: locally generated (OUTPUT path)
    local_ips: tuple[str, ...] = ()  # the node's addresses, for "-m addrtype LOCAL"


@dataclass
class TraceResult:
    paths: list[Path]

    def targets(self) -> dict[str, float]:
        """DNAT destination → probability (a path without DNAT appears as its verdict)."""
        out: dict[str, float] = {}
        for p in self.paths:
            key = p.dnat if p.dnat and p.verdict == "ACCEPT" else p.verdict
            out[key] = out.get(key, 0.0) + p.prob
        return out

    @property
    def masquerade(self) -> bool:
        return any(p.masquerade for p in self.paths)


class Tracer:
    def __init__(self, save_text: str) -> None:
        self.tables = parse_save(save_text)

    def trace(self, pkt: Packet) -> TraceResult:
        start = Path(dst=pkt.dst, dport=pkt.dport)
        first = "OUTPUT" if pkt.in_iface is None else "PREROUTING"
        done: list[Path] = []
        for p in self._chain(pkt, "nat", first, start, builtin=True):
            # Routing decision after DNAT: to this node (INPUT), or through it (FORWARD).
            hook = "OUTPUT" if pkt.in_iface is None else ("INPUT" if self._local(pkt, p.dst) else "FORWARD")
            for q in self._chain(pkt, "filter", hook, replace(p, verdict=""), builtin=True):
                if q.verdict != "ACCEPT" or hook == "INPUT":
                    done.append(q)
                    continue
                done += self._chain(pkt, "nat", "POSTROUTING", replace(q, verdict=""), builtin=True)
        return TraceResult(done)

    @staticmethod
    def _local(pkt: Packet, ip: str) -> bool:
        return ip in pkt.local_ips or ipaddress.IPv4Address(ip).is_loopback

    def _chain(self, pkt: Packet, table: str, chain: str, p: Path, builtin: bool = False) -> list[Path]:
        out = self._run(pkt, table, chain, 0, p)
        if builtin:
            for q in out:
                if q.verdict in ("", "RETURN"):
                    q.verdict = "ACCEPT"  # base-chain policy (we never set another)
        return out

    def _run(self, pkt: Packet, table: str, chain: str, i: int, p: Path) -> list[Path]:
        rules = self.tables.get(table, {}).get(chain, [])
        while i < len(rules):
            text, rule = rules[i]
            chance = self._matches(pkt, p, rule)
            if chance == 0.0:
                i += 1
                continue
            if chance < 1.0:  # "-m statistic": both branches are possible
                taken = self._apply(pkt, table, chain, i, replace(p, prob=p.prob * chance, hits=list(p.hits)))
                rest = self._run(pkt, table, chain, i + 1, replace(p, prob=p.prob * (1 - chance), hits=list(p.hits)))
                return taken + rest
            return self._apply(pkt, table, chain, i, p)
        return [p]

    def _apply(self, pkt: Packet, table: str, chain: str, i: int, p: Path) -> list[Path]:
        text, rule = self.tables[table][chain][i]
        p.hits.append(f"{table} {text}")
        t = rule.target
        if t is None:
            return self._run(pkt, table, chain, i + 1, p)
        if t not in BUILTIN_TARGETS:
            out: list[Path] = []
            for q in self._run(pkt, table, t, 0, p):
                if q.verdict in ("", "RETURN"):
                    q.verdict = ""
                    out += self._run(pkt, table, chain, i + 1, q)
                else:
                    out.append(q)
            return out
        if t == "MARK":
            value, _, mask = (rule.target_opt("--set-xmark") or "0x0/0x0").partition("/")
            p.mark = (p.mark & ~int(mask or "0xffffffff", 16)) ^ int(value, 16)
            return self._run(pkt, table, chain, i + 1, p)
        if t == "DNAT":
            to = rule.target_opt("--to-destination") or ""
            p.dnat, p.verdict = to, "ACCEPT"
            host, _, port = to.partition(":")
            p.dst, p.dport = host, int(port or p.dport)
            return [p]
        if t == "REDIRECT":
            # DNAT to the node's own address (userspace mode's portals point at its proxy socket).
            port = rule.target_opt("--to-ports") or str(p.dport)
            local = pkt.local_ips[0] if pkt.local_ips else "127.0.0.1"
            p.dnat, p.verdict, p.dst, p.dport = f"{local}:{port}", "ACCEPT", local, int(port)
            return [p]
        if t == "MASQUERADE":
            p.masquerade, p.verdict = True, "ACCEPT"
            return [p]
        p.verdict = t if t != "SNAT" else "ACCEPT"
        return [p]

    def _matches(self, pkt: Packet, p: Path, r: Rule) -> float:
        g = r.generic

        def neg(key: str, ok: bool) -> bool:
            return ok != g[key][0]

        if "src" in g and not neg("src", ipaddress.IPv4Address(pkt.src) in ipaddress.IPv4Network(g["src"][1])):
            return 0.0
        if "dst" in g and not neg("dst", ipaddress.IPv4Address(p.dst) in ipaddress.IPv4Network(g["dst"][1])):
            return 0.0
        if "proto" in g and not neg("proto", g["proto"][1] == pkt.proto):
            return 0.0
        if "in_iface" in g and not neg("in_iface", g["in_iface"][1] == (pkt.in_iface or "lo")):
            return 0.0
        chance = 1.0
        for m in r.matches:
            c = self._match_one(pkt, p, m)
            if c == 0.0:
                return 0.0
            chance *= c
        return chance

    def _match_one(self, pkt: Packet, p: Path, m: object) -> float:
        from proxy_modes.kernel.rules import Match

        assert isinstance(m, Match)
        ok = True
        for negated, opt, val in m.opts:
            hit = True
            if m.name in ("tcp", "udp", "sctp") and opt == "--dport":
                hit = str(p.dport) == val
            elif opt == "--dst-type":
                hit = val == "LOCAL" and self._local(pkt, p.dst)
            elif opt == "--src-type":
                hit = val == "LOCAL" and pkt.in_iface is None
            elif opt == "--mark":
                v, _, mask = (val or "0").partition("/")
                hit = p.mark & int(mask or "0xffffffff", 16) == int(v, 16)
            elif opt == "--ctstate":
                hit = "NEW" in (val or "").split(",")  # a traced packet opens a new connection
            elif opt == "--rcheck" or opt == "--update":
                hit = False  # no affinity recorded yet for a first packet
            elif opt == "--probability":
                return float(val or 0) if not negated else 1 - float(val or 0)
            ok = ok and (hit != negated)
        return 1.0 if ok else 0.0
