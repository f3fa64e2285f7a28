"""An in-memory IPVS table that answers with the kernel's errnos (net/netfilter/ipvs/ip_vs_ctl.c)."""

from __future__ import annotations

import errno
import ipaddress
from dataclasses import replace

from proxy_modes.kernel.ipvs import PROTOCOLS, SCHEDULERS, IpvsError, RealServer, VirtualServer

Key = tuple[str, str, int]


def _err(code: int, what: str) -> IpvsError:
    return IpvsError(code, f"{what}: {errno.errorcode[code]} {__import__('os').strerror(code)}")


class FakeIpvs:
    """Stateful fake of the Ipvs protocol. `conns` sets (active, inactive) per (vs key, rs key)."""

    def __init__(self, schedulers: tuple[str, ...] = SCHEDULERS) -> None:
        self.schedulers = schedulers  # the ip_vs_<sched> modules this kernel can load
        self.table: dict[Key, VirtualServer] = {}
        self.dest_table: dict[Key, dict[tuple[str, int], RealServer]] = {}
        self.conns: dict[tuple[Key, tuple[str, int]], tuple[int, int]] = {}
        self.calls: list[str] = []

    def _check_vs(self, vs: VirtualServer) -> None:
        try:
            ipaddress.IPv4Address(vs.address)
        except ValueError:
            raise _err(errno.EINVAL, f"service {vs}") from None
        if vs.protocol not in PROTOCOLS or not 0 < vs.port < 65536 or vs.timeout < 0:
            raise _err(errno.EINVAL, f"service {vs}")

    def services(self) -> list[VirtualServer]:
        return sorted(self.table.values())

    def add_service(self, vs: VirtualServer) -> None:
        self.calls.append(f"add-service {vs}")
        self._check_vs(vs)
        if vs.scheduler not in self.schedulers:
            raise _err(errno.ENOENT, f"scheduler {vs.scheduler!r} not found")  # ip_vs_scheduler_get
        if vs.key in self.table:
            raise _err(errno.EEXIST, f"service {vs}")
        self.table[vs.key] = vs
        self.dest_table[vs.key] = {}

    def update_service(self, vs: VirtualServer) -> None:
        self.calls.append(f"update-service {vs}")
        if vs.key not in self.table:
            raise _err(errno.ESRCH, f"service {vs}")
        if vs.scheduler not in self.schedulers:
            raise _err(errno.ENOENT, f"scheduler {vs.scheduler!r} not found")
        self.table[vs.key] = vs

    def delete_service(self, vs: VirtualServer) -> None:
        self.calls.append(f"delete-service {vs}")
        if vs.key not in self.table:
            raise _err(errno.ESRCH, f"service {vs}")
        del self.table[vs.key]
        del self.dest_table[vs.key]

    def dests(self, vs: VirtualServer) -> list[RealServer]:
        if vs.key not in self.table:
            raise _err(errno.ESRCH, f"service {vs}")
        return sorted(
            replace(rs, active_conns=self.conns.get((vs.key, rs.key), (0, 0))[0],
                    inactive_conns=self.conns.get((vs.key, rs.key), (0, 0))[1])
            for rs in self.dest_table[vs.key].values()
        )

    def _dests(self, vs: VirtualServer, rs: RealServer) -> dict[tuple[str, int], RealServer]:
        if vs.key not in self.table:
            raise _err(errno.ESRCH, f"service {vs}")
        if rs.weight < 0:
            raise _err(errno.ERANGE, f"destination {rs} weight")
        return self.dest_table[vs.key]

    def add_dest(self, vs: VirtualServer, rs: RealServer) -> None:
        self.calls.append(f"add-dest {vs} {rs} w{rs.weight}")
        d = self._dests(vs, rs)
        if rs.key in d:
            raise _err(errno.EEXIST, f"destination {rs}")
        d[rs.key] = replace(rs, active_conns=0, inactive_conns=0)

    def update_dest(self, vs: VirtualServer, rs: RealServer) -> None:
        self.calls.append(f"update-dest {vs} {rs} w{rs.weight}")
        d = self._dests(vs, rs)
        if rs.key not in d:
            raise _err(errno.ENOENT, f"destination {rs}")
        d[rs.key] = replace(rs, active_conns=0, inactive_conns=0)

    def delete_dest(self, vs: VirtualServer, rs: RealServer) -> None:
        self.calls.append(f"delete-dest {vs} {rs}")
        d = self._dests(vs, rs)
        if rs.key not in d:
            raise _err(errno.ENOENT, f"destination {rs}")
        del d[rs.key]
        self.conns.pop((vs.key, rs.key), None)

    def listing(self) -> str:
        """Like `ipvsadm -Ln` (without the header lines)."""
        out: list[str] = []
        for vs in self.services():
            persist = f" persistent {vs.timeout}" if vs.timeout else ""
            out.append(f"{vs.protocol}  {vs.address}:{vs.port} {vs.scheduler}{persist}")
            for rs in self.dests(vs):
                out.append(f"  -> {rs.address}:{rs.port}  Masq  {rs.weight}  {rs.active_conns}  {rs.inactive_conns}")
        return "\n".join(out) + ("\n" if out else "")
