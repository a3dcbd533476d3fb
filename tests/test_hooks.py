"""The hooks around a plugin: the sysctl policy (cnicore.sysctl), IPAM dispatch
(cnicore.ipam) and the PluginHost that registers plugin and policies.

Sysctls are only ever written inside throwaway container namespaces. The IPAM
tests use the tiny plugins in tests/fixture_plugins (copied into a package in a
temporary directory and served through generated launchers) and the Go
``static`` IPAM plugin from /usr/lib/cni.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

import pytest

from cnicore import ipam, skel, sysctl
from cnicore.cli.install import install
from cnicore.errors import ERR_INTERNAL, ERR_INVALID_NETWORK_CONFIG, CNIError
from cnicore.host import DEFAULT_POLICIES, PluginHost
from cnicore.launchers import read_header
from cnicore.ns import NetNS
from cnicore.plugin import hookimpl
from cnicore.registry import PluginEntry
from cnicore.request import Request
from cnicore.testing import Outcome, cni_env, run_executable
from cnicore.types import Result
from cnicore.version import ALL

FIXTURES = Path(__file__).parent / "fixture_plugins"
PACKAGE = "cnitest_fixture_plugins"
IPAM_TYPE = "test-static-ipam"
GO_STATIC = "/usr/lib/cni/static"
NO_NETNS = "/var/run/netns/cnitest-hooks-no-such-netns"  # ADD needs a path; these plugins never enter it

needs_go_static = pytest.mark.skipif(not os.path.exists(GO_STATIC), reason="Go static IPAM plugin not installed")


# -- sysctl: keys and paths --------------------------------------------------------------

@pytest.mark.parametrize(("key", "ifname", "path"), [
    ("net.ipv4.ip_forward", "", "/proc/sys/net/ipv4/ip_forward"),
    ("net.ipv4.conf.all.forwarding", "eth0", "/proc/sys/net/ipv4/conf/all/forwarding"),
    ("net.ipv4.conf.IFNAME.forwarding", "eth0", "/proc/sys/net/ipv4/conf/eth0/forwarding"),
    ("net.ipv6.conf.IFNAME.accept_ra", "eth0.100", "/proc/sys/net/ipv6/conf/eth0.100/accept_ra"),
    ("net.ipv4.neigh.IFNAME.IFNAME", "veth1", "/proc/sys/net/ipv4/neigh/veth1/IFNAME"),
    ("kernel.hostname", "", "/proc/sys/kernel/hostname"),
])
def test_key_to_path(key: str, ifname: str, path: str) -> None:
    assert sysctl.key_to_path(key, ifname) == path


@pytest.mark.parametrize(("key", "ifname"), [
    ("", ""),
    ("net..ipv4.ip_forward", ""),          # ".." in a key is an empty component
    ("net.ipv4.conf..forwarding", ""),
    (".net.ipv4.ip_forward", ""),
    ("net.ipv4.ip_forward.", ""),
    ("net/../kernel.hostname", ""),        # a separator in the key
    ("net.ipv4.conf/all.forwarding", ""),
    ("net.ipv4.conf.IFNAME.forwarding", ""),     # IFNAME without an interface
    ("net.ipv4.conf.IFNAME.forwarding", ".."),
    ("net.ipv4.conf.IFNAME.forwarding", "."),
    ("net.ipv4.conf.IFNAME.forwarding", "../../../kernel"),
    ("net.ipv4.conf.IFNAME.forwarding", "eth0/x"),
])
def test_escapes_are_refused_before_anything(key: str, ifname: str, container_netns) -> None:
    with pytest.raises(CNIError) as info:
        sysctl.key_to_path(key, ifname)
    assert info.value.code == ERR_INTERNAL  # the reference's code for a key it cannot use

    # Through write(): refused before any policy is even asked (and so before any write).
    asked: list[str] = []

    class Recorder:
        @hookimpl
        def cni_sysctl_check(self, key: str, path: str) -> None:
            asked.append(path)

    request = request_with_host(policies=[Recorder()])
    with pytest.raises(CNIError) as info:
        container_netns.do(sysctl.write, key, "1", ifname=ifname, request=request)
    assert info.value.code == ERR_INTERNAL
    assert asked == []


def test_is_net_path() -> None:
    assert sysctl.is_net_path("/proc/sys/net/ipv4/ip_forward")
    assert not sysctl.is_net_path("/proc/sys/net")
    assert not sysctl.is_net_path("/proc/sys/kernel/hostname")
    assert not sysctl.is_net_path("/proc/sys/net/../kernel/hostname")
    assert not sysctl.is_net_path("/proc/sys/network/x")


# -- sysctl: policies ---------------------------------------------------------------------

class MainPlugin:
    """A main plugin whose ADD returns one fixed address."""

    @hookimpl
    def cni_add(self, request: Request) -> Result:
        return Result("1.1.0", ips=[ipconfig("10.0.0.2/24")])


def ipconfig(address: str) -> Any:
    from cnicore.types import IPConfig

    return IPConfig(address)


def request_with_host(policies: tuple[object, ...] | list[object] = (), plugin: object | None = None) -> Request:
    """A request served by a PluginHost with ``policies``, as plugin code receives it."""
    request = Request("ADD", container_id="c1", ifname="eth0")
    request.host = PluginHost(plugin or MainPlugin(), "testmain", policies)
    return request


def test_default_policy_allows_only_net() -> None:
    path = sysctl.key_to_path("kernel.hostname")
    # Only checks here: nothing below writes, and kernel.* is not per namespace.
    with pytest.raises(CNIError, match=r"invalid net sysctl key: 'kernel.hostname'") as info:
        sysctl.check("kernel.hostname", "x", path)
    assert info.value.code == ERR_INTERNAL
    with pytest.raises(CNIError, match="only keys under /proc/sys/net/"):
        sysctl.check("kernel.hostname", "x", path, request_with_host())
    with pytest.raises(CNIError):
        sysctl.check("net.x", "x", "/proc/sys/net/../kernel/hostname")
    sysctl.check("net.ipv4.ip_forward", "1", sysctl.key_to_path("net.ipv4.ip_forward"))
    sysctl.check("net.ipv4.ip_forward", "1", sysctl.key_to_path("net.ipv4.ip_forward"), request_with_host())


class VetoForwarding:
    """A policy plugin: no forwarding sysctl may be written."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str, str, Request | None]] = []

    @hookimpl
    def cni_sysctl_check(self, key: str, value: str, path: str, request: Request | None) -> None:
        self.asked.append((key, value, path, request))
        if path.endswith("/forwarding"):
            raise CNIError(ERR_INVALID_NETWORK_CONFIG, f"policy: {key} may not be changed")


