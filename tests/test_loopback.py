"""The built-in loopback plugin in real namespaces, in-process and against Go's."""

from __future__ import annotations

import os
import socket

import pytest

import cni_plugins_builtin.loopback as loopback
from cnicore.rtnl import RtnlSocket
from cnicore.testing import run_executable
from cnicore.version import ALL

pytestmark = pytest.mark.privileged

GO_LOOPBACK = "/usr/lib/cni/loopback"


def conf(version: str, **extra: object) -> dict[str, object]:
    return dict({"cniVersion": version, "name": "lo-net", "type": "loopback"}, **extra)


def lo_state(netns) -> tuple[bool, list[str], list[str]]:
    def read() -> tuple[bool, list[str], list[str]]:
        with RtnlSocket() as rtnl:
            link = rtnl.link("lo")
            return (link.is_up, rtnl.addresses(link, socket.AF_INET),
                    rtnl.addresses(link, socket.AF_INET6))

    return netns.do(read)


def expected_result(version: str, sandbox: str) -> dict[str, object]:
    if version in ("0.1.0", "0.2.0"):
        return {"cniVersion": version, "ip4": {"ip": "127.0.0.1/8"}, "ip6": {"ip": "::1/128"}, "dns": {}}
    lo = {"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": sandbox}
    if version.startswith("0."):
        return {"cniVersion": version, "interfaces": [lo],
                "ips": [{"version": "4", "interface": 0, "address": "127.0.0.1/8"},
                        {"version": "6", "interface": 0, "address": "::1/128"}], "dns": {}}
    return {"cniVersion": version, "interfaces": [lo],
            "ips": [{"interface": 0, "address": "127.0.0.1/8"}, {"interface": 0, "address": "::1/128"}]}


@pytest.mark.parametrize("version", ALL)
def test_add_check_del_every_version(cni_runner, container_netns, version):
    runner = cni_runner(loopback, "loopback")
    assert lo_state(container_netns)[0] is False

    out = runner.run("ADD", conf(version), netns=container_netns).ok()
    assert out.json == expected_result(version, container_netns.path)
    up, v4, v6 = lo_state(container_netns)
    assert up and v4 == ["127.0.0.1/8"] and v6 == ["::1/128"]

    if version >= "0.4.0":
        runner.check(conf(version), container_netns)
    runner.delete(conf(version), container_netns)
    assert lo_state(container_netns)[0] is False
    if version >= "0.4.0":
        failed = runner.run("CHECK", conf(version), netns=container_netns)
        assert failed.code == 1 and failed.error.code == 999
        assert failed.error.msg == "loopback interface is down"


def test_add_passes_prev_result_through(cni_runner, container_netns):
    prev = {"cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "mac": "0a:58:0a:01:00:02", "sandbox": container_netns.path}],
            "ips": [{"interface": 0, "address": "10.1.0.2/24", "gateway": "10.1.0.1"}],
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}],
            "dns": {"nameservers": ["10.1.0.1"]}}
    out = cni_runner(loopback, "loopback").add(conf("1.0.0", prevResult=prev), container_netns)
    assert out == prev
    assert lo_state(container_netns)[0] is True


def test_del_tolerates_missing_or_empty_netns(cni_runner):
    runner = cni_runner(loopback, "loopback")
    runner.delete(conf("1.0.0"), "/var/run/netns/cnitest-does-not-exist")
    runner.delete(conf("1.0.0"), "")


def test_add_into_missing_netns_fails_cleanly(cni_runner):
    out = cni_runner(loopback, "loopback").run("ADD", conf("1.0.0"), netns="/var/run/netns/cnitest-missing")
    assert out.code == 1 and out.error.code == 999
    assert "cnitest-missing" in out.error.msg
    assert b"Traceback" not in out.stdout


def test_add_into_own_netns_is_refused(cni_runner, host_netns):
    out = cni_runner(loopback, "loopback").run("ADD", conf("1.0.0"), netns=host_netns)
    assert out.error.code == 8
    assert lo_state(host_netns)[0] is False  # nothing was done to the plugin's own namespace


@pytest.mark.interop
@pytest.mark.parametrize("version", ["0.2.0", "0.3.1", "0.4.0", "1.0.0"])
def test_same_effect_and_result_as_go_loopback(cni_runner, cni_sandbox, version):
    """Go's loopback and ours leave the namespace the same and report the same
    interface and addresses (Go's prints a 1.x-shaped result under old versions;
    ours converts properly, so for those only the kernel state is compared)."""
    assert os.access(GO_LOOPBACK, os.X_OK), "CI installs containernetworking-plugins"
    ours_ns, go_ns = cni_sandbox.container(), cni_sandbox.container()
    ours = cni_runner(loopback, "loopback").run("ADD", conf(version), netns=ours_ns).ok()
    go = run_executable(GO_LOOPBACK, "ADD", conf(version), host=cni_sandbox.host, netns=go_ns).ok()
    assert lo_state(ours_ns) == lo_state(go_ns)
    if version == "1.0.0":
        theirs = go.json
        theirs.pop("dns", None)  # Debian's older libcni prints an empty "dns" for 1.x
        theirs["interfaces"][0]["sandbox"] = ours_ns.path
        assert ours.json == theirs
    for ns, cmd in ((ours_ns, None), (go_ns, GO_LOOPBACK)):
        if cmd:
            run_executable(cmd, "DEL", conf(version), host=cni_sandbox.host, netns=ns).ok()
        else:
            cni_runner(loopback, "loopback").delete(conf(version), ns)
        assert lo_state(ns)[0] is False


@pytest.mark.interop
def test_go_plugin_accepts_our_result_as_prev_result(cni_runner, cni_sandbox, container_netns):
    """Our printed result parses as a Go plugin's own would: Go's loopback takes
    it as prevResult and passes it through unchanged."""
    ours = cni_runner(loopback, "loopback").add(conf("1.0.0"), container_netns)
    passthrough = run_executable(GO_LOOPBACK, "ADD", conf("1.0.0", prevResult=ours),
                                 host=cni_sandbox.host, netns=container_netns).ok()
    theirs = passthrough.json
    theirs.pop("dns", None)
    assert theirs == ours
