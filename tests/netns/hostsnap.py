"""A snapshot of the host root namespace's network state, to prove netkube left it alone."""

from __future__ import annotations

import re
import subprocess

# Counters that move on their own on a live machine.
VOLATILE = re.compile(r"nf_conntrack_count|conntrack_expect|random|boot_id|uuid|_count$")


def _run(*argv: str) -> str:
    return subprocess.run(list(argv), capture_output=True, text=True).stdout


def snapshot() -> dict[str, str]:
    ipt = "\n".join(
        line for line in _run("iptables-save").splitlines() if not line.startswith("#")
    )
    ipt = re.sub(r"\[\d+:\d+\]", "[0:0]", ipt)
    sysctl = "\n".join(
        line
        for line in _run("sysctl", "-a", "-r", r"^net\.(ipv4|bridge|ipv6\.conf\.all|core\.somaxconn)").splitlines()
        if not VOLATILE.search(line.split("=")[0])
    )
    return {
        "routes": _run("ip", "route", "show", "table", "all"),
        "addresses": re.sub(r"valid_lft \S+ preferred_lft \S+", "", _run("ip", "-o", "addr")),
        "links": "\n".join(sorted(re.sub(r"^\d+: ", "", x) for x in _run("ip", "-o", "link").splitlines())),
        "iptables": ipt,
        "nft": _run("nft", "list", "ruleset"),
        "sysctl": sysctl,
    }


def diff(before: dict[str, str], after: dict[str, str]) -> dict[str, tuple[str, str]]:
    return {k: (before[k], after[k]) for k in before if before[k] != after[k]}
