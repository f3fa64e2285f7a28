"""An in-memory iptables that parses restore input, refuses what the kernel refuses, prints like iptables-save."""

from __future__ import annotations

import copy
import shlex

from proxy_modes.kernel.iptables import IptablesError, Position
from proxy_modes.kernel.rules import TARGET_OPTS, RuleError, parse

BUILTIN: dict[str, tuple[str, ...]] = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
}
PREFIX = "iptables-restore v1.8.9 (nf_tables): "


class Table:
    def __init__(self, name: str) -> None:
        self.name = name
        self.policy = {c: "ACCEPT" for c in BUILTIN[name]}
        self.chains: dict[str, list[str]] = {c: [] for c in BUILTIN[name]}  # canonical rule texts

    def refs(self, chain: str) -> int:
        return sum(1 for rules in self.chains.values() for r in rules if f"-j {chain}" == _jump(r))

    def check_rule(self, chain: str, spec: str) -> str:
        if chain not in self.chains:
            raise RuleError("No chain/target/match by that name.")
        rule = parse(spec)
        if rule.target and rule.target not in TARGET_OPTS and rule.target not in self.chains:
            raise RuleError(f"Chain '{rule.target}' does not exist")
        if rule.target in BUILTIN[self.name]:
            raise RuleError(f"Chain '{rule.target}' does not exist")  # cannot jump to a base chain
        return rule.canonical()


def _jump(canonical: str) -> str:
    toks = (" " + canonical).split(" -j ")
    return "-j " + toks[-1].split()[0] if len(toks) > 1 else ""


class FakeIptables:
    """Stateful fake of the Iptables protocol (tables filter, nat, mangle)."""

    def __init__(self) -> None:
        self.tables: dict[str, Table] = {t: Table(t) for t in BUILTIN}
        self.restores: list[str] = []  # every restore input, for tests
        self.fail_next_restore: str | None = None  # inject one failure (message)

    # --- restore --------------------------------------------------------------------------------
    def restore(self, text: str, noflush: bool = True) -> None:
        self.restores.append(text)
        if self.fail_next_restore is not None:
            msg, self.fail_next_restore = self.fail_next_restore, None
            raise IptablesError(msg)
        work: Table | None = None
        lineno = 0
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("*"):
                if work is not None:
                    raise IptablesError(f"iptables-restore: COMMIT expected at line {lineno}")
                name = line[1:]
                if name not in self.tables:
                    raise IptablesError(f"{PREFIX}Table '{name}' does not exist\nError occurred at line: {lineno}")
                work = copy.deepcopy(self.tables[name])
                if not noflush:
                    work = Table(name)
                continue
            if work is None:
                raise IptablesError(f"{PREFIX}no command before table at line {lineno}")
            if line == "COMMIT":
                self.tables[work.name] = work  # the whole table's batch commits at once
                work = None
                continue
            try:
                self._apply(work, line)
            except RuleError as e:
                raise IptablesError(f"iptables-restore: line {lineno} failed: {e}") from None
        if work is not None:
            raise IptablesError(f"iptables-restore: COMMIT expected at line {lineno + 1}")

    def _apply(self, t: Table, line: str) -> None:
        if line.startswith(":"):
            name, policy = line[1:].split()[:2]
            if name in BUILTIN[t.name]:
                t.policy[name] = policy
            else:
                t.chains[name] = []  # declaring a chain creates it or flushes it, even with --noflush
            return
        toks = shlex.split(line)
        op, chain, rest = toks[0], toks[1] if len(toks) > 1 else "", toks[2:]
        if op in ("-A", "--append"):
            if chain not in t.chains:
                self._nochain()
            t.chains[chain].append(t.check_rule(chain, rest))
        elif op in ("-I", "--insert"):
            pos = 1
            if rest and rest[0].isdigit():
                pos, rest = int(rest[0]), rest[1:]
            if chain not in t.chains:
                self._nochain()
            t.chains[chain].insert(pos - 1, t.check_rule(chain, rest))
        elif op in ("-D", "--delete"):
            canon = t.check_rule(chain, rest)
            if canon not in t.chains[chain]:
                raise RuleError("Bad rule (does a matching rule exist in that chain?).")
            t.chains[chain].remove(canon)
        elif op in ("-N", "--new-chain"):
            if chain in t.chains:
                raise RuleError("Chain already exists.")
            t.chains[chain] = []
        elif op in ("-F", "--flush"):
            if chain not in t.chains:
                self._nochain()
            t.chains[chain] = []
        elif op in ("-X", "--delete-chain"):
            if chain not in t.chains or chain in BUILTIN[t.name]:
                self._nochain()
            if t.refs(chain):
                raise RuleError(f"CHAIN_DEL failed (Device or resource busy): chain {chain}")
            del t.chains[chain]
        else:
            raise RuleError(f"unknown command {op!r}")

    @staticmethod
    def _nochain() -> None:
        raise RuleError("No chain/target/match by that name.")

    # --- reading --------------------------------------------------------------------------------
    def save(self, table: str) -> str:
        t = self.tables[table]
        order = list(BUILTIN[table]) + sorted(c for c in t.chains if c not in BUILTIN[table])
        out = ["# Generated by iptables-save v1.8.9 (nf_tables)", f"*{table}"]
        out += [f":{c} {t.policy[c] if c in t.policy else '-'} [0:0]" for c in order]
        out += [f"-A {c} {r}" for c in order for r in t.chains[c]]
        out += ["COMMIT", "# Completed"]
        return "\n".join(out) + "\n"

    def save_all(self) -> str:
        return "".join(self.save(t) for t in self.tables)

    def chain_exists(self, table: str, chain: str) -> bool:
        return chain in self.tables[table].chains

    def rules(self, table: str, chain: str) -> list[str]:
        return list(self.tables[table].chains[chain])

    # --- single-object operations (each is its own one-line transaction) -----------------------
    def _one(self, table: str, line: str) -> None:
        self.restore(f"*{table}\n{line}\nCOMMIT\n")
        self.restores.pop()

    def ensure_chain(self, table: str, chain: str) -> bool:
        if self.chain_exists(table, chain):
            return True
        self._one(table, f"-N {chain}")
        return False

    def ensure_rule(self, position: Position, table: str, chain: str, args: list[str]) -> bool:
        try:
            canon = self.tables[table].check_rule(chain, args)
        except RuleError as e:
            raise IptablesError(f"iptables: {e}") from None
        if canon in self.tables[table].chains[chain]:
            return True
        op = "-I" if position == "prepend" else "-A"
        self._one(table, f"{op} {chain} {shlex.join(args)}")
        return False

    def delete_rule(self, table: str, chain: str, args: list[str]) -> bool:
        if chain not in self.tables[table].chains:
            return False
        canon = self.tables[table].check_rule(chain, args)
        if canon not in self.tables[table].chains[chain]:
            return False
        self._one(table, f"-D {chain} {shlex.join(args)}")
        return True

    def delete_chain(self, table: str, chain: str) -> bool:
        if not self.chain_exists(table, chain):
            return False
        self._one(table, f"-F {chain}\n-X {chain}")
        return True
