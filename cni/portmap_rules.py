"""The portmap plugin's nat rules as iptables-restore text: CNI-HOSTPORT-* chains and CNI-DN-<hash>."""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from typing import Any

from cni.spec import ERR_INVALID_CONFIG, CniError

DNAT = "CNI-HOSTPORT-DNAT"
SETMARK = "CNI-HOSTPORT-SETMARK"
MASQ = "CNI-HOSTPORT-MASQ"
MARK = 0x2000  # upstream markMasqBit default 13
# The shared chains and their hooks, exactly as upstream writes them; created once, never deleted.
TOP_JUMPS = [
    f"-A PREROUTING -m addrtype --dst-type LOCAL -j {DNAT}",
    f"-A OUTPUT -m addrtype --dst-type LOCAL -j {DNAT}",
    f'-A POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j {MASQ}',
]
CHAIN_RULES = {
    MASQ: [f"-A {MASQ} -m mark --mark {MARK:#x}/{MARK:#x} -j MASQUERADE"],
    SETMARK: [f'-A {SETMARK} -m comment --comment "CNI portfwd masquerade mark" '
              f"-j MARK --set-xmark {MARK:#x}/{MARK:#x}"],
    DNAT: [],
}


@dataclass(frozen=True)
class Mapping:
    host_port: int
    container_port: int
    protocol: str = "tcp"
    host_ip: str = ""


def dn_chain(network: str, container_id: str) -> str:
    # upstream utils.MustFormatChainNameWithPrefix(name, id, "DN-"): "CNI-DN-" + sha512 hex, 28 chars
    return ("CNI-DN-" + hashlib.sha512((network + container_id).encode()).hexdigest())[:28]


def parse_mappings(raw: Any) -> list[Mapping]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise CniError(ERR_INVALID_CONFIG, "portmap: runtimeConfig.portMappings must be a list")
    out = []
    for m in raw:
        try:
            hp, cp = int(m["hostPort"]), int(m["containerPort"])
            proto = str(m.get("protocol") or "tcp").lower()
        except (KeyError, TypeError, ValueError):
            raise CniError(ERR_INVALID_CONFIG, f"portmap: invalid port mapping {m!r}",
                           "each needs integer hostPort and containerPort") from None
        if not (0 < hp < 65536 and 0 < cp < 65536):
            raise CniError(ERR_INVALID_CONFIG, f"portmap: invalid port mapping {m!r}", "ports must be 1..65535")
        if proto not in ("tcp", "udp", "sctp"):
            raise CniError(ERR_INVALID_CONFIG, f"portmap: unknown protocol {proto!r}", "use tcp, udp or sctp")
        out.append(Mapping(hp, cp, proto, str(m.get("hostIP") or "")))
    return out


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def setup_rules(save: str, network: str, container_id: str, maps: list[Mapping],
                pod_ip: str, pod_net: str) -> str:
    """Restore text (for --noflush) adding the shared chains where missing and this container's chain.

    `save` is the current `iptables-save -t nat`: declaring an existing chain under --noflush would
    flush it, so shared chains are only declared (and filled) when they do not exist yet.
    """
    lines = save.splitlines()
    have = {ln.split()[0][1:] for ln in lines if ln.startswith(":")}
    chain = dn_chain(network, container_id)
    out = ["*nat"]
    for c in (DNAT, SETMARK, MASQ):
        if c not in have:
            out.append(f":{c} - [0:0]")
    out.append(f":{chain} - [0:0]")  # new, or flushed and refilled when ADD runs twice
    for c in (DNAT, SETMARK, MASQ):
        if c not in have:
            out += CHAIN_RULES[c]
    out += [j for j in TOP_JUMPS if j not in lines]
    for m in maps:
        dst = f" -d {m.host_ip}/32" if m.host_ip else ""
        match = f"-p {m.protocol} -m {m.protocol} --dport {m.host_port}"
        # hairpin (a pod reaching its own hostPort) and localhost connections need SNAT
        out.append(f"-A {chain} -s {pod_net}{dst} {match} -j {SETMARK}")
        out.append(f"-A {chain} -s 127.0.0.1/32{dst} {match} -j {SETMARK}")
        out.append(f"-A {chain}{dst} {match} -j DNAT --to-destination {pod_ip}:{m.container_port}")
    comment = _quote(f'dnat name: "{network}" id: "{container_id}"')
    jump_prefix = f"-A {DNAT} "
    existing = {ln for ln in lines if ln.startswith(jump_prefix) and ln.endswith(f"-j {chain}")}
    for proto in dict.fromkeys(m.protocol for m in maps):
        ports = ",".join(str(m.host_port) for m in maps if m.protocol == proto)
        rule = f"{jump_prefix}-p {proto} -m comment --comment {comment} -m multiport --dports {ports} -j {chain}"
        if rule not in existing:
            out.append(rule)
    out += ["COMMIT", ""]
    return "\n".join(out)


def teardown_rules(save: str, network: str, container_id: str) -> str | None:
    chain = dn_chain(network, container_id)
    lines = save.splitlines()
    if not any(ln.startswith(f":{chain} ") for ln in lines):
        return None
    out = ["*nat"]
    out += ["-D" + ln[2:] for ln in lines if ln.startswith("-A ") and ln.endswith(f"-j {chain}")]
    out += [f"-F {chain}", f"-X {chain}", "COMMIT", ""]
    return "\n".join(out)


def missing_rules(save: str, network: str, container_id: str, maps: list[Mapping], pod_ip: str) -> list[str]:
    """For CHECK: the DNAT rules of maps that are absent from save."""
    chain = dn_chain(network, container_id)
    lines = set(save.splitlines())
    want = []
    for m in maps:
        dst = f" -d {m.host_ip}/32" if m.host_ip else ""
        want.append(f"-A {chain}{dst} -p {m.protocol} -m {m.protocol} --dport {m.host_port} "
                    f"-j DNAT --to-destination {pod_ip}:{m.container_port}")
    return [w for w in want if w not in lines]


def pod_address(prev: dict[str, Any]) -> tuple[str, str]:
    """(pod IPv4, its network) from a prevResult: the first IPv4 address."""
    for ip in prev.get("ips", []):
        iface = ipaddress.ip_interface(ip["address"])
        if iface.version == 4:
            return str(iface.ip), str(iface.network)
    raise CniError(ERR_INVALID_CONFIG, "portmap: prevResult has no IPv4 address",
                   "run portmap after a plugin that assigns addresses (bridge, ptp)")
