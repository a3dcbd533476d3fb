"""Go's ``encoding/json``, as far as it shows in behaviour and error texts.

Two sides of it, one module:

**Decoding a plugin's config into Go structs.** The reference plugins decode
their config straight into Go structs, so, for every plugin here:

* a key matches a struct field exactly or, failing that, case-insensitively
  with Go's *simple* folding (``bytes.EqualFold``): ASCII case, plus ``ſ``
  (U+017F) for ``s`` and the Kelvin sign (U+212A) for ``k`` — never full
  Unicode case folding (``ß``, ligatures). Keys of Go *maps* (sysctl names,
  capabilities) stay case-sensitive;
* a later key overwrites an earlier one; unknown keys are ignored;
* ``null`` leaves a field at its zero value;
* a value of the wrong JSON kind is remembered (the first one) and reported
  after the whole document was decoded: ``json: cannot unmarshal <kind> into
  Go struct field <Struct>.<path> of type <type>``; a failure inside a custom
  unmarshaller stops decoding at once (:meth:`Decoder.fail`).

Types are small objects (:class:`Scalar`, :class:`Slice`, :class:`Map`,
:class:`Struct`, :data:`ANY`; a pointer field is its element type, as Go
names it in errors); :func:`decode_struct` returns the fields found, under
their canonical names, for plain ``dict`` reads. A config a plugin refuses
is a :class:`NetConfError` (code 999, as the reference reports it).

**Re-encoding as libcni does** (:func:`normalise`, :func:`marshal`). Go's
libcni decodes configs into ``map[string]interface{}`` and encodes them
again, so what a plugin receives (and what the result cache holds) has every
object's keys sorted, no whitespace, Go's HTML-safe escapes, and numbers as
float64 prints them. Producing the same bytes keeps our plugin stdin and
cache files interchangeable with the reference's.
"""

from __future__ import annotations

from cnicore import wire
from cnicore._go import _INTEGERS, fields, fold, lookup, mismatch_text  # noqa: F401 - re-exported
from cnicore.errors import ERR_INTERNAL, CNIError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterable, Mapping


class NetConfError(CNIError):
    """A plugin config the reference plugin rejects; like it, reported as 999.

    A Go plugin returns a plain ``error`` for a config it cannot use (a wrong
    kind, a value out of range, a conflict between fields), and ``skel`` turns
    every plain error into code 999 ("internal"). This is that error, for the
    plugin side. It is not :class:`cnicore.libcni.ConfigError`: that one is the
    *runtime's* refusal of a network configuration file (code 1, "invalid
    network config", with the offending file's path in front of the message),
    raised by libcni before any plugin runs. Same subject, two different
    answers on the wire, so two classes.
    """

    def __init__(self, msg: str) -> None:
        super().__init__(ERR_INTERNAL, msg)


# -- decoding into structs ---------------------------------------------------------------

kind = wire.json_kind
class Decoder:
    """The error state of one decode (see the module docstring)."""

    __slots__ = ("saved",)

    def __init__(self) -> None:
        self.saved: str | None = None

    mismatch_text = staticmethod(mismatch_text)

    def mismatch(self, value: object, go_type: str, struct: str, path: Iterable[str]) -> None:
        """A kind mismatch: remembered, decoding goes on."""
        if self.saved is None:
            self.saved = self.mismatch_text(value, go_type, struct, path)

    def fail(self, value: object, go_type: str, struct: str, path: Iterable[str]) -> NetConfError:
        """A kind mismatch inside a custom unmarshaller: stops decoding (raise the result)."""
        return NetConfError(self.mismatch_text(value, go_type, struct, path))

    def finish(self, prefix: str = "") -> None:
        """Raise the remembered mismatch, if any, once decoding is over."""
        if self.saved is not None:
            raise NetConfError(prefix + self.saved)


# -- types ---------------------------------------------------------------------------



class GoType:
    """A Go type a JSON value is decoded into; ``name`` is how Go prints it."""

    name = ""

    def decode(self, d: Decoder, value: Any, struct: str, path: tuple[str, ...]) -> Any:
        raise NotImplementedError


