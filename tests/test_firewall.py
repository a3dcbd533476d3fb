"""cnicore.firewall: ipMasq and macspoofchk rules, checked in the kernel.

Safety: every iptables/nft command, ours or the test's, runs in a private
sandbox namespace (``host_netns.do`` or a second :class:`Sandbox`), and
:func:`in_ns` refuses to run anything in the machine's own namespace.
Interop tests run Go's /usr/lib/cni/bridge (v1.1.1 on Debian: iptables-only
ipMasq, nftables macspoofchk) the same way and compare kernel state.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess

import pytest

from cnicore import utils as naming
from cnicore.firewall import command, masquerade
from cnicore.firewall.command import FirewallError
from cnicore.firewall.masquerade import (
    gc_ip_masq_for_network,
    setup_ip_masq_for_networks,
    teardown_ip_masq_for_networks,
)
from cnicore.firewall.spoofcheck import setup_mac_spoof_check, teardown_mac_spoof_check
from cnicore.testing import Sandbox, run_executable
from cnicore.testing import in_netns as in_ns
from cnicore.testing import run_in as sh

GO_BRIDGE = "/usr/lib/cni/bridge"
NET = "masqnet"

privileged = pytest.mark.privileged
interop = pytest.mark.interop


# -- helpers ------------------------------------------------------------------------


def nat_rules(netns, v6: bool = False) -> list[str]:
    """``iptables -t nat -S`` without the built-in policies."""
    out = sh(netns, "ip6tables" if v6 else "iptables", "-w", "-t", "nat", "-S")
    return [line for line in out.splitlines() if not line.startswith("-P ")]


def nat_save(netns, v6: bool = False) -> str:
    """``iptables-save -t nat`` without timestamps and counters, for comparing two namespaces."""
    out = sh(netns, "ip6tables-save" if v6 else "iptables-save", "-t", "nat")
    lines = [re.sub(r"\[\d+:\d+\]", "[0:0]", line) for line in out.splitlines() if not line.startswith("#")]
    return "\n".join(lines)


def nft_objects(netns, *what: str) -> list[dict]:
    """``nft -j list`` objects (metainfo and handles dropped); [] if the object does not exist."""
    proc = in_ns(netns, subprocess.run, ["nft", "-j", "list", *what], capture_output=True, text=True)
    if proc.returncode != 0:
        assert "No such file or directory" in proc.stderr, proc.stderr
        return []
    objects = []
    for item in json.loads(proc.stdout)["nftables"]:
        if "metainfo" in item:
            continue
        for body in item.values():
            body.pop("handle", None)
        objects.append(item)
    return objects


def masq_rules(netns) -> list[dict]:
    return [o["rule"] for o in nft_objects(netns, "table", "inet", masquerade.NFT_TABLE) if "rule" in o]


def chain_of(ipn: str) -> str:
    return naming.format_chain_name(NET, ipn)


def iptables_expected(cid: str, ip: str, net: str, v6: bool = False) -> list[str]:
    """The reference's iptables ipMasq rules for one address, as ``-S`` prints them."""
    chain = naming.format_chain_name(NET, cid)
    comment = f'"name: \\"{NET}\\" id: \\"{cid}\\""'
    host = "128" if v6 else "32"
    multicast = "ff00::/8" if v6 else "224.0.0.0/4"
    return [
        f"-N {chain}",
        f"-A POSTROUTING -s {ip}/{host} -m comment --comment {comment} -j {chain}",
        f"-A {chain} -d {net} -m comment --comment {comment} -j ACCEPT",
        f"-A {chain} ! -d {multicast} -m comment --comment {comment} -j MASQUERADE",
    ]


def sorted_rules(rules: list[str]) -> list[str]:
    return sorted(rules)


# -- naming (pure) ------------------------------------------------------------------


def test_chain_name_matches_go() -> None:
    # Taken from Go's bridge v1.1.1: name "masqnet", container "ctr-go-1".
    assert naming.format_chain_name("masqnet", "ctr-go-1") == "CNI-1d1f1e1580117167e5e7f382"
    digest = hashlib.sha512(b"netctr").hexdigest()
    assert naming.format_chain_name("net", "ctr") == "CNI-" + digest[:24]
    assert naming.must_format_chain_name_with_prefix("net", "ctr", "DN-") == "CNI-DN-" + digest[:21]
    assert len(naming.format_chain_name("n" * 300, "c" * 300)) == 28
    with pytest.raises(ValueError):
        naming.must_format_hash_with_prefix(4, "CNI-", "x")
    with pytest.raises(ValueError):
        naming.must_format_hash_with_prefix(129, "", "x")


