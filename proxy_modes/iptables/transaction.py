"""iptables-restore inputs built per table, and a worker that runs them in order off the caller's thread."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from proxy_modes.kernel.iptables import Iptables, StartedRestore

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

    def append(self, table: str, name: str, rules: list[str]) -> None:
        """Rules for `name` without its chain line: appended to what the chain already holds."""
        self.rules[table] += rules
        self.size += len(rules)

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

    def lines(self) -> int:
        """Lines of input it holds (rules added straight to .rules included)."""
        return sum(len(v) for d in (self.decls, self.rules, self.deletes) for v in d.values())

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
        # The real iptables can start the next restore while one runs (see StartedRestore); the
        # spare is touched only by the worker thread, and by finish()/drain() once it is idle.
        self._start: Callable[[], StartedRestore] | None = getattr(ipt, "start_restore", None)
        self._spare: StartedRestore | None = None

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

    def restore(self, text: str, more: bool = False) -> None:
        """Queue one iptables-restore --noflush of `text`; more: others will follow in this sync."""
        def run() -> None:
            if self._failed:
                return
            try:
                started, self._spare = self._spare, None
                if started is None and not more:
                    self.ipt.restore(text, noflush=True)
                    return
                if started is None:
                    assert self._start is not None
                    started = self._start()
                started.feed(text)
                if more:
                    self._spare = self._start()  # for the next run, starting while this one works
                started.wait()
            except BaseException:
                self._failed = True
                raise
        if self._start is None:
            more = False
        self.texts.append(text)
        self._restores.append(self.call(run))

    def prestart(self) -> None:
        """Start the first restore's process now, from the caller's thread, before it renders: from
        the worker thread that start would wait for the GIL behind the rendering (~20 ms seen)."""
        if self._start is not None and self._spare is None and not self._restores:
            self._spare = self._start()

    def _drop_spare(self) -> None:
        spare, self._spare = self._spare, None
        if spare is not None:
            spare.abort()

    def drain(self) -> None:
        """Wait for every restore, ignoring their errors (the caller is already failing)."""
        for f in self._restores:
            f.exception()
        self._restores, self._failed = [], False
        self.texts.clear()
        self._drop_spare()

    def finish(self) -> int:
        """Wait for every restore; the number that ran, or the first error."""
        futs, self._restores = self._restores, []
        errors = [e for e in (f.exception() for f in futs) if e is not None]
        self._failed = False
        self._drop_spare()
        if errors:
            raise errors[0]
        return len(futs)
