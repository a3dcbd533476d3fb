"""The built-in host-local IPAM plugin: in-process, through its launcher, and against Go's.

IPAM touches no network, so nothing here needs a namespace: CNI_NETNS is
just a path string, and every data directory lives under pytest's tmp_path.
The interop tests run Debian's Go host-local (v1.1.1) on the same store.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import cni_plugins_builtin.host_local.plugin as host_local
from cni_plugins_builtin.host_local.allocator import candidates
from cni_plugins_builtin.host_local.config import RangeSet, RangeSpec, load_config
from cni_plugins_builtin.host_local.dns import parse_resolv_conf_text
from cnicore import skel
from cnicore._go.ip import parse_cidr, parse_ip
from cnicore.host import PluginHost
from cnicore.testing import Outcome, cni_env
from cnicore.version import ALL

GO_HOST_LOCAL = "/usr/lib/cni/host-local"
NETNS = "/var/run/netns/cnitest-hl"  # any path: IPAM never enters it
HOST = PluginHost(host_local, "host-local")

needs_go = pytest.mark.skipif(not os.access(GO_HOST_LOCAL, os.X_OK),
                              reason="Go reference plugins not installed in /usr/lib/cni")


# -- helpers ---------------------------------------------------------------------------

def netconf(data_dir: Path | str, version: str = "1.0.0", name: str = "hlnet", **ipam: object) -> dict:
    """A network config whose ipam section is ``ipam`` plus the data dir."""
    return {"cniVersion": version, "name": name, "type": "bridge",
            "ipam": dict({"type": "host-local", "dataDir": str(data_dir)}, **ipam)}


def env_for(command: str, cid: str = "ctr1", ifname: str = "eth0", args: str = "") -> dict[str, str]:
    netns = NETNS if command in ("ADD", "CHECK", "DEL") else ""
    return cni_env(command, container_id=cid, netns=netns, ifname=ifname, args=args)


def run(command: str, config: dict | bytes, cid: str = "ctr1", ifname: str = "eth0", args: str = "") -> Outcome:
    """One request served in-process, exactly as a launcher would serve it."""
    data = config if isinstance(config, bytes) else json.dumps(config).encode()
    code, out, err = skel.run(HOST, env_for(command, cid, ifname, args), data)
    return Outcome(code, out, err)


def add(config: dict, cid: str = "ctr1", ifname: str = "eth0", args: str = "") -> dict:
    return run("ADD", config, cid, ifname, args).ok().json


def addresses(result: dict) -> list[str]:
    return [ip["address"].split("/")[0] for ip in result["ips"]]


def err(outcome: Outcome) -> tuple[int, int, str]:
    """(exit status, code, msg) of a failed run."""
    assert outcome.code != 0, outcome
    return outcome.code, outcome.json["code"], outcome.json["msg"]


def store_dir(data_dir: Path, name: str = "hlnet") -> Path:
    return data_dir / name


def records(data_dir: Path, name: str = "hlnet") -> dict[str, bytes]:
    """Every reservation file (named by an address) with its raw bytes."""
    out = {}
    for path in sorted(store_dir(data_dir, name).iterdir()):
        if parse_ip(path.name) is not None:
            out[path.name] = path.read_bytes()
    return out


def exec_plugin(path: str, command: str, config: dict | bytes, cid: str = "ctr1", ifname: str = "eth0",
                args: str = "", timeout: float = 60) -> Outcome:
    """Exec a plugin binary (our launcher or Go's) as a runtime would."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CNI_", "PYTHON"))}
    env.update(env_for(command, cid, ifname, args))
    data = config if isinstance(config, bytes) else json.dumps(config).encode()
    proc = subprocess.run([path], input=data, env=env, capture_output=True, timeout=timeout)
    return Outcome(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture(scope="module")
def launcher(tmp_path_factory: pytest.TempPathFactory, cni_install) -> str:
    from cnicore.registry import get

    bindir = tmp_path_factory.mktemp("bin")
    report = cni_install(str(bindir), entries=[get("host-local")])
    assert report.added == ["host-local"], report.as_dict()
    return str(bindir / "host-local")


# -- pure parts ------------------------------------------------------------------------------

def test_ip_parsing_follows_go() -> None:
    assert str(parse_ip("10.1.2.3")) == "10.1.2.3"
    assert str(parse_ip("::ffff:10.1.2.3")) == "10.1.2.3"  # canonicalised to IPv4, like To4()
    assert str(parse_ip("FD00:0::1")) == "fd00::1"
    for bad in ("", "010.1.2.3", "10.1.2", "fe80::1%eth0", " 10.1.2.3", "1.2::3", "x"):
        assert parse_ip(bad) is None, bad
    cidr = parse_cidr("10.0.0.5/024")  # Go accepts leading zeros in the length
    assert cidr is not None and (str(cidr), cidr.prefix, cidr.bits) == ("10.0.0.5/24", 24, 32)
    mapped = parse_cidr("::ffff:10.0.0.0/104")
    assert mapped is not None and mapped.mixed and str(mapped) == "10.0.0.0/8"
    for bad in ("10.0.0.0", "10.0.0.0/33", "10.0.0.0/+8", "10.0.0.0/255.0.0.0", "fd00::/129", "/8"):
        assert parse_cidr(bad) is None, bad


def rangeset(*specs: dict) -> RangeSet:
    def ip(text: object):
        return parse_ip(text) if text else None  # type: ignore[arg-type]

    return RangeSet.from_specs([RangeSpec(parse_cidr(s["subnet"]), ip(s.get("rangeStart")),
                                          ip(s.get("rangeEnd")), ip(s.get("gateway"))) for s in specs])


def test_candidates_round_robin_order() -> None:
    rs = rangeset({"subnet": "10.0.0.0/29", "rangeStart": "10.0.0.4"},
                  {"subnet": "10.0.1.0/29", "rangeEnd": "10.0.1.3"})
    everything = ["10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.1.2", "10.0.1.3"]  # 10.0.1.1: gateway
    assert [str(ip) for ip, _ in candidates(rs, None)] == everything
    # After the cursor, wrapping around, the cursor itself last.
    assert [str(ip) for ip, _ in candidates(rs, parse_ip("10.0.0.6"))] == everything[3:] + everything[:3]
    assert [str(ip) for ip, _ in candidates(rs, parse_ip("10.0.1.3"))] == everything
    # A cursor outside the set (ranges changed) starts from the beginning.
    assert [str(ip) for ip, _ in candidates(rs, parse_ip("10.0.0.2"))] == everything
    assert [str(ip) for ip, _ in candidates(rs, parse_ip("fd00::1"))] == everything


def test_resolv_conf_parsing() -> None:
    dns = parse_resolv_conf_text("nameserver 192.0.2.0\n  nameserver 192.0.2.2 \r\ndomain a.example\n"
                                 ";nameserver 192.0.2.9\n#search x\nsearch b.example c.example\n"
                                 "search d.example\noptions ndots:2 rotate\noptions edns0\nnameserver\n"
                                 "domain z.example\n")
    assert dns.to_dict() == {"nameservers": ["192.0.2.0", "192.0.2.2"], "domain": "z.example",
                             "search": ["b.example", "c.example", "d.example"],
                             "options": ["ndots:2", "rotate", "edns0"]}


def test_load_config_defaults(tmp_path: Path) -> None:
    conf = load_config(netconf(tmp_path, subnet="10.1.2.0/24"))
    (rs,) = conf.ranges
    (rng,) = rs.ranges
    assert (str(rng.start), str(rng.end), str(rng.gateway)) == ("10.1.2.1", "10.1.2.254", "10.1.2.1")
    conf6 = load_config(netconf(tmp_path, ranges=[[{"subnet": "fd00::/64"}]]))
    rng6 = conf6.ranges[0].ranges[0]
    assert (str(rng6.start), str(rng6.end), str(rng6.gateway)) == \
        ("fd00::1", "fd00::ffff:ffff:ffff:ffff", "fd00::1")
    default = load_config({"cniVersion": "1.0.0", "name": "x", "ipam": {"subnet": "10.0.0.0/24"}})
    assert default.data_dir == "/var/lib/cni/networks"  # parsed only: nothing is written here


# -- ADD ---------------------------------------------------------------------------------------

def test_legacy_single_range_add_and_store_bytes(tmp_path: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    config = netconf(tmp_path / "data", subnet="10.1.2.0/24", routes=[{"dst": "0.0.0.0/0"}])
    out = run("ADD", config, cid="ctr1")
    expected = {"cniVersion": "1.0.0", "ips": [{"address": "10.1.2.2/24", "gateway": "10.1.2.1"}],
                "routes": [{"dst": "0.0.0.0/0"}]}
    assert out.ok().json == expected
    assert out.stdout == json.dumps(expected, indent=4, sort_keys=True).encode()
    netdir = store_dir(tmp_path / "data")
    assert sorted(os.listdir(netdir)) == ["10.1.2.2", "last_reserved_ip.0", "lock"]
    assert (netdir / "10.1.2.2").read_bytes() == b"ctr1\r\neth0"  # no trailing newline
    assert (netdir / "last_reserved_ip.0").read_bytes() == b"10.1.2.2"
    assert (netdir / "lock").read_bytes().startswith(b"cnicore-host-local-index 2 ")  # Go only flocks it
    for path in (tmp_path / "data", netdir):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o755 & ~umask
    for name in ("10.1.2.2", "last_reserved_ip.0"):  # Go's mode (Debian v1.1.1)
        assert stat.S_IMODE(os.stat(netdir / name).st_mode) == 0o644 & ~umask
    assert stat.S_IMODE(os.stat(netdir / "lock").st_mode) == 0o750 & ~umask

    assert addresses(add(config, cid="ctr2", ifname="net1")) == ["10.1.2.3"]
    assert (netdir / "10.1.2.3").read_bytes() == b"ctr2\r\nnet1"
    assert (netdir / "last_reserved_ip.0").read_bytes() == b"10.1.2.3"


def dual_stack(data_dir: Path, version: str, resolv: Path | None = None) -> dict:
    ipam: dict[str, object] = {
        "ranges": [[{"subnet": "10.1.2.0/24", "rangeStart": "10.1.2.10", "rangeEnd": "10.1.2.20",
                     "gateway": "10.1.2.254"}],
                   [{"subnet": "2001:db8:1::/64"}]],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}, {"dst": "192.168.0.0/16", "gw": "10.1.2.254"},
                   {"dst": "2001:db8:2::/64", "gw": "2001:db8:1::1"}]}
    if resolv is not None:
        ipam["resolvConf"] = str(resolv)
    return netconf(data_dir, version, **ipam)


def expected_dual_stack(version: str) -> dict:
    dns = {"nameservers": ["192.0.2.3"], "search": ["example.com"]}
    v4 = {"address": "10.1.2.10/24", "gateway": "10.1.2.254"}
    v6 = {"address": "2001:db8:1::2/64", "gateway": "2001:db8:1::1"}
    routes = [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}, {"dst": "192.168.0.0/16", "gw": "10.1.2.254"},
              {"dst": "2001:db8:2::/64", "gw": "2001:db8:1::1"}]
    if version in ("0.1.0", "0.2.0"):
        return {"cniVersion": version,
                "ip4": {"ip": v4["address"], "gateway": v4["gateway"], "routes": [routes[0], routes[2]]},
                "ip6": {"ip": v6["address"], "gateway": v6["gateway"], "routes": [routes[1], routes[3]]},
                "dns": dns}
    if version.startswith("0."):
        return {"cniVersion": version, "ips": [dict(v4, version="4"), dict(v6, version="6")],
                "routes": routes, "dns": dns}
    return {"cniVersion": version, "ips": [v4, v6], "routes": routes, "dns": dns}


