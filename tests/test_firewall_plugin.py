"""The built-in firewall meta plugin (iptables backend): rules, CHECK, DEL and traffic,
in real namespaces, in-process and through a launcher (cold, or warm with
CNICORE_TEST_LAUNCHERS=native), side by side with Go's /usr/lib/cni/firewall.

Safety: every plugin run and every iptables/ping runs inside a sandbox's
private namespaces (the plugin's host namespace is the sandbox's); pings go
only between container addresses in those namespaces, bounded in count and time.
"""

from __future__ import annotations

import json
import os
import re

import pytest

from cni_plugins_builtin.firewall import plugin as firewall
from cni_plugins_builtin.firewall.rules import host_address, quoted
from cni_plugins_builtin.firewall.table import split_saved
from cnicore.testing import PluginRunner, Sandbox, run_executable
from cnicore.testing import run_in as sh
from helpers.runners import exec_run, need, one_launcher, our_run

privileged = pytest.mark.privileged
interop = pytest.mark.interop

GO_FIREWALL = "/usr/lib/cni/firewall"
GO_BRIDGE = "/usr/lib/cni/bridge"
CID = "cnitest-fw"
NET = "fwnet"


def save(netns, v6: bool = False) -> str:
    """``iptables-save -t filter`` without comments and counters."""
    out = sh(netns, "ip6tables-save" if v6 else "iptables-save", "-t", "filter")
    return "\n".join(re.sub(r"\[\d+:\d+\]", "[0:0]", line) for line in out.splitlines()
                     if not line.startswith("#"))


