"""cnicore's pytest plugin (:mod:`cnicore.testing`) as a plugin author uses it:
the result assertions, the kernel assertions, ``cni_bin_dir``, ``cni_conflist``,
the CI rule that a skipped test fails, the namespace prefix, ``ping`` and
``resolv_conf``.

Safety: every network change happens in the private namespaces of the
``cni_sandbox`` fixtures; IPAM stores and the result cache live under tmp_path.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from cnicore.errors import CNIError
from cnicore.launchers import read_header
from cnicore.registry import discover
from cnicore.rtnl import RtnlSocket
from cnicore.testing import (
    DEFAULT_NETNS_PREFIX,
    ConflistRunner,
    as_current_result,
    assert_netns_address,
    assert_netns_no_route,
    assert_netns_route,
    assert_result_has_interface,
    assert_result_has_ip,
    assert_result_has_route,
    netns_prefix,
    netns_routes,
    ping,
    resolv_conf,
    run_in,
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


# -- the namespace prefix -------------------------------------------------------------------

PREFIX_TEST = """
import os

def test_names(cni_sandbox, cni_netns_prefix, cni_server):
    names = [os.path.basename(cni_sandbox.host.path), os.path.basename(cni_sandbox.container().path),
             os.path.basename(cni_server.netns.path)]
    with open(os.environ["NAMES_FILE"], "a") as fh:
        fh.write(" ".join(names) + "\\n")
    assert cni_netns_prefix == os.environ["EXPECTED_PREFIX"]
    assert [n.rsplit("-", 1)[0] for n in names] == [
        cni_netns_prefix + "-host", cni_netns_prefix + "-ctr", cni_netns_prefix + "-srv"], names
