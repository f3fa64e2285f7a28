"""A tiny stdlib-only rtnetlink client for the plugins (pyroute2 costs ~120 ms to import per ADD)."""

from __future__ import annotations

# The C module under `socket`: netlink needs only its socket type and the address helpers, and the
# socket package's enum and selectors imports cost ~3 ms in every plugin start.
import _socket as socket
import errno
import os
import struct
from collections import namedtuple
from collections.abc import Iterator
from contextlib import contextmanager

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# rtnetlink constants (linux/rtnetlink.h, if_link.h, neighbour.h)
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_SETLINK = 16, 17, 18, 19
RTM_NEWADDR, RTM_GETADDR = 20, 22
RTM_NEWROUTE = 24
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE, NLM_F_DUMP = 1, 4, 0x200, 0x400, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER = 1, 3, 4, 10
IFLA_PROTINFO, IFLA_LINKINFO, IFLA_NET_NS_FD = 12, 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
VETH_INFO_PEER = 1
IFLA_BRPORT_MODE = 4  # hairpin
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST = 1, 2, 4
RTA_DST, RTA_OIF, RTA_GATEWAY = 1, 4, 5
IFF_UP = 1
IFF_PROMISC = 0x100
NLA_F_NESTED = 0x8000
RTNH_F_ONLINK = 4

_CLONE_NEWNET = 0x40000000


def _attr(kind: int, data: bytes) -> bytes:
    length = 4 + len(data)
    return struct.pack("=HH", length, kind) + data + b"\0" * ((4 - length % 4) % 4)


def _str(kind: int, s: str) -> bytes:
    return _attr(kind, s.encode() + b"\0")


def _u32(kind: int, v: int) -> bytes:
    return _attr(kind, struct.pack("=I", v))


def _ifinfo(index: int = 0, flags: int = 0, change: int = 0, family: int = 0) -> bytes:
    return struct.pack("=BxHiII", family, 0, index, flags, change)


def _parse_attrs(data: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    i = 0
    while i + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, i)
        if length < 4:
            break
        out[kind & 0x3FFF] = data[i + 4 : i + length]
        i += (length + 3) & ~3
    return out


class Link(namedtuple("Link", "index name mac mtu up master")):  # noqa: PYI024
    """index: int, name: str, mac: str, mtu: int, up: bool, master: int. A plain namedtuple, not
    typing.NamedTuple or a dataclass: each plugin run is a fresh interpreter (see cni.spec.Args)."""

    __slots__ = ()


_LIBC: list[Any] = []


def _libc() -> Any:
    """libc's setns through _ctypes, the C core of ctypes (the ctypes package costs ~2 ms more to
    import): C int result, errno saved as with ctypes.CDLL(None, use_errno=True)."""
    if not _LIBC:
        import _ctypes

        class c_int(_ctypes._SimpleCData):
            _type_ = "i"

        class Func(_ctypes.CFuncPtr):
            _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
            _restype_ = c_int

        class Libc:
            _handle = _ctypes.dlopen(None, _ctypes.RTLD_LOCAL)
            get_errno = staticmethod(_ctypes.get_errno)

            def __init__(self) -> None:
                self.setns = Func(("setns", self))

        _LIBC.append(Libc())
    return _LIBC[0]


def setns(path: str) -> None:
    """Move this (single-threaded) process into the network namespace at path."""
    libc = _libc()
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            e = libc.get_errno()
            raise OSError(e, f"setns({path}): {os.strerror(e)}")
    finally:
        os.close(fd)


@contextmanager
def in_netns(path: str) -> Iterator[None]:
    """Run the block inside the netns at path, then return to the original one."""
    back = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        setns(path)
        try:
            yield
        finally:
            setns(f"/proc/self/fd/{back}")
    finally:
        os.close(back)


