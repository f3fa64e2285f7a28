"""Parse one iptables rule spec and print it the way iptables-save (v1.8, nf_tables) prints it back."""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass, field

# Options of each match we understand, and whether each takes a value; anything else is refused
# like the kernel refuses a match it cannot load.
MATCH_OPTS: dict[str, dict[str, bool]] = {
    "tcp": {"--dport": True, "--sport": True, "--tcp-flags": True},
    "udp": {"--dport": True, "--sport": True},
    "sctp": {"--dport": True, "--sport": True},
    "comment": {"--comment": True},
    "statistic": {"--mode": True, "--probability": True, "--every": True, "--packet": True},
    "recent": {"--name": True, "--set": False, "--rcheck": False, "--update": False, "--remove": False,
               "--seconds": True, "--reap": False, "--rsource": False, "--rdest": False, "--mask": True},
    "mark": {"--mark": True},
    "conntrack": {"--ctstate": True},
    "addrtype": {"--src-type": True, "--dst-type": True},
    "set": {"--match-set": True},  # ipvs mode: "--match-set NAME dst,dst" (two words, kept as one value)
}
TWO_WORD_OPTS = ("--match-set",)
TARGET_OPTS: dict[str, dict[str, bool]] = {
    "MARK": {"--or-mark": True, "--xor-mark": True, "--set-xmark": True, "--set-mark": True},
    "DNAT": {"--to-destination": True},
    "REJECT": {"--reject-with": True},
    "MASQUERADE": {"--random-fully": False, "--random": False, "--to-ports": True},
    "ACCEPT": {}, "DROP": {}, "RETURN": {},
    "REDIRECT": {"--to-ports": True, "--random": False},  # userspace mode's portals
}
GENERIC = {"-s": "src", "--source": "src", "-d": "dst", "--destination": "dst", "-p": "proto",
           "--protocol": "proto", "-i": "in_iface", "--in-interface": "in_iface",
           "-o": "out_iface", "--out-interface": "out_iface"}
PROTO_MATCHES = ("tcp", "udp", "sctp")


class RuleError(ValueError):
    """The rule is one the kernel (or iptables) would refuse; message as iptables words it."""


@dataclass
class Match:
    name: str
    opts: list[tuple[bool, str, str | None]] = field(default_factory=list)  # (negated, option, value)

    def get(self, opt: str) -> str | None:
        return next((v for _, o, v in self.opts if o == opt), None)

    def has(self, opt: str) -> bool:
        return any(o == opt for _, o, _v in self.opts)

    def negated(self, opt: str) -> bool:
        return any(n for n, o, _v in self.opts if o == opt)


@dataclass
class Rule:
    generic: dict[str, tuple[bool, str]] = field(default_factory=dict)  # key -> (negated, value)
    matches: list[Match] = field(default_factory=list)
    target: str | None = None
    target_opts: list[tuple[str, str | None]] = field(default_factory=list)

    def match(self, name: str) -> Match | None:
        return next((m for m in self.matches if m.name == name), None)

    def target_opt(self, opt: str) -> str | None:
        return next((v for o, v in self.target_opts if o == opt), None)

    def canonical(self) -> str:
        return render(self)


def _addr(value: str) -> str:
    try:
        return str(ipaddress.IPv4Network(value, strict=False))  # the kernel keeps network bits only
    except ValueError:
        raise RuleError(f"host/network `{value}' not found") from None


