"""The built-in portmap meta plugin: config rules, the reference's iptables rules byte for
byte (Go's v1.1.1 side by side), DEL both ways between Go and us, CHECK, DEL's
idempotence, the nftables backend, and real connections to published ports.

Safety: every plugin run, every iptables/nft rule and every connection happens in
the private namespaces of the ``cni_sandbox`` fixtures: the plugins run with the
sandbox's host namespace as their own (``run_executable``/``PluginRunner``/
``cni_conflist`` enter it), listeners are started inside a sandbox container
namespace and stopped by PID, and clients connect only to sandbox addresses.
"""

from __future__ import annotations

import os
import re
import select
import socket
import subprocess
import sys
import time

import pytest

import cni_plugins_builtin.portmap.plugin as portmap
from cni_plugins_builtin.portmap import iptables as pm_iptables
from cni_plugins_builtin.portmap.config import parse_conf
from cnicore._go.json import NetConfError
from cnicore.testing import run_executable
from cnicore.testing import run_in as sh

privileged = pytest.mark.privileged
interop = pytest.mark.interop

GO_DIR = "/usr/lib/cni"
GO_PORTMAP = GO_DIR + "/portmap"
NET = "pm-net"
CID = "cnitest-portmap"
#: Spec versions with chaining (prevResult); CHECK from 0.4.0 on.
VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
#: What Debian's Go portmap v1.1.1 speaks.
GO_VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0"]
V4, V6 = "10.9.0.2/24", "fd00:9::2/64"


def mappings(count: int, first: int = 8080, protocol: str = "tcp", **extra: object) -> list[dict[str, object]]:
    return [{"hostPort": first + i, "containerPort": 80 + i, "protocol": protocol, **extra} for i in range(count)]


def prev_result(version: str, netns_path: str, ips: tuple[str, ...] = (V4, V6)) -> dict[str, object]:
    out_ips: list[dict[str, object]] = []
    for ip in ips:
        entry: dict[str, object] = {"address": ip, "interface": 1}
        if version.startswith("0."):
            entry["version"] = "6" if ":" in ip else "4"
        out_ips.append(entry)
    return {"cniVersion": version,
            "interfaces": [{"name": "cni0", "mac": "0a:58:0a:09:00:01"},
                           {"name": "eth0", "mac": "0a:58:0a:09:00:02", "sandbox": netns_path}],
            "ips": out_ips}


def conf(version: str, maps: list[dict[str, object]] | None, prev: dict | None = None,
         **extra: object) -> dict[str, object]:
    out: dict[str, object] = {"cniVersion": version, "name": NET, "type": "portmap", **extra}
    if maps is not None:
        out["runtimeConfig"] = {"portMappings": maps}
    if prev is not None:
        out["prevResult"] = prev
    return out


def nat_tables(netns) -> str:
    """``iptables-save`` and ``ip6tables-save`` of the nat table, without the dated comments."""
    text = ""
    for tool in ("iptables-save", "ip6tables-save"):
        text += re.sub(r"^#.*\n", "", sh(netns, tool, "-t", "nat"), flags=re.M)
    return text


def dn_chains(netns) -> list[str]:
    return sorted(set(re.findall(r"CNI-DN-[0-9a-f]+", nat_tables(netns))))


def need(path: str) -> None:
    assert os.access(path, os.X_OK), "CI installs containernetworking-plugins"


@pytest.fixture(scope="session")
def bindir(tmp_path_factory, cni_install) -> str:
    """Our launchers (portmap, bridge, host-local, ...) in a private bin dir (cold or warm)."""
    path = tmp_path_factory.mktemp("pmbin")
    cni_install(str(path))
    assert os.access(path / "portmap", os.X_OK)
    return str(path)


@pytest.fixture(params=["in-process", "launcher"])
def ours(request, cni_runner, cni_sandbox, bindir):
    """Run our portmap: ``ours(command, config, netns, container_id=...)`` -> Outcome."""
    runner = cni_runner(portmap, "portmap", path=bindir)

    def run(command: str, config: dict, netns, **env):
        env.setdefault("container_id", CID)
        if request.param == "launcher":
            return run_executable(os.path.join(bindir, "portmap"), command, config, host=cni_sandbox.host,
                                  netns=netns, path=bindir, **env)
        return runner.run(command, config, netns=netns, **env)

    return run


def go(command: str, config: dict, sandbox, netns, **env):
    env.setdefault("container_id", CID)
    return run_executable(GO_PORTMAP, command, config, host=sandbox.host, netns=netns, **env)


# -- configuration (pure) ---------------------------------------------------------------


def test_defaults() -> None:
    c = parse_conf(conf("1.0.0", mappings(1)))
    assert (c.snat, c.mark_bit, c.backend, c.external_set_mark_chain, c.masq_all) == (True, 13, "iptables", None,
                                                                                      False)
    assert [(m.host_port, m.container_port, m.protocol, m.host_ip) for m in c.mappings] == [(8080, 80, "tcp", "")]
    assert parse_conf(conf("1.0.0", None, snat=False, markMasqBit=0)).snat is False


