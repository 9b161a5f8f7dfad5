"""Typed entity schemas: what a game declares, and how each field type is packed.

A game declares entity types with typed fields::

    PLAYER = EntityType("player", x=Float(0, 1000, 0.05), y=Float(0, 1000, 0.05), score=VarUInt())
    SCHEMA = Schema(PLAYER)
    INPUT = InputSchema(dx=Float(-1, 1, 0.01), dy=Float(-1, 1, 0.01))

Every field value is held as its *wire code*: the exact integer, bool or string that goes on the
wire. For floats the code is the quantized step ``round((value - lo) / precision)``, so server
and client hold bit-identical state and compute the same checksum.
"""

from __future__ import annotations

import enum
import math
import struct
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from shared import wire
from shared.errors import LocalProtocolError, RemoteProtocolError

Code = int | bool | str
MAX_FIELDS = 64
MAX_TYPES = 64
MAX_STRING_FIELD_BYTES = 255


class FieldKind(enum.IntEnum):
    """Kind byte of a field in a schema descriptor (see docs/protocol.md)."""

    BOOL = 0
    U8 = 1
    U16 = 2
    U32 = 3
    I8 = 4
    I16 = 5
    I32 = 6
    VARUINT = 7
    VARINT = 8
    FLOAT = 9
    STRING = 10


class FieldType:
    """Base of all field types. Subclasses are frozen attrs classes."""

    kind: ClassVar[FieldKind]
    default: ClassVar[Code] = 0

    def to_code(self, value: Any) -> Code:
        """Validate a game value and return its wire code (raises LocalProtocolError)."""
        raise NotImplementedError

    def to_value(self, code: Any) -> Any:
        return code

    def neutral(self) -> Code:
        """The code an input field takes when a client leaves it out: zero, False or ""
        (for a Float whose range excludes 0, the bound nearest to it)."""
        return self.default

    def encode(self, code: Any) -> bytes:
        raise NotImplementedError

    def decode(self, reader: wire.Reader) -> Code:
        raise NotImplementedError

    def describe(self) -> bytes:
        """The descriptor bytes after the kind byte (parameters)."""
        return b""


