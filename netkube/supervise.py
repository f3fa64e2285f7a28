"""Long-running loops that never take their process down: restart on error, cancel together."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


async def supervise(name: str, run: Callable[[], Awaitable[None]], backoff: float = 0.5) -> None:
    """Run forever; an error is logged and the loop restarted with back-off (at most 10 s)."""
    while True:
        try:
            await run()
            log.warning("%s returned; restarting", name)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s crashed; restarting in %.1fs", name, backoff)
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, 10.0)


async def gather_cancelling(tasks: list[asyncio.Task[None]]) -> None:
    """Wait for the tasks; when this is cancelled (or one fails), cancel and reap all of them."""
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