@pytest.mark.parametrize("version", ALL)
def test_dual_stack_result_in_every_version(tmp_path: Path, version: str) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("# comment\nnameserver 192.0.2.3\nsearch example.com\n")
    out = run("ADD", dual_stack(tmp_path / "data", version, resolv)).ok()
    expected = expected_dual_stack(version)
    assert out.json == expected
    # Exact bytes: 1.x sorts keys, older families keep struct order; no "interface" index.
    raw = json.dumps(expected, indent=4, sort_keys=version.startswith("1."))
    if version.startswith("0.3") or version == "0.4.0":
        raw = json.dumps({"cniVersion": version,
                          "ips": [{"version": ip["version"], "address": ip["address"], "gateway": ip["gateway"]}
                                  for ip in expected["ips"]],
                          "routes": expected["routes"], "dns": expected["dns"]}, indent=4)
    assert out.stdout == raw.encode()
    assert b'"interface"' not in out.stdout
    assert records(tmp_path / "data") == {"10.1.2.10": b"ctr1\r\neth0", "2001:db8:1::2": b"ctr1\r\neth0"}
    netdir = store_dir(tmp_path / "data")
    assert (netdir / "last_reserved_ip.0").read_bytes() == b"10.1.2.10"
    assert (netdir / "last_reserved_ip.1").read_bytes() == b"2001:db8:1::2"


