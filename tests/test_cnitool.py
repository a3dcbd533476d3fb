"""``cnitool`` end to end: the reference's add/check/del/gc/status driving real plugins,
and our own validate, version, netns and plugins commands.

The network commands run the Go reference plugins (Debian's v1.1.1 in /usr/lib/cni)
and our plugins (launchers installed by ``cnitool plugins install`` into a tmp dir)
through one bridge + host-local + tuning conflist, and compare what comes out:
the printed result, the container's state, the result cache file (Go libcni's
``cachedInfo`` layout) and the host-local store.

Safety: every cnitool that may exec a plugin is started from inside the
sandbox's private host namespace (:func:`run_in`), so the plugins inherit it
and the machine's network is never touched. NETCONFPATH, CNI_CACHE_DIR and
every plugin dataDir live under ``tmp_path``; the only traffic is a ping from
a container to its bridge's gateway inside the sandbox. Tests that need no
namespace use networks whose only plugin does not exist, so nothing can be
exec'd even if argument checking were broken.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from cnicore.testing import Sandbox

CNITOOL = os.path.join(os.path.dirname(sys.executable), "cnitool")
GO_DIR = "/usr/lib/cni"
MACHINE_NETNS = os.stat("/proc/self/ns/net").st_ino
NET = "clinet"
BR = "cnitool0"
SUBNET, GW = "10.123.0.0/24", "10.123.0.1"
MAC = "c2:11:22:33:44:55"
ALL = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
#: ``cachedInfo``'s JSON fields in Go's struct order (libcni/api.go).
GO_CACHE_KEYS = ["kind", "containerId", "config", "ifName", "networkName", "netns", "cniArgs",
                 "capabilityArgs", "result"]
#: Environment a caller could leak into cnitool; every test sets what it needs.
CNI_ENV = ("CNI_PATH", "NETCONFPATH", "CNI_ARGS", "CAP_ARGS", "CNI_IFNAME", "CNI_CACHE_DIR",
           "CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "PYTHONPATH")

privileged = pytest.mark.privileged
interop = pytest.mark.interop
#: The plugin sets a network test runs with; "go" needs the Debian plugins.
PLUGIN_SETS = [pytest.param("go", marks=interop), "ours"]


# -- helpers --------------------------------------------------------------------------


def need_go(*names: str) -> None:
    for name in names or ("bridge", "host-local", "tuning"):
        if not os.access(os.path.join(GO_DIR, name), os.X_OK):
            pytest.skip(f"{GO_DIR}/{name} not installed")


@pytest.fixture(scope="module")
def bindir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A CNI bin dir holding only our plugins' launchers, installed by cnitool itself."""
    path = tmp_path_factory.mktemp("cnitool-bin") / "bin"
    proc = subprocess.run([CNITOOL, "plugins", "install", str(path)], capture_output=True,
                          text=True, timeout=60, env=base_env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("    added: ")
    assert all(os.access(path / name, os.X_OK) for name in ("bridge", "host-local", "tuning"))
    return str(path)


def cni_path(plugins: str, bindir: str) -> str:
    if plugins == "go":
        need_go()
        return GO_DIR
    return bindir


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CNI_ENV}
    env.update(extra)
    return env


def container_id(netns_path: str) -> str:
    """The Go cnitool's: "cnitool-" + the first 10 bytes of sha512(netns path), in hex."""
    return "cnitool-" + hashlib.sha512(netns_path.encode()).digest()[:10].hex()


