"""JSON on the exec path: read like ``json.loads``, written exactly as Go writes it.

Runtimes compare and cache what plugins print, so our output matches the
reference byte for byte: 4-space ``MarshalIndent`` layout without a trailing
newline, UTF-8 text, and Go's HTML-safe escapes for ``<``, ``>``, ``&`` and the
line/paragraph separators U+2028/U+2029.

Every plugin exec parses and prints JSON, and the ``json`` package imports
``re`` (and with it ``enum``): ~5 ms per exec, a third of a VERSION answer.
So this module drives the C scanner and string encoder of ``_json`` directly
and does the little framing ``json`` adds (whitespace, indentation) itself.
Behaviour matches ``json.loads``/``json.dumps`` for JSON documents.
"""

from __future__ import annotations

import _json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

_WHITESPACE = " \t\n\r"


class DecodeError(ValueError):
    """Invalid JSON; the message reads like ``json.JSONDecodeError``'s."""

    def __init__(self, msg: str, doc: str, pos: int) -> None:
        lineno = doc.count("\n", 0, pos) + 1
        colno = pos - doc.rfind("\n", 0, pos)
        super().__init__(f"{msg}: line {lineno} column {colno} (char {pos})")
        self.msg, self.doc, self.pos, self.lineno, self.colno = msg, doc, pos, lineno, colno


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid character {name[0]!r} looking for beginning of value")


class _Context:
    """The attributes ``_json.make_scanner`` reads from a decoder."""

    __slots__ = ("strict", "object_hook", "object_pairs_hook", "parse_float", "parse_int",
                 "parse_constant", "memo")

    def __init__(self, object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None,
                 allow_constants: bool) -> None:
        self.strict = True
        self.object_hook = None
        self.object_pairs_hook = object_pairs_hook
        self.parse_float = float
        self.parse_int = int
        self.parse_constant = {"NaN": float("nan"), "Infinity": float("inf"),
                               "-Infinity": float("-inf")}.__getitem__ if allow_constants else _reject_constant
        self.memo: dict[str, str] = {}


def loads(text: str | bytes, *, object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None,
          allow_constants: bool = False) -> Any:
    """``json.loads`` for one JSON document. Bytes must be UTF-8; NaN and
    Infinity are refused unless ``allow_constants`` (they are not JSON, and Go
    refuses them). Raises :class:`DecodeError` (a ``ValueError``)."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8")
    if text.startswith("\ufeff"):
        raise DecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    scan = _json.make_scanner(_Context(object_pairs_hook, allow_constants))  # type: ignore[arg-type]
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        obj, end = scan(text, start)
    except StopIteration as exc:
        raise DecodeError("Expecting value", text, exc.value) from None
    except ValueError as exc:  # the C scanner's own JSONDecodeError, or a refused constant
        raise DecodeError(getattr(exc, "msg", str(exc)), text, getattr(exc, "pos", start)) from None
    rest = len(text) - len(text[end:].lstrip(_WHITESPACE))
    if rest != len(text):
        raise DecodeError("Extra data", text, rest)
    return obj


def _encode(obj: Any, indent: str | None, level: int, sort_keys: bool, out: list[str]) -> None:
    if isinstance(obj, str):
        out.append(_json.encode_basestring(obj))
    elif obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif isinstance(obj, int):
        out.append(int.__repr__(obj))
    elif isinstance(obj, float):
        if obj != obj or obj in (float("inf"), float("-inf")):
            raise ValueError(f"Out of range float values are not JSON compliant: {obj!r}")
        out.append(float.__repr__(obj))
    elif isinstance(obj, dict):
        if not obj:
            out.append("{}")
            return
        items = sorted(obj.items()) if sort_keys else obj.items()
        inner = "" if indent is None else "\n" + indent * (level + 1)
        out.append("{")
        for index, (key, value) in enumerate(items):
            if not isinstance(key, str):
                raise TypeError(f"keys must be str, not {type(key).__name__}")
            out.append(("," if index else "") + inner + _json.encode_basestring(key)
                       + (":" if indent is None else ": "))
            _encode(value, indent, level + 1, sort_keys, out)
        out.append(("" if indent is None else "\n" + indent * level) + "}")
    elif isinstance(obj, (list, tuple)):
        if not obj:
            out.append("[]")
            return
        inner = "" if indent is None else "\n" + indent * (level + 1)
        out.append("[")
        for index, value in enumerate(obj):
            out.append(("," if index else "") + inner)
            _encode(value, indent, level + 1, sort_keys, out)
        out.append(("" if indent is None else "\n" + indent * level) + "]")
    else:
        raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def dumps_text(obj: Any, indent: int | None = None, sort_keys: bool = False) -> str:
    """``json.dumps(obj, ensure_ascii=False)`` with ``indent`` spaces (compact
    ``,``/``:`` separators when ``None``) — Python's escaping, not Go's."""
    out: list[str] = []
    _encode(obj, None if indent is None else " " * indent, 0, sort_keys, out)
    return "".join(out)

_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
               "\u2028": "\\u2028", "\u2029": "\\u2029"}


def _go_escape(text: str) -> str:
    # These characters can only occur inside JSON strings, so a global
    # replacement is safe.
    for raw, escaped in _GO_ESCAPES.items():
        if raw in text:
            text = text.replace(raw, escaped)
    return text


_QUOTE_ESCAPES = {'"': '\\"', "\\": "\\\\", "\a": "\\a", "\b": "\\b", "\f": "\\f",
                  "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def go_quote(text: str | bytes) -> str:
    """Go's ``strconv.Quote`` (the ``%q`` verb): printable runes kept, others escaped.

    Bytes (a plugin's raw output) are quoted as Go quotes a string holding
    them: each invalid UTF-8 byte becomes ``\\xNN``.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", "surrogateescape")
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in _QUOTE_ESCAPES:
            out.append(_QUOTE_ESCAPES[ch])
        elif 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, kept by surrogateescape
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch.isprintable():
            out.append(ch)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif 0xD800 <= code <= 0xDFFF:  # not a valid rune: Go prints U+FFFD
            out.append("\\ufffd")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def json_kind(value: object) -> str:
    """The JSON kind Go names in "cannot unmarshal <kind> into ..."."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else "null"


def go_quote_list(items: list[str] | tuple[str, ...]) -> str:
    """Go's ``%q`` of a ``[]string``: ``["a" "b"]``."""
    return "[" + " ".join(go_quote(item) for item in items) + "]"


def dumps_indent(obj: object, sort_keys: bool = False) -> bytes:
    """``json.MarshalIndent(obj, "", "    ")``."""
    return _go_escape(dumps_text(obj, 4, sort_keys)).encode()


def dumps_compact(obj: object, sort_keys: bool = False) -> bytes:
    """``json.Marshal(obj)``."""
    return _go_escape(dumps_text(obj, None, sort_keys)).encode()
