"""Go's behaviour, where it shows: everything that exists only to match the reference.

The reference plugins and libcni are Go programs; runtimes, users and tests
see Go's parsing rules and Go's error texts. What we do to match them lives
here, in one place, private (nothing outside cnicore may rely on it):

* this module — Go's text conventions: ``unicode.IsSpace`` (:data:`GO_SPACE`),
  ``strings.TrimSpace`` and ``strings.Fields``, and how an OS error reads;
  and the two pieces of ``encoding/json`` every exec needs (skel, version,
  request): how a key finds its struct field (:func:`lookup`) and the
  kind-mismatch text (:func:`mismatch_text`);
* :mod:`cnicore._go.json` — ``encoding/json``: struct decoding (key folding,
  kinds, error texts), :class:`~cnicore._go.json.NetConfError`, and libcni's
  map round-trip (sorted keys, float64 numbers);
* :mod:`cnicore._go.jsonsyntax` — the syntax error ``encoding/json`` reports,
  in its words (error path only);
* :mod:`cnicore._go.ip` — ``net.ParseIP`` / ``net.ParseCIDR``;
* :mod:`cnicore._go.mac` — ``net.ParseMAC`` and ``HardwareAddr.String``.

:mod:`cnicore.wire` (JSON on the exec path, printed as Go prints it) is the
protocol's codec and stays with the spec modules. This module is imported on
every exec (:mod:`cnicore.names` checks interface names with
:data:`GO_SPACE`), so it holds only these few pieces; :mod:`cnicore._go.json`
(its struct decoder) loads only with a plugin that decodes a config.
"""

from __future__ import annotations

import os

from cnicore import wire

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterable, Iterator, Mapping

#: Go's ``unicode.IsSpace`` (``str.isspace`` without the separators U+001C..U+001F):
#: what ``strings.TrimSpace`` and ``strings.Fields`` use, and what an interface
#: name may not contain.
GO_SPACE = ("\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
            "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")


def trim_space(text: str) -> str:
    """``strings.TrimSpace``."""
    return text.strip(GO_SPACE)


def go_fields(line: str) -> list[str]:
    """``strings.Fields``: the words between runs of Go whitespace."""
    out: list[str] = []
    word: list[str] = []
    for ch in line:
        if ch in GO_SPACE:
            if word:
                out.append("".join(word))
                word = []
        else:
            word.append(ch)
    if word:
        out.append("".join(word))
    return out


def errno_text(exc: OSError) -> str:
    """Go's text for an errno: the C message with a lower-case first letter."""
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return reason[:1].lower() + reason[1:]


def go_os_error(op: str, path: str, exc: OSError) -> str:
    """Go's ``*PathError`` text, e.g. ``open /x: no such file or directory``."""
    return f"{op} {path}: {errno_text(exc)}"


# -- encoding/json: matching keys to struct fields, the kind-mismatch text ----------------

#: Go's simple folds that reach ASCII letters: case, ``ſ`` -> s, Kelvin sign -> k.
_FOLD = {**{c: c + 32 for c in range(ord("A"), ord("Z") + 1)}, 0x017F: ord("s"), 0x212A: ord("k")}
#: Go integer types and their bounds (a number beyond them, or a fraction, is quoted).
_INTEGERS = {"int": 2**63, "int64": 2**63, "uint32": 2**32, "uint16": 2**16, "uint": 2**64, "uint64": 2**64}


def fold(key: str) -> str:
    """``key`` folded the way Go matches it against an (ASCII) field name."""
    return key.translate(_FOLD)


def fields(obj: Mapping[str, Any], names: Iterable[str]) -> Iterator[tuple[str, Any]]:
    """``(field, value)`` for each key of ``obj`` that Go maps to one of ``names``,
    in document order (the caller assigns in order, so the last key wins)."""
    names = tuple(names)
    folded = {fold(name): name for name in names}
    for key, value in obj.items():
        name = key if key in names else folded.get(fold(key))
        if name is not None:
            yield name, value


def lookup(obj: dict[str, Any], name: str, default: Any = None) -> Any:
    """The value Go decodes into the field ``name`` of a struct read from ``obj``."""
    if not isinstance(obj, dict):
        return default
    value = default
    for _, value in fields(obj, (name,)):
        pass
    return value


def mismatch_text(value: object, go_type: str, struct: str, path: Iterable[str]) -> str:
    """``encoding/json``'s text for a value of the wrong kind in a struct field."""
    what = wire.json_kind(value)
    if what == "number" and go_type.lstrip("*") in _INTEGERS:
        what = f"number {value}"  # a fraction or out of range: Go quotes the number
    return f"json: cannot unmarshal {what} into Go struct field {struct}.{'.'.join(path)} of type {go_type}"
