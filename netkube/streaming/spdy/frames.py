"""SPDY/3.1 frames: their in-memory form, the wire encoding, and the zlib header-block codec.

Control frames start with the control bit, version 3 and a 16-bit type, then 8 bits of flags and a
24-bit length; data frames carry a 31-bit stream id in that first word instead. Header blocks (in
SYN_STREAM, SYN_REPLY and HEADERS) are a count and length-prefixed lowercase names and values,
compressed by one zlib stream per direction for the whole session, primed with DICTIONARY and
sync-flushed after every block, so the codec objects must see blocks in wire order.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from enum import IntEnum

from netkube.streaming.spdy.dictionary import DICTIONARY

VERSION = 3
FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02
FLAG_CLEAR_SETTINGS = 0x01
MAX_LENGTH = (1 << 24) - 1
MAX_HEADER_BLOCK = 1 << 20  # decompressed; far above what port-forward or exec ever send
DEFAULT_WINDOW = 65536  # initial per-stream and per-session window (SPDY/3.1)

Headers = dict[str, list[str]]


class FrameType(IntEnum):
    SYN_STREAM = 1
    SYN_REPLY = 2
    RST_STREAM = 3
    SETTINGS = 4
    PING = 6
    GOAWAY = 7
    HEADERS = 8
    WINDOW_UPDATE = 9


class RstStatus(IntEnum):
    PROTOCOL_ERROR = 1
    INVALID_STREAM = 2
    REFUSED_STREAM = 3
    UNSUPPORTED_VERSION = 4
    CANCEL = 5
    INTERNAL_ERROR = 6
    FLOW_CONTROL_ERROR = 7
    STREAM_IN_USE = 8
    STREAM_ALREADY_CLOSED = 9
    FRAME_TOO_LARGE = 11


class GoAwayStatus(IntEnum):
    OK = 0
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 2


class Setting(IntEnum):
    UPLOAD_BANDWIDTH = 1
    DOWNLOAD_BANDWIDTH = 2
    ROUND_TRIP_TIME = 3
    MAX_CONCURRENT_STREAMS = 4
    CURRENT_CWND = 5
    DOWNLOAD_RETRANS_RATE = 6
    INITIAL_WINDOW_SIZE = 7
    CLIENT_CERTIFICATE_VECTOR_SIZE = 8


class ProtocolError(Exception):
    """The peer broke the framing; the session answers with GOAWAY(PROTOCOL_ERROR) and ends."""


@dataclass(frozen=True)
class Data:
    stream_id: int
    data: bytes = b""
    fin: bool = False


@dataclass(frozen=True)
class SynStream:
    stream_id: int
    headers: Headers = field(default_factory=dict)
    associated_id: int = 0
    priority: int = 0
    slot: int = 0
    fin: bool = False
    unidirectional: bool = False


@dataclass(frozen=True)
class SynReply:
    stream_id: int
    headers: Headers = field(default_factory=dict)
    fin: bool = False


@dataclass(frozen=True)
class RstStream:
    stream_id: int
    status: int


@dataclass(frozen=True)
class Settings:
    values: dict[int, int] = field(default_factory=dict)  # id -> value
    clear: bool = False


@dataclass(frozen=True)
class Ping:
    ping_id: int


@dataclass(frozen=True)
class GoAway:
    last_good_id: int
    status: int = GoAwayStatus.OK


@dataclass(frozen=True)
class HeadersFrame:
    stream_id: int
    headers: Headers = field(default_factory=dict)
    fin: bool = False


@dataclass(frozen=True)
class WindowUpdate:
    stream_id: int  # 0: the session window
    delta: int


Frame = Data | SynStream | SynReply | RstStream | Settings | Ping | GoAway | HeadersFrame | WindowUpdate


# --- header blocks --------------------------------------------------------------------------
def pack_headers(headers: Headers) -> bytes:
    """The uncompressed name/value block; several values of one name are joined by NUL."""
    out = [struct.pack(">I", len(headers))]
    for name, values in headers.items():
        n, v = name.lower().encode(), "\0".join(values).encode()
        out.append(struct.pack(">I", len(n)) + n + struct.pack(">I", len(v)) + v)
    return b"".join(out)


def unpack_headers(block: bytes) -> Headers:
    try:
        (count,), pos = struct.unpack_from(">I", block), 4
        headers: Headers = {}
        for _ in range(count):
            (n,) = struct.unpack_from(">I", block, pos)
            name, pos = block[pos + 4:pos + 4 + n], pos + 4 + n
            (v,) = struct.unpack_from(">I", block, pos)
            value, pos = block[pos + 4:pos + 4 + v], pos + 4 + v
            if len(name) != n or len(value) != v:
                raise ProtocolError("truncated header block")
            if not name:
                continue  # the spec: ignore zero-length names
            key = name.decode("utf-8", "replace")
            if key != key.lower() or key in headers:
                raise ProtocolError(f"bad header name {key!r} (uppercase or repeated)")
            headers[key] = value.decode("utf-8", "replace").split("\0")
    except struct.error as e:
        raise ProtocolError(f"truncated header block: {e}") from None
    if pos != len(block):
        raise ProtocolError("trailing bytes after header block")
    return headers


class HeaderEncoder:
    """This side's compression context: one zlib stream for every block we send."""

    def __init__(self) -> None:
        self._z = zlib.compressobj(9, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY, DICTIONARY)

    def encode(self, headers: Headers) -> bytes:
        return self._z.compress(pack_headers(headers)) + self._z.flush(zlib.Z_SYNC_FLUSH)