def test_comments_match_go() -> None:
    assert naming.format_comment("masqnet", "ctr-go-1") == 'name: "masqnet" id: "ctr-go-1"'
    # strconv.Quote: \" and \\ escaped, C escapes, \x for ASCII controls, \u for other non-printables.
    assert naming.go_quote('a"b\\c\n\x01\x7fé\u00a0\U0001F600\U000E0001') == \
        '"a\\"b\\\\c\\n\\x01\\x7fé\\u00a0\U0001F600\\U000e0001"'
    assert naming.parse_comment('name: "masqnet" id: "ctr-go-1"', "masqnet") == "ctr-go-1"
    assert naming.parse_comment('name: "masqnet" id: "a\\"b"', "masqnet") == 'a"b'
    assert naming.parse_comment('name: "other" id: "ctr"', "masqnet") is None
    assert naming.parse_comment('name: "masqnet" id: "a" "b"', "masqnet") is None
    assert naming.parse_comment('name: "masqnet" id: ctr', "masqnet") is None

    net_hash = hashlib.sha512(b"net").hexdigest()[:16]
    inst_hash = hashlib.sha512(b"eth0:ctr").hexdigest()[:16]
    assert naming.nft_comment_for_instance('n"et', "eth0", "ctr").startswith(
        hashlib.sha512(b'n"et').hexdigest()[:16] + "-")
    assert naming.nft_comment_for_instance("net", "eth0", "ctr") == \
        f"{net_hash}-{inst_hash}, net: net, if: eth0, id: ctr"
    long = naming.nft_comment_for_instance("net", "eth0", "c" * 200)
    long_hash = hashlib.sha512(b"eth0:" + b"c" * 200).hexdigest()[:16]
    assert long == f"{net_hash}-{long_hash}, net: net, if: eth0, id: {'c' * 200}"[:128]
    assert naming.spoofcheck_ref_id("ctr", "eth0") == "ctr-eth0"


def test_unknown_backend_is_rejected_like_go() -> None:
    with pytest.raises(FirewallError, match='^unknown ipmasq backend "bpf"$'):
        masquerade.backend_for("bpf")
    assert masquerade.backend_for("nftables") == "nftables"
    assert masquerade.backend_for("iptables") == "iptables"


def test_restore_line_quotes_for_iptables_restore() -> None:
    """One quoting for every restore batch (masquerade, portmap, the firewall plugin)."""
    from cnicore.firewall.tools import restore_line

    assert restore_line("-A", "X", "--comment", 'dnat name: "a b" id: "c\\d"') == \
        '-A X --comment "dnat name: \\"a b\\" id: \\"c\\\\d\\""'
    assert restore_line("-A", "X", "-s", "10.0.0.0/8", "--comment", "") == '-A X -s 10.0.0.0/8 --comment ""'
    with pytest.raises(FirewallError, match="line breaks are not allowed"):
        restore_line("-A", "X", "--comment", "a\n-A FORWARD -j ACCEPT")


# -- iptables backend -------------------------------------------------------------------


@privileged
def test_iptables_setup_creates_reference_rules(host_netns) -> None:
    def run():
        setup_ip_masq_for_networks(["10.77.0.2/24", "fd00:77::2/64"], NET, "eth0", "ctr1", backend="iptables")
        setup_ip_masq_for_networks(["10.77.0.2/24", "fd00:77::2/64"], NET, "eth0", "ctr1", backend="iptables")  # idempotent

    in_ns(host_netns, run)
    assert sorted_rules(nat_rules(host_netns)) == sorted_rules(iptables_expected("ctr1", "10.77.0.2", "10.77.0.0/24"))
    assert sorted_rules(nat_rules(host_netns, v6=True)) == sorted_rules(
        iptables_expected("ctr1", "fd00:77::2", "fd00:77::/64", v6=True))
    # The jump is appended to POSTROUTING; ACCEPT comes before MASQUERADE in the chain.
    chain = chain_of("ctr1")
    assert [r.split()[-1] for r in nat_rules(host_netns) if r.startswith(f"-A {chain}")] == ["ACCEPT", "MASQUERADE"]
    assert masq_rules(host_netns) == []  # nothing in nftables


@privileged
@pytest.mark.parametrize("networks", [["10.77.0.2/24", "fd00:77::2/64"], None, [], ["10.77.0.99/24"]],
                         ids=["same-ips", "none", "empty", "other-ip"])
