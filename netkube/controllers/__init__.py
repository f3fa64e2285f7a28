"""Controllers of the `netkube server` process; run_controllers starts them all as asyncio tasks."""

from __future__ import annotations

import asyncio
import logging

from netkube.client import ApiClient
from netkube.config import ClusterConfig
from netkube.supervise import gather_cancelling, supervise

log = logging.getLogger(__name__)


async def run_controllers(client: ApiClient, cluster: ClusterConfig) -> None:
    """Start every controller over one shared set of informers; returns only when cancelled."""
    from netkube.controllers.base import Informers
    from netkube.controllers.bootstrap import BootstrapController
    from netkube.controllers.cronjob import CronJobController
    from netkube.controllers.daemonset import DaemonSetController
    from netkube.controllers.deployment import DeploymentController
    from netkube.controllers.endpoints import EndpointsController
    from netkube.controllers.gc import GarbageCollector
    from netkube.controllers.job import JobController
    from netkube.controllers.loadbalancer import LoadBalancerController
    from netkube.controllers.nodeipam import NodeIpamController
    from netkube.controllers.nodelifecycle import NodeLifecycleController
    from netkube.controllers.nodelifecycle import settings as node_settings
    from netkube.controllers.replicaset import ReplicaSetController
    from netkube.controllers.statefulset import StatefulSetController

    informers = Informers(client)
    backoff = float(cluster.extra.get("job-pod-failure-backoff", "10"))
    controllers = {
        "bootstrap": BootstrapController(client, informers, cluster),
        "nodeipam": NodeIpamController(client, informers, cluster),
        "deployment": DeploymentController(client, informers),
        "replicaset": ReplicaSetController(client, informers),
        "endpoints": EndpointsController(client, informers),
        "garbage-collector": GarbageCollector(client, informers),
        "node-lifecycle": NodeLifecycleController(client, informers, *node_settings(cluster.extra)),
        "job": JobController(client, informers, backoff),
        "cronjob": CronJobController(client, informers),
        "daemonset": DaemonSetController(client, informers),
        "statefulset": StatefulSetController(client, informers),
        "loadbalancer": LoadBalancerController(client, informers, cluster),
    }
    for c in controllers.values():
        c.register()  # type: ignore[attr-defined]
    tasks = [asyncio.create_task(supervise(f"informer {i.res.plural}", i.run), name=f"informer-{i.res.plural}")
             for i in informers.all()]
    await informers.wait_synced()  # controllers act on a complete picture, never a partial list
    tasks += [asyncio.create_task(supervise(f"controller {n}", c.run), name=f"controller-{n}")  # type: ignore[attr-defined]
              for n, c in controllers.items()]
    await gather_cancelling(tasks)
