"""JSON bytes exactly as Go's ``encoding/json`` writes them.

Runtimes compare and cache what plugins print, so our output matches the
reference byte for byte: 4-space ``MarshalIndent`` layout without a trailing
newline, UTF-8 text, and Go's HTML-safe escapes for ``<``, ``>``, ``&`` and the
line/paragraph separators U+2028/U+2029.
"""

from __future__ import annotations

import json

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


def go_quote_list(items: list[str] | tuple[str, ...]) -> str:
    """Go's ``%q`` of a ``[]string``: ``["a" "b"]``."""
    return "[" + " ".join(go_quote(item) for item in items) + "]"


def dumps_indent(obj: object, sort_keys: bool = False) -> bytes:
    """``json.MarshalIndent(obj, "", "    ")``."""
    return _go_escape(json.dumps(obj, indent=4, ensure_ascii=False, sort_keys=sort_keys)).encode()


def dumps_compact(obj: object, sort_keys: bool = False) -> bytes:
    """``json.Marshal(obj)``."""
    return _go_escape(json.dumps(obj, separators=(",", ":"), ensure_ascii=False,
                                 sort_keys=sort_keys)).encode()
