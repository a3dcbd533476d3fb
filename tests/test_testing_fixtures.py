"""cnicore's pytest plugin (:mod:`cnicore.testing`) as a plugin author uses it:
the result assertions, the kernel assertions, ``cni_bin_dir``, ``cni_conflist``
and the CI rule that a skipped test fails.

Safety: every network change happens in the private namespaces of the
``cni_sandbox`` fixtures; IPAM stores and the result cache live under tmp_path.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from cnicore.errors import CNIError
from cnicore.launchers import read_header
from cnicore.registry import discover
from cnicore.rtnl import RtnlSocket
from cnicore.testing import (
    ConflistRunner,
    as_current_result,
    assert_netns_address,
    assert_netns_no_route,
    assert_netns_route,
    assert_result_has_interface,
    assert_result_has_ip,
    assert_result_has_route,
    netns_routes,
)
from cnicore.types import Result

privileged = pytest.mark.privileged

RESULT_1 = {"cniVersion": "1.0.0",
            "interfaces": [{"name": "cni0", "mac": "0a:00:00:00:00:01"},
                           {"name": "eth0", "mac": "0a:00:00:00:00:02", "sandbox": "/var/run/netns/x"}],
            "ips": [{"address": "10.1.0.2/24", "gateway": "10.1.0.1", "interface": 1},
                    {"address": "fd01::2/64", "gateway": "fd01::1", "interface": 1}],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.99.0.0/16", "gw": "10.1.0.254"}]}
RESULT_040 = {"cniVersion": "0.4.0", "interfaces": RESULT_1["interfaces"],
              "ips": [{"version": "4", "address": "10.1.0.2/24", "gateway": "10.1.0.1", "interface": 1}],
              "routes": [{"dst": "10.99.0.0/16", "gw": "10.1.0.254"}], "dns": {}}
RESULT_020 = {"cniVersion": "0.2.0", "ip4": {"ip": "10.1.0.2/24", "gateway": "10.1.0.1",
                                             "routes": [{"dst": "10.99.0.0/16", "gw": "10.1.0.254"}]}}


# -- result assertions (no root) -------------------------------------------------------


@pytest.mark.parametrize("result", [RESULT_1, RESULT_040, RESULT_020], ids=["1.0.0", "0.4.0", "0.2.0"])
def test_result_assertions_pass_for_every_version(result: dict) -> None:
    assert_result_has_ip(result, "10.1.0.2/24")
    assert_result_has_ip(result, "10.1.0.2/24", gateway="10.1.0.1")
    assert_result_has_route(result, "10.99.0.0/16")
    assert_result_has_route(result, "10.99.1.0/16", "10.1.0.254")  # compared as a network
    if result is not RESULT_020:
        assert_result_has_ip(result, "10.1.0.2/24", ifname="eth0")
        assert assert_result_has_interface(result, "eth0", sandbox="/var/run/netns/x") == 1


def test_result_assertions_accept_objects_and_json() -> None:
    parsed = Result.from_dict(RESULT_1)
    assert_result_has_ip(parsed, "fd01:0::2/64", ifname="eth0")  # compared as a value
    assert_result_has_route(parsed.to_json(), "0.0.0.0/0", "")
    assert as_current_result(RESULT_020).ips[0].address == "10.1.0.2/24"
    assert as_current_result(parsed).to_dict() == dict(parsed.to_dict(), cniVersion="1.1.0")


@pytest.mark.parametrize(("check", "message"), [
    (lambda: assert_result_has_ip(RESULT_1, "10.1.0.3/24"), "no address 10.1.0.3/24"),
    (lambda: assert_result_has_ip(RESULT_1, "10.1.0.2/24", gateway="10.1.0.9"), "has gateway '10.1.0.1'"),
    (lambda: assert_result_has_ip(RESULT_1, "10.1.0.2/24", ifname="cni0"), "is on interface 'eth0'"),
    (lambda: assert_result_has_route(RESULT_1, "10.98.0.0/16"), "no route to 10.98.0.0/16"),
    (lambda: assert_result_has_route(RESULT_1, "10.99.0.0/16", ""), "via (no gateway)"),
    (lambda: assert_result_has_interface(RESULT_1, "eth1"), "no interface 'eth1'"),
    (lambda: assert_result_has_interface(RESULT_1, "eth0", sandbox="/other"), "has sandbox"),
    (lambda: assert_result_has_interface(RESULT_1, "eth0", mac="0a:00:00:00:00:09"), "has MAC"),
])
def test_result_assertions_explain_failures(check, message: str) -> None:
    with pytest.raises(AssertionError) as info:
        check()
    assert message in str(info.value)


# -- the CI rule -------------------------------------------------------------------------


def test_skips_fail_only_with_cnicore_fail_on_skip(tmp_path) -> None:
    (tmp_path / "test_some.py").write_text(textwrap.dedent("""
        import pytest

        def test_skipped():
            pytest.skip("not here")

        @pytest.mark.xfail(reason="known")
        def test_xfail():
            assert False
    """))
    env = {k: v for k, v in os.environ.items() if k != "CNICORE_FAIL_ON_SKIP"}

    def run(**extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                              cwd=tmp_path, env=dict(env, **extra), capture_output=True, text=True, timeout=120)

    relaxed = run()
    assert relaxed.returncode == 0 and "1 skipped, 1 xfailed" in relaxed.stdout, relaxed.stdout
    strict = run(CNICORE_FAIL_ON_SKIP="1")
    assert strict.returncode == 1, strict.stdout
    assert "1 failed, 1 xfailed" in strict.stdout and "skipped in CI, which must run every test" in strict.stdout


def test_a_module_skipped_at_collection_fails_in_ci(tmp_path) -> None:
    (tmp_path / "test_module.py").write_text(
        'import pytest\npytest.skip("no root", allow_module_level=True)\n\ndef test_x():\n    pass\n')
    env = {k: v for k, v in os.environ.items() if k != "CNICORE_FAIL_ON_SKIP"}

    def run(**extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                              cwd=tmp_path, env=dict(env, **extra), capture_output=True, text=True, timeout=120)

    relaxed = run()
    assert relaxed.returncode in (0, 5) and "1 skipped" in relaxed.stdout  # 5: pytest ran no test
    strict = run(CNICORE_FAIL_ON_SKIP="1")
    assert strict.returncode not in (0, 5) and "module skipped in CI" in strict.stdout, strict.stdout


# -- cni_bin_dir ---------------------------------------------------------------------------


def test_cni_bin_dir_has_a_launcher_per_plugin(cni_bin_dir: str) -> None:
    for plugin_type, entry in discover().items():
        path = os.path.join(cni_bin_dir, plugin_type)
        assert os.access(path, os.X_OK), plugin_type
        header = read_header(path)
        assert header is not None and header.module == entry.module
    answer = subprocess.run([os.path.join(cni_bin_dir, "loopback")], input=b"{}", capture_output=True,
                            env={"CNI_COMMAND": "VERSION"}, timeout=30)
    assert answer.returncode == 0 and b'"supportedVersions"' in answer.stdout


# -- cni_conflist and the kernel assertions --------------------------------------------------


def bridge_net(version: str, ipam_dir, **bridge: object) -> dict:
    return {"cniVersion": version, "name": "fixnet", "plugins": [
        {"type": "bridge", "bridge": "br-fix", "isGateway": True,
         "ipam": {"type": "host-local", "dataDir": str(ipam_dir),
                  "ranges": [[{"subnet": "10.77.0.0/24"}]], "routes": [{"dst": "10.88.0.0/16"}]},
         **bridge},
        {"type": "tuning", "mtu": 1400}]}


@privileged
@pytest.mark.parametrize("version", ["0.4.0", "1.1.0"])
def test_cni_conflist_add_check_del(cni_conflist, cni_sandbox, tmp_path, version: str) -> None:
    ctr = cni_sandbox.container()
    net = cni_conflist(bridge_net(version, tmp_path / "ipam"))
    assert isinstance(net, ConflistRunner) and net.name == "fixnet"

    result = net.add(ctr)

    assert result["cniVersion"] == version
    assert_result_has_ip(result, "10.77.0.2/24", gateway="10.77.0.1", ifname="eth0")
    assert_result_has_route(result, "10.88.0.0/16")
    assert_result_has_interface(result, "eth0", sandbox=ctr.path)
    assert_netns_address(ctr, "eth0", "10.77.0.2/24")
    assert_netns_route(ctr, "10.88.0.0/16", gw="10.77.0.1", dev="eth0")
    assert any(r.dst == "10.77.0.0/24" for r in netns_routes(ctr))
    assert_netns_address(cni_sandbox.host, "br-fix", "10.77.0.1/24")  # the plugins' "host" is the sandbox's

    def mtu() -> int:
        with RtnlSocket() as rtnl:
            return rtnl.link("eth0").mtu

    assert ctr.do(mtu) == 1400
    # The container ID is the namespace's name; the cache is under tmp_path.
    assert net.cached_result(ctr) == result
    cached = list((tmp_path / "cni-cache" / "results").iterdir())
    assert [p.name for p in cached] == [f"fixnet-{os.path.basename(ctr.path)}-eth0"]

    net.check(ctr)
    if version == "1.1.0":
        net.status()
    net.delete(ctr)
    assert_netns_no_route(ctr, "10.88.0.0/16")
    assert net.cached_result(ctr) is None
    assert list((tmp_path / "cni-cache" / "results").iterdir()) == []
    net.delete(ctr)  # DEL is idempotent


@privileged
def test_cni_conflist_two_containers_and_errors(cni_conflist, cni_sandbox, tmp_path) -> None:
    net = cni_conflist(bridge_net("1.0.0", tmp_path / "ipam"))
    first, second = cni_sandbox.container(), cni_sandbox.container()
    assert_result_has_ip(net.add(first), "10.77.0.2/24")
    assert_result_has_ip(net.add(second, ifname="net1"), "10.77.0.3/24", ifname="net1")
    net.delete(second, ifname="net1")
    net.delete(first)

    missing = cni_conflist({"cniVersion": "1.0.0", "name": "nonet", "plugins": [{"type": "no-such-plugin"}]})
    with pytest.raises(CNIError) as info:
        missing.add(first)
    assert "no-such-plugin" in str(info.value)

    broken = cni_conflist(bridge_net("1.0.0", tmp_path / "ipam", mtu="big"))
    with pytest.raises(CNIError) as info:
        broken.add(first)
    assert info.value.code != 0 and "bridge" in str(info.value)


@privileged
def test_kernel_assertions_explain_failures(container_netns) -> None:
    with pytest.raises(AssertionError, match="no route to 10.1.0.0/16"):
        assert_netns_route(container_netns, "10.1.0.0/16")
    with pytest.raises(AssertionError, match="has \\[\\]"):
        assert_netns_address(container_netns, "lo", "10.0.0.1/8")
    assert_netns_no_route(container_netns, "10.1.0.0/16")
