"""shared.schema: field kinds (codes, packing, widths, limits) and the schema descriptor."""

from __future__ import annotations

import math
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gameserver.games.arena import GEM, INPUT, PLAYER, POS, SCHEMA
from shared import schema as schema_mod
from shared import wire
from shared.errors import LocalProtocolError, RemoteProtocolError
from shared.protocol import CloseCode
from shared.schema import (
    MAX_FIELDS,
    MAX_TYPES,
    Bool,
    EntityType,
    FieldKind,
    FieldType,
    Float,
    InputSchema,
    Int8,
    Int16,
    Int32,
    Schema,
    String,
    UInt8,
    UInt16,
    UInt32,
    VarInt,
    VarUInt,
)
from shared.state import State, encode_record


def decode(ftype: FieldType, data: bytes) -> Any:
    r = wire.Reader(data)
    code = ftype.decode(r)
    r.expect_end()
    return code


def test_kind_numbers_are_fixed() -> None:
    # these numbers are on the wire (schema descriptor); they must never change
    assert [(k.name, int(k)) for k in FieldKind] == [
        ("BOOL", 0),
        ("U8", 1),
        ("U16", 2),
        ("U32", 3),
        ("I8", 4),
        ("I16", 5),
        ("I32", 6),
        ("VARUINT", 7),
        ("VARINT", 8),
        ("FLOAT", 9),
        ("STRING", 10),
    ]
    kinds = [Bool, UInt8, UInt16, UInt32, Int8, Int16, Int32, VarUInt, VarInt]
    assert [t.kind for t in kinds] == list(FieldKind)[:9]
    assert Float.kind is FieldKind.FLOAT and String.kind is FieldKind.STRING


# ---------------------------------------------------------------- Bool


def test_bool() -> None:
    b = Bool()
    assert b.default is False
    assert b.to_code(1) is True and b.to_code(0) is False and b.to_code("") is False
    assert b.encode(True) == b"\x01" and b.encode(False) == b"\x00"
    assert decode(b, b"\x01") is True and decode(b, b"\x00") is False
    with pytest.raises(RemoteProtocolError, match="bool") as info:
        decode(b, b"\x02")
    assert info.value.close_code == CloseCode.INVALID_PAYLOAD
    with pytest.raises(RemoteProtocolError):
        decode(b, b"")
    assert b.describe() == b""


# ---------------------------------------------------------------- fixed-width integers

FIXED = [
    (UInt8(), 1, 0, 255),
    (UInt16(), 2, 0, 65535),
    (UInt32(), 4, 0, 2**32 - 1),
    (Int8(), 1, -128, 127),
    (Int16(), 2, -32768, 32767),
    (Int32(), 4, -(2**31), 2**31 - 1),
]


@pytest.mark.parametrize(("ftype", "width", "lo", "hi"), FIXED)
def test_fixed_int_range_and_width(ftype: FieldType, width: int, lo: int, hi: int) -> None:
    assert ftype.default == 0
    assert ftype.describe() == b""
    for value in (lo, lo + 1, 0, hi - 1, hi):
        assert ftype.to_code(value) == value
        data = ftype.encode(value)
        assert len(data) == width
        assert data == value.to_bytes(width, "little", signed=lo < 0)
        assert decode(ftype, data) == value
    for bad in (lo - 1, hi + 1):
        with pytest.raises(LocalProtocolError, match="outside"):
            ftype.to_code(bad)
    for bad_type in (True, 1.0, "1", None):
        with pytest.raises(LocalProtocolError, match="needs an int"):
            ftype.to_code(bad_type)
    with pytest.raises(RemoteProtocolError, match="truncated"):
        decode(ftype, b"\x00" * (width - 1))


def test_fixed_int_exact_bytes() -> None:
    assert UInt16().encode(0x1234) == b"\x34\x12"
    assert Int16().encode(-2) == b"\xfe\xff"
    assert Int8().encode(-128) == b"\x80"
    assert UInt32().encode(1) == b"\x01\x00\x00\x00"
    assert Int32().encode(-1) == b"\xff\xff\xff\xff"
    assert decode(Int16(), b"\x00\x80") == -32768


