"""The built-in static IPAM plugin, through its launcher (cold, or warm with
``CNICORE_TEST_LAUNCHERS=native``) and side by side with Debian's Go static:
every config, CNI_ARGS and capability case of the table must give Go's exit
status, error code and message, and an equal result in every spec version.

Static touches nothing, but the runs still happen inside a sandbox's host
namespace with a container namespace as CNI_NETNS, as a runtime would call it.
"""

from __future__ import annotations

import json

import pytest

from cnicore.testing import run_executable
from cnicore.version import ALL

pytestmark = [pytest.mark.privileged, pytest.mark.interop]

GO_STATIC = "/usr/lib/cni/static"
#: Debian's 1.1.1 refuses 1.1.0 configs; for those we compare with its 1.0.0 answer.
GO_NEWEST = "1.0.0"


def net(ipam: dict, version: str = "1.0.0", **extra: object) -> dict:
    conf = {"cniVersion": version, "name": "staticnet", "type": "static", "ipam": ipam}
    conf.update(extra)
    return conf


DUAL = {
    "type": "static",
    "addresses": [{"address": "10.10.0.5/24", "gateway": "10.10.0.1"},
                  {"address": "3ffe:ffff:0:01ff::1/64", "gateway": "3ffe:ffff:0::1"}],
    "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.10.0.254"}, {"dst": "3ffe:ffff:0:01ff::1/64"}],
    "dns": {"nameservers": ["8.8.8.8"], "domain": "example.com", "search": ["example.com"], "options": ["rotate"]},
}
ONE = {"type": "static", "addresses": [{"address": "10.10.0.5/24", "gateway": "10.10.0.1"}],
       "routes": [{"dst": "0.0.0.0/0"}]}
TWO_V4 = {"type": "static", "addresses": [{"address": "10.10.0.5/24"}, {"address": "10.11.0.5/24"}]}
PLAIN = {"type": "static", "addresses": [{"address": "10.10.0.5/24", "gateway": "10.10.0.1"}]}

#: (id, config, CNI_ARGS): every source of addresses and every error of the reference.
CASES: list[tuple[str, dict, str]] = []
for _v in ALL:
    CASES += [(f"dual-{_v}", net(DUAL, _v), ""), (f"one-{_v}", net(ONE, _v), ""),
              (f"two-v4-{_v}", net(TWO_V4, _v), ""),
              (f"runtime-ips-{_v}", net(PLAIN, _v, runtimeConfig={"ips": ["10.20.0.5/16", "fd00::5/64"]}), ""),
              (f"cni-args-{_v}", net(PLAIN, _v), "IP=10.40.0.5/24,fd00::5/64;GATEWAY=10.40.0.1,fd00::1")]
