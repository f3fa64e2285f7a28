"""The interface every proxy mode implements (iptables now; nftables, ipvs, userspace later)."""

from __future__ import annotations

from typing import Protocol

from proxy_modes.model import ProxyState


class Backend(Protocol):
    def sync(self, state: ProxyState, full: bool) -> None:
        """Make the kernel match `state`; raise on failure (old rules must stay in place)."""

    def cleanup(self) -> None:
        """Remove every kernel object this mode owns, and nothing else."""

    def tables_intact(self) -> bool:
        """False if someone removed our objects behind our back (canary gone): resync fully."""
