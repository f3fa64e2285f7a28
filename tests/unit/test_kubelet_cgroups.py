"""Pod cgroups against a fake cgroupfs (plain directories in tmp_path): layout, limits, records, OOM."""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from netkube.client import EVENTS
from netkube.config import ClusterConfig
from netkube.kubelet import cgroups, nsexec
from netkube.kubelet.cgroups import CgroupFs, Limits, PodCgroups
from netkube.kubelet.fakes import FakeCni, FakeImages
from netkube.kubelet.kubelet import Kubelet
from netkube.kubelet.sandbox import Timings
from netkube.kubelet.status import terminated_state
from netkube.lab.cleanup import remove_recorded
from netkube.lab.records import Records
from netkube.testing.fake_api import FakeApiClient


def _fake_rmdir(path: Any) -> None:
    # cgroupfs removes a group's control files with it; refuses while sub-groups or processes remain.
    d = Path(path)
    procs = d / "cgroup.procs"
    if any(c.is_dir() for c in d.iterdir()) or (procs.exists() and procs.read_text().strip()):
        raise OSError(16, "Device or resource busy")
    shutil.rmtree(d)


class FakeFs(CgroupFs):
    """What the kernel adds to plain directories: rmdir drops control files, a v2 child's
    cgroup.controllers is its parent's subtree_control, and "+c" writes add to that list."""

    rmdir = staticmethod(_fake_rmdir)

    def _enable(self, parent: Path) -> None:
        before = set(cgroups._read(parent / "cgroup.subtree_control").split())
        super()._enable(parent)
        added = {t.lstrip("+") for t in cgroups._read(parent / "cgroup.subtree_control").split()}
        (parent / "cgroup.subtree_control").write_text(" ".join(sorted(before | added)))

    def mkdir(self, rel: str) -> list[Path]:
        made = super().mkdir(rel)
        for d in made:
            if self.version == 2:
                (d / "cgroup.controllers").write_text(cgroups._read(d.parent / "cgroup.subtree_control"))
        return made


def pod(uid: str = "u1", containers: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"metadata": {"uid": uid, "name": "p", "namespace": "default"},
            "spec": {"containers": containers or [{"name": "app", "image": "busybox"}]}}


def res(limits: dict[str, str] | None = None, requests: dict[str, str] | None = None, name: str = "app") -> dict[str, Any]:
    r: dict[str, Any] = {}
    if limits:
        r["limits"] = limits
    if requests:
        r["requests"] = requests
    return {"name": name, "image": "busybox", "resources": r}


@pytest.fixture
def v1(tmp_path: Path) -> tuple[PodCgroups, Path, Records]:
    roots = {c: tmp_path / "cg" / c for c in ("memory", "cpu", "pids")}
    for r in roots.values():
        r.mkdir(parents=True)
    rec = Records(tmp_path / "records.jsonl")
    return PodCgroups(FakeFs(1, roots), rec, "netkube/c1/node2"), tmp_path / "cg", rec


@pytest.fixture
def v2(tmp_path: Path) -> tuple[PodCgroups, Path, Records]:
    root = tmp_path / "unified"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids\n")
    (root / "cgroup.subtree_control").write_text("cpu memory\n")
    rec = Records(tmp_path / "records.jsonl")
    return PodCgroups(FakeFs(2, {"": root}), rec, "netkube/c1/node2"), root, rec


def test_quantities_to_kernel_values() -> None:
    assert cgroups.container_limits(res({"memory": "32Mi", "cpu": "100m"})) == Limits(32 * 2**20, 100, 100)
    assert cgroups.container_limits(res({"cpu": "1.5"}, {"cpu": "250m"})) == Limits(None, 1500, 250)
    assert cgroups.cpu_quota(100) == 10_000 and cgroups.cpu_quota(1) == 1_000  # kernel minimum
    assert cgroups.cpu_shares(None) == 2 and cgroups.cpu_shares(250) == 256 and cgroups.cpu_shares(10**6) == 262_144
    assert cgroups.cpu_weight(2) == 1 and cgroups.cpu_weight(262_144) == 10_000 and cgroups.cpu_weight(1024) == 39


def test_pod_limits_need_every_container_and_count_init_max() -> None:
    p = pod(containers=[res({"memory": "64Mi", "cpu": "200m"}), res({"memory": "32Mi", "cpu": "100m"}, name="b")])
    p["spec"]["initContainers"] = [res({"memory": "128Mi", "cpu": "100m"}, name="init")]
    assert cgroups.pod_limits(p, 99) == Limits(128 * 2**20, 300, 300, 99)
    partial = pod(containers=[res({"memory": "64Mi"}), res(None, name="b")])
    assert cgroups.pod_limits(partial, None) == Limits()


