"""The flannel meta plugin: reads subnet.env and delegates to bridge + host-local (as flannel-cni)."""

from __future__ import annotations

import ipaddress
import os
import sys

from cni import jsonlite as json
from cni.spec import ERR_INVALID_CONFIG, Args, CniError, Plugin, main

# typing costs milliseconds per plugin run (a fresh interpreter each): annotations only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_SUBNET_FILE = "/run/flannel/subnet.env"
DEFAULT_DATA_DIR = "/var/lib/cni/flannel"


def load_subnet_env(path: str) -> dict[str, Any]:
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise CniError(999, f"failed to load flannel 'subnet.env' file: open {path}: {e.strerror}. "
                       "Check the flannel pod log for this node.") from None
    env: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and not key.startswith("#"):
            env[key.strip()] = value.strip()
    missing = [k for k in ("FLANNEL_NETWORK", "FLANNEL_SUBNET", "FLANNEL_MTU", "FLANNEL_IPMASQ") if k not in env]
    if missing:
        raise CniError(ERR_INVALID_CONFIG, f"{path} is missing {', '.join(missing)}")
    try:
        mtu = int(env["FLANNEL_MTU"])
    except ValueError:
        raise CniError(ERR_INVALID_CONFIG, f"{path}: FLANNEL_MTU {env['FLANNEL_MTU']!r} is not a number") from None
    return {"network": env["FLANNEL_NETWORK"], "subnet": env["FLANNEL_SUBNET"], "mtu": mtu,
            "ipmasq": env["FLANNEL_IPMASQ"].lower() == "true"}


def delegate_conf(conf: dict[str, Any], fenv: dict[str, Any]) -> dict[str, Any]:
    """The bridge config flannel hands on, with user "delegate" keys winning (upstream order)."""
    d = dict(conf.get("delegate") or {})
    d.setdefault("type", "bridge")
    d.setdefault("ipMasq", not fenv["ipmasq"])  # flannel not masquerading → the bridge must
    d.setdefault("mtu", fenv["mtu"])
    if d["type"] == "bridge":
        d.setdefault("isGateway", True)
    if conf.get("cniVersion"):
        d["cniVersion"] = conf["cniVersion"]
    d["name"] = conf.get("name")
    ipam = dict(conf.get("ipam") or {})
    ipam.update(d.get("ipam") or {})
    ipam.setdefault("type", "host-local")
    # flannel-cni parses FLANNEL_SUBNET with net.ParseCIDR, which masks it: 10.244.1.1/24 → 10.244.1.0/24
    # (the reference host-local refuses a subnet with host bits set).
    ipam["ranges"] = [[{"subnet": str(ipaddress.IPv4Network(fenv["subnet"], strict=False))}]]
    ipam["routes"] = [{"dst": fenv["network"]}]
    d["ipam"] = ipam
    return d


def _saved_path(conf: dict[str, Any], container_id: str) -> str:
    if "/" in container_id or container_id in (".", ".."):
        raise CniError(ERR_INVALID_CONFIG, f"invalid container id {container_id!r}")
    return os.path.join(str(conf.get("dataDir") or DEFAULT_DATA_DIR), container_id)


def add(a: Args) -> dict[str, Any] | None:
    from cni import delegate

    d = delegate_conf(a.conf, load_subnet_env(str(a.conf.get("subnetFile") or DEFAULT_SUBNET_FILE)))
    path = _saved_path(a.conf, a.container_id)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    # Saved so DEL uses exactly this config even after subnet.env changed.
    with open(path, "w") as f:
        json.dump(d, f)
    try:
        return delegate.call(d["type"], "ADD", d, a)
    except Exception:
        os.remove(path)
        raise


def delete(a: Args) -> None:
    from cni import delegate

    path = _saved_path(a.conf, a.container_id)
    try:
        with open(path) as f:
            d = json.load(f)
    except FileNotFoundError:
        return  # nothing was set up, or DEL ran already
    delegate.call(d["type"], "DEL", d, a)
    os.remove(path)


def check(a: Args) -> None:
    from cni import delegate

    path = _saved_path(a.conf, a.container_id)
    try:
        with open(path) as f:
            d = json.load(f)
    except FileNotFoundError:
        raise CniError(3, f"flannel: no saved config for container {a.container_id}") from None
    if a.conf.get("prevResult"):
        d["prevResult"] = a.conf["prevResult"]
    delegate.call(d["type"], "CHECK", d, a)


PLUGIN = Plugin(add=add, delete=delete, check=check)

if __name__ == "__main__":
    sys.exit(main(PLUGIN))
