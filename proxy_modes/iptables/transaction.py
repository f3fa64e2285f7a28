"""iptables-restore inputs built per table, and a worker that runs them in order off the caller's thread."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from proxy_modes.kernel.iptables import Iptables

T = TypeVar("T")
TABLE_ORDER = ("filter", "nat", "mangle")  # upstream writes filter before nat


class Txn:
    """One iptables-restore --noflush input: per table, chain lines, then rules, then chain deletions
    (deleted last: the kernel refuses to delete a chain that a rule still jumps to)."""

    def __init__(self) -> None:
        self.decls: dict[str, list[str]] = {t: [] for t in TABLE_ORDER}
        self.rules: dict[str, list[str]] = {t: [] for t in TABLE_ORDER}
        self.deletes: dict[str, list[str]] = {t: [] for t in TABLE_ORDER}
        self.size = 0  # lines written through chain()/chains()/delete()

    def chain(self, table: str, name: str, rules: list[str]) -> None:
        """Create or flush `name` (a chain line does both, even with --noflush) and fill it."""
        self.decls[table].append(f":{name} - [0:0]")
        self.rules[table] += rules
        self.size += 1 + len(rules)

    def chains(self, table: str, names: list[str], rules: list[str]) -> None:
        """Several chains at once: `rules` may interleave them (their order within each chain counts)."""
        self.decls[table] += [f":{n} - [0:0]" for n in names]
        self.rules[table] += rules
        self.size += len(names) + len(rules)

    def delete(self, table: str, name: str) -> None:
        self.decls[table].append(f":{name} - [0:0]")  # flushing it drops its own jumps first
        self.deletes[table].append(f"-X {name}")
        self.size += 2

    def absorb(self, other: Txn) -> None:
        for t in TABLE_ORDER:
            self.decls[t] = other.decls[t] + self.decls[t]
            self.rules[t] = other.rules[t] + self.rules[t]
            self.deletes[t] = other.deletes[t] + self.deletes[t]
        self.size += other.size

    def text(self) -> str:
        out: list[str] = []
        for t in TABLE_ORDER:
            if self.decls[t] or self.rules[t] or self.deletes[t]:
                out += [f"*{t}", *self.decls[t], *self.rules[t], *self.deletes[t], "COMMIT"]
        return "\n".join(out) + "\n" if out else ""


class Worker:
    """Runs calls one at a time, in submission order, in one background thread: iptables-save and
    iptables-restore (other processes, other core) overlap with rendering in the caller. After a
    failed restore the later ones are skipped; finish() raises the first error."""

    def __init__(self, ipt: Iptables) -> None:
        self.ipt = ipt
        self._ex: ThreadPoolExecutor | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._restores: list[Future[None]] = []
        self._failed = False
        self.texts: list[str] = []

    def call(self, fn: Callable[[], T]) -> Future[T]:
        if self._ex is None:
            self._ex = ThreadPoolExecutor(max_workers=1, thread_name_prefix="iptables")
        return self._ex.submit(fn)

    def read(self, fn: Callable[[], T]) -> Future[T]:
        """Run a read (iptables-save) beside the restores: those only add chains the read's caller
        does not look for (it wants stale chains, jumps and canaries)."""
        if self._reader is None:
            self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="iptables-save")
        return self._reader.submit(fn)

    def restore(self, text: str) -> None:
        def run() -> None:
            if self._failed:
                return
            try:
                self.ipt.restore(text, noflush=True)
            except BaseException:
                self._failed = True
                raise
        self.texts.append(text)
        self._restores.append(self.call(run))

    def drain(self) -> None:
        """Wait for every restore, ignoring their errors (the caller is already failing)."""
        for f in self._restores:
            f.exception()
        self._restores, self._failed = [], False
        self.texts.clear()

    def finish(self) -> int:
        """Wait for every restore; the number that ran, or the first error."""
        futs, self._restores = self._restores, []
        errors = [e for e in (f.exception() for f in futs) if e is not None]
        self._failed = False
        if errors:
            raise errors[0]
        return len(futs)