# ---------------------------------------------------------------- variable-length integers


def test_varuint() -> None:
    v = VarUInt()
    assert v.to_code(0) == 0 and v.to_code(2**64 - 1) == 2**64 - 1
    for bad in (-1, 2**64):
        with pytest.raises(LocalProtocolError):
            v.to_code(bad)
    with pytest.raises(LocalProtocolError):
        v.to_code(False)
    assert v.encode(127) == b"\x7f"  # 1 byte below 128
    assert v.encode(128) == b"\x80\x01"
    assert decode(v, b"\xac\x02") == 300
    with pytest.raises(RemoteProtocolError):
        decode(v, b"\x80")


def test_varint() -> None:
    v = VarInt()
    assert v.to_code(-(2**63)) == -(2**63) and v.to_code(2**63 - 1) == 2**63 - 1
    for bad in (-(2**63) - 1, 2**63):
        with pytest.raises(LocalProtocolError):
            v.to_code(bad)
    # zigzag: 1 byte for -64..63
    assert [len(v.encode(x)) for x in (-64, 63, -65, 64)] == [1, 1, 2, 2]
    assert v.encode(-1) == b"\x01" and v.encode(1) == b"\x02"
    assert decode(v, b"\x03") == -2
    assert decode(v, bytes.fromhex("ffffffffffffffffff01")) == -(2**63)


@given(st.integers(-(2**63), 2**63 - 1))
@settings(max_examples=100, deadline=None)
def test_varint_field_round_trip(value: int) -> None:
    assert decode(VarInt(), VarInt().encode(value)) == value


# ---------------------------------------------------------------- Float


def test_float_quantization_formula() -> None:
    f = Float(0.0, 1000.0, 0.05)
    assert f.steps == 20000 and f.width == 2
    assert f.to_code(0.0) == 0
    assert f.to_code(1000.0) == 20000
    assert f.to_code(12.34) == 247  # round(12.34 / 0.05) = round(246.8)
    assert f.to_code(12.326) == 247  # round(246.52)
    assert f.to_code(12.324) == 246  # round(246.48)
    assert f.to_value(247) == pytest.approx(12.35)
    assert f.encode(247) == b"\xf7\x00"
    assert decode(f, b"\x20\x4e") == 20000
    axis = Float(-1.0, 1.0, 0.01)
    assert axis.steps == 200 and axis.width == 1
    assert axis.to_code(-1.0) == 0 and axis.to_code(0.0) == 100 and axis.to_code(0.5) == 150
    assert axis.to_value(100) == pytest.approx(0.0)
    assert axis.to_value(axis.to_code(-0.37)) == pytest.approx(-0.37)


def test_float_clamps_out_of_range_values() -> None:
    f = Float(-1.0, 1.0, 0.01)
    assert f.to_code(-1.004) == 0
    assert f.to_code(-5.0) == 0
    assert f.to_code(1.004) == 200
    assert f.to_code(7.0) == 200
    assert f.to_code(-1e300) == 0
    assert f.to_code(1e300) == 200
    assert f.to_code(math.inf) == 200
    assert f.to_code(-math.inf) == 0
    with pytest.raises(LocalProtocolError, match="NaN"):
        f.to_code(math.nan)


@pytest.mark.parametrize(
    ("lo", "hi", "precision", "steps", "width"),
    [
        (0.0, 1.0, 1.0, 1, 1),
        (0.0, 255.0, 1.0, 255, 1),  # largest 1-byte float
        (0.0, 256.0, 1.0, 256, 2),
        (0.0, 65535.0, 1.0, 65535, 2),
        (0.0, 65536.0, 1.0, 65536, 3),
        (0.0, 2.0**24 - 1, 1.0, 2**24 - 1, 3),
        (0.0, 2.0**24, 1.0, 2**24, 4),
        (-1.0, 1.0, 2.0 / (2**32 - 1), 2**32 - 1, 4),
        (0.0, 1000.0, 0.05, 20000, 2),
        (-100.0, 100.0, 0.25, 800, 2),
    ],
)
def test_float_width_rule(lo: float, hi: float, precision: float, steps: int, width: int) -> None:
    f = Float(lo, hi, precision)
    assert (f.steps, f.width) == (steps, width)
    assert len(f.encode(0)) == width
    assert len(f.encode(f.steps)) == width
    assert decode(f, f.encode(f.steps)) == steps