def test_nftables_is_the_default_only_without_iptables() -> None:
    assert parse_conf(conf("1.0.0", None), lambda: True).backend == "nftables"
    assert parse_conf(conf("1.0.0", None, backend="iptables"), lambda: True).backend == "iptables"


@pytest.mark.parametrize("extra, message", [
    ({"markMasqBit": 32}, "MasqMarkBit must be between 0 and 31"),
    ({"markMasqBit": -1}, "MasqMarkBit must be between 0 and 31"),
    ({"markMasqBit": 3, "externalSetMarkChain": "X"}, "Cannot specify externalSetMarkChain and markMasqBit"),
    ({"backend": "pf"}, 'unrecognized backend "pf"'),
    ({"backend": "nftables", "externalSetMarkChain": "X"},
     "nftables backend was requested but configuration contains iptables-specific options [externalSetMarkChain]"),
    ({"backend": "nftables", "conditionsV4": ["-s", "1.2.3.4"], "conditionsV6": ["!", "-s", "::1"]},
     "nftables backend was requested but configuration contains iptables-specific options "
     "[conditionsV4 conditionsV6]"),
    ({"conditionsV6": ["ip6", "saddr", "::1"]},
     "iptables backend was requested but configuration contains nftables-specific options [conditionsV6]"),
    ({"runtimeConfig": {"portMappings": mappings(1, first=0)}}, "Invalid host port number: 0"),
    ({"runtimeConfig": {"portMappings": [{"hostPort": 1, "containerPort": -2, "protocol": "tcp"}]}},
     "Invalid container port number: -2"),
    ({"snat": "yes"}, "failed to parse network configuration: json: cannot unmarshal string into Go struct "
                      "field PortMapConf.snat of type bool"),
])
def test_config_errors(extra, message) -> None:
    with pytest.raises(NetConfError) as info:
        parse_conf(conf("1.0.0", None, **extra))
    assert info.value.msg == message


def test_rules_are_the_references() -> None:
    """The per-container chain's rules, in the reference's order (hairpin, localhost, DNAT)."""
    c = parse_conf(conf("1.0.0", mappings(1) + mappings(1, 53, "udp", hostIP="10.1.1.1")
                        + mappings(1, 443, hostIP="fd00::1")))
    from cni_plugins_builtin.portmap.config import ContainerNet

    chain = pm_iptables.dnat_chain(c, "abc", ContainerNet("10.9.0.2", 24, False))
    assert chain.name == "CNI-DN-a2b57c0d21777b012b86c"
    assert chain.entry_rules == [
        ["-m", "comment", "--comment", 'dnat name: "pm-net" id: "abc"', "-m", "multiport", "-p", "tcp",
         "--destination-ports", "8080,443"],
        ["-m", "comment", "--comment", 'dnat name: "pm-net" id: "abc"', "-m", "multiport", "-p", "udp",
         "--destination-ports", "53"]]
    assert chain.rules == [
        ["-p", "tcp", "--dport", "8080", "-s", "10.9.0.2/24", "-j", "CNI-HOSTPORT-SETMARK"],
        ["-p", "tcp", "--dport", "8080", "-s", "127.0.0.1", "-j", "CNI-HOSTPORT-SETMARK"],
        ["-p", "tcp", "--dport", "8080", "-j", "DNAT", "--to-destination", "10.9.0.2:80"],
        ["-p", "udp", "--dport", "53", "-d", "10.1.1.1", "-s", "10.9.0.2/24", "-j", "CNI-HOSTPORT-SETMARK"],
        ["-p", "udp", "--dport", "53", "-d", "10.1.1.1", "-s", "127.0.0.1", "-j", "CNI-HOSTPORT-SETMARK"],
        ["-p", "udp", "--dport", "53", "-d", "10.1.1.1", "-j", "DNAT", "--to-destination", "10.9.0.2:80"]]
    many = pm_iptables.dnat_chain(parse_conf(conf("1.0.0", mappings(20))), "abc",
                                  ContainerNet("fd00::2", 64, True))
    assert [r[-1] for r in many.entry_rules] == [",".join(str(8080 + i) for i in range(15)),
                                                 ",".join(str(8080 + i) for i in range(15, 20))]
    assert len(many.rules) == 40  # no localhost rule for IPv6
    assert many.rules[1] == ["-p", "tcp", "--dport", "8080", "-j", "DNAT", "--to-destination", "[fd00::2]:80"]


def test_masq_all_masquerades_every_source() -> None:
    """``masqAll`` (later releases): the mark rule matches any source, no localhost rule."""
    from cni_plugins_builtin.portmap import nftables as pm_nftables
    from cni_plugins_builtin.portmap.config import ContainerNet

    c = parse_conf(conf("1.0.0", mappings(1), masqAll=True))
    for net, src in ((ContainerNet("10.9.0.2", 24, False), "0.0.0.0/0"), (ContainerNet("fd00::2", 64, True), "::/0")):
        rules = pm_iptables.dnat_chain(c, "abc", net).rules
        assert [r for r in rules if "CNI-HOSTPORT-SETMARK" in r] == [
            ["-p", "tcp", "--dport", "8080", "-s", src, "-j", "CNI-HOSTPORT-SETMARK"]]
        masq = [line for line in pm_nftables.forward_script(c, "abc", net) if "masquerade comment" in line]
        assert len(masq) == 1 and f"saddr {src} " in masq[0]


