"""What server and join read and change on the machine itself: its interface, sysctls, preflight checks."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from netkube.config import ConfigError

# Set in the machine's root netns (what the emulator's topology sets in each node netns): routing
# between pods, cni0 and flannel.1, and bridged pod traffic through iptables (kube-proxy's DNAT for
# pod → Service → pod on the same bridge). The old values are recorded so `netkube reset` restores them.
SYSCTLS = {"net.ipv4.ip_forward": "1", "net.bridge.bridge-nf-call-iptables": "1"}
# Devices the node agent makes; a machine already holding one runs another network add-on.
OWNED_LINKS = ("cni0", "flannel.1")
MACHINE_FILE = "machine.json"


@dataclass
class Machine:
    """<state>/machine.json: what server/join set up here, for `netkube reset` (and `token create`)."""

    role: str  # "server" or "join"
    node: str
    iface: str
    node_ip: str
    api_url: str
    sysctls_before: dict[str, str] = field(default_factory=dict)

    def save(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        (state_dir / MACHINE_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, state_dir: Path) -> Machine | None:
        try:
            return cls(**json.loads((state_dir / MACHINE_FILE).read_text()))
        except FileNotFoundError:
            return None


def _ip_json(*args: str) -> list[dict]:
    proc = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, timeout=10)
    if proc.returncode != 0:
        raise ConfigError(f"`ip {' '.join(args)}` failed: {proc.stderr.strip()}")
    return list(json.loads(proc.stdout or "[]"))


def iface_addresses() -> dict[str, list[ipaddress.IPv4Interface]]:
    out: dict[str, list[ipaddress.IPv4Interface]] = {}
    for link in _ip_json("-4", "addr", "show"):
        for a in link.get("addr_info", []):
            if a.get("family") == "inet" and a.get("scope") == "global":
                out.setdefault(link["ifname"], []).append(ipaddress.IPv4Interface(f"{a['local']}/{a['prefixlen']}"))
    return out


def pick_interface(iface: str | None, address: str | None, towards: str | None = None) -> tuple[str, ipaddress.IPv4Interface]:
    """The node interface and its address: the one named, the one holding `address`, the one routing
    to `towards` (join: the server), else the default route's — the choices kubeadm and flannel make."""
    have = iface_addresses()
    if iface:
        if iface not in have:
            names = ", ".join(f"{n} ({', '.join(str(a) for a in v)})" for n, v in sorted(have.items()))
            raise ConfigError(f"--iface {iface}: no such interface with an IPv4 address here; have: {names or 'none'}")
        if address:
            for a in have[iface]:
                if str(a.ip) == address:
                    return iface, a
            raise ConfigError(f"--advertise-address {address} is not an address of {iface}")
        return iface, have[iface][0]
    if address:
        for name, addrs in have.items():
            for a in addrs:
                if str(a.ip) == address:
                    return name, a
        raise ConfigError(f"--advertise-address {address} is not an address of this machine; "
                          f"give one of: {', '.join(str(a.ip) for v in have.values() for a in v) or 'none'}")
    route = _ip_json("route", "get", towards) if towards else [r for r in _ip_json("route", "show", "default")]
    dev = route[0].get("dev") if route else None
    if not dev or dev not in have:
        raise ConfigError("cannot tell which interface is on the node network; name it with --iface "
                          f"(interfaces with IPv4: {', '.join(sorted(have)) or 'none'})")
    return dev, have[dev][0]


def existing_links() -> list[str]:
    names = {link["ifname"] for link in _ip_json("link", "show")}
    return [n for n in OWNED_LINKS if n in names]


def _sysctl_path(key: str) -> Path:
    # /proc/sys/net follows the reader's network namespace: this machine's root netns
    return Path("/proc/sys") / key.replace(".", "/")


def apply_sysctls() -> dict[str, str]:
    """Set SYSCTLS; returns the values before. br_netfilter is loaded first where it is a module."""
    if not _sysctl_path("net.bridge.bridge-nf-call-iptables").exists():
        subprocess.run(["modprobe", "br_netfilter"], capture_output=True)
    before: dict[str, str] = {}
    for key, value in SYSCTLS.items():
        path = _sysctl_path(key)
        if not path.exists():
            raise ConfigError(f"sysctl {key} is missing: the kernel needs the br_netfilter module "
                              f"(`modprobe br_netfilter`)")
        before[key] = path.read_text().strip()
        path.write_text(value)
    return before


def restore_sysctls(before: dict[str, str]) -> None:
    for key, value in before.items():
        path = _sysctl_path(key)
        if path.exists():
            path.write_text(value)


def confirm(what: str, yes: bool) -> None:
    """server, join and reset change the machine's root network namespace: say so, and ask."""
    if yes:
        return
    text = (f"netkube {what} changes this machine's own network (root namespace): it adds the cni0 and "
            f"flannel.1 devices, routes, iptables/nftables rules of kube-proxy and sysctls "
            f"({', '.join(SYSCTLS)}); `netkube reset` undoes them.")
    if not sys.stdin.isatty():
        raise ConfigError(f"{text} Pass --yes to go ahead (stdin is not a terminal, so I cannot ask).")
    print(text)
    answer = input("Continue? [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise ConfigError("stopped: nothing was changed")


def preflight(state_dir: Path) -> None:
    """Refuse a second set-up on one machine (kubeadm's preflight checks do the same)."""
    if (state_dir / MACHINE_FILE).exists() or (state_dir / "cluster.json").exists():
        raise ConfigError(f"this machine is already set up for cluster {state_dir.name!r} ({state_dir}); "
                          f"run `netkube reset --yes` first")
    links = existing_links()
    if links:
        raise ConfigError(f"this machine already has {', '.join(links)} (another pod network?); remove "
                          f"{'it' if len(links) == 1 else 'them'} or run `netkube reset --yes` first")
