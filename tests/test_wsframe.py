"""The sans-I/O frame parser against frames made by wsproto (an independent implementation)."""

from __future__ import annotations

import sys

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from wsproto.frame_protocol import FrameProtocol

from shared.errors import RemoteProtocolError
from shared.wsframe import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameError,
    FrameReader,
    binary_frame,
    close_payload,
    frame,
    parse_close,
    unmask,
)

MASK = b"\x11\x22\x33\x44"


def client() -> FrameProtocol:
    """wsproto's client side: every frame it makes is masked, as RFC 6455 requires."""
    return FrameProtocol(client=True, extensions=[])


def server_reader(max_size: int = 1 << 20) -> FrameReader:
    return FrameReader(max_message_size=max_size, require_mask=True)


def drain(reader: FrameReader) -> list[tuple[int, bytes]]:
    out = []
    while (item := reader.next()) is not None:
        out.append(item)
    return out


def parse_all(data: bytes, max_size: int = 1 << 20) -> list[tuple[int, bytes]]:
    reader = server_reader(max_size)
    reader.feed(data)
    return drain(reader)


def parse_bytewise(data: bytes, max_size: int = 1 << 20) -> list[tuple[int, bytes]]:
    reader = server_reader(max_size)
    out = []
    for i in range(len(data)):
        reader.feed(data[i : i + 1])
        out += drain(reader)
    return out


def code_of(data: bytes, *, require_mask: bool = True, max_size: int = 1 << 20) -> int:
    reader = FrameReader(max_message_size=max_size, require_mask=require_mask)
    reader.feed(data)
    with pytest.raises(FrameError) as info:
        drain(reader)
    return info.value.close_code


def raw_header(b0: int, length: int, masked: bool = True) -> bytes:
    """A frame header with any first byte and any declared length (no payload)."""
    mbit = 0x80 if masked else 0
    if length < 126:
        head = bytes((b0, mbit | length))
    elif length < 1 << 16:
        head = bytes((b0, mbit | 126)) + length.to_bytes(2, "big")
    else:
        head = bytes((b0, mbit | 127)) + length.to_bytes(8, "big")
    return head + (MASK if masked else b"")


# ---------------------------------------------------------------- well-formed frames


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 200, 65535, 65536, 70000])
def test_binary_messages_of_every_length_encoding(size: int) -> None:
    payload = bytes(i % 251 for i in range(size))
    data = bytes(client().send_data(payload))
    expected_len_byte = size if size < 126 else (126 if size < 1 << 16 else 127)
    assert data[1] & 0x7F == expected_len_byte
    assert parse_all(data) == [(OP_BINARY, payload)]
    if size <= 300:
        assert parse_bytewise(data) == [(OP_BINARY, payload)]


def test_text_message() -> None:
    data = bytes(client().send_data("héllo wörld"))
    assert parse_all(data) == [(OP_TEXT, "héllo wörld".encode())]


def test_several_messages_in_one_feed() -> None:
    proto = client()
    data = b"".join(bytes(proto.send_data(bytes([i]) * i)) for i in range(1, 20))
    assert parse_all(data) == [(OP_BINARY, bytes([i]) * i) for i in range(1, 20)]


def test_fragmented_message_is_reassembled() -> None:
    proto = client()
    data = (
        bytes(proto.send_data(b"abc", fin=False))
        + bytes(proto.send_data(b"", fin=False))
        + bytes(proto.send_data(b"d" * 300, fin=False))
        + bytes(proto.send_data(b"end", fin=True))
    )
    # the first frame carries the opcode, the rest are continuations
    assert data[0] == OP_BINARY
    expected = [(OP_BINARY, b"abc" + b"d" * 300 + b"end")]
    assert parse_all(data) == expected
    assert parse_bytewise(data) == expected


def test_control_frames_interleaved_with_fragments_come_out_first() -> None:
    proto = client()
    data = (
        bytes(proto.send_data("frag-1 ", fin=False))
        + bytes(proto.ping(b"p1"))
        + bytes(proto.send_data("frag-2 ", fin=False))
        + bytes(proto.pong(b"p2"))
        + bytes(proto.ping(b""))
        + bytes(proto.send_data("frag-3", fin=True))
        + bytes(proto.send_data(b"next"))
    )
    expected = [
        (OP_PING, b"p1"),
        (OP_PONG, b"p2"),
        (OP_PING, b""),
        (OP_TEXT, b"frag-1 frag-2 frag-3"),
        (OP_BINARY, b"next"),
    ]
    assert parse_all(data) == expected
    assert parse_bytewise(data) == expected


