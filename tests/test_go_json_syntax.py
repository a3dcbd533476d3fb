"""Our syntax errors read exactly like Go's ``encoding/json`` ones: generated
valid and broken documents go through a tiny Go program (tests/go/gojsonsyntax)
and through :func:`cnicore._go.jsonsyntax.syntax_error`, and the texts must match."""

from __future__ import annotations

import json
import os
import struct
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnicore._go.jsonsyntax import syntax_error
from test_wire_exec_env import invalid_documents, valid_documents

HERE = os.path.dirname(__file__)
pytestmark = [pytest.mark.interop]


@pytest.fixture(scope="module")
def go_json(tmp_path_factory):
    out = tmp_path_factory.mktemp("gojsonsyntax")
    binary = str(out / "gojsonsyntax")
    env = dict(os.environ, GO111MODULE="off", GOFLAGS="", GOCACHE=str(out / "cache"))
    subprocess.run(["go", "build", "-o", binary, os.path.join(HERE, "go", "gojsonsyntax", "main.go")],
                   env=env, check=True, capture_output=True, timeout=300)

    def run(docs: list[bytes]) -> list[str | None]:
        data = b"".join(struct.pack(">I", len(doc)) + doc for doc in docs)
        proc = subprocess.run([binary], input=data, capture_output=True, check=True, timeout=120)
        answers = [json.loads(line) for line in proc.stdout.decode().splitlines()]
        return [None if a == "ok" or a.startswith("json: cannot unmarshal") else a for a in answers]

    return run


junk = st.binary(max_size=12) | st.sampled_from([b"\xef\xbb\xbf{}", b'"\xff"', b"\xff", b"[\x00]", b'"a\x1fb"',
                                                  b"-", b"1.", b"1e", b"1e+", b"tr", b"fals", b"nul", b'"\\', b'"\\u12',
                                                  b"", b"  ", b"{} {}", b"[1,]", b'{"a":1,}', b"01", b"-01", b".5"])
documents = (valid_documents() | invalid_documents()).map(lambda doc: doc.encode("utf-8", "surrogatepass")) | junk


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(documents, min_size=30, max_size=60))
def test_syntax_errors_match_go(go_json, docs):
    for doc, go in zip(docs, go_json(docs)):
        assert syntax_error(doc) == go, doc


def test_depth_and_size_match_go(go_json):
    docs = [b"[" * 10000 + b"]" * 10000, b"[" * 10001, b"[" * (30 << 20), b"{}" + b" " * (20 << 20) + b"x",
            b'{"a":' + b"[" * 10000 + b"]" * 10000 + b"}"]
    assert [syntax_error(doc) for doc in docs] == go_json(docs)
