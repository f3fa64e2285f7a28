"""Print a fake nft table the way `nft list table` (nftables 1.0.6) prints the kernel's copy."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from proxy_modes.kernel.nft_fake import Table

# nft prints standard priorities by name (± up to 10) where the name is valid for the hook.
STD_PRIO = (("raw", -300, None), ("mangle", -150, None), ("dstnat", -100, "prerouting"),
            ("filter", 0, None), ("security", 50, None), ("srcnat", 100, "postrouting"))


def priority(hook: str, prio: int) -> str:
    for name, value, only in STD_PRIO:
        if only not in (None, hook):
            continue
        d = prio - value
        if d == 0:
            return name
        if 0 < abs(d) <= 10:
            return f"{name} {'+' if d > 0 else '-'} {abs(d)}"
    return str(prio)


def canonical_rule(body: str) -> str:
    """The kernel's rendering of what we write: meta mark spelled out, one-element sets unwrapped."""
    body = re.sub(r"mark set mark (or|xor) (0x[0-9a-f]+)",
                  lambda m: f"meta mark set meta mark {'|' if m.group(1) == 'or' else '^'} 0x{int(m.group(2), 16):08x}", body)
    body = re.sub(r"mark and (0x[0-9a-f]+) == 0\b", lambda m: f"meta mark & 0x{int(m.group(1), 16):08x} == 0x00000000", body)
    body = re.sub(r"\{ ([^ ,{}]+) \}", r"\1", body) if "vmap {" not in body and "update @" not in body else body
    return body.replace(" , ", ", ")


def _timeout(t: str) -> str:
    s = int(t.rstrip("s"))
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if s >= size:
            out += f"{s // size}{unit}"
            s %= size
    return out or "0s"


def listing(family: str, name: str, t: Table, terse: bool = False) -> str:
    blocks: list[list[str]] = []
    for sname, s in t.sets.items():
        lines = [f"\t{s.kind} {sname} {{", f"\t\ttype {s.type}"]
        if "dynamic" in s.flags:
            lines.append("\t\tsize 65535")
        if s.flags:
            lines.append(f"\t\tflags {s.flags}")
        if s.timeout:
            lines.append(f"\t\ttimeout {_timeout(s.timeout)}")
        if s.comment:
            lines.append(f'\t\tcomment "{s.comment}"')
        if s.elements and not terse:
            items = []
            for key, (verdict, comment) in s.elements.items():
                c = f' comment "{comment}"' if comment else ""
                items.append(f"{key}{c}" + (f" : {verdict}" if verdict else ""))
            lines.append("\t\telements = { " + ", ".join(items) + " }")
        blocks.append(lines + ["\t}"])
    for cname, c in t.chains.items():
        lines = [f"\tchain {cname} {{"]
        if c.hook:
            _, ctype, _, hook, _, prio = c.hook.split()
            lines.append(f"\t\ttype {ctype} hook {hook} priority {priority(hook, int(prio))}; policy accept;")
        if c.comment:
            lines.append(f'\t\tcomment "{c.comment}"')
        lines += [f"\t\t{canonical_rule(r)}" for r in c.rules]
        blocks.append(lines + ["\t}"])
    head = [f"table {family} {name} {{"] + ([f'\tcomment "{t.comment}"'] if t.comment else [])
    body = "\n\n".join("\n".join(b) for b in blocks)
    return "\n".join(head) + ("\n" + body if body else "") + "\n}\n"
