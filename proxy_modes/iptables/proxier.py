"""The iptables backend: each sync writes only the chains and rules that differ from the kernel's.

What we wrote is remembered per chain. A partial sync renders only the changed services: their own
chains are rewritten, created or deleted, and their rules in the shared chains (KUBE-SERVICES,
KUBE-NODEPORTS, ...) are replaced with -D/-I lines in place, not by rewriting the shared chain
(only when many of its services changed): iptables-nft-restore --noflush is quadratic in the size of
its input (/work/shared/reference/machine.md).
A full sync reads iptables-save back and rewrites every chain whose kernel content is not what we
last wrote (drift), plus missing jumps and canaries; the result equals upstream's full sync."""

from __future__ import annotations

import bisect
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from proxy_modes.conntrack import Conntrack, clear_stale_udp
from proxy_modes.iptables import chains as C
from proxy_modes.iptables.cleanup import cleanup
from proxy_modes.iptables.render import (
    LARGE_CLUSTER_ENDPOINTS,
    NODEPORTS_TAIL,
    RenderConfig,
    endpoint_count,
    fixed_rules,
)
from proxy_modes.iptables.service_rules import Fragment, render_service
from proxy_modes.iptables.transaction import Txn, Worker
from proxy_modes.kernel.iptables import Iptables
from proxy_modes.kernel.rules import parse
from proxy_modes.model import ProxyState, ServicePortName

log = logging.getLogger(__name__)

# Lines of per-service chains per iptables-restore run: iptables-nft 1.8.9 --noflush is quadratic in
# one input's size (1k services: 0.73 s in one run). In runs of 1.5k lines the iptables CPU time of
# a first sync is that of one plain restore (1k: 0.19-0.20 s vs 0.18-0.19 s; 10k: 2.6 s vs 2.7 s).
BATCH_LINES = 1500
# More changed services than this in one shared chain: rewrite the chain instead of -D/-I each rule.
EDIT_LIMIT = 64
# Upstream's --iptables-sync-period default: in large cluster mode a partial sync deletes the chains
# no longer used only if this long has passed since the last time it did (they are unreferenced).
CLEANUP_PERIOD = 30.0
SHARED = (("filter", C.KUBE_SERVICES), ("filter", C.KUBE_EXTERNAL_SERVICES),
          ("nat", C.KUBE_SERVICES), ("nat", C.KUBE_NODEPORTS))
MARK_MASQ = ("nat", C.KUBE_MARK_MASQ)
# On a node with none of our rules yet, these shared chains are filled run by run, each service's
# rules with its own chains: a rule jumping to a chain made in an earlier run costs iptables-nft
# 1.8.9 a search of every chain it knows (10k services: 0.59 s for KUBE-SERVICES in one last run).
GROWN = (("nat", C.KUBE_SERVICES), ("nat", C.KUBE_NODEPORTS))
# The base-chain jumps as iptables-save prints them, to see which are missing.
JUMP_SAVED = [(j, parse(j.args()).canonical()) for j in C.JUMPS]

Key = tuple[str, str]  # (table, chain)
Kernel = dict[str, dict[str, list[str]]]  # table -> chain -> rules as iptables-save prints them


@dataclass
class Rec:
    """What we last wrote to one chain: its restore lines, or the fragment that holds them (a
    first sync writes whole fragments and leaves the split per chain to when it is needed)."""

    _lines: list[str] | None
    frag: Fragment | None = None
    seen: int | None = None  # hash of the kernel's iptables-save rules for it, once read back

    def lines(self, chain: str) -> list[str]:
        if self._lines is None:
            assert self.frag is not None
            self._lines = self.frag.chain_rules()[chain]
            self.frag = None
        return self._lines


def parse_save(text: str) -> Kernel:
    """iptables-save output (any number of tables) → table → chain → rules."""
    tables: Kernel = {t: {} for t in C.CANARY_TABLES}
    chains: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith("-A "):
            name, _, spec = line[3:].partition(" ")
            chains.setdefault(name, []).append(spec)
        elif line.startswith(":"):
            chains.setdefault(line[1:].split(" ", 1)[0], [])
        elif line.startswith("*"):
            chains = tables.setdefault(line[1:].strip(), {})
    return tables


