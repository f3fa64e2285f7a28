"""The default-scheduler of the `netkube server` process."""

from __future__ import annotations

import asyncio

from netkube.client import ApiClient
from netkube.config import ClusterConfig
from netkube.supervise import gather_cancelling


async def run_scheduler(client: ApiClient, cluster: ClusterConfig) -> None:
    """Schedule pods forever; each part is supervised so an error never ends the process."""
    from netkube.scheduler.scheduler import Scheduler
    from netkube.supervise import supervise

    sched = Scheduler(client)
    sched.register()
    tasks = [asyncio.create_task(supervise("scheduler informer pods", sched.pods.run)),
             asyncio.create_task(supervise("scheduler informer nodes", sched.nodes.run))]
    await asyncio.gather(sched.pods.synced.wait(), sched.nodes.synced.wait())
    tasks.append(asyncio.create_task(supervise("scheduler", sched.run)))
    await gather_cancelling(tasks)
