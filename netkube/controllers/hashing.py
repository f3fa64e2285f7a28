"""Pod-template hashing and random name suffixes, as upstream's ComputeHash and SafeEncodeString."""

from __future__ import annotations

import json
import random
import struct
from typing import Any

# Upstream's alphabet for generated names: no vowels (no accidental words), no 0/1/3 (look-alikes).
ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"
FNV32_OFFSET = 0x811C9DC5
FNV32_PRIME = 0x01000193


def fnv1a_32(data: bytes, h: int = FNV32_OFFSET) -> int:
    for b in data:
        h ^= b
        h = (h * FNV32_PRIME) & 0xFFFFFFFF
    return h


def safe_encode(s: str) -> str:
    """Map every character through the alphabet by code point modulo its length (SafeEncodeString)."""
    return "".join(ALPHANUMS[ord(c) % len(ALPHANUMS)] for c in s)


def compute_hash(template: dict[str, Any], collision_count: int | None = None) -> str:
    """pod-template-hash: FNV-1a 32 over the template, then the collision count as 8 LE bytes.

    Upstream hashes a spew dump of the Go struct; we hash canonical JSON (sorted keys), which is
    deterministic across restarts, which is what the controller relies on.
    """
    h = fnv1a_32(json.dumps(template, sort_keys=True, separators=(",", ":")).encode())
    if collision_count is not None:
        # binary.LittleEndian.PutUint32 into an 8-byte buffer: 4 value bytes, then 4 zero bytes.
        h = fnv1a_32(struct.pack("<I", collision_count & 0xFFFFFFFF) + b"\0\0\0\0", h)
    return safe_encode(str(h))


def random_suffix(n: int = 5) -> str:
    return "".join(random.choices(ALPHANUMS, k=n))
