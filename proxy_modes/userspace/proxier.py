"""The userspace backend: opens/closes proxy sockets per service port and programs the portal rules."""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
import threading

from proxy_modes.kernel.iptables import Iptables, IptablesError
from proxy_modes.model import ProxyState, ServicePort, ServicePortName, usable
from proxy_modes.userspace import rules as R
from proxy_modes.userspace.loadbalancer import RoundRobin
from proxy_modes.userspace.proxysocket import TcpProxy, UdpProxy, copy_buffer

log = logging.getLogger(__name__)
OPEN_FILES = 64 * 1000  # upstream's userspace proxier raises RLIMIT_NOFILE to this: 2 sockets a connection


class UserspaceProxier:
    """Implements proxy_modes.backend.Backend; the proxy sockets are served by a private event loop."""

    def __init__(self, ipt: Iptables, node_ip: str, listen_ip: str = "0.0.0.0", udp_idle: float = 0.25) -> None:
        self.ipt, self.node_ip, self.listen_ip, self.udp_idle = ipt, node_ip, listen_ip, udp_idle
        self.lb = RoundRobin()
        self.proxies: dict[ServicePortName, tuple[ServicePort, TcpProxy | UdpProxy, int]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._buf = copy_buffer()  # one copy buffer for every TCP proxy: they share one loop thread
        self.last_restore = ""
        raise_open_files(OPEN_FILES)

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            threading.Thread(target=self._loop.run_forever, name="userspace-proxy", daemon=True).start()
        return self._loop

    def _open(self, sp: ServicePort) -> tuple[TcpProxy | UdpProxy, int]:
        udp = sp.name.protocol == "UDP"
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.listen_ip, 0))  # a random port, as upstream (TCP: create_server listens)
        sock.setblocking(False)
        key = str(sp.name) + "/" + sp.name.proto
        proxy: TcpProxy | UdpProxy = (UdpProxy(key, self.lb, sock, self.udp_idle) if udp
                                       else TcpProxy(key, self.lb, sock, self._buf))
        asyncio.run_coroutine_threadsafe(proxy.start(), self._ensure_loop()).result(timeout=10)
        return proxy, sock.getsockname()[1]

    def sync(self, state: ProxyState, full: bool) -> None:
        # A partial sync looks at the changed services only (all of them on a full one).
        def touched(spn: ServicePortName) -> bool:
            return full or spn.service in state.changed

        portals = full or not self.last_restore
        for spn in [s for s in self.proxies if touched(s)]:
            old_sp, proxy, _ = self.proxies[spn]
            new_sp = state.services.get(spn)
            if new_sp is None or new_sp.name.protocol != old_sp.name.protocol:
                self._ensure_loop().call_soon_threadsafe(proxy.close)
                self.lb.remove(proxy.key)
                del self.proxies[spn]
                portals = True
        for spn, sp in state.services.items():
            if not touched(spn) and spn in self.proxies:
                continue
            if spn in self.proxies:
                old_sp, proxy, port = self.proxies[spn]
                portals |= old_sp != sp
            else:
                (proxy, port), portals = self._open(sp), True
            self.proxies[spn] = (sp, proxy, port)
            eps = [str(e) for e in usable(state.endpoints.get(spn, []))]
            self.lb.update(proxy.key, eps, sp.affinity_timeout)
        # Endpoint changes live in the balancer alone: the portals are rewritten when a service
        # (port, IPs) changed, the base chains/jumps checked on full syncs (the canary brings one
        # after a flush).
        if full or not self.last_restore:
            self.ensure_base()
        if portals:
            text = R.render({sp: port for sp, _, port in self.proxies.values()}, self.node_ip)
            self.ipt.restore(text, noflush=True)
            self.last_restore = text

    def ensure_base(self) -> None:
        for c in R.CHAINS:
            self.ipt.ensure_chain("nat", c)
        for j in R.JUMPS:
            self.ipt.ensure_rule(j.position, "nat", j.source, j.args())  # type: ignore[arg-type]

    def cleanup(self) -> None:
        cleanup(self.ipt)
        for _, proxy, _ in self.proxies.values():
            if self._loop is not None:
                self._loop.call_soon_threadsafe(proxy.close)
        self.proxies.clear()

    def tables_intact(self) -> bool:
        return all(self.ipt.chain_exists("nat", c) for c in R.CHAINS)


def raise_open_files(want: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))  # root may raise the hard limit
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))


def cleanup(ipt: Iptables) -> bool:
    """Data-driven: remove exactly our jumps and our four chains."""
    ok = True
    for j in R.JUMPS:
        if not ipt.chain_exists("nat", j.chain):
            continue  # no chain, so no jump to it either
        try:
            ipt.delete_rule("nat", j.source, j.args())
        except IptablesError as e:
            ok = False
            log.warning("removing userspace jump %s -> %s: %s", j.source, j.chain, e)
    for c in R.CHAINS:
        try:
            ipt.delete_chain("nat", c)
        except IptablesError as e:
            ok = False
            log.warning("removing chain %s: %s", c, e)
    return ok
