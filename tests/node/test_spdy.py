"""SPDY/3.1 framing, header compression and the sans-IO session."""

from __future__ import annotations

import struct
import zlib

import pytest

from servicenet.node import spdy
from servicenet.node.spdy import (
    DataFrame,
    FrameDecoder,
    FrameEncoder,
    GoAway,
    HeadersFrame,
    Ping,
    RstStream,
    Session,
    Settings,
    SynReply,
    SynStream,
    UnknownControl,
    WindowUpdate,
)


def test_dictionary_is_the_spdy3_one() -> None:
    d = spdy.DICTIONARY
    assert len(d) == 1423
    assert d.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head\x00\x00\x00\x04post")
    assert d.endswith(b"charset=iso-8859-1,utf-,*,enq=0.")
    assert b"\x00\x00\x00\x06200 OK\x00\x00\x00\x07version\x00\x00\x00\x08HTTP/1.1" in d
    # every SPDY/3 header block starts with this zlib header: FDICT set, dictionary id E3C6A7C2
    block = spdy.HeaderCompressor().compress((("a", "b"),))
    assert block[:6] == bytes.fromhex("78f9e3c6a7c2")
    assert zlib.adler32(d) == 0xE3C6A7C2


@pytest.mark.parametrize(("frame", "wire"), [
    (DataFrame(5, b"hi", fin=True), "00000005 01000002 6869"),
    (DataFrame(1), "00000001 00000000"),
    (Ping(7), "80030006 00000004 00000007"),
    (RstStream(3, spdy.RstStatus.CANCEL), "80030003 00000008 00000003 00000005"),
    (GoAway(9, spdy.GoAwayStatus.PROTOCOL_ERROR), "80030007 00000008 00000009 00000001"),
    (WindowUpdate(1, 65536), "80030009 00000008 00000001 00010000"),
    (Settings(((0, 4, 100), (1, 7, 65536)), clear=True),
     "80030004 01000014 00000002 00000004 00000064 01000007 00010000"),
])
def test_fixed_frames_wire_format(frame: spdy.Frame, wire: str) -> None:
    raw = bytes.fromhex(wire.replace(" ", ""))
    assert FrameEncoder().encode(frame) == raw
    assert FrameDecoder().feed(raw) == [frame]


def test_header_block_layout() -> None:
    raw = spdy.encode_header_block((("Port", "80"), ("x", "1"), ("x", "2")))
    assert raw == b"\0\0\0\x02" + b"\0\0\0\x04port\0\0\0\x0280" + b"\0\0\0\x01x\0\0\0\x031\x002"
    assert spdy.decode_header_block(raw) == (("port", "80"), ("x", "1"), ("x", "2"))
    with pytest.raises(spdy.FrameError):
        spdy.decode_header_block(raw[:-1])


def test_syn_stream_layout_and_shared_compression_context() -> None:
    enc, dec = FrameEncoder(), FrameDecoder()
    first = enc.encode(SynStream(1, (("streamtype", "error"), ("port", "80")), priority=3, fin=True))
    ctl, flags_len = struct.unpack(">II", first[:8])
    assert ctl == 0x80030001 and flags_len >> 24 == spdy.FLAG_FIN and flags_len & 0xFFFFFF == len(first) - 8
    assert first[8:16] == bytes.fromhex("00000001 00000000") and first[16] == 3 << 5 and first[17] == 0
    frames = [SynStream(1, (("streamtype", "error"), ("port", "80")), priority=3, fin=True),
              SynStream(3, (("streamtype", "data"), ("port", "80"))),
              SynReply(3), HeadersFrame(3, (("a", "b"),), fin=True), DataFrame(3, b"x" * 1000)]
    wire = first + b"".join(enc.encode(f) for f in frames[1:])
    second = enc.encode(SynStream(5, (("streamtype", "error"), ("port", "80"))))
    assert len(second) < len(first)  # the second block reuses the context of the first
    got: list[spdy.Frame] = []
    for i in range(len(wire)):  # one byte at a time
        got += dec.feed(wire[i:i + 1])
    assert got == frames
    assert dec.feed(second) == [SynStream(5, (("streamtype", "error"), ("port", "80")))]


