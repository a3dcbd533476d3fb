"""JSON on the exec path: read like ``json.loads``, written exactly as Go writes it.

Runtimes compare and cache what plugins print, so our output matches the
reference byte for byte: 4-space ``MarshalIndent`` layout without a trailing
newline, UTF-8 text, and Go's HTML-safe escapes for ``<``, ``>``, ``&`` and the
line/paragraph separators U+2028/U+2029.

Every plugin exec parses and prints JSON, and the ``json`` package imports
``re`` (and with it ``enum``): ~5 ms per exec, a third of a VERSION answer.
So this module drives the C scanner and string encoder of ``_json`` directly
and does the little framing ``json`` adds (whitespace, indentation) itself.
Behaviour matches ``json.loads``/``json.dumps`` for JSON documents, with
three deliberate differences that follow Go's ``encoding/json``:

* nesting up to :data:`MAX_DEPTH` (10,000) levels parses; deeper is a
  :class:`DecodeError` (``json`` raises RecursionError from ~1,000);
* integers longer than Python's conversion limit become floats instead of
  failing (Go ignores them in fields nobody reads);
* ``\\u`` escapes of lone surrogates decode to U+FFFD, and strings holding
  surrogates (undecodable bytes) print as ``\\ufffd``: Go's text is UTF-8.

Scanner errors need care: ``_json`` (CPython 3.11) builds its error from
``sys.modules["json.decoder"].JSONDecodeError`` and, when ``json`` was never
imported — a ``python -IS`` launcher — returns NULL without an exception
(``SystemError``). On that error path only, :func:`loads` lends the scanner a
stand-in module whose ``JSONDecodeError`` is :class:`DecodeError` and scans
again, so the message is the scanner's own.
"""

from __future__ import annotations

import _json
import _thread
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

__all__ = [
    "DecodeError",
    "MAX_DEPTH",
    "dumps_compact",
    "dumps_indent",
    "dumps_text",
    "go_quote",
    "go_quote_list",
    "json_kind",
    "loads",
]

_WHITESPACE = " \t\n\r"
#: Go's ``maxNestingDepth``.
MAX_DEPTH = 10000
_INT_DIGITS_MAX = 4000  # below every interpreter's int/str conversion limit


class DecodeError(ValueError):
    """Invalid JSON; the message reads like ``json.JSONDecodeError``'s."""

    def __init__(self, msg: str, doc: str, pos: int) -> None:
        lineno = doc.count("\n", 0, pos) + 1
        colno = pos - doc.rfind("\n", 0, pos)
        super().__init__(f"{msg}: line {lineno} column {colno} (char {pos})")
        self.msg, self.doc, self.pos, self.lineno, self.colno = msg, doc, pos, lineno, colno


class _ConstantRefused(ValueError):
    """NaN or Infinity: not JSON, and Go refuses them."""


def _reject_constant(name: str) -> Any:
    raise _ConstantRefused(name)


def _constant_error(text: str, start: int, name: str) -> DecodeError:
    """Go's syntax error for the first NaN/Infinity in ``text``: everything
    before it scanned as valid JSON, so the first ``N``/``I`` outside a
    string is it."""
    pos = start
    while text[pos] not in "NI":
        pos = _string_end(text, pos) + 1 if text[pos] == '"' else pos + 1
    context = "in numeric literal" if name.startswith("-") else "looking for beginning of value"
    return DecodeError(f"invalid character {text[pos]!r} {context}", text, pos)


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
        self.parse_int = _parse_int
        self.parse_constant = {"NaN": float("nan"), "Infinity": float("inf"),
                               "-Infinity": float("-inf")}.__getitem__ if allow_constants else _reject_constant
        self.memo: dict[str, str] = {}


def _parse_int(digits: str) -> int | float:
    return int(digits) if len(digits) < _INT_DIGITS_MAX else float(digits)


