"""The iptables interface kube-proxy needs, and the real one (iptables-nft in the current netns)."""

from __future__ import annotations

import fcntl
import os
import subprocess
from typing import Literal, Protocol

Position = Literal["prepend", "append"]
TABLES = ("filter", "nat", "mangle")


def _read_all(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


class IptablesError(RuntimeError):
    """iptables refused something; the message is iptables' own."""


F_SETPIPE_SZ = 1031


class StartedRestore:
    """An iptables-restore already started, waiting for its input on a pipe. Until that input comes
    it has only opened a netlink socket (it reads the kernel's rules after the first line), so it
    can be started while the run before it is still working: the start (exec, dynamic linking,
    ~2.5 ms) then overlaps with that run instead of adding to it."""

    def __init__(self, argv: list[str], timeout: float, prefix: tuple[str, ...] | list[str] = ()) -> None:
        self.argv, self.timeout = argv, timeout
        rfd, self._wfd = os.pipe2(os.O_CLOEXEC)
        try:
            # A batch's input in one write: each chunk of a pipe written from the proxier's worker
            # thread waits for the GIL behind the rendering (up to 5 ms).
            fcntl.fcntl(self._wfd, F_SETPIPE_SZ, 1 << 20)
        except OSError:
            pass  # above /proc/sys/fs/pipe-max-size: written in several
        self._out = os.memfd_create("iptables-out", os.MFD_CLOEXEC)
        try:
            self.proc = subprocess.Popen([*prefix, *argv], stdin=rfd, stdout=self._out, stderr=subprocess.PIPE)
        except BaseException:
            os.close(self._wfd)
            os.close(self._out)
            raise
        finally:
            os.close(rfd)

    def run(self, text: str) -> None:
        """Give it its input, wait for it; IptablesError if it failed."""
        self.feed(text)
        self.wait()

    def feed(self, text: str) -> None:
        """Give it its whole input (it starts working on it)."""
        view = memoryview(text.encode())
        try:
            while view:
                view = view[os.write(self._wfd, view):]
        except BrokenPipeError:
            pass  # it exited early; its exit status and stderr say why
        finally:
            self._close_input()

    def wait(self) -> None:
        """Wait for it to end; IptablesError if it failed."""
        err = self._end()
        if self.proc.returncode != 0:
            raise IptablesError(f"{' '.join(self.argv[:3])} failed (exit {self.proc.returncode}): {err.decode().strip()}")

    def abort(self) -> None:
        """Not needed after all: empty input, which it ends without touching the kernel."""
        self._close_input()
        try:
            self._end()
        except subprocess.TimeoutExpired:
            pass  # killed

    def _end(self) -> bytes:
        """Its stderr, once it has exited (killed after the timeout, which is then raised)."""
        try:
            _, err = self.proc.communicate(timeout=self.timeout)
            return err
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise
        finally:
            os.close(self._out)

    def _close_input(self) -> None:
        if self._wfd >= 0:
            os.close(self._wfd)
            self._wfd = -1


class Iptables(Protocol):
    def restore(self, text: str, noflush: bool = True) -> None:
        """Apply iptables-restore input; each table commits atomically or not at all."""

    def save(self, table: str) -> str:
        """iptables-save output for one table."""

    def save_all(self) -> str:
        """iptables-save output for every table, in one run."""

    def ensure_chain(self, table: str, chain: str) -> bool:
        """Create the chain if missing; True if it already existed."""

    def chain_exists(self, table: str, chain: str) -> bool: ...

    def ensure_rule(self, position: Position, table: str, chain: str, args: list[str]) -> bool:
        """Add the rule unless an identical one exists (upstream EnsureRule); True if it existed."""

    def delete_rule(self, table: str, chain: str, args: list[str]) -> bool:
        """Delete the rule if present; True if it was there."""

    def delete_chain(self, table: str, chain: str) -> bool:
        """Flush and delete the chain if present; True if it was there."""


class RealIptables:
    """Runs the iptables binaries; the caller's process must already be in the node's netns."""

    def __init__(self, binary: str = "iptables", timeout: float = 60.0, netns: str | None = None) -> None:
        self.binary = binary
        self.timeout = timeout
        # netns: run in that named namespace (tests, host-side tools); the agent passes None.
        # nsenter only joins the network namespace; "ip netns exec" also builds a mount namespace
        # and remounts /sys, ~5 ms more per run, and a full sync may take dozens of runs.
        self.prefix = ["nsenter", f"--net=/run/netns/{netns}"] if netns else []

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        # "-w": wait for the xtables lock instead of failing when another writer holds it.
        # Output sits in a memory file, only stderr is a pipe: the proxier runs this in a worker
        # thread while it renders, and pumping pipes takes the GIL at every chunk (up to 5 ms
        # each); stderr's end-of-file still wakes us the moment the process exits.
        fout = os.memfd_create("iptables-out", os.MFD_CLOEXEC)
        try:
            p = subprocess.Popen(self.prefix + argv, stdin=subprocess.DEVNULL, stdout=fout, stderr=subprocess.PIPE)
            try:
                _, err = p.communicate(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.communicate()
                raise
            return subprocess.CompletedProcess(argv, p.returncode, _read_all(fout).decode(), err.decode())
        finally:
            os.close(fout)

    def _check(self, argv: list[str]) -> str:
        r = self._run(argv)
        if r.returncode != 0:
            raise IptablesError(f"{' '.join(argv[:3])} failed (exit {r.returncode}): {r.stderr.strip()}")
        return r.stdout

    def restore(self, text: str, noflush: bool = True) -> None:
        argv = [f"{self.binary}-restore", "-w"] + (["--noflush"] if noflush else [])
        StartedRestore(argv, self.timeout, self.prefix).run(text)

    def start_restore(self) -> StartedRestore:
        """An iptables-restore --noflush started now, to be given its input later."""
        return StartedRestore([f"{self.binary}-restore", "-w", "--noflush"], self.timeout, self.prefix)

    def save(self, table: str) -> str:
        return self._check([f"{self.binary}-save", "-t", table])

    def save_all(self) -> str:
        return self._check([f"{self.binary}-save"])

    def chain_exists(self, table: str, chain: str) -> bool:
        return self._run([self.binary, "-w", "-t", table, "-S", chain, "1"]).returncode == 0

    def ensure_chain(self, table: str, chain: str) -> bool:
        if self.chain_exists(table, chain):
            return True
        self._check([self.binary, "-w", "-t", table, "-N", chain])
        return False

    def ensure_rule(self, position: Position, table: str, chain: str, args: list[str]) -> bool:
        if self._run([self.binary, "-w", "-t", table, "-C", chain, *args]).returncode == 0:
            return True
        op = "-I" if position == "prepend" else "-A"
        self._check([self.binary, "-w", "-t", table, op, chain, *args])
        return False

    def delete_rule(self, table: str, chain: str, args: list[str]) -> bool:
        if self._run([self.binary, "-w", "-t", table, "-C", chain, *args]).returncode != 0:
            return False
        self._check([self.binary, "-w", "-t", table, "-D", chain, *args])
        return True

    def delete_chain(self, table: str, chain: str) -> bool:
        if not self.chain_exists(table, chain):
            return False
        self._check([self.binary, "-w", "-t", table, "-F", chain])
        self._check([self.binary, "-w", "-t", table, "-X", chain])
        return True
