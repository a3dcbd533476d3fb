"""Go's ``encoding/gob``, the part a net/rpc call carries: pure, bytes in and bytes out.

The reference's dhcp plugin and daemon talk Go's net/rpc, whose default codec
is gob (``golang/go src/encoding/gob``: doc.go describes the format, type.go,
encode.go and decoder.go decide the details). What this module does, as they do:

* integers: unsigned ones as one byte below 128, else a negated byte count
  and the big-endian bytes; signed ones as unsigned with the sign in bit 0
  (complemented when negative); floats byte-reversed; strings and ``[]byte``
  as a count and the bytes;
* a stream is messages, each a byte count and then either ``-id`` and a type
  descriptor (a ``wireType`` value) or ``id`` and a value; user type ids start
  at 65 and are numbered as Go numbers them (a struct before its fields, a
  slice, array or map after its elements); a descriptor is sent once per
  stream, before the first value that needs it, outer type first;
* structs are (field-number delta, value) pairs ended by a 0; a field whose
  value is zero is left out, except arrays and nested structs (a nil pointer
  to one, ``None`` here, is left out); fields match by *name* on the
  receiving side, so the receiver may know more or fewer of them;
* pointers are flattened (a ``*int`` is an int on the wire); a top-level
  value that is not a struct is sent as a one-field struct ("singleton");
* types with ``GobEncode`` or else ``MarshalBinary`` are sent as their
  method's bytes under a ``GobEncoderT``/``BinaryMarshalerT`` descriptor.
  ``MarshalText`` is *not* used, although the wire has a ``TextMarshalerT``:
  type.go leaves it commented out so that net.IP keeps its old encoding
  (golang.org/issue/6760), so a net.IP, which has only MarshalText, goes as
  the plain ``[]byte`` it is (4 or 16 bytes), as Debian's 1.1.1 sends it.

Python side: a struct value is a dict of field name to value (absent or
``None`` fields are zero); decoded structs hold only the fields the sender
sent (absent means zero, as in Go). Slices and arrays are lists, maps dicts,
marshaled types bytes. Interface values, which net/rpc's calls here never
carry, are not supported (a nil one decodes as ``None``).
"""

from __future__ import annotations

import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

#: Go's sanity bound on any count or message length (decoder.go's tooBig).
TOO_BIG = 1 << 30
#: The first id Go grants a user type (firstUserId is 64; the first built gets 65).
FIRST_USER_ID = 65


class GobError(ValueError):
    """Bytes that are not a gob stream, or a value that does not fit its type."""


# -- types ------------------------------------------------------------------------------