def loads(text: str | bytes, *, object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None,
          allow_constants: bool = False) -> Any:
    """``json.loads`` for one JSON document. Bytes are UTF-8, and invalid
    sequences read as U+FFFD, as Go reads them (``json`` would refuse them);
    NaN and Infinity are refused unless ``allow_constants`` (they are not
    JSON, and Go refuses them). Raises :class:`DecodeError` (a ``ValueError``)."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", "replace")
    if text.startswith("\ufeff"):
        raise DecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    if "\\ud" in text or "\\uD" in text:
        text = _replace_lone_surrogate_escapes(text)
    scan = _json.make_scanner(_Context(object_pairs_hook, allow_constants))  # type: ignore[arg-type]
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        obj, end = _scan(scan, text, start)
    except StopIteration as exc:
        raise DecodeError("Expecting value", text, exc.value) from None
    except DecodeError:
        raise
    except _ConstantRefused as exc:
        raise _constant_error(text, start, str(exc)) from None
    except ValueError as exc:  # json's own JSONDecodeError (json imported), or a refused constant
        raise DecodeError(getattr(exc, "msg", str(exc)), text, getattr(exc, "pos", start)) from None
    rest = len(text) - len(text[end:].lstrip(_WHITESPACE))
    if rest != len(text):
        raise DecodeError("Extra data", text, rest)
    return obj


class _DecoderStandIn:
    """What ``_json`` looks up in ``sys.modules["json.decoder"]`` to raise an error."""

    JSONDecodeError = DecodeError


def _scan(scan: Callable[[str, int], tuple[Any, int]], text: str, start: int) -> tuple[Any, int]:
    try:
        return _scan_once(scan, text, start)
    except RecursionError:
        return _scan_deep(scan, text, start)


def _scan_once(scan: Callable[[str, int], tuple[Any, int]], text: str, start: int) -> tuple[Any, int]:
    try:
        return scan(text, start)
    except SystemError:
        if "json.decoder" in sys.modules:
            raise
        # The scanner found an error but had no exception class to raise it with.
        sys.modules["json.decoder"] = _DecoderStandIn  # type: ignore[assignment]
        try:
            return scan(text, start)
        finally:
            if sys.modules.get("json.decoder") is _DecoderStandIn:
                del sys.modules["json.decoder"]


#: C stack for a scan up to MAX_DEPTH levels (a few hundred bytes per level), with room to spare.
_DEEP_STACK = 64 << 20


_DEEP_LOCK = _thread.allocate_lock()


def _scan_deep(scan: Callable[[str, int], tuple[Any, int]], text: str, start: int) -> tuple[Any, int]:
    """Scan a document nested deeper than the interpreter's recursion limit,
    up to Go's :data:`MAX_DEPTH`; deeper is Go's syntax error.

    The scan runs in a thread of its own with a stack sized for MAX_DEPTH
    levels (the caller's thread may have a small one), under a recursion
    limit raised just enough; what it cannot reach is past MAX_DEPTH anyway.
    """
    too_deep = _depth_exceeded_at(text, start)
    box: list[Any] = []
    done = _thread.allocate_lock()
    done.acquire()

    def run() -> None:
        try:
            box.append(_scan_once(scan, text, start))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            box.append(exc)
        finally:
            done.release()

    with _DEEP_LOCK:  # the recursion limit and the new-thread stack size are process-wide
        limit = sys.getrecursionlimit()
        old_stack = _thread.stack_size(_DEEP_STACK)
        sys.setrecursionlimit(limit + MAX_DEPTH + 100)
        try:
            _thread.start_new_thread(run, ())
            done.acquire()
        finally:
            _thread.stack_size(old_stack)
            sys.setrecursionlimit(limit)
    outcome = box[0]
    if isinstance(outcome, DecodeError):
        if too_deep is None or outcome.pos < too_deep:
            raise outcome
    elif isinstance(outcome, RecursionError):
        if too_deep is None:
            raise DecodeError("nesting too deep for this interpreter", text, start) from None
    elif isinstance(outcome, BaseException):
        raise outcome
    elif too_deep is None:
        return outcome
    raise DecodeError(f"invalid character {text[too_deep]!r} exceeded max depth", text, too_deep)


def _depth_exceeded_at(text: str, pos: int) -> int | None:
    """Where nesting first exceeds :data:`MAX_DEPTH` (exact while the text
    before it is a valid JSON prefix), or ``None``."""
    depth, size = 0, len(text)
    while pos < size:
        char = text[pos]
        if char == '"':
            pos = _string_end(text, pos)
            if pos < 0:
                return None
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return pos
        elif char in "]}":
            depth -= 1
        pos += 1
    return None


def _string_end(text: str, quote: int) -> int:
    """The index of the quote closing the string opened at ``quote``, or -1."""
    pos = quote + 1
    while True:
        pos = text.find('"', pos)
        if pos < 0:
            return -1
        backslashes = 0
        while text[pos - 1 - backslashes] == "\\":
            backslashes += 1
        if backslashes % 2 == 0:
            return pos
        pos += 1


_HEX = "0123456789abcdefABCDEF"


def _escaped_unit(text: str, pos: int) -> int:
    """The UTF-16 unit of a ``\\uXXXX`` escape at ``pos``, or -1."""
    if text[pos:pos + 2] != "\\u" or len(text) < pos + 6 or any(c not in _HEX for c in text[pos + 2:pos + 6]):
        return -1
    return int(text[pos + 2:pos + 6], 16)


def _replace_lone_surrogate_escapes(text: str) -> str:
    """Rewrite ``\\uXXXX`` escapes of unpaired surrogates as ``\\ufffd``, as Go
    decodes them; the same length, so error positions stay true."""
    parts: list[str] = []
    done = pos = 0
    while True:
        pos = text.find("\\u", pos)
        if pos < 0:
            break
        backslashes = 0
        while pos - 1 - backslashes >= 0 and text[pos - 1 - backslashes] == "\\":
            backslashes += 1
        unit = _escaped_unit(text, pos) if backslashes % 2 == 0 else -1
        if not 0xD800 <= unit <= 0xDFFF:
            pos += 2
            continue
        if unit <= 0xDBFF and 0xDC00 <= _escaped_unit(text, pos + 6) <= 0xDFFF:
            pos += 12  # a valid pair
            continue
        parts.append(text[done:pos])
        parts.append("\\ufffd")
        done = pos = pos + 6
    if not parts:
        return text
    parts.append(text[done:])
    return "".join(parts)


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


def _go_utf8(text: str) -> bytes:
    """UTF-8 of printed JSON; a surrogate (an undecodable byte or a lone
    surrogate) can only sit inside a string, where Go writes ``\\ufffd``."""
    try:
        return text.encode()
    except UnicodeEncodeError:
        return "".join("\\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in text).encode()


def dumps_indent(obj: object, sort_keys: bool = False) -> bytes:
    """``json.MarshalIndent(obj, "", "    ")``."""
    return _go_utf8(_go_escape(dumps_text(obj, 4, sort_keys)))


def dumps_compact(obj: object, sort_keys: bool = False) -> bytes:
    """``json.Marshal(obj)``."""
    return _go_utf8(_go_escape(dumps_text(obj, None, sort_keys)))
