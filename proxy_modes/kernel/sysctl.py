"""Per-netns sysctls (net.ipv4.vs.*): written only inside a node netns, never in the host's root one."""

from __future__ import annotations

import os
import subprocess
from typing import Protocol


class Sysctl(Protocol):
    def get(self, key: str) -> str: ...

    def set(self, key: str, value: str) -> None: ...


def in_root_netns() -> bool:
    """True if this process shares PID 1's network namespace (the host's, in the emulator)."""
    try:
        return os.stat("/proc/self/ns/net").st_ino == os.stat("/proc/1/ns/net").st_ino
    except OSError:
        return False


class RealSysctl:
    """/proc/sys in the current netns, or `sysctl` via `ip netns exec` in a named one."""

    def __init__(self, netns: str | None = None, allow_root_netns: bool = False) -> None:
        self.netns = netns
        self.allow_root_netns = allow_root_netns  # only the VM tier, whose root netns is disposable

    def get(self, key: str) -> str:
        if self.netns:
            r = subprocess.run(["ip", "netns", "exec", self.netns, "sysctl", "-n", key],
                               capture_output=True, text=True, timeout=10, check=True)
            return r.stdout.strip()
        with open("/proc/sys/" + key.replace(".", "/")) as f:
            return f.read().strip()

    def set(self, key: str, value: str) -> None:
        if self.netns:
            subprocess.run(["ip", "netns", "exec", self.netns, "sysctl", "-q", "-w", f"{key}={value}"],
                           capture_output=True, text=True, timeout=10, check=True)
            return
        if in_root_netns() and not self.allow_root_netns:
            # The host's root namespace is left as it was (design rule): refuse rather than change it.
            raise PermissionError(f"refusing to set {key} in the root network namespace")
        with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
            f.write(value)


class FakeSysctl:
    def __init__(self, values: dict[str, str] | None = None) -> None:
        self.values = dict(values or {})

    def get(self, key: str) -> str:
        if key not in self.values:
            raise FileNotFoundError(f"/proc/sys/{key.replace('.', '/')}")
        return self.values[key]

    def set(self, key: str, value: str) -> None:
        if key not in self.values:  # net.ipv4.vs.* exist only once ip_vs is loaded
            raise FileNotFoundError(f"/proc/sys/{key.replace('.', '/')}")
        self.values[key] = value