def test_partial_frames_wait_for_more_bytes() -> None:
    data = bytes(client().send_data(b"x" * 1000))
    reader = server_reader()
    for cut in (1, 2, 3, 4, 7, 8, 500):
        reader = server_reader()
        reader.feed(data[:cut])
        assert reader.next() is None
        assert reader.buffered == cut
        reader.feed(data[cut:])
        assert reader.next() == (OP_BINARY, b"x" * 1000)
        assert reader.next() is None
        assert reader.buffered == 0


def test_control_frame_of_125_bytes_is_fine() -> None:
    assert parse_all(bytes(client().ping(b"p" * 125))) == [(OP_PING, b"p" * 125)]


def test_our_own_frames_round_trip() -> None:
    """The server's and bots' own framing, read back by the matching reader."""
    for payload in (b"", b"a", b"b" * 126, b"c" * 65536):
        server_side = FrameReader(max_message_size=1 << 20, require_mask=False)
        server_side.feed(binary_frame(payload) + frame(OP_PONG, b"pp"))
        assert drain(server_side) == [(OP_BINARY, payload), (OP_PONG, b"pp")]
        client_side = server_reader()
        client_side.feed(frame(OP_BINARY, payload, mask=MASK))
        assert drain(client_side) == [(OP_BINARY, payload)]


def test_unmask_is_its_own_inverse() -> None:
    data = bytes(range(256)) * 3 + b"tail"
    assert unmask(unmask(data, MASK), MASK) == data
    assert unmask(b"", MASK) == b""
    assert unmask(b"\x00\x00\x00\x00\x00", MASK) == MASK + MASK[:1]


# ---------------------------------------------------------------- size limits


def test_oversized_message_is_refused_from_the_header_alone() -> None:
    """1009 as soon as the header declares too much: the payload is never waited for."""
    reader = server_reader(max_size=4096)
    reader.feed(raw_header(0x82, 4097))
    with pytest.raises(FrameError) as info:
        reader.next()
    assert info.value.close_code == 1009
    # a 64-bit length, no payload at all
    assert code_of(raw_header(0x82, 1 << 40), max_size=4096) == 1009


def test_message_of_exactly_the_maximum_size_is_accepted() -> None:
    data = bytes(client().send_data(b"m" * 4096))
    assert parse_all(data, max_size=4096) == [(OP_BINARY, b"m" * 4096)]


def test_oversized_wsproto_frame_is_refused() -> None:
    data = bytes(client().send_data(b"m" * 5000))
    reader = server_reader(max_size=4096)
    reader.feed(data[:8])  # the header and mask only
    with pytest.raises(FrameError) as info:
        reader.next()
    assert info.value.close_code == 1009


def test_fragments_adding_up_past_the_maximum_are_refused_at_the_fragment_header() -> None:
    proto = client()
    first = bytes(proto.send_data(b"a" * 3000, fin=False))
    second = bytes(proto.send_data(b"b" * 3000, fin=True))
    reader = server_reader(max_size=4096)
    reader.feed(first + second[:8])  # the second fragment's header, none of its payload
    with pytest.raises(FrameError) as info:
        reader.next()
    assert info.value.close_code == 1009


def test_control_frames_do_not_count_towards_the_message_size() -> None:
    proto = client()
    data = (
        bytes(proto.send_data(b"a" * 60, fin=False))
        + bytes(proto.ping(b"p" * 125))
        + bytes(proto.send_data(b"b" * 40, fin=True))
    )
    assert parse_all(data, max_size=100) == [
        (OP_PING, b"p" * 125),
        (OP_BINARY, b"a" * 60 + b"b" * 40),
    ]


# ---------------------------------------------------------------- protocol violations


def test_unmasked_client_frame_is_1002() -> None:
    assert code_of(binary_frame(b"hello")) == 1002
    assert code_of(frame(OP_PING, b"x")) == 1002


def test_masked_server_frame_is_1002_for_a_client_reader() -> None:
    assert code_of(bytes(client().send_data(b"hi")), require_mask=False) == 1002


@pytest.mark.parametrize("rsv", [0x40, 0x20, 0x10, 0x70])
def test_reserved_bits_are_1002(rsv: int) -> None:
    data = bytearray(client().send_data(b"payload"))
    data[0] |= rsv
    assert code_of(bytes(data)) == 1002