class Scalar(GoType):
    """``string``, ``bool`` or an integer type (range-checked like Go)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def decode(self, d: Decoder, value: Any, struct: str, path: tuple[str, ...]) -> Any:
        if value is None:
            return None
        if self.name == "string":
            ok = isinstance(value, str)
        elif self.name == "bool":
            ok = isinstance(value, bool)
        else:
            bound = _INTEGERS[self.name]
            low = 0 if self.name.startswith("u") else -bound
            ok = isinstance(value, int) and not isinstance(value, bool) and low <= value < bound
        if not ok:
            d.mismatch(value, self.name, struct, path)
            return None
        return value


class _Any(GoType):
    name = "interface {}"

    def decode(self, d: Decoder, value: Any, struct: str, path: tuple[str, ...]) -> Any:
        return value


ANY = _Any()
STRING, BOOL, INT = Scalar("string"), Scalar("bool"), Scalar("int")


class Slice(GoType):
    def __init__(self, elem: GoType) -> None:
        self.elem, self.name = elem, "[]" + elem.name

    def decode(self, d: Decoder, value: Any, struct: str, path: tuple[str, ...]) -> Any:
        if value is None:
            return None
        if not isinstance(value, list):
            d.mismatch(value, self.name, struct, path)
            return None
        return [self.elem.decode(d, item, struct, path) for item in value]


class Map(GoType):
    """``map[string]T``: keys are kept as written (Go maps are case-sensitive)."""

    def __init__(self, elem: GoType) -> None:
        self.elem, self.name = elem, "map[string]" + elem.name

    def decode(self, d: Decoder, value: Any, struct: str, path: tuple[str, ...]) -> Any:
        if value is None:
            return None
        if not isinstance(value, dict):
            d.mismatch(value, self.name, struct, path)
            return None
        for item in value.values():
            self.elem.decode(d, item, struct, path)
        return value  # the object itself: callers may rely on its type (duplicate tracking)


class Struct(GoType):
    """A struct: ``fields`` maps JSON names to types; ``go_name`` is the struct's
    own name in errors (``NetConf``), ``name`` its qualified type (``types.DNS``)."""

    def __init__(self, go_name: str, fields: Mapping[str, GoType], name: str = "") -> None:
        self.go_name, self.fields, self.name = go_name, fields, name or go_name

    def decode(self, d: Decoder, value: Any, struct: str, path: tuple[str, ...]) -> Any:
        if value is None:
            return None
        if not isinstance(value, dict):
            d.mismatch(value, self.name, struct, path)
            return None
        out: dict[str, Any] = {}
        for field, item in fields(value, self.fields):
            out[field] = self.fields[field].decode(d, item, self.go_name, path + (field,))
        return out


#: The fields every plugin's config embeds (``types.NetConf``).
NETCONF_FIELDS: dict[str, GoType] = {
    "cniVersion": STRING,
    "name": STRING,
    "type": STRING,
    "capabilities": Map(BOOL),
    "ipam": Struct("IPAM", {"type": STRING}, "types.IPAM"),
    "dns": Struct("DNS", {"nameservers": Slice(STRING), "domain": STRING, "search": Slice(STRING),
                          "options": Slice(STRING)}, "types.DNS"),
    "prevResult": Map(ANY),
}


def decode_struct(obj: Any, struct: Struct, prefix: str = "") -> dict[str, Any]:
    """Decode ``obj`` into ``struct`` as Go would: the fields found, by their
    canonical names, ``null`` and mismatched ones as ``None``. A mismatch is
    raised, after the whole object was read, as code 999 with ``prefix``."""
    d = Decoder()
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise NetConfError(prefix + f"json: cannot unmarshal {kind(obj)} into Go value of type "
                                    f"{struct.name}")
    out = struct.decode(d, obj, struct.go_name, ())
    d.finish(prefix)
    return out


# -- libcni's map round-trip ---------------------------------------------------------------

def normalise(value: Any) -> Any:
    """``value`` as a Go ``interface{}`` re-encodes it: dicts sorted by key
    (recursively), tuples as lists, and integral floats as integers (Go prints
    float64 ``1.0`` as ``1``). Anything else is returned unchanged."""
    if isinstance(value, dict):
        return {str(k): normalise(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return [normalise(v) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value)
    return value


def marshal(value: Any) -> bytes:
    """Compact bytes of an already :func:`normalise`-d value, keys in the
    order given (so a caller can keep a struct's field order where Go does)."""
    return wire.dumps_compact(value)
