"""Opening the configured Store: sqlite in the state dir (default) or etcd at --etcd-endpoints."""

from __future__ import annotations

from pathlib import Path

from .store import Store

STORES = ("sqlite", "etcd")


def open_store(kind: str, sqlite_path: str | Path, etcd_endpoints: str = "", etcd_root: str = "") -> Store:
    if kind == "sqlite":
        from .sqlite_store import SqliteStore

        return SqliteStore(str(sqlite_path))
    if kind == "etcd":
        from .etcd_store import etcd_store_from

        if not etcd_endpoints:
            raise ValueError("--store etcd needs --etcd-endpoints http://HOST:PORT (netkube up starts one for you)")
        return etcd_store_from(etcd_endpoints, etcd_root)
    raise ValueError(f"--store {kind!r}: choose one of {', '.join(STORES)}")