def parse(spec: str | list[str]) -> Rule:
    """Parse the part of a rule after "-A CHAIN"; `spec` is a string or an argv list."""
    toks = shlex.split(spec) if isinstance(spec, str) else list(spec)
    rule, i, neg = Rule(), 0, False
    while i < len(toks):
        t = toks[i]
        if t == "!":
            neg, i = True, i + 1
            continue
        if t in GENERIC:
            key = GENERIC[t]
            val = toks[i + 1] if i + 1 < len(toks) else None
            if val is None:
                raise RuleError(f"option \"{t}\" requires an argument")
            if key in ("src", "dst"):
                val = _addr(val)
            if key == "proto":
                val = val.lower()
            rule.generic[key] = (neg, val)
            i, neg = i + 2, False
            continue
        if t in ("-m", "--match"):
            name = toks[i + 1]
            if name not in MATCH_OPTS:
                raise RuleError(f"Couldn't load match `{name}':No such file or directory")
            rule.matches.append(Match(name))
            i += 2
            continue
        if t in ("-j", "--jump"):
            rule.target = toks[i + 1]
            i += 2
            opts = TARGET_OPTS.get(rule.target, {})
            while i < len(toks):
                o = toks[i]
                if o not in opts:
                    raise RuleError(f"unknown option \"{o}\" for target {rule.target}")
                val = toks[i + 1] if opts[o] else None
                rule.target_opts.append((o, val))
                i += 2 if opts[o] else 1
            break
        # A match option: belongs to the current match, or (like iptables) implicitly loads the
        # protocol's match, e.g. "-p tcp --dport 80" is saved as "-p tcp -m tcp --dport 80".
        # getopt semantics: any loaded match may claim the option, the latest one first.
        owner = next((m for m in reversed(rule.matches) if t in MATCH_OPTS[m.name]), None)
        if owner is None:
            proto = rule.generic.get("proto", (False, ""))[1]
            owner = rule.match(proto) if proto in PROTO_MATCHES else None
            if owner is None and proto in PROTO_MATCHES and t in MATCH_OPTS[proto]:
                owner = Match(proto)
                rule.matches.append(owner)
            if owner is None:
                raise RuleError(f"unknown option \"{t}\"")
        takes = MATCH_OPTS[owner.name][t]
        if takes and i + 1 >= len(toks):
            raise RuleError(f"option \"{t}\" requires an argument")
        if t in TWO_WORD_OPTS:
            if i + 2 >= len(toks):
                raise RuleError(f"option \"{t}\" requires two arguments")
            owner.opts.append((neg, t, f"{toks[i + 1]} {toks[i + 2]}"))
            i, neg = i + 3, False
            continue
        owner.opts.append((neg, t, toks[i + 1] if takes else None))
        i, neg = i + (2 if takes else 1), False
    for m in rule.matches:
        if m.name in PROTO_MATCHES and rule.generic.get("proto", (False, ""))[1] != m.name:
            raise RuleError(f"Couldn't load match `{m.name}': needs -p {m.name}")
    return rule


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _match_text(m: Match) -> list[str]:
    out = ["-m", m.name]
    if m.name == "statistic" and m.get("--mode") == "random":
        # The kernel keeps the probability as a 31-bit fraction; iptables prints it with 11 decimals.
        p = float(m.get("--probability") or 0)
        stored = round(p * 0x80000000)
        return out + ["--mode", "random", "--probability", f"{stored / 0x80000000:.11f}"]
    if m.name == "recent":
        lead = [o for _n, o, _v in m.opts if o in ("--set", "--rcheck", "--update", "--remove")]
        out += [*lead]
        if m.has("--seconds"):
            out += ["--seconds", str(m.get("--seconds"))]
        if m.has("--reap"):
            out.append("--reap")
        out += ["--name", m.get("--name") or "DEFAULT", "--mask", m.get("--mask") or "255.255.255.255"]
        return out + ["--rdest" if m.has("--rdest") else "--rsource"]
    for neg, o, v in m.opts:
        if neg:
            out.append("!")
        out.append(o)
        if v is not None:
            out.append(_quote(v) if m.name == "comment" else v)
    return out


def _target_text(r: Rule) -> list[str]:
    if r.target is None:
        return []
    out = ["-j", r.target]
    if r.target == "MARK":
        o, v = r.target_opts[0] if r.target_opts else ("--set-xmark", "0x0")
        assert v is not None
        if o == "--or-mark":
            return out + ["--set-xmark", f"{v}/{v}"]
        if o == "--xor-mark":
            return out + ["--set-xmark", f"{v}/0x0"]
        if o == "--set-mark":
            return out + ["--set-xmark", f"{v}/0xffffffff"]
        return out + ["--set-xmark", v]
    if r.target == "REJECT" and not r.target_opts:
        return out + ["--reject-with", "icmp-port-unreachable"]
    for o, v in r.target_opts:
        out += [o] if v is None else [o, v]
    return out


def render(r: Rule) -> str:
    """The rule as iptables-save prints it (without "-A CHAIN")."""
    out: list[str] = []
    for key, flag in (("src", "-s"), ("dst", "-d"), ("in_iface", "-i"), ("out_iface", "-o"), ("proto", "-p")):
        if key in r.generic:
            neg, val = r.generic[key]
            out += (["!"] if neg else []) + [flag, val]
    for m in r.matches:
        out += _match_text(m)
    out += _target_text(r)
    return " ".join(out)