# -- the iptables rules, against Go's ------------------------------------------------------------

#: Configs whose rules must be byte-identical to Go v1.1.1's (both families).
IDENTICAL = {
    "one mapping": {"runtimeConfig": {"portMappings": mappings(1)}},
    "ten mappings": {"runtimeConfig": {"portMappings": mappings(10)}},
    "twenty mappings, multiport split": {"runtimeConfig": {"portMappings": mappings(20)}},
    "protocols and hostIPs": {"runtimeConfig": {"portMappings": [
        *mappings(1), *mappings(1, 53, "udp", hostIP="10.1.1.1"), *mappings(1, 9000, "sctp"),
        *mappings(1, 8443, hostIP="fd00:9::1"), *mappings(1, 8444, hostIP="0.0.0.0"),
        *mappings(1, 8445, hostIP="::")]}},
    "snat off": {"snat": False, "runtimeConfig": {"portMappings": mappings(2)}},
    "markMasqBit": {"markMasqBit": 5, "runtimeConfig": {"portMappings": mappings(1)}},
    "externalSetMarkChain": {"externalSetMarkChain": "KUBE-MARK-MASQ", "runtimeConfig": {"portMappings": mappings(1)}},
    "conditions": {"conditionsV4": ["-s", "192.0.2.0/24", "!", "-d", "192.0.2.9"],
                   "conditionsV6": ["-m", "comment", "--comment", "a \"quoted\" note"],
                   "runtimeConfig": {"portMappings": mappings(2)}},
}


def prepare_external_chain(netns, config: dict) -> None:
    chain = config.get("externalSetMarkChain")
    if chain:
        for tool in ("iptables", "ip6tables"):
            sh(netns, tool, "-t", "nat", "-N", chain, check=False)


@privileged
@interop
@pytest.mark.parametrize("case", sorted(IDENTICAL))
def test_rules_identical_to_go(ours, cni_sandbox, case) -> None:
    """Same input, same result and same ``iptables-save``; then each DEL removes the
    other's rules, and ADD over the other's chain adds nothing."""
    need(GO_PORTMAP)
    ctr = cni_sandbox.container()
    config = conf("1.0.0", None, prev_result("1.0.0", ctr.path), **IDENTICAL[case])
    prepare_external_chain(cni_sandbox.host, config)
    empty = nat_tables(cni_sandbox.host)

    go_out = go("ADD", config, cni_sandbox, ctr).ok()
    go_rules = nat_tables(cni_sandbox.host)
    assert dn_chains(cni_sandbox.host)
    ours("DEL", config, ctr).ok()  # ours removes Go's
    after_del = nat_tables(cni_sandbox.host)
    assert not dn_chains(cni_sandbox.host)

    our_out = ours("ADD", config, ctr).ok()
    go_json = go_out.json
    go_json.pop("dns", None)  # Debian's older libcni prints an empty "dns" for 1.x
    assert our_out.json == go_json
    assert nat_tables(cni_sandbox.host) == go_rules
    go("ADD", config, cni_sandbox, ctr).ok()  # Go's ADD over ours finds everything there
    assert nat_tables(cni_sandbox.host) == go_rules
    ours("ADD", config, ctr).ok()  # and so does ours over Go's
    assert nat_tables(cni_sandbox.host) == go_rules
    go("DEL", config, cni_sandbox, ctr).ok()  # Go's removes ours
    assert nat_tables(cni_sandbox.host) == after_del
    assert empty != go_rules


@privileged
@interop
def test_several_containers_and_networks_like_go(ours, cni_sandbox) -> None:
    """Shared chains are made once; each container's chain goes with its DEL only."""
    need(GO_PORTMAP)
    ctrs = [cni_sandbox.container() for _ in range(3)]
    configs = [conf("1.0.0", mappings(2, 8080 + 10 * i), prev_result("1.0.0", c.path, (f"10.9.0.{i + 2}/24",)))
               for i, c in enumerate(ctrs)]
    configs[2]["name"] = "other-net"
    tables = {}
    for who in ("go", "ours"):
        for i, (c, config) in enumerate(zip(ctrs, configs)):
            (go("ADD", config, cni_sandbox, c, container_id=f"c{i}") if who == "go"
             else ours("ADD", config, c, container_id=f"c{i}")).ok()
        tables[who] = nat_tables(cni_sandbox.host)
        assert len(dn_chains(cni_sandbox.host)) == 3
        deleter = "ours" if who == "go" else "go"
        (ours("DEL", configs[1], ctrs[1], container_id="c1") if deleter == "ours"
         else go("DEL", configs[1], cni_sandbox, ctrs[1], container_id="c1")).ok()
        assert len(dn_chains(cni_sandbox.host)) == 2
        assert "10.9.0.3" not in nat_tables(cni_sandbox.host)
        for i in (0, 2):
            (ours("DEL", configs[i], ctrs[i], container_id=f"c{i}") if deleter == "ours"
             else go("DEL", configs[i], cni_sandbox, ctrs[i], container_id=f"c{i}")).ok()
        assert not dn_chains(cni_sandbox.host)
    assert tables["go"] == tables["ours"]


