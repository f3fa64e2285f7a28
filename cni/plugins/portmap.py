"""The portmap plugin (chained): hostPort → pod DNAT from runtimeConfig.portMappings, as upstream."""

from __future__ import annotations

import sys

from cni.spec import ERR_INVALID_CONFIG, Args, CniError, Plugin, main

# Only when there are mappings (most pods have none): subprocess, hashlib, dataclasses, ... cost
# more than the rest of a plugin run's start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from contextlib import AbstractContextManager
    from typing import Any

    from cni import portmap_rules as rules


def _run(argv: list[str], stdin: str | None = None) -> str:
    import subprocess

    p = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30)
    if p.returncode:
        raise CniError(999, f"{argv[0]} failed", p.stderr.strip())
    return p.stdout


def _locked() -> AbstractContextManager[None]:
    from contextlib import contextmanager

    return contextmanager(_locked_gen)()


def _locked_gen() -> Iterator[None]:
    # Read-modify-write of shared chains must not interleave between concurrent ADDs; xtables.lock
    # only covers one iptables-restore, so we flock this module's own file around the pair.
    import fcntl

    with open(__file__, "rb") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        yield


def _maps(a: Args) -> list[rules.Mapping]:
    rc = a.conf.get("runtimeConfig") or {}
    if not isinstance(rc, dict):
        raise CniError(ERR_INVALID_CONFIG, "portmap: runtimeConfig must be an object")
    raw = rc.get("portMappings")
    if raw is None or raw == []:
        return []
    from cni import portmap_rules as rules

    return rules.parse_mappings(raw)


def _route_localnet(prev: dict[str, Any]) -> None:
    # Upstream enables route_localnet on the host-side interface so 127.0.0.1:hostPort can be DNATed.
    for iface in prev.get("interfaces", []):
        if not iface.get("sandbox") and iface.get("name"):
            try:
                with open(f"/proc/sys/net/ipv4/conf/{iface['name']}/route_localnet", "w") as f:
                    f.write("1")
            except OSError:
                pass
            return


def add(a: Args) -> dict[str, Any]:
    prev = a.conf.get("prevResult")
    if not isinstance(prev, dict):
        raise CniError(ERR_INVALID_CONFIG, "portmap: must be called as a chained plugin (no prevResult)")
    maps = _maps(a)
    if not maps:
        return dict(prev)  # nothing to do: pass the previous result on, as upstream
    from cni import portmap_rules as rules

    pod_ip, pod_net = rules.pod_address(prev)
    with _locked():
        text = rules.setup_rules(_run(["iptables-save", "-t", "nat"]), str(a.conf["name"]), a.container_id,
                                 maps, pod_ip, pod_net)
        _run(["iptables-restore", "-w", "5", "--noflush"], text)
    _route_localnet(prev)
    return dict(prev)


def delete(a: Args) -> None:
    # Works from the chain name alone (name + container ID): no prevResult needed, idempotent.
    from cni import portmap_rules as rules

    with _locked():
        text = rules.teardown_rules(_run(["iptables-save", "-t", "nat"]), str(a.conf["name"]), a.container_id)
        if text:
            _run(["iptables-restore", "-w", "5", "--noflush"], text)


def check(a: Args) -> None:
    prev = a.conf.get("prevResult")
    if not isinstance(prev, dict):
        raise CniError(ERR_INVALID_CONFIG, "portmap CHECK: required prevResult missing")
    maps = _maps(a)
    if not maps:
        return
    from cni import portmap_rules as rules

    pod_ip, _net = rules.pod_address(prev)
    missing = rules.missing_rules(_run(["iptables-save", "-t", "nat"]), str(a.conf["name"]), a.container_id,
                                  maps, pod_ip)
    if missing:
        raise CniError(ERR_INVALID_CONFIG, "portmap: rules missing", "; ".join(missing))


PLUGIN = Plugin(add=add, delete=delete, check=check)

if __name__ == "__main__":
    sys.exit(main(PLUGIN))
