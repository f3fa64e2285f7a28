"""Send one crafted packet from inside a network namespace (run as a child by `netkube trace --probe`)."""

from __future__ import annotations

import argparse
import os

from netkube.lab.netns import netns_path, setns


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--netns", required=True)
    ap.add_argument("--dst", required=True)
    ap.add_argument("--dport", type=int, required=True)
    ap.add_argument("--sport", type=int, required=True)
    ap.add_argument("--proto", choices=["tcp", "udp"], default="tcp")
    args = ap.parse_args(argv)
    fd = os.open(netns_path(args.netns), os.O_RDONLY)
    setns(fd)  # before importing scapy: it reads the routes and interfaces of the current netns on import
    os.close(fd)
    from scapy.all import IP, TCP, UDP, Raw, conf, send  # noqa: PLC0415

    conf.verb = 0
    l4 = TCP(sport=args.sport, dport=args.dport, flags="S") if args.proto == "tcp" else \
        UDP(sport=args.sport, dport=args.dport) / Raw(b"hostname")
    send(IP(dst=args.dst) / l4)


if __name__ == "__main__":
    main()
