"""Parse a Corefile (CoreDNS's configuration text) into a DnsConfig; errors name the line."""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Callable

from netkube.dns.config import REVERSE_ZONES, Block, Cache, DnsConfig, Forward, Kubernetes

# Plugins CoreDNS ships that netkube accepts but does not act on (their effect is logged once).
ACCEPTED = {"errors", "health", "ready", "prometheus", "loop", "log", "debug", "whoami", "bind",
            "reload", "loadbalance", "cache", "forward", "kubernetes", "hosts", "rewrite", "template",
            "autopath", "k8s_external", "file", "any", "chaos", "acl", "metadata", "trace", "local",
            "minimal", "nsid", "header", "view", "timeouts", "dnssec", "root", "etcd"}
IMPLEMENTED = {"errors", "health", "ready", "prometheus", "reload", "loadbalance", "cache", "forward",
               "kubernetes", "loop", "log", "bind"}


class CorefileError(ValueError):
    pass


Line = tuple[int, list[str]]  # (line number, tokens)
Directive = tuple[int, list[str], list[Line]]  # (line, name + args, lines of its { } block)


def _lines(text: str) -> list[Line]:
    out = []
    for no, raw in enumerate(text.splitlines(), 1):
        lex = shlex.shlex(raw, posix=True, punctuation_chars="{}")
        lex.commenters = "#"
        lex.whitespace_split = True
        try:
            toks = list(lex)
        except ValueError as e:
            raise CorefileError(f"line {no}: {e}") from None
        # shlex glues "{" onto words only with punctuation_chars; split stray "a{" forms anyway.
        split: list[str] = []
        for t in toks:
            split += [p for p in re.split(r"([{}])", t) if p]
        if split:
            out.append((no, split))
    return out


def _blocks(lines: list[Line]) -> list[tuple[int, list[str], list[Directive]]]:
    blocks: list[tuple[int, list[str], list[Directive]]] = []
    i = 0
    while i < len(lines):
        no, toks = lines[i]
        keys: list[str] = []
        while "{" not in toks:
            keys += toks
            i += 1
            if i >= len(lines):
                raise CorefileError(f"line {no}: server block {' '.join(keys)} has no opening '{{'")
            no, toks = lines[i]
        at = toks.index("{")
        keys += toks[:at]
        if toks[at + 1:]:
            raise CorefileError(f"line {no}: put directives on their own lines after '{{'")
        if not keys:
            raise CorefileError(f"line {no}: '{{' without a server block address")
        start = no
        i += 1
        directives: list[Directive] = []
        while True:
            if i >= len(lines):
                raise CorefileError(f"line {start}: server block {' '.join(keys)} is not closed with '}}'")
            no, toks = lines[i]
            i += 1
            if toks == ["}"]:
                break
            if "}" in toks:
                raise CorefileError(f"line {no}: '}}' must be on its own line")
            sub: list[Line] = []
            if toks[-1] == "{":
                toks = toks[:-1]
                while True:
                    if i >= len(lines):
                        raise CorefileError(f"line {no}: block of {toks[0]} is not closed with '}}'")
                    sno, stoks = lines[i]
                    i += 1
                    if stoks == ["}"]:
                        break
                    if "{" in stoks or "}" in stoks:
                        raise CorefileError(f"line {sno}: unexpected brace in the block of {toks[0]}")
                    sub.append((sno, stoks))
            directives.append((no, toks, sub))
        blocks.append((start, [k for key in keys for k in key.split(",") if k], directives))
    return blocks


def _zone(text: str) -> str:
    return text.strip().rstrip(".").lower() if text.strip() not in (".", "") else ""


def _key(no: int, key: str) -> tuple[str, int]:
    key = key.removeprefix("dns://")
    if key.startswith(("tls://", "https://", "grpc://", "quic://")):
        raise CorefileError(f"line {no}: {key}: only plain DNS (dns://) servers are supported")
    zone, _, port = key.rpartition(":") if ":" in key else (key, "", "53")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise CorefileError(f"line {no}: {key}: the port must be a number between 1 and 65535")
    z = zone.strip()
    try:  # a CIDR key such as 10.0.0.0/24 means its reverse zone
        if "/" in z:
            z = ipaddress.ip_network(z).reverse_pointer.split(".", 1)[1]
    except ValueError:
        raise CorefileError(f"line {no}: {key}: not a zone or network") from None
    return _zone(z), int(port)


def _int(no: int, what: str, text: str, lo: int, hi: int) -> int:
    t = text.rstrip("s")
    if not t.isdigit() or not lo <= int(t) <= hi:
        raise CorefileError(f"line {no}: {what} {text!r} must be a number from {lo} to {hi}")
    return int(t)


def _kubernetes(no: int, args: list[str], sub: list[Line], block_zones: tuple[str, ...]) -> Kubernetes:
    zones = tuple(_zone(a) for a in args) or block_zones
    ttl, pods, fall = 5, "disabled", None
    for sno, toks in sub:
        name, rest = toks[0], toks[1:]
        if name == "pods":
            if rest not in (["disabled"], ["insecure"], ["verified"]):
                raise CorefileError(f"line {sno}: pods takes one of disabled, insecure, verified")
            pods = rest[0]
        elif name == "ttl":
            ttl = _int(sno, "ttl", rest[0] if len(rest) == 1 else "", 0, 3600)
        elif name == "fallthrough":
            fall = tuple(_zone(z) for z in rest)
        elif name not in ("endpoint", "tls", "kubeconfig", "namespaces", "labels", "namespace_labels",
                          "endpoint_pod_names", "noendpoints", "ignore", "multicluster", "startup_timeout",
                          "apiserver_qps", "apiserver_burst", "apiserver_max_inflight"):
            raise CorefileError(f"line {sno}: unknown kubernetes option {name!r}")
    return Kubernetes(zones, ttl, pods, fall)