def _read_forwarding() -> str:
    return sysctl.read("/proc/sys/net/ipv4/conf/lo/forwarding")


def test_policy_plugin_vetoes_a_write(container_netns) -> None:
    veto = VetoForwarding()
    request = request_with_host(policies=[veto])
    before = container_netns.do(_read_forwarding)
    value = "0" if before == "1" else "1"
    with pytest.raises(CNIError, match=r"policy: net\.ipv4\.conf\.IFNAME\.forwarding may not be changed"):
        container_netns.do(sysctl.write, "net.ipv4.conf.IFNAME.forwarding", value, ifname="lo",
                           request=request)
    assert container_netns.do(_read_forwarding) == before
    assert veto.asked == [("net.ipv4.conf.IFNAME.forwarding", value,
                           "/proc/sys/net/ipv4/conf/lo/forwarding", request)]
    # The default policy is asked too: a non-net key is refused whatever the custom policy says.
    with pytest.raises(CNIError, match="invalid net sysctl key"):
        sysctl.check("kernel.hostname", "x", "/proc/sys/kernel/hostname", request)
    # Other net keys pass both policies.
    sysctl.check("net.ipv4.conf.lo.rp_filter", "0", "/proc/sys/net/ipv4/conf/lo/rp_filter", request)


def test_write_changes_only_the_namespace_it_runs_in(host_netns, container_netns) -> None:
    host_before = host_netns.do(_read_forwarding)
    before = container_netns.do(_read_forwarding)
    value = "0" if before == "1" else "1"

    old = container_netns.do(sysctl.write, "net.ipv4.conf.lo.forwarding", value, request=request_with_host())
    assert old == before
    assert container_netns.do(_read_forwarding) == value
    assert host_netns.do(_read_forwarding) == host_before
    # ... and through an IFNAME key with the default policy alone.
    assert container_netns.do(sysctl.write, "net.ipv4.conf.IFNAME.forwarding", before, ifname="lo") == value
    assert container_netns.do(_read_forwarding) == before
    assert host_netns.do(_read_forwarding) == host_before