def test_v1_layout_limits_and_procs_files(v1: tuple[PodCgroups, Path, Records]) -> None:
    pc, root, _ = v1
    p = pod(containers=[res({"memory": "32Mi", "cpu": "100m"}, {"memory": "16Mi"})])  # Burstable
    files = pc.setup_container(p, p["spec"]["containers"][0])
    rel = "netkube/c1/node2/kubepods/burstable/podu1/app"
    assert files == [str(root / c / rel / "cgroup.procs") for c in ("memory", "cpu", "pids")]
    assert (root / "memory" / rel / "memory.limit_in_bytes").read_text() == str(32 * 2**20)
    assert (root / "cpu" / rel / "cpu.cfs_quota_us").read_text() == "10000"
    assert (root / "cpu" / rel / "cpu.cfs_period_us").read_text() == "100000"
    assert (root / "cpu" / rel / "cpu.shares").read_text() == "102"
    pod_dir = root / "pids" / "netkube/c1/node2/kubepods/burstable/podu1"
    assert (pod_dir / "pids.max").read_text() == str(cgroups.DEFAULT_POD_PIDS)
    assert (root / "memory" / "netkube/c1/node2/kubepods/burstable/podu1/memory.limit_in_bytes").read_text() == str(32 * 2**20)


def test_guaranteed_under_kubepods_besteffort_minimum(v1: tuple[PodCgroups, Path, Records]) -> None:
    pc, root, _ = v1
    g = pod("g", [res({"memory": "32Mi", "cpu": "1"})])
    pc.setup_container(g, g["spec"]["containers"][0])
    assert (root / "cpu/netkube/c1/node2/kubepods/podg/app/cpu.shares").read_text() == "1024"
    b = pod("b")
    pc.setup_container(b, b["spec"]["containers"][0])
    app = root / "cpu/netkube/c1/node2/kubepods/besteffort/podb/app"
    assert (app / "cpu.shares").read_text() == "2" and (app / "cpu.cfs_quota_us").read_text() == "-1"
    assert (root / "cpu/netkube/c1/node2/kubepods/besteffort/cpu.shares").read_text() == "2"
    assert not (root / "memory/netkube/c1/node2/kubepods/besteffort/podb/app/memory.limit_in_bytes").exists()


def test_v2_enables_controllers_and_writes_unified_files(v2: tuple[PodCgroups, Path, Records]) -> None:
    pc, root, _ = v2
    p = pod(containers=[res({"memory": "32Mi", "cpu": "100m"})])
    files = pc.setup_container(p, p["spec"]["containers"][0])
    d = root / "netkube/c1/node2/kubepods/podu1/app"
    assert files == [str(d / "cgroup.procs")]
    assert (d / "memory.max").read_text() == str(32 * 2**20)
    assert (d / "cpu.max").read_text() == "10000 100000"
    assert (d / "cpu.weight").read_text() == str(cgroups.cpu_weight(102))
    assert (d.parent / "pids.max").read_text() == str(cgroups.DEFAULT_POD_PIDS)
    assert (root / "cgroup.subtree_control").read_text() == "cpu memory pids"
    assert (d / "cgroup.controllers").read_text() == "cpu memory pids"


def test_oom_counter_since_start_v1_and_v2(v1: tuple[PodCgroups, Path, Records], v2: tuple[PodCgroups, Path, Records]) -> None:
    for pc, mem_root, name in ((v1[0], v1[1] / "memory", "memory.oom_control"), (v2[0], v2[1], "memory.events")):
        p = pod(containers=[res({"memory": "32Mi"})])
        pc.setup_container(p, p["spec"]["containers"][0])
        f = mem_root / "netkube/c1/node2/kubepods/burstable/podu1/app" / name
        assert not pc.oom_killed(p, "app")
        f.write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 1\n" if "control" in name else "low 0\noom 1\noom_kill 1\n")
        assert pc.oom_killed(p, "app")


def test_oom_killed_shows_as_kubernetes_reports_it() -> None:
    st = terminated_state(137, "a", "b", "id", oom_killed=True)["terminated"]
    assert (st["exitCode"], st["reason"]) == (137, "OOMKilled")
    assert terminated_state(137, "a", "b", "id")["terminated"]["reason"] == "Error"


def test_records_and_removes_exactly_what_it_made(v1: tuple[PodCgroups, Path, Records]) -> None:
    pc, root, rec = v1
    (root / "memory/netkube").mkdir()  # made by someone else: neither recorded nor removed
    p = pod(containers=[res({"memory": "32Mi"}), res({"memory": "8Mi"}, name="side")])
    for c in p["spec"]["containers"]:
        pc.setup_container(p, c)
    live = {r.data["path"] for r in rec.live() if r.kind == "cgroup"}
    assert str(root / "memory/netkube") not in live
    assert str(root / "memory/netkube/c1") in live and str(root / "pids/netkube") in live
    pc.release_container(p, "side")
    assert not (root / "memory/netkube/c1/node2/kubepods/burstable/podu1/side").exists()
    pc.release_pod("u1")
    for c in ("memory", "cpu", "pids"):
        assert not (root / c / "netkube/c1/node2/kubepods/burstable/podu1").exists()
        assert (root / c / "netkube/c1/node2/kubepods/burstable").is_dir()  # shared: kept until teardown
    left = {r.data["path"] for r in rec.live() if r.kind == "cgroup"}
    assert left and not any("podu1" in x for x in left)


