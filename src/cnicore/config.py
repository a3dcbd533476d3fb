"""Typed config (public toolkit): a plugin's config decoded with the reference's rules and texts.

A Go plugin declares its config as a struct and lets ``encoding/json`` fill
it in; runtimes and users see that decoder's behaviour and its error texts.
Here an author declares a class with annotated fields and calls :func:`decode`::

    class PtpConf:
        name: str = ""
        mtu: int = 0
        ip_masq: bool = False                 # JSON key "ipMasq"
        dns_domain: str = ""                  # JSON key "domain", see __json__
        ranges: list[Range] = []              # copied per instance
        __json__ = {"dns_domain": "domain"}

    conf = decode(request, PtpConf)           # or decode(request.config, PtpConf)

A dataclass works the same (``field(metadata={"json": "domain"})`` renames a
key) and gives ``__eq__`` and ``__repr__``, but importing ``dataclasses``
costs a cold exec ~20 ms, as much as the rest of a small plugin: the plain
class is the fast form. A plain class's field without a default gets Go's
zero value (``""``, ``0``, ``False``, ``[]``, ``{}``, an empty nested config,
``None`` for ``T | None``).

What Go does, :func:`decode` does: a key matches its field exactly or else
case-insensitively with Go's simple folding; a later key wins; unknown keys
are ignored; ``null`` keeps the default; a value of the wrong kind is a
:class:`NetConfError` (code 999) reading ``failed to load netconf: json:
cannot unmarshal string into Go struct field PtpConf.mtu of type int``. The
JSON key of a field is its name in camelCase (``ip_masq`` -> ``ipMasq``)
unless renamed. Field types: ``str``, ``bool``, ``int``, ``float``,
``list[T]``, ``dict[str, T]``, ``Any``/``object``, ``T | None`` and nested
config classes (of the same module). The keys every config has
(``types.NetConf``: ``cniVersion``, ``name``, ``type``, ``capabilities``,
``ipam``, ``dns``, ``prevResult``) are checked as Go checks them even when
the class does not declare them.

Below the class form, the Go type objects it is built from (:class:`Struct`,
:class:`Slice`, :class:`Map`, :data:`STRING`, :data:`BOOL`, :data:`INT`,
:data:`ANY`, :data:`NETCONF_FIELDS`, :data:`NET_IP` and :data:`IP_NET` for
addresses, :data:`ROUTES` for an IPAM config's ``routes``,
:func:`decode_struct`) for configs read as plain dicts — the built-in
plugins' form — :func:`lookup` (the value Go would decode into one field),
and CNI_ARGS: :func:`load_args` (Go's ``types.LoadArgs``). This module is where cnicore keeps Go's struct decoding
(formerly ``cnicore._go.json``).
"""

from __future__ import annotations

import sys

from cnicore import wire
from cnicore._go import _INTEGERS, fields, fold, lookup, mismatch_text
from cnicore.errors import ERR_INTERNAL, CNIError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterable, Mapping, TypeVar

    from cnicore._go.ip import CIDR
    from cnicore.args import ArgsError, load_args, parse_bool
    from cnicore.request import Request

    T = TypeVar("T")

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).

__all__ = [
    "ANY",
    "BOOL",
    "FLOAT",
    "INT",
    "IP_NET",
    "NETCONF_FIELDS",
    "NET_IP",
    "PREFIX",
    "ROUTES",
    "STRING",
    "ArgsError",
    "Decoder",
    "GoType",
    "Map",
    "NetConfError",
    "Scalar",
    "Slice",
    "Struct",
    "decode",
    "decode_struct",
    "fields",
    "fold",
    "load_args",
    "lookup",
    "parse_bool",
    "schema",
]

