"""An in-memory ipset that parses restore input and refuses what ipset/the kernel refuses."""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Callable

from proxy_modes.kernel.ipset import IpsetError, SetInfo

TYPES = ("hash:ip", "hash:ip,port", "hash:ip,port,ip", "hash:ip,port,net", "bitmap:port")
PROTOS = ("tcp", "udp", "sctp")


def _ip(v: str) -> None:
    ipaddress.IPv4Address(v)


def _ipport(v: str) -> None:
    ip, pp = v.split(",", 1)
    _ip(ip)
    proto, _, port = pp.rpartition(":")
    if proto not in PROTOS or not 0 <= int(port) < 65536:
        raise ValueError(v)


def check_member(set_type: str, options: str, member: str) -> None:
    """Raise ValueError for a member ipset would reject for this set type."""
    if set_type == "hash:ip":
        _ip(member)
    elif set_type == "hash:ip,port":
        _ipport(member)
    elif set_type in ("hash:ip,port,ip", "hash:ip,port,net"):
        head, _, last = member.rpartition(",")
        _ipport(head)
        ipaddress.IPv4Network(last) if set_type.endswith("net") else _ip(last)
    elif set_type == "bitmap:port":
        opts = options.split()
        lo, hi = opts[opts.index("range") + 1].split("-")
        if not int(lo) <= int(member) <= int(hi):
            raise ValueError(member)


class FakeIpset:
    """Stateful fake of the Ipset protocol. `in_use(name)` says whether an iptables rule references
    a set (the kernel refuses to destroy it then); wire it to a FakeIptables in tests."""

    def __init__(self, in_use: Callable[[str], bool] | None = None) -> None:
        self.sets: dict[str, SetInfo] = {}
        self.in_use = in_use or (lambda _name: False)
        self.restores: list[str] = []

    def exists(self, name: str) -> bool:
        return name in self.sets

    def save(self) -> str:
        out: list[str] = []
        for s in self.sets.values():
            out.append(f"create {s.name} {s.type} {s.options}".rstrip())
            out += [f"add {s.name} {m}" for m in sorted(s.members)]
        return "\n".join(out) + ("\n" if out else "")

    def restore(self, text: str) -> None:
        self.restores.append(text)
        work = copy.deepcopy(self.sets)
        for n, line in enumerate(text.splitlines(), 1):
            toks = line.split()
            if not toks or toks[0].startswith("#"):
                continue
            exist = "-exist" in toks
            toks = [t for t in toks if t != "-exist"]
            try:
                self._apply(work, toks, exist)
            except IpsetError as e:
                # ipset restore stops at the failing line; what came before it stays applied.
                self.sets = work
                raise IpsetError(f"ipset v7.17: Error in line {n}: {e}") from None
        self.sets = work

    def _apply(self, work: dict[str, SetInfo], toks: list[str], exist: bool) -> None:
        cmd, name = toks[0], toks[1] if len(toks) > 1 else ""
        if cmd == "create":
            stype, options = toks[2], " ".join(toks[3:])
            if stype not in TYPES:
                raise IpsetError(f"Syntax error: unknown settype {stype}")
            if stype == "bitmap:port" and "range" not in toks:
                raise IpsetError("Syntax error: Missing mandatory option: range")
            if name in work:
                if exist and work[name].type == stype:
                    return
                raise IpsetError("Set cannot be created: set with the same name already exists")
            work[name] = SetInfo(name, stype, options)
            return
        if cmd in ("add", "del"):
            if name not in work:
                raise IpsetError("The set with the given name does not exist")
            s, member = work[name], toks[2]
            try:
                check_member(s.type, s.options, member)
            except (ValueError, IndexError):
                raise IpsetError(f"Syntax error: '{member}' is not a valid {s.type} element") from None
            if cmd == "add":
                if member in s.members and not exist:
                    raise IpsetError("Element cannot be added to the set: it's already added")
                s.members.add(member)
            else:
                if member not in s.members and not exist:
                    raise IpsetError("Element cannot be deleted from the set: it's not added")
                s.members.discard(member)
            return
        if cmd in ("flush", "destroy"):
            if name not in work:
                raise IpsetError("The set with the given name does not exist")
            if cmd == "flush":
                work[name].members.clear()
            elif self.in_use(name):
                raise IpsetError("Set cannot be destroyed: it is in use by a kernel component")
            else:
                del work[name]
            return
        raise IpsetError(f"Syntax error: unknown command {cmd}")