@privileged
def test_concurrent_adds_and_dels_keep_every_containers_rules(cni_sandbox, bindir) -> None:
    """ADDs racing on a fresh table (each wants to create the shared chains) and then
    DELs racing: no ADD flushes a chain another made, no shared jump is doubled, and
    every DEL removes its own chain only."""
    from concurrent.futures import ThreadPoolExecutor

    launcher = os.path.join(bindir, "portmap")
    ctr = cni_sandbox.container()
    count = 8

    def run(command: str, i: int):
        config = conf("1.0.0", mappings(1, 8000 + i), prev_result("1.0.0", ctr.path, (f"10.9.1.{i + 2}/24",
                                                                                       f"fd00:9::{i + 2}/64")))
        return run_executable(launcher, command, config, host=cni_sandbox.host, netns=ctr, path=bindir,
                              container_id=f"race-{i}", timeout=120)

    with ThreadPoolExecutor(count) as pool:
        outs = list(pool.map(lambda i: run("ADD", i), range(count)))
    assert all(o.code == 0 for o in outs), [o for o in outs if o.code]
    for tool in ("iptables", "ip6tables"):
        rules = sh(cni_sandbox.host, tool, "-t", "nat", "-S")
        assert rules.count("-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT") == 1, rules
        assert rules.count("-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT") == 1, rules
        assert rules.count("-j CNI-HOSTPORT-MASQ") == 1, rules
        assert rules.count("-A CNI-HOSTPORT-SETMARK") == 1 and rules.count("-A CNI-HOSTPORT-MASQ") == 1, rules
        assert len(re.findall(r"-A CNI-HOSTPORT-DNAT .*-j CNI-DN-", rules)) == count, rules
    assert len(dn_chains(cni_sandbox.host)) == count
    with ThreadPoolExecutor(count) as pool:
        outs = list(pool.map(lambda i: run("DEL", i), range(count)))
    assert all(o.code == 0 for o in outs), [o for o in outs if o.code]
    assert not dn_chains(cni_sandbox.host)


# -- errors, side by side --------------------------------------------------------------------

ERRORS = {
    "no prevResult": ("ADD", {}),
    "mark bit out of range": ("ADD", {"markMasqBit": 32}),
    "mark bit and external chain": ("ADD", {"markMasqBit": 1, "externalSetMarkChain": "X"}),
    "host port 0": ("ADD", {"runtimeConfig": {"portMappings": mappings(1, first=0)}}),
    "container port -1": ("ADD", {"runtimeConfig": {"portMappings": [
        {"hostPort": 80, "containerPort": -1, "protocol": "tcp"}]}}),
    "snat not a bool": ("ADD", {"snat": "yes"}),
    "port not a number": ("ADD", {"runtimeConfig": {"portMappings": [{"hostPort": "80", "containerPort": 1}]}}),
    "CHECK without prevResult": ("CHECK", {}),
    "DEL with a bad mark bit": ("DEL", {"markMasqBit": 99}),
}


@privileged
@interop
@pytest.mark.parametrize("case", sorted(ERRORS))
def test_errors_like_go(ours, cni_sandbox, case) -> None:
    need(GO_PORTMAP)
    command, extra = ERRORS[case]
    ctr = cni_sandbox.container()
    prev = None if "prevResult" in case else prev_result("1.0.0", ctr.path)
    config = conf("1.0.0", mappings(1), prev)
    config.update(extra)
    before = nat_tables(cni_sandbox.host)
    outs = {"go": go(command, config, cni_sandbox, ctr), "ours": ours(command, config, ctr)}
    for out in outs.values():
        assert out.code == 1, out
        assert out.error is not None and out.error.code == 999
        assert b"Traceback" not in out.stdout + out.stderr
    assert outs["ours"].error.msg == outs["go"].error.msg
    assert nat_tables(cni_sandbox.host) == before


# -- spec versions -----------------------------------------------------------------------------


@privileged
@pytest.mark.parametrize("version", VERSIONS)
def test_add_check_del_across_versions(ours, cni_sandbox, version) -> None:
    """The result is prevResult, passed through in the config's version; CHECK passes
    (0.4.0+) until DEL; DEL twice, and DEL without prevResult or netns, succeed."""
    ctr = cni_sandbox.container()
    prev = prev_result(version, ctr.path)
    config = conf(version, mappings(2), prev)
    out = ours("ADD", config, ctr).ok().json
    assert out.pop("dns", {}) == {}  # the 0.x results always print "dns"
    assert out == prev
    assert len(dn_chains(cni_sandbox.host)) == 1
    if version >= "0.4.0":
        ours("CHECK", config, ctr).ok()
    ours("DEL", conf(version, mappings(2)), "").ok()
    assert not dn_chains(cni_sandbox.host)
    ours("DEL", config, ctr).ok()
    ours("DEL", config, "/var/run/netns/cnitest-portmap-gone").ok()
    if version >= "0.4.0":
        failed = ours("CHECK", config, ctr)
        assert failed.code == 1
        assert failed.error.msg == (f"could not check ipv4 dnat: chain {pm_iptables.dnat_chain_name(NET, CID)} "
                                    "not found in iptables table nat")


