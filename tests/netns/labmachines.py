"""Emulated lab machines for tests: each is a network + mount + UTS namespace, like a small VM.

A machine's network namespace is its "root" namespace (what `netkube server`/`join` change); its
mount namespace has private /var/lib/netkube, /etc/cni and /run bound from directories the test
made, so machines share nothing on disk that separate VMs would not. They hang on one L2 segment:
a bridge in a fourth namespace holding .1, as Vagrant's host-only network.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

PRIVATE = ("/var/lib/netkube", "/etc/cni", "/run")


def _run(argv: list[str], timeout: float = 30, check: bool = True, **kw) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{argv} exited {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    return p


@dataclass
class Machine:
    netns: str
    hostname: str
    ip: str
    root: Path  # the machine's private directories live here
    holder: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)

    def run(self, argv: list[str], timeout: float = 120, check: bool = True,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """argv inside this machine: its network, mount and UTS namespaces (nsenter on the holder)."""
        assert self.holder is not None
        return _run(["nsenter", "-t", str(self.holder.pid), "-n", "-m", "-u", "--", *argv], timeout=timeout,
                    check=check, env={**os.environ, **self.env, **(env or {})}, cwd="/")

    def netns_inode(self) -> int:
        return os.stat(f"/run/netns/{self.netns}").st_ino

    def pids(self) -> set[int]:
        """Every process in this machine's netns or in a netns it made (its pods, under its own /run)."""
        inodes = {self.netns_inode()}
        if self.holder is not None:
            inner = Path(f"/proc/{self.holder.pid}/root/run/netns")
            for f in inner.iterdir() if inner.is_dir() else []:
                try:
                    inodes.add(f.stat().st_ino)
                except OSError:
                    continue
        want, out = {f"net:[{i}]" for i in inodes}, set()
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    if os.readlink(f"/proc/{d}/ns/net") in want:
                        out.add(int(d))
                except OSError:
                    continue
        return out

    def snapshot(self) -> dict[str, str]:
        """What `netkube reset` must give back: addresses, routes, links, iptables rules, processes."""
        # IPv4: IPv6 link-local addresses and routes come and go with DAD on their own
        addr = self.run(["ip", "-4", "-o", "addr"]).stdout
        links = self.run(["ip", "-o", "link"]).stdout
        return {
            "addresses": re.sub(r"valid_lft \S+ preferred_lft \S+", "", addr),
            "routes": self.run(["ip", "-4", "route", "show", "table", "all"]).stdout,
            "links": "\n".join(sorted(re.sub(r"^\d+: ", "", x) for x in links.splitlines())),
            "iptables": iptables_rules(self.run(["iptables-save"]).stdout),
            "processes": " ".join(str(p) for p in sorted(self.pids())),
            "state": " ".join(sorted(os.listdir(self.root / "var-lib-netkube"))),
        }


BUILTIN = re.compile(r"^:(PREROUTING|INPUT|FORWARD|OUTPUT|POSTROUTING) ACCEPT")


def iptables_rules(save: str) -> str:
    """iptables-save without counters, comments and tables holding nothing but empty built-in
    chains (iptables-nft keeps such a table once any rule was ever added to it)."""
    out: list[str] = []
    table: list[str] = []
    for line in save.splitlines():
        if line.startswith("#"):
            continue
        line = re.sub(r"\[\d+:\d+\]", "", line)
        if line.startswith("*"):
            table = [line]
        elif line == "COMMIT":
            if any(not BUILTIN.match(x) for x in table[1:]):
                out += [*table, line]
            table = []
        else:
            table.append(line)
    return "\n".join(out)


class Lab:
    """A LAN namespace with bridge br0 (.1) and machines at .101, .102, … created and removed here."""

    def __init__(self, tag: str, root: Path, count: int = 3) -> None:
        self.tag, self.root = tag, root
        self.lan = f"{tag}-lan"
        self.machines = [Machine(f"{tag}-m{i}", f"node{i}", f"192.168.56.{100 + i}", root / f"m{i}")
                         for i in range(1, count + 1)]
        self.made_netns: list[str] = []
        self.made_etc_cni = False

    def create(self) -> None:
        if not os.path.isdir("/etc/cni"):  # a mount point for the machines' private /etc/cni
            os.mkdir("/etc/cni")
            self.made_etc_cni = True
        self._netns(self.lan)
        _run(["ip", "-n", self.lan, "link", "add", "br0", "type", "bridge"])
        _run(["ip", "-n", self.lan, "addr", "add", "192.168.56.1/24", "dev", "br0"])
        _run(["ip", "-n", self.lan, "link", "set", "br0", "up"])
        for i, m in enumerate(self.machines, 1):
            self._netns(m.netns)
            peer = f"m{i}"
            # eth1, as a Vagrant VM's private network (eth0 being its NAT interface)
            _run(["ip", "-n", self.lan, "link", "add", peer, "type", "veth", "peer", "name", "eth1", "netns", m.netns])
            _run(["ip", "-n", self.lan, "link", "set", peer, "master", "br0", "up"])
            for args in (["link", "set", "lo", "up"], ["addr", "add", f"{m.ip}/24", "dev", "eth1"],
                         ["link", "set", "eth1", "up"], ["route", "add", "default", "via", "192.168.56.1"]):
                _run(["ip", "-n", m.netns, *args])
            for d in PRIVATE:
                (m.root / d.strip("/").replace("/", "-")).mkdir(parents=True, exist_ok=True)
            # holder: the machine's mount + UTS namespaces (unshare execs sleep: the pid is the holder's)
            m.holder = subprocess.Popen(
                ["nsenter", f"--net=/run/netns/{m.netns}", "unshare", "--mount", "--uts", "--propagation", "private",
                 "sleep", "infinity"], stdin=subprocess.DEVNULL, start_new_session=True)
            deadline = time.monotonic() + 5
            while os.readlink(f"/proc/{m.holder.pid}/ns/uts") == os.readlink("/proc/self/ns/uts"):
                assert time.monotonic() < deadline, "machine holder did not start"
                time.sleep(0.02)
            for d in PRIVATE:
                _run(["nsenter", "-t", str(m.holder.pid), "-m", "--", "mount", "--bind",
                      str(m.root / d.strip("/").replace("/", "-")), d])
            _run(["nsenter", "-t", str(m.holder.pid), "-u", "--", "hostname", m.hostname])

    def _netns(self, name: str) -> None:
        self.made_netns.append(name)
        _run(["ip", "netns", "add", name])

    def destroy(self) -> None:
        """Stop whatever still runs in the machines (found by their netns, which this lab made),
        then remove the namespaces and directories this lab made. Never by name pattern."""
        for m in self.machines:
            if m.holder is None:
                continue
            try:
                left = m.pids() - {m.holder.pid}
            except FileNotFoundError:
                left = set()
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            m.holder.kill()
            m.holder.wait(5)
        for name in reversed(self.made_netns):
            _run(["ip", "netns", "delete", name], check=False)
        if self.made_etc_cni:
            try:
                os.rmdir("/etc/cni")
            except OSError:
                pass
        shutil.rmtree(self.root, ignore_errors=True)