def test_iptables_teardown_removes_everything(host_netns, networks) -> None:
    def run():
        setup_ip_masq_for_networks(["10.77.0.2/24", "fd00:77::2/64"], NET, "eth0", "ctr1", backend="iptables")
        setup_ip_masq_for_networks(["10.77.0.3/24", "fd00:77::3/64"], NET, "eth0", "ctr2", backend="iptables")
        teardown_ip_masq_for_networks(networks, NET, "eth0", "ctr1")
        teardown_ip_masq_for_networks(networks, NET, "eth0", "ctr1")  # again: already gone is fine

    in_ns(host_netns, run)
    assert sorted_rules(nat_rules(host_netns)) == sorted_rules(iptables_expected("ctr2", "10.77.0.3", "10.77.0.0/24"))
    if networks == ["10.77.0.99/24"]:
        # Given addresses, only their families are touched (the usual DEL: one exec per family
        # in use); the IPv6 rules stay until a teardown without addresses (or GC) removes them.
        assert sorted_rules(nat_rules(host_netns, v6=True)) == sorted_rules(
            iptables_expected("ctr1", "fd00:77::2", "fd00:77::/64", v6=True)
            + iptables_expected("ctr2", "fd00:77::3", "fd00:77::/64", v6=True))
        in_ns(host_netns, teardown_ip_masq_for_networks, None, NET, "eth0", "ctr1")
    assert sorted_rules(nat_rules(host_netns, v6=True)) == sorted_rules(
        iptables_expected("ctr2", "fd00:77::3", "fd00:77::/64", v6=True))


#: Address sets whose rules the batched setup must leave exactly as the reference's
#: one-rule-at-a-time sequence does: a second address in the same subnet adds no rule
#: to the chain (AppendUnique), one in another subnet adds its ACCEPT after MASQUERADE.
BATCH_CASES = {
    "one": (["10.77.0.2/24"], NET, "ctr1"),
    "same-subnet": (["10.77.0.2/24", "10.77.0.3/24", "10.77.0.2/24"], NET, "ctr1"),
    "two-subnets-dual": (["10.77.0.2/24", "fd00:77::2/64", "10.78.0.2/16", "fd00:78::2/64"], NET, "ctr1"),
    "quoted-comment": (["10.77.0.2/24"], 'n"e\\t', 'c "1\\'),
}


@privileged
@pytest.mark.parametrize("case", list(BATCH_CASES))
def test_iptables_batched_setup_equals_one_rule_at_a_time(host_netns, case) -> None:
    """Setup's one-transaction path against the probing path (Go's exec sequence, kept for
    a repeated ADD), byte for byte in iptables-save; then teardown with the addresses (one
    transaction) leaves nothing, and a repeated setup adds nothing."""
    networks, net, cid = BATCH_CASES[case]
    in_ns(host_netns, setup_ip_masq_for_networks, networks, net, "eth0", cid)
    batched = (nat_save(host_netns), nat_save(host_netns, v6=True))
    in_ns(host_netns, setup_ip_masq_for_networks, networks, net, "eth0", cid)  # chain exists: probing path
    assert (nat_save(host_netns), nat_save(host_netns, v6=True)) == batched
    with Sandbox("cnitest-fw") as probing:
        in_ns(probing.host, masquerade._setup_iptables, masquerade._parse(networks), net, cid)
        assert (nat_save(probing.host), nat_save(probing.host, v6=True)) == batched
    assert naming.format_chain_name(net, cid) in batched[0]
    in_ns(host_netns, teardown_ip_masq_for_networks, networks, net, "eth0", cid)
    assert nat_rules(host_netns) == [] and nat_rules(host_netns, v6=True) == []


@privileged
def test_teardown_on_pristine_namespace(host_netns) -> None:
    in_ns(host_netns, teardown_ip_masq_for_networks, None, NET, "eth0", "never")
    in_ns(host_netns, teardown_ip_masq_for_networks, ["10.1.0.2/16", "fd00::2/64"], NET, "eth0", "never")
    assert nat_rules(host_netns) == []
    assert nft_objects(host_netns, "table", "inet", masquerade.NFT_TABLE) == []


@privileged
def test_iptables_teardown_removes_empty_chain_without_jump(host_netns) -> None:
    chain = chain_of("ctr1")
    sh(host_netns, "iptables", "-w", "-t", "nat", "-N", chain)  # as a failed ADD can leave it
    in_ns(host_netns, teardown_ip_masq_for_networks, None, NET, "eth0", "ctr1")
    assert nat_rules(host_netns) == []


# -- nftables backend --------------------------------------------------------------------