@privileged
@interop
@pytest.mark.parametrize("version", ["0.1.0", "0.2.0", *GO_VERSIONS])
def test_versions_side_by_side_with_go(ours, cni_sandbox, version) -> None:
    """Every version Go's v1.1.1 speaks (0.1.0/0.2.0 results carry ``ip4``/``ip6``): the
    same output and the same rules; CHECK where the spec has it, on the rules Go made."""
    need(GO_PORTMAP)
    ctr = cni_sandbox.container()
    prev: dict = (prev_result(version, ctr.path) if version >= "0.3.0"
                  else {"cniVersion": version, "ip4": {"ip": V4}, "ip6": {"ip": V6}})
    config = conf(version, mappings(3) + mappings(1, 53, "udp"), prev)
    go_out = go("ADD", config, cni_sandbox, ctr).ok()
    go_rules = nat_tables(cni_sandbox.host)
    if version >= "0.4.0":
        ours("CHECK", config, ctr).ok()
    ours("DEL", config, ctr).ok()
    assert not dn_chains(cni_sandbox.host)
    our_out = ours("ADD", config, ctr).ok()
    go_json = go_out.json
    if version == "1.0.0":
        go_json.pop("dns", None)  # Debian's older libcni prints an empty "dns" for 1.x
    assert our_out.json == go_json
    assert nat_tables(cni_sandbox.host) == go_rules
    go("DEL", config, cni_sandbox, ctr).ok()
    assert not dn_chains(cni_sandbox.host)


@privileged
@pytest.mark.parametrize("version", VERSIONS)
def test_no_mappings_passes_through(ours, cni_sandbox, version) -> None:
    ctr = cni_sandbox.container()
    before = nat_tables(cni_sandbox.host)
    prev = prev_result(version, ctr.path)
    for maps in (None, []):
        out = ours("ADD", conf(version, maps, prev), ctr).ok().json
        assert out.pop("dns", {}) == {}
        assert out == prev
        if version >= "0.4.0":
            ours("CHECK", conf(version, maps, prev), ctr).ok()
        ours("DEL", conf(version, maps), ctr).ok()
    assert nat_tables(cni_sandbox.host) == before


@privileged
def test_only_the_container_interfaces_addresses(ours, cni_sandbox) -> None:
    """Addresses of the host-side interface (no sandbox) are skipped; the first of each
    family on the container's interface is used."""
    ctr = cni_sandbox.container()
    prev = prev_result("1.0.0", ctr.path, ("10.9.0.2/24", "10.9.0.3/24"))
    prev["ips"].insert(0, {"address": "10.8.0.1/24", "interface": 0})
    ours("ADD", conf("1.0.0", mappings(1), prev), ctr).ok()
    rules = nat_tables(cni_sandbox.host)
    assert "--to-destination 10.9.0.2:80" in rules
    assert "10.8.0.1" not in rules and "10.9.0.3" not in rules
    assert "fd00" not in rules


@privileged
def test_stale_udp_conntrack_entries_are_deleted(ours, cni_sandbox) -> None:
    """A UDP flow to the host port from before the ADD would bypass the new DNAT: ADD
    deletes the entries for its UDP host ports, of that family, and no others."""
    host = cni_sandbox.host
    sh(host, "ip", "link", "set", "lo", "up")
    for tool in ("iptables", "ip6tables"):  # conntrack runs in a namespace only once something uses it
        sh(host, tool, "-A", "OUTPUT", "-m", "conntrack", "--ctstate", "NEW", "-j", "ACCEPT")

    def entries() -> list[str]:
        def read() -> list[str]:
            with open("/proc/thread-self/net/nf_conntrack") as fh:
                return [line for line in fh.read().splitlines() if " udp " in line]

        return host.do(read)

    def send(ip: str, port: int) -> None:
        def run() -> None:
            with socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(b"x", (ip, port))

        host.do(run)

    for ip in ("127.0.0.1", "::1"):
        for port in (5353, 5354):
            send(ip, port)
    assert len(entries()) == 4
    ctr = cni_sandbox.container()
    config = conf("1.0.0", mappings(1, 5353, "udp") + mappings(1, 5354, "tcp"),
                  prev_result("1.0.0", ctr.path, (V4,)))
    ours("ADD", config, ctr).ok()
    left = entries()
    assert not [e for e in left if e.startswith("ipv4") and "dport=5353 " in e], left
    assert len(left) == 3, left  # IPv6 (no IPv6 address) and port 5354 (a TCP mapping) stay
    ours("DEL", config, ctr).ok()


# -- CHECK -------------------------------------------------------------------------------------