CASES += [
    ("no-ipam", {"cniVersion": "1.0.0", "name": "n", "type": "static"}, ""),
    ("ipam-null", {"cniVersion": "1.0.0", "name": "n", "type": "static", "ipam": None}, ""),
    ("ipam-string", {"cniVersion": "1.0.0", "name": "n", "type": "static", "ipam": "x"}, ""),
    ("address-not-cidr", net({"type": "static", "addresses": [{"address": "10.10.0.5"}]}), ""),
    ("address-number", net({"type": "static", "addresses": [{"address": 5}]}), ""),
    ("addresses-object", net({"type": "static", "addresses": {"address": "10.0.0.1/24"}}), ""),
    ("gateway-bad", net({"type": "static", "addresses": [{"address": "10.10.0.5/24", "gateway": "foo"}]}), ""),
    ("gateway-number", net({"type": "static", "addresses": [{"address": "10.10.0.5/24", "gateway": 5}]}), ""),
    ("gateway-empty", net({"type": "static", "addresses": [{"address": "10.10.0.5/24", "gateway": ""}]}), ""),
    ("route-dst-bad", net({"type": "static", "addresses": [{"address": "10.10.0.5/24"}], "routes": [{"dst": "x"}]}), ""),
    ("route-dst-number", net({"type": "static", "addresses": [{"address": "10.10.0.5/24"}],
                              "routes": [{"dst": 5}]}), ""),
    ("route-gw-bad", net({"type": "static", "addresses": [{"address": "10.10.0.5/24"}],
                          "routes": [{"dst": "0.0.0.0/0", "gw": "zz"}]}), ""),
    ("routes-string", net({"type": "static", "addresses": [{"address": "10.10.0.5/24"}], "routes": "x"}), ""),
    ("route-string", net({"type": "static", "addresses": [{"address": "10.10.0.5/24"}], "routes": ["x"]}), ""),
    ("dns-bad", net({"type": "static", "addresses": [{"address": "10.10.0.5/24"}],
                     "dns": {"nameservers": "8.8.8.8"}}), ""),
    ("type-number", net({"type": 5, "addresses": [{"address": "10.10.0.5/24"}]}), ""),
    ("Address-key", net({"type": "static", "addresses": [{"Address": "10.10.0.5/24"}]}), ""),
    ("ADDRESS-key", net({"type": "static", "addresses": [{"ADDRESS": "10.10.0.5/24"}]}), ""),
    ("Version-number", net({"type": "static", "addresses": [{"address": "10.10.0.5/24", "Version": 5}]}), ""),
    ("runtime-ip-not-cidr", net(PLAIN, runtimeConfig={"ips": ["10.20.0.5"]}), ""),
    ("runtime-ip-number", net({"type": "static"}, runtimeConfig={"ips": [5]}), ""),
    ("runtime-config-string", net({"type": "static"}, runtimeConfig="x"), ""),
    ("args-ips", net(PLAIN, args={"cni": {"ips": ["10.30.0.5/16"]}}), ""),
    ("args-ip-bad", net({"type": "static"}, args={"cni": {"ips": ["nope"]}}), ""),
    ("args-string", net({"type": "static"}, args="x"), ""),
    ("args-cni-string", net({"type": "static"}, args={"cni": "x"}), ""),
    ("runtime-over-args", net({"type": "static"}, args={"cni": {"ips": ["10.30.0.5/16"]}},
                              runtimeConfig={"ips": ["10.20.0.5/16"]}), ""),
    ("no-addresses", net({"type": "static"}), ""),
    ("two-v4-in-0.2.0", net(TWO_V4, "0.2.0"), ""),
    ("ipv4-mapped", net({"type": "static", "addresses": [{"address": "::ffff:10.10.0.5/120",
                                                          "gateway": "::ffff:10.10.0.1"}]}), ""),
    ("top-dns-number", net(PLAIN, dns=5), ""),
    ("name-number", {"cniVersion": "1.0.0", "name": 5, "type": "static", "ipam": {"type": "static"}}, ""),
    ("env-ip", net(PLAIN), "IP=10.40.0.5/24"),
    ("env-ip-not-cidr", net(PLAIN), "IP=10.40.0.5"),
    ("env-gateway-bad", net(PLAIN), "IP=10.40.0.5/24;GATEWAY=zz"),
    ("env-gateway-only", net({"type": "static", "addresses": [{"address": "10.10.0.5/24"}]}), "GATEWAY=10.10.0.1"),
    ("env-unknown", net(PLAIN), "FOO=bar"),
    ("env-ignore-unknown", net(PLAIN), "IgnoreUnknown=1;FOO=bar;IP=10.40.0.5/24"),
    ("env-spaces", net(PLAIN), "IP= 10.40.0.5/24 , 10.41.0.5/24;GATEWAY= 10.41.0.1"),
    ("env-gateway-second-bad", net(PLAIN), "IP=10.40.0.5/24;GATEWAY=10.40.0.1, x"),
    ("env-no-value", net(PLAIN), "IP"),
    ("env-empty", net(PLAIN), "IP="),
    ("env-and-runtime", net(PLAIN, runtimeConfig={"ips": ["10.20.0.5/16"]}), "IP=10.40.0.5/24"),
]

#: Where we answer better than Debian's 1.1.1, on purpose (plugin/config docstrings).
BETTER = {
    # routes keep the 1.1.0 attributes, so their kinds are checked
    "route-mtu-string": net({"type": "static", "addresses": [{"address": "10.10.0.5/24"}],
                             "routes": [{"dst": "0.0.0.0/0", "mtu": "x"}]}),
}


def _normal(outcome) -> tuple[int, object]:
    """Exit status and the decoded output, without what differs by design: Debian's
    libcni prints an empty ``"dns": {}`` in 1.x results and no ``cniVersion`` in errors."""
    data = json.loads(outcome.stdout) if outcome.stdout else None
    if isinstance(data, dict):
        if data.get("dns") == {}:
            del data["dns"]
        if "code" in data:
            data.pop("cniVersion", None)
    return outcome.code, data


@pytest.fixture
def static_bin(cni_bin_dir: str) -> str:
    return f"{cni_bin_dir}/static"


def _run(binary: str, command: str, conf: dict, sandbox, ctr, args: str = "") -> object:
    return run_executable(binary, command, conf, host=sandbox.host, netns=ctr, args=args)


