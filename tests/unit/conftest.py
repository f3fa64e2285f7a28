"""Shared unit-test fixtures: one etcd on loopback for the session (each test uses its own key root)."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from netkube.lab.etcd import ETCD_HINT, etcd_argv, etcd_binary, free_port, wait_etcd


@pytest.fixture(scope="session")
def etcd_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if etcd_binary() is None:
        pytest.skip(f"etcd binary missing: {ETCD_HINT}")
    data: Path = tmp_path_factory.mktemp("etcd")
    client, peer = free_port(), free_port()
    log = open(data / "etcd.log", "wb")
    proc = subprocess.Popen(etcd_argv(data / "data", client, peer, name=f"t{uuid.uuid4().hex[:6]}"),
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{client}"
    try:
        wait_etcd(url, alive=lambda: proc.poll() is None)
        yield url
    finally:
        proc.terminate()  # the process we started, by its handle
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def etcd_root() -> str:
    """A fresh key root, so tests sharing the session's etcd never see each other's objects."""
    return f"/t-{uuid.uuid4().hex[:10]}"