@privileged
@interop
def test_check_finds_the_rules_where_go_1_1_1_fails(ours, cni_sandbox) -> None:
    """1.1.1 looks for the IPv4 rules in ip6tables too; later releases (and we) check each
    address's rules in its own family."""
    need(GO_PORTMAP)
    ctr = cni_sandbox.container()
    config = conf("1.0.0", mappings(2), prev_result("1.0.0", ctr.path))
    go("ADD", config, cni_sandbox, ctr).ok()
    go_check = go("CHECK", config, cni_sandbox, ctr)
    assert go_check.code == 1 and "could not check ipv6 dnat" in go_check.error.msg
    ours("CHECK", config, ctr).ok()  # on Go's rules
    ours("DEL", config, ctr).ok()


@privileged
@pytest.mark.parametrize("what", ["dnat rule", "entry rule", "ipv6 chain"])
def test_check_detects_a_missing_rule(ours, cni_sandbox, what) -> None:
    ctr = cni_sandbox.container()
    config = conf("1.0.0", mappings(1), prev_result("1.0.0", ctr.path))
    ours("ADD", config, ctr).ok()
    chain = pm_iptables.dnat_chain_name(NET, CID)
    if what == "dnat rule":
        sh(cni_sandbox.host, "iptables", "-t", "nat", "-D", chain, "3")
        family = "ipv4"
    elif what == "entry rule":
        sh(cni_sandbox.host, "iptables", "-t", "nat", "-F", "CNI-HOSTPORT-DNAT")
        family = "ipv4"
    else:
        sh(cni_sandbox.host, "ip6tables", "-t", "nat", "-F", "CNI-HOSTPORT-DNAT")
        sh(cni_sandbox.host, "ip6tables", "-t", "nat", "-F", chain)
        sh(cni_sandbox.host, "ip6tables", "-t", "nat", "-X", chain)
        family = "ipv6"
    out = ours("CHECK", config, ctr)
    assert out.code == 1 and out.error.msg.startswith(f"could not check {family} dnat: ")
    ours("DEL", config, ctr).ok()
    assert not dn_chains(cni_sandbox.host)


#: Values that would add commands of their own to a script: for nft each ends the rule
#: early with ``;`` and adds a table (valid nft, so it would apply); for iptables-restore
#: a line break starts a new line.
EVIL = {
    ("nftables", "protocol"): "tcp dport 1 accept ; add table ip cnitest_evil ; add rule ip cni_hostport hostports tcp",
    ("nftables", "hostIP"): ("fd00:9::1 tcp dport 1 accept ; add table ip cnitest_evil ; "
                             "add rule ip6 cni_hostport hostports ip6 daddr fd00:9::1"),
    ("nftables", "conditions"): ("ip saddr 10.0.0.0/8 jump hostports_all ; add table ip cnitest_evil ; "
                                 "add rule ip cni_hostport prerouting ip saddr 10.0.0.0/8"),
    ("iptables", "protocol"): "tcp\n-A OUTPUT -j DROP",
    ("iptables", "hostIP"): "fd00:9::1\n-A OUTPUT -j DROP",
    ("iptables", "conditions"): "10.0.0.0/8\n-A OUTPUT -j DROP",
}


@privileged
@pytest.mark.parametrize("backend, field", sorted(EVIL))
def test_values_cannot_add_commands_of_their_own(ours, cni_sandbox, backend, field) -> None:
    """A protocol, hostIP or condition is one token, as when the reference execs iptables
    with it as one argument: one that would end its command in a restore or nft script is
    refused (999) and adds nothing."""
    ctr = cni_sandbox.container()
    evil = EVIL[(backend, field)]
    maps = mappings(1)
    extra: dict[str, object] = {"backend": backend}
    if field == "protocol":
        maps[0]["protocol"] = evil
    elif field == "hostIP":
        maps[0]["hostIP"] = evil
    else:
        extra["conditionsV4"] = ["-s", evil] if backend == "iptables" else [evil]
    # An unparseable hostIP counts as IPv6 (Go's net.ParseIP): the IPv6 address meets it.
    ips = (V6,) if field == "hostIP" else (V4,)
    before = nat_tables(cni_sandbox.host), nft_rules(cni_sandbox.host)
    out = ours("ADD", conf("1.0.0", maps, prev_result("1.0.0", ctr.path, ips), **extra), ctr)
    assert out.code == 1 and out.error.code == 999, out
    assert "DROP" not in nat_tables(cni_sandbox.host) and "cnitest_evil" not in nft_rules(cni_sandbox.host)
    assert (nat_tables(cni_sandbox.host), nft_rules(cni_sandbox.host)) == before


@privileged
def test_gc_and_status_succeed(ours, cni_sandbox) -> None:
    """The reference has no GC or STATUS (FIXMEs in its main); spec 1.1 callers get success."""
    for command in ("GC", "STATUS"):
        ours(command, conf("1.1.0", None), "").ok()


# -- nftables ----------------------------------------------------------------------------------


def nft_rules(netns) -> str:
    return sh(netns, "nft", "list", "ruleset")