def test_float_decode_rejects_codes_above_steps() -> None:
    f = Float(0.0, 100.0, 1.0)  # 100 steps, 1 byte
    assert decode(f, b"\x64") == 100
    with pytest.raises(RemoteProtocolError, match="above") as info:
        decode(f, b"\x65")
    assert info.value.close_code == CloseCode.INVALID_PAYLOAD


@pytest.mark.parametrize(
    ("lo", "hi", "precision"),
    [
        (0.0, 1.0, 0.0),
        (0.0, 1.0, -0.1),
        (1.0, 1.0, 0.1),
        (2.0, 1.0, 0.1),
        (math.nan, 1.0, 0.1),
        (0.0, math.inf, 0.1),
        (0.0, 1.0, math.nan),
        (0.0, 2.0**32, 1.0),  # 2**32 steps: more than 4 bytes
        (-1e308, 1e308, 1.0),  # hi - lo overflows to inf
        (0.0, 1e300, 1e-300),  # steps overflow
    ],
)
def test_float_bad_parameters(lo: float, hi: float, precision: float) -> None:
    with pytest.raises(LocalProtocolError):
        Float(lo, hi, precision)


def test_float_describe() -> None:
    f = Float(-1.0, 1.0, 0.01)
    assert f.describe() == wire.f64(-1.0) + wire.f64(1.0) + wire.f64(0.01)
    assert len(f.describe()) == 24


@given(st.floats(allow_nan=False), st.sampled_from([POS, INPUT.fields["dx"], Float(-5, 5, 0.3)]))
@settings(max_examples=200, deadline=None)
def test_float_code_always_in_range(value: float, f: Float) -> None:
    code = f.to_code(value)
    assert isinstance(code, int)
    assert 0 <= code <= f.steps
    assert decode(f, f.encode(code)) == code
    if f.lo <= value <= f.hi:
        assert abs(f.to_value(code) - value) <= f.precision / 2 + 1e-9


# ---------------------------------------------------------------- String


def test_string_field() -> None:
    s = String(4)
    assert s.default == ""
    assert s.to_code("abcd") == "abcd"
    assert s.to_code("é") == "é"
    with pytest.raises(LocalProtocolError, match="longer"):
        s.to_code("abcde")
    with pytest.raises(LocalProtocolError, match="longer"):
        s.to_code("ééé")  # 3 characters, 6 bytes
    with pytest.raises(LocalProtocolError):
        s.to_code(5)
    assert s.encode("ab") == b"\x02ab"
    assert s.encode("") == b"\x00"
    assert decode(s, b"\x04abcd") == "abcd"
    with pytest.raises(RemoteProtocolError):
        decode(s, b"\x05abcde")  # over this field's limit
    with pytest.raises(RemoteProtocolError, match="UTF-8"):
        decode(s, b"\x01\xff")
    assert s.describe() == b"\x04"
    assert String(255).describe() == b"\xff\x01"
    assert String().max_bytes == 32


@pytest.mark.parametrize("max_bytes", [0, -1, 256])
def test_string_limits(max_bytes: int) -> None:
    with pytest.raises(LocalProtocolError):
        String(max_bytes)


# ---------------------------------------------------------------- entity types and schemas


def test_arena_byte_widths() -> None:
    assert [(n, t.kind.name) for n, t in PLAYER.fields.items()] == [
        ("x", "FLOAT"),
        ("y", "FLOAT"),
        ("score", "VARUINT"),
        ("hp", "U8"),
        ("owner", "VARUINT"),
        ("name", "STRING"),
    ]
    assert POS.width == 2
    assert PLAYER.mask_bytes == 1 and GEM.mask_bytes == 1
    assert (PLAYER.type_id, GEM.type_id) == (0, 1)
    assert INPUT.encode_all(INPUT.codes_for({"dx": 0.5, "dy": -1.0})) == b"\x96\x00"