def nft_masq_rule(cid: str, ip: str, net: str, ifname: str = "eth0") -> dict:
    family = "ip6" if ":" in ip else "ip"
    return {"family": "inet", "table": "cni_plugins_masquerade", "chain": "masq_checks",
            "comment": naming.nft_comment_for_instance(NET, ifname, cid),
            "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": family, "field": "saddr"}}, "right": ip}},
                     {"match": {"op": "!=", "left": {"payload": {"protocol": family, "field": "daddr"}},
                                "right": {"prefix": {"addr": net.split("/")[0], "len": int(net.split("/")[1])}}}},
                     {"masquerade": None}]}


@privileged
def test_nftables_setup_creates_reference_objects(host_netns) -> None:
    def run():
        setup_ip_masq_for_networks(["10.77.0.2/24", "fd00:77::2/64"], NET, "eth0", "ctr1", backend="nftables")
        setup_ip_masq_for_networks(["10.77.0.2/24", "fd00:77::2/64"], NET, "eth0", "ctr1", backend="nftables")

    in_ns(host_netns, run)
    objects = nft_objects(host_netns, "table", "inet", "cni_plugins_masquerade")
    table = {"family": "inet", "table": "cni_plugins_masquerade"}
    assert objects[0]["table"]["name"] == "cni_plugins_masquerade"
    # nft 1.0.6 leaves object comments out of its JSON; the text listing has them.
    text = sh(host_netns, "nft", "list", "table", "inet", "cni_plugins_masquerade")
    assert f'comment "{masquerade.NFT_TABLE_COMMENT}"' in text
    assert f'comment "{masquerade.NFT_MASQ_CHAIN_COMMENT}"' in text
    chains = [o["chain"] for o in objects if "chain" in o]
    assert chains == [
        {**table, "name": "masq_checks"},
        {**table, "name": "postrouting", "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"},
    ]
    post = [o["rule"]["expr"] for o in objects if "rule" in o and o["rule"]["chain"] == "postrouting"]
    assert post == [
        [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                    "right": {"prefix": {"addr": "224.0.0.0", "len": 4}}}}, {"return": None}],
        [{"match": {"op": "==", "left": {"payload": {"protocol": "ip6", "field": "daddr"}},
                    "right": {"prefix": {"addr": "ff00::", "len": 8}}}}, {"return": None}],
        [{"goto": {"target": "masq_checks"}}],
    ]
    assert [r for r in masq_rules(host_netns) if r["chain"] == "masq_checks"] == [
        nft_masq_rule("ctr1", "10.77.0.2", "10.77.0.0/24"), nft_masq_rule("ctr1", "fd00:77::2", "fd00:77::/64")]
    assert nat_rules(host_netns) == []  # nothing in iptables


@privileged
def test_nftables_setup_replaces_old_addresses(host_netns) -> None:
    def run():
        setup_ip_masq_for_networks(["10.77.0.2/24"], NET, "eth0", "ctr1", backend="nftables")
        setup_ip_masq_for_networks(["10.77.0.5/24"], NET, "eth0", "ctr1", backend="nftables")
        setup_ip_masq_for_networks(["10.77.0.2/24"], NET, "eth1", "ctr1", backend="nftables")  # another attachment

    in_ns(host_netns, run)
    assert [r for r in masq_rules(host_netns) if r["chain"] == "masq_checks"] == [
        nft_masq_rule("ctr1", "10.77.0.5", "10.77.0.0/24"),
        nft_masq_rule("ctr1", "10.77.0.2", "10.77.0.0/24", ifname="eth1")]


@privileged
@pytest.mark.parametrize("networks", [["10.77.0.2/24"], None], ids=["ips", "none"])
def test_nftables_teardown(host_netns, networks) -> None:
    def run():
        setup_ip_masq_for_networks(["10.77.0.2/24", "fd00:77::2/64"], NET, "eth0", "ctr1", backend="nftables")
        setup_ip_masq_for_networks(["10.77.0.3/24"], NET, "eth0", "ctr2", backend="nftables")
        teardown_ip_masq_for_networks(networks, NET, "eth0", "ctr1")
        teardown_ip_masq_for_networks(networks, NET, "eth0", "ctr1")

    in_ns(host_netns, run)
    assert [r for r in masq_rules(host_netns) if r["chain"] == "masq_checks"] == [
        nft_masq_rule("ctr2", "10.77.0.3", "10.77.0.0/24")]
    # Like Go, the table and its chains stay for the next container.
    assert len([r for r in masq_rules(host_netns) if r["chain"] == "postrouting"]) == 3


