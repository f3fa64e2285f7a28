"""How a big iptables sync is cut into runs: the shared chains filled run by run on a node without our
rules, and each run's iptables-restore started while the one before it works."""

from __future__ import annotations

import pytest

from proxy_modes.iptables import chains as C
from proxy_modes.iptables.proxier import IptablesProxier
from proxy_modes.iptables.render import RenderConfig
from proxy_modes.kernel.iptables import IptablesError
from proxy_modes.kernel.iptables_fake import FakeIptables
from proxy_modes.testing import endpoint_slice, service
from proxy_modes.tracker import ChangeTracker

CFG = RenderConfig("node1", ("192.168.0.2",))


def state(n: int) -> ChangeTracker:
    t = ChangeTracker("node1")
    for i in range(n):
        t.on_service("ADDED", service(f"ns{i:02d}", f"svc{i}", f"172.30.1.{i + 1}", svc_type="NodePort",
                                      node_ports=[30000 + i]))
        t.on_endpoint_slice("ADDED", endpoint_slice(f"ns{i:02d}", f"svc{i}", [f"10.180.1.{i + 1}"]))
    return t


def saved(ipt: FakeIptables) -> str:
    return ipt.save("filter") + ipt.save("nat") + ipt.save("mangle")


def test_first_sync_fills_kube_services_run_by_run_and_ends_like_a_restart() -> None:
    t = state(30)
    fresh = FakeIptables()
    IptablesProxier(fresh, CFG, batch_lines=20).sync(t.snapshot(), full=True)
    runs = fresh.restores
    assert len(runs) > 5
    declared = [i for i, r in enumerate(runs) if f":{C.KUBE_SERVICES} - [0:0]" in r.split("*nat", 1)[-1]]
    assert declared == [0]  # declared (made) once, in the first run; later runs only append
    appends = [sum(ln.startswith(f"-A {C.KUBE_SERVICES} ") for ln in r.split("*nat", 1)[-1].splitlines())
               for r in runs]
    assert sum(a > 0 for a in appends) > 3 and appends[-1] == 1  # the last run adds only the tail rule
    # A node that already has the chain (a restart) gets it written whole, at the end: same result.
    restart = FakeIptables()
    restart.ensure_chain("nat", C.KUBE_SERVICES)
    IptablesProxier(restart, CFG, batch_lines=20).sync(t.snapshot(), full=True)
    assert f":{C.KUBE_SERVICES} - [0:0]" in restart.restores[-1]
    assert saved(fresh) == saved(restart)
    assert fresh.rules("nat", C.KUBE_SERVICES)[-1].endswith(f"-j {C.KUBE_NODEPORTS}")


class Started:
    """A restore started ahead of its input, recording what happens to it."""

    def __init__(self, ipt: PrestartIptables, n: int) -> None:
        self.ipt, self.n, self.text = ipt, n, ""
        ipt.log.append(f"start{n}")

    def feed(self, text: str) -> None:
        self.text = text
        self.ipt.log.append(f"feed{self.n}")

    def wait(self) -> None:
        self.ipt.log.append(f"wait{self.n}")
        FakeIptables.restore(self.ipt, self.text)

    def abort(self) -> None:
        self.ipt.log.append(f"abort{self.n}")


class PrestartIptables(FakeIptables):
    def __init__(self) -> None:
        super().__init__()
        self.log: list[str] = []
        self.started = 0

    def start_restore(self) -> Started:
        self.started += 1
        return Started(self, self.started)

    def restore(self, text: str, noflush: bool = True) -> None:
        self.log.append("restore")
        super().restore(text, noflush)


def test_each_run_is_started_before_the_one_before_it_waits() -> None:
    t = state(30)
    ipt = PrestartIptables()
    IptablesProxier(ipt, CFG, batch_lines=20).sync(t.snapshot(), full=True)
    runs = len(ipt.restores)
    assert runs > 5 and "restore" not in ipt.log  # every run went through a started process
    # start1 before any feed (started ahead, before rendering); run k's feed, then start k+1, then wait k.
    assert ipt.log[:4] == ["start1", "feed1", "start2", "wait1"]
    for k in range(2, runs):
        i = ipt.log.index(f"feed{k}")
        assert ipt.log[i:i + 3] == [f"feed{k}", f"start{k + 1}", f"wait{k}"]
    assert ipt.started in (runs, runs + 1)
    assert ipt.log.count("abort" + str(ipt.started)) == (ipt.started - runs)  # an unused spare is ended
    plain = FakeIptables()
    IptablesProxier(plain, CFG, batch_lines=20).sync(t.snapshot(), full=True)
    assert saved(ipt) == saved(plain)
    # A partial sync (one run) starts nothing ahead.
    px = IptablesProxier(ipt, CFG, batch_lines=20)
    px.sync(t.snapshot(), full=True)
    ipt.log.clear()
    t.on_endpoint_slice("MODIFIED", endpoint_slice("ns04", "svc4", ["10.180.9.8"]))
    px.sync(t.snapshot(), full=False)
    assert ipt.log == ["restore"]


def test_a_failed_run_skips_the_rest_and_ends_the_spare() -> None:
    class Failing(PrestartIptables):
        def start_restore(self) -> Started:
            s = super().start_restore()
            if s.n == 3:
                def fail() -> None:
                    self.log.append("wait3")
                    raise IptablesError("iptables-restore: line 2 failed")
                s.wait = fail  # type: ignore[method-assign]
            return s

    ipt = Failing()
    with pytest.raises(IptablesError, match="line 2 failed"):
        IptablesProxier(ipt, CFG, batch_lines=20).sync(state(30).snapshot(), full=True)
    assert "feed4" not in ipt.log and "abort4" in ipt.log  # run 4 never ran; its process was ended
    assert ipt.log.index("wait3") < ipt.log.index("abort4")