@pytest.mark.parametrize(("wire", "msg"), [
    ("80020006 00000004 00000001", "version"),
    ("00000000 00000001 00", "stream 0"),
    ("80030003 00000004 00000001", "invalid length"),
    ("80030001 0000000c 00000001 00000000 0000 ffff", "decompress"),
    ("80030002 00000004 00000000", "stream id 0"),
])
def test_decoder_rejects_garbage(wire: str, msg: str) -> None:
    with pytest.raises(spdy.FrameError, match=msg):
        FrameDecoder().feed(bytes.fromhex(wire.replace(" ", "")))


def test_unknown_control_frames_pass_through() -> None:
    raw = bytes.fromhex("8003000a 00000002 abcd")
    assert FrameDecoder().feed(raw) == [UnknownControl(10, 0, b"\xab\xcd")]


def pair() -> tuple[Session, Session]:
    return Session(server=False), Session(server=True)


def pump(src: Session, dst: Session) -> list[spdy.Event]:
    return dst.receive_data(src.data_to_send())


def test_session_stream_lifecycle() -> None:
    client, server = pair()
    sid = client.open_stream((("port", "80"),))
    assert sid == 1
    assert pump(client, server) == [spdy.StreamOpened(1, (("port", "80"),), False)]
    server.reply(1)
    server.send_data(1, b"hello")
    assert pump(server, client) == [spdy.StreamReplied(1, ()), spdy.DataReceived(1, b"hello")]
    client.send_data(1, b"bye", fin=True)
    assert pump(client, server) == [spdy.DataReceived(1, b"bye"), spdy.StreamEnded(1)]
    assert server.is_open(1) and server.can_send(1)
    server.end_stream(1)
    assert not server.is_open(1)  # closed both ways: forgotten
    assert pump(server, client) == [spdy.StreamEnded(1)]
    assert client.open_streams == []
    with pytest.raises(spdy.StreamStateError):
        server.send_data(1, b"late")


def test_session_splits_large_data_and_fins_the_last_frame() -> None:
    s = Session(server=True, max_frame_data=4)
    s.receive_data(FrameEncoder().encode(SynStream(1)))
    s.send_data(1, b"abcdefghij", fin=True)
    frames = FrameDecoder().feed(s.data_to_send())
    assert frames == [DataFrame(1, b"abcd"), DataFrame(1, b"efgh"), DataFrame(1, b"ij", True)]


def test_session_pings_resets_and_bad_stream_ids() -> None:
    client, server = pair()
    pid = client.ping()
    assert pid == 1 and pump(client, server) == []
    assert pump(server, client) == [spdy.PingAcked(1)]  # the server echoed the client's ping
    client.open_stream(())
    client.open_stream(())
    pump(client, server)
    client.reset_stream(3, spdy.RstStatus.CANCEL)
    assert pump(client, server) == [spdy.StreamReset(3, spdy.RstStatus.CANCEL)]
    assert server.open_streams == [1]
    server.receive_data(FrameEncoder().encode(DataFrame(99, b"ghost")))  # unknown stream: dropped
    # even (server-side) id from the client, and a stream id going backwards: protocol error
    fresh, raw = Session(server=True), FrameEncoder()
    assert [type(e) for e in fresh.receive_data(raw.encode(SynStream(3)))] == [spdy.StreamOpened]
    fresh.data_to_send()
    assert fresh.receive_data(raw.encode(SynStream(4)) + raw.encode(SynStream(1))) == []
    assert FrameDecoder().feed(fresh.data_to_send()) == [
        RstStream(4, spdy.RstStatus.PROTOCOL_ERROR), RstStream(1, spdy.RstStatus.PROTOCOL_ERROR)]


def test_session_goaway() -> None:
    client, server = pair()
    client.open_stream(())
    pump(client, server)
    server.close()
    assert pump(server, client) == [spdy.GoAwayReceived(1, spdy.GoAwayStatus.OK)]
    client.open_stream(())
    assert pump(client, server) == []  # refused after GOAWAY
    assert FrameDecoder().feed(server.data_to_send()) == [RstStream(3, spdy.RstStatus.REFUSED_STREAM)]


def test_session_garbage_sends_protocol_error_goaway() -> None:
    s = Session(server=True)
    with pytest.raises(spdy.FrameError):
        s.receive_data(bytes.fromhex("8002000600000004 00000001"))
    assert FrameDecoder().feed(s.data_to_send()) == [GoAway(0, spdy.GoAwayStatus.PROTOCOL_ERROR)]