@privileged
def test_nft_table_probe_agrees_with_nft(host_netns) -> None:
    """Teardown skips the nft exec only when the kernel says the table is not there."""
    assert in_ns(host_netns, masquerade._nft_table_absent) is True
    sh(host_netns, "nft", "add", "table", "ip", masquerade.NFT_TABLE)  # same name, other family
    assert in_ns(host_netns, masquerade._nft_table_absent) is True
    in_ns(host_netns, setup_ip_masq_for_networks, ["10.77.0.2/24"], NET, "eth0", "ctr1", backend="nftables")
    assert in_ns(host_netns, masquerade._nft_table_absent) is False
    assert [r["chain"] for r in masq_rules(host_netns)].count(masquerade.NFT_MASQ_CHAIN) == 1
    in_ns(host_netns, teardown_ip_masq_for_networks, ["10.77.0.2/24"], NET, "eth0", "ctr1")
    assert [r for r in masq_rules(host_netns) if r["chain"] == masquerade.NFT_MASQ_CHAIN] == []
    sh(host_netns, "nft", "delete", "table", "inet", masquerade.NFT_TABLE)
    assert in_ns(host_netns, masquerade._nft_table_absent) is True


@privileged
def test_teardown_removes_both_backends(host_netns) -> None:
    def run():
        setup_ip_masq_for_networks(["10.77.0.2/24"], NET, "eth0", "ctr1", backend="iptables")
        setup_ip_masq_for_networks(["10.77.0.2/24"], NET, "eth0", "ctr1", backend="nftables")
        teardown_ip_masq_for_networks(None, NET, "eth0", "ctr1")

    in_ns(host_netns, run)
    assert nat_rules(host_netns) == []
    assert [r for r in masq_rules(host_netns) if r["chain"] == "masq_checks"] == []


# -- backend choice -----------------------------------------------------------------------


@privileged
def test_default_backend(host_netns, monkeypatch) -> None:
    assert in_ns(host_netns, masquerade.backend_for, None) == "iptables"
    real = command.find_tool
    monkeypatch.setattr(command, "find_tool", lambda name: None if "iptables" in name else real(name))
    assert in_ns(host_netns, masquerade.backend_for, None) == "nftables"

    # With iptables gone the default setup goes to nftables, and teardown/GC skip iptables.
    in_ns(host_netns, setup_ip_masq_for_networks, ["10.77.0.2/24"], NET, "eth0", "ctr1")
    assert [r["chain"] for r in masq_rules(host_netns)].count("masq_checks") == 1
    in_ns(host_netns, teardown_ip_masq_for_networks, ["10.77.0.2/24"], NET, "eth0", "ctr1")
    in_ns(host_netns, gc_ip_masq_for_network, NET, [])
    assert [r["chain"] for r in masq_rules(host_netns)].count("masq_checks") == 0
    monkeypatch.setattr(command, "find_tool", lambda name: None)
    assert in_ns(host_netns, masquerade.backend_for, None) == "iptables"
    in_ns(host_netns, teardown_ip_masq_for_networks, None, NET, "eth0", "ctr1")  # nothing usable: nothing to do


# -- garbage collection ---------------------------------------------------------------------


@privileged
def test_gc_iptables(host_netns) -> None:
    other_chain = naming.format_chain_name("othernet", "ctr3")

    def run():
        for cid, n in (("ctr1", 2), ("ctr2", 3), ("ctr3", 4)):
            setup_ip_masq_for_networks([f"10.77.0.{n}/24", f"fd00:77::{n}/64"], NET, "eth0", cid, backend="iptables")
        setup_ip_masq_for_networks(["10.78.0.3/24"], "othernet", "eth0", "ctr3", backend="iptables")
        # A rule with our comment format but another plugin's chain (portmap does this) stays.
        subprocess.run(["iptables", "-w", "-t", "nat", "-N", "CNI-DN-foreign"], check=True)
        subprocess.run(["iptables", "-w", "-t", "nat", "-A", "CNI-DN-foreign", "-j", "RETURN", "-m", "comment",
                        "--comment", naming.format_comment(NET, "ctr2")], check=True)
        gc_ip_masq_for_network(NET, [("ctr1", "eth0"), ("ctr9", "eth0")])
        gc_ip_masq_for_network(NET, [("ctr1", "eth0")])

    in_ns(host_netns, run)
    rules = nat_rules(host_netns)
    assert chain_of("ctr1") in " ".join(rules) and other_chain in " ".join(rules)
    assert chain_of("ctr2") not in " ".join(rules) and chain_of("ctr3") not in " ".join(rules)
    assert sorted_rules(rules) == sorted_rules(
        iptables_expected("ctr1", "10.77.0.2", "10.77.0.0/24")
        + [r for r in rules if other_chain in r or "CNI-DN-foreign" in r])
    assert len([r for r in rules if "CNI-DN-foreign" in r]) == 2
    assert sorted_rules(nat_rules(host_netns, v6=True)) == sorted_rules(
        iptables_expected("ctr1", "fd00:77::2", "fd00:77::/64", v6=True))