class HeaderDecoder:
    """The peer's compression context, fed every block in the order they arrive."""

    def __init__(self) -> None:
        self._z = zlib.decompressobj(15, zdict=DICTIONARY)

    def decode(self, block: bytes) -> Headers:
        try:
            raw = self._z.decompress(block, MAX_HEADER_BLOCK)
        except zlib.error as e:
            raise ProtocolError(f"header block does not inflate: {e}") from None
        if self._z.unconsumed_tail:
            raise ProtocolError("header block too large")
        return unpack_headers(raw)


# --- encoding -------------------------------------------------------------------------------
def _control(kind: FrameType, flags: int, payload: bytes) -> bytes:
    if len(payload) > MAX_LENGTH:
        raise ValueError("frame too large")
    return struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(payload)) + payload


def encode(frame: Frame, headers: HeaderEncoder) -> bytes:
    """Wire bytes for one frame; header-carrying frames advance `headers`' zlib stream."""
    match frame:
        case Data(sid, data, fin):
            if len(data) > MAX_LENGTH:
                raise ValueError("data frame too large")
            return struct.pack(">II", sid & 0x7FFFFFFF, (FLAG_FIN if fin else 0) << 24 | len(data)) + data
        case SynStream():
            flags = (FLAG_FIN if frame.fin else 0) | (FLAG_UNIDIRECTIONAL if frame.unidirectional else 0)
            head = struct.pack(">IIBB", frame.stream_id, frame.associated_id, (frame.priority & 7) << 5,
                               frame.slot)
            return _control(FrameType.SYN_STREAM, flags, head + headers.encode(frame.headers))
        case SynReply(sid, hdrs, fin):
            return _control(FrameType.SYN_REPLY, FLAG_FIN if fin else 0,
                            struct.pack(">I", sid) + headers.encode(hdrs))
        case HeadersFrame(sid, hdrs, fin):
            return _control(FrameType.HEADERS, FLAG_FIN if fin else 0,
                            struct.pack(">I", sid) + headers.encode(hdrs))
        case RstStream(sid, status):
            return _control(FrameType.RST_STREAM, 0, struct.pack(">II", sid, status))
        case Settings(values, clear):
            body = struct.pack(">I", len(values)) + b"".join(
                struct.pack(">II", key & 0xFFFFFF, value) for key, value in values.items())
            return _control(FrameType.SETTINGS, FLAG_CLEAR_SETTINGS if clear else 0, body)
        case Ping(pid):
            return _control(FrameType.PING, 0, struct.pack(">I", pid))
        case GoAway(last, status):
            return _control(FrameType.GOAWAY, 0, struct.pack(">II", last, status))
        case WindowUpdate(sid, delta):
            return _control(FrameType.WINDOW_UPDATE, 0, struct.pack(">II", sid, delta))
    raise TypeError(f"not a frame: {frame!r}")


# --- decoding -------------------------------------------------------------------------------
class FrameDecoder:
    """Turns a byte stream, fed in pieces of any size, into frames."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._headers = HeaderDecoder()

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames: list[Frame] = []
        while len(self._buf) >= 8:
            word, flags_len = struct.unpack_from(">II", self._buf)
            length = flags_len & 0xFFFFFF
            if len(self._buf) < 8 + length:
                break
            payload = bytes(self._buf[8:8 + length])
            del self._buf[:8 + length]
            flags = flags_len >> 24
            if word & 0x80000000:
                frame = self._control((word >> 16) & 0x7FFF, word & 0xFFFF, flags, payload)
                if frame is not None:
                    frames.append(frame)
            else:
                sid = word & 0x7FFFFFFF
                if sid == 0:
                    raise ProtocolError("data frame on stream 0")
                frames.append(Data(sid, payload, bool(flags & FLAG_FIN)))
        return frames

    def _control(self, version: int, kind: int, flags: int, p: bytes) -> Frame | None:
        if version != VERSION:
            raise ProtocolError(f"unsupported SPDY version {version}")
        fin = bool(flags & FLAG_FIN)
        try:
            if kind == FrameType.SYN_STREAM:
                sid, assoc, pri, slot = struct.unpack_from(">IIBB", p)
                return SynStream(sid & 0x7FFFFFFF, self._headers.decode(p[10:]), assoc & 0x7FFFFFFF,
                                 pri >> 5, slot, fin, bool(flags & FLAG_UNIDIRECTIONAL))
            if kind in (FrameType.SYN_REPLY, FrameType.HEADERS):
                (sid,) = struct.unpack_from(">I", p)
                cls = SynReply if kind == FrameType.SYN_REPLY else HeadersFrame
                return cls(sid & 0x7FFFFFFF, self._headers.decode(p[4:]), fin)
            if kind == FrameType.RST_STREAM:
                sid, status = struct.unpack(">II", p)
                return RstStream(sid & 0x7FFFFFFF, status)
            if kind == FrameType.SETTINGS:
                (count,) = struct.unpack_from(">I", p)
                if len(p) != 4 + 8 * count:
                    raise ProtocolError("SETTINGS length does not match its count")
                values = {}
                for i in range(count):
                    key, value = struct.unpack_from(">II", p, 4 + 8 * i)
                    values[key & 0xFFFFFF] = value  # the top byte holds per-entry persist flags
                return Settings(values, bool(flags & FLAG_CLEAR_SETTINGS))
            if kind == FrameType.PING:
                return Ping(struct.unpack(">I", p)[0])
            if kind == FrameType.GOAWAY:
                last, status = struct.unpack(">II", p)
                return GoAway(last & 0x7FFFFFFF, status)
            if kind == FrameType.WINDOW_UPDATE:
                sid, delta = struct.unpack(">II", p)
                return WindowUpdate(sid & 0x7FFFFFFF, delta & 0x7FFFFFFF)
        except struct.error as e:
            raise ProtocolError(f"malformed {FrameType(kind).name} frame: {e}") from None
        return None  # unknown control types are ignored, as the spec asks