@pytest.mark.parametrize("opcode", [0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcodes_are_1002(opcode: int) -> None:
    assert code_of(raw_header(0x80 | opcode, 0)) == 1002
    assert code_of(frame(opcode, b"abc", mask=MASK)) == 1002


def test_control_frame_over_125_bytes_is_1002() -> None:
    assert code_of(raw_header(0x80 | OP_PING, 126)) == 1002
    assert code_of(frame(OP_CLOSE, b"\x03\xe8" + b"r" * 124, mask=MASK)) == 1002


def test_fragmented_control_frame_is_1002() -> None:
    assert code_of(raw_header(OP_PING, 0)) == 1002  # FIN clear


def test_continuation_without_a_start_is_1002() -> None:
    assert code_of(raw_header(0x80, 0)) == 1002


def test_new_message_inside_a_fragmented_one_is_1002() -> None:
    proto = client()
    data = bytes(proto.send_data(b"a", fin=False))
    assert code_of(data + frame(OP_BINARY, b"b", mask=MASK)) == 1002
    assert code_of(data + frame(OP_TEXT, b"b", mask=MASK)) == 1002


def test_64_bit_length_with_the_top_bit_set_is_1002() -> None:
    head = bytes((0x82, 0x80 | 127)) + (1 << 63).to_bytes(8, "big") + MASK
    assert code_of(head, max_size=1 << 62) == 1002


@pytest.mark.parametrize(
    ("marker", "length"),
    [(126, 0), (126, 125), (127, 0), (127, 125), (127, 126), (127, 65535)],
)
@pytest.mark.parametrize("require_mask", [True, False], ids=["server", "client"])
def test_lengths_in_more_bytes_than_needed_are_1002(
    marker: int, length: int, require_mask: bool
) -> None:
    """RFC 6455 5.2: "the minimal number of bytes MUST be used to encode the length"."""
    size = 2 if marker == 126 else 8
    head = bytes((0x82, (0x80 if require_mask else 0) | marker)) + length.to_bytes(size, "big")
    data = head + (MASK if require_mask else b"") + b"x" * length
    assert code_of(data, require_mask=require_mask) == 1002


@pytest.mark.parametrize(("marker", "length"), [(126, 126), (126, 65535), (127, 65536)])
def test_lengths_in_the_fewest_bytes_are_fine(marker: int, length: int) -> None:
    size = 2 if marker == 126 else 8
    head = bytes((0x82, 0x80 | marker)) + length.to_bytes(size, "big") + MASK
    payload = b"p" * length
    assert parse_all(head + unmask(payload, MASK)) == [(OP_BINARY, payload)]


def test_errors_are_remote_protocol_errors() -> None:
    assert issubclass(FrameError, RemoteProtocolError)


# ---------------------------------------------------------------- close frames


@pytest.mark.parametrize(
    ("code", "reason"),
    [(1000, ""), (1001, "going away"), (1008, "flood"), (3000, "app"), (4999, "é" * 40)],
)
def test_close_frames_from_wsproto_parse(code: int, reason: str) -> None:
    [(op, payload)] = parse_all(bytes(client().close(code, reason)))
    assert op == OP_CLOSE
    assert parse_close(payload) == (code, reason)


def test_close_without_a_code_is_1005() -> None:
    [(op, payload)] = parse_all(bytes(client().close()))
    assert op == OP_CLOSE and parse_close(payload) == (1005, "")


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535])
def test_invalid_close_codes_are_1002(code: int) -> None:
    with pytest.raises(FrameError) as info:
        parse_close(code.to_bytes(2, "big"))
    assert info.value.close_code == 1002


def test_one_byte_close_payload_is_1002() -> None:
    with pytest.raises(FrameError) as info:
        parse_close(b"\x03")
    assert info.value.close_code == 1002


def test_close_reason_must_be_utf8() -> None:
    with pytest.raises(FrameError) as info:
        parse_close(b"\x03\xe8\xff\xfe")
    assert info.value.close_code == 1007


def test_close_payload_is_cut_to_fit_a_control_frame() -> None:
    payload = close_payload(1000, "é" * 200)
    assert len(payload) <= 125
    code, reason = parse_close(payload)
    assert code == 1000 and reason == "é" * 61


# ---------------------------------------------------------------- memory


def footprint(reader: FrameReader) -> int:
    """Bytes held by the reader's own state (its buffers and lists, shallowly). By name: a
    mypyc-compiled FrameReader has no ``__dict__``."""
    names = ("_buf", "_pos", "_frag_op", "_frags", "_frag_size", "max_message_size")
    return sum(sys.getsizeof(getattr(reader, n)) for n in names)


