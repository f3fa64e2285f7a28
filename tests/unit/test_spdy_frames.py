"""SPDY/3.1 framing: wire layouts from the spec, round trips, and the zlib header codec."""

from __future__ import annotations

import os
import zlib

import pytest

from netkube.streaming.spdy.dictionary import DICTIONARY
from netkube.streaming.spdy.frames import (
    Data,
    FrameDecoder,
    GoAway,
    HeaderDecoder,
    HeaderEncoder,
    HeadersFrame,
    Ping,
    ProtocolError,
    RstStream,
    Settings,
    SynReply,
    SynStream,
    WindowUpdate,
    encode,
    pack_headers,
    unpack_headers,
)

PF_HEADERS = {"streamtype": ["error"], "port": ["80"], "requestid": ["0"]}


def test_dictionary_is_the_spdy3_one():
    assert len(DICTIONARY) == 1423
    assert DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert DICTIONARY.endswith(b"charset=iso-8859-1,utf-,*,enq=0.")
    assert zlib.adler32(DICTIONARY) == 0xE3C6A7C2  # the id a peer's zlib header names (FDICT)


@pytest.mark.skipif(not os.path.exists("/usr/bin/kubectl"), reason="no kubectl binary to compare with")
def test_dictionary_matches_the_copy_inside_kubectl():
    # spdystream, compiled into kubectl, carries the same 1423 bytes
    data = open("/usr/bin/kubectl", "rb").read()  # noqa: SIM115
    start = data.find(DICTIONARY[:64])
    assert start >= 0 and data[start:start + len(DICTIONARY)] == DICTIONARY


@pytest.mark.parametrize("frame,wire", [
    (Data(1, b"abc", fin=True), "00000001 01000003 616263"),
    (Data(0x7FFFFFFF, b""), "7fffffff 00000000"),
    (RstStream(3, 5), "80030003 00000008 00000003 00000005"),
    (Ping(1), "80030006 00000004 00000001"),
    (GoAway(7, 0), "80030007 00000008 00000007 00000000"),
    (WindowUpdate(0, 4096), "80030009 00000008 00000000 00001000"),
    (Settings({7: 1000}), "80030004 0000000c 00000001 00000007 000003e8"),
])
def test_wire_layout_follows_the_spec(frame, wire):
    raw = encode(frame, HeaderEncoder())
    assert raw.hex() == wire.replace(" ", "")
    assert FrameDecoder().feed(raw) == [frame]


def test_header_frames_round_trip_through_one_compression_context():
    enc, dec = HeaderEncoder(), FrameDecoder()
    frames = [
        SynStream(1, PF_HEADERS, priority=2),
        SynStream(3, {**PF_HEADERS, "streamtype": ["data"]}, fin=True, unidirectional=True),
        SynReply(1, {}),
        HeadersFrame(3, {"multi": ["a", "b"]}, fin=True),
    ]
    wire = b"".join(encode(f, enc) for f in frames)
    # SYN_STREAM: control bit + version 3, type 1; flags 0; stream id, associated id, priority<<5
    assert wire[:4].hex() == "80030001" and wire[8:18].hex() == "00000001000000004000"
    # fed one byte at a time, frames still come out whole and in order
    out = [f for i in range(len(wire)) for f in dec.feed(wire[i:i + 1])]
    assert out == frames


def test_header_blocks_need_the_dictionary_and_the_shared_context():
    enc = HeaderEncoder()
    first, second = enc.encode(PF_HEADERS), enc.encode(PF_HEADERS)
    assert len(second) < len(first)  # the second block refers back into the same zlib stream
    with pytest.raises(zlib.error):  # primed with the SPDY/3 dictionary: inflating without it fails
        zlib.decompressobj().decompress(first)
    dec = HeaderDecoder()
    assert dec.decode(first) == PF_HEADERS and dec.decode(second) == PF_HEADERS
    with pytest.raises(ProtocolError):  # the second block alone makes no sense to a fresh context
        HeaderDecoder().decode(second)


def test_header_block_layout_and_checks():
    assert pack_headers({"port": ["80"]}).hex() == "00000001" + "00000004" + b"port".hex() + "00000002" + b"80".hex()
    assert unpack_headers(pack_headers({"a": ["1", "2"]})) == {"a": ["1", "2"]}  # NUL-joined values
    bad_case = b"\x00\x00\x00\x01\x00\x00\x00\x04Port\x00\x00\x00\x0280"
    with pytest.raises(ProtocolError, match="uppercase"):
        unpack_headers(bad_case)
    dup = b"\x00\x00\x00\x02" + (b"\x00\x00\x00\x01a\x00\x00\x00\x011") * 2
    with pytest.raises(ProtocolError, match="repeated"):
        unpack_headers(dup)
    with pytest.raises(ProtocolError):
        unpack_headers(b"\x00\x00\x00\x01\x00\x00\x00\x09ab")


@pytest.mark.parametrize("wire,why", [
    ("00000000 00000000", "stream 0"),
    ("80020001 00000000", "version"),
    ("80030003 00000004 00000001", "RST_STREAM"),
    ("80030004 00000008 00000002 00000007", "SETTINGS"),
])
def test_malformed_frames_are_protocol_errors(wire, why):
    with pytest.raises(ProtocolError, match=why):
        FrameDecoder().feed(bytes.fromhex(wire.replace(" ", "")))


def test_unknown_control_frames_are_skipped():
    dec = FrameDecoder()
    raw = bytes.fromhex("8003000a00000002abcd") + encode(Ping(5), HeaderEncoder())
    assert dec.feed(raw) == [Ping(5)]