def _arg_line(args: list[str]) -> str:
    return " ".join(f'"{a}"' if " " in a else a for a in args)


def _order_key(s: ServicePortName) -> tuple[str, str, str, str]:
    return (s.namespace, s.name, s.port, s.protocol)  # ServicePortName's own order, computed once each


def _block(f: Fragment | None, key: Key) -> list[str]:
    return [] if f is None else f.shared(*key)


class IptablesProxier:
    """Implements proxy_modes.backend.Backend for iptables mode."""

    def __init__(self, ipt: Iptables, cfg: RenderConfig, conntrack: Conntrack | None = None,
                 batch_lines: int = BATCH_LINES, cleanup_period: float = CLEANUP_PERIOD,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ipt = ipt
        self.cfg = cfg
        self.conntrack = conntrack
        self.batch_lines = batch_lines
        self.cleanup_period = cleanup_period
        self._clock = clock
        self._total = 0  # endpoints of all service ports, for large cluster mode
        self._stale: dict[str, ServicePortName] = {}  # unused nat chains left in place -> their service port
        self._last_cleanup = -math.inf
        self._fixed = fixed_rules(cfg)
        self._rec: dict[Key, Rec] = {}
        self._frags: dict[ServicePortName, Fragment] = {}  # what the kernel holds, per service port
        self._order: list[ServicePortName] = []  # sorted keys of _frags: upstream's rule order
        self._by_service: dict[str, list[ServicePortName]] = {}  # "ns/name" -> its keys in _frags
        self._worker = Worker(ipt)
        self.last_restore = ""
        self.restores = 0  # iptables-restore runs (tests, bench)

    def sync(self, state: ProxyState, full: bool) -> None:
        try:
            self._sync(state, full or not self._rec)
        except BaseException:
            self._worker.drain()  # no run of this sync may land after the next one starts
            self._forget()  # some runs may have applied: trust nothing, the next (full) sync rewrites all
            raise
        if self.conntrack is not None:
            clear_stale_udp(self.conntrack, state)

    def _forget(self) -> None:
        self._rec.clear()
        self._frags = {}
        self._order = []
        self._by_service = {}
        self._total, self._stale = 0, {}

    @property
    def large_cluster(self) -> bool:
        """Upstream's largeClusterMode, as of the last sync."""
        return self._total > LARGE_CLUSTER_ENDPOINTS

    def _endpoint_total(self, state: ProxyState, full: bool, removed: list[ServicePortName],
                        targets: list[ServicePortName]) -> int:
        """Upstream's totalEndpoints. A partial sync moves the last total by the changed service
        ports only (their previous endpoints are in the fragments' sources): no pass over 10k."""
        if full:
            return endpoint_count(state)
        total = self._total
        for s in (*removed, *targets):
            f = self._frags.get(s)
            if f is not None and f.source is not None:
                total -= len(f.source[1])
        return total + sum(len(state.endpoints.get(s, ())) for s in targets)

    def _read_kernel(self) -> Kernel:
        return parse_save(self.ipt.save_all())

    def _validate(self, kernel: Kernel) -> None:
        """Forget chains whose kernel content is not what we wrote (someone changed or removed them)."""
        for key, rec in list(self._rec.items()):
            got = kernel[key[0]].get(key[1])
            h = None if got is None else hash(tuple(got))
            if got is not None and rec.seen is None and len(got) == len(rec.lines(key[1])):
                rec.seen = h  # first read-back since we wrote it
            elif h is None or rec.seen != h:
                del self._rec[key]

    def _sync(self, state: ProxyState, full: bool) -> None:
        w = self._worker
        # iptables-save runs in the worker while we render; on a restart or first start every chain
        # is written anyway, so only a later full sync waits for it before deciding.
        kernel_f = w.read(self._read_kernel) if full else None
        if kernel_f is not None and self._rec:
            self._validate(kernel_f.result())
        old = self._frags
        if full:
            removed = [s for s in old if s not in state.services]
            targets = sorted(state.services, key=_order_key)
        else:  # O(changed) but for one pass over the service keys
            removed = [s for k in state.changed for s in self._by_service.get(k, ()) if s not in state.services]
            names = {tuple(k.split("/", 1)) for k in state.changed}
            targets = sorted((s for s in state.services if (s.namespace, s.name) in names), key=_order_key)
        frags = dict(old) if not full else {}
        for s in removed:
            frags.pop(s, None)
        total = self._endpoint_total(state, full, removed, targets)
        large = total > LARGE_CLUSTER_ENDPOINTS
        now = self._clock()
        clean = full or not large or now - self._last_cleanup > self.cleanup_period
        unused: dict[str, ServicePortName] = {} if full else dict(self._stale)
        written: dict[Key, list[str] | Fragment] = {}
        deleted: list[Key] = []
        final, buf = Txn(), Txn()
        grow = full and not self._rec and not self.ipt.chain_exists(*GROWN[0])
        if full:
            w.prestart()
        if grow:
            for key in GROWN:
                buf.chain(*key, [])
        if full and (self._rec.get(MARK_MASQ) is None or self._rec[MARK_MASQ].lines(C.KUBE_MARK_MASQ) != self._fixed[MARK_MASQ]):
            # Per-service chains jump to it: it goes with the first of them.
            buf.chain(*MARK_MASQ, self._fixed[MARK_MASQ])
            written[MARK_MASQ] = self._fixed[MARK_MASQ]
        recs = self._rec
        for spn in targets:
            sp, eps = state.services[spn], state.endpoints.get(spn, [])
            before = old.get(spn)
            if before is not None and before.source == (sp, tuple(eps), large):
                f = before  # same input, same rules: rendering is most of a full sync's Python time
            else:
                f = render_service(self.cfg, sp, eps, large)
            frags[spn] = f
            if grow:  # before is None here: nothing of ours was there (chain lines precede rules)
                for key in GROWN:
                    buf.append(*key, f.shared(*key))
            if before is not None and before.rules == f.rules and all(("nat", c) in recs for c in f.chains):
                continue
            if before is None and not any(("nat", c) in recs for c in f.chains):
                buf.chains("nat", f.chains, f.rules)  # all new (first sync): no need to split per chain
                for c in f.chains:
                    written[("nat", c)] = f
                if buf.size >= self.batch_lines:
                    w.restore(buf.text(), more=True)
                    buf = Txn()
                continue
            own = f.chain_rules()
            for c, lines in own.items():
                r = recs.get(("nat", c))
                if r is None or r.lines(c) != lines:
                    buf.chain("nat", c, lines)
                    written[("nat", c)] = lines
            if before is not None and not full:
                for c in before.chains:
                    if c not in own and ("nat", c) in self._rec:
                        unused[c] = spn
            if buf.size >= self.batch_lines:
                w.restore(buf.text(), more=True)
                buf = Txn()
        if not full:
            for s in removed:
                for c in old[s].chains:
                    if ("nat", c) in self._rec:
                        unused[c] = s
            if clean:
                for c, s in unused.items():
                    if s not in frags or c not in frags[s].chains:  # not taken back into use
                        final.delete("nat", c)
                        deleted.append(("nat", c))
                unused = {}
        order = targets if full else self._merged_order(removed, targets)
        changed = None if full else targets + removed
        for key in SHARED:
            if grow and key in GROWN:  # filled above: only the last rule is left
                tail = [NODEPORTS_TAIL] if key == ("nat", C.KUBE_SERVICES) else []
                final.rules[key[0]] += tail
                written[key] = [line for s in order for line in frags[s].shared(*key)] + tail
                continue
            self._shared(final, key, old, frags, order, changed, written)
        if kernel_f is not None:
            self._base(final, kernel_f.result(), frags, written, deleted)
        if buf.size and buf.size + final.lines() > self.batch_lines:
            # One input this big would cost more than two (iptables-nft-restore --noflush is
            # quadratic in its input); a sync of this size is cut into runs anyway.
            w.restore(buf.text(), more=True)
        else:
            final.absorb(buf)
        text = final.text()
        if text:
            w.restore(text)
        self.restores += w.finish()
        self.last_restore = "".join(w.texts)
        w.texts.clear()
        for key, lines in written.items():
            self._rec[key] = Rec(lines, None) if isinstance(lines, list) else Rec(None, lines)
        for key in deleted:
            self._rec.pop(key, None)
        self._frags, self._order = frags, order
        self._total, self._stale = total, unused
        if clean:
            self._last_cleanup = now
        by_service = {} if full else self._by_service
        for k in state.changed:
            by_service.pop(k, None)
        for spn in targets:
            by_service.setdefault(spn.service, []).append(spn)
        self._by_service = by_service

    def _merged_order(self, removed: list[ServicePortName], targets: list[ServicePortName]) -> list[ServicePortName]:
        order = list(self._order)
        for s in removed:
            del order[bisect.bisect_left(order, s)]
        for s in targets:
            if s not in self._frags:
                bisect.insort(order, s)
        return order

    def _shared(self, final: Txn, key: Key, old: dict[ServicePortName, Fragment],
                new: dict[ServicePortName, Fragment], order: list[ServicePortName],
                changed: list[ServicePortName] | None, written: dict[Key, list[str] | Fragment]) -> None:
        """Bring one shared chain from `old`'s rules to `new`'s: -D the changed services' old rules,
        then -I their new ones at the position a full rewrite would give them."""
        table, chain = key
        rec = self._rec.get(key)
        diff = set()
        if rec is not None:
            candidates = changed if changed is not None else order + [s for s in old if s not in new]
            for s in candidates:
                a, b = old.get(s), new.get(s)
                if a is not b and _block(a, key) != _block(b, key):
                    diff.add(s)
            if not diff:
                return
        tail = [NODEPORTS_TAIL] if key == ("nat", C.KUBE_SERVICES) else []
        lines = [line for s in order for line in new[s].shared(table, chain)] + tail
        written[key] = lines
        if rec is None or len(diff) > EDIT_LIMIT:
            final.chain(table, chain, lines)
            return
        ops: list[str] = []
        for s in diff:
            ops += ["-D" + line[2:] for line in _block(old.get(s), key)]
        length = len(rec.lines(chain)) - len(ops)
        pos = 0
        for s in order:
            block = new[s].shared(table, chain)
            if s in diff:
                for line in block:
                    ops.append(f"-I {chain} {pos + 1} {line[4 + len(chain):]}" if pos < length else line)
                    pos += 1
                    length += 1
            else:
                pos += len(block)
        final.rules[table] += ops

    def _base(self, final: Txn, kernel: Kernel, frags: dict[ServicePortName, Fragment],
              written: dict[Key, list[str] | Fragment], deleted: list[Key]) -> None:
        """Full sync only: fixed chains, stale service chains, canaries and base-chain jumps."""
        for key, lines in self._fixed.items():
            rec = self._rec.get(key)
            if key != MARK_MASQ and (rec is None or rec.lines(key[1]) != lines):
                final.chain(*key, lines)
                written[key] = lines
        present = sorted(c for c in kernel["nat"] if C.is_service_chain(c))
        active = {c for f in frags.values() for c in f.chains} if present else set()
        for c in present:
            if c not in active:
                final.delete("nat", c)
                deleted.append(("nat", c))
        for t in C.CANARY_TABLES:
            if C.KUBE_PROXY_CANARY not in kernel[t]:
                final.decls[t].append(f":{C.KUBE_PROXY_CANARY} - [0:0]")
        for j, saved in JUMP_SAVED:
            if saved not in kernel[j.table].get(j.source, []):
                # Prepended like upstream's EnsureRule: the last one inserted ends up first.
                final.rules[j.table].append(f"-I {j.source} {_arg_line(j.args())}")

    def cleanup(self) -> None:
        cleanup(self.ipt)
        self._forget()

    def tables_intact(self) -> bool:
        return all(self.ipt.chain_exists(t, C.KUBE_PROXY_CANARY) for t in C.CANARY_TABLES)