@privileged
def test_nftables_backend(ours, cni_sandbox) -> None:
    ctr, other = cni_sandbox.container(), cni_sandbox.container()
    before_ipt = nat_tables(cni_sandbox.host)
    maps = [*mappings(1), *mappings(1, 53, "udp", hostIP="10.1.1.1"), *mappings(1, 443, hostIP="fd00:9::1")]
    config = conf("1.0.0", maps, prev_result("1.0.0", ctr.path), backend="nftables",
                  conditionsV4=["ip", "saddr", "!=", "192.0.2.1"])
    ours("ADD", config, ctr).ok()
    ours("ADD", dict(config, prevResult=prev_result("1.0.0", other.path, ("10.9.0.7/24",))), other,
         container_id="other").ok()
    ruleset = nft_rules(cni_sandbox.host)
    for line in ('comment "CNI portmap plugin"', f'tcp dport 8080 dnat to 10.9.0.2:80 comment "{CID}"',
                 f'ip daddr 10.1.1.1 udp dport 53 dnat to 10.9.0.2:80 comment "{CID}"',
                 f'tcp dport 8080 dnat to [fd00:9::2]:80 comment "{CID}"',
                 f'ip6 daddr fd00:9::1 tcp dport 443 dnat to [fd00:9::2]:80 comment "{CID}"',
                 f'ip saddr 10.9.0.2 ip daddr 10.9.0.2 masquerade comment "{CID}"',
                 f'ip saddr 127.0.0.1 ip daddr 10.9.0.2 masquerade comment "{CID}"',
                 f'ip6 saddr fd00:9::2 ip6 daddr fd00:9::2 masquerade comment "{CID}"',
                 "ip saddr != 192.0.2.1 fib daddr type local jump hostports_all",
                 "type nat hook postrouting priority srcnat"):
        assert line in ruleset, line
    assert "udp dport 53 dnat to [fd00" not in ruleset  # a hostIP of the other family is skipped
    assert nat_tables(cni_sandbox.host) == before_ipt
    ours("CHECK", config, ctr).ok()
    ours("DEL", config, ctr).ok()
    ours("DEL", config, ctr).ok()
    ruleset = nft_rules(cni_sandbox.host)
    assert CID not in ruleset and 'comment "other"' in ruleset
    out = ours("CHECK", config, ctr)
    assert out.code == 1 and out.error.msg == 'missing hostport rules in "hostports" chain'


# -- real connections --------------------------------------------------------------------------

LISTENER = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", int(sys.argv[1])))
s.listen(16)
s.settimeout(0.5)
print("ready", flush=True)
deadline = time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    try:
        conn, peer = s.accept()
    except socket.timeout:
        continue
    host = peer[0][7:] if peer[0].startswith("::ffff:") else peer[0]
    conn.sendall(host.encode() + b"\n")
    conn.close()
"""


class Listener:
    """A TCP server in a container namespace that answers each connection with the peer's
    address; bounded in time and stopped by PID."""

    def __init__(self, netns, port: int, lifetime: float = 120.0) -> None:
        self.proc = netns.do(subprocess.Popen, [sys.executable, "-I", "-c", LISTENER, str(port), str(lifetime)],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        if not ready or self.proc.stdout.readline().strip() != b"ready":
            self.stop()
            raise AssertionError(f"listener did not start: {self.proc.stderr.read()!r}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def connect(netns, ip: str, port: int, deadline: float = 20.0) -> str:
    """The peer address the listener saw, connecting from ``netns``; retried (bounded) while
    the path settles (IPv6 DAD)."""

    def once() -> str:
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect((ip, port))
            return s.makefile().readline().strip()

    end = time.monotonic() + deadline
    while True:
        try:
            return netns.do(once)
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.2)


def refused(netns, ip: str, port: int) -> bool:
    def once() -> bool:
        with socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            try:
                s.connect((ip, port))
            except (ConnectionRefusedError, TimeoutError, socket.timeout):
                return True
            return False

    return netns.do(once)


SUB4, GW4 = "10.77.0.0/24", "10.77.0.1"
SUB6, GW6 = "fd77::/64", "fd77::1"


def chain_conflist(tmp_path, backend: str | None) -> dict[str, object]:
    """bridge (a gateway, with hairpin ports: br_netfilter bridges a hairpin connection's
    DNATed frames back out of the port they came in on) + host-local + portmap."""
    portmap_conf: dict[str, object] = {"type": "portmap", "capabilities": {"portMappings": True}}
    if backend:
        portmap_conf["backend"] = backend
    return {"cniVersion": "1.0.0", "name": "pmchain", "plugins": [
        {"type": "bridge", "bridge": "cnipm0", "isGateway": True, "hairpinMode": True,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": SUB4}], [{"subnet": SUB6}]],
                  "dataDir": str(tmp_path / "ipam")}},
        portmap_conf]}


@pytest.fixture(scope="session")
def go_bridge_dir(tmp_path_factory) -> str:
    """Go's bridge and host-local alone in a directory, to put before ours on CNI_PATH."""
    path = tmp_path_factory.mktemp("gobridge")
    for name in ("bridge", "host-local"):
        os.symlink(os.path.join(GO_DIR, name), path / name)
    return str(path)