@privileged
def test_gc_nftables(host_netns) -> None:
    def run():
        setup_ip_masq_for_networks(["10.77.0.2/24"], NET, "eth0", "ctr1", backend="nftables")
        setup_ip_masq_for_networks(["10.77.0.3/24"], NET, "eth1", "ctr1", backend="nftables")
        setup_ip_masq_for_networks(["10.77.0.4/24"], NET, "eth0", "ctr2", backend="nftables")
        setup_ip_masq_for_networks(["10.78.0.4/24"], "othernet", "eth0", "ctr2", backend="nftables")
        gc_ip_masq_for_network(NET, [("ctr1", "eth0")])

    in_ns(host_netns, run)
    other = nft_masq_rule("ctr2", "10.78.0.4", "10.78.0.0/24")
    other["comment"] = naming.nft_comment_for_instance("othernet", "eth0", "ctr2")
    assert [r for r in masq_rules(host_netns) if r["chain"] == "masq_checks"] == [
        nft_masq_rule("ctr1", "10.77.0.2", "10.77.0.0/24"), other]
    in_ns(host_netns, gc_ip_masq_for_network, NET, [])
    assert [r for r in masq_rules(host_netns) if r["chain"] == "masq_checks"] == [other]


@privileged
def test_gc_on_pristine_namespace(host_netns) -> None:
    in_ns(host_netns, gc_ip_masq_for_network, NET, [])
    assert nat_rules(host_netns) == []


# -- macspoofchk -------------------------------------------------------------------------------


def spoof_objects(ref_id: str, ifname: str, mac: str) -> list[dict]:
    base = {"family": "bridge", "table": "nat"}
    iface, macc = f"cni-br-iface-{ref_id}", f"cni-br-iface-{ref_id}-mac"
    comment = f"macspoofchk-{ref_id}"
    return [
        {"chain": {**base, "name": iface}},
        {"chain": {**base, "name": macc}},
        {"rule": {**base, "chain": "PREROUTING", "comment": comment,
                  "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": ifname}},
                           {"jump": {"target": iface}}]}},
        {"rule": {**base, "chain": iface, "comment": comment, "expr": [{"jump": {"target": macc}}]}},
        {"rule": {**base, "chain": macc, "comment": comment,
                  "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ether", "field": "saddr"}},
                                      "right": mac}}, {"return": None}]}},
        {"rule": {**base, "chain": macc, "comment": comment, "expr": [{"drop": None}]}},
    ]


SPOOF_HEAD = [{"table": {"family": "bridge", "name": "nat"}},
              {"chain": {"family": "bridge", "table": "nat", "name": "PREROUTING", "type": "filter",
                         "hook": "prerouting", "prio": -300, "policy": "accept"}}]


def by_kind(objects: list[dict]) -> list[dict]:
    """In nft's listing order: chains (in creation order), then the rules chain by chain."""
    chains = ["PREROUTING"] + [o["chain"]["name"] for o in objects if "chain" in o]
    rules = [o for o in objects if "rule" in o]
    return ([o for o in objects if "chain" in o]
            + sorted(rules, key=lambda o: chains.index(o["rule"]["chain"])))


@privileged
def test_spoofcheck_setup_and_teardown(host_netns) -> None:
    mac1, mac2 = "0a:58:0a:4d:00:02", "0a:58:0a:4d:00:03"

    def setup():
        teardown_mac_spoof_check("ctr1-eth0")  # nothing there yet: fine
        setup_mac_spoof_check("veth1", mac1, "ctr1-eth0")
        setup_mac_spoof_check("veth1", mac1, "ctr1-eth0")  # no second PREROUTING jump
        setup_mac_spoof_check("veth2", mac2, "ctr2-eth0")

    in_ns(host_netns, setup)
    got = nft_objects(host_netns, "table", "bridge", "nat")
    assert got == SPOOF_HEAD + by_kind(spoof_objects("ctr1-eth0", "veth1", mac1)
                                       + spoof_objects("ctr2-eth0", "veth2", mac2))

    def teardown():
        teardown_mac_spoof_check("ctr1-eth0")
        teardown_mac_spoof_check("ctr1-eth0")

    in_ns(host_netns, teardown)
    assert nft_objects(host_netns, "table", "bridge", "nat") == SPOOF_HEAD + by_kind(
        spoof_objects("ctr2-eth0", "veth2", mac2))
    in_ns(host_netns, teardown_mac_spoof_check, "ctr2-eth0")
    assert nft_objects(host_netns, "table", "bridge", "nat") == SPOOF_HEAD


