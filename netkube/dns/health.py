"""CoreDNS-style health (:8080/health) and readiness (:8181/ready) endpoints."""

from __future__ import annotations

from aiohttp import web

from netkube.dns.index import Index


class HealthServer:
    def __init__(self, index: Index, host: str = "0.0.0.0", health_port: int = 8080,
                 ready_port: int = 8181) -> None:
        self.index = index
        self.host = host
        self.health_port = health_port
        self.ready_port = ready_port
        self._runners: list[web.AppRunner] = []

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="OK")

    async def _ready(self, request: web.Request) -> web.Response:
        if self.index.synced:
            return web.Response(text="OK")
        return web.Response(status=503, text="kubernetes plugin not ready: no first sync from the apiserver yet")

    async def start(self) -> None:
        for port, path, handler in ((self.health_port, "/health", self._health),
                                    (self.ready_port, "/ready", self._ready)):
            app = web.Application()
            app.router.add_get(path, handler)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, self.host, port, reuse_address=True)
            await site.start()
            self._runners.append(runner)
            if port == 0:  # tests ask for a free port; remember the one we got
                bound = runner.addresses[0][1]
                if path == "/health":
                    self.health_port = bound
                else:
                    self.ready_port = bound

    async def close(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