@pytest.mark.parametrize(("case_id", "conf", "args"), CASES, ids=[c[0] for c in CASES])
def test_add_side_by_side_with_go(case_id: str, conf: dict, args: str, static_bin, cni_sandbox) -> None:
    ctr = cni_sandbox.container()
    ours = _run(static_bin, "ADD", conf, cni_sandbox, ctr, args)
    assert b"Traceback" not in ours.stdout
    go_conf = dict(conf, cniVersion=GO_NEWEST) if conf.get("cniVersion") == "1.1.0" else conf
    go = _run(GO_STATIC, "ADD", go_conf, cni_sandbox, ctr, args)
    code, data = _normal(ours)
    go_code, go_data = _normal(go)
    if go_conf is not conf and isinstance(go_data, dict) and "code" not in go_data:
        go_data["cniVersion"] = "1.1.0"
    assert (code, data) == (go_code, go_data), (ours, go)


def test_the_table_covers_every_version_and_source() -> None:
    assert len(CASES) >= 70
    assert {c[1].get("cniVersion") for c in CASES} >= set(ALL)


@pytest.mark.parametrize("case_id", sorted(BETTER))
def test_deliberate_differences(case_id: str, static_bin, cni_sandbox) -> None:
    outcome = _run(static_bin, "ADD", BETTER[case_id], cni_sandbox, cni_sandbox.container())
    assert outcome.code == 1 and outcome.json["code"] == 999 and "routes" in outcome.json["msg"], outcome


def test_result_keeps_route_attributes_of_1_1(static_bin, cni_sandbox) -> None:
    conf = net({"type": "static", "addresses": [{"address": "10.10.0.5/24"}],
                "routes": [{"dst": "0.0.0.0/0", "gw": "10.10.0.1", "mtu": 1400, "priority": 5, "table": 100}]},
               "1.1.0")
    result = _run(static_bin, "ADD", conf, cni_sandbox, cni_sandbox.container()).ok().json
    assert result["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.10.0.1", "mtu": 1400, "priority": 5, "table": 100}]


CHECK_CASES = [
    ("match", PLAIN, {"ips": [{"address": "10.10.0.5/24", "gateway": "10.10.0.1"}]}),
    ("other-gateway", PLAIN, {"ips": [{"address": "10.10.0.5/24", "gateway": "10.10.0.9"}]}),
    ("no-gateway-in-result", PLAIN, {"ips": [{"address": "10.10.0.5/24"}]}),
    ("address-missing", PLAIN, {"ips": [{"address": "10.10.0.6/24", "gateway": "10.10.0.9"}]}),
    ("no-gateway-configured", {"type": "static", "addresses": [{"address": "10.10.0.5/24"}]},
     {"ips": [{"address": "10.10.0.5/24", "gateway": "10.10.0.9"}]}),
    ("no-prev-result", PLAIN, None),
    ("bad-config", {"type": "static", "addresses": [{"address": "x"}]}, {"ips": []}),
]


@pytest.mark.parametrize("version", ["0.4.0", "1.0.0", "1.1.0"])
@pytest.mark.parametrize(("case_id", "ipam", "prev"), CHECK_CASES, ids=[c[0] for c in CHECK_CASES])
def test_check_side_by_side_with_go(case_id: str, ipam: dict, prev: dict | None, version: str, static_bin,
                                    cni_sandbox) -> None:
    conf = net(ipam, version)
    if prev is not None:
        conf["prevResult"] = dict(prev, cniVersion=version)
    ctr = cni_sandbox.container()
    ours = _normal(_run(static_bin, "CHECK", conf, cni_sandbox, ctr))
    go_conf = conf if version != "1.1.0" else dict(conf, cniVersion=GO_NEWEST,
                                                   prevResult=dict(conf.get("prevResult") or {},
                                                                   cniVersion=GO_NEWEST))
    if prev is None:
        go_conf.pop("prevResult", None)
    go = _normal(_run(GO_STATIC, "CHECK", go_conf, cni_sandbox, ctr))
    assert ours == go


@pytest.mark.parametrize("version", ALL)
def test_del_succeeds_whatever_the_config(version: str, static_bin, cni_sandbox) -> None:
    for conf in (net(PLAIN, version), net({"type": "static", "addresses": [{"address": "x"}]}, version)):
        assert _run(static_bin, "DEL", conf, cni_sandbox, cni_sandbox.container()).code == 0
        assert _run(static_bin, "DEL", conf, cni_sandbox, "").code == 0


def test_gc_and_status_are_answered_by_skel(static_bin, cni_sandbox) -> None:
    conf = net(PLAIN, "1.1.0")
    for command in ("GC", "STATUS"):
        assert _run(static_bin, command, conf, cni_sandbox, "").code == 0
