"""The nftables backend: full syncs cut into bounded transactions, partial syncs touch one service."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from proxy_modes.conntrack import Conntrack, clear_stale_udp
from proxy_modes.kernel.nft import Nft, NftError
from proxy_modes.model import ProxyState
from proxy_modes.nftables import names as N
from proxy_modes.nftables.base import base_commands
from proxy_modes.nftables.names import T
from proxy_modes.nftables.render import (
    RenderConfig,
    batches,
    chain_commands,
    element_commands,
    endpoint_commands,
    plans,
    service_commands,
    stale_commands,
    switch_commands,
)
from proxy_modes.nftables.service_rules import Element, ServicePlan

log = logging.getLogger(__name__)

# nft 1.0.6 spends time quadratic in the size of one transaction (machine.md: 10k services in one
# run ~50 s, the same statements in a few runs ~2 s). One line is one chain with all its rules.
BATCH_LINES = 10000
# Stale chains (and affinity sets) a partial sync has flushed wait for a full sync (or this many)
# to be deleted: any `delete` makes nft 1.0.6 list every chain of the table first (~0.25 s at 10k
# services), too much for each one-service change.
FLUSHED_LIMIT = 200


def _script(lines: list[str]) -> str:
    return "\n".join(lines) + "\n"


class NftablesProxier:
    """Implements proxy_modes.backend.Backend for nftables mode."""

    def __init__(self, nft: Nft, cfg: RenderConfig, conntrack: Conntrack | None = None,
                 batch_lines: int = BATCH_LINES) -> None:
        self.nft = nft
        self.cfg = cfg
        self.conntrack = conntrack
        self.batch_lines = batch_lines
        self._known = False  # do we know what the table holds (after a sync or a listing)?
        self._have_table = False  # did this process create or find the table (since the last failure)?
        self._chains: set[str] = set()  # per-service chains now in the kernel
        self._sets: set[str] = set()  # affinity sets now in the kernel
        self._applied: dict[str, ServicePlan] = {}  # "<ns>/<name>" → what we last wrote for it
        self._flushed: set[str] = set()  # stale chains emptied by a partial sync, deleted later
        self.transactions = 0  # nft runs (tests, bench)
        self.last_timings: list[tuple[str, float]] = []

    def _run(self, what: str, lines: list[str]) -> None:
        if not lines:
            return
        t0 = time.monotonic()
        self.nft.run(_script(lines))  # raises NftError: that transaction left the kernel untouched
        self.transactions += 1
        self.last_timings.append((what, time.monotonic() - t0))

    def _run_in_order(self, jobs: Iterable[tuple[str, list[str]]]) -> None:
        """Run transactions one after the other in a worker thread while this one renders the next
        (nft and Python each take a core); after a failure the rest are skipped and it is raised."""
        failed: list[BaseException] = []

        def job(what: str, lines: list[str]) -> None:
            if failed:
                return
            try:
                self._run(what, lines)
            except BaseException as e:
                failed.append(e)

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="nft") as pool:
            for what, lines in jobs:
                if failed:
                    break
                pool.submit(job, what, lines)
        if failed:
            raise failed[0]

    def _learn(self) -> None:
        """After a restart (or a failure) read the per-service object names the kernel holds."""
        chains, sets = self.nft.list_names(N.FAMILY, N.TABLE)
        self._chains = {c for c in chains if N.is_service_object(c)}
        self._sets = {s for s in sets if N.is_service_object(s)}
        self._applied = {}
        self._flushed = set()
        self._known = True

    def sync(self, state: ProxyState, full: bool) -> None:
        self.last_timings = []
        try:
            if full or not self._known:
                self._full(state)
            else:
                self._partial(state)
        except NftError:
            # The kernel holds a mix of old and new (or someone removed the table): relist and
            # recreate on the next (full) sync.
            self._known = self._have_table = False
            raise
        if self.conntrack is not None:
            clear_stale_udp(self.conntrack, state)

    def _full(self, state: ProxyState) -> None:
        if not self._known:
            self._learn()
        want = plans(state, self.cfg)
        self._run("base", base_commands(self.cfg.base, flush=True, create_table=not self._have_table))
        self._have_table = True
        # Old map elements keep serving the old (or rewritten) chains throughout, and every
        # transaction only references objects that exist once it commits:
        # 1. affinity sets and endpoint chains; 2. service/local/external chains (they goto the
        # endpoint chains); 3. one switch of every dispatch map; 4. stale objects deleted.
        # Services whose objects are exactly what we last wrote (and still listed) are skipped,
        # as upstream skips unchanged services: a periodic full sync of an idle 10k cluster
        # then costs one map switch instead of rewriting 50k chains.
        existing = self._chains
        todo = [p for svc, p in want.items()
                if self._applied.get(svc) != p or not (p.chains.keys() <= existing and p.sets.keys() <= self._sets)]
        self._run_in_order(itertools.chain(
            (("endpoints", b) for b in batches((endpoint_commands(p, existing) for p in todo), self.batch_lines)),
            (("services", b) for b in batches((service_commands(p, existing) for p in todo), self.batch_lines))))
        new_chains = {c for p in want.values() for c in p.chains}
        self._flushed -= new_chains
        new_sets = {s for p in want.values() for s in p.sets}
        self._chains |= new_chains
        self._sets |= new_sets
        # One atomic switch of every dispatch map: all services move to their new chains at once.
        self._run("switch", switch_commands(e for p in want.values() for e in p.elements))
        self._applied = want
        # Nothing references the old chains any more: remove them.
        self._remove_stale(self._chains - new_chains, self._sets - new_sets)

    def _partial(self, state: ProxyState) -> None:
        changed = set(state.changed)
        if not changed:
            return
        want = plans(state, self.cfg, only=changed)
        lines: list[str] = []
        old_elems: list[Element] = []
        new_elems: list[Element] = []
        for svc in sorted(changed):
            plan, old = want.get(svc, ServicePlan()), self._applied.get(svc, ServicePlan())
            # Chains we wrote with the same rules stay (e.g. the endpoints that did not change).
            todo = {c: r for c, r in plan.chains.items() if old.chains.get(c) != r or c not in self._chains}
            lines += chain_commands(ServicePlan(plan.sets, todo), self._chains)
            before, after = set(old.elements), set(plan.elements)
            old_elems += [e for e in old.elements if e not in after]
            new_elems += [e for e in plan.elements if e not in before]
        # A changed verdict for the same key: nft refuses "add" over it (EEXIST), so delete first.
        lines += element_commands(old_elems, op="delete")
        lines += element_commands(new_elems)
        stale_chains: set[str] = set()
        stale_sets: set[str] = set()
        for svc in changed:
            plan, old = want.get(svc, ServicePlan()), self._applied.get(svc, ServicePlan())
            stale_chains |= set(old.chains) - set(plan.chains)
            stale_sets |= set(old.sets) - set(plan.sets)
        stale_chains &= self._chains
        # Upstream (kernels < 6.2): a chain whose map element is deleted in this transaction is
        # still "in use" until later, so stale chains are only FLUSHED here (dropping their own
        # jumps, e.g. to affinity sets) and deleted by a later sync. One nft run per partial sync.
        lines += [f"flush chain {T} {c}" for c in sorted(stale_chains)]
        self._run("partial", lines)
        for svc in changed:
            plan = want.get(svc, ServicePlan())
            self._applied.pop(svc, None)
            self._chains |= set(plan.chains)
            self._sets |= set(plan.sets)
            self._flushed -= set(plan.chains)
            if svc in want:
                self._applied[svc] = plan
        self._flushed |= stale_chains
        if len(self._flushed) >= FLUSHED_LIMIT:
            self._remove_stale(set(self._flushed), stale_sets)

    def _remove_stale(self, chains: set[str], sets: set[str]) -> None:
        # Separate transactions after the switch, so nothing live ever points at a missing chain.
        chains = chains | (self._flushed & self._chains)
        if len(chains) + len(sets) <= self.batch_lines // 2:
            if chains or sets:
                self._run("stale", stale_commands(chains, sets))
        else:
            # Stale chains jump to each other (service → endpoint): empty them all before deleting
            # any, or a chunk boundary between the two would make the delete fail (EBUSY).
            for part in _chunks(sorted(chains), self.batch_lines):
                self._run("stale", [f"flush chain {T} {c}" for c in part])
            for part in _chunks(sorted(chains), self.batch_lines):
                self._run("stale", stale_commands(part, []))
            if sets:
                self._run("stale", stale_commands([], sets))
        self._chains -= chains
        self._flushed -= chains
        self._sets -= sets

    def cleanup(self) -> None:
        """Upstream CleanupLeftovers: delete the whole table (everything in it is ours)."""
        from proxy_modes.nftables.cleanup import cleanup

        cleanup(self.nft)
        self._known = self._have_table = False
        self._chains, self._sets, self._applied, self._flushed = set(), set(), {}, set()

    def tables_intact(self) -> bool:
        if self.nft.table_exists(N.FAMILY, N.TABLE):
            return True
        self._known = self._have_table = False  # someone deleted it: the next full sync recreates it
        return False


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), max(size, 1))]