def test_cleanup_removes_recorded_cgroups_deepest_first(v1: tuple[PodCgroups, Path, Records], monkeypatch: pytest.MonkeyPatch) -> None:
    pc, root, rec = v1
    p = pod()
    pc.setup_container(p, p["spec"]["containers"][0])
    # cleanup runs on the real cgroupfs, where rmdir drops control files; use the fake's semantics.
    monkeypatch.setattr(cgroups, "remove_cgroup", functools.partial(cgroups.remove_cgroup, rmdir=_fake_rmdir))
    counts = remove_recorded(rec, grace=0.1)
    assert counts["cgroup"] == 3 * 7  # netkube/c1/node2/kubepods/besteffort/podu1/app in each of 3 trees
    for c in ("memory", "cpu", "pids"):
        assert [x for x in (root / c).iterdir()] == []


def test_detect_prefers_usable_v2_else_v1_else_explains(tmp_path: Path) -> None:
    uni, mem, cpu, pids = (tmp_path / n for n in ("unified", "memory", "cpu", "pids"))
    for d in (uni, mem, cpu, pids):
        d.mkdir()
    (uni / "cgroup.controllers").write_text("hugetlb\n")
    hybrid = (f"cgroup {cpu} cgroup rw,relatime,cpu 0 0\ncgroup {mem} cgroup rw,relatime,memory 0 0\n"
              f"cgroup {pids} cgroup rw,relatime,pids 0 0\ncgroup2 {uni} cgroup2 rw,relatime 0 0\nproc /proc proc rw 0 0\n")
    fs, why = cgroups.detect(hybrid)
    assert fs is not None and fs.version == 1 and fs.mounts == {"memory": mem, "cpu": cpu, "pids": pids} and not why
    (uni / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    fs, _ = cgroups.detect(f"cgroup2 {uni} cgroup2 rw 0 0\n")
    assert fs is not None and fs.version == 2 and fs.mounts == {"": uni}
    assert (uni / "cgroup.subtree_control").read_text() == "+memory +cpu +pids"
    (uni / "cgroup.controllers").write_text("hugetlb\n")
    fs, why = cgroups.detect(f"cgroup2 {uni} cgroup2 rw 0 0\n")
    assert fs is None and "memory and cpu controllers" in why
    fs, why = cgroups.detect("proc /proc proc rw 0 0\n")
    assert fs is None and "no cgroup filesystem" in why


def test_nsexec_joins_cgroups_before_anything_else(tmp_path: Path) -> None:
    procs = [tmp_path / "a.procs", tmp_path / "b.procs"]
    for f in procs:
        f.write_text("")
    o = nsexec.parse(["--cgroup", str(procs[0]), "--cgroup", str(procs[1]), "--", "true"])
    assert o.cgroup == [str(f) for f in procs] and o.argv == ["true"]
    nsexec.setup(o)
    assert [f.read_text() for f in procs] == [str(os.getpid())] * 2
    bad = nsexec.parse(["--cgroup", str(tmp_path / "missing" / "cgroup.procs"), "--", "true"])
    assert nsexec.main(["--cgroup", str(tmp_path / "missing" / "cgroup.procs"), "--", "true"]) == 125
    assert bad.cgroup


async def test_no_cgroups_logs_once_and_tells_the_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(cgroups, "detect", lambda: (None, "no cgroup filesystem is mounted"))
    cluster = ClusterConfig(name="t", nodes=2, state_root=str(tmp_path))
    api = FakeApiClient()
    kubelet = Kubelet(api, cluster, "node2", "192.168.56.102", Records(cluster.records_path), cni=FakeCni(),
                      images=FakeImages({}), timings=Timings(heartbeat=0.05))
    assert kubelet.ctx.cgroups is None
    assert [r.message for r in caplog.records].count(
        "resource limits are not enforced on this node: no cgroup filesystem is mounted") == 1
    task = asyncio.create_task(kubelet.run())
    try:
        await asyncio.wait_for(kubelet.ready.wait(), 5)
        for _ in range(100):
            events = [e for e in api.objects(EVENTS, "default") if e.get("reason") == "ResourceLimitsNotEnforced"]
            if events:
                break
            await asyncio.sleep(0.02)
        assert events[0]["involvedObject"]["kind"] == "Node" and events[0]["involvedObject"]["name"] == "node2"
        assert events[0]["type"] == "Warning" and "no cgroup filesystem" in events[0]["message"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