def run_in(host, argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a command from inside ``host`` (never the machine's netns)."""

    def guarded() -> subprocess.CompletedProcess[str]:
        assert os.stat("/proc/thread-self/ns/net").st_ino != MACHINE_NETNS, "refusing: machine netns"
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)

    return host.do(guarded)


class Net:
    """A conf dir, a cache dir and plugin data dirs under one tmp dir, and cnitool runs on them."""

    def __init__(self, root: Path, path: str, host=None) -> None:
        self.root = root
        self.path = path
        self.host = host
        self.confdir = root / "net.d"
        self.cache = root / "cache"
        self.ipam = root / "ipam"
        self.tuning = root / "tuning"
        self.confdir.mkdir(parents=True)

    def plugins(self, subnet: str = SUBNET, bridge: str = BR, **bridge_extra: object) -> list[dict]:
        return [{"type": "bridge", "bridge": bridge, "isGateway": True, **bridge_extra,
                 "ipam": {"type": "host-local", "subnet": subnet, "dataDir": str(self.ipam)}},
                {"type": "tuning", "capabilities": {"mac": True}, "dataDir": str(self.tuning)}]

    def write(self, version: str = "1.0.0", name: str = NET, plugins: list[dict] | None = None) -> bytes:
        """Write ``<name>.conflist`` and return its bytes (what the cache must record)."""
        data = json.dumps({"cniVersion": version, "name": name,
                           "plugins": self.plugins() if plugins is None else plugins}).encode()
        (self.confdir / f"{name}.conflist").write_bytes(data)
        return data

    def env(self, **extra: str) -> dict[str, str]:
        return base_env(NETCONFPATH=str(self.confdir), CNI_PATH=self.path,
                        CNI_CACHE_DIR=str(self.cache), **extra)

    def run(self, *argv: str, **extra: str) -> subprocess.CompletedProcess[str]:
        env = self.env(**extra)
        if self.host is None:
            return subprocess.run([CNITOOL, *argv], env=env, capture_output=True, text=True,
                                  timeout=60, stdin=subprocess.DEVNULL)
        return run_in(self.host, [CNITOOL, *argv], env)

    def ok(self, *argv: str, **extra: str) -> str:
        proc = self.run(*argv, **extra)
        assert proc.returncode == 0 and proc.stderr == "", (argv, proc.stdout, proc.stderr)
        return proc.stdout

    def fails(self, *argv: str, **extra: str) -> str:
        """stderr of a run that must fail like the Go tool: exit 1, nothing on stdout."""
        proc = self.run(*argv, **extra)
        assert proc.returncode == 1 and proc.stdout == "", (argv, proc.stdout, proc.stderr)
        assert proc.stderr.endswith("\n") and "Traceback" not in proc.stderr
        return proc.stderr

    def cache_files(self) -> list[str]:
        results = self.cache / "results"
        return sorted(os.listdir(results)) if results.exists() else []

    def reservations(self, name: str = NET) -> list[str]:
        """host-local's reserved addresses (Go's store layout, shared with ours)."""
        store = self.ipam / name
        if not store.exists():
            return []
        return sorted(p for p in os.listdir(store) if p != "lock" and not p.startswith("last_reserved_ip"))

    def tuning_backups(self) -> list[str]:
        return sorted(os.listdir(self.tuning)) if self.tuning.exists() else []


def ctr_ip(ctr, *args: str) -> str:
    """``ip netns exec <ctr> ip ...`` (the container's own view)."""
    name = os.path.basename(ctr.path)
    proc = subprocess.run(["ip", "netns", "exec", name, "ip", *args], capture_output=True, text=True,
                          timeout=30, stdin=subprocess.DEVNULL)
    return proc.stdout if proc.returncode == 0 else ""


def ctr_addrs(ctr, ifname: str = "eth0") -> list[str]:
    return [line.split()[3] for line in ctr_ip(ctr, "-o", "-4", "addr", "show", "dev", ifname).splitlines()]


def ctr_links(ctr) -> list[str]:
    return sorted(link["ifname"] for link in json.loads(ctr_ip(ctr, "-j", "link") or "[]"))


def ctr_mac(ctr, ifname: str = "eth0") -> str:
    (link,) = json.loads(ctr_ip(ctr, "-j", "link", "show", "dev", ifname))
    return link["address"]


def host_links(host) -> list[str]:
    proc = run_in(host, ["ip", "-j", "link"], dict(os.environ))
    return sorted(link["ifname"] for link in json.loads(proc.stdout))


def ping(ctr, address: str) -> bool:
    name = os.path.basename(ctr.path)
    proc = subprocess.run(["ip", "netns", "exec", name, "ping", "-c", "1", "-W", "1", address],
                          capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    return proc.returncode == 0


def keys_sorted(value: object) -> bool:
    """Every object's keys sorted, at every depth (Go encoding a map)."""
    if isinstance(value, dict):
        return list(value) == sorted(value) and all(keys_sorted(v) for v in value.values())
    if isinstance(value, list):
        return all(keys_sorted(v) for v in value)
    return True


def check_printed(stdout: str, version: str) -> dict:
    """The ADD output is Go's ``result.Print()``: MarshalIndent with 4 spaces, no newline."""
    assert stdout and not stdout.endswith("\n")
    result = json.loads(stdout)
    assert stdout == json.dumps(result, indent=4)
    assert result["cniVersion"] == version
    if version == "1.0.0":
        # types100.Result marshals through a map: keys sorted, an empty dns dropped.
        assert keys_sorted(result) and "dns" not in result
    else:
        # types040.Result keeps its struct order and always prints dns.
        assert list(result) == ["cniVersion", "interfaces", "ips", "dns"]
        assert list(result["ips"][0]) == ["version", "interface", "address", "gateway"]
        assert [list(i) for i in result["interfaces"]] == [["name", "mac"], ["name", "mac"],
                                                           ["name", "mac", "sandbox"]]
    return result


def check_cache(net: Net, ctr, conf: bytes, printed: dict, ifname: str = "eth0",
                cni_args: list[list[str]] | None = None, cap_args: dict | None = None) -> dict:
    """The cache file Go's libcni would write for this ADD, field by field."""
    cid = container_id(ctr.path)
    name = f"{NET}-{cid}-{ifname}"
    assert name in net.cache_files()
    path = net.cache / "results" / name
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    raw = path.read_bytes()
    entry = json.loads(raw)
    expected_keys = [k for k in GO_CACHE_KEYS
                     if (k != "cniArgs" or cni_args) and (k != "capabilityArgs" or cap_args)]
    assert list(entry) == expected_keys
    # json.Marshal: compact, and the result (a map) with sorted keys.
    assert raw == json.dumps(entry, separators=(",", ":")).encode()
    assert keys_sorted(entry["result"])
    assert entry["kind"] == "cniCacheV1"
    assert entry["containerId"] == cid and entry["ifName"] == ifname and entry["networkName"] == NET
    assert entry["netns"] == ctr.path
    assert base64.b64decode(entry["config"]) == conf  # the conflist's own bytes ([]byte -> base64)
    assert entry.get("cniArgs") == cni_args
    assert entry.get("capabilityArgs") == cap_args
    assert entry["result"] == printed
    return entry


def comparable(result: dict) -> dict:
    """A result without what differs between two runs: MACs, the veth name, sandbox paths."""
    out = json.loads(json.dumps(result))
    for intf in out.get("interfaces", []):
        intf.pop("mac", None)
        if "sandbox" in intf:
            intf["sandbox"] = "SANDBOX"
        if intf["name"].startswith("veth"):
            intf["name"] = "veth"
    return out


def assert_nothing_left(net: Net, host, *ctrs, ifname: str = "eth0") -> None:
    for ctr in ctrs:
        assert ifname not in ctr_links(ctr)
    assert host_links(host) == sorted(["lo", BR])  # the bridge stays, as with Go's DEL
    assert net.cache_files() == []
    assert net.reservations() == []
    assert net.tuning_backups() == []


# -- ADD / CHECK / DEL ------------------------------------------------------------------


def add_check_del(net: Net, host, ctr, version: str) -> tuple[dict, dict]:
    """One full round; returns the printed result and the cache entry."""
    conf = net.write(version)
    out = net.ok("add", NET, ctr.path)
    result = check_printed(out, version)
    assert [ip["address"] for ip in result["ips"]] == ["10.123.0.2/24"]
    assert result["interfaces"][2]["sandbox"] == ctr.path
    assert ctr_addrs(ctr) == ["10.123.0.2/24"]
    assert ctr_mac(ctr) == result["interfaces"][2]["mac"]
    assert ping(ctr, GW)
    entry = check_cache(net, ctr, conf, result)
    assert net.reservations() == ["10.123.0.2"]
    assert net.ok("check", NET, ctr.path) == ""
    assert net.ok("del", NET, ctr.path) == ""
    assert_nothing_left(net, host, ctr)
    # DEL is idempotent, like Go's (no cache, no link: still success).
    assert net.ok("del", NET, ctr.path) == ""
    return result, entry


@privileged
@interop
@pytest.mark.parametrize("version", ["1.0.0", "0.4.0"])
def test_go_and_our_plugins_give_the_same_results(cni_sandbox, bindir, tmp_path, version) -> None:
    """The same conflist run once with Go's plugins and once with ours (each in its own
    sandbox): results, container state and cache files agree apart from MACs, veth
    names and the sandbox path."""
    need_go()
    go_net = Net(tmp_path / "go", GO_DIR, cni_sandbox.host)
    go_result, go_entry = add_check_del(go_net, cni_sandbox.host, cni_sandbox.container(), version)
    with Sandbox() as ours_sandbox:
        ours_net = Net(tmp_path / "ours", bindir, ours_sandbox.host)
        ours_result, ours_entry = add_check_del(ours_net, ours_sandbox.host, ours_sandbox.container(),
                                                version)
    assert comparable(ours_result) == comparable(go_result)
    assert list(ours_entry) == list(go_entry)
    assert comparable(ours_entry["result"]) == comparable(go_entry["result"])
    go_conf, ours_conf = (json.loads(base64.b64decode(e["config"])) for e in (go_entry, ours_entry))
    assert go_conf["plugins"][0]["ipam"].pop("dataDir") != ours_conf["plugins"][0]["ipam"].pop("dataDir")
    for conf in (go_conf, ours_conf):
        del conf["plugins"][1]["dataDir"]
    assert go_conf == ours_conf


@privileged
@pytest.mark.parametrize("plugins", PLUGIN_SETS)
def test_container_id_follows_the_netns_path_spelling(cni_sandbox, bindir, tmp_path, monkeypatch,
                                                      plugins) -> None:
    """The container ID hashes the netns path as Go's filepath.Abs spells it: cleaned,
    and relative paths joined to $PWD when that names the working directory (a
    shell's logical path through the /var/run symlink), else to the physical one."""
    net = Net(tmp_path, cni_path(plugins, bindir), cni_sandbox.host)
    net.write()
    ctr = cni_sandbox.container()
    logical_dir, name = os.path.split(ctr.path)
    physical = os.path.join(os.path.realpath(logical_dir), name)
    monkeypatch.chdir(logical_dir)
    env = net.env(PWD=logical_dir)
    proc = run_in(cni_sandbox.host, [CNITOOL, "add", NET, name], env)
    assert proc.returncode == 0, proc.stderr
    assert net.cache_files() == [f"{NET}-{container_id(ctr.path)}-eth0"]
    assert json.loads(proc.stdout)["interfaces"][2]["sandbox"] == ctr.path
    unclean = os.path.join(logical_dir, ".", "..", os.path.basename(logical_dir), name)
    assert net.ok("check", NET, unclean) == ""
    if physical != ctr.path:
        # A stale $PWD is ignored: the physical path is another container to Go.
        env["PWD"] = str(tmp_path)
        proc = run_in(cni_sandbox.host, [CNITOOL, "check", NET, name], env)
        assert proc.returncode == 1, proc.stderr  # no cached result, no host-local reservation
        assert net.cache_files() == [f"{NET}-{container_id(ctr.path)}-eth0"]
    assert net.ok("del", NET, "/" + ctr.path) == ""
    assert_nothing_left(net, cni_sandbox.host, ctr)


@privileged
@interop
@pytest.mark.parametrize("first", ["go", "ours"])
def test_mixed_add_and_del(cni_sandbox, bindir, tmp_path, first) -> None:
    """ADD with one plugin set, CHECK and DEL with the other (switching CNI_PATH): the
    cache, host-local store and tuning backups are shared formats, nothing is left."""
    need_go()
    paths = {"go": GO_DIR, "ours": bindir}
    second = "ours" if first == "go" else "go"
    net = Net(tmp_path, paths[first], cni_sandbox.host)
    conf = net.write()
    ctr = cni_sandbox.container()
    printed = json.loads(net.ok("add", NET, ctr.path, CAP_ARGS=json.dumps({"mac": MAC})))
    check_cache(net, ctr, conf, printed, cap_args={"mac": MAC})
    assert ctr_mac(ctr) == MAC and net.tuning_backups()
    net.path = paths[second]
    assert net.ok("check", NET, ctr.path, CAP_ARGS=json.dumps({"mac": MAC})) == ""
    assert net.ok("del", NET, ctr.path) == ""
    assert_nothing_left(net, cni_sandbox.host, ctr)


# -- CNI_IFNAME, CNI_ARGS, CAP_ARGS -------------------------------------------------------


@privileged
def test_ifname_from_env_flag_and_global_flag(cni_sandbox, bindir, tmp_path) -> None:
    """CNI_IFNAME, then ``--ifname`` after the command (wins over the env), and ``-i``
    before it (Go's flag is global): each names the interface and the cache file."""
    net = Net(tmp_path, bindir, cni_sandbox.host)
    conf = net.write()
    ctr = cni_sandbox.container()
    runs = [(("add", NET, ctr.path), {"CNI_IFNAME": "net1"}, "net1"),
            (("add", NET, ctr.path, "--ifname", "net2"), {"CNI_IFNAME": "net1"}, "net2"),
            (("-i", "net3", "add", NET, ctr.path), {}, "net3")]
    for argv, env, ifname in runs:
        printed = json.loads(net.ok(*argv, **env))
        assert printed["interfaces"][2]["name"] == ifname
        check_cache(net, ctr, conf, printed, ifname=ifname)
    assert ctr_links(ctr) == ["lo", "net1", "net2", "net3"]
    assert [ctr_addrs(ctr, i) for i in ("net1", "net2", "net3")] == [
        ["10.123.0.2/24"], ["10.123.0.3/24"], ["10.123.0.4/24"]]
    assert net.ok("check", NET, ctr.path, "-i", "net2") == ""
    assert net.ok("del", NET, ctr.path, "-i", "net2", CNI_IFNAME="net1") == ""
    assert ctr_links(ctr) == ["lo", "net1", "net3"] and len(net.cache_files()) == 2
    assert net.ok("del", NET, ctr.path, CNI_IFNAME="net1") == ""
    assert net.ok("--ifname", "net3", "del", NET, ctr.path) == ""
    assert ctr_links(ctr) == ["lo"]
    assert net.cache_files() == [] and net.reservations() == [] and net.tuning_backups() == []


@privileged
@pytest.mark.parametrize("plugins", PLUGIN_SETS)
def test_cni_args_reach_the_plugins(cni_sandbox, bindir, tmp_path, plugins) -> None:
    """``IP=`` makes host-local pick that address; the pairs are cached as Go's [][2]string."""
    net = Net(tmp_path, cni_path(plugins, bindir), cni_sandbox.host)
    conf = net.write()
    ctr = cni_sandbox.container()
    args = "IgnoreUnknown=1;IP=10.123.0.42"
    printed = check_printed(net.ok("add", NET, ctr.path, CNI_ARGS=args), "1.0.0")
    assert printed["ips"][0]["address"] == "10.123.0.42/24"
    assert ctr_addrs(ctr) == ["10.123.0.42/24"] and net.reservations() == ["10.123.0.42"]
    check_cache(net, ctr, conf, printed, cni_args=[["IgnoreUnknown", "1"], ["IP", "10.123.0.42"]])
    assert net.ok("check", NET, ctr.path, CNI_ARGS=args) == ""
    assert net.ok("del", NET, ctr.path, CNI_ARGS=args) == ""
    assert_nothing_left(net, cni_sandbox.host, ctr)


@privileged
@pytest.mark.parametrize("plugins", PLUGIN_SETS)
def test_cap_args_reach_only_plugins_declaring_them(cni_sandbox, bindir, tmp_path, plugins) -> None:
    """tuning declares ``mac``: it gets ``runtimeConfig.mac`` and sets the MAC; the
    undeclared ``portMappings`` is cached but given to no plugin."""
    net = Net(tmp_path, cni_path(plugins, bindir), cni_sandbox.host)
    conf = net.write()
    ctr = cni_sandbox.container()
    cap_args = {"mac": MAC, "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}
    printed = check_printed(net.ok("add", NET, ctr.path, CAP_ARGS=json.dumps(cap_args)), "1.0.0")
    assert printed["interfaces"][2]["mac"] == MAC == ctr_mac(ctr)
    check_cache(net, ctr, conf, printed, cap_args={"mac": MAC, "portMappings": [
        {"containerPort": 80, "hostPort": 8080, "protocol": "tcp"}]})  # a map: keys sorted
    assert net.ok("check", NET, ctr.path, CAP_ARGS=json.dumps(cap_args)) == ""
    assert net.ok("del", NET, ctr.path, CAP_ARGS=json.dumps(cap_args)) == ""
    assert_nothing_left(net, cni_sandbox.host, ctr)


# -- errors ---------------------------------------------------------------------------


def test_unknown_network_is_go_libcni_not_found_error(tmp_path) -> None:
    net = Net(tmp_path, str(tmp_path / "no-bin"))
    for command in ("add", "check", "del", "gc", "status"):
        assert net.fails(command, "nonet", "/var/run/netns/cnitest-none") == \
            f"no net configurations found in {net.confdir}\n"
    net.write(plugins=[{"type": "cnitest-nosuch"}])
    for command in ("add", "check", "del", "gc", "status"):
        assert net.fails(command, "nonet", "/var/run/netns/cnitest-none") == \
            f'no net configuration with name "nonet" in {net.confdir}\n'


def test_missing_plugin_is_named(tmp_path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    net = Net(tmp_path, f"{bindir}:{tmp_path / 'other'}")
    net.write(plugins=[{"type": "cnitest-nosuch"}])
    err = net.fails("add", NET, "/var/run/netns/cnitest-none")
    assert err == (f'plugin type="cnitest-nosuch" failed (add): failed to find plugin "cnitest-nosuch" '
                   f"in path [{bindir} {tmp_path / 'other'}]\n")
    assert "failed (delete)" in net.fails("del", NET, "/var/run/netns/cnitest-none")
    assert net.cache_files() == []


@pytest.mark.parametrize("cni_args, bad", [
    ("IP", "IP"), ("A=b;", ""), ("A=b=c", "A=b=c"), ("=x", "=x"), ("x=", "x="), (";", ""),
    ('K="v"=', 'K=\\"v\\"='),
])
def test_invalid_cni_args_pair(tmp_path, cni_args, bad) -> None:
    net = Net(tmp_path, str(tmp_path))
    net.write(plugins=[{"type": "cnitest-nosuch"}])
    assert net.fails("add", NET, "/var/run/netns/cnitest-none", CNI_ARGS=cni_args) == \
        f'invalid CNI_ARGS pair "{bad}"\n'


@pytest.mark.parametrize("cap_args, message", [
    ("{bad", "invalid CAP_ARGS: not valid JSON"),
    ('{"mac": "x"', "invalid CAP_ARGS: not valid JSON"),
    ("[1]", "invalid CAP_ARGS: must be a JSON object, not array"),
    ('"mac"', "invalid CAP_ARGS: must be a JSON object, not string"),
])
def test_bad_cap_args(tmp_path, cap_args, message) -> None:
    net = Net(tmp_path, str(tmp_path))
    net.write(plugins=[{"type": "cnitest-nosuch"}])
    assert net.fails("add", NET, "/var/run/netns/cnitest-none", CAP_ARGS=cap_args).startswith(message)


def test_cap_args_null_means_none_as_in_go(tmp_path) -> None:
    """Go unmarshals ``null`` into a nil map: no error, the plugin lookup fails next."""
    net = Net(tmp_path, str(tmp_path))
    net.write(plugins=[{"type": "cnitest-nosuch"}])
    err = net.fails("add", NET, "/var/run/netns/cnitest-none", CAP_ARGS="null")
    assert 'failed to find plugin "cnitest-nosuch"' in err


@privileged
@pytest.mark.parametrize("plugins", PLUGIN_SETS)
def test_plugin_errors_name_the_plugin(cni_sandbox, bindir, tmp_path, plugins) -> None:
    """host-local running out of addresses and a config the bridge rejects: exit 1,
    the plugin's message on stderr after the failing plugin's type, no cache entry."""
    net = Net(tmp_path, cni_path(plugins, bindir), cni_sandbox.host)
    conf = net.write(plugins=net.plugins(subnet="10.123.0.0/30"))
    first, second = cni_sandbox.container(), cni_sandbox.container()
    printed = json.loads(net.ok("add", NET, first.path))
    check_cache(net, first, conf, printed)
    err = net.fails("add", NET, second.path)
    assert err == ('plugin type="bridge" failed (add): failed to allocate for range 0: '
                   "no IP addresses available in range set: 10.123.0.1-10.123.0.2\n")
    assert net.cache_files() == [f"{NET}-{container_id(first.path)}-eth0"]
    # Go's bridge leaves the veth of a failed ADD (ours removes it); DEL cleans up either way.
    assert net.ok("del", NET, second.path) == ""
    assert net.ok("del", NET, first.path) == ""
    assert_nothing_left(net, cni_sandbox.host, first, second)

    net.write(plugins=net.plugins(mtu="1500"))
    err = net.fails("add", NET, first.path)
    assert err.startswith('plugin type="bridge" failed (add): failed to load netconf: ')
    assert "mtu" in err
    assert net.cache_files() == [] and "eth0" not in ctr_links(first)


@privileged
@pytest.mark.parametrize("plugins", PLUGIN_SETS)
def test_interface_name_checked_before_any_plugin_runs(cni_sandbox, bindir, tmp_path, plugins) -> None:
    net = Net(tmp_path, cni_path(plugins, bindir), cni_sandbox.host)
    net.write()
    ctr = cni_sandbox.container()
    err = net.fails("add", NET, ctr.path, "-i", "much-too-long-ifname")
    assert err == ('plugin type="bridge" failed (add): interface name is too long; '
                   "interface name should be less than 16 characters\n")
    assert host_links(cni_sandbox.host) == ["lo"] and net.cache_files() == []


# -- GC and STATUS ----------------------------------------------------------------------


@privileged
@pytest.mark.parametrize("plugins, version", [pytest.param("go", "1.0.0", marks=interop),
                                              ("ours", "1.1.0")])
def test_gc_deletes_every_cached_attachment_of_the_network(cni_sandbox, bindir, tmp_path, plugins,
                                                           version) -> None:
    """Go's cnitool passes no valid attachments, so GC DELs all of this network's
    (1.1.0 lists then get GC too); another network's attachment stays."""
    net = Net(tmp_path, cni_path(plugins, bindir), cni_sandbox.host)
    net.write(version)
    net.write(version, name="othernet", plugins=[
        {"type": "bridge", "bridge": "cnitool1",
         "ipam": {"type": "host-local", "subnet": "10.124.0.0/24", "dataDir": str(net.ipam)}}])
    a, b = cni_sandbox.container(), cni_sandbox.container()
    net.ok("add", NET, a.path)
    net.ok("add", NET, b.path)
    net.ok("add", "othernet", a.path, CNI_IFNAME="net1")
    assert len(net.cache_files()) == 3 and net.reservations() == ["10.123.0.2", "10.123.0.3"]
    # The netns argument is required but unused, as in Go.
    assert net.ok("gc", NET, "/var/run/netns/cnitest-unused") == ""
    assert "eth0" not in ctr_links(a) and "eth0" not in ctr_links(b) and "net1" in ctr_links(a)
    assert net.cache_files() == [f"othernet-{container_id(a.path)}-net1"]
    assert net.reservations() == [] and net.reservations("othernet") == ["10.124.0.2"]
    assert net.tuning_backups() == []
    assert net.ok("gc", NET, a.path) == ""  # nothing left to collect
    assert net.ok("del", "othernet", a.path, "-i", "net1") == ""
    assert net.cache_files() == [] and net.reservations("othernet") == []


@privileged
def test_status_of_a_1_1_0_list(cni_sandbox, bindir, tmp_path) -> None:
    net = Net(tmp_path, bindir, cni_sandbox.host)
    net.write("1.1.0")
    assert net.run("status", NET, "/var/run/netns/cnitest-unused").returncode == 0
    assert net.ok("status", NET, "/var/run/netns/cnitest-unused") == ""
    net.write("1.1.0", plugins=[*net.plugins(), {"type": "cnitest-nosuch"}])
    err = net.fails("status", NET, "/var/run/netns/cnitest-unused")
    assert 'failed to find plugin "cnitest-nosuch"' in err and 'type="cnitest-nosuch"' in err


@privileged
@interop
def test_status_before_1_1_0_asks_no_plugin(cni_sandbox, tmp_path) -> None:
    """Go's v1.1.1 plugins know no STATUS; a 1.0.0 list never sends it."""
    need_go()
    net = Net(tmp_path, GO_DIR, cni_sandbox.host)
    net.write("1.0.0", plugins=[*net.plugins(), {"type": "cnitest-nosuch"}])
    assert net.ok("status", NET, "/var/run/netns/cnitest-unused") == ""


# -- validate, version --------------------------------------------------------------------


def test_validate_our_plugins(tmp_path, bindir) -> None:
    net = Net(tmp_path, bindir)
    net.write("1.1.0")
    assert net.ok("validate", NET) == \
        f"{NET}: valid (cniVersion 1.1.0; plugins bridge, tuning; capabilities mac)\n"
    assert json.loads(net.ok("validate", NET, "--json")) == {
        "network": NET, "cniVersion": "1.1.0", "plugins": ["bridge", "tuning"], "capabilities": ["mac"]}
    net.write("1.1.0", plugins=[{"type": "loopback"}])
    assert json.loads(net.ok("validate", NET, "--json"))["capabilities"] == []
    assert net.ok("validate", NET).endswith("capabilities none)\n")
    net.write("1.1.0", plugins=[{"type": "loopback"}, {"type": "cnitest-nosuch"}])
    err = net.fails("validate", NET)
    assert 'type="cnitest-nosuch" failed (validate): failed to find plugin "cnitest-nosuch"' in err
    assert 'no net configuration with name "nonet"' in net.fails("validate", "nonet")


@interop
def test_validate_go_plugins(tmp_path) -> None:
    need_go()
    net = Net(tmp_path, GO_DIR)
    net.write("1.0.0")
    assert json.loads(net.ok("validate", NET, "--json"))["plugins"] == ["bridge", "tuning"]
    net.write("1.1.0")
    err = net.fails("validate", NET)
    for plugin in ("bridge", "tuning"):  # every problem, not just the first
        assert f'plugin {plugin} does not support config version "1.1.0"' in err
    assert "plugin supports 0.1.0, 0.2.0, 0.3.0, 0.3.1, 0.4.0, 1.0.0" in err


@pytest.mark.parametrize("plugins", PLUGIN_SETS)
def test_version(tmp_path, bindir, plugins) -> None:
    path = cni_path(plugins, bindir)
    net = Net(tmp_path, path)
    speaks, accepts = ("1.0.0", ALL[:-1]) if plugins == "go" else ("1.1.0", ALL)
    for plugin in ("bridge", "host-local", "tuning"):
        assert net.ok("version", plugin) == f"{plugin}: speaks CNI {speaks}; accepts {', '.join(accepts)}\n"
        assert json.loads(net.ok("version", plugin, "--json")) == {
            "cniVersion": speaks, "supportedVersions": accepts}
    assert f'failed to find plugin "cnitest-nosuch" in path [{path}]' in net.fails("version", "cnitest-nosuch")


def test_version_without_cni_path(tmp_path) -> None:
    net = Net(tmp_path, "")
    assert "no paths provided" in net.fails("version", "bridge")


# -- netns, plugins list ------------------------------------------------------------------


@privileged
def test_netns_add_list_del(tmp_path) -> None:
    name = f"cnitest-cli-{uuid.uuid4().hex[:10]}"
    net = Net(tmp_path, "")
    path = f"/var/run/netns/{name}"
    try:
        assert net.ok("netns", "add", name) == f"{path}\n"
        assert os.path.exists(path)
        assert name in net.ok("netns", "list").splitlines()
        listed = json.loads(net.ok("netns", "list", "--json"))
        assert name in listed and all(isinstance(n, str) for n in listed)
        assert "already exists" in net.fails("netns", "add", name)
        # A fresh namespace: only lo.
        proc = subprocess.run(["ip", "netns", "exec", name, "ip", "-o", "link"], capture_output=True,
                              text=True, timeout=30)
        assert [line.split(":")[1].strip() for line in proc.stdout.splitlines()] == ["lo"]
        assert net.ok("netns", "del", name) == ""
        assert not os.path.exists(path)
        assert name not in json.loads(net.ok("netns", "list", "--json"))
        assert name in net.fails("netns", "del", name)
    finally:
        if os.path.exists(path):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
    assert name not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def test_netns_list_prints_nothing_for_no_namespaces(tmp_path, monkeypatch) -> None:
    from click.testing import CliRunner

    from cnicore import ns
    from cnicore.cli.commands import main

    monkeypatch.setattr(ns, "list_netns", lambda: [])
    assert CliRunner().invoke(main, ["netns", "list"]).output == ""
    assert CliRunner().invoke(main, ["netns", "list", "--json"]).output == "[]\n"


def test_plugins_list_human_and_json_agree(tmp_path) -> None:
    net = Net(tmp_path, "")
    rows = json.loads(net.ok("plugins", "list", "--json"))
    header, *lines = net.ok("plugins", "list").splitlines()
    assert header.split() == ["TYPE", "DISTRIBUTION", "VERSION", "CNI", "VERSIONS"]
    assert len(lines) == len(rows)
    for line, row in zip(lines, rows):
        assert line.split(None, 3) == [row["type"], row["distribution"], row["version"],
                                       ", ".join(row["supportedVersions"])]
    by_type = {row["type"]: row for row in rows}
    assert {"bridge", "host-local", "loopback", "tuning"} <= set(by_type)
    assert by_type["tuning"]["supportedVersions"] == ALL
    assert set(rows[0]) == {"type", "distribution", "version", "module", "supportedVersions"}


def test_plugins_list_json_keeps_a_load_error_whole(monkeypatch) -> None:
    """A load error with commas in it is one item, not split into fake versions."""
    from click.testing import CliRunner

    from cnicore import registry
    from cnicore.cli.commands import main

    class Broken:
        type, distribution, version, value = "broken", "dist", "1.0", "mod"

        def info(self):
            raise ImportError("no module named x, y, or z")

    monkeypatch.setattr(registry, "discover", lambda: {"broken": Broken()})
    result = CliRunner().invoke(main, ["plugins", "list", "--json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    assert row["supportedVersions"] == ["<cannot load: no module named x, y, or z>"]
    table = CliRunner().invoke(main, ["plugins", "list"]).output
    assert "<cannot load: no module named x, y, or z>" in table
