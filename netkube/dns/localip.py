"""The addresses this server answers on (CoreDNS's localIPs, used for NS and ns.dns answers)."""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct

SIOCGIFADDR = 0x8915


def interface_ipv4s() -> list[str]:
    """IPv4 addresses of the interfaces of this network namespace, loopback excluded."""
    out = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            try:
                raw = fcntl.ioctl(s.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
            except OSError:
                continue  # no IPv4 address on this interface
            ip = socket.inet_ntoa(raw[20:24])
            if not ipaddress.ip_address(ip).is_loopback:
                out.append(ip)
    return out


def local_ips(bind: str) -> tuple[str, ...]:
    if bind not in ("0.0.0.0", "::", ""):
        return (bind,)
    try:
        return tuple(interface_ipv4s())
    except OSError:
        return ()
