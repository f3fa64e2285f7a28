"""The IPVS interface kube-proxy's ipvs mode needs, and the real one (generic netlink via pyroute2)."""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass
from typing import Any, Protocol

PROTOCOLS = {"TCP": socket.IPPROTO_TCP, "UDP": socket.IPPROTO_UDP, "SCTP": 132}
PROTO_NAMES = {v: k for k, v in PROTOCOLS.items()}
# Schedulers kube-proxy accepts for --ipvs-scheduler (the kernel modules ip_vs_<name>).
SCHEDULERS = ("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq")
IP_VS_SVC_F_PERSISTENT = 0x0001  # include/uapi/linux/ip_vs.h: ClientIP affinity ("persistent" in ipvsadm)
IP_VS_CONN_F_MASQ = 0x0000  # forwarding method "Masq" (NAT): the only one kube-proxy uses


class IpvsError(RuntimeError):
    """The kernel refused an IPVS request; `errno` is the kernel's."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.errno = code


@dataclass(frozen=True, order=True)
class VirtualServer:
    """One IPVS service (ipvsadm -A -t addr:port -s sched [-p timeout])."""

    address: str
    protocol: str  # "TCP" | "UDP" | "SCTP"
    port: int
    scheduler: str = "rr"
    timeout: int = 0  # persistence timeout in seconds; 0 = not persistent

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.address, self.protocol, self.port)

    def __str__(self) -> str:
        return f"{self.protocol} {self.address}:{self.port}"


@dataclass(frozen=True, order=True)
class RealServer:
    """One IPVS destination (ipvsadm -a -t vs -r addr:port -m -w weight)."""

    address: str
    port: int
    weight: int = 1
    active_conns: int = 0  # read back from the kernel; ignored when writing
    inactive_conns: int = 0

    @property
    def key(self) -> tuple[str, int]:
        return (self.address, self.port)

    def __str__(self) -> str:
        return f"{self.address}:{self.port}"


class Ipvs(Protocol):
    def services(self) -> list[VirtualServer]: ...

    def add_service(self, vs: VirtualServer) -> None:
        """EEXIST if present; ENOENT if the scheduler is unknown."""

    def update_service(self, vs: VirtualServer) -> None:
        """Scheduler/persistence change of an existing service; ESRCH if missing."""

    def delete_service(self, vs: VirtualServer) -> None:
        """ESRCH if missing; the kernel removes its destinations with it."""

    def dests(self, vs: VirtualServer) -> list[RealServer]: ...

    def add_dest(self, vs: VirtualServer, rs: RealServer) -> None:
        """EEXIST if present, ESRCH if the service is missing."""

    def update_dest(self, vs: VirtualServer, rs: RealServer) -> None:
        """Weight change; ENOENT if the destination is missing."""

    def delete_dest(self, vs: VirtualServer, rs: RealServer) -> None:
        """ENOENT if missing."""


def _attrs(msg: Any, nla: str) -> dict[str, Any]:
    return {k: v for k, v in msg.get(nla)["attrs"]}


class RealIpvs:
    """pyroute2.IPVS over generic netlink family "IPVS", in the current netns or a named one."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns

    def _sock(self) -> Any:
        from pyroute2 import IPVS
        from pyroute2.netlink.exceptions import NetlinkError

        try:
            # flags=0: attach to an existing named netns, never create one silently.
            return IPVS(netns=self.netns, flags=0) if self.netns else IPVS()
        except NetlinkError as e:
            raise IpvsError(e.code, f"IPVS generic netlink family: {e}") from None

    def _call(self, fn: str, *args: Any) -> list[Any]:
        from pyroute2.netlink.exceptions import NetlinkError

        sock = self._sock()
        try:
            return list(getattr(sock, fn)(*args) or [])
        except NetlinkError as e:
            raise IpvsError(e.code, f"IPVS {fn} {args[0]}: {errno.errorcode.get(e.code, e.code)} {e}") from None
        finally:
            sock.close()

    @staticmethod
    def _svc(vs: VirtualServer) -> Any:
        from pyroute2 import IPVSService

        flags = IP_VS_SVC_F_PERSISTENT if vs.timeout else 0
        return IPVSService(addr=vs.address, port=vs.port, protocol=PROTOCOLS[vs.protocol],
                           sched_name=vs.scheduler, timeout=vs.timeout,
                           flags={"flags": flags, "mask": 0xFFFFFFFF})

    @staticmethod
    def _dest(rs: RealServer) -> Any:
        from pyroute2 import IPVSDest

        # pyroute2 defaults fwd_method to 3 (direct routing); kube-proxy uses masquerading.
        return IPVSDest(addr=rs.address, port=rs.port, weight=rs.weight, fwd_method=IP_VS_CONN_F_MASQ)

    def services(self) -> list[VirtualServer]:
        out: list[VirtualServer] = []
        for msg in self._call("service", "dump"):
            a = _attrs(msg, "IPVS_CMD_ATTR_SERVICE")
            if "IPVS_SVC_ATTR_FWMARK" in a and "IPVS_SVC_ATTR_ADDR" not in a:
                continue  # fwmark services are not kube-proxy's
            flags = (a.get("IPVS_SVC_ATTR_FLAGS") or {}).get("flags", 0)
            timeout = int(a.get("IPVS_SVC_ATTR_TIMEOUT", 0)) if flags & IP_VS_SVC_F_PERSISTENT else 0
            out.append(VirtualServer(a["IPVS_SVC_ATTR_ADDR"], PROTO_NAMES.get(a["IPVS_SVC_ATTR_PROTOCOL"], "?"),
                                     int(a["IPVS_SVC_ATTR_PORT"]), a.get("IPVS_SVC_ATTR_SCHED_NAME", ""), timeout))
        return sorted(out)

    def add_service(self, vs: VirtualServer) -> None:
        self._call("service", "add", self._svc(vs))

    def update_service(self, vs: VirtualServer) -> None:
        self._call("service", "set", self._svc(vs))

    def delete_service(self, vs: VirtualServer) -> None:
        self._call("service", "del", self._svc(vs))

    def dests(self, vs: VirtualServer) -> list[RealServer]:
        out: list[RealServer] = []
        for msg in self._call("dest", "dump", self._svc(vs)):
            a = _attrs(msg, "IPVS_CMD_ATTR_DEST")
            out.append(RealServer(a["IPVS_DEST_ATTR_ADDR"], int(a["IPVS_DEST_ATTR_PORT"]),
                                  int(a.get("IPVS_DEST_ATTR_WEIGHT", 0)),
                                  int(a.get("IPVS_DEST_ATTR_ACTIVE_CONNS", 0)),
                                  int(a.get("IPVS_DEST_ATTR_INACT_CONNS", 0))))
        return sorted(out)

    def add_dest(self, vs: VirtualServer, rs: RealServer) -> None:
        self._call("dest", "add", self._svc(vs), self._dest(rs))

    def update_dest(self, vs: VirtualServer, rs: RealServer) -> None:
        self._call("dest", "set", self._svc(vs), self._dest(rs))

    def delete_dest(self, vs: VirtualServer, rs: RealServer) -> None:
        self._call("dest", "del", self._svc(vs), self._dest(rs))


def probe(netns: str | None = None) -> str | None:
    """None if this kernel (netns) can do IPVS, else why not — upstream CanUseIPVSProxier's question."""
    try:
        RealIpvs(netns).services()
    except IpvsError as e:
        if e.errno == errno.ENOENT:
            return "the kernel has no IPVS (generic netlink family \"IPVS\" not found: CONFIG_IP_VS unset " \
                   "or module ip_vs not loadable)"
        return f"could not get IPVS services: {e}"
    except (OSError, ImportError) as e:
        return f"could not get IPVS services: {e}"
    return None
