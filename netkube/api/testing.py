"""A test/demo helper: run the apiserver on 127.0.0.1 in a background thread with its own loop."""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from ..client import ApiClient
from ..config import ClusterConfig
from ..kubeconfig import render as render_kubeconfig
from .app import make_app
from .authn import Authenticator, server_ssl_context
from .sqlite_store import SqliteStore
from .store import Store


class ThreadedApiServer:
    """start() binds 127.0.0.1:<free port>; stop() ends it. kubectl() runs the real kubectl at it."""

    def __init__(self, db_path: str, cluster: ClusterConfig | None = None, log_size: int = 10000, *,
                 store_factory: Callable[[], Store] | None = None, pki: Path | None = None,
                 port: int = 0) -> None:
        """store_factory: another Store (e.g. EtcdStore); pki: a dir from netkube.pki.create_cluster_pki
        to serve HTTPS with client-cert/token authentication; port: reuse a port across restarts."""
        self.db_path = db_path
        self.cluster = cluster or ClusterConfig()
        self.log_size = log_size
        self.store_factory = store_factory
        self.pki = pki
        self.port = port
        self.store: Store | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._tmp = tempfile.TemporaryDirectory(prefix="nkt-api-")

    @property
    def url(self) -> str:
        return f"{'https' if self.pki else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> ThreadedApiServer:
        ready = threading.Event()
        self.loop = asyncio.new_event_loop()

        async def boot() -> None:
            self.store = self.store_factory() if self.store_factory else SqliteStore(self.db_path, log_size=self.log_size)
            authn, tls = None, None
            if self.pki is not None:
                authn = Authenticator.from_pki(self.pki / "sa.key", self.pki / "tokens.csv")
                tls = server_ssl_context(self.pki / "ca.crt", self.pki / "apiserver.crt", self.pki / "apiserver.key")
            self._runner = web.AppRunner(make_app(self.store, self.cluster, authn), shutdown_timeout=2.0)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=tls, reuse_address=True)
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

    def client(self, who: str = "admin") -> ApiClient:
        """An ApiClient with the given PKI identity (or plain HTTP)."""
        if self.pki is None:
            return ApiClient(self.url)
        return ApiClient(self.url, ca_file=self.pki / "ca.crt", cert_file=self.pki / f"{who}.crt",
                         key_file=self.pki / f"{who}.key")

    def _write_kubeconfig(self) -> None:
        if self.pki is not None:
            self.kubeconfig.write_text(render_kubeconfig("t", self.url, self.pki, "admin"))
            return
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
