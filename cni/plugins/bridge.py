"""The bridge plugin: a veth from the pod into a Linux bridge, addresses from the IPAM delegate."""

from __future__ import annotations

import errno
import ipaddress
import os
import sys

from cni.spec import ERR_INVALID_CONFIG, ERR_UNKNOWN_CONTAINER, Args, CniError, Plugin, main

# typing costs milliseconds per plugin run (a fresh interpreter each): annotations only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _flag(c: dict[str, Any], key: str) -> bool:
    v = c.get(key, False)
    if not isinstance(v, bool):
        raise CniError(ERR_INVALID_CONFIG, f"bridge: {key} must be true or false, not {v!r}")
    return v


def _conf(a: Args) -> dict[str, Any]:
    c = a.conf
    ipam = c.get("ipam")
    # No ipam (or an empty one) is an L2-only network, as upstream bridge allows since v1.0.
    if ipam is not None and (not isinstance(ipam, dict) or (ipam and not ipam.get("type"))):
        raise CniError(ERR_INVALID_CONFIG, "bridge: 'ipam' needs a 'type'", 'e.g. "ipam": {"type": "host-local", ...}')
    if not c.get("name"):
        raise CniError(ERR_INVALID_CONFIG, "bridge: network config needs a 'name'")
    mtu = c.get("mtu", 1500)
    if not isinstance(mtu, int) or isinstance(mtu, bool) or not 68 <= mtu <= 65535:
        raise CniError(ERR_INVALID_CONFIG, f"bridge: invalid mtu {mtu!r}", "use an integer between 68 and 65535")
    hairpin, promisc = _flag(c, "hairpinMode"), _flag(c, "promiscMode")
    if hairpin and promisc:
        # Upstream refuses this too: a promiscuous bridge already hands a port its own frames back.
        raise CniError(ERR_INVALID_CONFIG, "cannot set hairpin mode and promiscuous mode at the same time.",
                       "drop one of hairpinMode, promiscMode")
    gw, defgw, ipmasq = _flag(c, "isGateway"), _flag(c, "isDefaultGateway"), _flag(c, "ipMasq")
    if not ipam and (gw or defgw or ipmasq):
        raise CniError(ERR_INVALID_CONFIG, "bridge: isGateway, isDefaultGateway and ipMasq need addresses",
                       "add an 'ipam' section or drop those options")
    return {
        "bridge": str(c.get("bridge") or "cni0"), "mtu": mtu, "ipam": ipam or {},
        "hairpin": hairpin, "promisc": promisc, "ipmasq": ipmasq,
        # isDefaultGateway implies isGateway, as upstream
        "gw": gw or defgw, "defgw": defgw,
    }


def _ensure_bridge(nl: Any, name: str, mtu: int, promisc: bool) -> Any:
    br = nl.link(name)
    if br is None:
        try:
            nl.add_bridge(name, mtu)
        except OSError as e:
            if e.errno != errno.EEXIST:  # a concurrent ADD made it first
                raise
        br = nl.link(name)
    if not br.up:
        nl.set_link(br.index, up=True)
    if promisc:
        nl.set_promisc(br.index, True)
    return br


def _pod_netlink(netns: str) -> Any:
    from cni.nl import Netlink, in_netns

    if not os.path.exists(netns):
        raise CniError(ERR_UNKNOWN_CONTAINER, f"failed to open netns {netns!r}: no such file")
    with in_netns(netns):
        return Netlink()


def add(a: Args) -> dict[str, Any]:
    from cni import delegate
    from cni.nl import Netlink

    cfg = _conf(a)
    node, pod = Netlink(), _pod_netlink(a.netns)
    try:
        if pod.link(a.ifname) is not None:
            raise CniError(ERR_INVALID_CONFIG, f"container veth name provided ({a.ifname}) already exists")
        br = _ensure_bridge(node, cfg["bridge"], cfg["mtu"], cfg["promisc"])
        host_name = "veth" + os.urandom(4).hex()
        fd = os.open(a.netns, os.O_RDONLY)
        try:
            node.add_veth(host_name, a.ifname, cfg["mtu"], fd)
        finally:
            os.close(fd)
        host = node.link(host_name)
        node.set_link(host.index, master=br.index)
        if cfg["hairpin"]:
            node.set_hairpin(host.index, True)
        node.set_link(host.index, up=True)
        if not cfg["ipam"]:
            return _l2_only(a, node, pod, br, host)
        try:
            ipam = delegate.call(cfg["ipam"]["type"], "ADD", a.conf, a) or {}
        except Exception:
            pod.del_link(a.ifname)
            raise
        try:
            return _configure(a, cfg, node, pod, br, host, ipam)
        except Exception:
            delegate.call(cfg["ipam"]["type"], "DEL", a.conf, a)
            pod.del_link(a.ifname)
            raise
    finally:
        node.close()
        pod.close()


def _interfaces(a: Args, node: Any, br: Any, host: Any, c: Any) -> list[dict[str, Any]]:
    br = node.link(br.name)  # the bridge takes its first port's MAC: read it after enslaving
    return [{"name": br.name, "mac": br.mac}, {"name": host.name, "mac": host.mac},
            {"name": a.ifname, "mac": c.mac, "sandbox": a.netns}]


def _l2_only(a: Args, node: Any, pod: Any, br: Any, host: Any) -> dict[str, Any]:
    c = pod.link(a.ifname)
    pod.set_link(c.index, up=True)
    return {"interfaces": _interfaces(a, node, br, host, c), "dns": {}}