def bridge(host, netns, tmp_path, *, name="cnifw0", subnet="10.80.0", cid=CID, version="1.0.0"):
    """A dual-stack container on Go's bridge; its ADD result."""
    need(GO_BRIDGE)
    conf = {"cniVersion": version, "name": NET, "type": "bridge", "bridge": name, "isGateway": True,
            "ipam": {"type": "host-local", "dataDir": str(tmp_path / "ipam"),
                     "ranges": [[{"subnet": f"{subnet}.0/24"}], [{"subnet": f"fd{subnet.split('.')[1]}::/64"}]],
                     "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}}
    return run_executable(GO_BRIDGE, "ADD", conf, host=host, netns=netns, container_id=cid).ok().json


def fw_conf(version, prev=None, **extra):
    conf = {"cniVersion": version, "name": NET, "type": "firewall", "backend": "iptables", **extra}
    if prev is not None:
        conf["prevResult"] = prev
    return conf


@pytest.fixture
def launcher(tmp_path_factory, cni_install):
    return one_launcher(tmp_path_factory.mktemp("bin"), cni_install, "firewall")


def ours(cni_runner, launcher, via, host):
    """A run function for our plugin, in-process or through the launcher."""
    return our_run(cni_runner, firewall, "firewall", launcher, via, host, CID)


def go(host):
    return exec_run(GO_FIREWALL, host, CID)


# -- pure ------------------------------------------------------------------------------


def test_restore_quoting():
    assert quoted(("-m", "comment", "--comment", "CNI firewall plugin rules", "-j", "CNI-FORWARD")) == \
        '-m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD'
    assert quoted(("-i", "br0", "!", "-o", "br0")) == "-i br0 ! -o br0"


@pytest.mark.parametrize("line", [
    '-A FORWARD -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD',
    '-A X -m comment --comment "a \\"q\\" b\\\\c" -j Y',
    '-A X -m comment --comment "" -j Y',
    '-A  X   -i br0 ! -o br0  -j ACCEPT ',
])
def test_saved_lines_split_like_shlex(line):
    import shlex

    assert split_saved(line) == shlex.split(line)
    rule = tuple(split_saved(line)[2:])
    assert split_saved(quoted(rule)) == list(rule)  # what we write reads back the same


@pytest.mark.parametrize("address, expected", [
    ("10.1.2.3/24", ("10.1.2.3/32", False)),
    ("FD80:0:0::0002/64", ("fd80::2/128", True)),  # as iptables-save prints it
    ("::ffff:10.1.2.3/120", ("10.1.2.3/32", False)),  # Go's To4: an IPv4 rule
])
def test_host_address_like_go_and_iptables_save(address, expected):
    assert host_address(address) == expected


def test_version_answer(cni_runner):
    out = cni_runner(firewall, "firewall").run("VERSION", b"")
    assert json.loads(out.stdout)["supportedVersions"] == ["0.4.0", "1.0.0", "1.1.0"]


# -- side by side with Go -------------------------------------------------------------


@privileged
@interop
@pytest.mark.parametrize("via", ["in-process", "launcher"])
@pytest.mark.parametrize("policy", ["", "same-bridge"])
@pytest.mark.parametrize("version", ["0.4.0", "1.0.0"])
def test_same_rules_as_go(cni_sandbox, tmp_path, launcher, via, policy, version):
    """Both protocols' filter tables are Go's after ADD (twice: no duplicates), CHECK and DEL;
    each side in its own private host namespace."""
    need(GO_FIREWALL)
    tables, results = {}, {}
    with Sandbox() as other:
        for who, sandbox in (("go", cni_sandbox), ("ours", other)):
            host, netns = sandbox.host, sandbox.container()
            prev = bridge(host, netns, tmp_path / who, version=version)
            if who == "go":
                run = go(host)
            elif via == "launcher":
                run = ours(None, launcher, via, host)
            else:
                def run(command, conf, netns="", cid=CID, _host=host):
                    return PluginRunner(firewall, "firewall", _host).run(command, conf, netns=netns,
                                                                         container_id=cid)
            conf = fw_conf(version, prev, **({"ingressPolicy": policy} if policy else {}))
            out = run("ADD", conf, netns).ok().json
            run("ADD", conf, netns).ok()
            tables[who] = (save(host), save(host, v6=True))
            out.pop("dns", None)  # Debian's older libcni prints an empty "dns" for 1.x
            results[who] = out
            run("CHECK", conf, netns).ok()
            run("DEL", conf, netns).ok()
            assert "10.80.0.2" not in save(host) and "fd80::2" not in save(host, v6=True)
            run("DEL", conf, netns).ok()
    for result in results.values():  # the prevResult passed through (veth names and MACs are random)
        for iface in result["interfaces"]:
            iface.pop("mac")
            iface["name"] = re.sub("^veth.*", "veth", iface["name"])
            iface.pop("sandbox", None)
    assert results["ours"] == results["go"]
    # 1.1.1 wrote "same-bridge" where later releases (and we) write "same-bridge|isolated"
    mine = tuple(t.replace("(ingressPolicy: same-bridge|isolated)", "(ingressPolicy: same-bridge)")
                 for t in tables["ours"])
    assert mine == tables["go"]
    assert "-A CNI-FORWARD -s 10.80.0.2/32 -j ACCEPT" in mine[0]
    assert "-A CNI-FORWARD -d fd80::2/128 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT" in mine[1]
    if policy:
        assert "-A CNI-ISOLATION-STAGE-2 -o cnifw0" in tables["ours"][0]


@privileged
@interop
@pytest.mark.parametrize("first, second", [("go", "ours"), ("ours", "go")])
def test_del_and_check_across_implementations(cni_runner, cni_sandbox, tmp_path, launcher, first, second):
    need(GO_FIREWALL)
    host = cni_sandbox.host
    netns = cni_sandbox.container()
    prev = bridge(host, netns, tmp_path)
    sides = {"go": go(host), "ours": ours(cni_runner, launcher, "launcher", host)}
    conf = fw_conf("1.0.0", prev, iptablesAdminChainName="MY-ADMIN")
    sides[first]("ADD", conf, netns).ok()
    assert "-A CNI-FORWARD -m comment --comment \"CNI firewall plugin admin overrides\" -j MY-ADMIN" in save(host)
    sides[second]("CHECK", conf, netns).ok()
    sides[second]("ADD", conf, netns).ok()  # finds the other's rules: adds nothing
    assert save(host).count("-s 10.80.0.2/32") == 1
    sides[second]("DEL", conf, netns).ok()
    assert "10.80.0.2" not in save(host) and "fd80::2" not in save(host, v6=True)


@privileged
@interop
@pytest.mark.parametrize("remove, message", [
    ("-D FORWARD -m comment --comment 'CNI firewall plugin rules' -j CNI-FORWARD",
     "expected FORWARD rule [-m comment --comment CNI firewall plugin rules -j CNI-FORWARD] not found"),
    ("-D CNI-FORWARD -m comment --comment 'CNI firewall plugin admin overrides' -j CNI-ADMIN",
     "expected CNI-FORWARD rule [-m comment --comment CNI firewall plugin admin overrides -j CNI-ADMIN] not found"),
    ("-D CNI-FORWARD -s 10.80.0.2/32 -j ACCEPT", "expected rule [-s 10.80.0.2/32 -j ACCEPT] not found"),
])
def test_check_finds_missing_rules_like_go(cni_runner, cni_sandbox, tmp_path, remove, message):
    need(GO_FIREWALL)
    host = cni_sandbox.host
    netns = cni_sandbox.container()
    prev = bridge(host, netns, tmp_path)
    conf = fw_conf("1.0.0", prev)
    run = ours(cni_runner, None, "in-process", host)
    run("ADD", conf, netns).ok()
    sh(host, "sh", "-c", f"iptables -w {remove}")
    before = save(host)
    mine = run("CHECK", conf, netns)
    assert save(host) == before  # our CHECK changes nothing
    theirs = go(host)("CHECK", conf, netns)
    assert (mine.error.code, mine.error.msg) == (theirs.error.code, theirs.error.msg) == (999, message)


@privileged
@interop
@pytest.mark.parametrize("case", ["no prevResult", "unknown policy", "same-bridge without interfaces"])
def test_errors_like_go(cni_runner, cni_sandbox, tmp_path, case):
    need(GO_FIREWALL)
    host = cni_sandbox.host
    netns = cni_sandbox.container()
    prev = bridge(host, netns, tmp_path)
    conf = {"no prevResult": fw_conf("1.0.0"),
            "unknown policy": fw_conf("1.0.0", prev, ingressPolicy="bogus"),
            "same-bridge without interfaces": fw_conf("1.0.0", dict(prev, interfaces=[]),
                                                      ingressPolicy="same-bridge")}[case]
    before = save(host)
    mine = ours(cni_runner, None, "in-process", host)("ADD", conf, netns)
    assert save(host) == before  # refused before any change (Go writes CNI-FORWARD rules first)
    theirs = go(host)("ADD", conf, netns)
    assert (mine.error.code, mine.error.msg) == (theirs.error.code, theirs.error.msg)
    assert b"Traceback" not in mine.stderr


@privileged
def test_firewalld_backend_is_a_clear_error(cni_runner, cni_sandbox, tmp_path):
    host = cni_sandbox.host
    netns = cni_sandbox.container()
    prev = bridge(host, netns, tmp_path)
    before = save(host)
    out = ours(cni_runner, None, "in-process", host)("ADD", fw_conf("1.0.0", prev, backend="firewalld"), netns)
    assert out.code == 1 and out.error.code == 999 and '"firewalld"' in out.error.msg
    assert save(host) == before


@privileged
def test_del_without_prev_result_or_netns(cni_runner, cni_sandbox, tmp_path):
    host = cni_sandbox.host
    netns = cni_sandbox.container()
    prev = bridge(host, netns, tmp_path)
    run = ours(cni_runner, None, "in-process", host)
    run("ADD", fw_conf("1.1.0", dict(prev, cniVersion="1.1.0")), netns).ok()
    run("DEL", fw_conf("1.1.0"), "").ok()  # nothing to remove without the addresses
    assert "10.80.0.2" in save(host)
    run("DEL", fw_conf("1.1.0", dict(prev, cniVersion="1.1.0")), "/var/run/netns/cnitest-gone").ok()
    assert "10.80.0.2" not in save(host)


@privileged
def test_two_containers_keep_each_others_rules(cni_runner, cni_sandbox, tmp_path):
    host = cni_sandbox.host
    a, b = cni_sandbox.container(), cni_sandbox.container()
    prev_a = bridge(host, a, tmp_path, cid="a")
    prev_b = bridge(host, b, tmp_path, cid="b")
    run = ours(cni_runner, None, "in-process", host)
    run("ADD", fw_conf("1.0.0", prev_a), a, "a").ok()
    run("ADD", fw_conf("1.0.0", prev_b), b, "b").ok()
    assert save(host).count("-j CNI-FORWARD") == 1
    run("DEL", fw_conf("1.0.0", prev_a), a, "a").ok()
    table = save(host)
    assert "10.80.0.2/32" not in table and "-s 10.80.0.3/32 -j ACCEPT" in table
    run("CHECK", fw_conf("1.0.0", prev_b), b, "b").ok()


# -- traffic --------------------------------------------------------------------------


def reaches(src, dst_ip: str) -> bool:
    """One ping from ``src`` (bounded: 1 packet, 2 s)."""
    out = sh(src, "ping", "-c", "1", "-W", "2", dst_ip, check=False)
    return " 0% packet loss" in out


@privileged
def test_forward_drop_policy_traffic(cni_runner, cni_sandbox, tmp_path):
    """FORWARD policy DROP on the private host: two containers (routed between two bridges)
    reach each other only after firewall ADD; ingressPolicy same-bridge on both isolates them."""
    host = cni_sandbox.host
    a, b = cni_sandbox.container(), cni_sandbox.container()
    prev_a = bridge(host, a, tmp_path / "a", name="cnifwa", subnet="10.81.0", cid="a")
    prev_b = bridge(host, b, tmp_path / "b", name="cnifwb", subnet="10.82.0", cid="b")
    ip_b = prev_b["ips"][0]["address"].split("/")[0]
    sh(host, "iptables", "-w", "-P", "FORWARD", "DROP")
    assert not reaches(a, ip_b)
    run = ours(cni_runner, None, "in-process", host)
    run("ADD", fw_conf("1.0.0", prev_a), a, "a").ok()
    assert reaches(a, ip_b)  # out from a accepted, the reply is related to a
    run("DEL", fw_conf("1.0.0", prev_a), a, "a").ok()
    assert not reaches(a, ip_b)
    run("ADD", fw_conf("1.0.0", prev_a, ingressPolicy="same-bridge"), a, "a").ok()
    run("ADD", fw_conf("1.0.0", prev_b, ingressPolicy="same-bridge"), b, "b").ok()
    assert not reaches(a, ip_b)  # stage 2 drops traffic from another bridge into cnifwb


@privileged
@interop
@pytest.mark.parametrize("extra", [
    {"backend": 5}, {"ingressPolicy": 1}, {"iptablesAdminChainName": []}, {"firewalldZone": True},
    {"prevResult": 5},
], ids=json.dumps)
def test_config_errors_like_go(cni_runner, cni_sandbox, extra):
    need(GO_FIREWALL)
    netns = cni_sandbox.container()
    conf = {"cniVersion": "1.0.0", "name": NET, "type": "firewall", **extra}
    theirs = go(cni_sandbox.host)("ADD", conf, netns)
    for command in ("ADD", "DEL"):
        mine = cni_runner(firewall, "firewall").run(command, conf, netns=netns, container_id=CID)
        assert (mine.error.code, mine.error.msg) == (theirs.error.code, theirs.error.msg)


@pytest.mark.parametrize("command", ["GC", "STATUS"])
def test_gc_and_status_succeed(cni_runner, command):
    """The reference has neither; later releases' skel answers both with success."""
    out = cni_runner(firewall, "firewall").run(command, fw_conf("1.1.0"))
    assert (out.code, out.stdout) == (0, b"")


@privileged
def test_tools_never_come_from_the_callers_path(cni_runner, cni_sandbox, tmp_path, monkeypatch):
    """A planted iptables first on PATH is never run: the tools come from the system directories."""
    trap = tmp_path / "trap"
    trap.mkdir()
    marker = tmp_path / "ran"
    for tool in ("iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save",
                 "ip6tables-restore"):
        script = trap / tool
        script.write_text(f"#!/bin/sh\necho {tool} >> {marker}\nexit 1\n")
        script.chmod(0o755)
    host = cni_sandbox.host
    netns = cni_sandbox.container()
    prev = bridge(host, netns, tmp_path)
    monkeypatch.setenv("PATH", f"{trap}:{os.environ.get('PATH', '')}")
    run = cni_runner(firewall, "firewall")
    for command in ("ADD", "CHECK", "DEL"):
        run.run(command, fw_conf("1.0.0", prev), netns=netns, container_id=CID).ok()
    assert not marker.exists()


@privileged
def test_concurrent_first_adds_lose_no_rules(cni_sandbox, launcher):
    """Several containers' ADDs at once on a node without the chains yet: every container's
    rules are there afterwards. (A batch that declared the chain it had seen missing flushed
    the rules another ADD had added meanwhile; now chains are made with -N and our writers
    take turns.)"""
    from concurrent.futures import ThreadPoolExecutor

    host = cni_sandbox.host
    netns = cni_sandbox.container()  # ADD needs one; the firewall never enters it
    count = 8
    prevs = [{"cniVersion": "1.0.0", "interfaces": [{"name": "cnifw0"}],
              "ips": [{"address": f"10.85.0.{i + 2}/24"}]} for i in range(count)]

    def add(i: int):
        return run_executable(launcher, "ADD", fw_conf("1.0.0", prevs[i]), host=host, netns=netns,
                              container_id=f"c{i}", timeout=120)

    with ThreadPoolExecutor(count) as pool:
        outcomes = list(pool.map(add, range(count)))
    assert all(out.code == 0 for out in outcomes), outcomes
    table = save(host)
    for i in range(count):
        assert f"-A CNI-FORWARD -s 10.85.0.{i + 2}/32 -j ACCEPT" in table, table
    assert table.count("-j CNI-FORWARD") == table.count("-j CNI-ADMIN") == 1  # our writers took turns


@privileged
@interop
def test_non_canonical_addresses_match_the_saved_rules(cni_runner, cni_sandbox):
    """Addresses written as Go and iptables-save print them: a second ADD adds nothing,
    Go's CHECK and DEL find our rules."""
    need(GO_FIREWALL)
    host = cni_sandbox.host
    netns = cni_sandbox.container()
    prev = {"cniVersion": "1.0.0", "interfaces": [{"name": "cnifw0"}],
            "ips": [{"address": "FD86:0:0::0002/64"}, {"address": "::ffff:10.86.0.2/120"}]}
    run = ours(cni_runner, None, "in-process", host)
    for _ in range(2):
        run("ADD", fw_conf("1.0.0", prev), netns).ok()
    assert save(host).count("-A CNI-FORWARD -s 10.86.0.2/32 -j ACCEPT") == 1
    assert save(host, v6=True).count("-A CNI-FORWARD -s fd86::2/128 -j ACCEPT") == 1
    go(host)("CHECK", fw_conf("1.0.0", prev), netns).ok()
    go(host)("DEL", fw_conf("1.0.0", prev), netns).ok()
    assert "10.86.0.2" not in save(host) and "fd86::2" not in save(host, v6=True)


@privileged
@interop
@pytest.mark.parametrize("bridge, message, go_refuses", [
    ("averyverylongbridge", "interface name `averyverylongbridge' must be shorter than IFNAMSIZ (15)", True),
    ("br0\n-A FORWARD", "invalid bridge name 'br0\\n-A FORWARD': control characters", False),
    ("b\nCOMMIT\n*nat", "invalid bridge name 'b\\nCOMMIT\\n*nat': control characters", False),
])
def test_hostile_bridge_names_change_nothing(cni_runner, cni_sandbox, bridge, message, go_refuses):
    """A bridge name (from prevResult) that iptables refuses, or that would add lines to a
    restore batch, is refused before any change (Go fails after writing rules, or goes ahead)."""
    need(GO_FIREWALL)
    host = cni_sandbox.host
    netns = cni_sandbox.container()
    prev = {"cniVersion": "1.0.0", "interfaces": [{"name": bridge}], "ips": [{"address": "10.87.0.2/24"}]}
    conf = fw_conf("1.0.0", prev, ingressPolicy="same-bridge")
    before = save(host)
    mine = ours(cni_runner, None, "in-process", host)("ADD", conf, netns)
    assert (mine.code, mine.error.code, mine.error.msg) == (1, 999, message)
    assert save(host) == before
    assert (go(host)("ADD", conf, netns).code == 1) is go_refuses


def test_restore_lines_refuse_control_characters():
    from cnicore.errors import CNIError

    with pytest.raises(CNIError, match="control characters"):
        quoted(("-i", "br0\n-A FORWARD -j ACCEPT"))