def test_write_to_a_missing_sysctl_is_a_cni_error(container_netns) -> None:
    with pytest.raises(CNIError, match="failed to set sysctl") as info:
        container_netns.do(sysctl.write, "net.ipv4.conf.IFNAME.forwarding", "1", ifname="cnitest0")
    assert info.value.code == ERR_INTERNAL  # the kernel refused it, as the reference reports it


# -- PluginHost ---------------------------------------------------------------------------------

class Calls:
    def __init__(self) -> None:
        self.log: list[object] = []


def test_policies_see_calls_before_the_plugin() -> None:
    calls = Calls()

    class Main:
        @hookimpl
        def cni_add(self, request: Request) -> Result:
            calls.log.append(("main", request.host.name if request.host else None))
            return Result("1.1.0", ips=[ipconfig("10.0.0.2/24")])

        @hookimpl(tryfirst=True)
        def cni_del(self, request: Request) -> None:
            calls.log.append("main-del-tryfirst")

    class Wrapper:
        @hookimpl(wrapper=True)
        def cni_add(self, request: Request) -> Any:
            calls.log.append("wrapper-before")
            result = yield
            calls.log.append(("wrapper-after", [ip.address for ip in result.ips]))
            result.ips.append(ipconfig("fd00::2/64"))  # a policy may amend the result
            return result

    class OldStyle:
        @hookimpl(hookwrapper=True)
        def cni_add(self, request: Request) -> Any:
            calls.log.append("old-style-before")
            outcome = yield
            calls.log.append(("old-style-after", type(outcome.get_result()).__name__))

    class First:
        @hookimpl(tryfirst=True)
        def cni_add(self, request: Request) -> None:
            calls.log.append("tryfirst")

    class Plain:
        @hookimpl
        def cni_add(self, request: Request) -> None:
            calls.log.append("plain")

        @hookimpl
        def cni_del(self, request: Request) -> None:
            calls.log.append("plain-del")

    host = PluginHost(Main(), "testmain", [Wrapper(), OldStyle(), First(), Plain()])
    env = cni_env("ADD", netns=NO_NETNS, path="/nonexistent")
    code, out, err = skel.run(host, env, b'{"cniVersion":"1.0.0","name":"n","type":"testmain"}')
    assert (code, err) == (0, b""), out
    # Wrappers around everything, tryfirst first, then later registrations before
    # the plugin itself.
    assert calls.log == ["old-style-before", "wrapper-before", "tryfirst", "plain", ("main", "testmain"),
                         ("wrapper-after", ["10.0.0.2/24"]), ("old-style-after", "Result")]
    assert json.loads(out) == {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24"},
                                                             {"address": "fd00::2/64"}]}

    calls.log.clear()
    code, out, err = skel.run(host, cni_env("DEL", path="/nonexistent"), b'{"cniVersion":"1.0.0","name":"n"}')
    assert (code, out) == (0, b"")
    assert calls.log == ["main-del-tryfirst", "plain-del"]  # every DEL implementation runs


