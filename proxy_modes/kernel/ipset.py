"""The ipset interface ipvs mode needs (`ipset save` / `ipset restore`), and the real one."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from typing import Protocol


class IpsetError(RuntimeError):
    """ipset refused something; the message is ipset's own."""


@dataclass
class SetInfo:
    name: str
    type: str  # e.g. "hash:ip,port", "bitmap:port"
    options: str = ""  # the rest of the create line ("family inet hashsize 1024 maxelem 65536")
    members: set[str] = field(default_factory=set)


class Ipset(Protocol):
    def save(self) -> str:
        """`ipset save` output for every set (create and add lines)."""

    def restore(self, text: str) -> None:
        """`ipset restore`: commands applied in order; stops at the first error (raises)."""


def parse_save(text: str) -> dict[str, SetInfo]:
    """Sets and members from `ipset save` text."""
    sets: dict[str, SetInfo] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "create":
            sets[parts[1]] = SetInfo(parts[1], parts[2], " ".join(parts[3:]))
        elif len(parts) >= 3 and parts[0] == "add" and parts[1] in sets:
            sets[parts[1]].members.add(parts[2])
    return sets


class RealIpset:
    """Runs the ipset binary in the current netns (the agent's) or in a named one (tests)."""

    def __init__(self, binary: str = "ipset", netns: str | None = None, timeout: float = 60.0) -> None:
        self.binary = binary
        self.timeout = timeout
        self.prefix = ["ip", "netns", "exec", netns] if netns else []

    def _run(self, args: list[str], stdin: str | None = None) -> str:
        r = subprocess.run(self.prefix + [self.binary, *args], input=stdin, capture_output=True, text=True,
                           timeout=self.timeout)
        if r.returncode != 0:
            raise IpsetError(f"ipset {args[0]} failed (exit {r.returncode}): {r.stderr.strip()}")
        return r.stdout

    def save(self) -> str:
        return self._run(["save"])

    def restore(self, text: str) -> None:
        self._run(["restore"], text)
