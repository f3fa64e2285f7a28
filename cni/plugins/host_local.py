"""The host-local IPAM plugin: addresses from ranges, recorded one file per IP under dataDir."""

from __future__ import annotations

import ipaddress
import sys

from cni.ipam.ranges import iterate, parse_ipam, rangeset_str
from cni.ipam.store import Store
from cni.spec import ERR_INVALID_CONFIG, ERR_TRY_AGAIN, ERR_UNKNOWN_CONTAINER, Args, CniError, Plugin, main

# typing costs milliseconds per plugin run (a fresh interpreter each): annotations only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_DATA_DIR = "/var/lib/cni/networks"


def _setup(a: Args) -> tuple[dict[str, Any], Store]:
    ipam = a.conf.get("ipam")
    if not isinstance(ipam, dict):
        raise CniError(ERR_INVALID_CONFIG, "IPAM config missing 'ipam' key")
    name = a.conf.get("name")
    if not name or "/" in str(name):
        raise CniError(ERR_INVALID_CONFIG, "network config needs a 'name' without '/'")
    return ipam, Store(str(ipam.get("dataDir") or DEFAULT_DATA_DIR), str(name))


def add(a: Args) -> dict[str, Any]:
    ipam, store = _setup(a)
    sets = parse_ipam(ipam)
    ips: list[dict[str, Any]] = []
    with store.locked():
        mine = store.by_id(a.container_id, a.ifname)
        for idx, rs in enumerate(sets):
            for held in mine:
                if any(r.contains(ipaddress.IPv4Address(held)) for r in rs):
                    raise CniError(999, f"{held} has been allocated to {a.container_id}, "
                                   "duplicate allocation is not allowed")
            last = store.last_reserved(idx)
            last_ip = ipaddress.IPv4Address(last) if last else None
            for ip, r in iterate(rs, last_ip):
                if store.reserve(a.container_id, a.ifname, str(ip), idx):
                    ips.append({"address": f"{ip}/{r.subnet.prefixlen}", "gateway": str(r.gateway)})
                    break
            else:
                if ips:  # give back what this call took from earlier range sets
                    store.release_by_id(a.container_id, a.ifname)
                raise CniError(999, f"failed to allocate for range {idx}: "
                               f"no IP addresses available in range set: {rangeset_str(rs)}")
    routes = [dict(r) for r in ipam.get("routes", [])]
    return {"ips": ips, "routes": routes, "dns": dict(ipam.get("dns", {}) or {})}


def delete(a: Args) -> None:
    _ipam, store = _setup(a)
    with store.locked():
        store.release_by_id(a.container_id, a.ifname)


def check(a: Args) -> None:
    _ipam, store = _setup(a)
    if not store.by_id(a.container_id, a.ifname):
        raise CniError(ERR_UNKNOWN_CONTAINER,
                       f"host-local: Failed to find address added by container {a.container_id}")


def status(a: Args) -> None:
    """Ready when the ranges parse and the store directory can be written (spec 1.1 STATUS)."""
    ipam, store = _setup(a)
    parse_ipam(ipam)
    try:
        with store.locked():
            pass
    except OSError as e:
        raise CniError(ERR_TRY_AGAIN, f"host-local: data dir {store.dir} not usable: {e.strerror}") from None


def gc(a: Args) -> None:
    """Release every address whose (containerID, ifname) is not in cni.dev/valid-attachments."""
    _ipam, store = _setup(a)
    valid = {(str(v.get("containerID", "")), str(v.get("ifname", "")))
             for v in a.conf.get("cni.dev/valid-attachments") or []}
    with store.locked():
        store.release_unless(valid)


PLUGIN = Plugin(add=add, delete=delete, check=check, status=status, gc=gc)

if __name__ == "__main__":
    sys.exit(main(PLUGIN))