def __getattr__(name: str) -> object:
    """CNI_ARGS parsing (:mod:`cnicore.args`), loaded only by a plugin that reads CNI_ARGS."""
    if name not in ("ArgsError", "load_args", "parse_bool"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from cnicore import args

    value = getattr(args, name)
    globals()[name] = value
    return value


# -- Go's encoding/json: decoding into structs ------------------------------------------

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

    def _holds(self, d: Decoder, value: Any, kind: type, struct: str, path: tuple[str, ...]) -> bool:
        """Whether ``value`` is a ``kind`` (a JSON array or object) to decode: ``null``
        is not (Go keeps the zero value), nor is another kind (a mismatch, remembered in ``d``)."""
        if value is None:
            return False
        if not isinstance(value, kind):
            d.mismatch(value, self.name, struct, path)
            return False
        return True


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
        if not self._holds(d, value, list, struct, path):
            return None
        return [self.elem.decode(d, item, struct, path) for item in value]


class Map(GoType):
    """``map[string]T``: keys are kept as written (Go maps are case-sensitive)."""

    def __init__(self, elem: GoType) -> None:
        self.elem, self.name = elem, "map[string]" + elem.name

    def decode(self, d: Decoder, value: Any, struct: str, path: tuple[str, ...]) -> Any:
        if not self._holds(d, value, dict, struct, path):
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
        if not self._holds(d, value, dict, struct, path):
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


class _NetIP(GoType):
    """``net.IP``, a text unmarshaller: ``""`` is unset, a bad address stops decoding."""

    name = "net.IP"

    def decode(self, d: Decoder, value: Any, struct: str, path: tuple[str, ...]) -> Any:
        from cnicore._go.ip import parse_ip

        if value is None or value == "":
            return None
        if not isinstance(value, str):
            d.mismatch(value, self.name, struct, path)
            return None
        ip = parse_ip(value)
        if ip is None:
            raise NetConfError(f"invalid IP address: {value}")
        return ip


class _IPNet(GoType):
    """``types.IPNet``, a custom unmarshaller: every failure stops decoding, ``null`` too."""

    name = "types.IPNet"

    def decode(self, d: Decoder, value: Any, struct: str, path: tuple[str, ...]) -> Any:
        from cnicore._go.ip import parse_cidr

        if value is not None and not isinstance(value, str):
            raise d.fail(value, "string", struct, path)
        cidr = parse_cidr(value or "")
        if cidr is None:
            raise NetConfError(f"invalid CIDR address: {value or ''}")
        return cidr


#: ``net.IP`` decoded into an address (``ipaddress``), ``None`` when unset.
NET_IP = _NetIP()
#: ``types.IPNet`` (a CIDR, host bits kept) decoded into a :class:`cnicore.ip.CIDR`.
IP_NET = _IPNet()


class _Routes(GoType):
    """``[]*types.Route``, as the reference's IPAM plugins decode ``ipam.routes``.

    Each route has its own unmarshaller, so any problem inside one stops
    decoding (code 999) and is reported against the ``routes`` field; a
    ``null`` route is skipped and a route without ``dst`` is an error (the
    reference would print ``"dst": "<nil>"``). The 1.1.0 attributes (``mtu``,
    ``advmss``, ``priority``, ``table``, ``scope``) are kept. Decodes to a list
    of :class:`cnicore.types.Route`.
    """

    name = "[]*types.Route"
    _fields = ("dst", "gw", "mtu", "advmss", "priority", "table", "scope")

    def decode(self, d: Decoder, value: Any, struct: str, path: tuple[str, ...]) -> Any:
        from cnicore.types import Route

        if not self._holds(d, value, list, struct, path):
            return []
        routes: list[Route] = []
        for item in value:
            if item is None:
                continue
            if not isinstance(item, dict):
                raise d.fail(item, "types.route", struct, path)
            route = Route("")
            dst: CIDR | None = None
            for name, field_value in fields(item, self._fields):
                if name == "dst":
                    dst = IP_NET.decode(d, field_value, struct, path)
                elif name == "gw":  # inside the route's own unmarshaller, a wrong kind stops decoding too
                    if field_value is not None and not isinstance(field_value, str):
                        raise d.fail(field_value, "net.IP", struct, path)
                    gw = NET_IP.decode(d, field_value, struct, path)
                    route.gw = str(gw) if gw is not None else ""
                elif field_value is not None:
                    if isinstance(field_value, bool) or not isinstance(field_value, int):
                        raise d.fail(field_value, "int", struct, path)
                    setattr(route, name, field_value)
            if dst is None:
                raise NetConfError("invalid CIDR address: ")
            route.dst = str(dst)
            routes.append(route)
        return routes


#: ``ipam.routes`` (``[]*types.Route``) decoded into :class:`cnicore.types.Route` objects.
ROUTES = _Routes()


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


# -- dataclasses ---------------------------------------------------------------------------

#: The prefix Go plugins put in front of a decoding error (``failed to load netconf: ...``).
PREFIX = "failed to load netconf: "


class _Float(GoType):
    """``float64``: any JSON number."""

    name = "float64"

    def decode(self, d: Decoder, value: Any, struct: str, path: tuple[str, ...]) -> Any:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            d.mismatch(value, self.name, struct, path)
            return None
        return float(value)


FLOAT = _Float()
_SCALARS: dict[str, GoType] = {"str": STRING, "bool": BOOL, "int": INT, "float": FLOAT, "Any": ANY,
                               "object": ANY, "typing.Any": ANY}


def decode(source: Request | Mapping[str, Any], cls: type[T], *, prefix: str = PREFIX,
           netconf: bool = True) -> T:
    """An instance of config class ``cls`` from a request's config (or any decoded
    JSON object), decoded as Go's ``encoding/json`` would (see the module docstring).

    ``netconf``: also check the keys every config carries (``types.NetConf``),
    as a Go plugin embedding it does; pass False for a sub-object (an ``ipam``
    section decoded on its own). A config error is a :class:`NetConfError`
    (999) starting with ``prefix``.
    """
    obj = getattr(source, "config", source)
    values = decode_struct(obj, schema(cls, netconf=netconf), prefix)
    return _build(cls, values)


def schema(cls: type, *, netconf: bool = True) -> Struct:
    """The :class:`Struct` Go would decode into for config class ``cls`` (cached per class)."""
    key = "_cnicore_schema_netconf" if netconf else "_cnicore_schema"
    cached = cls.__dict__.get(key)
    if cached is None:
        fields_: dict[str, GoType] = dict(NETCONF_FIELDS) if netconf else {}
        for _name, annotation, json_key in _fields(cls):
            fields_[json_key] = _go_type(annotation, cls)
        cached = Struct(cls.__name__, fields_)
        setattr(cls, key, cached)
    return cached


def _is_config_class(obj: object) -> bool:
    """A dataclass, or a plain class with annotated fields."""
    return isinstance(obj, type) and (hasattr(obj, "__dataclass_fields__")
                                      or any("__annotations__" in vars(k) for k in obj.__mro__[:-1]))


def _fields(cls: type) -> list[tuple[str, Any, str]]:
    """``(attribute, annotation, JSON key)`` of each field of ``cls`` (cached per class)."""
    cached = cls.__dict__.get("_cnicore_fields")
    if cached is not None:
        return cached
    if hasattr(cls, "__dataclass_fields__"):
        dataclasses = sys.modules["dataclasses"]  # loaded already: cls is a dataclass (no import here)
        found = [(f.name, f.type, f.metadata.get("json") or _camel(f.name)) for f in dataclasses.fields(cls)
                 if f.init]
    elif _is_config_class(cls):
        annotations: dict[str, Any] = {}
        for klass in reversed(cls.__mro__[:-1]):
            annotations.update(vars(klass).get("__annotations__", {}))
        renames = getattr(cls, "__json__", {})
        found = [(name, annotation, renames.get(name) or _camel(name)) for name, annotation in annotations.items()
                 if not name.startswith("_") and "ClassVar" not in str(annotation)]
    else:
        raise TypeError(f"{cls!r} is not a config class (a dataclass or a class with annotated fields)")
    setattr(cls, "_cnicore_fields", found)
    return found


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _split(text: str, separator: str) -> list[str]:
    """The top-level parts of a type's text split at ``separator`` (outside brackets)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == separator and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


def _text(annotation: Any) -> str:
    if isinstance(annotation, str):
        return annotation.replace("typing.", "").strip()
    if isinstance(annotation, type) and not getattr(annotation, "__args__", None):
        return annotation.__name__
    return str(annotation).replace("typing.", "").strip()


def _optional(annotation: Any) -> bool:
    text = _text(annotation)
    return text.startswith("Optional[") or "None" in _split(text, "|")


def _go_type(annotation: Any, owner: type) -> GoType:
    """The Go type for a field annotation (a string under ``from __future__ import annotations``)."""
    if _is_config_class(annotation):
        return schema(annotation, netconf=False)
    text = _text(annotation)
    union = _split(text, "|")
    if len(union) > 1:
        rest = [part for part in union if part != "None"]
        if len(rest) != 1:
            raise TypeError(f"unsupported config field type {text!r} in {owner.__name__}")
        return _go_type(rest[0], owner)
    if text.startswith("Optional[") and text.endswith("]"):
        return _go_type(text[len("Optional["):-1], owner)
    if text in _SCALARS:
        return _SCALARS[text]
    for prefix in ("list[", "List[", "tuple[", "Sequence["):
        if text.startswith(prefix) and text.endswith("]"):
            return Slice(_go_type(_split(text[len(prefix):-1], ",")[0], owner))
    for prefix in ("dict[", "Dict[", "Mapping["):
        if text.startswith(prefix) and text.endswith("]"):
            key, value = _split(text[len(prefix):-1], ",")
            if key != "str":
                raise TypeError(f"config maps have str keys (in {owner.__name__})")
            return Map(_go_type(value, owner))
    if text in ("list", "List"):
        return Slice(ANY)
    if text in ("dict", "Dict"):
        return Map(ANY)
    nested = _config_class(text, owner)
    if nested is not None:
        return schema(nested, netconf=False)
    raise TypeError(f"unsupported config field type {text!r} in {owner.__name__}")


def _config_class(annotation: Any, owner: type) -> type | None:
    """The config class an annotation names (itself, or by name in the owner's module), else None."""
    if _is_config_class(annotation):
        return annotation
    text = _text(annotation)
    if text.startswith("Optional[") and text.endswith("]"):
        text = text[len("Optional["):-1]
    for part in _split(text, "|"):
        nested = getattr(sys.modules.get(owner.__module__), part, None)
        if _is_config_class(nested):
            return nested
    return None


def _elem(annotation: Any, index: int = 0) -> Any:
    args = getattr(annotation, "__args__", None)
    if args:
        return args[index]
    text = _text(annotation)
    return _split(text[text.index("[") + 1:text.rindex("]")], ",")[index]


def _build(cls: type[T], values: Mapping[str, Any]) -> T:
    """An instance of ``cls`` from decoded values (by JSON key); absent and null keep the default."""
    fields_ = _fields(cls)
    by_key = {key: (name, annotation) for name, annotation, key in fields_}
    found: dict[str, Any] = {}
    for key, value in fields(values, by_key):  # Go's key matching (a map's raw objects too)
        found[key] = value
    kwargs = {by_key[key][0]: _value(by_key[key][1], value, cls) for key, value in found.items()
              if value is not None}
    if hasattr(cls, "__dataclass_fields__"):
        return cls(**kwargs)
    obj = cls.__new__(cls)
    for name, annotation, _key in fields_:
        setattr(obj, name, kwargs[name] if name in kwargs else _default(cls, name, annotation))
    return obj


def _default(cls: type, name: str, annotation: Any) -> Any:
    """A plain class's default: the class attribute (lists, dicts and sets copied), else Go's zero value."""
    value = getattr(cls, name, _MISSING)
    if value is not _MISSING:
        return type(value)(value) if isinstance(value, (list, dict, set)) else value
    if _optional(annotation):
        return None
    go_type = _go_type(annotation, cls)
    if isinstance(go_type, Struct):
        nested = _config_class(annotation, cls)
        return _build(nested, {}) if nested is not None else None
    zero = {"string": "", "bool": False, "int": 0, "float64": 0.0}.get(go_type.name)
    if zero is not None:
        return zero
    return [] if isinstance(go_type, Slice) else {} if isinstance(go_type, Map) else None


_MISSING = object()


def _value(annotation: Any, value: Any, owner: type) -> Any:
    """Nested config classes (also in lists and maps) built from their decoded dicts."""
    go_type = _go_type(annotation, owner)
    if isinstance(go_type, Struct) and isinstance(value, dict):
        nested = _config_class(annotation, owner)
        if nested is not None:
            return _build(nested, value)
    if isinstance(go_type, Slice) and isinstance(go_type.elem, Struct) and isinstance(value, list):
        nested = _config_class(_elem(annotation), owner)
        if nested is not None:
            return [None if v is None else _build(nested, v) for v in value]
    if isinstance(go_type, Map) and isinstance(go_type.elem, Struct) and isinstance(value, dict):
        nested = _config_class(_elem(annotation, 1), owner)
        if nested is not None:
            return {k: None if v is None else _build(nested, v) for k, v in value.items()}
    return value
