"""The loopback plugin: bring lo up (ADD) or down (DEL) in the container's netns."""

from __future__ import annotations

import os
import sys
from typing import Any

from cni.spec import ERR_INVALID_CONFIG, Args, CniError, Plugin, main


def _set_lo(netns: str, up: bool) -> None:
    from cni.nl import Netlink, in_netns

    with in_netns(netns):
        nl = Netlink()
    try:
        lo = nl.link("lo")
        if lo is None:
            raise CniError(ERR_INVALID_CONFIG, f"no loopback device in {netns}")
        nl.set_link(lo.index, up=up)
    finally:
        nl.close()


def add(a: Args) -> dict[str, Any]:
    _set_lo(a.netns, True)
    if a.conf.get("prevResult"):
        return dict(a.conf["prevResult"])
    return {"interfaces": [{"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": a.netns}],
            "ips": [{"address": "127.0.0.1/8", "interface": 0}], "dns": {}}


def delete(a: Args) -> None:
    if a.netns and os.path.exists(a.netns):  # DEL succeeds when the netns is already gone
        _set_lo(a.netns, False)


def check(a: Args) -> None:
    from cni.nl import Netlink, in_netns

    with in_netns(a.netns):
        nl = Netlink()
    try:
        lo = nl.link("lo")
        if lo is None or not lo.up:
            raise CniError(ERR_INVALID_CONFIG, "loopback interface is down")
    finally:
        nl.close()


PLUGIN = Plugin(add=add, delete=delete, check=check)

if __name__ == "__main__":
    sys.exit(main(PLUGIN))
