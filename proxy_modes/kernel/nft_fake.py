"""An in-memory nft: parses the commands kube-proxy sends, refuses what nft/the kernel refuse, lists like nft."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field

from proxy_modes.kernel.nft import NftError

IP = r"\d{1,3}(?:\.\d{1,3}){3}"
NET = rf"{IP}(?:/\d{{1,2}})?"
NAME = r"[A-Za-z_.][A-Za-z0-9_./-]*"
# Statements a kube-proxy rule is made of; a rule must be a sequence of these and nothing else.
STATEMENTS = [re.compile(p) for p in (
    rf"ip (?:saddr|daddr) (?:!= )?(?:@{NAME}|\{{ {NET}(?: , {NET})* \}}|{NET})",
    rf"ip daddr \. meta l4proto \. th dport vmap @{NAME}",
    rf"meta l4proto \. th dport vmap @{NAME}",
    r"fib (?:saddr|daddr) type local",
    r"ct state new",
    rf"(?:jump|goto) {NAME}",
    r"mark set mark (?:or|xor) 0x[0-9a-f]+",
    r"mark and 0x[0-9a-f]+ == 0",
    r"return|drop|accept|reject",
    r"masquerade(?: fully-random)?",
    r"meta l4proto (?:tcp|udp|sctp)",
    rf"dnat to {IP}:\d+",
    rf"update @{NAME} \{{ ip saddr \}}",
    rf"numgen random mod \d+ vmap \{{ \d+ : goto {NAME}(?: , \d+ : goto {NAME})* \}}",
    r"numgen random mod \d+ \d+",
    r'comment "[^"]*"',
)]
KEYS = {
    "ipv4_addr": re.compile(rf"{IP}"),
    "ipv4_addr . inet_proto . inet_service": re.compile(rf"{IP} \. (?:tcp|udp|sctp) \. \d+"),
    "inet_proto . inet_service": re.compile(r"(?:tcp|udp|sctp) \. \d+"),
}
ENOENT = "Could not process rule: No such file or directory"
EEXIST = "Could not process rule: File exists"
EBUSY = "Could not process rule: Device or resource busy"


@dataclass
class Chain:
    hook: str = ""  # "type nat hook prerouting priority -100" for base chains
    comment: str = ""
    rules: list[str] = field(default_factory=list)


@dataclass
class NSet:
    kind: str  # "set" or "map"
    type: str
    flags: str = ""
    timeout: str = ""
    comment: str = ""
    elements: dict[str, tuple[str | None, str]] = field(default_factory=dict)  # key → (verdict, comment)


@dataclass
class Table:
    comment: str = ""
    chains: dict[str, Chain] = field(default_factory=dict)
    sets: dict[str, NSet] = field(default_factory=dict)


class _Refused(Exception):
    pass


def check_rule(t: Table, body: str) -> None:
    rest = body
    while rest:
        m = next((m for p in STATEMENTS if (m := p.match(rest)) and rest[m.end():m.end() + 1] in ("", " ")), None)
        if m is None:
            raise _Refused(f"syntax error, unexpected {rest.split()[0]}")
        rest = rest[m.end():].lstrip()
    for target in re.findall(rf"(?:jump|goto) ({NAME})", body):
        if target not in t.chains:
            raise _Refused(ENOENT)
        if t.chains[target].hook:
            raise _Refused("Could not process rule: Operation not supported")  # no jumps to base chains
    for s in re.findall(rf"@({NAME})", body):
        if s not in t.sets:
            raise _Refused(ENOENT)


def _split_top(text: str) -> list[str]:
    return [p.strip() for p in text.split(" , ") if p.strip()]


class FakeNft:
    """Stateful fake of the Nft protocol: transactions are atomic; a refused one changes nothing."""

    def __init__(self) -> None:
        self.tables: dict[tuple[str, str], Table] = {}
        self.scripts: list[str] = []
        self.fail_next: str | None = None  # inject one failure (message)

    # --- transactions ---------------------------------------------------------------------------
    def run(self, script: str) -> None:
        self.scripts.append(script)
        if self.fail_next is not None:
            msg, self.fail_next = self.fail_next, None
            raise NftError(msg)
        work = copy.deepcopy(self.tables)
        for n, line in enumerate(script.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                self._command(work, line)
            except _Refused as e:
                raise NftError(f"/dev/stdin:{n}: Error: {e}\n{line}") from None
        self.tables = work

    def _table(self, work: dict[tuple[str, str], Table], fam: str, name: str) -> Table:
        if (fam, name) not in work:
            raise _Refused(ENOENT)
        return work[(fam, name)]

    def _command(self, work: dict[tuple[str, str], Table], line: str) -> None:
        m = re.fullmatch(rf"(add|delete|flush) (table|chain|rule|set|map|element) (ip|ip6|inet) ({NAME})(?: (.*))?", line)
        if not m:
            raise _Refused(f"syntax error, unexpected {line.split()[0]}")
        op, kind, fam, tname, rest = m.groups()
        rest = rest or ""
        if kind == "table":
            if op == "add":
                c = re.fullmatch(r'(?:\{ comment "([^"]*)" ; \})?', rest)
                if c is None:
                    raise _Refused("syntax error in table declaration")
                work.setdefault((fam, tname), Table(c.group(1) or ""))
            elif op == "delete":
                self._table(work, fam, tname)
                del work[(fam, tname)]
            else:
                raise _Refused("syntax error, flush table is not used")
            return
        t = self._table(work, fam, tname)
        name, _, tail = rest.partition(" ")
        if not re.fullmatch(NAME, name or ""):
            raise _Refused(f"syntax error, bad name {name!r}")
        getattr(self, f"_{kind}")(t, op, name, tail.strip())

    def _chain(self, t: Table, op: str, name: str, tail: str) -> None:
        if op == "add":
            hook = comment = ""
            rules: list[str] = []
            if tail:
                b = re.fullmatch(r"\{ type (filter|nat) hook (prerouting|input|forward|output|postrouting) priority (-?\d+) ; \}", tail)
                c = re.fullmatch(r'\{ comment "([^"]*)" ; \}', tail)
                block = re.fullmatch(r"\{ ((?:.+? ; )+)\}", tail)  # "add chain X { rule ; rule ; }"
                if b:
                    hook = f"type {b.group(1)} hook {b.group(2)} priority {b.group(3)}"
                elif c:
                    comment = c.group(1)
                elif block:
                    rules = [r for r in block.group(1).split(" ; ") if r.strip()]
                else:
                    raise _Refused("syntax error in chain declaration")
            if name not in t.chains:
                t.chains[name] = Chain(hook, comment)
            elif hook and t.chains[name].hook != hook:
                raise _Refused(EEXIST)  # a base chain cannot change type/hook/priority
            for r in rules:
                self._rule(t, "add", name, r.strip())
            return
        if tail or name not in t.chains:
            raise _Refused(ENOENT if not tail else "syntax error")
        if op == "flush":
            t.chains[name].rules = []
            return
        if self._refs(t, name, skip=name):
            raise _Refused(EBUSY)
        del t.chains[name]

    def _refs(self, t: Table, target: str, skip: str = "") -> int:
        n = sum(1 for c, ch in t.chains.items() if c != skip for r in ch.rules
                if re.search(rf"(?:jump|goto) {re.escape(target)}(?: |$)", r))
        return n + sum(1 for s in t.sets.values() for v, _ in s.elements.values() if v == f"goto {target}" or v == f"jump {target}")

    def _rule(self, t: Table, op: str, chain: str, body: str) -> None:
        if op != "add":
            raise _Refused("syntax error, rules are only added here")
        if chain not in t.chains:
            raise _Refused(ENOENT)
        check_rule(t, body)
        t.chains[chain].rules.append(body)

    def _set(self, t: Table, op: str, name: str, tail: str, kind: str = "set") -> None:
        if op == "add":
            m = re.fullmatch(r"\{ type ([a-z0-9_ .:]+?) ;(?: flags ([a-z,]+) ;)?(?: timeout (\d+s) ;)?(?: comment \"([^\"]*)\" ;)?"
                             r"(?: elements = (\{ .* \}) ;)? \}", tail)
            if not m:
                raise _Refused("syntax error in set declaration")
            typ, flags, timeout, comment = m.group(1), m.group(2) or "", m.group(3) or "", m.group(4) or ""
            key_type = typ.split(" : ")[0]
            if key_type not in KEYS or (kind == "map") != typ.endswith(" : verdict"):
                raise _Refused(f"syntax error, unsupported type {typ!r}")
            old = t.sets.get(name)
            if old is None:
                t.sets[name] = NSet(kind, typ, flags, timeout, comment)
            elif (old.kind, old.type, old.flags, old.timeout) != (kind, typ, flags, timeout):
                raise _Refused(EEXIST)  # same name, different object
            if m.group(5):
                self._element(t, "add", name, m.group(5))  # "add map X { …; elements = { … } ; }"
            return
        s = t.sets.get(name)
        if s is None or s.kind != kind or tail:
            raise _Refused(ENOENT)
        if op == "flush":
            s.elements = {}
        elif any(re.search(rf"@{re.escape(name)}(?: |$)", r) for ch in t.chains.values() for r in ch.rules):
            raise _Refused(EBUSY)
        else:
            del t.sets[name]

    def _map(self, t: Table, op: str, name: str, tail: str) -> None:
        self._set(t, op, name, tail, kind="map")

    def _element(self, t: Table, op: str, name: str, tail: str) -> None:
        s = t.sets.get(name)
        if s is None:
            raise _Refused(ENOENT)
        m = re.fullmatch(r"\{ (.*) \}", tail)
        if not m or op == "flush":
            raise _Refused("syntax error in element list")
        key_re = KEYS[s.type.split(" : ")[0]]
        for item in _split_top(m.group(1)):
            e = re.fullmatch(r'(.+?)(?: comment "([^"]*)")?(?: : (.+))?', item)
            assert e is not None
            key, comment, verdict = e.group(1), e.group(2) or "", e.group(3)
            if not key_re.fullmatch(key):
                raise _Refused(f"syntax error, bad key {key!r} for type {s.type}")
            if op == "delete":
                if key not in s.elements:
                    raise _Refused(ENOENT)
                del s.elements[key]
                continue
            if (s.kind == "map") != (verdict is not None):
                raise _Refused("syntax error, element data does not match the set type")
            if verdict is not None:
                v = re.fullmatch(rf"(?:(goto|jump) ({NAME})|drop|accept)", verdict)
                if not v:
                    raise _Refused(f"syntax error, bad verdict {verdict!r}")
                if v.group(2) and v.group(2) not in t.chains:
                    raise _Refused(ENOENT)
            if key in s.elements and s.elements[key][0] != verdict:
                raise _Refused(EEXIST)
            s.elements[key] = (verdict, comment)

    # --- reading --------------------------------------------------------------------------------
    def table_exists(self, family: str, table: str) -> bool:
        return (family, table) in self.tables

    def list_names(self, family: str, table: str) -> tuple[set[str], set[str]]:
        t = self.tables.get((family, table))
        return (set(t.chains), set(t.sets)) if t else (set(), set())

    def list_table(self, family: str, table: str, terse: bool = False) -> str:
        from proxy_modes.kernel.nft_listing import listing

        t = self.tables.get((family, table))
        if t is None:
            raise NftError(f"Error: No such file or directory\nlist table {family} {table}")
        return listing(family, table, t, terse)
