"""The nft interface kube-proxy needs, and the real one (`nft -f -` in the current or a named netns)."""

from __future__ import annotations

import os
import select
import subprocess
from typing import IO, Protocol


class NftError(RuntimeError):
    """nft refused a transaction (nothing of it was applied); the message is nft's own."""


class Nft(Protocol):
    def run(self, script: str) -> None:
        """Apply `nft -f` input as one transaction: all of it or nothing."""

    def list_table(self, family: str, table: str, terse: bool = False) -> str:
        """`nft [-t] list table <family> <table>`; raises NftError if it does not exist."""

    def list_names(self, family: str, table: str) -> tuple[set[str], set[str]]:
        """(chain names, set and map names) in the table; empty sets if it does not exist."""

    def table_exists(self, family: str, table: str) -> bool: ...


def parse_names(listing: str, table: str | None = None) -> tuple[set[str], set[str]]:
    """Chain and set/map names from `nft list` output, only inside `table <family> <table>` if given."""
    chains: set[str] = set()
    sets: set[str] = set()
    inside = table is None
    for line in listing.splitlines():
        parts = line.split()
        if line.startswith("table "):
            inside = table is None or (len(parts) >= 3 and parts[2] == table)
            continue
        if inside and len(parts) == 3 and parts[2] == "{":
            if parts[0] == "chain":
                chains.add(parts[1])
            elif parts[0] in ("set", "map"):
                sets.add(parts[1])
    return chains, sets


def _memfile() -> IO[bytes]:
    return open(os.memfd_create("nft", os.MFD_CLOEXEC), "w+b")


def _wait(p: subprocess.Popen[bytes], timeout: float) -> int:
    """Popen.wait(timeout) polls with sleeps growing to 50 ms, which added up to half a partial
    sync at 10k services; a pidfd wakes us the moment nft exits."""
    fd = os.pidfd_open(p.pid)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        if not poller.poll(int(timeout * 1000)):
            raise subprocess.TimeoutExpired(p.args, timeout)
    finally:
        os.close(fd)
    return p.wait()


class RealNft:
    """Runs the nft binary; the process must already be in the node's netns unless `netns` is given."""

    def __init__(self, binary: str = "nft", timeout: float = 300.0, netns: str | None = None) -> None:
        self.binary = binary
        self.timeout = timeout
        # nsenter joins only the network namespace; `ip netns exec` also builds a mount namespace
        # and remounts /sys, a few ms more per run (a partial sync is one run).
        self.prefix = ["nsenter", f"--net=/run/netns/{netns}"] if netns else []

    def _run(self, argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        # Input and output in memory files rather than pipes: the proxier runs nft in a worker
        # thread while it renders the next transaction, and pumping a pipe takes the GIL for every
        # chunk (megabytes of script, 5 ms GIL switch interval).
        with _memfile() as fin, _memfile() as fout, _memfile() as ferr:
            if stdin is not None:
                fin.write(stdin.encode())
                fin.seek(0)
            p = subprocess.Popen(self.prefix + [self.binary, *argv], stdout=fout, stderr=ferr,
                                 stdin=fin if stdin is not None else subprocess.DEVNULL)
            try:
                rc = _wait(p, self.timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                raise
            fout.seek(0)
            ferr.seek(0)
            return subprocess.CompletedProcess(argv, rc, fout.read().decode(), ferr.read().decode())

    def run(self, script: str) -> None:
        r = self._run(["-f", "-"], script)
        if r.returncode != 0:
            raise NftError(f"nft -f failed (exit {r.returncode}): {r.stderr.strip()[:2000]}")

    def list_table(self, family: str, table: str, terse: bool = False) -> str:
        r = self._run((["-t"] if terse else []) + ["list", "table", family, table])
        if r.returncode != 0:
            raise NftError(r.stderr.strip())
        return r.stdout

    def list_names(self, family: str, table: str) -> tuple[set[str], set[str]]:
        # "list chains"/"list sets" print only declarations: far cheaper than the whole table.
        chains = self._run(["list", "chains", family])
        sets = self._run(["-t", "list", "sets", family])
        c, _ = parse_names(chains.stdout if chains.returncode == 0 else "", table)
        _, s = parse_names(sets.stdout if sets.returncode == 0 else "", table)
        # Maps print under "list sets" only as sets; add them from "list maps".
        maps = self._run(["-t", "list", "maps", family])
        _, m = parse_names(maps.stdout if maps.returncode == 0 else "", table)
        return c, s | m

    def table_exists(self, family: str, table: str) -> bool:
        # nft 1.0.6 answers `list tables` from a full cache (every rule and element: seconds at 10k
        # services). A dry run (-c, never committed) of adding a chain needs only the table list.
        r = self._run(["-c", "-f", "-"], f"add chain {family} {table} table-exists-probe\n")
        return r.returncode == 0