def test_a_policy_can_refuse_add_with_its_code() -> None:
    class Refuse:
        @hookimpl(tryfirst=True)
        def cni_add(self, request: Request) -> None:
            raise CNIError(51, "limited connectivity", "policy says no")

    ran: list[str] = []

    class Main:
        @hookimpl
        def cni_add(self, request: Request) -> Result:
            ran.append("main")
            return Result("1.1.0")

    code, out, _ = skel.run(PluginHost(Main(), "m", [Refuse()]), cni_env("ADD", netns=NO_NETNS),
                            b'{"cniVersion":"1.1.0","name":"n"}')
    assert code == 1 and ran == []
    assert json.loads(out) == {"cniVersion": "1.1.0", "code": 51, "msg": "limited connectivity",
                               "details": "policy says no"}


def test_host_registers_plugin_and_policies() -> None:
    veto = VetoForwarding()
    host = PluginHost(MainPlugin(), "testmain", [veto, "cnicore.sysctl"])
    names = {host.pm.get_name(p) for p in host.pm.get_plugins()}
    assert "testmain" in names
    plugins = host.pm.get_plugins()
    for module in DEFAULT_POLICIES:
        assert sys.modules[module] in plugins
    assert veto in plugins
    assert len(plugins) == 4  # a policy named twice is registered once
    assert host.pm is host.pm  # built once
    assert repr(host) == "PluginHost('testmain')"


def test_host_info_without_plugin_info_is_every_version() -> None:
    info = PluginHost(MainPlugin(), "testmain").info()
    assert info.supported_versions == ALL
    assert "testmain" in info.about
    code, out, err = skel.run(PluginHost(MainPlugin(), "testmain"), {"CNI_COMMAND": "VERSION"}, b"")
    assert (code, err) == (0, b"")
    assert json.loads(out) == {"cniVersion": "1.1.0", "supportedVersions": list(ALL)}