@pytest.fixture(scope="session")
def go_portmap_dir(tmp_path_factory) -> str:
    """Go's portmap alone in a directory, to put before ours on CNI_PATH."""
    path = tmp_path_factory.mktemp("goportmap")
    os.symlink(GO_PORTMAP, path / "portmap")
    return str(path)


@privileged
@pytest.mark.parametrize("bridge, backend", [("ours", None), ("go", None), ("ours", "nftables"),
                                             ("ours, Go's portmap", None)])
def test_published_ports_are_reachable(cni_conflist, cni_sandbox, bindir, go_bridge_dir, go_portmap_dir, tmp_path,
                                       bridge, backend) -> None:
    """bridge + host-local + portmap: the host reaches hostIP:hostPort (IPv4, IPv6, and
    127.0.0.1 through route_localnet and the masquerade), a mapping bound to a hostIP
    answers only there, and the container reaches itself through its host port (hairpin,
    masqueraded to the gateway). Our bridge with our portmap, Go's bridge with ours, and
    ours with Go's portmap (the same checks pass with Go's rules: ours are the same)."""
    if bridge != "ours":
        need(GO_DIR + "/bridge")
    path = {"go": [go_bridge_dir, bindir], "ours": [bindir], "ours, Go's portmap": [go_portmap_dir, bindir]}[bridge]
    runner = cni_conflist(chain_conflist(tmp_path, backend), cni_path=path)
    ctr = cni_sandbox.container()
    sh(cni_sandbox.host, "ip", "link", "set", "lo", "up")  # a fresh namespace's loopback is down
    maps = [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
            {"hostPort": 8081, "containerPort": 80, "protocol": "tcp", "hostIP": GW4},
            {"hostPort": 8082, "containerPort": 80, "protocol": "tcp", "hostIP": GW6}]
    result = runner.add(ctr, capability_args={"portMappings": maps})
    ips = sorted(ip["address"].split("/")[0] for ip in result["ips"])
    assert ips == ["10.77.0.2", "fd77::2"], ips
    try:
        with Listener(ctr, 80):
            host = cni_sandbox.host
            assert connect(host, GW4, 8080) == GW4
            assert connect(host, GW6, 8080) == GW6
            assert connect(host, "127.0.0.1", 8080) == GW4  # localhost, masqueraded
            assert sh(host, "cat", "/proc/sys/net/ipv4/conf/cnipm0/route_localnet").strip() == "1"
            assert connect(host, GW4, 8081) == GW4
            assert refused(host, "127.0.0.1", 8081)  # bound to the gateway address only
            assert connect(host, GW6, 8082) == GW6
            assert connect(ctr, GW4, 8080) == GW4  # hairpin
            assert connect(ctr, GW6, 8080) == GW6
            if bridge != "ours, Go's portmap":  # Go v1.1.1's CHECK fails for every mapping
                runner.check(ctr, capability_args={"portMappings": maps})
    finally:
        runner.delete(ctr, capability_args={"portMappings": maps})
    assert not dn_chains(cni_sandbox.host)
    if backend == "nftables":
        assert "dnat to" not in nft_rules(cni_sandbox.host)


@privileged
def test_hairpin_needs_snat(cni_conflist, cni_sandbox, bindir, tmp_path) -> None:
    """With ``snat: false`` no hairpin/localhost rules are made: the host still reaches
    the port on its address, 127.0.0.1 does not reach the container."""
    conflist = chain_conflist(tmp_path, None)
    conflist["plugins"][1]["snat"] = False  # type: ignore[index]
    runner = cni_conflist(conflist, cni_path=[bindir])
    ctr = cni_sandbox.container()
    maps = [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]
    runner.add(ctr, capability_args={"portMappings": maps})
    try:
        assert "CNI-HOSTPORT-SETMARK" not in nat_tables(cni_sandbox.host)
        with Listener(ctr, 80):
            assert connect(cni_sandbox.host, GW4, 8080) == GW4
    finally:
        runner.delete(ctr, capability_args={"portMappings": maps})


# -- tools --------------------------------------------------------------------------------------


@privileged
def test_tools_come_from_the_system_dirs_not_path(ours, cni_sandbox, tmp_path) -> None:
    """An ``iptables-save`` planted first on the caller's PATH is never run."""
    planted = tmp_path / "iptables-save"
    marker = tmp_path / "ran"
    planted.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    planted.chmod(0o755)
    ctr = cni_sandbox.container()
    config = conf("1.0.0", mappings(1), prev_result("1.0.0", ctr.path))
    env = dict(os.environ)
    try:
        os.environ["PATH"] = f"{tmp_path}:{env.get('PATH', '')}"
        ours("ADD", config, ctr).ok()
        ours("DEL", config, ctr).ok()
    finally:
        os.environ.clear()
        os.environ.update(env)
    assert not marker.exists()


def test_warm_reuse_is_declared() -> None:
    assert portmap.WARM_REUSE is True
