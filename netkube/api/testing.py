"""A test/demo helper: run the apiserver on 127.0.0.1 in a background thread with its own loop."""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
import threading
from pathlib import Path

from aiohttp import web

from ..config import ClusterConfig
from .app import make_app
from .sqlite_store import SqliteStore


class ThreadedApiServer:
    """start() binds 127.0.0.1:<free port>; stop() ends it. kubectl() runs the real kubectl at it."""

    def __init__(self, db_path: str, cluster: ClusterConfig | None = None, log_size: int = 10000) -> None:
        self.db_path = db_path
        self.cluster = cluster or ClusterConfig()
        self.log_size = log_size
        self.port = 0
        self.store: SqliteStore | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="nkt-api-")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ThreadedApiServer:
        ready = threading.Event()
        self.loop = asyncio.new_event_loop()

        async def boot() -> None:
            self.store = SqliteStore(self.db_path, log_size=self.log_size)
            self._runner = web.AppRunner(make_app(self.store, self.cluster), shutdown_timeout=2.0)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

        def main() -> None:
            assert self.loop is not None
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(boot())
            ready.set()
            self.loop.run_forever()

        self._thread = threading.Thread(target=main, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("apiserver did not start within 10s")
        self._write_kubeconfig()
        return self

    def call(self, coro):  # type: ignore[no-untyped-def]
        """Run a coroutine on the server's loop (the store is single-threaded)."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def stop(self) -> None:
        if self.loop is None:
            return

        async def down() -> None:
            if self._runner is not None:
                await self._runner.cleanup()
            if self.store is not None:
                self.store.close()

        asyncio.run_coroutine_threadsafe(down(), self.loop).result(15)
        self.loop.call_soon_threadsafe(self.loop.stop)
        if self._thread is not None:
            self._thread.join(5)
        self.loop.close()
        self.loop = None

    def cleanup(self) -> None:
        self._tmp.cleanup()

    # --- kubectl ----------------------------------------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        return Path(self._tmp.name) / "kubeconfig"

    def _write_kubeconfig(self) -> None:
        self.kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n"
            f"    server: {self.url}\ncontexts:\n- name: t\n  context:\n    cluster: t\n    user: t\n"
            "    namespace: default\ncurrent-context: t\nusers:\n- name: t\n  user: {}\n"
        )

    def kubectl_cmd(self, *args: str) -> list[str]:
        return ["/usr/bin/kubectl", f"--kubeconfig={self.kubeconfig}",
                f"--cache-dir={Path(self._tmp.name) / 'cache'}", *args]

    def kubectl(self, *args: str, stdin: str | None = None, timeout: float = 20) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, HOME=self._tmp.name, KUBECONFIG=str(self.kubeconfig))
        return subprocess.run(self.kubectl_cmd(*args), input=stdin, capture_output=True, text=True,
                              timeout=timeout, env=env)