def test_version_does_not_import_pluggy() -> None:
    code = textwrap.dedent("""
        import sys
        from cnicore import skel
        from cnicore.host import PluginHost
        from cni_plugins_builtin import loopback
        host = PluginHost(loopback, "loopback", ["cnicore.sysctl"])
        code, out, err = skel.run(host, {"CNI_COMMAND": "VERSION"}, lambda: 1 / 0)
        assert code == 0, (out, err)
        sys.stdout.buffer.write(out)
        heavy = [m for m in sys.modules if m.split(".")[0] in ("pluggy", "pyroute2", "click")
                 or m in ("cnicore.hookspecs", "cnicore.ipam", "cnicore.sysctl", "importlib.metadata")]
        assert not heavy, heavy
        host.pm
        assert "pluggy" in sys.modules  # ...but a verb builds the PluginManager
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    assert json.loads(proc.stdout)["supportedVersions"] == list(ALL)


# -- IPAM dispatch ------------------------------------------------------------------------------

def _copy_package(root: Path, package: str, modules: list[str]) -> Path:
    pkg = root / package
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""Test plugins copied from tests/fixture_plugins."""\n')
    for module in modules:
        shutil.copy(FIXTURES / f"{module}.py", pkg / f"{module}.py")
    return root


def _forget(prefixes: tuple[str, ...]) -> None:
    for name in [m for m in sys.modules if m.split(".")[0] in prefixes]:
        del sys.modules[name]


@pytest.fixture
def fixture_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The fixture plugins as package ``cnitest_fixture_plugins`` on sys.path (restored after)."""
    root = _copy_package(tmp_path / "plugins", PACKAGE, ["static_ipam", "ipam_main", "deny_policy"])
    monkeypatch.syspath_prepend(str(root))  # restores all of sys.path afterwards
    importlib.invalidate_caches()
    _forget((PACKAGE,))
    yield root
    _forget((PACKAGE, "cnitest_fixture_ipam"))


def ipam_entry(module: str = f"{PACKAGE}.static_ipam") -> PluginEntry:
    return PluginEntry(IPAM_TYPE, module, "cnicore-tests", "0")


def python_alias(tmp_path: Path) -> str:
    """Another path to this same interpreter: launchers written for it run as their own process."""
    alias = tmp_path / "alias-bin" / "python"
    alias.parent.mkdir(exist_ok=True)
    if not alias.exists():
        alias.symlink_to(sys.executable)
    return str(alias)


def ipam_bindirs(tmp_path: Path, policies: tuple[str, ...] | list[str] = ()) -> tuple[str, str]:
    """Two CNI bin dirs with a launcher for the test IPAM plugin: one this process runs
    in-process, one it must exec."""
    here, there = tmp_path / "bin-here", tmp_path / "bin-exec"
    assert install(str(here), entries=[ipam_entry()], policies=policies).added == [IPAM_TYPE]
    assert install(str(there), entries=[ipam_entry()], python=python_alias(tmp_path),
                   policies=policies).added == [IPAM_TYPE]
    here_header = read_header(str(here / IPAM_TYPE))
    there_header = read_header(str(there / IPAM_TYPE))
    assert here_header is not None and here_header.runs_here()
    assert there_header is not None and not there_header.runs_here()
    return str(here), str(there)


def main_plugin() -> ModuleType:
    return importlib.import_module(f"{PACKAGE}.ipam_main")


def run_main(host_netns, command: str, config: dict[str, object], path: str, netns: str = NO_NETNS,
             plugin: object = None) -> Outcome:
    """The main test plugin served in-process through skel.run, in the sandbox's host netns."""
    env = cni_env(command, netns=netns if command != "DEL" else "", path=path)
    host = PluginHost(plugin or main_plugin(), "testmain")
    stdin = json.dumps(config).encode()
    return Outcome(*host_netns.do(skel.run, host, env, stdin))


def ipam_config(version: str, **ipam_extra: object) -> dict[str, Any]:
    ipam_conf: dict[str, object] = {"type": IPAM_TYPE,
                                    "addresses": [{"address": "10.9.9.2/24", "gateway": "10.9.9.1"},
                                                  {"address": "fd00:9::2/64"}],
                                    "routes": [{"dst": "0.0.0.0/0", "gw": "10.9.9.1"}],
                                    "nameservers": ["10.9.9.53"]}
    ipam_conf.update(ipam_extra)
    return {"cniVersion": version, "name": "ipam-net", "type": "testmain", "ipam": ipam_conf}


@pytest.mark.parametrize("version", ["0.2.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
def test_ipam_in_process_and_exec_give_the_same_bytes(version: str, fixture_plugins: Path, tmp_path: Path,
                                                      host_netns, container_netns) -> None:
    here, there = ipam_bindirs(tmp_path)
    config = ipam_config(version)

    _forget((PACKAGE,))
    execd = run_main(host_netns, "ADD", config, there, container_netns.path).ok()
    # The exec path did not import the IPAM plugin here (only the main plugin).
    assert f"{PACKAGE}.static_ipam" not in sys.modules
    in_process = run_main(host_netns, "ADD", config, here, container_netns.path).ok()
    assert f"{PACKAGE}.static_ipam" in sys.modules

    assert in_process.stdout == execd.stdout
    result = json.loads(in_process.stdout)
    assert result["cniVersion"] == version
    if version == "0.2.0":
        assert result["ip4"] == {"ip": "10.9.9.2/24", "gateway": "10.9.9.1",
                                 "routes": [{"dst": "0.0.0.0/0", "gw": "10.9.9.1"}]}
        assert result["ip6"] == {"ip": "fd00:9::2/64"}
    else:
        assert [ip["address"] for ip in result["ips"]] == ["10.9.9.2/24", "fd00:9::2/64"]
        assert result["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.9.9.1"}]
    assert result["dns"] == {"nameservers": ["10.9.9.53"]}

    for path in (here, there):
        deleted = run_main(host_netns, "DEL", config, path)
        assert (deleted.code, deleted.stdout) == (0, b""), deleted
        if version in ("0.4.0", "1.0.0", "1.1.0"):
            checked = run_main(host_netns, "CHECK", dict(config, prevResult=result), path,
                               container_netns.path)
            assert (checked.code, checked.stdout) == (0, b""), checked


@pytest.mark.parametrize("version", ["0.2.0", "1.0.0"])
def test_ipam_errors_propagate_with_their_code(version: str, fixture_plugins: Path, tmp_path: Path,
                                               host_netns) -> None:
    here, there = ipam_bindirs(tmp_path)
    config = ipam_config(version, addresses=[])
    outcomes = [run_main(host_netns, "ADD", config, path) for path in (here, there)]
    assert outcomes[0].stdout == outcomes[1].stdout
    for outcome in outcomes:
        assert outcome.code == 1
        assert outcome.json == {"cniVersion": version, "code": ERR_INVALID_NETWORK_CONFIG,
                                "msg": "static-ipam: no addresses configured",
                                "details": "ipam.addresses must list at least one address"}

    # An IPAM plugin that is not there at all.
    missing = run_main(host_netns, "ADD", dict(config, ipam={"type": "cnitest-no-such-ipam"}), here)
    assert missing.code == 1 and missing.error is not None
    assert 'failed to find plugin "cnitest-no-such-ipam"' in missing.error.msg
    # A config without an IPAM type: the reference's delegate lookup of an empty name.
    untyped = run_main(host_netns, "ADD", dict(config, ipam={}), here)
    assert untyped.error == CNIError(ERR_INTERNAL, "no plugin name provided")


def test_ipam_launcher_policies_apply_in_process_too(fixture_plugins: Path, tmp_path: Path,
                                                     host_netns) -> None:
    here, there = ipam_bindirs(tmp_path, policies=[f"{PACKAGE}.deny_policy"])
    config = dict(ipam_config("1.0.0"), cnitestDeny=True)
    outcomes = [run_main(host_netns, "ADD", config, path) for path in (here, there)]
    assert outcomes[0].stdout == outcomes[1].stdout
    for outcome in outcomes:
        assert outcome.json == {"cniVersion": "1.0.0", "code": ERR_INVALID_NETWORK_CONFIG,
                                "msg": "denied by cnitest policy", "details": f"plugin {IPAM_TYPE}"}
    allowed = [run_main(host_netns, "ADD", ipam_config("1.0.0"), path).ok() for path in (here, there)]
    assert allowed[0].stdout == allowed[1].stdout


@needs_go_static
@pytest.mark.interop
@pytest.mark.parametrize("version", ["0.3.1", "0.4.0", "1.0.0"])
def test_go_ipam_binary_is_execd(version: str, fixture_plugins: Path, tmp_path: Path, host_netns) -> None:
    config = {"cniVersion": version, "name": "ipam-net", "type": "testmain",
              "ipam": {"type": "static", "addresses": [{"address": "10.9.9.2/24", "gateway": "10.9.9.1"}]}}
    go = run_main(host_netns, "ADD", config, os.path.dirname(GO_STATIC)).ok()
    result = go.json
    assert result["cniVersion"] == version
    assert [(ip["address"], ip.get("gateway")) for ip in result["ips"]] == [("10.9.9.2/24", "10.9.9.1")]
    if version != "1.0.0":
        assert result["ips"][0]["version"] == "4"

    # Our Python IPAM plugin, given the same config, prints the same bytes.
    here, _ = ipam_bindirs(tmp_path)
    ours = run_main(host_netns, "ADD", dict(config, ipam=dict(config["ipam"], type=IPAM_TYPE)), here).ok()
    assert ours.stdout == go.stdout

    deleted = run_main(host_netns, "DEL", config, os.path.dirname(GO_STATIC))
    assert (deleted.code, deleted.stdout) == (0, b""), deleted
    # The Go plugin's own errors come back with their code.
    bad = run_main(host_netns, "ADD", dict(config, ipam={"type": "static", "addresses": [{"address": "nope"}]}),
                   os.path.dirname(GO_STATIC))
    assert bad.code == 1 and bad.error is not None and bad.error.code != 0


@pytest.mark.privileged
def test_launcher_delegating_to_a_launcher_from_another_root(tmp_path: Path, host_netns,
                                                             container_netns,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A main plugin's launcher runs an IPAM launcher of the same interpreter in-process,
    although the IPAM plugin lives in a directory only the IPAM launcher knows."""
    main_root = _copy_package(tmp_path / "main-root", PACKAGE, ["ipam_main"])
    ipam_root = _copy_package(tmp_path / "ipam-root", "cnitest_fixture_ipam", ["static_ipam"])
    bindir = tmp_path / "bin"
    monkeypatch.syspath_prepend(str(main_root))
    monkeypatch.syspath_prepend(str(ipam_root))
    importlib.invalidate_caches()
    try:
        report = install(str(bindir), entries=[
            PluginEntry("testmain", f"{PACKAGE}.ipam_main", "cnicore-tests", "0"),
            ipam_entry("cnitest_fixture_ipam.static_ipam")])
    finally:
        _forget((PACKAGE, "cnitest_fixture_ipam"))
    assert report.added == sorted(["testmain", IPAM_TYPE])
    main_header = read_header(str(bindir / "testmain"))
    assert main_header is not None and str(ipam_root) not in main_header.path

    for version in ("0.4.0", "1.1.0"):
        config = ipam_config(version)
        # CNI_PATH defaults to the launcher's own directory first.
        added = run_executable(str(bindir / "testmain"), "ADD", config, host=host_netns,
                               netns=container_netns).ok()
        assert added.json["cniVersion"] == version
        assert [ip["address"] for ip in added.json["ips"]] == ["10.9.9.2/24", "fd00:9::2/64"]
        deleted = run_executable(str(bindir / "testmain"), "DEL", config, host=host_netns,
                                 netns=container_netns)
        assert (deleted.code, deleted.stdout) == (0, b""), deleted


def test_run_ipam_without_a_host_uses_the_default_dispatch(fixture_plugins: Path, tmp_path: Path,
                                                           host_netns) -> None:
    here, _ = ipam_bindirs(tmp_path)
    config = ipam_config("1.0.0")
    stdin = json.dumps(config).encode()
    request = Request("ADD", container_id="c1", netns=NO_NETNS, ifname="eth0", path=here, stdin=stdin,
                      config=config, cni_version="1.0.0", env=cni_env("ADD", netns=NO_NETNS, path=here))
    assert request.host is None
    result = host_netns.do(ipam.run_ipam, request)
    assert isinstance(result, Result)
    assert [ip.address for ip in result.ips] == ["10.9.9.2/24", "fd00:9::2/64"]
    assert host_netns.do(ipam.run_ipam, request, "DEL") is None


# -- the direct-dispatch fast path -------------------------------------------------

def test_firstresult_table_matches_the_hookspecs():
    from cnicore import hookspecs
    from cnicore.host import FIRSTRESULT_HOOKS

    declared = {name for name in dir(hookspecs) if name.startswith("cni_")
                and getattr(getattr(hookspecs, name), "cnicore_spec", {}).get("firstresult")}
    assert declared == set(FIRSTRESULT_HOOKS)


def test_single_plain_implementation_is_called_without_pluggy():
    probe = (
        "import sys, json\n"
        "import cni_plugins_builtin.loopback as lb\n"
        "from cnicore.host import PluginHost\n"
        "from cnicore import skel\n"
        "env = {'CNI_COMMAND': 'DEL', 'CNI_CONTAINERID': 'c', 'CNI_IFNAME': 'lo', 'CNI_PATH': '/x'}\n"
        "code, out, err = skel.run(PluginHost(lb, 'loopback'), env, b'{\"cniVersion\":\"1.0.0\",\"name\":\"n\"}')\n"
        "print(json.dumps([code, 'pluggy' in sys.modules]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [0, False]


def test_a_second_implementation_goes_through_pluggy_in_order():
    from cnicore.host import PluginHost
    from cnicore.plugin import hookimpl
    from cnicore.request import Request

    calls = []

    class Main:
        @hookimpl
        def cni_del(self, request):
            calls.append(("main", request.container_id))

    class Audit:
        @hookimpl(tryfirst=True)
        def cni_del(self, request):
            calls.append(("audit", request.container_id))

    host = PluginHost(Main(), "main", policies=[Audit()])
    host.call("DEL", Request("DEL", container_id="c9"))
    assert calls == [("audit", "c9"), ("main", "c9")]
    assert host._pm is not None  # the real PluginManager ran it

    calls.clear()
    solo = PluginHost(Main(), "main")
    solo.call("DEL", Request("DEL", container_id="c8"))
    assert calls == [("main", "c8")] and solo._pm is None
    solo.validate()  # pluggy accepts the implementation the fast path called


# -- sysctl: the plain-os reads and writes behave as open() did ------------------------------

def _read_with_open(path: str) -> str:
    with open(path) as fh:
        return fh.read().strip()


def _write_with_open(path: str, value: str) -> None:
    with open(path, "w") as fh:
        fh.write(value)


def _outcome(fn: Any, *args: Any) -> tuple[str, object]:
    try:
        return "ok", fn(*args)
    except OSError as exc:
        return "error", (type(exc), exc.errno, str(exc))


def test_sysctl_os_calls_match_open(container_netns: NetNS) -> None:
    """sysctl.read/write_checked use os.open/read/write (a file object costs more than
    the kernel's work); same values, same exceptions, same messages as open()."""
    def compare() -> None:
        keys = ["net.ipv4.ip_forward", "net.ipv4.conf.lo.arp_notify", "net.ipv6.conf.lo.accept_ra",
                "net.ipv4.ip_local_port_range", "net.core.somaxconn", "net.ipv4.conf.nope.arp_notify"]
        for key in keys:
            path = sysctl.key_to_path(key)
            assert _outcome(sysctl.read, path) == _outcome(_read_with_open, path), key
        path = sysctl.key_to_path("net.ipv4.conf.lo.arp_notify")
        for value in ("1", "0", "2", " 1\n"):
            _write_with_open(path, value)
            after_theirs = sysctl.read(path)
            sysctl.write_checked(path, "3", "k")
            sysctl.write_checked(path, value, "k")
            assert sysctl.read(path) == after_theirs, value
        with pytest.raises(CNIError) as info:
            sysctl.write_checked(path, "not-a-number", "k")
        try:
            _write_with_open(path, "not-a-number")
        except OSError as exc:
            assert info.value.msg == f"failed to set sysctl k=not-a-number: {exc}"
        missing = sysctl.key_to_path("net.ipv4.conf.nope.arp_notify")
        with pytest.raises(CNIError) as info:
            sysctl.write_checked(missing, "1", "k")
        try:
            _write_with_open(missing, "1")
        except OSError as exc:
            assert info.value.msg == f"failed to set sysctl k=1: {exc}"
        # skip_same: the value is already there, so nothing is written (and the old value returned).
        sysctl.write_checked(path, "1", "k")
        assert sysctl.write_checked(path, "1", "k", skip_same=True) == "1"

    container_netns.do(compare)
