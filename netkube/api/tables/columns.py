"""Which printer serves which kind."""

from __future__ import annotations

from . import batchapps, cluster, network, workloads
from .printer import Printer, default_printer

PRINTERS: dict[str, Printer] = {
    "Pod": workloads.PODS, "Deployment": workloads.DEPLOYMENTS, "ReplicaSet": workloads.REPLICASETS,
    "Service": network.SERVICES, "Endpoints": network.ENDPOINTS, "EndpointSlice": network.ENDPOINTSLICES,
    "Node": cluster.NODES, "Namespace": cluster.NAMESPACES, "Event": cluster.EVENTS,
    "ConfigMap": cluster.CONFIGMAPS, "Secret": cluster.SECRETS, "ServiceAccount": cluster.SERVICEACCOUNTS,
    "Lease": cluster.LEASES,
    "StatefulSet": batchapps.STATEFULSETS, "DaemonSet": batchapps.DAEMONSETS, "Job": batchapps.JOBS,
    "CronJob": batchapps.CRONJOBS,
}

__all__ = ["PRINTERS", "Printer", "default_printer"]