def test_buffer_stays_bounded_when_reads_end_mid_frame() -> None:
    """A peer streams pings and splits every frame across two reads, so a partial frame is
    always pending when new bytes arrive. 4 MB go through; the reader must not keep them."""
    ping = bytes(client().ping(b"p" * 125))
    reader = server_reader(max_size=4096)
    carry = b""
    for _ in range(4 * 1024 * 1024 // (len(ping) * 16)):
        reader.feed(carry + ping * 15 + ping[:50])
        carry = ping[50:]
        assert len(drain(reader)) >= 15
    held = footprint(reader)
    assert held < 256 * 1024, f"the reader holds {held} bytes"


def test_empty_continuation_frames_cannot_grow_memory_without_bound() -> None:
    first = frame(OP_BINARY, b"x", mask=MASK)
    first = bytes([first[0] & 0x7F]) + first[1:]  # FIN clear: a fragmented message starts
    empty = bytes([0x00, 0x80]) + MASK  # a masked continuation, not final, no payload
    reader = server_reader(max_size=4096)
    reader.feed(first)
    try:
        for _ in range(100):
            reader.feed(empty * 10_000)
            assert reader.next() is None
    except FrameError as exc:  # refusing the flood is a fine answer too
        assert exc.close_code in (1008, 1009)
    held = footprint(reader)
    assert held < 256 * 1024, f"the reader holds {held} bytes after 6 MB of empty frames"


# ---------------------------------------------------------------- fuzzing


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks=st.lists(st.binary(max_size=64), max_size=40), max_size=st.integers(0, 300))
@example(chunks=[b"\x82\xff" + b"\xff" * 8], max_size=100)
@example(chunks=[b"\x88\x82" + MASK + b"\x03"], max_size=100)
@example(chunks=[b"\x02\x80" + MASK, b"\x89\x80" + MASK, b"\x80\x80" + MASK], max_size=0)
def test_arbitrary_bytes_raise_only_remote_protocol_errors(
    chunks: list[bytes], max_size: int
) -> None:
    reader = server_reader(max_size)
    try:
        for chunk in chunks:
            reader.feed(chunk)
            while (item := reader.next()) is not None:
                opcode, payload = item
                assert opcode in (OP_BINARY, OP_TEXT, OP_CLOSE, OP_PING, OP_PONG)
                if opcode >= 0x8:
                    assert len(payload) <= 125
                    if opcode == OP_CLOSE:
                        parse_close(payload)
                else:
                    assert len(payload) <= max_size
    except RemoteProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=200))
def test_parse_close_on_arbitrary_bytes(data: bytes) -> None:
    try:
        code, reason = parse_close(data)
    except RemoteProtocolError:
        return
    assert 1000 <= code < 5000 or code == 1005
    assert isinstance(reason, str)


_messages = st.lists(
    st.tuples(
        st.one_of(st.binary(max_size=300), st.text(max_size=100)),
        st.integers(1, 4),  # number of fragments
        st.booleans(),  # a ping between the fragments
    ),
    max_size=8,
)


@settings(max_examples=200, deadline=None)
@given(messages=_messages, split=st.integers(1, 97))
def test_wsproto_messages_round_trip_in_any_chunking(
    messages: list[tuple[bytes | str, int, bool]], split: int
) -> None:
    proto = client()
    data = bytearray()
    expected: list[tuple[int, bytes]] = []
    for payload, parts, ping in messages:
        raw = payload.encode() if isinstance(payload, str) else payload
        opcode = OP_TEXT if isinstance(payload, str) else OP_BINARY
        step = max(1, -(-len(raw) // parts))
        pieces = [raw[i : i + step] for i in range(0, len(raw), step)] or [raw]
        if isinstance(payload, str):  # wsproto takes str fragments for text
            text_pieces: list[bytes | str] = []
            rest = payload
            for piece in pieces[:-1]:
                n = len(piece.decode("utf-8", "ignore"))
                text_pieces.append(rest[:n])
                rest = rest[n:]
            text_pieces.append(rest)
            pieces_out: list[bytes | str] = text_pieces
        else:
            pieces_out = list(pieces)
        for i, part in enumerate(pieces_out):
            data += proto.send_data(part, fin=i == len(pieces_out) - 1)
            if ping and i == 0 and len(pieces_out) > 1:
                data += proto.ping(b"mid")  # between fragments: it comes out first
                expected.append((OP_PING, b"mid"))
        expected.append((opcode, raw))
        if ping and len(pieces_out) == 1:
            data += proto.ping(b"after")
            expected.append((OP_PING, b"after"))
    reader = server_reader()
    got: list[tuple[int, bytes]] = []
    for i in range(0, len(data), split):
        reader.feed(bytes(data[i : i + split]))
        got += drain(reader)
    assert got == expected
