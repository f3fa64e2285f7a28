"""REST resources of the workload kinds beyond Deployments (apps/v1 and batch/v1)."""

from __future__ import annotations

from netkube.client import Resource

DAEMONSETS = Resource("apps/v1", "daemonsets", "DaemonSet")
STATEFULSETS = Resource("apps/v1", "statefulsets", "StatefulSet")
CONTROLLERREVISIONS = Resource("apps/v1", "controllerrevisions", "ControllerRevision")
JOBS = Resource("batch/v1", "jobs", "Job")
CRONJOBS = Resource("batch/v1", "cronjobs", "CronJob")
WORKLOADS = [DAEMONSETS, STATEFULSETS, CONTROLLERREVISIONS, JOBS, CRONJOBS]
