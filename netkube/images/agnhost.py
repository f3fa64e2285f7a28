"""`agnhost` subcommands netexec, serve-hostname and pause, as the e2e test image answers them."""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time
from datetime import UTC, datetime

from netkube.images.httpserve import HttpServer, Request, Response, fail, run_until_signalled

START = time.monotonic()


def hostport(peer: tuple[str, int]) -> str:
    # Go's net/http RemoteAddr: "ip:port", IPv6 in brackets.
    host, port = peer[0], peer[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def go_now() -> str:
    """time.Now() the way Go's %v prints it, monotonic reading included."""
    now = datetime.now(UTC)
    ns = time.time_ns() % 1_000_000_000
    return f"{now:%Y-%m-%d %H:%M:%S}.{ns:09d} +0000 UTC m=+{time.monotonic() - START:.9f}"


def netexec_route(req: Request) -> Response:
    path = req.path
    if path == "/hostname":
        return Response(socket.gethostname().encode())
    if path == "/clientip":
        return Response(hostport(req.peer).encode())
    if path == "/echo":
        return Response(req.arg("msg").encode())
    if path == "/healthz":
        return Response(b"")
    # Go's ServeMux sends every unmatched path to the "/" handler.
    return Response(f"NOW: {go_now()}".encode())


class _UdpNetexec(asyncio.DatagramProtocol):
    """netexec's UDP side: "hostname", "echo <msg>" and "clientip" commands."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        cmd = data.decode(errors="replace").strip()
        if cmd == "hostname":
            out = socket.gethostname()
        elif cmd.startswith("echo "):
            out = cmd[5:]
        elif cmd == "clientip":
            out = hostport(addr)
        else:
            out = f"unknown command: {cmd}"
        self.transport.sendto(out.encode(), addr)


def go_flags(argv: list[str]) -> list[str]:
    # Go's flag package accepts -name=value as well as --name=value.
    return ["-" + a if a.startswith("-") and not a.startswith("--") and len(a) > 2 else a for a in argv]


async def netexec(args: argparse.Namespace) -> None:
    http = HttpServer(netexec_route, args.bind, args.http_port)
    udp = None
    if args.udp_port > 0:
        udp, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            _UdpNetexec, local_addr=(args.bind, args.udp_port))
    try:
        await run_until_signalled(http)
    finally:
        if udp is not None:
            udp.close()


async def serve_hostname(args: argparse.Namespace) -> None:
    name = socket.gethostname().encode()
    await run_until_signalled(HttpServer(lambda req: Response(name), args.bind, args.port))


async def pause(args: argparse.Namespace) -> None:
    await run_until_signalled(ready=lambda: print("Paused", flush=True))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="agnhost", allow_abbrev=False)
    sub = p.add_subparsers(dest="cmd")
    ne = sub.add_parser("netexec")
    ne.add_argument("--http-port", type=int, default=8080)
    ne.add_argument("--udp-port", type=int, default=8081, help="-1 disables UDP")
    ne.add_argument("--bind", default="0.0.0.0")
    sh = sub.add_parser("serve-hostname")
    sh.add_argument("--port", type=int, default=9376)
    sh.add_argument("--bind", default="0.0.0.0")
    for flag in ("--http", "--tcp", "--udp", "--close"):
        sh.add_argument(flag, nargs="?", const="true", default=None)
    sub.add_parser("pause")
    return p


COMMANDS = {"netexec": netexec, "serve-hostname": serve_hostname, "pause": pause}


def main(argv: list[str] | None = None) -> int:
    argv = go_flags(sys.argv[1:] if argv is None else argv)
    if not argv:
        argv = ["netexec"]  # this image's default
    if argv[0] not in COMMANDS:
        fail("agnhost", f"unknown command {argv[0]!r}; available here: {', '.join(COMMANDS)}")
    args = parser().parse_args(argv)
    try:
        asyncio.run(COMMANDS[args.cmd](args))
    except OSError as e:
        fail("agnhost", f"cannot listen: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
