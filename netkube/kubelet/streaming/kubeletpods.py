"""PodLookup over the kubelet's live pod workers (their state.json records and container views)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from netkube.kubelet.interfaces import Proc
from netkube.kubelet.streaming.targets import ContainerRef, PodRef


class KubeletPods:
    """Reads the workers on each request, so a restarted container is seen at once."""

    def __init__(self, kubelet: Any) -> None:
        self.kubelet = kubelet

    def find(self, namespace: str, name: str) -> PodRef | None:
        runtime = self.kubelet.ctx.runtime
        for w in list(self.kubelet.workers.values()):
            st = w.state
            if st.namespace != namespace or st.name != name:
                continue
            ref = PodRef(namespace, name, st.uid, f"/run/netns/{st.netns}" if st.netns else "")
            for cv in w.view.containers:
                rec = st.containers.get(cv.name)
                proc = Proc(rec.pid, rec.start) if rec is not None and rec.pid else None
                ref.containers[cv.name] = ContainerRef(
                    cv.name, Path(rec.log_path) if rec else w.dir / f"{cv.name}.log", cv.state, cv.last_state,
                    pid=proc.pid if proc else 0,
                    alive=(lambda p=proc: p is not None and runtime.alive(p)),
                    console=runtime.console(proc) if proc is not None else None,
                )
            return ref
        return None
