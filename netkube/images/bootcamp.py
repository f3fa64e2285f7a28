"""kubernetes-bootcamp's server.js: "Hello Kubernetes bootcamp! | Running on: <host> | v=N" on 8080."""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys

from netkube.images.httpserve import HttpServer, Response, fail, run_until_signalled


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="kubernetes-bootcamp", allow_abbrev=False)
    p.add_argument("--version", type=int, default=1, help="the N in v=N (image tag v2 gives 2)")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--bind", default="0.0.0.0")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    # The pod's UTS hostname is the pod name; server.js reads it once at start.
    body = f"Hello Kubernetes bootcamp! | Running on: {socket.gethostname()} | v={args.version}\n".encode()
    server = HttpServer(lambda req: Response(body, content_type="text/plain"), args.bind, args.port)
    try:
        asyncio.run(run_until_signalled(
            server, ready=lambda: print(f"Kubernetes Bootcamp App Started At: port {args.port}", flush=True)))
    except OSError as e:
        fail("kubernetes-bootcamp", f"cannot listen on port {args.port}: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
