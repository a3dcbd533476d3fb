"""Class regressions for JSON and text in the environment a runtime creates:
each request goes to a real launcher (``python -IS``, ``json`` never
imported) and, where one exists, to Debian's Go plugin side by side.

Covers: scanner-reported syntax errors (code 6, no traceback), nesting up to
Go's 10,000 levels, huge numbers in unknown fields, lone surrogate escapes
(Go's U+FFFD, no failure after side effects) and a non-UTF-8 CNI_IFNAME on
ADD and DEL, including DEL of an interface made by Go's bridge.
"""

from __future__ import annotations

import json

import pytest

from cnicore import rtnl
from cnicore.testing import run_executable
from helpers.state import snapshot

pytestmark = [pytest.mark.privileged, pytest.mark.interop]

GO = "/usr/lib/cni"
LOOPBACK = {"cniVersion": "1.0.0", "name": "lo-net", "type": "loopback"}


def bridge_conf(store: str) -> dict:
    return {"cniVersion": "1.0.0", "name": "net", "type": "bridge", "bridge": "cni0", "isGateway": True,
            "ipMasq": True, "ipam": {"type": "host-local", "subnet": "10.22.0.0/24", "dataDir": store}}


def both(cni_bin_dir: str, plugin: str, command: str, stdin: bytes | str, sandbox, **env):
    """(Go's outcome, ours) for the same request, each in its own fresh container."""
    out = []
    for bindir in (GO, cni_bin_dir):
        env.setdefault("netns", sandbox.container())
        out.append(run_executable(f"{bindir}/{plugin}", command, stdin, host=sandbox.host, path=bindir, **env))
        env.pop("netns")
    return out


SYNTAX = {
    "empty": "",
    "array": "[]",
    "number": "1",
    "utf-8 BOM": "\ufeff{}",
    "truncated object": '{"cniVersion": "1.0.0", "name": "n", "type": "loopback"',
    "open brace": "{",
    "open array": "[1",
    "unterminated string": '{"name": "n',
    "bad escape": '{"name": "\\q"}',
    "bad unicode escape": '{"name": "\\u12"}',
    "missing colon": '{"name" "n"}',
    "missing comma": '{"name": "n" "type": "x"}',
    "control character": '{"name": "a\x01"}',
    "trailing comma": '{"name": "n",}',
    "too deep": '{"name": "n", "x": ' + "[" * 10000 + "]" * 10000 + "}",
    "NaN": '{"name": "n", "x": NaN}',
}


@pytest.mark.parametrize("doc", list(SYNTAX.values()), ids=list(SYNTAX))
def test_syntax_errors_are_code_6_like_go(doc, cni_bin_dir, cni_sandbox):
    go, ours = both(cni_bin_dir, "loopback", "ADD", doc, cni_sandbox)
    assert go.code == ours.code == 1
    assert go.error.code == ours.error.code == 6, ours
    assert ours.error.msg == go.error.msg  # Go's own words, e.g. "unexpected end of JSON input"
    assert b"Traceback" not in ours.stdout + ours.stderr


ACCEPTED = {
    "1500 levels in an unknown field": '{"x": ' + "[" * 1500 + "]" * 1500 + "}",
    "9999 levels": '{"x": ' + "[" * 9999 + "]" * 9999 + "}",
    "5000-digit number in an unknown field": '{"x": ' + "9" * 5000 + "}",
    "lone surrogates in an unknown field": '{"x": "\\ud800\\udfff"}',
}


@pytest.mark.parametrize("extra", list(ACCEPTED.values()), ids=list(ACCEPTED))
def test_what_go_accepts_we_accept(extra, cni_bin_dir, cni_sandbox):
    doc = json.dumps(LOOPBACK)[:-1] + ", " + extra[1:]
    go, ours = both(cni_bin_dir, "loopback", "ADD", doc, cni_sandbox)
    assert go.code == ours.code == 0, ours
    assert ours.json["interfaces"][0]["name"] == "lo"


def test_lone_surrogate_in_network_name_is_refused_like_go(cni_bin_dir, cni_sandbox):
    doc = json.dumps(LOOPBACK).replace('"lo-net"', '"lo\\ud800"')
    go, ours = both(cni_bin_dir, "loopback", "ADD", doc, cni_sandbox)
    assert go.code == ours.code == 1
    assert go.error.code == ours.error.code == 7 and ours.error.details == go.error.details == "lo\ufffd"
    assert b"Traceback" not in ours.stderr