@privileged
def test_spoofcheck_error_is_reported(host_netns) -> None:
    with pytest.raises(FirewallError, match="^failed to setup spoof-check: "):
        in_ns(host_netns, setup_mac_spoof_check, "veth1", "not-a-mac", "ctr1-eth0")


# -- interop with Go's bridge ----------------------------------------------------------------------


def go_bridge_conf(data_dir, **extra) -> dict:
    return {"cniVersion": "1.0.0", "name": NET, "type": "bridge", "bridge": "cnifw0", "isGateway": True,
            "ipMasq": True, "ipam": {"type": "host-local", "subnet": "10.77.0.0/24", "dataDir": str(data_dir)},
            **extra}


def go_bridge(command_: str, conf: dict, host, netns, cid: str) -> dict | None:
    if not os.access(GO_BRIDGE, os.X_OK):
        pytest.skip(f"{GO_BRIDGE} not installed")
    return run_executable(GO_BRIDGE, command_, conf, host=host, netns=netns, container_id=cid).ok().json


@privileged
@interop
def test_interop_go_add_equals_our_setup(cni_sandbox, host_netns, tmp_path) -> None:
    conf = go_bridge_conf(tmp_path)
    result = go_bridge("ADD", conf, host_netns, cni_sandbox.container(), "ctr-go-1")
    address = result["ips"][0]["address"]
    assert address == "10.77.0.2/24"
    with Sandbox("cnitest-fw") as ours:
        in_ns(ours.host, setup_ip_masq_for_networks, [address], NET, "eth0", "ctr-go-1")
        assert nat_save(ours.host) == nat_save(host_netns)
        assert nat_save(ours.host, v6=True) == nat_save(host_netns, v6=True)
    go_state = nat_save(host_netns)
    assert chain_of("ctr-go-1") in go_state
    # Our setup on top of Go's rules adds nothing (same rules, AppendUnique semantics).
    in_ns(host_netns, setup_ip_masq_for_networks, [address], NET, "eth0", "ctr-go-1")
    assert nat_save(host_netns) == go_state


@privileged
@interop
@pytest.mark.parametrize("networks", ["ips", None], ids=["ips", "none"])
def test_interop_our_teardown_removes_go_rules(cni_sandbox, host_netns, tmp_path, networks) -> None:
    conf = go_bridge_conf(tmp_path)
    ctr = cni_sandbox.container()
    result = go_bridge("ADD", conf, host_netns, ctr, "ctr-go-1")
    other = go_bridge("ADD", conf, host_netns, cni_sandbox.container(), "ctr-go-2")
    assert len(nat_rules(host_netns)) == 8
    ips = [ip["address"] for ip in result["ips"]] if networks == "ips" else None
    # As in our bridge's DEL, the container's interface goes first. (Go v1.1.1's own DEL
    # fails if the interface still exists but the chain is gone: its go-iptables does not
    # take iptables-nft's "Chain ... does not exist" for not-exist.)
    sh(ctr, "ip", "link", "del", "eth0")
    in_ns(host_netns, teardown_ip_masq_for_networks, ips, NET, "eth0", "ctr-go-1")
    assert sorted_rules(nat_rules(host_netns)) == sorted_rules(
        iptables_expected("ctr-go-2", other["ips"][0]["address"].split("/")[0], "10.77.0.0/24"))
    go_bridge("DEL", conf, host_netns, ctr, "ctr-go-1")  # Go's DEL does not mind
    assert len(nat_rules(host_netns)) == 4


@privileged
@interop
def test_interop_go_del_removes_our_rules(cni_sandbox, host_netns, tmp_path) -> None:
    conf = go_bridge_conf(tmp_path)
    ctr = cni_sandbox.container()
    result = go_bridge("ADD", conf, host_netns, ctr, "ctr-go-1")
    address = result["ips"][0]["address"]

    def replace_with_ours():
        teardown_ip_masq_for_networks([address], NET, "eth0", "ctr-go-1")
        assert subprocess.run(["iptables", "-w", "-t", "nat", "-S"], capture_output=True, text=True,
                              check=True).stdout.count("-A ") == 0
        setup_ip_masq_for_networks([address], NET, "eth0", "ctr-go-1", backend="iptables")

    in_ns(host_netns, replace_with_ours)
    assert len(nat_rules(host_netns)) == 4
    go_bridge("DEL", conf, host_netns, ctr, "ctr-go-1")
    assert nat_rules(host_netns) == []