class Netlink:
    """One NETLINK_ROUTE socket; bound to the netns that was current when it was created."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def _request(self, mtype: int, flags: int, body: bytes) -> list[tuple[int, bytes]]:
        self.seq += 1
        msg = struct.pack("=IHHII", 16 + len(body), mtype, flags | NLM_F_REQUEST, self.seq, 0) + body
        self.sock.send(msg)
        out: list[tuple[int, bytes]] = []
        while True:
            data = self.sock.recv(65536)
            i = 0
            while i < len(data):
                length, rtype, _flags, seq, _pid = struct.unpack_from("=IHHII", data, i)
                payload = data[i + 16 : i + length]
                i += (length + 3) & ~3
                if seq != self.seq:
                    continue
                if rtype == NLMSG_DONE:
                    return out
                if rtype == NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", payload)
                    if code:
                        raise OSError(-code, os.strerror(-code))
                    return out
                out.append((rtype, payload))
            if not flags & NLM_F_DUMP:
                return out

    # --- links -------------------------------------------------------------------------------
    @staticmethod
    def _link(payload: bytes) -> Link:
        _fam, _type, index, flags, _ch = struct.unpack_from("=BxHiII", payload)
        a = _parse_attrs(payload[16:])
        mac = ":".join(f"{b:02x}" for b in a.get(IFLA_ADDRESS, b""))
        master = struct.unpack("=I", a[IFLA_MASTER])[0] if IFLA_MASTER in a else 0
        return Link(index, a[IFLA_IFNAME].rstrip(b"\0").decode(), mac,
                    struct.unpack("=I", a[IFLA_MTU])[0], bool(flags & IFF_UP), master)

    def link(self, name: str) -> Link | None:
        try:
            msgs = self._request(RTM_GETLINK, 0, _ifinfo() + _str(IFLA_IFNAME, name))
        except OSError as e:
            if e.errno in (errno.ENODEV, errno.ENOENT):
                return None
            raise
        return self._link(msgs[0][1]) if msgs else None

    def _newlink(self, attrs: bytes, flags: int = NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK) -> None:
        self._request(RTM_NEWLINK, flags, _ifinfo() + attrs)

    def add_bridge(self, name: str, mtu: int) -> None:
        self._newlink(_str(IFLA_IFNAME, name) + _u32(IFLA_MTU, mtu)
                      + _attr(IFLA_LINKINFO | NLA_F_NESTED, _str(IFLA_INFO_KIND, "bridge")))

    def add_veth(self, name: str, peer: str, mtu: int, peer_netns_fd: int) -> None:
        """Create name here and its peer directly inside the netns given by fd."""
        peer_msg = _ifinfo() + _str(IFLA_IFNAME, peer) + _u32(IFLA_MTU, mtu) + _u32(IFLA_NET_NS_FD, peer_netns_fd)
        info = _str(IFLA_INFO_KIND, "veth") + _attr(IFLA_INFO_DATA | NLA_F_NESTED, _attr(VETH_INFO_PEER, peer_msg))
        self._newlink(_str(IFLA_IFNAME, name) + _u32(IFLA_MTU, mtu) + _attr(IFLA_LINKINFO | NLA_F_NESTED, info))

    def set_link(self, index: int, up: bool | None = None, master: int | None = None) -> None:
        attrs = _u32(IFLA_MASTER, master) if master is not None else b""
        flags = IFF_UP if up else 0
        change = IFF_UP if up is not None else 0
        self._request(RTM_NEWLINK, NLM_F_ACK, _ifinfo(index, flags, change) + attrs)

    def set_promisc(self, index: int, on: bool) -> None:
        # `ip link set promisc on`: IFF_PROMISC in ifi_flags with the same bit in ifi_change.
        self._request(RTM_NEWLINK, NLM_F_ACK, _ifinfo(index, IFF_PROMISC if on else 0, IFF_PROMISC))

    def links(self) -> list[Link]:
        return [self._link(p) for _t, p in self._request(RTM_GETLINK, NLM_F_DUMP, _ifinfo())]

    def set_hairpin(self, index: int, on: bool) -> None:
        # The bridge port flag lives in IFLA_PROTINFO of an AF_BRIDGE setlink (as `bridge link set hairpin`).
        body = _ifinfo(index, family=socket.AF_BRIDGE) + _attr(
            IFLA_PROTINFO | NLA_F_NESTED, _attr(IFLA_BRPORT_MODE, bytes([1 if on else 0])))
        self._request(RTM_SETLINK, NLM_F_ACK, body)

    def del_link(self, name: str) -> bool:
        try:
            self._request(RTM_DELLINK, NLM_F_ACK, _ifinfo() + _str(IFLA_IFNAME, name))
        except OSError as e:
            if e.errno in (errno.ENODEV, errno.ENOENT):
                return False
            raise
        return True

    # --- addresses and routes ----------------------------------------------------------------
    def addrs(self, index: int) -> list[str]:
        out = []
        for _t, p in self._request(RTM_GETADDR, NLM_F_DUMP, struct.pack("=BBBBI", socket.AF_INET, 0, 0, 0, 0)):
            fam, plen, _fl, _sc, idx = struct.unpack_from("=BBBBI", p)
            a = _parse_attrs(p[8:])
            if fam == socket.AF_INET and idx == index and IFA_LOCAL in a:
                out.append(f"{socket.inet_ntoa(a[IFA_LOCAL])}/{plen}")
        return out

    def add_addr(self, index: int, cidr: str, broadcast: str | None = None) -> None:
        ip, plen = cidr.split("/")
        raw = socket.inet_aton(ip)
        attrs = _attr(IFA_LOCAL, raw) + _attr(IFA_ADDRESS, raw)
        if broadcast:
            attrs += _attr(IFA_BROADCAST, socket.inet_aton(broadcast))
        body = struct.pack("=BBBBI", socket.AF_INET, int(plen), 0, 0, index) + attrs
        self._request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK, body)

    def add_route(self, dst: str, gw: str | None, index: int) -> None:
        net, plen = dst.split("/")
        # rtmsg: family, dst_len, src_len, tos, table main, proto boot, scope, type unicast, flags
        scope = 0 if gw else 253  # universe via a gateway, link otherwise
        body = struct.pack("=BBBBBBBBI", socket.AF_INET, int(plen), 0, 0, 254, 3, scope, 1, 0)
        body += _u32(RTA_OIF, index)
        if int(plen):
            body += _attr(RTA_DST, socket.inet_aton(net))
        if gw:
            body += _attr(RTA_GATEWAY, socket.inet_aton(gw))
        self._request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK, body)
