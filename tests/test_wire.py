"""wire's re-free JSON codec behaves like the json module for JSON documents,
and prints Go's bytes."""

from __future__ import annotations

import json
import random

import pytest

from cnicore import wire

DOCS = [
    '{"a": 1, "b": [1, 2.5, "x\\u00e9<>&", null, true, false, {}], "c": {"d": []}}',
    " [ ] ", '"s"', "1e5", "-0", "0.1", '{"x": {"y": {"z": [1, [2, [3]]]}}}',
    '{"ctl": "\\u0001\\n\\t\\"\\\\", "uni": "\\u2028\\ud83d\\ude00"}', "\n\t{}\r\n",
]
BAD = ["", "  ", "{", '{"a":1} x', "[1,]", '{"a" 1}', "\ufeff{}", "tru", "NaN", "Infinity", "[-Infinity]"]


@pytest.mark.parametrize("doc", DOCS)
def test_loads_matches_json(doc):
    assert wire.loads(doc) == json.loads(doc)
    assert wire.loads(doc.encode()) == json.loads(doc)


@pytest.mark.parametrize("doc", BAD)
def test_invalid_documents_are_value_errors_with_json_wording(doc):
    with pytest.raises(ValueError) as ours:
        wire.loads(doc)
    try:
        json.loads(doc)
    except ValueError as theirs:
        assert str(ours.value) == str(theirs)
    else:  # json accepts NaN/Infinity; they are not JSON and Go refuses them with these words
        go = {"NaN": "invalid character 'N' looking for beginning of value: line 1 column 1 (char 0)",
              "Infinity": "invalid character 'I' looking for beginning of value: line 1 column 1 (char 0)",
              "[-Infinity]": "invalid character 'I' in numeric literal: line 1 column 3 (char 2)"}
        assert str(ours.value) == go[doc]


def test_object_pairs_hook_sees_duplicates():
    assert wire.loads('{"a": 1, "a": 2}', object_pairs_hook=list) == [("a", 1), ("a", 2)]


def _random_value(rng: random.Random, depth: int = 0) -> object:
    kinds = ["int", "float", "str", "bool", "null"] + (["list", "dict"] if depth < 4 else [])
    kind = rng.choice(kinds)
    if kind == "int":
        return rng.randint(-2**40, 2**40)
    if kind == "float":
        return rng.uniform(-1e6, 1e6)
    if kind == "str":
        return "".join(rng.choice('ab<>&"\\\n\x01é€\u2028😀') for _ in range(rng.randint(0, 6)))
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if kind == "list":
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {str(_random_value(rng, 3)): _random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("indent", [None, 1, 4])
@pytest.mark.parametrize("sort_keys", [False, True])
def test_dumps_text_matches_json(seed, indent, sort_keys):
    value = _random_value(random.Random(seed))
    expected = json.dumps(value, indent=indent, ensure_ascii=False, sort_keys=sort_keys,
                          separators=(",", ":") if indent is None else None)
    assert wire.dumps_text(value, indent, sort_keys) == expected
    assert wire.loads(expected) == json.loads(expected)


def test_go_bytes_escape_html_and_separators():
    assert wire.dumps_compact({"a": "<&>\u2028"}) == b'{"a":"\\u003c\\u0026\\u003e\\u2028"}'
    assert wire.dumps_indent({"b": [1], "a": {}}, sort_keys=True) == b'{\n    "a": {},\n    "b": [\n        1\n    ]\n}'


