"""The tick's fast paths for the common input: shared.messages.decode_input, and
shared.wsframe.FrameReader's whole-frame shortcut, against the reference parsers."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared import wire
from shared.errors import RemoteProtocolError
from shared.messages import Input, Leave, decode_input, parse_client_message
from shared.protocol import Kind
from shared.schema import (
    Bool,
    Float,
    InputSchema,
    Int8,
    Int16,
    Int32,
    UInt8,
    UInt16,
    UInt32,
    VarUInt,
)
from shared.wsframe import OP_BINARY, OP_PING, OP_TEXT, FrameError, FrameReader, frame

# ---------------------------------------------------------------- the tick's INPUT fast path

_FAST_SCHEMAS = [
    InputSchema(dx=Float(-1.0, 1.0, 0.01), dy=Float(-1.0, 1.0, 0.01)),
    InputSchema(a=UInt8(), b=Int16(), c=UInt32(), d=Int8(), e=UInt16(), f=Int32()),
    InputSchema(x=Float(0.0, 1000.0, 0.05), y=Float(0.0, 1e6, 0.001), z=Float(0, 1, 0.1)),
]


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    schema=st.sampled_from(_FAST_SCHEMAS),
    seq=st.integers(0, 1 << 30),
    body=st.binary(max_size=24),
    cut=st.integers(-3, 3),
)
def test_decode_input_agrees_with_the_parser(
    schema: InputSchema, seq: int, body: bytes, cut: int
) -> None:
    """Wherever the fast path decodes, the parser decodes the same; where the parser refuses,
    the fast path says None (never a value): so the tick may try it first."""
    fixed = schema.fixed
    assert fixed is not None
    _, size, _ = fixed
    payload = (body * (1 + size))[: max(0, size + cut)]
    data = bytes((Kind.INPUT,)) + wire.varint(seq) + payload
    fast = decode_input(data, schema)
    try:
        msg = parse_client_message(data, schema)
    except RemoteProtocolError:
        assert fast is None
        return
    assert isinstance(msg, Input)
    if fast is not None:
        assert fast == (msg.seq, tuple(msg.codes))
    if seq < 1 << 21 and cut == 0:
        assert fast is not None  # the common form is always taken


def test_decode_input_leaves_other_schemas_and_messages_to_the_parser() -> None:
    varying = InputSchema(n=VarUInt(), flag=Bool())
    assert varying.fixed is None
    assert decode_input(Input(3, (1, True)).to_bytes(varying), varying) is None
    schema = _FAST_SCHEMAS[0]
    assert decode_input(Leave().to_bytes(), schema) is None
    assert decode_input(b"", schema) is None
    # a code above the float's steps: the parser's 1007, not a value
    bad = bytes((Kind.INPUT, 1, 201, 0))
    assert decode_input(bad, schema) is None
    with pytest.raises(RemoteProtocolError):
        parse_client_message(bad, schema)


_frames = st.lists(
    st.tuples(st.sampled_from([OP_BINARY, OP_BINARY, OP_TEXT, OP_PING]), st.binary(max_size=140)),
    min_size=1,
    max_size=6,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(frames=_frames, cuts=st.lists(st.integers(1, 40), max_size=8))
def test_frames_come_back_whatever_the_chunks(
    frames: list[tuple[int, bytes]], cuts: list[int]
) -> None:
    """Masked client frames fed in any chunks come back exactly, in order (short final
    binary frames take the shortcut, the rest the general parser)."""
    data = b"".join(frame(op, payload, os.urandom(4)) for op, payload in frames)
    reader = FrameReader(max_message_size=4096, require_mask=True)
    got: list[tuple[int, bytes]] = []
    pos = 0
    for n in [*cuts, len(data)]:
        reader.feed(data[pos : pos + n])
        pos += n
        while (item := reader.next()) is not None:
            got.append((item[0], bytes(item[1])))
    assert got == [(op, payload) for op, payload in frames if op != OP_PING or len(payload) <= 125]


def test_the_shortcut_keeps_the_size_limit_and_the_fragment_rules() -> None:
    reader = FrameReader(max_message_size=10, require_mask=True)
    reader.feed(frame(OP_BINARY, b"x" * 11, b"abcd"))
    with pytest.raises(FrameError) as info:
        reader.next()
    assert info.value.close_code == 1009
    reader = FrameReader(max_message_size=100, require_mask=True)
    start = bytes((0x02, 0x80 | 3)) + b"abcd" + b"xyz"  # BINARY, not final
    reader.feed(start + frame(OP_BINARY, b"new", b"abcd"))
    with pytest.raises(FrameError) as info:
        reader.next()  # after the first fragment, a new final binary frame: not a shortcut
    assert info.value.close_code == 1002


@settings(max_examples=300)
@given(
    lo=st.floats(-1e4, 1e4),
    span=st.floats(0.5, 1e4),
    precision=st.sampled_from([0.001, 0.01, 0.05, 0.1, 0.25, 1.0]),
    value=st.one_of(st.floats(allow_nan=False), st.integers(-(10**6), 10**6)),
)
def test_float_entity_fields_agree_with_the_field_type(
    lo: float, span: float, precision: float, value: float
) -> None:
    """Entity FLOAT attributes (written inline for speed) store the code ``Float.to_code``
    gives and read back ``Float.to_value`` of it."""
    from shared.schema import EntityType, Schema
    from shared.state import State

    ftype = Float(lo, lo + span, precision)
    etype = EntityType("t", f=ftype)
    state = State(Schema(etype))
    ent = state.spawn(etype)
    ent.f = value
    assert ent.codes[0] == ftype.to_code(value)
    assert ent.f == ftype.to_value(ftype.to_code(value))


def test_a_nan_float_attribute_is_refused() -> None:
    from shared.errors import LocalProtocolError
    from shared.schema import EntityType, Schema
    from shared.state import State

    etype = EntityType("t", f=Float(0.0, 1.0, 0.1))
    ent = State(Schema(etype)).spawn(etype)
    with pytest.raises(LocalProtocolError, match="NaN"):
        ent.f = float("nan")
