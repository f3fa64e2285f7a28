"""The iptables backend: base jumps once, then one iptables-restore --noflush per sync."""

from __future__ import annotations

import logging

from proxy_modes.conntrack import Conntrack, clear_stale_udp
from proxy_modes.iptables import chains as C
from proxy_modes.iptables.cleanup import chain_names, cleanup
from proxy_modes.iptables.render import RenderConfig, build, split_restores
from proxy_modes.kernel.iptables import Iptables
from proxy_modes.model import ProxyState

log = logging.getLogger(__name__)


# Lines of per-service chains per iptables-restore run (see render.split_restores).
BATCH_LINES = 3000


class IptablesProxier:
    """Implements proxy_modes.backend.Backend for iptables mode."""

    def __init__(self, ipt: Iptables, cfg: RenderConfig, conntrack: Conntrack | None = None,
                 batch_lines: int = BATCH_LINES) -> None:
        self.ipt = ipt
        self.cfg = cfg
        self.conntrack = conntrack
        self.batch_lines = batch_lines
        self._jumps_ok = False
        self._nat_chains: set[str] | None = None  # service chains in the kernel (None: read iptables-save)
        self.last_restore = ""
        self.restores = 0  # iptables-restore runs (tests, bench)

    def ensure_base(self) -> None:
        """Our top-level chains, the base-chain jumps to them (prepended, like upstream) and canaries."""
        for table in C.CANARY_TABLES:
            self.ipt.ensure_chain(table, C.KUBE_PROXY_CANARY)
        for j in C.JUMPS:
            self.ipt.ensure_chain(j.table, j.chain)
            self.ipt.ensure_rule("prepend", j.table, j.source, j.args())
        # Per-service chains jump to it; batched full syncs write them before the shared chains.
        self.ipt.ensure_chain("nat", C.KUBE_MARK_MASQ)
        self._jumps_ok = True

    def sync(self, state: ProxyState, full: bool) -> None:
        if full or not self._jumps_ok:
            self.ensure_base()
        if self._nat_chains is None or full:
            # Full syncs re-read the kernel (someone may have added or removed chains); partial
            # syncs trust what we wrote: iptables-save of a 10k-service table costs ~1 s.
            self._nat_chains = {c for c in chain_names(self.ipt.save("nat")) if C.is_service_chain(c)}
        b = build(state, self.cfg, self._nat_chains, only=None if full else set(state.changed))
        texts = split_restores(b, self.batch_lines)
        try:
            for text in texts:
                self.ipt.restore(text, noflush=True)  # raises: that run left the kernel untouched
                self.restores += 1
        except Exception:
            self._nat_chains = None
            raise
        self._nat_chains = {c for c in b.active_nat | b.skipped if C.is_service_chain(c)}
        self.last_restore = "".join(texts)
        if self.conntrack is not None:
            clear_stale_udp(self.conntrack, state)

    def cleanup(self) -> None:
        cleanup(self.ipt)
        self._jumps_ok = False
        self._nat_chains = None

    def tables_intact(self) -> bool:
        return all(self.ipt.chain_exists(t, C.KUBE_PROXY_CANARY) for t in C.CANARY_TABLES)
