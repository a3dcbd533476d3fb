"""wire.loads in a launcher's environment (a fresh ``python -IS`` process that
never imports ``json``) behaves exactly like ``json.loads`` on valid and
invalid documents, except where Go's reader differs on purpose (depth, huge
integers, lone surrogates): those are asserted against Go's behaviour."""

from __future__ import annotations

import json
import marshal
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cnicore

CHILD = os.path.join(os.path.dirname(__file__), "helpers", "wire_child.py")
SRC = os.path.dirname(os.path.dirname(cnicore.__file__))


def loads_in_launcher_env(docs: list[str]) -> list[tuple]:
    """Each document's outcome from one fresh ``python -IS`` process."""
    proc = subprocess.run([sys.executable, "-I", "-S", CHILD, SRC], input=marshal.dumps(docs),
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    out = marshal.loads(proc.stdout)
    assert out[-1] == ("imported", []), "reading JSON imported json or re"
    return out[:-1]


def _go_text(value: object) -> object:
    """json.loads' value with lone surrogates as U+FFFD, as Go decodes them."""
    if isinstance(value, str):
        return "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in value)
    if isinstance(value, list):
        return [_go_text(item) for item in value]
    if isinstance(value, dict):
        return {_go_text(key): _go_text(item) for key, item in value.items()}
    return value


def expected(doc: str) -> tuple:
    try:
        return ("ok", _go_text(json.loads(doc)))
    except ValueError as exc:
        return ("err", "DecodeError", str(exc))


def _char(message: str) -> int:
    return int(message.rsplit("(char ", 1)[1].rstrip(")"))


def _same(doc: str, ours: tuple, theirs: tuple) -> bool:
    if ours[0] == "err" and ("NaN" in doc or "Infinity" in doc):
        # json accepts NaN/Infinity; Go and we refuse the first one, unless
        # the text is invalid before it.
        pos = _char(ours[2])
        go_wording = ("looking for beginning of value" in ours[2] and doc[pos] in "NI"
                      or "'I' in numeric literal" in ours[2] and doc[pos - 1:pos + 1] == "-I")
        if go_wording and (theirs[0] == "ok" or _char(theirs[2]) > pos):
            return True
    if ours[0] == "ok" and theirs[0] == "ok":
        return repr(ours[1]) == repr(theirs[1])  # repr: 0.0 vs -0.0, 1 vs 1.0
    return ours == theirs


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec="utf-8") | st.sampled_from('"\\/\b\f\n\r\t\x00\x1f\u2028<>&')),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12)


@st.composite
def valid_documents(draw: st.DrawFn) -> str:
    value = draw(json_values)
    indent = draw(st.sampled_from([None, 0, 2, "\t"]))
    doc = json.dumps(value, indent=indent, ensure_ascii=draw(st.booleans()))
    pad = st.text(" \t\r\n", max_size=3)
    return draw(pad) + doc + draw(pad)


@st.composite
def invalid_documents(draw: st.DrawFn) -> str:
    """A valid document broken in one place: truncated, a character deleted,
    inserted or replaced (with JSON's own punctuation and escapes)."""
    doc = draw(valid_documents())
    pos = draw(st.integers(0, len(doc)))
    junk = draw(st.sampled_from(list('{}[],:"\\ \x00\x1fx0-.eE+') + ["\\u", "\\ud800", "\\udc00", "\\x",
                                                                    "tru", "nul", "NaN", "1e", "-", "01"]))
    how = draw(st.sampled_from(["truncate", "delete", "insert", "replace"]))
    if how == "truncate":
        return doc[:pos]
    if how == "delete":
        return doc[:pos] + doc[pos + 1:]
    if how == "insert":
        return doc[:pos] + junk + doc[pos:]
    return doc[:pos] + junk + doc[pos + len(junk):]


escapes = st.lists(st.sampled_from(["\\ud800", "\\udbff", "\\udc00", "\\udfff", "\\ud83d\\ude00", "\\\\ud800",
                                    "a", "\\n", "\\u0041"]), max_size=6).map(lambda parts: '"' + "".join(parts) + '"')

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.lists(valid_documents() | invalid_documents() | escapes, min_size=30, max_size=60))
def test_reader_matches_json_loads_in_a_launcher_environment(docs):
    for doc, ours in zip(docs, loads_in_launcher_env(docs)):
        theirs = expected(doc)
        assert _same(doc, ours, theirs), (doc, ours, theirs)


CASES = {
    # every error the C scanner reports itself (SystemError without json imported)
    "unterminated string": '{"name": "x',
    "bad escape": '"\\q"',
    "bad unicode escape": '"\\u12"',
    "missing colon": '{"a" 1}',
    "missing comma": "[1 2]",
    "open object": "{",
    "open array": "[1",
    "trailing comma": '{"a": 1,}',
    "control character": '"a\x01"',
}


@pytest.mark.parametrize("doc", list(CASES.values()), ids=list(CASES))
def test_scanner_errors_are_decode_errors_with_json_wording(doc):
    [ours] = loads_in_launcher_env([doc])
    assert ours == expected(doc)


def test_nesting_up_to_go_limit_parses_and_deeper_is_a_decode_error():
    ok = '{"x": ' + "[" * 9999 + "]" * 9999 + ', "name": "n"}'
    deep = '{"x": ' + "[" * 10000 + "]" * 10000 + "}"
    bad_first = "[1 2" + "[" * 20000
    ours = loads_in_launcher_env([ok, deep, bad_first])
    assert ours[0] == ("ok-deep", ["name", "x"])
    assert ours[1] == ("err", "DecodeError",
                       "invalid character '[' exceeded max depth: line 1 column 10006 (char 10005)")
    assert ours[2] == expected(bad_first)  # the first error in the text wins, as in Go


def test_huge_integers_are_read_not_refused():
    [ours] = loads_in_launcher_env(['{"unknown": ' + "7" * 5000 + ', "name": "n"}'])
    assert ours[0] == "ok" and ours[1]["name"] == "n"