def _int_range_check(value: Any, lo: int, hi: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise LocalProtocolError(f"{what} needs an int, got {value!r}")
    if not lo <= value <= hi:
        raise LocalProtocolError(f"{what} value {value} outside [{lo}, {hi}]")
    return value


@attrs.frozen
class Bool(FieldType):
    kind: ClassVar[FieldKind] = FieldKind.BOOL
    default: ClassVar[Code] = False

    def to_code(self, value: Any) -> Code:
        return bool(value)

    def encode(self, code: Any) -> bytes:
        return b"\x01" if code else b"\x00"

    def decode(self, reader: wire.Reader) -> Code:
        b = reader.u8()
        if b > 1:
            raise RemoteProtocolError(f"bool field holds {b}")
        return b == 1


@attrs.frozen
class _Fixed(FieldType):
    width: ClassVar[int]
    signed: ClassVar[bool]

    def to_code(self, value: Any) -> Code:
        bits = self.width * 8
        lo, hi = (
            (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if self.signed else (0, (1 << bits) - 1)
        )
        return _int_range_check(value, lo, hi, type(self).__name__)

    def encode(self, code: Any) -> bytes:
        return int(code).to_bytes(self.width, "little", signed=self.signed)

    def decode(self, reader: wire.Reader) -> Code:
        raw = reader.raw(self.width)
        return int.from_bytes(raw, "little", signed=self.signed)


@attrs.frozen
class UInt8(_Fixed):
    kind: ClassVar[FieldKind] = FieldKind.U8
    width: ClassVar[int] = 1
    signed: ClassVar[bool] = False


@attrs.frozen
class UInt16(_Fixed):
    kind: ClassVar[FieldKind] = FieldKind.U16
    width: ClassVar[int] = 2
    signed: ClassVar[bool] = False


@attrs.frozen
class UInt32(_Fixed):
    kind: ClassVar[FieldKind] = FieldKind.U32
    width: ClassVar[int] = 4
    signed: ClassVar[bool] = False


@attrs.frozen
class Int8(_Fixed):
    kind: ClassVar[FieldKind] = FieldKind.I8
    width: ClassVar[int] = 1
    signed: ClassVar[bool] = True


@attrs.frozen
class Int16(_Fixed):
    kind: ClassVar[FieldKind] = FieldKind.I16
    width: ClassVar[int] = 2
    signed: ClassVar[bool] = True


@attrs.frozen
class Int32(_Fixed):
    kind: ClassVar[FieldKind] = FieldKind.I32
    width: ClassVar[int] = 4
    signed: ClassVar[bool] = True


@attrs.frozen
class VarUInt(FieldType):
    """A large non-negative integer (below 2**64), 1 byte below 128."""

    kind: ClassVar[FieldKind] = FieldKind.VARUINT

    def to_code(self, value: Any) -> Code:
        return _int_range_check(value, 0, (1 << 64) - 1, "VarUInt")

    def encode(self, code: Any) -> bytes:
        return wire.varint(code)

    def decode(self, reader: wire.Reader) -> Code:
        return reader.varint()


@attrs.frozen
class VarInt(FieldType):
    """A large signed integer, zigzag encoded: 1 byte for -64..63."""

    kind: ClassVar[FieldKind] = FieldKind.VARINT

    def to_code(self, value: Any) -> Code:
        return _int_range_check(value, -(1 << 63), (1 << 63) - 1, "VarInt")

    def encode(self, code: Any) -> bytes:
        return wire.svarint(code)

    def decode(self, reader: wire.Reader) -> Code:
        v = reader.svarint()
        if not -(1 << 63) <= v < (1 << 63):
            raise RemoteProtocolError("VarInt outside 64-bit range")
        return v


def _width_for(steps: int) -> int:
    for width in (1, 2, 3, 4):
        if steps < 1 << (8 * width):
            return width
    raise LocalProtocolError(f"float field needs {steps} steps; at most 2**32 are allowed")


@attrs.frozen
class Float(FieldType):
    """A float in [lo, hi] quantized to ``precision``; packed in the fewest bytes (1-4)
    that hold ``round((hi - lo) / precision)`` steps. Values outside the range are clamped."""

    kind: ClassVar[FieldKind] = FieldKind.FLOAT
    lo: float
    hi: float
    precision: float
    steps: int = attrs.field(init=False)
    width: int = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        if not (
            math.isfinite(self.lo) and math.isfinite(self.hi) and math.isfinite(self.precision)
        ):
            raise LocalProtocolError("Float bounds and precision must be finite")
        if self.precision <= 0 or self.hi <= self.lo:
            raise LocalProtocolError("Float needs precision > 0 and hi > lo")
        ratio = (self.hi - self.lo) / self.precision
        if not math.isfinite(ratio):
            raise LocalProtocolError("Float range / precision overflows")
        steps = round(ratio)
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "width", _width_for(steps))

    def to_code(self, value: Any) -> Code:
        x = (value - self.lo) / self.precision
        if math.isnan(x):
            raise LocalProtocolError("Float value is NaN")
        if x >= self.steps:
            return self.steps
        return round(x) if x > 0 else 0

    def to_value(self, code: Any) -> Any:
        return self.lo + code * self.precision

    def neutral(self) -> Code:
        return self.to_code(0.0)  # clamped into [lo, hi]

    def encode(self, code: Any) -> bytes:
        return int(code).to_bytes(self.width, "little")

    def decode(self, reader: wire.Reader) -> Code:
        q = int.from_bytes(reader.raw(self.width), "little")
        if q > self.steps:
            raise RemoteProtocolError(f"float code {q} above {self.steps} steps")
        return q

    def describe(self) -> bytes:
        return wire.f64(self.lo) + wire.f64(self.hi) + wire.f64(self.precision)


@attrs.frozen
class String(FieldType):
    """A short UTF-8 string of at most ``max_bytes`` bytes (255 at most)."""

    kind: ClassVar[FieldKind] = FieldKind.STRING
    default: ClassVar[Code] = ""
    max_bytes: int = 32

    def __attrs_post_init__(self) -> None:
        if not 0 < self.max_bytes <= MAX_STRING_FIELD_BYTES:
            raise LocalProtocolError(f"String max_bytes must be 1..{MAX_STRING_FIELD_BYTES}")

    def to_code(self, value: Any) -> Code:
        if not isinstance(value, str):
            raise LocalProtocolError(f"String needs a str, got {value!r}")
        if len(value.encode("utf-8")) > self.max_bytes:
            raise LocalProtocolError(f"string longer than {self.max_bytes} bytes: {value!r}")
        return value

    def encode(self, code: Any) -> bytes:
        return wire.string(code, self.max_bytes)

    def decode(self, reader: wire.Reader) -> Code:
        return reader.string(self.max_bytes)

    def describe(self) -> bytes:
        return wire.varint(self.max_bytes)


def _field_from_descriptor(reader: wire.Reader) -> FieldType:
    try:
        kind = FieldKind(reader.u8())
    except ValueError:
        raise RemoteProtocolError("unknown field kind in schema") from None
    simple: dict[FieldKind, type[FieldType]] = {
        FieldKind.BOOL: Bool,
        FieldKind.U8: UInt8,
        FieldKind.U16: UInt16,
        FieldKind.U32: UInt32,
        FieldKind.I8: Int8,
        FieldKind.I16: Int16,
        FieldKind.I32: Int32,
        FieldKind.VARUINT: VarUInt,
        FieldKind.VARINT: VarInt,
    }
    try:
        if kind in simple:
            return simple[kind]()
        if kind is FieldKind.FLOAT:
            return Float(reader.f64(), reader.f64(), reader.f64())
        return String(reader.varint())
    except LocalProtocolError as exc:
        raise RemoteProtocolError(f"bad field parameters in schema: {exc}") from None


_STRUCT_CODES = {(1, False): "B", (2, False): "H", (4, False): "I", (1, True): "b",
                 (2, True): "h", (4, True): "i"}  # fmt: skip


def _fixed_layout(
    types: tuple[FieldType, ...],
) -> tuple[str, int, tuple[tuple[int, int], ...]] | None:
    fmt = "<"
    checks: list[tuple[int, int]] = []
    for i, t in enumerate(types):
        if isinstance(t, _Fixed):
            fmt += _STRUCT_CODES[t.width, t.signed]
        elif isinstance(t, Float) and t.width != 3:
            fmt += _STRUCT_CODES[t.width, False]
            checks.append((i, t.steps))
        else:
            return None
    return fmt, struct.calcsize(fmt), tuple(checks)


def predict_range(ftype: FieldType) -> tuple[int, int] | None:
    """gamesync.v3: the code range of a field whose patches travel as a prediction residual
    (U16, I16, U32, I32, and FLOAT of width 2 or more), or None for every other field."""
    if isinstance(ftype, Float):
        return (0, ftype.steps) if ftype.width >= 2 else None
    if isinstance(ftype, _Fixed) and ftype.width >= 2:
        bits = ftype.width * 8
        if ftype.signed:
            return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
        return (0, (1 << bits) - 1)
    return None


def field_plan(ftype: FieldType) -> tuple[int, int]:
    """How ``wire.field`` writes this field's codes: its op and argument (``wire.FIELD_*``),
    or ``(-1, 0)`` for a type whose ``encode`` is its own (a subclass that overrides it):
    callers then use ``encode``. Same bytes as ``ftype.encode``."""
    encode = type(ftype).encode
    if isinstance(ftype, Float) and encode is Float.encode:
        return wire.FIELD_UINT, ftype.width
    if isinstance(ftype, _Fixed) and encode is _Fixed.encode:
        return (wire.FIELD_SINT if ftype.signed else wire.FIELD_UINT), ftype.width
    if isinstance(ftype, VarUInt) and encode is VarUInt.encode:
        return wire.FIELD_VARUINT, 0
    if isinstance(ftype, VarInt) and encode is VarInt.encode:
        return wire.FIELD_VARINT, 0
    if isinstance(ftype, Bool) and encode is Bool.encode:
        return wire.FIELD_BOOL, 0
    if isinstance(ftype, String) and encode is String.encode:
        return wire.FIELD_STRING, ftype.max_bytes
    return -1, 0


class FieldList:
    """An ordered list of named, typed fields with precompiled per-field functions."""

    def __init__(self, fields: dict[str, FieldType]) -> None:
        if len(fields) > MAX_FIELDS:
            raise LocalProtocolError(f"at most {MAX_FIELDS} fields")
        for name, ftype in fields.items():
            if not isinstance(ftype, FieldType):
                raise LocalProtocolError(f"field {name!r} is not a field type: {ftype!r}")
            if not name.isidentifier() or name.startswith("_"):
                raise LocalProtocolError(f"field name {name!r} must be a public identifier")
        self.fields: dict[str, FieldType] = dict(fields)
        self.names: tuple[str, ...] = tuple(fields)
        self.types: tuple[FieldType, ...] = tuple(fields.values())
        self.index: dict[str, int] = {n: i for i, n in enumerate(self.names)}
        self.encoders: tuple[Callable[[Any], bytes], ...] = tuple(t.encode for t in self.types)
        #: per field, how ``wire.field`` writes it (see :func:`field_plan`); the compiled
        #: encoders of shared.state use it instead of a call to ``encode`` per field
        self.plan: tuple[tuple[int, int], ...] = tuple(field_plan(t) for t in self.types)
        self.decoders: tuple[Callable[[wire.Reader], Code], ...] = tuple(
            t.decode for t in self.types
        )
        self.defaults: tuple[Code, ...] = tuple(t.default for t in self.types)
        self.mask_bytes = (len(self.names) + 7) // 8
        #: the whole list as one ``struct`` layout, when every field is a fixed-width integer
        #: or a 1, 2 or 4-byte FLOAT (None otherwise): its struct format, its size and each FLOAT's
        #: (index, steps), the codes a decoder must check. A fast path for hot decoders;
        #: ``decode_all`` is the reference
        self.fixed: tuple[str, int, tuple[tuple[int, int], ...]] | None = _fixed_layout(self.types)
        #: gamesync.v3: per field, the code range ``(lo, hi)`` of a *predicted* field (a
        #: fixed-width integer or FLOAT of 2 or more bytes, patched as a residual against its
        #: code plus its last change), else None
        self.predict: tuple[tuple[int, int] | None, ...] = tuple(
            predict_range(t) for t in self.types
        )
        #: the indices of the predicted fields (empty: the type has none)
        self.predicted: tuple[int, ...] = tuple(
            i for i, r in enumerate(self.predict) if r is not None
        )

    def __len__(self) -> int:
        return len(self.names)

    def encode_all(self, codes: list[Code] | tuple[Code, ...]) -> bytes:
        return b"".join([enc(c) for enc, c in zip(self.encoders, codes, strict=True)])

    def decode_all(self, reader: wire.Reader) -> list[Code]:
        return [dec(reader) for dec in self.decoders]

    def describe(self) -> bytes:
        out = [wire.varint(len(self.names))]
        for name, ftype in self.fields.items():
            out += [wire.string(name, 64), bytes((ftype.kind,)), ftype.describe()]
        return b"".join(out)

    @classmethod
    def read_fields(cls, reader: wire.Reader) -> dict[str, FieldType]:
        n = reader.varint()
        if n > MAX_FIELDS:
            raise RemoteProtocolError(f"schema declares {n} fields; at most {MAX_FIELDS}")
        fields: dict[str, FieldType] = {}
        for _ in range(n):
            name = reader.string(64)
            if not name.isidentifier() or name.startswith("_") or name in fields:
                raise RemoteProtocolError(f"bad field name {name!r} in schema")
            fields[name] = _field_from_descriptor(reader)
        return fields


class EntityType(FieldList):
    """A kind of entity with typed fields. Its ``type_id`` is its index in the Schema."""

    def __init__(self, name: str, /, **fields: FieldType) -> None:
        super().__init__(fields)
        self.name = name
        self.type_id = -1
        self.cls: type[Entity] = _make_entity_class(self)

    def __repr__(self) -> str:
        return f"EntityType({self.name!r}, fields={list(self.names)})"


class Schema:
    """All entity types of a game, in a fixed order (the order gives each its type id)."""

    def __init__(self, *types: EntityType) -> None:
        if not 0 < len(types) <= MAX_TYPES:
            raise LocalProtocolError(f"a schema has 1..{MAX_TYPES} entity types")
        for i, etype in enumerate(types):
            if etype.type_id not in (-1, i):
                raise LocalProtocolError(f"entity type {etype.name!r} already belongs to a schema")
            etype.type_id = i
        self.types: tuple[EntityType, ...] = types
        self.by_name: dict[str, EntityType] = {t.name: t for t in types}

    def __iter__(self) -> Iterator[EntityType]:
        return iter(self.types)

    def type_for(self, type_id: int) -> EntityType:
        if type_id >= len(self.types):
            raise RemoteProtocolError(f"unknown entity type {type_id}")
        return self.types[type_id]

    def to_bytes(self) -> bytes:
        out = [wire.varint(len(self.types))]
        for etype in self.types:
            out += [wire.string(etype.name, 64), etype.describe()]
        return b"".join(out)

    @classmethod
    def read(cls, reader: wire.Reader) -> Schema:
        n = reader.varint()
        if not 0 < n <= MAX_TYPES:
            raise RemoteProtocolError(f"schema declares {n} entity types")
        types = []
        for _ in range(n):
            name = reader.string(64)
            try:
                types.append(EntityType(name, **FieldList.read_fields(reader)))
            except LocalProtocolError as exc:
                raise RemoteProtocolError(f"bad entity type in schema: {exc}") from None
        return cls(*types)


class InputSchema(FieldList):
    """The fields of one player input message, all sent every time, in order."""

    def __init__(self, /, **fields: FieldType) -> None:
        super().__init__(fields)
        #: (lo, precision) of each field when every field is a Float (the common input: a
        #: stick or a direction), for :meth:`values_for`'s fast path
        self._floats: tuple[tuple[float, float], ...] | None = None
        if all(type(t) is Float for t in self.types):
            self._floats = tuple((t.lo, t.precision) for t in self.types)  # type: ignore[attr-defined]

    def to_bytes(self) -> bytes:
        return self.describe()

    @classmethod
    def read(cls, reader: wire.Reader) -> InputSchema:
        return cls(**cls.read_fields(reader))

    def codes_for(self, values: dict[str, Any]) -> tuple[Code, ...]:
        """Codes for named values; a missing field takes its neutral code (zero, False or
        ""; a Float whose range excludes 0 takes the bound nearest to it)."""
        unknown = set(values) - set(self.names)
        if unknown:
            raise LocalProtocolError(f"unknown input fields {sorted(unknown)}")
        return tuple(
            t.to_code(values[n]) if n in values else t.neutral() for n, t in self.fields.items()
        )

    def values_for(self, codes: tuple[Code, ...] | list[Code]) -> InputValues:
        floats = self._floats
        if floats is not None and len(codes) == len(floats):
            # Float.to_value inline: the same expression, so the same values
            if len(floats) == 2:
                (lo0, p0), (lo1, p1) = floats
                return InputValues(self, (lo0 + codes[0] * p0, lo1 + codes[1] * p1))  # type: ignore[operator]
            return InputValues(
                self,
                tuple([lo + c * p for (lo, p), c in zip(floats, codes, strict=True)]),  # type: ignore[operator]
            )
        return InputValues(
            self, tuple([t.to_value(c) for t, c in zip(self.types, codes, strict=True)])
        )


class InputValues:
    """One decoded input: attribute access by field name (``inp.dx``), values dequantized."""

    __slots__ = ("_schema", "values")

    def __init__(self, schema: InputSchema, values: tuple[Any, ...]) -> None:
        self._schema = schema
        self.values = values

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[self._schema.index[name]]
        except KeyError:
            raise AttributeError(name) from None

    def as_dict(self) -> dict[str, Any]:
        return dict(zip(self._schema.names, self.values, strict=True))

    def __repr__(self) -> str:
        return f"InputValues({self.as_dict()!r})"


class Entity:
    """One entity. Game code reads and writes typed fields as attributes (``e.x = 3.5``).

    Writes quantize the value to its wire code; a write that changes the code marks the field
    dirty so the next delta carries it.
    """

    __slots__ = ("_tracker", "codes", "id", "mask")
    etype: EntityType

    def __init__(self, entity_id: int, codes: list[Code], tracker: Any = None) -> None:
        self.id = entity_id
        self.codes = codes
        self.mask = 0
        self._tracker = tracker

    if TYPE_CHECKING:  # fields are properties made per entity type; let type checkers see them

        def __getattr__(self, name: str) -> Any: ...
        def __setattr__(self, name: str, value: Any) -> None: ...

    def as_dict(self) -> dict[str, Any]:
        return {
            n: t.to_value(c)
            for n, t, c in zip(self.etype.names, self.etype.types, self.codes, strict=True)
        }

    def __repr__(self) -> str:
        return f"<{self.etype.name} #{self.id} {self.as_dict()}>"


def _make_property(index: int, ftype: FieldType) -> property:
    if isinstance(ftype, Float):
        return _float_property(index, ftype)
    bit = 1 << index
    to_code = ftype.to_code
    to_value = ftype.to_value

    def get(self: Entity) -> Any:
        return to_value(self.codes[index])

    def set_(self: Entity, value: Any) -> None:
        code = to_code(value)
        codes = self.codes
        if codes[index] != code:
            codes[index] = code
            if not self.mask and self._tracker is not None:
                self._tracker[self.id] = self
            self.mask |= bit

    return property(get, set_)


def _float_property(index: int, ftype: Float) -> property:
    """A FLOAT field's property: ``Float.to_value`` and ``Float.to_code`` written inline (the
    arena reads and writes two of them per player per tick); same codes, same errors."""
    bit = 1 << index
    lo = ftype.lo
    precision = ftype.precision
    steps = ftype.steps

    def get(self: Entity) -> Any:
        return lo + self.codes[index] * precision  # type: ignore[operator]  # an int code

    def set_(self: Entity, value: Any) -> None:
        x = (value - lo) / precision
        if x != x:
            raise LocalProtocolError("Float value is NaN")
        code = steps if x >= steps else round(x) if x > 0 else 0
        codes = self.codes
        if codes[index] != code:
            codes[index] = code
            if not self.mask and self._tracker is not None:
                self._tracker[self.id] = self
            self.mask |= bit

    return property(get, set_)


def _make_entity_class(etype: EntityType) -> type[Entity]:
    namespace: dict[str, Any] = {"__slots__": (), "etype": etype}
    for i, (name, ftype) in enumerate(etype.fields.items()):
        if hasattr(Entity, name) or name in namespace:
            raise LocalProtocolError(f"field name {name!r} clashes with an Entity attribute")
        namespace[name] = _make_property(i, ftype)
    cls_name = f"{etype.name.title()}Entity".replace("\x00", "")  # type() rejects NUL
    return type(cls_name, (Entity,), namespace)