def _configure(a: Args, cfg: dict[str, Any], node: Any, pod: Any, br: Any, host: Any,
               ipam: dict[str, Any]) -> dict[str, Any]:
    ips = [dict(ip) for ip in ipam.get("ips", [])]
    if not ips:
        raise CniError(ERR_INVALID_CONFIG, "IPAM plugin returned missing IP config")
    routes = [dict(r) for r in ipam.get("routes", [])]
    gw = ips[0].get("gateway")
    iface = ipaddress.IPv4Interface(ips[0]["address"])
    if cfg["gw"]:
        if not gw:
            gw = str(iface.network.network_address + 1)
            ips[0]["gateway"] = gw
        have = node.addrs(br.index)
        if f"{gw}/{iface.network.prefixlen}" not in have:
            try:
                node.add_addr(br.index, f"{gw}/{iface.network.prefixlen}", str(iface.network.broadcast_address))
            except OSError as e:
                if e.errno != errno.EEXIST:
                    raise
        # ip_forward in the current (node) netns: /proc/sys/net follows the reader's netns.
        with open("/proc/sys/net/ipv4/ip_forward", "r+") as f:
            if f.read().strip() != "1":
                f.seek(0)
                f.write("1")
    if cfg["defgw"] and not any(r.get("dst") == "0.0.0.0/0" for r in routes):
        routes.append({"dst": "0.0.0.0/0", "gw": gw})
    c = pod.link(a.ifname)
    for ip in ips:
        net = ipaddress.IPv4Interface(ip["address"]).network
        pod.add_addr(c.index, ip["address"], str(net.broadcast_address))
    pod.set_link(c.index, up=True)
    lo = pod.link("lo")
    if lo is not None and not lo.up:
        pod.set_link(lo.index, up=True)
    for r in routes:
        try:
            pod.add_route(r["dst"], r.get("gw") or gw, c.index)
        except OSError as e:
            if e.errno != errno.EEXIST:
                raise CniError(999, f"failed to add route {r}: {e}") from None
    if cfg["ipmasq"]:
        from cni import masq  # subprocess, hashlib, re: only when the bridge masquerades

        masq.setup(str(a.conf["name"]), a.container_id, str(iface.ip), str(iface.network))
    for ip in ips:
        ip["interface"] = 2
    return {"interfaces": _interfaces(a, node, br, host, c), "ips": ips, "routes": routes,
            "dns": ipam.get("dns", {})}


def delete(a: Args) -> None:
    from cni import delegate, masq

    cfg = _conf(a)
    if cfg["ipam"]:
        delegate.call(cfg["ipam"]["type"], "DEL", a.conf, a)
    # Deleting the pod end removes the whole veth pair; a gone netns means it is gone already.
    if a.netns and os.path.exists(a.netns):
        pod = _pod_netlink(a.netns)
        try:
            pod.del_link(a.ifname)
        finally:
            pod.close()
    if cfg["ipmasq"]:
        masq.teardown(str(a.conf["name"]), a.container_id)


def check(a: Args) -> None:
    from cni import delegate
    from cni.nl import Netlink

    cfg = _conf(a)
    prev = a.conf.get("prevResult")
    if not isinstance(prev, dict):
        raise CniError(ERR_INVALID_CONFIG, "bridge CHECK: required prevResult missing")
    if cfg["ipam"]:
        delegate.call(cfg["ipam"]["type"], "CHECK", a.conf, a)
    node, pod = Netlink(), _pod_netlink(a.netns)
    try:
        br = node.link(cfg["bridge"])
        if br is None:
            raise CniError(ERR_INVALID_CONFIG, f"bridge {cfg['bridge']} not found")
        c = pod.link(a.ifname)
        if c is None:
            raise CniError(ERR_UNKNOWN_CONTAINER, f"interface {a.ifname} not found in {a.netns}")
        for iface in prev.get("interfaces", []):
            if iface.get("sandbox") and iface.get("name") == a.ifname and iface.get("mac", c.mac) != c.mac:
                raise CniError(ERR_INVALID_CONFIG, f"{a.ifname} has MAC {c.mac}, prevResult says {iface['mac']}")
        if not c.up:
            raise CniError(ERR_INVALID_CONFIG, f"{a.ifname} in {a.netns} is down")
        have = pod.addrs(c.index)
        for ip in prev.get("ips", []):
            if ip["address"] not in have:
                raise CniError(ERR_INVALID_CONFIG, f"address {ip['address']} missing on {a.ifname}")
    finally:
        node.close()
        pod.close()


def status(a: Args) -> None:
    from cni import delegate

    cfg = _conf(a)
    if cfg["ipam"]:
        delegate.call(cfg["ipam"]["type"], "STATUS", a.conf, a)


def gc(a: Args) -> None:
    """Hand GC to the IPAM plugin, and drop ipMasq chains of attachments that are gone."""
    from cni import delegate, masq

    cfg = _conf(a)
    if cfg["ipam"]:
        delegate.call(cfg["ipam"]["type"], "GC", a.conf, a)
    if cfg["ipmasq"]:
        valid = {str(v.get("containerID")) for v in a.conf.get("cni.dev/valid-attachments") or []}
        masq.gc(str(a.conf["name"]), valid)


PLUGIN = Plugin(add=add, delete=delete, check=check, status=status, gc=gc)

if __name__ == "__main__":
    sys.exit(main(PLUGIN))