"""


def test_netns_prefix_defaults_and_validation(monkeypatch) -> None:
    monkeypatch.delenv("CNICORE_TEST_NETNS_PREFIX", raising=False)
    assert netns_prefix() == DEFAULT_NETNS_PREFIX == "cnitest"
    monkeypatch.setenv("CNICORE_TEST_NETNS_PREFIX", "from-env")
    assert netns_prefix() == "from-env"
    assert netns_prefix("from-option") == "from-option"
    for bad in ("", "-x", "a/b", "a b", "x" * 65, "../up"):
        if bad:
            with pytest.raises(ValueError, match="invalid network namespace prefix"):
                netns_prefix(bad)


@privileged
def test_netns_prefix_from_option_or_environment(tmp_path) -> None:
    """The fixtures name their namespaces (sandbox and session server) after ``--cni-netns-prefix``,
    else ``CNICORE_TEST_NETNS_PREFIX``; the option wins; a bad prefix is a usage error; nothing is left."""
    (tmp_path / "test_prefix.py").write_text(PREFIX_TEST)
    names_file = tmp_path / "names"
    tag = uuid.uuid4().hex[:6]
    env = {k: v for k, v in os.environ.items() if k != "CNICORE_TEST_NETNS_PREFIX"}
    env.update(NAMES_FILE=str(names_file), CNICORE_TEST_LAUNCHERS="python")

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args, str(tmp_path)],
                              cwd=tmp_path, env=dict(env, **extra), capture_output=True, text=True, timeout=300)

    for args, extra in ((("--cni-netns-prefix", f"opt{tag}"), {"EXPECTED_PREFIX": f"opt{tag}"}),
                        ((), {"CNICORE_TEST_NETNS_PREFIX": f"env{tag}", "EXPECTED_PREFIX": f"env{tag}"}),
                        (("--cni-netns-prefix", f"both{tag}"), {"CNICORE_TEST_NETNS_PREFIX": f"env{tag}",
                                                                "EXPECTED_PREFIX": f"both{tag}"})):
        proc = run(*args, **extra)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(names_file.read_text().split()) == 9
    bad = run("--cni-netns-prefix", "no/slash")
    assert bad.returncode == 4 and "invalid network namespace prefix 'no/slash'" in bad.stderr, bad.stderr
    left = [n for n in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
            if tag in n]
    assert not left, left


# -- ping ----------------------------------------------------------------------------------------


@privileged
def test_ping_ipv4_and_ipv6_bounded(cni_sandbox) -> None:
    host, ctr = cni_sandbox.host, cni_sandbox.container()
    run_in(host, "ip", "link", "add", "pa", "type", "veth", "peer", "name", "pb", "netns", os.path.basename(ctr.path))
    run_in(host, "ip", "addr", "add", "10.66.0.1/24", "dev", "pa")
    run_in(host, "ip", "-6", "addr", "add", "fd66::1/64", "dev", "pa", "nodad")
    run_in(ctr, "ip", "addr", "add", "10.66.0.2/24", "dev", "pb")
    run_in(ctr, "ip", "-6", "addr", "add", "fd66::2/64", "dev", "pb")  # with DAD: tentative for a while
    run_in(host, "ip", "link", "set", "pa", "up")
    run_in(ctr, "ip", "link", "set", "pb", "up")

    def received(out: str) -> int:  # ping keeps sending while the neighbour is resolved: maybe more
        found = re.search(r"(\d+) received", out)
        return int(found.group(1)) if found else 0

    assert received(ping(host, "10.66.0.2")) >= 1
    assert received(ping(host, "fd66::2", count=2, timeout=30)) >= 2  # waits out DAD, no sleep needed
    ping(ctr, "fd66::1", interface="pb")
    ping(ctr, "10.66.0.1", interface="10.66.0.2")

    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"ping 10\.66\.0\.9 from .*cnitest.*: not 1 reply within 2 s") as info:
        ping(host, "10.66.0.9", timeout=2)
    assert time.monotonic() - started < 15
    assert "exit 1" in str(info.value)
    with pytest.raises(AssertionError, match=r"not 3 replies within 1 s.*exit 2: .*unreachable"):
        ping(ctr, "10.55.0.1", count=3, timeout=1)  # no route: retried until the deadline
    with pytest.raises(ValueError):
        ping(host, "10.66.0.2", count=0)
    with pytest.raises(ValueError):
        ping(host, "not-an-address")


# -- resolv_conf ----------------------------------------------------------------------------------


def test_resolv_conf_written_and_removed(tmp_path) -> None:
    with resolv_conf(["10.1.0.53", "fd01::53"], domain="example.test", search=["a.test", "b.test"],
                     options=["ndots:2", "rotate"]) as path:
        with open(path) as fh:
            assert fh.read() == ("nameserver 10.1.0.53\nnameserver fd01::53\ndomain example.test\n"
                                 "search a.test b.test\noptions ndots:2 rotate\n")
        assert os.stat(path).st_mode & 0o777 == 0o644
    assert not os.path.exists(path)
    with pytest.raises(RuntimeError), resolv_conf(text="nameserver 192.0.2.1\n", directory=str(tmp_path)) as raw:
        assert os.path.dirname(raw) == str(tmp_path) and open(raw).read() == "nameserver 192.0.2.1\n"
        raise RuntimeError("the test failed")
    assert not os.path.exists(raw)  # removed on failure too


@privileged
def test_cni_resolv_conf_feeds_host_local(cni_runner, container_netns, cni_resolv_conf, tmp_path) -> None:
    """A plugin reporting DNS from a file: host-local's ``resolvConf``."""
    path = cni_resolv_conf(["10.1.0.53"], domain="example.test", search=["example.test"], options=["ndots:5"])
    runner = cni_runner("host-local")
    config = {"cniVersion": "1.0.0", "name": "dnsnet", "ipam": {
        "type": "host-local", "dataDir": str(tmp_path / "ipam"), "resolvConf": path,
        "ranges": [[{"subnet": "10.66.0.0/24"}]]}}
    result = runner.add(config, container_netns)
    assert result["dns"] == {"nameservers": ["10.1.0.53"], "domain": "example.test",
                             "search": ["example.test"], "options": ["ndots:5"]}
    runner.delete(config, container_netns)


@pytest.mark.privileged
def test_kernel_has_answers_from_this_kernel() -> None:
    """kernel_has tries the link for real (in a throwaway namespace): veth and bridge exist
    everywhere, a made-up kind nowhere. What this kernel lacks (dummy, bridge VLAN
    filtering) tests/guest/test_bridge_vlan.py proves the other way."""
    from cnicore import testing

    assert testing.kernel_has("veth") and testing.kernel_has("bridge")
    testing.KERNEL_FEATURES["nonsense"] = ("link add t0 type cnicore-no-such-kind",)
    try:
        assert not testing.kernel_has("nonsense")
    finally:
        del testing.KERNEL_FEATURES["nonsense"]
        testing._kernel_answers.pop("nonsense", None)