@privileged
@interop
def test_interop_go_add_several_addresses_equals_ours(cni_sandbox, host_netns, tmp_path) -> None:
    """Go's bridge masquerades two IPv4 subnets and one IPv6: our one-transaction setup
    of the same addresses leaves the same tables, and our teardown removes Go's. (Go
    1.1.1's own DEL cannot remove this state: it deletes the chain after the first
    address's jump while the second one's still uses it.)"""
    ranges = [[{"subnet": "10.77.0.0/24"}], [{"subnet": "10.78.0.0/24"}], [{"subnet": "fd00:77::/64"}]]
    conf = go_bridge_conf(tmp_path, isGateway=False,  # 1.1.1 puts one gateway per family on the bridge
                          ipam={"type": "host-local", "ranges": ranges, "dataDir": str(tmp_path)})
    ctr = cni_sandbox.container()
    result = go_bridge("ADD", conf, host_netns, ctr, "ctr-go-1")
    addresses = [ip["address"] for ip in result["ips"]]
    assert len(addresses) == 3
    go_state = (nat_save(host_netns), nat_save(host_netns, v6=True))
    with Sandbox("cnitest-fw") as ours:
        in_ns(ours.host, setup_ip_masq_for_networks, addresses, NET, "eth0", "ctr-go-1")
        assert (nat_save(ours.host), nat_save(ours.host, v6=True)) == go_state
    in_ns(host_netns, teardown_ip_masq_for_networks, addresses, NET, "eth0", "ctr-go-1")
    assert nat_rules(host_netns) == [] and nat_rules(host_netns, v6=True) == []
    in_ns(host_netns, setup_ip_masq_for_networks, addresses, NET, "eth0", "ctr-go-1")
    assert (nat_save(host_netns), nat_save(host_netns, v6=True)) == go_state


@privileged
@interop
def test_interop_gc_of_go_rules(cni_sandbox, host_netns, tmp_path) -> None:
    conf = go_bridge_conf(tmp_path)
    ctr2 = cni_sandbox.container()
    first = go_bridge("ADD", conf, host_netns, cni_sandbox.container(), "ctr-go-1")
    go_bridge("ADD", conf, host_netns, ctr2, "ctr-go-2")
    ctr2.remove()  # GC concerns attachments whose container is gone
    in_ns(host_netns, gc_ip_masq_for_network, NET, [("ctr-go-1", "eth0")])
    assert sorted_rules(nat_rules(host_netns)) == sorted_rules(
        iptables_expected("ctr-go-1", first["ips"][0]["address"].split("/")[0], "10.77.0.0/24"))
    go_bridge("DEL", conf, host_netns, ctr2, "ctr-go-2")  # late DEL: only IPAM left to release


@privileged
@interop
def test_interop_spoofcheck(cni_sandbox, host_netns, tmp_path) -> None:
    conf = go_bridge_conf(tmp_path, ipMasq=False, macspoofchk=True)
    ctr = cni_sandbox.container()
    result = go_bridge("ADD", conf, host_netns, ctr, "ctr-go-1")
    host_veth = result["interfaces"][1]["name"]
    mac = result["interfaces"][2]["mac"]
    ref_id = naming.spoofcheck_ref_id("ctr-go-1", "eth0")
    go_state = nft_objects(host_netns, "table", "bridge", "nat")
    assert go_state == SPOOF_HEAD + by_kind(spoof_objects(ref_id, host_veth, mac))
    with Sandbox("cnitest-fw") as ours:
        in_ns(ours.host, setup_mac_spoof_check, host_veth, mac, ref_id)
        assert nft_objects(ours.host, "table", "bridge", "nat") == go_state

    # Ours removes Go's; Go's DEL still succeeds (it only complains on stderr).
    in_ns(host_netns, teardown_mac_spoof_check, ref_id)
    assert nft_objects(host_netns, "table", "bridge", "nat") == SPOOF_HEAD
    go_bridge("DEL", conf, host_netns, ctr, "ctr-go-1")

    # Go's DEL removes ours.
    ctr2 = cni_sandbox.container()
    result = go_bridge("ADD", conf, host_netns, ctr2, "ctr-go-2")
    ref_id = naming.spoofcheck_ref_id("ctr-go-2", "eth0")

    def replace_with_ours():
        teardown_mac_spoof_check(ref_id)
        setup_mac_spoof_check(result["interfaces"][1]["name"], result["interfaces"][2]["mac"], ref_id)

    in_ns(host_netns, replace_with_ours)
    assert len(nft_objects(host_netns, "table", "bridge", "nat")) == 8
    go_bridge("DEL", conf, host_netns, ctr2, "ctr-go-2")
    assert nft_objects(host_netns, "table", "bridge", "nat") == SPOOF_HEAD
