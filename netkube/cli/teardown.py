"""`netkube down` and `netkube clean`: remove exactly what clusters recorded."""

from __future__ import annotations

import shutil
from pathlib import Path

from netkube.config import STATE_ROOT, ClusterConfig
from netkube.lab.cleanup import remove_recorded
from netkube.lab.records import Records


def _stop_engines(records: Records) -> bool:
    """A cluster's own dockerd (--runtime docker) first, so it stops its containers itself."""
    if any(r.data.get("what") == "dockerd" for r in records.live() if r.kind == "process"):
        from netkube.kubelet.dockerd import stop_recorded_engines

        stop_recorded_engines(records)
        return True
    return False


def down(cluster: ClusterConfig) -> int:
    owned = _stop_engines(Records(cluster.records_path))
    counts = remove_recorded(Records(cluster.records_path))
    if getattr(cluster, "runtime", "process") == "docker" and cluster.docker_host and not owned:
        from netkube.kubelet.dockerd import remove_cluster_containers

        remove_cluster_containers(cluster.docker_host, cluster.name)  # an engine of the user's (--docker-host)
    shutil.rmtree(cluster.state_dir, ignore_errors=True)
    print(
        f"Cluster {cluster.name!r} removed: {counts.get('process', 0)} processes stopped, "
        f"{counts.get('netns', 0)} namespaces deleted, state dir {cluster.state_dir} removed."
    )
    return 0


def clean(state_root: str = str(STATE_ROOT)) -> int:
    """Every cluster's records, also after all netkube processes were SIGKILLed."""
    root = Path(state_root)
    found = 0
    for records_file in sorted(root.glob("*/records.jsonl")) if root.exists() else []:
        found += 1
        _stop_engines(Records(records_file))
        counts = remove_recorded(Records(records_file))
        shutil.rmtree(records_file.parent, ignore_errors=True)
        print(f"cleaned {records_file.parent.name}: {counts.get('process', 0)} processes, "
              f"{counts.get('netns', 0)} namespaces")
    if not found:
        print("nothing to clean: no netkube cluster records under", root)
    return 0
