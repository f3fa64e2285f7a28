"""host-local's disk store: one file per IP holding "<id>\\r\\n<ifname>", last_reserved_ip.N, a lock."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager

LINE_BREAK = "\r\n"  # upstream's disk backend separator


class Store:
    def __init__(self, data_dir: str, network: str) -> None:
        self.dir = os.path.join(data_dir, network)

    @contextmanager
    def locked(self) -> Iterator[None]:
        # One flock on <dir>/lock serialises every ADD/DEL of this network across processes.
        os.makedirs(self.dir, mode=0o755, exist_ok=True)
        fd = os.open(os.path.join(self.dir, "lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def reserve(self, container_id: str, ifname: str, ip: str, rangeset: int) -> bool:
        try:
            fd = os.open(os.path.join(self.dir, ip), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(container_id.strip() + LINE_BREAK + ifname)
        with open(os.path.join(self.dir, f"last_reserved_ip.{rangeset}"), "w") as f:
            f.write(ip)
        return True

    def last_reserved(self, rangeset: int) -> str | None:
        try:
            with open(os.path.join(self.dir, f"last_reserved_ip.{rangeset}")) as f:
                return f.read().strip() or None
        except FileNotFoundError:
            return None

    def _entries(self) -> Iterator[tuple[str, str, str]]:
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return
        for name in names:
            if name == "lock" or name.startswith("last_reserved_ip"):
                continue
            try:
                with open(os.path.join(self.dir, name)) as f:
                    lines = f.read().replace("\r", "").split("\n")
            except FileNotFoundError:
                continue
            yield name, lines[0].strip(), (lines[1].strip() if len(lines) > 1 else "")

    def by_id(self, container_id: str, ifname: str) -> list[str]:
        return [ip for ip, cid, ifn in self._entries() if cid == container_id.strip() and ifn == ifname]

    def owner(self, ip: str) -> tuple[str, str] | None:
        for name, cid, ifn in self._entries():
            if name == ip:
                return cid, ifn
        return None

    def release_by_id(self, container_id: str, ifname: str) -> list[str]:
        released = self.by_id(container_id, ifname)
        for ip in released:
            try:
                os.remove(os.path.join(self.dir, ip))
            except FileNotFoundError:
                pass
        return released

    def release_unless(self, valid: set[tuple[str, str]]) -> list[str]:
        gone = [ip for ip, cid, ifn in self._entries() if (cid, ifn) not in valid]
        for ip in gone:
            try:
                os.remove(os.path.join(self.dir, ip))
            except FileNotFoundError:
                pass
        return gone