def _upstreams(no: int, to: list[str], read: Callable[[str], str]) -> tuple[tuple[str, int], ...]:
    out: list[tuple[str, int]] = []
    for item in to:
        if item.startswith("/"):
            try:
                text = read(item)
            except OSError as e:
                raise CorefileError(f"line {no}: forward {item}: {e.strerror or e}") from None
            out += [(w[1], 53) for w in (ln.split() for ln in text.splitlines())
                    if len(w) >= 2 and w[0] == "nameserver"]
            continue
        addr = item.removeprefix("dns://")
        if addr.startswith(("tls://", "https://")):
            raise CorefileError(f"line {no}: forward {item}: only plain DNS upstreams are supported")
        host, port = addr, 53
        m = re.fullmatch(r"\[(.+)\](?::(\d+))?|([^:]+):(\d+)", addr)
        if m:
            host = m.group(1) or m.group(3)
            port = int(m.group(2) or m.group(4) or 53)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise CorefileError(f"line {no}: forward {item}: not an IP address or a file") from None
        if not 0 < port < 65536:
            raise CorefileError(f"line {no}: forward {item}: bad port")
        out.append((host, port))
    if not out:
        raise CorefileError(f"line {no}: forward has no upstream servers")
    if len(out) > 15:
        raise CorefileError(f"line {no}: forward takes at most 15 upstream servers")
    return tuple(out)


def _forward(no: int, args: list[str], sub: list[Line], read: Callable[[str], str]) -> Forward:
    if len(args) < 2:
        raise CorefileError(f"line {no}: forward needs FROM and at least one TO")
    exclude: tuple[str, ...] = ()
    force_tcp = False
    for sno, toks in sub:
        if toks[0] == "except":
            exclude = tuple(_zone(z) for z in toks[1:])
        elif toks[0] == "force_tcp":
            force_tcp = True
        elif toks[0] not in ("prefer_udp", "max_fails", "expire", "policy", "health_check", "max_concurrent",
                             "tls", "tls_servername", "next", "failfast_all_unhealthy_upstreams"):
            raise CorefileError(f"line {sno}: unknown forward option {toks[0]!r}")
    return Forward(_zone(args[0]), _upstreams(no, args[1:], read), exclude, force_tcp)


def _cache(no: int, args: list[str], sub: list[Line]) -> Cache:
    ttl = _int(no, "cache TTL", args[0], 0, 2**31) if args and args[0].rstrip("s").isdigit() else None
    c = Cache(ttl, ttl) if ttl is not None else Cache()
    s_ttl, d_ttl, s_min, d_min, cap = c.success_ttl, c.denial_ttl, c.success_min, c.denial_min, c.capacity
    for sno, toks in sub:
        if toks[0] in ("success", "denial") and len(toks) >= 2:
            cap = _int(sno, "capacity", toks[1], 1, 10**7)
            if toks[0] == "success":
                s_ttl = _int(sno, "TTL", toks[2], 0, 2**31) if len(toks) > 2 else s_ttl
                s_min = _int(sno, "MINTTL", toks[3], 0, 2**31) if len(toks) > 3 else s_min
            else:
                d_ttl = _int(sno, "TTL", toks[2], 0, 2**31) if len(toks) > 2 else d_ttl
                d_min = _int(sno, "MINTTL", toks[3], 0, 2**31) if len(toks) > 3 else d_min
    return Cache(s_ttl, d_ttl, s_min, d_min, cap)


def parse_corefile(text: str, source: str = "Corefile",
                   read: Callable[[str], str] = lambda p: open(p).read()) -> DnsConfig:
    """The configuration in `text`; CorefileError (with the line) for anything CoreDNS would refuse."""
    blocks: list[Block] = []
    warnings: list[str] = []
    seen: dict[tuple[str, int], int] = {}
    for start, keys, directives in _blocks(_lines(text)):
        parsed = [_key(start, k) for k in keys]
        zones = tuple(z for z, _ in parsed)
        port = parsed[0][1]
        for zp in parsed:
            if zp in seen:
                raise CorefileError(f"line {start}: zone {zp[0] or '.'}:{zp[1]} is already served "
                                    f"by the block on line {seen[zp]}")
            seen[zp] = start
        kube = fwd = cache = None
        lb = reload = False
        names: list[str] = []
        for no, toks, sub in directives:
            name, args = toks[0], toks[1:]
            if name not in ACCEPTED:
                raise CorefileError(f"line {no}: unknown directive {name!r}")
            if name in names and name not in ("log", "rewrite", "template", "hosts"):
                raise CorefileError(f"line {no}: {name} can only be used once per server block")
            names.append(name)
            if name not in IMPLEMENTED:
                warnings.append(f"line {no}: plugin {name} is accepted but not implemented by netkube")
            if name == "kubernetes":
                kube = _kubernetes(no, args, sub, tuple(z for z in zones))
            elif name == "forward":
                fwd = _forward(no, args, sub, read)
            elif name == "cache":
                cache = _cache(no, args, sub)
            elif name == "loadbalance":
                lb = True
            elif name == "reload":
                reload = True
        blocks.append(Block(zones, port, kube, fwd, cache, lb, reload, tuple(names)))
    if not blocks:
        raise CorefileError("no server blocks")
    return DnsConfig(tuple(blocks), source, tuple(warnings))


__all__ = ["CorefileError", "parse_corefile", "REVERSE_ZONES"]