def test_old_versions_allow_one_address_per_family(tmp_path: Path) -> None:
    ipam = {"ranges": [[{"subnet": "10.1.2.0/24"}], [{"subnet": "10.1.3.0/24"}]]}
    for version in ("0.1.0", "0.2.0"):
        assert err(run("ADD", netconf(tmp_path, version, **ipam))) == \
            (1, 999, f"CNI version {version} does not support more than 1 address per family")
    assert addresses(add(netconf(tmp_path, "0.3.0", **ipam))) == ["10.1.2.2", "10.1.3.2"]


def test_ipv4_excludes_broadcast_and_exhausts(tmp_path: Path) -> None:
    config = netconf(tmp_path, subnet="10.1.2.0/29")
    got = [addresses(add(config, cid=f"c{i}"))[0] for i in range(5)]
    assert got == ["10.1.2.2", "10.1.2.3", "10.1.2.4", "10.1.2.5", "10.1.2.6"]
    assert err(run("ADD", config, cid="c9")) == \
        (1, 999, "failed to allocate for range 0: no IP addresses available in range set: 10.1.2.1-10.1.2.6")
    assert len(records(tmp_path)) == 5


def test_ipv6_uses_the_last_address(tmp_path: Path) -> None:
    config = netconf(tmp_path, ranges=[[{"subnet": "fd00::/126"}]])
    assert [addresses(add(config, cid=f"c{i}"))[0] for i in range(2)] == ["fd00::2", "fd00::3"]
    assert err(run("ADD", config, cid="c3"))[2] == \
        "failed to allocate for range 0: no IP addresses available in range set: fd00::1-fd00::3"


def test_gateway_inside_range_is_skipped(tmp_path: Path) -> None:
    config = netconf(tmp_path, subnet="10.1.2.0/24", rangeStart="10.1.2.10", rangeEnd="10.1.2.13",
                     gateway="10.1.2.11")
    got = [add(config, cid=f"c{i}")["ips"][0] for i in range(3)]
    assert got == [{"address": f"10.1.2.{n}/24", "gateway": "10.1.2.11"} for n in (10, 12, 13)]
    assert err(run("ADD", config, cid="c4"))[2].endswith("no IP addresses available in range set: "
                                                          "10.1.2.10-10.1.2.13")


def test_round_robin_across_ranges_and_wraparound(tmp_path: Path) -> None:
    config = netconf(tmp_path, ranges=[[{"subnet": "10.0.0.0/29", "rangeStart": "10.0.0.4"},
                                        {"subnet": "10.0.1.0/29", "rangeEnd": "10.0.1.3"}]])
    order = ["10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.1.2", "10.0.1.3"]
    assert [addresses(add(config, cid=f"c{i}"))[0] for i in range(4)] == order[:4]
    # Release one from the first range: it is not reused until the set wrapped around.
    run("DEL", config, cid="c1").ok()
    assert addresses(add(config, cid="c5")) == ["10.0.1.3"]
    assert addresses(add(config, cid="c6")) == ["10.0.0.5"]  # wrapped: the only free one
    assert err(run("ADD", config, cid="c7"))[2].endswith("no IP addresses available in range set: "
                                                         "10.0.0.4-10.0.0.6,10.0.1.1-10.0.1.3")
    # Free two, the cursor (10.0.0.5) moves on past them in order.
    run("DEL", config, cid="c0").ok()
    run("DEL", config, cid="c3").ok()
    assert addresses(add(config, cid="c8")) == ["10.0.1.2"]
    assert addresses(add(config, cid="c9")) == ["10.0.0.4"]


def test_released_address_not_reused_immediately(tmp_path: Path) -> None:
    config = netconf(tmp_path, subnet="10.5.0.0/24")
    first = addresses(add(config, cid="crash"))
    for _ in range(3):  # a crash-looping container gets a new address every time
        run("DEL", config, cid="crash").ok()
        again = addresses(add(config, cid="crash"))
        assert again != first
        first = again
    assert first == ["10.5.0.5"]


def test_cursor_outside_the_ranges_restarts(tmp_path: Path) -> None:
    config = netconf(tmp_path, subnet="10.5.0.0/24")
    add(config, cid="a")
    (store_dir(tmp_path) / "last_reserved_ip.0").write_bytes(b"192.168.9.9")
    assert addresses(add(config, cid="b")) == ["10.5.0.3"]  # .2 is taken, start over from .1 (gateway)
    (store_dir(tmp_path) / "last_reserved_ip.0").write_bytes(b"10.5.0.3\n")  # not an address for Go
    assert addresses(add(config, cid="c")) == ["10.5.0.4"]


def test_requested_addresses_from_every_source(tmp_path: Path) -> None:
    base = {"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd01::/64"}]]}
    # CNI_ARGS, several addresses, CIDR form accepted (only the address counts).
    out = add(netconf(tmp_path, **base), cid="a", args="IgnoreUnknown=1;K8S_POD_NAME=p;IP=10.1.0.50/24,fd01::50")
    assert addresses(out) == ["10.1.0.50", "fd01::50"]
    # args.cni.ips, one set requested, the other automatic.
    config = dict(netconf(tmp_path, **base), args={"cni": {"ips": ["fd01::60"]}})
    assert addresses(add(config, cid="b")) == ["10.1.0.51", "fd01::60"]
    # runtimeConfig.ips (the "ips" capability); the same address twice counts once.
    config = dict(netconf(tmp_path, **base), runtimeConfig={"ips": ["10.1.0.70", "10.1.0.70"]})
    assert addresses(add(config, cid="c", args="IP=10.1.0.70")) == ["10.1.0.70", "fd01::61"]
    assert records(tmp_path)["10.1.0.70"] == b"c\r\neth0"
    # The cursor moved to the requested address.
    assert (store_dir(tmp_path) / "last_reserved_ip.0").read_bytes() == b"10.1.0.70"
    assert addresses(add(netconf(tmp_path, **base), cid="d")) == ["10.1.0.71", "fd01::62"]