def test_mask_bytes_is_ceil_fields_over_8() -> None:
    for n, expect in [(0, 0), (1, 1), (8, 1), (9, 2), (16, 2), (17, 3), (64, 8)]:
        etype = EntityType("t", **{f"f{i}": Bool() for i in range(n)})
        assert etype.mask_bytes == expect


def test_schema_descriptor_round_trip() -> None:
    etype = EntityType(
        "everything",
        b=Bool(),
        u8=UInt8(),
        u16=UInt16(),
        u32=UInt32(),
        i8=Int8(),
        i16=Int16(),
        i32=Int32(),
        vu=VarUInt(),
        vi=VarInt(),
        f=Float(-3.5, 12.25, 0.125),
        s=String(200),
    )
    schema = Schema(etype, EntityType("empty"), EntityType("ünïcode", z=Bool()))
    data = schema.to_bytes()
    r = wire.Reader(data)
    back = Schema.read(r)
    r.expect_end()
    assert [t.name for t in back] == ["everything", "empty", "ünïcode"]
    for orig, copy in zip(schema, back, strict=True):
        assert copy.fields == orig.fields  # attrs equality: same kinds and parameters
        assert copy.names == orig.names
        assert copy.type_id == orig.type_id
    assert back.to_bytes() == data
    # and the arena's, byte for byte
    arena = Schema.read(wire.Reader(SCHEMA.to_bytes()))
    assert arena.to_bytes() == SCHEMA.to_bytes()
    assert arena.types[0].fields == PLAYER.fields


def test_input_schema_descriptor_round_trip() -> None:
    data = INPUT.to_bytes()
    # count, then name, kind byte, params for each field
    expect = (
        b"\x02"
        + b"\x02dx\x09"
        + wire.f64(-1.0)
        + wire.f64(1.0)
        + wire.f64(0.01)
        + b"\x02dy\x09"
        + wire.f64(-1.0)
        + wire.f64(1.0)
        + wire.f64(0.01)
    )
    assert data == expect
    r = wire.Reader(data)
    back = InputSchema.read(r)
    r.expect_end()
    assert back.fields == INPUT.fields
    assert InputSchema.read(wire.Reader(b"\x00")).names == ()


def test_schema_descriptor_exact_bytes() -> None:
    schema = Schema(EntityType("ab", on=Bool(), n=String(3)))
    assert schema.to_bytes().hex() == "01" + "026162" + "02" + "026f6e00" + "016e0a03"


def _one_type(fields: bytes, name: bytes = b"\x01t") -> bytes:
    return b"\x01" + name + fields


@pytest.mark.parametrize(
    ("descriptor", "match"),
    [
        (b"\x00", "0 entity types"),
        (wire.varint(MAX_TYPES + 1), "entity types"),
        (b"", "truncated"),
        (_one_type(b"\x01\x01x\x0b"), "unknown field kind"),
        (_one_type(b"\x01\x01x\xff"), "unknown field kind"),
        (_one_type(b"\x01\x01x"), "truncated"),
        (_one_type(b"\x02\x01x\x00\x01x\x00"), "bad field name"),  # duplicate
        (_one_type(b"\x01\x01_\x00"), "bad field name"),
        (_one_type(b"\x01\x022a\x00"), "bad field name"),
        (_one_type(b"\x01\x00\x00"), "bad field name"),  # empty name
        (_one_type(wire.varint(MAX_FIELDS + 1)), "fields"),
        (_one_type(b"\x01\x01s\x0a\x00"), "bad field parameters"),  # String(0)
        (_one_type(b"\x01\x01s\x0a\x80\x02"), "bad field parameters"),  # String(256)
        (_one_type(b"\x01\x01f\x09" + wire.f64(1) + wire.f64(0) + wire.f64(1)), "parameters"),
        (_one_type(b"\x01\x01f\x09" + wire.f64(0) + wire.f64(1) + wire.f64(0)), "parameters"),
        (
            _one_type(b"\x01\x01f\x09" + wire.f64(0) + wire.f64(math.nan) + wire.f64(1)),
            "parameters",
        ),
        (
            _one_type(b"\x01\x01f\x09" + wire.f64(-1e308) + wire.f64(1e308) + wire.f64(1)),
            "parameters",
        ),
        (
            _one_type(b"\x01\x01f\x09" + wire.f64(0) + wire.f64(1e300) + wire.f64(1e-300)),
            "parameters",
        ),
        # field names that would clash with Entity attributes
        (_one_type(b"\x01\x02id\x00"), "clashes"),
        (_one_type(b"\x01\x05codes\x00"), "clashes"),
        (_one_type(b"\x01\x05etype\x00"), "clashes"),
        (_one_type(b"\x01\x07as_dict\x00"), "clashes"),
    ],
)
def test_bad_schema_descriptors(descriptor: bytes, match: str) -> None:
    with pytest.raises(RemoteProtocolError, match=match) as info:
        Schema.read(wire.Reader(descriptor))
    assert info.value.close_code == CloseCode.INVALID_PAYLOAD