class GoType:
    """A Go type as gob sees it; ``name`` is what the descriptor says (informational:
    receivers match fields by name, never types by name)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


class Basic(GoType):
    """A predefined type: its id is fixed and never described on the wire."""

    __slots__ = ("id",)

    def __init__(self, name: str, type_id: int) -> None:
        super().__init__(name)
        self.id = type_id

    def __repr__(self) -> str:
        return self.name.upper()


BOOL, INT, UINT, FLOAT = Basic("bool", 1), Basic("int", 2), Basic("uint", 3), Basic("float", 4)
BYTES, STRING, COMPLEX, INTERFACE = Basic("bytes", 5), Basic("string", 6), Basic("complex", 7), Basic("interface", 8)
BASICS = {t.id: t for t in (BOOL, INT, UINT, FLOAT, BYTES, STRING, COMPLEX, INTERFACE)}


class Slice(GoType):
    __slots__ = ("elem",)

    def __init__(self, elem: GoType, name: str = "") -> None:
        super().__init__(name or f"[]{elem.name}")
        self.elem = elem


class Array(GoType):
    __slots__ = ("elem", "length")

    def __init__(self, elem: GoType, length: int, name: str = "") -> None:
        super().__init__(name or f"[{length}]{elem.name}")
        self.elem, self.length = elem, length


class Map(GoType):
    __slots__ = ("key", "elem")

    def __init__(self, key: GoType, elem: GoType, name: str = "") -> None:
        super().__init__(name or f"map[{key.name}]{elem.name}")
        self.key, self.elem = key, elem


class Struct(GoType):
    """Fields in declaration order: the order decides their numbers on the wire."""

    __slots__ = ("fields",)

    def __init__(self, name: str, fields: tuple[tuple[str, GoType], ...]) -> None:
        super().__init__(name)
        self.fields = fields


#: The wireType field that announces each kind of marshaled type (wireType's fields 4, 5, 6).
GOB_ENCODER, BINARY_MARSHALER, TEXT_MARSHALER = 4, 5, 6


class Marshaled(GoType):
    """A type sent as the bytes of its own method (``kind``: GOB_ENCODER or
    BINARY_MARSHALER; TEXT_MARSHALER is decoded, Go never sends it); its value here
    is those bytes."""

    __slots__ = ("kind",)

    def __init__(self, name: str, kind: int = GOB_ENCODER) -> None:
        super().__init__(name)
        self.kind = kind


# -- integers -----------------------------------------------------------------------------


def put_uint(out: bytearray, value: int) -> None:
    if not 0 <= value < 1 << 64:
        raise GobError(f"gob: unsigned integer out of range: {value}")
    if value < 0x80:
        out.append(value)
        return
    data = value.to_bytes((value.bit_length() + 7) // 8, "big")
    out.append(256 - len(data))
    out += data


def put_int(out: bytearray, value: int) -> None:
    if not -(1 << 63) <= value < 1 << 63:
        raise GobError(f"gob: integer out of range: {value}")
    put_uint(out, (~value << 1) | 1 if value < 0 else value << 1)


def _float_bits(value: float) -> int:
    return int.from_bytes(struct.pack(">d", value), "little")  # Float64bits, byte-reversed


def _bits_float(bits: int) -> float:
    return float(struct.unpack(">d", bits.to_bytes(8, "little"))[0])


def read_message(read: Callable[[int], bytes]) -> bytes:
    """One count-delimited message from a stream; ``read(n)`` returns exactly ``n``
    bytes or fewer at the end of the stream (then: EOFError, as Go's io.EOF when
    nothing was read, else unexpected EOF)."""
    first = read(1)
    if not first:
        raise EOFError("EOF")
    length = first[0]
    if length >= 0x80:
        size = 256 - length
        if size > 8:
            raise GobError("gob: encoded unsigned integer out of range")
        data = read(size)
        if len(data) != size:
            raise EOFError("unexpected EOF")
        length = int.from_bytes(data, "big")
    if length >= TOO_BIG:
        raise GobError("invalid message length")
    message = read(length)
    if len(message) != length:
        raise EOFError("unexpected EOF")
    return message


def frame(message: bytes | bytearray) -> bytes:
    """A message with its byte count in front, as Encoder.writeMessage sends it."""
    out = bytearray()
    put_uint(out, len(message))
    return bytes(out + message)


# -- encoding -------------------------------------------------------------------------------


class Encoder:
    """One side of a stream: remembers which types it described (a new stream, a new
    Encoder, as Go's net/rpc makes one per connection)."""

    def __init__(self, first_id: int = FIRST_USER_ID) -> None:
        self.ids: dict[GoType, int] = {}
        self.sent: set[GoType] = set()
        self.next_id = first_id

    def encode(self, value: Any, gotype: GoType) -> bytes:
        """The messages for one value: its types' descriptors not sent yet, then it.
        A value that does not fit leaves the stream's state as it was."""
        saved = self.snapshot()
        try:
            return self._encode(value, gotype)
        except (GobError, TypeError, ValueError, KeyError, AttributeError) as exc:
            self.restore(saved)
            raise exc if isinstance(exc, GobError) else GobError(f"gob: cannot encode: {exc}") from None

    def snapshot(self) -> tuple[dict[GoType, int], set[GoType], int]:
        """The stream's state, to :meth:`restore` when encoded bytes are thrown away."""
        return dict(self.ids), set(self.sent), self.next_id

    def restore(self, state: tuple[dict[GoType, int], set[GoType], int]) -> None:
        self.ids, self.sent, self.next_id = dict(state[0]), set(state[1]), state[2]

    def _encode(self, value: Any, gotype: GoType) -> bytes:
        out = bytearray()
        self._assign(gotype)
        self._describe(gotype, out)
        message = bytearray()
        put_int(message, self._id(gotype))
        if isinstance(gotype, Struct):
            self._struct(message, gotype, value)
        else:  # a singleton: field delta 0, then the value even if it is zero
            message.append(0)
            self._value(message, gotype, value)
        return bytes(out + frame(message))

    def _id(self, gotype: GoType) -> int:
        return gotype.id if isinstance(gotype, Basic) else self.ids[gotype]

    def _assign(self, gotype: GoType) -> None:
        """Number the types as Go's type.go builds them: a struct and a marshaled type
        get their id before their fields, slices, arrays and maps after their elements."""
        if isinstance(gotype, Basic) or gotype in self.ids:
            return
        if isinstance(gotype, (Struct, Marshaled)):
            self.ids[gotype] = self.next_id
            self.next_id += 1
            for _name, field in gotype.fields if isinstance(gotype, Struct) else ():
                self._assign(field)
            return
        inner: tuple[GoType, ...] = ((gotype.key, gotype.elem) if isinstance(gotype, Map) else
                                     (gotype.elem,) if isinstance(gotype, (Slice, Array)) else ())
        for element in inner:
            self._assign(element)
        if gotype not in self.ids:  # a recursive element may have numbered it already
            self.ids[gotype] = self.next_id
            self.next_id += 1

    def _describe(self, gotype: GoType, out: bytearray) -> None:
        """Send a type's descriptor, then its inner types' (encoder.go's sendType order)."""
        if isinstance(gotype, Basic) or gotype in self.sent:
            return
        self.sent.add(gotype)
        message = bytearray()
        put_int(message, -self.ids[gotype])
        self._wire_type(message, gotype)
        out += frame(message)
        if isinstance(gotype, Struct):
            for _name, field in gotype.fields:
                self._describe(field, out)
        elif isinstance(gotype, Map):
            self._describe(gotype.key, out)
            self._describe(gotype.elem, out)
        elif isinstance(gotype, (Slice, Array)):
            self._describe(gotype.elem, out)

    def _common(self, out: bytearray, gotype: GoType) -> None:
        """CommonType{Name, Id}: the first field of every descriptor, a nested struct."""
        out.append(1)  # field 0: CommonType
        if gotype.name:
            out.append(1)
            self._string(out, gotype.name)
            out.append(1)
        else:
            out.append(2)
        put_int(out, self.ids[gotype])
        out.append(0)

    def _wire_type(self, out: bytearray, gotype: GoType) -> None:
        """A wireType value: exactly one of its fields set, the kind's descriptor."""
        if isinstance(gotype, Array):
            out.append(1)  # field 0: ArrayT
            self._common(out, gotype)
            out.append(1)
            put_int(out, self._id(gotype.elem))
            out.append(1)
            put_int(out, gotype.length)
            out.append(0)
        elif isinstance(gotype, Slice):
            out.append(2)  # field 1: SliceT
            self._common(out, gotype)
            out.append(1)
            put_int(out, self._id(gotype.elem))
            out.append(0)
        elif isinstance(gotype, Struct):
            out.append(3)  # field 2: StructT
            self._common(out, gotype)
            if gotype.fields:
                out.append(1)  # Field []*fieldType
                put_uint(out, len(gotype.fields))
                for name, field in gotype.fields:
                    out.append(1)
                    self._string(out, name)
                    out.append(1)
                    put_int(out, self._id(field))
                    out.append(0)
            out.append(0)
        elif isinstance(gotype, Map):
            out.append(4)  # field 3: MapT
            self._common(out, gotype)
            out.append(1)
            put_int(out, self._id(gotype.key))
            out.append(1)
            put_int(out, self._id(gotype.elem))
            out.append(0)
        elif isinstance(gotype, Marshaled):
            out.append(gotype.kind + 1)  # field 4, 5 or 6: from -1
            self._common(out, gotype)
            out.append(0)
        else:
            raise GobError(f"gob: cannot describe {gotype!r}")
        out.append(0)

    @staticmethod
    def _string(out: bytearray, text: str) -> None:
        data = text.encode("utf-8", "surrogateescape")
        put_uint(out, len(data))
        out += data

    @staticmethod
    def is_zero(gotype: GoType, value: Any) -> bool:
        """What a struct leaves out: zero values, except arrays and (non-nil) structs."""
        if value is None:
            return True
        if isinstance(gotype, (Array, Struct)):
            return False
        if isinstance(gotype, Map):
            return False  # Go leaves out only nil maps; an empty one is sent
        if gotype is INTERFACE:
            return value is None
        return not value

    def _struct(self, out: bytearray, gotype: Struct, value: Any) -> None:
        if not isinstance(value, dict):
            raise GobError(f"gob: {gotype.name or 'struct'} value must be a dict, not {type(value).__name__}")
        unknown = set(value) - {name for name, _ in gotype.fields}
        if unknown:
            raise GobError(f"gob: {gotype.name or 'struct'} has no field {sorted(unknown)[0]}")
        last = -1
        for number, (name, field) in enumerate(gotype.fields):
            item = value.get(name)
            if self.is_zero(field, item):
                continue
            put_uint(out, number - last)
            last = number
            self._value(out, field, item)
        out.append(0)

    def _value(self, out: bytearray, gotype: GoType, value: Any) -> None:
        if isinstance(gotype, Basic):
            self._basic(out, gotype, value)
        elif isinstance(gotype, Struct):
            self._struct(out, gotype, value if value is not None else {})
        elif isinstance(gotype, (Slice, Array)):
            items = list(value or ())
            if isinstance(gotype, Array) and len(items) != gotype.length:
                raise GobError(f"gob: array {gotype.name} needs {gotype.length} elements, got {len(items)}")
            put_uint(out, len(items))
            for item in items:
                if item is None and isinstance(gotype.elem, Struct):
                    raise GobError("gob: encodeArray: nil element")
                self._value(out, gotype.elem, item)
        elif isinstance(gotype, Map):
            pairs = dict(value or {})
            put_uint(out, len(pairs))
            for key, item in pairs.items():
                self._value(out, gotype.key, key)
                self._value(out, gotype.elem, item)
        elif isinstance(gotype, Marshaled):
            data = bytes(value or b"")
            put_uint(out, len(data))
            out += data
        else:
            raise GobError(f"gob: cannot encode {gotype!r}")

    def _basic(self, out: bytearray, gotype: Basic, value: Any) -> None:
        if gotype is BOOL:
            put_uint(out, 1 if value else 0)
        elif gotype is INT:
            put_int(out, _integer(value))
        elif gotype is UINT:
            put_uint(out, _integer(value))
        elif gotype is FLOAT:
            put_uint(out, _float_bits(float(value)))
        elif gotype is COMPLEX:
            put_uint(out, _float_bits(complex(value).real))
            put_uint(out, _float_bits(complex(value).imag))
        elif gotype is STRING:
            if not isinstance(value, str):
                raise GobError(f"gob: string value expected, got {type(value).__name__}")
            self._string(out, value)
        elif gotype is BYTES:
            if not isinstance(value, (bytes, bytearray)):
                raise GobError(f"gob: []byte value expected, got {type(value).__name__}")
            put_uint(out, len(value))
            out += value
        elif value is None:  # a nil interface: an empty type name
            out.append(0)
        else:
            raise GobError("gob: interface values are not supported")


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise GobError(f"gob: integer value expected, got {type(value).__name__}")
    return value


# -- decoding -------------------------------------------------------------------------------

#: A received descriptor: (kind, name, inner ids...) with kind "struct" (fields: ((name, id), ...)),
#: "slice" (elem), "array" (elem, length), "map" (key, elem) or "marshaled" (which method).
Wire = tuple  # (kind, name, ...)


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def read_uint(self) -> int:
        if self.pos >= len(self.data):
            raise GobError("gob: unexpected end of message")
        first = self.data[self.pos]
        self.pos += 1
        if first < 0x80:
            return first
        size = 256 - first
        if size > 8 or self.pos + size > len(self.data):
            raise GobError("gob: encoded unsigned integer out of range")
        value = int.from_bytes(self.data[self.pos:self.pos + size], "big")
        self.pos += size
        return value

    def read_int(self) -> int:
        value = self.read_uint()
        return ~(value >> 1) if value & 1 else value >> 1

    def count(self) -> int:
        n = self.read_uint()  # every element takes at least a byte
        if n >= TOO_BIG or n > len(self.data) - self.pos:
            raise GobError(f"gob: count {n} out of range")
        return n

    def read_bytes(self) -> bytes:
        n = self.read_uint()
        if n > len(self.data) - self.pos:
            raise GobError("gob: bytes count out of range")
        value = self.data[self.pos:self.pos + n]
        self.pos += n
        return value

    def read_string(self) -> str:
        return self.read_bytes().decode("utf-8", "surrogateescape")

    def done(self) -> bool:
        return self.pos >= len(self.data)


class Decoder:
    """The other side of a stream: keeps the descriptors received so far."""

    def __init__(self) -> None:
        self.wire: dict[int, Wire] = {}
        self.types: dict[int, GoType] = {}

    def decode(self, message: bytes) -> tuple[int, Any] | None:
        """One message (without its count): ``None`` for a type descriptor (remembered),
        else ``(type id, value)``."""
        reader = _Reader(message)
        type_id = reader.read_int()
        if type_id < 0:
            type_id = -type_id
            if type_id < 64 or type_id in self.wire:
                raise GobError("gob: duplicate type received")
            self.wire[type_id] = self._wire_type(reader)
            if not reader.done():
                raise GobError("extra data in buffer")
            return None
        if type_id not in self.wire and type_id not in BASICS:
            raise GobError(f"gob: unknown type id {type_id}")
        if type_id in self.wire and self.wire[type_id][0] == "struct":
            value = self._struct(reader, type_id)
        else:
            if reader.read_uint() != 0:
                raise GobError("gob: singleton value not framed as field 0")
            value = self._value(reader, type_id)
        return type_id, value

    def read(self, read: Callable[[int], bytes]) -> tuple[int, Any]:
        """The next value of a stream (after the descriptors in front of it)."""
        while True:
            decoded = self.decode(read_message(read))
            if decoded is not None:
                return decoded

    def go_type(self, type_id: int) -> GoType:
        """The type a peer described, as this module's types (one object per id): encoding
        the decoded values with them gives the peer's bytes back (the tests check Go's)."""
        built = self.types
        if type_id in BASICS:
            return BASICS[type_id]
        if type_id in built:
            return built[type_id]
        wire = self.wire.get(type_id)
        if wire is None:
            raise GobError(f"gob: unknown type id {type_id}")
        kind, name = wire[0], wire[1]
        gotype: GoType
        if kind == "struct":
            gotype = built[type_id] = Struct(name, ())
            gotype.fields = tuple((field, self.go_type(fid)) for field, fid in wire[2])
        elif kind == "slice":
            gotype = Slice(self.go_type(wire[2]), name)
        elif kind == "array":
            gotype = Array(self.go_type(wire[2]), wire[3], name)
        elif kind == "map":
            gotype = Map(self.go_type(wire[2]), self.go_type(wire[3]), name)
        else:
            gotype = Marshaled(name, wire[2])
        built[type_id] = gotype
        return gotype

    def _wire_type(self, reader: _Reader) -> Wire:
        """wireType: exactly one field, each a struct starting with CommonType{Name, Id}."""
        kind = reader.read_uint() - 1
        values = self._descriptor(reader, kind)
        if reader.read_uint() != 0:
            raise GobError("gob: type descriptor with more than one kind")
        name = values.get(0, ("", 0))[0]
        if kind == 0:
            return ("array", name, values.get(1, 0), values.get(2, 0))
        if kind == 1:
            return ("slice", name, values.get(1, 0))
        if kind == 2:
            return ("struct", name, tuple(values.get(1, ())))
        if kind == 3:
            return ("map", name, values.get(1, 0), values.get(2, 0))
        return ("marshaled", name, kind)

    def _descriptor(self, reader: _Reader, kind: int) -> dict[int, Any]:
        """arrayType, sliceType, structType, mapType or gobEncoderType, by field number."""
        if not 0 <= kind <= 6:
            raise GobError(f"gob: unknown type descriptor field {kind}")
        values: dict[int, Any] = {}
        number = -1
        while delta := reader.read_uint():
            number += delta
            if number == 0:
                values[0] = self._common(reader)
            elif kind == 2 and number == 1:
                fields = []
                for _ in range(reader.count()):
                    field = self._plain_struct(reader)
                    fields.append((field.get(0, ""), field.get(1, 0)))
                values[1] = fields
            elif number in (1, 2) and kind in (0, 1, 3):
                values[number] = reader.read_int()
            else:
                raise GobError(f"gob: unexpected field {number} in a type descriptor")
        return values

    def _common(self, reader: _Reader) -> tuple[str, int]:
        common = self._plain_struct(reader)
        return common.get(0, ""), common.get(1, 0)

    @staticmethod
    def _plain_struct(reader: _Reader) -> dict[int, Any]:
        """CommonType or fieldType: field 0 a string, field 1 an int."""
        values: dict[int, Any] = {}
        number = -1
        while delta := reader.read_uint():
            number += delta
            if number == 0:
                values[0] = reader.read_string()
            elif number == 1:
                values[1] = reader.read_int()
            else:
                raise GobError(f"gob: unexpected field {number} in a type descriptor")
        return values

    def _struct(self, reader: _Reader, type_id: int) -> dict[str, Any]:
        _kind, name, fields = self.wire[type_id]
        value: dict[str, Any] = {}
        number = -1
        while delta := reader.read_uint():
            number += delta
            if not 0 <= number < len(fields):
                raise GobError(f"gob: field number {number} out of range in {name or 'struct'}")
            field_name, field_id = fields[number]
            value[field_name] = self._value(reader, field_id)
        return value

    def _value(self, reader: _Reader, type_id: int) -> Any:
        if type_id in BASICS:
            return self._basic(reader, BASICS[type_id])
        wire = self.wire.get(type_id)
        if wire is None:
            raise GobError(f"gob: unknown type id {type_id}")
        kind = wire[0]
        if kind == "struct":
            return self._struct(reader, type_id)
        if kind in ("slice", "array"):
            count = reader.count()
            if kind == "array" and count != wire[3]:
                raise GobError(f"gob: array {wire[1]} of {count} elements, not {wire[3]}")
            return [self._value(reader, wire[2]) for _ in range(count)]
        if kind == "map":
            items = {}
            for _ in range(reader.count()):
                key = self._value(reader, wire[2])
                items[_hashable(key)] = self._value(reader, wire[3])
            return items
        return reader.read_bytes()  # marshaled: the method's bytes

    @staticmethod
    def _basic(reader: _Reader, gotype: Basic) -> Any:
        if gotype is BOOL:
            flag = reader.read_uint()
            if flag > 1:
                raise GobError(f"gob: invalid bool {flag}")
            return flag == 1
        if gotype is INT:
            return reader.read_int()
        if gotype is UINT:
            return reader.read_uint()
        if gotype is FLOAT:
            return _bits_float(reader.read_uint())
        if gotype is COMPLEX:
            return complex(_bits_float(reader.read_uint()), _bits_float(reader.read_uint()))
        if gotype is BYTES:
            return reader.read_bytes()
        if gotype is STRING:
            return reader.read_string()
        if reader.read_bytes():  # an interface's concrete type name
            raise GobError("gob: interface values are not supported")
        return None


def _hashable(key: Any) -> Any:
    if isinstance(key, list):
        return tuple(_hashable(k) for k in key)
    if isinstance(key, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in key.items()))
    return key