def test_requested_address_errors_and_rollback(tmp_path: Path) -> None:
    config = netconf(tmp_path, ranges=[[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd01::/64"}]])
    add(config, cid="holder", args="IP=fd01::9")
    before = records(tmp_path)
    cases = [
        ("IP=10.1.0.1", "failed to allocate for range 0: requested ip 10.1.0.1 is subnet's gateway"),
        ("IP=10.1.0.255", "failed to allocate all requested IPs: 10.1.0.255"),
        ("IP=10.9.9.9,fd09::1", "failed to allocate all requested IPs: 10.9.9.9 fd09::1"),
        ("IP=10.1.0.5,10.1.0.6", "failed to allocate all requested IPs: 10.1.0.6"),
        # The v4 set succeeds first; the v6 address is taken: the v4 one is released again.
        ("IP=fd01::9", "failed to allocate for range 1: requested IP address fd01::9 is not available "
                       "in range set fd01::1-fd01::ffff:ffff:ffff:ffff"),
        ("IP=10.1.0.300", 'ARGS: error parsing value of pair "IP=10.1.0.300": invalid IP address 10.1.0.300'),
        ("IP=10.1.0.5;FOO=1", 'ARGS: unknown args ["FOO=1"]'),
    ]
    for args, msg in cases:
        assert err(run("ADD", config, cid="new", args=args)) == (1, 999, msg), args
        assert records(tmp_path) == before, args
    bad = dict(config, runtimeConfig={"ips": [""]})
    assert err(run("ADD", bad, cid="new"))[2] == "cannot understand ip: IP <nil> not v4 nor v6"
    assert err(run("ADD", dict(config, args={"cni": {"ips": ["nope"]}}), cid="new"))[2] == \
        "invalid IP address nope"


def test_runtime_ip_ranges_override_configured_ranges(tmp_path: Path) -> None:
    config = dict(netconf(tmp_path, subnet="10.1.0.0/24", ranges=[[{"subnet": "fd01::/64"}]]),
                  runtimeConfig={"ipRanges": [[{"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.100"}]]})
    out = add(config)
    assert out["ips"] == [{"address": "10.1.0.100/24", "gateway": "10.1.0.1"}]
    assert err(run("ADD", dict(config, runtimeConfig={"ipRanges": [[{"subnet": "10.1.0.0/33"}]]})))[2] == \
        "invalid CIDR address: 10.1.0.0/33"
    # An empty list does not override (set 0 continues after its cursor, 10.1.0.100).
    assert addresses(add(dict(config, runtimeConfig={"ipRanges": []}), cid="b")) == ["10.1.0.101", "fd01::2"]


def test_duplicate_add_is_an_error(tmp_path: Path) -> None:
    config = netconf(tmp_path, ranges=[[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd01::/64"}]])
    add(config, cid="dup")
    before = records(tmp_path)
    assert err(run("ADD", config, cid="dup")) == \
        (1, 999, "failed to allocate for range 0: 10.1.0.2 has been allocated to dup, "
                 "duplicate allocation is not allowed")
    # Stricter than the reference: also when an address is requested.
    assert err(run("ADD", config, cid="dup", args="IP=10.1.0.9"))[2].startswith(
        "failed to allocate for range 0: 10.1.0.2 has been allocated to dup")
    assert records(tmp_path) == before
    # Another interface of the same container is another attachment.
    assert addresses(add(config, cid="dup", ifname="net1")) == ["10.1.0.3", "fd01::3"]


# -- DEL, CHECK ----------------------------------------------------------------------------------

def test_del_releases_by_container_and_ifname(tmp_path: Path) -> None:
    config = netconf(tmp_path, ranges=[[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd01::/64"}]])
    add(config, cid="a")
    add(config, cid="a", ifname="net1")
    add(config, cid="b")
    run("DEL", config, cid="a", ifname="net1").ok()
    assert records(tmp_path) == {"10.1.0.2": b"a\r\neth0", "10.1.0.4": b"b\r\neth0",
                                 "fd01::2": b"a\r\neth0", "fd01::4": b"b\r\neth0"}
    for _ in range(2):  # DEL is idempotent
        out = run("DEL", config, cid="a")
        assert (out.code, out.stdout) == (0, b"")
    run("DEL", config, cid="never-added").ok()
    assert sorted(records(tmp_path)) == ["10.1.0.4", "fd01::4"]
    # DEL without a netns (the container is gone) works too.
    code, out, _ = skel.run(HOST, cni_env("DEL", container_id="b", netns=""), json.dumps(config).encode())
    assert (code, out) == (0, b"")
    assert records(tmp_path) == {}


def test_legacy_records_are_read(tmp_path: Path) -> None:
    config = netconf(tmp_path, subnet="10.1.0.0/24")
    netdir = store_dir(tmp_path)
    netdir.mkdir(parents=True)
    (netdir / "10.1.0.2").write_bytes(b"old")  # written by an old host-local: bare container ID
    (netdir / "10.1.0.3").write_bytes(b"older\n")
    # Held: skipped by allocation, and the owner's ADD is a duplicate.
    assert addresses(add(config, cid="new")) == ["10.1.0.4"]
    assert err(run("ADD", config, cid="old"))[2] == \
        "failed to allocate for range 0: 10.1.0.2 has been allocated to old, duplicate allocation is not allowed"
    run("CHECK", config, cid="older", ifname="whatever").ok()
    # A bare ID holds the container's addresses whatever the interface (as in the reference).
    assert "duplicate allocation" in err(run("ADD", config, cid="older", ifname="net1"))[2]
    # DEL falls back to the bare ID only when no id+ifname record matches.
    (netdir / "10.1.0.9").write_bytes(b"older\r\nnet1")
    run("DEL", config, cid="older", ifname="net1").ok()
    assert "10.1.0.3" in records(tmp_path) and "10.1.0.9" not in records(tmp_path)
    run("DEL", config, cid="older", ifname="eth0").ok()
    run("DEL", config, cid="old", ifname="eth0").ok()
    assert records(tmp_path) == {"10.1.0.4": b"new\r\neth0"}


def test_only_address_files_are_records(tmp_path: Path) -> None:
    """Deliberately unlike the reference: a container ID that equals an address
    does not match the cursor file."""
    config = netconf(tmp_path, subnet="10.1.0.0/24")
    add(config, cid="10.1.0.2")  # a valid container ID, and the content of last_reserved_ip.0
    run("DEL", config, cid="10.1.0.2", ifname="eth1").ok()  # no record matches: legacy fallback
    assert (store_dir(tmp_path) / "last_reserved_ip.0").read_bytes() == b"10.1.0.2"
    assert err(run("CHECK", config, cid="10.1.0.3")) == \
        (1, 999, "host-local: Failed to find address added by container 10.1.0.3")


@pytest.mark.parametrize("version", ["0.4.0", "1.0.0", "1.1.0"])
def test_check(tmp_path: Path, version: str) -> None:
    config = netconf(tmp_path, version, subnet="10.1.0.0/24")
    assert err(run("CHECK", config)) == (1, 999, "host-local: Failed to find address added by container ctr1")
    add(config)
    run("CHECK", config).ok()
    assert err(run("CHECK", config, ifname="net1"))[2] == \
        "host-local: Failed to find address added by container ctr1"
    run("DEL", config).ok()
    assert err(run("CHECK", config))[1:] == (999, "host-local: Failed to find address added by container ctr1")


def test_check_needs_0_4_0(tmp_path: Path) -> None:
    assert err(run("CHECK", netconf(tmp_path, "0.3.1", subnet="10.1.0.0/24")))[1] == 1


# -- GC, STATUS --------------------------------------------------------------------------------------

def test_gc_releases_everything_not_valid(tmp_path: Path) -> None:
    config = netconf(tmp_path, "1.1.0", ranges=[[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd01::/64"}]])
    for cid, ifname in (("a", "eth0"), ("a", "net1"), ("b", "eth0"), ("c", "eth0")):
        add(config, cid=cid, ifname=ifname)
    netdir = store_dir(tmp_path)
    (netdir / "10.1.0.200").write_bytes(b"legacy-kept")
    (netdir / "10.1.0.201").write_bytes(b"legacy-gone")
    valid = [{"containerID": "a", "ifname": "eth0"}, {"containerID": "c", "ifname": "eth0"},
             {"containerID": "legacy-kept", "ifname": "eth0"}, {"containerID": "zz", "ifname": "eth0"}]
    out = run("GC", dict(config, **{"cni.dev/valid-attachments": valid}))
    assert (out.code, out.stdout) == (0, b""), out
    assert records(tmp_path) == {"10.1.0.2": b"a\r\neth0", "10.1.0.5": b"c\r\neth0", "fd01::2": b"a\r\neth0",
                                 "fd01::5": b"c\r\neth0", "10.1.0.200": b"legacy-kept"}
    assert {"lock", "last_reserved_ip.0", "last_reserved_ip.1"} <= set(os.listdir(netdir))
    # null (libcni sends it for "no attachments") releases everything.
    run("GC", dict(config, **{"cni.dev/valid-attachments": None})).ok()
    assert records(tmp_path) == {}


def test_gc_errors_and_no_side_effects(tmp_path: Path) -> None:
    config = netconf(tmp_path / "none", "1.1.0", subnet="10.1.0.0/24")
    run("GC", dict(config, **{"cni.dev/valid-attachments": []})).ok()
    assert not (tmp_path / "none").exists()  # GC creates nothing
    bad = run("GC", dict(config, **{"cni.dev/valid-attachments": [{"containerID": "a"}]}))
    assert err(bad)[1:] == (7, "invalid cni.dev/valid-attachments")
    assert err(run("GC", netconf(tmp_path, "1.0.0", subnet="10.1.0.0/24")))[1] == 1  # GC needs 1.1.0
    # GC needs no valid ranges, only where the store is.
    run("GC", netconf(tmp_path, "1.1.0", subnet="10.1.0.0/31")).ok()
    assert err(run("GC", {"cniVersion": "1.1.0", "name": "x"}))[1:] == (999, "IPAM config missing 'ipam' key")


def test_status(tmp_path: Path) -> None:
    config = netconf(tmp_path / "new" / "dir", "1.1.0", subnet="10.1.0.0/24")
    run("STATUS", config).ok()
    assert not (tmp_path / "new").exists()  # STATUS creates nothing
    (tmp_path / "file").write_text("")
    blocked = run("STATUS", netconf(tmp_path / "file" / "sub", "1.1.0", subnet="10.1.0.0/24"))
    assert err(blocked)[1] == 50
    assert blocked.json["msg"] == f"host-local data directory {tmp_path}/file/sub/hlnet is not usable"
    assert blocked.json["details"] == f"{tmp_path}/file is not a directory"
    # ADD would fail there the reference's way.
    add_out = run("ADD", netconf(tmp_path / "file" / "sub", subnet="10.1.0.0/24"))
    assert err(add_out)[1:] == (999, f"mkdir {tmp_path}/file: not a directory")
    # A config ADD would reject fails STATUS with ADD's error.
    assert err(run("STATUS", netconf(tmp_path, "1.1.0", subnet="10.1.0.0/31")))[1:] == \
        (999, "invalid range set 0: Network 10.1.0.0/31 too small to allocate from")
    missing = netconf(tmp_path, "1.1.0", subnet="10.1.0.0/24", resolvConf=str(tmp_path / "nope"))
    assert err(run("STATUS", missing))[2] == f"open {tmp_path}/nope: no such file or directory"
    assert err(run("STATUS", netconf(tmp_path, "1.0.0", subnet="10.1.0.0/24")))[1] == 1


# -- validation ------------------------------------------------------------------------------------

#: (ipam section or whole-config extras, exact message); every one also checked against Go below.
BAD_CONFIGS: list[tuple[dict, str]] = [
    ({"subnet": "10.1.2.0/31"}, "invalid range set 0: Network 10.1.2.0/31 too small to allocate from"),
    ({"subnet": "fd00::/127"}, "invalid range set 0: Network fd00::/127 too small to allocate from"),
    ({"subnet": "10.1.2.1/24"}, "invalid range set 0: Network has host bits set. For a subnet mask of "
                                "length 24 the network address is 10.1.2.0"),
    ({"subnet": "10.1.2.0/24", "rangeStart": "10.1.3.1"},
     "invalid range set 0: RangeStart 10.1.3.1 not in network 10.1.2.0/24"),
    ({"subnet": "10.1.2.0/24", "rangeEnd": "10.1.3.1"},
     "invalid range set 0: RangeEnd 10.1.3.1 not in network 10.1.2.0/24"),
    ({"subnet": "10.1.2.0/24", "rangeStart": "10.1.2.9", "rangeEnd": "10.1.2.5"},
     "invalid range set 0: RangeStart 10.1.2.9 not in network 10.1.2.0/24"),
    ({"subnet": "10.1.2.0/24", "rangeEnd": "fd00::1"},
     "invalid range set 0: RangeEnd fd00::1 not in network 10.1.2.0/24"),
    ({"subnet": "::ffff:10.0.0.0/120"}, "invalid range set 0: IPNet IP and Mask version mismatch"),
    ({"ranges": [[{"subnet": "10.1.2.0/24"}, {"subnet": "fd00::/64"}]]},
     "invalid range set 0: mixed address families"),
    ({"ranges": [[{"subnet": "10.1.2.0/24"}, {"subnet": "10.1.2.0/25"}]]},
     "invalid range set 0: subnets 10.1.2.1-10.1.2.254 and 10.1.2.1-10.1.2.126 overlap"),
    ({"ranges": [[{"subnet": "10.1.2.0/24"}], [{"subnet": "fd00::/64"}], [{"subnet": "10.1.2.0/25"}]]},
     "range set 0 overlaps with 2"),
    ({"subnet": "10.1.2.0/24", "ranges": [[{"subnet": "10.1.2.128/25"}]]}, "range set 0 overlaps with 1"),
    ({}, "no IP ranges specified"),
    ({"ranges": []}, "no IP ranges specified"),
    ({"ranges": [[]]}, "invalid range set 0: empty range set"),
    ({"ranges": [[None]]}, "invalid range set 0: IP <nil> not v4 nor v6"),
    ({"rangeStart": "10.0.0.5", "ranges": [[{"subnet": "10.9.0.0/24"}], [{"rangeEnd": "10.1.0.1"}]]},
     "invalid range set 1: IP <nil> not v4 nor v6"),
    ({"subnet": "10.1.2.0/24", "gateway": "foo"}, "invalid IP address: foo"),
    ({"subnet": "10.1.2.0"}, "invalid CIDR address: 10.1.2.0"),
    ({"subnet": ""}, "invalid CIDR address: "),
    ({"subnet": "fd00::/64", "rangeStart": "fe80::1%eth0"}, "invalid IP address: fe80::1%eth0"),
    ({"subnet": "10.0.0.0/24", "routes": [{"dst": "x"}]}, "invalid CIDR address: x"),
    ({"subnet": "10.0.0.0/24", "resolvConf": "/cnitest/nonexistent"},
     "open /cnitest/nonexistent: no such file or directory"),
    # Go's encoding/json: kind mismatches name the struct field and Go type ...
    ({"subnet": 5}, "json: cannot unmarshal number into Go struct field IPAMConfig.ipam.subnet of type string"),
    ({"ranges": {}}, "json: cannot unmarshal object into Go struct field IPAMConfig.ipam.ranges of type "
                     "[]allocator.RangeSet"),
    ({"ranges": [5]}, "json: cannot unmarshal number into Go struct field IPAMConfig.ipam.ranges of type "
                      "allocator.RangeSet"),
    ({"ranges": [[5]]}, "json: cannot unmarshal number into Go struct field IPAMConfig.ipam.ranges of type "
                        "allocator.Range"),
    ({"ranges": [[{"subnet": "10.0.0.0/24", "gateway": True}]]},
     "json: cannot unmarshal bool into Go struct field Range.ipam.ranges.gateway of type net.IP"),
    ({"subnet": "10.0.0.0/24", "rangeStart": 5},
     "json: cannot unmarshal number into Go struct field IPAMConfig.ipam.rangeStart of type net.IP"),
    ({"subnet": "10.0.0.0/24", "dataDir": 5},
     "json: cannot unmarshal number into Go struct field IPAMConfig.ipam.dataDir of type string"),
    ({"subnet": "10.0.0.0/24", "routes": [5]},
     "json: cannot unmarshal number into Go struct field IPAMConfig.ipam.routes of type types.route"),
    ({"subnet": "10.0.0.0/24", "routes": [{"dst": "1.0.0.0/8", "gw": 5}]},
     "json: cannot unmarshal number into Go struct field IPAMConfig.ipam.routes of type net.IP"),
    ({"subnet": "10.0.0.0/24", "name": 5},
     "json: cannot unmarshal number into Go struct field IPAMConfig.ipam.Name of type string"),
    # ... and a bad address anywhere wins over an earlier kind mismatch.
    ({"rangeStart": 5, "subnet": "bad"}, "invalid CIDR address: bad"),
    ({"rangeStart": 5, "rangeEnd": "bad"}, "invalid IP address: bad"),
]

BAD_TOP_LEVEL: list[tuple[dict, str]] = [
    ({"ipam": None}, "IPAM config missing 'ipam' key"),
    ({"ipam": "x"}, "json: cannot unmarshal string into Go struct field Net.ipam of type allocator.IPAMConfig"),
    ({"runtimeConfig": {"ips": [5]}},
     "json: cannot unmarshal number into Go struct field .runtimeConfig.ips of type *ip.IP"),
    ({"runtimeConfig": {"ips": "x"}},
     "json: cannot unmarshal string into Go struct field .runtimeConfig.ips of type []*ip.IP"),
    ({"runtimeConfig": 5}, 'json: cannot unmarshal number into Go struct field Net.runtimeConfig of type '
                           'struct { IPRanges []allocator.RangeSet "json:\\"ipRanges,omitempty\\""; '
                           'IPs []*ip.IP "json:\\"ips,omitempty\\"" }'),
    ({"args": {"cni": {"ips": "x"}}},
     "json: cannot unmarshal string into Go struct field IPAMArgs.args.cni.ips of type []*ip.IP"),
    ({"args": {"cni": 5}}, "json: cannot unmarshal number into Go struct field .args.cni of type "
                           "allocator.IPAMArgs"),
    ({"args": 5}, 'json: cannot unmarshal number into Go struct field Net.args of type '
                  'struct { A *allocator.IPAMArgs "json:\\"cni\\"" }'),
    ({"runtimeConfig": {"ipRanges": [[{"subnet": 5}]]}},
     "json: cannot unmarshal number into Go struct field Range.runtimeConfig.ipRanges.subnet of type string"),
    ({"runtimeConfig": {"ips": ["10.0.0.300/24"]}}, "invalid IP address 10.0.0.300/24"),
    ({"runtimeConfig": {"ips": [""]}}, "cannot understand ip: IP <nil> not v4 nor v6"),
]


def bad_config(data_dir: Path, case: dict, top: bool = False) -> dict:
    if top:
        config = netconf(data_dir, subnet="10.0.0.0/24")
        config.update(case)
        return config
    config = netconf(data_dir)
    config["ipam"].update(case)
    return config


@pytest.mark.parametrize("case,msg", BAD_CONFIGS, ids=[m[:50] for _, m in BAD_CONFIGS])
def test_invalid_ipam_configs(tmp_path: Path, case: dict, msg: str) -> None:
    commands = ("ADD",) if "resolvConf" in case else ("ADD", "DEL", "CHECK")  # only ADD reads it
    for command in commands:
        assert err(run(command, bad_config(tmp_path, case))) == (1, 999, msg), command
    assert not (tmp_path / "hlnet").exists() or not records(tmp_path)


@pytest.mark.parametrize("case,msg", BAD_TOP_LEVEL, ids=[m[:50] for _, m in BAD_TOP_LEVEL])
def test_invalid_network_configs(tmp_path: Path, case: dict, msg: str) -> None:
    assert err(run("ADD", bad_config(tmp_path, case, top=True))) == (1, 999, msg)


def test_keys_match_case_insensitively_like_go(tmp_path: Path) -> None:
    config = {"cniVersion": "1.0.0", "name": "hlnet",
              "ipam": {"SUBNET": "10.8.0.0/24", "DataDir": str(tmp_path), "subnet": "10.9.0.0/24",
                       "RangeStart": "10.9.0.7"}}
    assert add(config)["ips"] == [{"address": "10.9.0.7/24", "gateway": "10.9.0.1"}]
    assert list(records(tmp_path)) == ["10.9.0.7"]


def test_routes_keep_1_1_attributes(tmp_path: Path) -> None:
    config = netconf(tmp_path, "1.1.0", subnet="10.0.0.0/24",
                     routes=[{"dst": "::ffff:10.0.0.0/104", "mtu": 1400, "table": 100},
                             {"dst": "10.9.9.9/8", "gw": "::ffff:10.0.0.1", "priority": 5}])
    assert add(config)["routes"] == [{"dst": "10.0.0.0/8", "mtu": 1400, "table": 100},
                                     {"dst": "10.9.9.9/8", "gw": "10.0.0.1", "priority": 5}]
    # Where the reference prints garbage, we refuse or skip.
    no_dst = netconf(tmp_path, "1.1.0", subnet="10.0.0.0/24", routes=[None, {"gw": "10.0.0.1"}])
    assert err(run("ADD", no_dst, cid="b"))[2] == "invalid CIDR address: "
    skipped = netconf(tmp_path, "1.1.0", subnet="10.0.0.0/24", routes=[None, {"dst": "0.0.0.0/0"}])
    assert add(skipped, cid="c")["routes"] == [{"dst": "0.0.0.0/0"}]
    bad = netconf(tmp_path, "1.1.0", subnet="10.0.0.0/24", routes=[{"dst": "10.0.0.0/8", "mtu": "x"}])
    assert err(run("ADD", bad))[2] == \
        "json: cannot unmarshal string into Go struct field IPAMConfig.ipam.routes of type int"


# -- concurrency, in-process ----------------------------------------------------------------------

def test_threads_never_share_an_address(tmp_path: Path) -> None:
    config = netconf(tmp_path, subnet="10.7.0.0/26")
    barrier = threading.Barrier(30)

    def one(i: int) -> list[str]:
        barrier.wait()
        return addresses(add(config, cid=f"t{i}"))

    with ThreadPoolExecutor(30) as pool:
        got = [ip for ips in pool.map(one, range(30)) for ip in ips]
    assert len(set(got)) == 30
    assert sorted(records(tmp_path)) == sorted(got)


# -- through the launcher ----------------------------------------------------------------------

def test_launcher_answers_version(launcher: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CNI_", "PYTHON"))}
    env["CNI_COMMAND"] = "VERSION"
    proc = subprocess.run([launcher], env=env, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"cniVersion": "1.1.0", "supportedVersions": list(ALL)}


@pytest.mark.parametrize("version", ["0.2.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
def test_launcher_add_check_del(launcher: str, tmp_path: Path, version: str) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 192.0.2.3\nsearch example.com\n")
    config = dual_stack(tmp_path / "data", version, resolv)
    added = exec_plugin(launcher, "ADD", config).ok()
    assert added.json == expected_dual_stack(version)
    assert added.stderr == b""
    if version >= "0.4.0":
        exec_plugin(launcher, "CHECK", config).ok()
    dup = exec_plugin(launcher, "ADD", config)
    assert (dup.code, dup.json["code"]) == (1, 999)
    assert exec_plugin(launcher, "DEL", config).ok().stdout == b""
    assert records(tmp_path / "data") == {}
    if version >= "0.4.0":
        assert exec_plugin(launcher, "CHECK", config).json["msg"] == \
            "host-local: Failed to find address added by container ctr1"


def test_launcher_gc_and_status(launcher: str, tmp_path: Path) -> None:
    config = netconf(tmp_path, "1.1.0", subnet="10.3.0.0/24")
    for cid in ("keep", "drop"):
        exec_plugin(launcher, "ADD", config, cid=cid).ok()
    exec_plugin(launcher, "STATUS", config).ok()
    gc = dict(config, **{"cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"}]})
    exec_plugin(launcher, "GC", gc).ok()
    assert records(tmp_path) == {"10.3.0.2": b"keep\r\neth0"}


# -- interop with the Go reference -------------------------------------------------------------------

def semantic(result: dict) -> dict:
    """A result without the empty "dns" Debian's older libcni prints for 1.x."""
    out = dict(result)
    if out.get("dns") == {} and str(out.get("cniVersion", "")).startswith("1."):
        del out["dns"]
    return out


@pytest.mark.interop
@needs_go
@pytest.mark.parametrize("version", ["0.2.0", "0.3.1", "0.4.0", "1.0.0"])
def test_same_addresses_and_results_as_go(launcher: str, tmp_path: Path, version: str) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 192.0.2.3\ndomain example.org\nsearch example.com\noptions ndots:2\n")
    ipam = {"ranges": [[{"subnet": "10.0.0.0/29", "rangeStart": "10.0.0.4"},
                        {"subnet": "10.0.1.0/29", "rangeEnd": "10.0.1.3", "gateway": "10.0.1.2"}],
                       [{"subnet": "fd00::/125", "rangeStart": "fd00::3"}]],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "fd10::/64", "gw": "fd00::1"}],
            "resolvConf": str(resolv)}
    # A sequence with releases, requested addresses, wraparound and exhaustion.
    steps = [("ADD", "a", ""), ("ADD", "b", ""), ("ADD", "c", ""), ("DEL", "a", ""), ("ADD", "d", ""),
             ("ADD", "e", "IP=fd00::6"), ("ADD", "f", ""), ("DEL", "c", ""), ("ADD", "g", ""),
             ("ADD", "h", ""), ("ADD", "b", ""), ("ADD", "i", "IP=10.0.0.4"), ("ADD", "j", "IP=10.0.1.2"), ("ADD", "k", ""),
             ("DEL", "zz", ""), ("CHECK", "d", ""), ("CHECK", "a", "")]
    if version in ("0.2.0", "0.3.1"):
        steps = [s for s in steps if s[0] != "CHECK"]
    outputs = {}
    for name, exe in (("go", GO_HOST_LOCAL), ("ours", launcher)):
        config = netconf(tmp_path / name, version, **ipam)
        seen = []
        for command, cid, args in steps:
            out = exec_plugin(exe, command, config, cid=cid, args=args)
            body = out.json
            if out.code != 0:
                body = {"code": body["code"], "msg": body["msg"]}
            elif body is not None:
                body = semantic(body)
            seen.append((command, cid, out.code, body))
        outputs[name] = (seen, records(tmp_path / name),
                         sorted(os.listdir(store_dir(tmp_path / name))),
                         [(store_dir(tmp_path / name) / f"last_reserved_ip.{i}").read_bytes() for i in (0, 1)])
    assert outputs["ours"] == outputs["go"]
    assert any(code != 0 for _, _, code, _ in outputs["go"][0])  # the sequence does hit errors


@pytest.mark.interop
@needs_go
def test_fifty_concurrent_adds_split_between_go_and_ours(launcher: str, tmp_path: Path) -> None:
    config = netconf(tmp_path, subnet="10.20.0.0/26", routes=[{"dst": "0.0.0.0/0"}])  # 61 addresses
    barrier = threading.Barrier(50)

    def one(i: int) -> tuple[str, Outcome]:
        exe = GO_HOST_LOCAL if i % 2 else launcher
        barrier.wait()
        return exe, exec_plugin(exe, "ADD", config, cid=f"ctr-{i}")

    with ThreadPoolExecutor(50) as pool:
        outcomes = list(pool.map(one, range(50)))
    got = []
    for exe, out in outcomes:
        assert out.code == 0, (exe, out)
        got.extend(addresses(out.json))
    assert len(got) == 50 and len(set(got)) == 50
    stored = records(tmp_path)
    assert len(stored) == 50 and sorted(stored) == sorted(got)
    assert sorted(stored.values()) == sorted(f"ctr-{i}\r\neth0".encode() for i in range(50))
    # And everything is released again, half by each implementation.
    with ThreadPoolExecutor(50) as pool:
        dels = list(pool.map(lambda i: exec_plugin(launcher if i % 2 else GO_HOST_LOCAL, "DEL", config,
                                                   cid=f"ctr-{i}"), range(50)))
    assert all(out.code == 0 for out in dels), [o for o in dels if o.code]
    assert records(tmp_path) == {}


@pytest.mark.interop
@needs_go
def test_either_releases_and_checks_the_others_reservations(launcher: str, tmp_path: Path) -> None:
    config = netconf(tmp_path, ranges=[[{"subnet": "10.30.0.0/24"}], [{"subnet": "fd30::/64"}]])
    mine = addresses(exec_plugin(launcher, "ADD", config, cid="ours").ok().json)
    theirs = addresses(exec_plugin(GO_HOST_LOCAL, "ADD", config, cid="go").ok().json)
    assert mine == ["10.30.0.2", "fd30::2"] and theirs == ["10.30.0.3", "fd30::3"]  # one cursor, shared
    assert records(tmp_path) == {ip: b"ours\r\neth0" for ip in mine} | {ip: b"go\r\neth0" for ip in theirs}
    # Each sees the other's reservation as a duplicate and as present.
    assert exec_plugin(GO_HOST_LOCAL, "ADD", config, cid="ours").json["msg"].endswith(
        "10.30.0.2 has been allocated to ours, duplicate allocation is not allowed")
    assert exec_plugin(launcher, "ADD", config, cid="go").json["msg"].endswith(
        "10.30.0.3 has been allocated to go, duplicate allocation is not allowed")
    exec_plugin(GO_HOST_LOCAL, "CHECK", config, cid="ours").ok()
    exec_plugin(launcher, "CHECK", config, cid="go").ok()
    # Each releases the other's.
    exec_plugin(GO_HOST_LOCAL, "DEL", config, cid="ours").ok()
    exec_plugin(launcher, "DEL", config, cid="go").ok()
    assert records(tmp_path) == {}
    # Legacy records (bare ID) are released by both the same way.
    netdir = store_dir(tmp_path)
    (netdir / "10.30.0.50").write_bytes(b"old-a")
    (netdir / "10.30.0.51").write_bytes(b"old-b")
    exec_plugin(GO_HOST_LOCAL, "DEL", config, cid="old-a").ok()
    exec_plugin(launcher, "DEL", config, cid="old-b").ok()
    assert records(tmp_path) == {}
    # Round robin continues across implementations.
    assert addresses(exec_plugin(launcher, "ADD", config, cid="x").ok().json) == ["10.30.0.4", "fd30::4"]
    assert addresses(exec_plugin(GO_HOST_LOCAL, "ADD", config, cid="y").ok().json) == ["10.30.0.5", "fd30::5"]


@pytest.mark.interop
@needs_go
def test_error_outputs_match_go(launcher: str, tmp_path: Path) -> None:
    cases = [bad_config(tmp_path / "d", case) for case, _ in BAD_CONFIGS]
    cases += [bad_config(tmp_path / "d", case, top=True) for case, _ in BAD_TOP_LEVEL]
    arg_cases = ["IP=10.0.0.300", "IP=x/24", "FOO=1", "IP=10.0.0.5;FOO=bar", "IgnoreUnknown=maybe", "novalue"]
    runs = [(config, "") for config in cases]
    runs += [(netconf(tmp_path / "d", subnet="10.0.0.0/24"), args) for args in arg_cases]
    runs.append((netconf(tmp_path / "d", "0.2.0", ranges=[[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.2.0.0/24"}]]), ""))
    for config, args in runs:
        go = exec_plugin(GO_HOST_LOCAL, "ADD", config, args=args)
        ours = exec_plugin(launcher, "ADD", config, args=args)
        assert go.code == 1, (config, go)
        assert (ours.code, ours.json["code"], ours.json["msg"]) == (go.code, go.json["code"], go.json["msg"]), config
        assert not (tmp_path / "d").exists() or records(tmp_path / "d") == {}