def test_lone_surrogate_in_dns_domain_prints_replacement_and_adds(cni_bin_dir, cni_sandbox, tmp_path):
    conf = bridge_conf(str(tmp_path / "store"))
    conf["dns"] = {"domain": "SURROGATE"}
    doc = json.dumps(conf).replace("SURROGATE", "ex\\udc00ample")
    ctr = cni_sandbox.container()
    added = run_executable(f"{cni_bin_dir}/bridge", "ADD", doc, host=cni_sandbox.host, netns=ctr,
                           path=cni_bin_dir, container_id="c1")
    assert added.code == 0, added
    assert added.json["dns"]["domain"] == "ex\ufffdample"
    assert "ex\xef\xbf\xbdample".encode("latin-1") in added.stdout  # raw UTF-8, as Go prints it
    run_executable(f"{cni_bin_dir}/bridge", "DEL", doc, host=cni_sandbox.host, netns=ctr, path=cni_bin_dir,
                   container_id="c1").ok()
    assert [name for name in (tmp_path / "store" / "net").iterdir() if name.name[0].isdigit()] == []


def _links(netns) -> list[str]:
    def read() -> list[str]:
        with rtnl.RtnlSocket() as sock:
            return sorted(link.name for link in sock.links())

    return netns.do(read)


@pytest.mark.parametrize("adder", ["go", "ours"])
def test_non_utf8_ifname_add_and_del(adder, cni_bin_dir, cni_sandbox, tmp_path):
    store = tmp_path / "store"
    conf = bridge_conf(str(store))
    ctr = cni_sandbox.container()
    env = {"host": cni_sandbox.host, "netns": ctr, "container_id": "c1", "ifname": "eth\udcff"}
    before = snapshot(cni_sandbox, [])
    add_dir = GO if adder == "go" else cni_bin_dir
    added = run_executable(f"{add_dir}/bridge", "ADD", conf, path=add_dir, **env).ok()
    assert _links(ctr) == ["eth\udcff", "lo"]
    assert added.json["interfaces"][2]["name"] == "eth\ufffd"  # Go prints invalid UTF-8 as U+FFFD
    assert b'"eth\\ufffd"' in added.stdout
    assert (store / "net" / "10.22.0.2").read_bytes() == b"c1\r\neth\xff"
    run_executable(f"{cni_bin_dir}/bridge", "DEL", conf, path=cni_bin_dir, **env).ok()
    assert _links(ctr) == ["lo"]
    assert sorted(p.name for p in (store / "net").iterdir()) == ["last_reserved_ip.0", "lock"]
    after = snapshot(cni_sandbox, [])
    assert after[2] == before[2]  # no masquerade rule left


@pytest.mark.parametrize("printed", [b'{"cniVersion": "1.0.0", "ips": [', b"", b"\xff\xfe", b"[" * 20000])
def test_ipam_printing_broken_json_fails_cleanly_like_go(printed, cni_bin_dir, cni_sandbox, tmp_path):
    """An exec'd IPAM whose output is not JSON: the bridge fails with Go's code,
    no traceback, nothing left behind."""
    import os
    import sys

    ipam_dir = tmp_path / "ipam"
    ipam_dir.mkdir()
    fake = ipam_dir / "broken-ipam"
    fake.write_text(f"#!{sys.executable} -IS\nimport sys\nsys.stdout.buffer.write({printed!r})\n")
    fake.chmod(0o755)
    conf = {"cniVersion": "1.0.0", "name": "net", "type": "bridge", "bridge": "brb", "ipam": {"type": "broken-ipam"}}
    outcomes = []
    for bindir in (GO, cni_bin_dir):
        ctr = cni_sandbox.container()
        out = run_executable(f"{bindir}/bridge", "ADD", conf, host=cni_sandbox.host, netns=ctr,
                             path=f"{ipam_dir}{os.pathsep}{bindir}", container_id="c1")
        outcomes.append(out)
        if bindir == cni_bin_dir:
            assert _links(ctr) == ["lo"]
    go, ours = outcomes
    assert (ours.code, ours.error.code) == (go.code, go.error.code), (ours, go)
    assert b"Traceback" not in ours.stdout
