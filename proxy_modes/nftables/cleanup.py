"""Remove what nftables mode owns: the whole `table ip kube-proxy` (nothing else lives in it)."""

from __future__ import annotations

import logging

from proxy_modes.kernel.nft import Nft, NftError
from proxy_modes.nftables import names as N

log = logging.getLogger(__name__)


def cleanup(nft: Nft) -> bool:
    """Idempotent; returns False if the table exists but could not be deleted (logged)."""
    if not nft.table_exists(N.FAMILY, N.TABLE):
        return True
    try:
        nft.run(f"delete table {N.T}\n")
    except NftError as e:
        log.warning("removing table %s: %s", N.T, e)
        return False
    return True
