"""The iptables backend: base jumps once, then one iptables-restore --noflush per sync."""

from __future__ import annotations

import logging

from proxy_modes.conntrack import Conntrack, clear_stale_udp
from proxy_modes.iptables import chains as C
from proxy_modes.iptables.cleanup import chain_names, cleanup
from proxy_modes.iptables.render import RenderConfig, render
from proxy_modes.kernel.iptables import Iptables
from proxy_modes.model import ProxyState

log = logging.getLogger(__name__)


class IptablesProxier:
    """Implements proxy_modes.backend.Backend for iptables mode."""

    def __init__(self, ipt: Iptables, cfg: RenderConfig, conntrack: Conntrack | None = None) -> None:
        self.ipt = ipt
        self.cfg = cfg
        self.conntrack = conntrack
        self._jumps_ok = False
        self.last_restore = ""

    def ensure_base(self) -> None:
        """Our top-level chains, the base-chain jumps to them (prepended, like upstream) and canaries."""
        for table in C.CANARY_TABLES:
            self.ipt.ensure_chain(table, C.KUBE_PROXY_CANARY)
        for j in C.JUMPS:
            self.ipt.ensure_chain(j.table, j.chain)
            self.ipt.ensure_rule("prepend", j.table, j.source, j.args())
        self._jumps_ok = True

    def sync(self, state: ProxyState, full: bool) -> None:
        if full or not self._jumps_ok:
            self.ensure_base()
        existing = chain_names(self.ipt.save("nat"))
        text = render(state, self.cfg, existing, only=None if full else set(state.changed))
        self.ipt.restore(text, noflush=True)  # raises: the kernel keeps the previous rules
        self.last_restore = text
        if self.conntrack is not None:
            clear_stale_udp(self.conntrack, state)

    def cleanup(self) -> None:
        cleanup(self.ipt)
        self._jumps_ok = False

    def tables_intact(self) -> bool:
        return all(self.ipt.chain_exists(t, C.KUBE_PROXY_CANARY) for t in C.CANARY_TABLES)
