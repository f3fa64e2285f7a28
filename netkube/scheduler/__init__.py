"""The default-scheduler of the `netkube server` process."""

from __future__ import annotations

import asyncio

from netkube.client import ApiClient
from netkube.config import ClusterConfig


async def run_scheduler(client: ApiClient, cluster: ClusterConfig) -> None:
    """Schedule pods forever; each part is supervised so an error never ends the process."""
    from netkube.controllers import supervise
    from netkube.scheduler.scheduler import Scheduler

    sched = Scheduler(client)
    sched.register()
    tasks = [asyncio.create_task(supervise("scheduler informer pods", sched.pods.run)),
             asyncio.create_task(supervise("scheduler informer nodes", sched.nodes.run))]
    await asyncio.gather(sched.pods.synced.wait(), sched.nodes.synced.wait())
    tasks.append(asyncio.create_task(supervise("scheduler", sched.run)))
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