def test_schema_descriptor_odd_but_valid_names() -> None:
    # entity type names are free text (a NUL included); field names are identifiers,
    # and any identifier that does not clash is accepted ("self", keywords)
    data = _one_type(b"\x02\x04self\x00\x05class\x01", name=b"\x03a\x00b")
    schema = Schema.read(wire.Reader(data))
    etype = schema.types[0]
    assert etype.name == "a\x00b"
    assert etype.names == ("self", "class")
    assert schema.to_bytes() == data
    inp = InputSchema.read(wire.Reader(b"\x01\x04self\x00"))
    assert inp.names == ("self",)


def test_local_schema_misuse() -> None:
    with pytest.raises(LocalProtocolError):
        Schema()
    t = EntityType("t", a=Bool())
    Schema(t)
    with pytest.raises(LocalProtocolError, match="already belongs"):
        Schema(EntityType("u"), t)
    with pytest.raises(LocalProtocolError):
        EntityType("t", a=int)  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        EntityType("t", _a=Bool())
    with pytest.raises(LocalProtocolError):
        EntityType("t", mask=Bool())
    with pytest.raises(LocalProtocolError):
        EntityType("t", **{f"f{i}": Bool() for i in range(MAX_FIELDS + 1)})
    with pytest.raises(LocalProtocolError):
        Schema(*[EntityType(f"t{i}") for i in range(MAX_TYPES + 1)])


def test_type_for_unknown_id() -> None:
    assert SCHEMA.type_for(1) is GEM
    with pytest.raises(RemoteProtocolError, match="unknown entity type"):
        SCHEMA.type_for(2)


# ---------------------------------------------------------------- inputs and entities


def test_input_codes_and_values() -> None:
    codes = INPUT.codes_for({"dx": 0.25})
    # a missing field is neutral: for a Float, 0 clamped into its range (here code 100)
    assert codes == (125, 100)
    values = INPUT.values_for(codes)
    assert values.dx == pytest.approx(0.25)
    assert values.as_dict() == {"dx": pytest.approx(0.25), "dy": pytest.approx(0.0)}
    above = InputSchema(a=Float(5, 10, 0.5), b=Bool(), n=UInt8(), s=String(4), v=VarInt())
    assert above.values_for(above.codes_for({})).as_dict() == {
        "a": 5.0,
        "b": False,
        "n": 0,
        "s": "",
        "v": 0,
    }
    below = InputSchema(a=Float(-10, -5, 0.5))
    assert below.values_for(below.codes_for({})).a == -5.0
    with pytest.raises(AttributeError):
        _ = values.dz
    with pytest.raises(LocalProtocolError, match="unknown input fields"):
        INPUT.codes_for({"dz": 1.0})


def test_entity_writes_quantize_and_mark_dirty() -> None:
    ent = PLAYER.cls(5, list(PLAYER.defaults), None)
    assert ent.codes == [0, 0, 0, 0, 0, ""]
    ent.x = 12.34
    assert ent.codes[0] == 247
    assert ent.x == pytest.approx(12.35)
    assert ent.mask == 0b1
    ent.name = "bob"
    assert ent.mask == 0b100001
    tracker: dict[int, Any] = {}
    ent2 = PLAYER.cls(6, list(PLAYER.defaults), tracker)
    ent2.hp = 0  # same code: not a change
    assert ent2.mask == 0 and tracker == {}
    ent2.hp = 50
    assert ent2.mask == 0b1000 and tracker == {6: ent2}
    with pytest.raises(LocalProtocolError):
        ent2.hp = 256
    assert ent2.hp == 50
    assert ent2.as_dict()["hp"] == 50


@given(st.data())
@settings(max_examples=100, deadline=None)
def test_float_inputs_fast_path_gives_the_reference_values(data: st.DataObject) -> None:
    """An all-Float input schema (1 to 3 fields) dequantizes exactly as Float.to_value."""
    n = data.draw(st.integers(1, 3), label="fields")
    fields = {}
    for i in range(n):
        lo = data.draw(st.floats(-1000, 999, allow_nan=False), label="lo")
        hi = lo + data.draw(st.floats(0.5, 1000), label="span")
        fields[f"f{i}"] = Float(lo, hi, data.draw(st.sampled_from([0.001, 0.01, 0.25]), label="p"))
    schema = InputSchema(**fields)
    codes = tuple(data.draw(st.integers(0, t.steps), label="code") for t in schema.types)
    got = schema.values_for(codes).values
    assert got == tuple(t.to_value(c) for t, c in zip(schema.types, codes, strict=True))
    with pytest.raises(ValueError):
        schema.values_for((*codes, 0))  # a wrong count still fails as zip(strict) does


# every field kind with codes its to_code can return, for the compiled encoders' plan
_PLAN_CASES: list[tuple[FieldType, Any]] = [
    (Bool(), st.booleans()),
    (UInt8(), st.integers(0, 255)),
    (UInt16(), st.integers(0, 2**16 - 1)),
    (UInt32(), st.integers(0, 2**32 - 1)),
    (Int8(), st.integers(-128, 127)),
    (Int16(), st.integers(-(2**15), 2**15 - 1)),
    (Int32(), st.integers(-(2**31), 2**31 - 1)),
    (VarUInt(), st.integers(0, 2**64 - 1)),
    (VarInt(), st.integers(-(2**63), 2**63 - 1)),
    (POS, st.integers(0, POS.steps)),
    (Float(0, 1, 1e-7), st.integers(0, Float(0, 1, 1e-7).steps)),  # 3 bytes
    (Float(-1, 1, 0.1), st.integers(0, 20)),  # 1 byte
    (String(8), st.text(max_size=8).map(lambda s: s.encode()[:8].decode("utf-8", "ignore"))),
]


@given(st.data())
@settings(max_examples=300, deadline=None)
def test_field_plan_writes_what_encode_writes(data: st.DataObject) -> None:
    """The compiled encoders (shared.state) write each field by its plan with wire.field:
    the same bytes as the field type's own encode, for every kind and width."""
    ftype, codes = data.draw(st.sampled_from(_PLAN_CASES))
    code = data.draw(codes)
    op, arg = schema_mod.field_plan(ftype)
    assert op >= 0
    assert wire.field(op, arg, code) == ftype.encode(code)


def test_field_plan_leaves_an_overridden_encode_to_the_type() -> None:
    """A field type whose encode is its own gets op -1: records and patches call its encode."""

    @attrs.frozen
    class Tagged(UInt8):
        def encode(self, code: Any) -> bytes:
            return b"\xee" + super().encode(code)

    etype = EntityType("tagged", t=Tagged(), u=UInt8())
    assert etype.plan == ((-1, 0), (wire.FIELD_UINT, 1))
    state = State(Schema(etype))
    entity = state.spawn(etype, t=7, u=9)
    assert encode_record(entity) == b"\x01\x00\xee\x07\x09"
    with pytest.raises(ValueError, match="unknown field op"):
        wire.field(99, 0, 1)


def test_arena_plans() -> None:
    assert PLAYER.plan == (
        (wire.FIELD_UINT, 2),
        (wire.FIELD_UINT, 2),
        (wire.FIELD_VARUINT, 0),
        (wire.FIELD_UINT, 1),
        (wire.FIELD_VARUINT, 0),
        (wire.FIELD_STRING, 32),
    )
    assert GEM.plan == ((wire.FIELD_UINT, 2), (wire.FIELD_UINT, 2), (wire.FIELD_UINT, 1))
