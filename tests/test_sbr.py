"""The built-in sbr meta plugin, through its launcher (cold, or warm with
``CNICORE_TEST_LAUNCHERS=native``) and side by side with Debian's Go sbr.

Each case builds the same container twice (one namespace for Go's plugin, one for
ours): a veth ``eth0``/``net1`` with the addresses and routes the main plugin would
have left, and its peer in the sandbox's host namespace; then the same ADD/DEL,
compared on exit status, error, printed result and the namespace's rules and
routes (``ip rule``, ``ip route show table all``). Policy routing is checked on
this kernel with ``ip route get ... from`` and real pings through the tables.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from cnicore.netlink import Netlink
from cnicore.testing import ping, run_executable, run_in

pytestmark = [pytest.mark.privileged, pytest.mark.interop]

GO_SBR = "/usr/lib/cni/sbr"
#: Debian's 1.1.1 refuses 1.1.0 configs; for those we compare with its 1.0.0 answer.
GO_NEWEST = "1.0.0"
VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")

#: ifname -> (address, gateway, v6 address, v6 gateway); the host end gets the gateways.
NETS = {"eth0": ("10.9.0.2/24", "10.9.0.1", "fd09::2/64", "fd09::1"),
        "net1": ("10.10.0.2/24", "10.10.0.1", "fd10::2/64", "fd10::1")}


@pytest.fixture
def sbr(cni_bin_dir: str) -> str:
    return f"{cni_bin_dir}/sbr"


def container(sandbox, tag: str, *, dual: bool = False, ifnames=("eth0", "net1")):
    """A container namespace with veth interfaces as a main plugin leaves them (addresses, subnet
    routes, eth0's default route in the main table); the peers ``<tag><ifname>`` in the host."""
    netns = sandbox.container()
    host_fd = sandbox.host.fd()

    def make() -> None:
        with Netlink() as nl:
            for ifname in ifnames:
                address, gw, address6, gw6 = NETS[ifname]
                nl.add_veth(ifname, f"{tag}{ifname}", peer_netns_fd=host_fd)
                link = nl.link(ifname)
                nl.add_address(link, address)
                if dual:
                    nl.add_address(link, address6, nodad=True)
                nl.set_up(link)
            nl.add_route("0.0.0.0/0", gw=NETS["eth0"][1], link=nl.link("eth0"))

    def host_side() -> None:
        with Netlink() as nl:
            for ifname in ifnames:
                link = nl.link(f"{tag}{ifname}")
                nl.add_address(link, NETS[ifname][1] + "/24")
                if dual:
                    nl.add_address(link, NETS[ifname][3] + "/64", nodad=True)
                nl.set_up(link)

    netns.do(make)
    sandbox.host.do(host_side)
    # The kernel adds the link-local route once the carrier is up: wait, so both sides see it.
    deadline = time.monotonic() + 30
    while not all(f"fe80::/64 dev {ifname}" in run_in(netns, "ip", "-6", "route", "show") for ifname in ifnames):
        assert time.monotonic() < deadline, run_in(netns, "ip", "-6", "route", "show")
        time.sleep(0.05)
    return netns


def prev_result(version: str, netns, ifname: str = "net1", *, dual: bool = False, index: bool = True) -> dict:
    address, gw, address6, gw6 = NETS[ifname]
    ips: list[dict] = [{"address": address, "gateway": gw}]
    if dual:
        ips.append({"address": address6, "gateway": gw6})
    for ip in ips:
        if index:
            ip["interface"] = 0
        if version.startswith("0."):
            ip["version"] = "6" if ":" in ip["address"] else "4"
    return {"cniVersion": version, "interfaces": [{"name": ifname, "sandbox": netns.path}], "ips": ips,
            "routes": [{"dst": "0.0.0.0/0", "gw": gw}], "dns": {}}


def conf(version: str, prev: dict | None, **extra: object) -> dict:
    out: dict = {"cniVersion": version, "name": "sbrnet", "type": "sbr"}
    if prev is not None:
        out["prevResult"] = prev
    out.update(extra)
    return out


def state(netns) -> dict[str, list[str]]:
    """The namespace's rules and every table's routes, without what differs run to run."""
    rules = run_in(netns, "ip", "rule", "show").splitlines() + run_in(netns, "ip", "-6", "rule", "show").splitlines()
    routes = []
    for family in ("-4", "-6"):
        for line in run_in(netns, "ip", family, "route", "show", "table", "all").splitlines():
            if "table local" in line or line.startswith(("multicast", "local", "broadcast", "anycast")):
                continue
            routes.append(re.sub(r"\s+expires \S+", "", line).strip())
    return {"rules": sorted(rules), "routes": sorted(routes)}


def run(binary: str, command: str, config: dict, sandbox, netns, ifname: str = "net1", **kw):
    return run_executable(binary, command, config, host=sandbox.host, netns=netns, ifname=ifname,
                          container_id="sbr-c1", **kw)


def both(sbr: str, command: str, version: str, sandbox, go_ns, our_ns, *, dual=False, index=True,
         ifname: str = "net1", **extra):
    """The same command with Go's plugin (in ``go_ns``) and ours (in ``our_ns``)."""
    go_version = GO_NEWEST if version == "1.1.0" else version
    go = run(GO_SBR, command, conf(go_version, prev_result(go_version, go_ns, ifname, dual=dual, index=index),
                                   **extra), sandbox, go_ns, ifname)
    ours = run(sbr, command, conf(version, prev_result(version, our_ns, ifname, dual=dual, index=index),
                                  **extra), sandbox, our_ns, ifname)
    return go, ours


def _same_result(go: dict, ours: dict, go_ns, our_ns) -> None:
    text = json.dumps(go).replace(go_ns.path, our_ns.path)
    expected = json.loads(text)
    expected["cniVersion"] = ours["cniVersion"]
    # cnicore's 1.x printer leaves out an empty "dns" that Go's prints as {} (a core printer
    # difference, not sbr's): compared without it.
    if expected.get("dns") == {}:
        del expected["dns"]
    assert {k: v for k, v in ours.items() if not (k == "dns" and v == {})} == expected


# -- side by side ------------------------------------------------------------------------


@pytest.mark.parametrize("dual", [False, True], ids=["v4", "dual"])
@pytest.mark.parametrize("version", VERSIONS)
def test_add_del_like_go(version: str, dual: bool, sbr: str, cni_sandbox) -> None:
    go_ns, our_ns = container(cni_sandbox, "g", dual=dual), container(cni_sandbox, "o", dual=dual)
    before = state(our_ns)
    assert state(go_ns) == before
    go, ours = both(sbr, "ADD", version, cni_sandbox, go_ns, our_ns, dual=dual)
    assert go.code == ours.code == 0, (go, ours)
    if version != "1.1.0":
        _same_result(go.json, ours.json, go_ns, our_ns)
    assert ours.json["cniVersion"] == version
    after = state(our_ns)
    assert after == state(go_ns)
    assert "32765:\tfrom 10.10.0.2 lookup 100" in after["rules"]
    assert "default via 10.10.0.1 dev net1 table 100" in after["routes"]
    assert "10.10.0.0/24 dev net1 table 100 proto kernel scope link src 10.10.0.2" in after["routes"]
    assert not any("dev net1" in r and "table" not in r for r in after["routes"])  # left the main table
    if dual:
        assert "32765:\tfrom fd10::2 lookup 101" in after["rules"]
        assert any(r.startswith("default via fd10::1 dev net1 table 101") for r in after["routes"])

    go, ours = both(sbr, "CHECK", version, cni_sandbox, go_ns, our_ns, dual=dual)
    assert go.code == ours.code == (1 if version.startswith("0.3") else 0), (go, ours)

    go, ours = both(sbr, "DEL", version, cni_sandbox, go_ns, our_ns, dual=dual)
    assert go.code == ours.code == 0, (go, ours)
    gone = state(our_ns)
    assert gone == state(go_ns)
    assert gone["rules"] == before["rules"]
    go, ours = both(sbr, "DEL", version, cni_sandbox, go_ns, our_ns, dual=dual)  # again: idempotent
    assert go.code == ours.code == 0, (go, ours)


def test_two_interfaces_get_their_own_tables_like_go(sbr: str, cni_sandbox) -> None:
    """eth0 then net1: tables 100 and 101, and addresses without an interface index count."""
    go_ns, our_ns = container(cni_sandbox, "g"), container(cni_sandbox, "o")
    for ifname in ("eth0", "net1"):
        go, ours = both(sbr, "ADD", "1.0.0", cni_sandbox, go_ns, our_ns, ifname=ifname, index=False)
        assert go.code == ours.code == 0, (go, ours)
        _same_result(go.json, ours.json, go_ns, our_ns)
    after = state(our_ns)
    assert after == state(go_ns)
    assert {"32764:\tfrom 10.10.0.2 lookup 101", "32765:\tfrom 10.9.0.2 lookup 100"} <= set(after["rules"])
    go, ours = both(sbr, "DEL", "1.0.0", cni_sandbox, go_ns, our_ns, ifname="eth0", index=False)
    assert go.code == ours.code == 0
    assert state(our_ns) == state(go_ns)
    assert "32764:\tfrom 10.10.0.2 lookup 101" in state(our_ns)["rules"]


ERROR_CASES = [
    ("no-prev-result", {"drop_prev": True}),
    ("no-ips", {"prev": {"cniVersion": "1.0.0", "interfaces": [], "ips": []}}),
    ("missing-interface", {"ifname": "nope0"}),
    ("prev-result-not-object", {"prev": "x"}),
]


@pytest.mark.parametrize("case_id,case", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_add_errors_like_go(case_id: str, case: dict, sbr: str, cni_sandbox) -> None:
    outcomes = []
    for binary, tag in ((GO_SBR, "g"), (sbr, "o")):
        netns = container(cni_sandbox, tag)
        prev = None if case.get("drop_prev") else case.get("prev", prev_result("1.0.0", netns))
        ifname = case.get("ifname", "net1")
        if ifname == "nope0" and prev is not None:
            prev = dict(prev, interfaces=[{"name": "nope0"}])
        outcomes.append(run(binary, "ADD", conf("1.0.0", prev), cni_sandbox, netns, ifname))
    go, ours = outcomes
    assert go.code != 0 and ours.code == go.code, (go, ours)
    assert ours.json["code"] == go.json["code"]
    assert ours.json["msg"] == go.json["msg"], (go.json, ours.json)


def test_interop_go_and_ours_delete_each_others_rules(sbr: str, cni_sandbox) -> None:
    for adder, deleter, tag in ((GO_SBR, sbr, "a"), (sbr, GO_SBR, "b")):
        netns = container(cni_sandbox, tag)
        before = state(netns)["rules"]
        config = conf("1.0.0", prev_result("1.0.0", netns))
        assert run(adder, "ADD", config, cni_sandbox, netns).code == 0
        assert state(netns)["rules"] != before
        outcome = run(deleter, "DEL", config, cni_sandbox, netns)
        assert outcome.code == 0, outcome
        assert state(netns)["rules"] == before


# -- policy routing on this kernel ---------------------------------------------------------


def test_traffic_from_the_address_leaves_by_its_interface(sbr: str, cni_sandbox) -> None:
    """After sbr on net1, traffic sourced from net1's address goes out net1 to its gateway
    (the main table sends everything out eth0): the kernel's decision, and real pings that
    reach an address only the net1 side's host end answers for."""
    netns = container(cni_sandbox, "t")
    # 192.0.2.1 answers on the host only behind tnet1's gateway; rp_filter would drop the asymmetric path.
    run_in(cni_sandbox.host, "ip", "address", "add", "192.0.2.1/32", "dev", "lo")
    assert "dev eth0" in run_in(netns, "ip", "route", "get", "192.0.2.1", "from", "10.10.0.2")
    assert run(sbr, "ADD", conf("1.0.0", prev_result("1.0.0", netns)), cni_sandbox, netns).code == 0
    decision = run_in(netns, "ip", "route", "get", "192.0.2.1", "from", "10.10.0.2")
    assert "via 10.10.0.1 dev net1 table 100" in decision, decision
    assert "dev eth0" in run_in(netns, "ip", "route", "get", "192.0.2.1")

    def rx(link: str) -> int:
        return json.loads(run_in(cni_sandbox.host, "ip", "-s", "-j", "link", "show", link))[0]["stats64"]["rx"][
            "packets"]

    counts = rx("tnet1"), rx("teth0")
    ping(netns, "192.0.2.1", count=3, interface="10.10.0.2")
    assert rx("tnet1") >= counts[0] + 3
    assert rx("teth0") < counts[1] + 3
    # The other address still goes out eth0 (main table).
    ping(netns, "192.0.2.1", count=1, interface="10.9.0.2")


def test_table_option_adds_only_rules(sbr: str, cni_sandbox) -> None:
    """``table`` (a later release than Debian's 1.1.1): rules into that table, routes untouched."""
    netns = container(cni_sandbox, "x", dual=True)
    before = state(netns)
    config = conf("1.0.0", prev_result("1.0.0", netns, dual=True), table=500)
    assert run(sbr, "ADD", config, cni_sandbox, netns).code == 0
    after = state(netns)
    assert after["routes"] == before["routes"]
    assert set(after["rules"]) - set(before["rules"]) == {"32765:\tfrom 10.10.0.2 lookup 500",
                                                          "32765:\tfrom fd10::2 lookup 500"}
    # DEL with the table only touches that table's rules.
    run_in(netns, "ip", "rule", "add", "from", "10.10.0.2", "lookup", "600")
    assert run(sbr, "DEL", config, cni_sandbox, netns).code == 0
    assert set(state(netns)["rules"]) - set(before["rules"]) == {"32764:\tfrom 10.10.0.2 lookup 600"}


def test_gateways_and_source_hints(sbr: str, cni_sandbox) -> None:
    """``gateways`` replaces prevResult's gateway in the table; ``addSourceHints`` keeps the
    subnet route in the main table with the address as its source (later releases' options)."""
    netns = container(cni_sandbox, "h")
    run_in(netns, "ip", "route", "add", "198.51.100.0/24", "via", "10.10.0.254", "dev", "net1")
    config = conf("1.0.0", prev_result("1.0.0", netns), gateways=["10.10.0.254"], addSourceHints=True)
    assert run(sbr, "ADD", config, cni_sandbox, netns).code == 0
    routes = state(netns)["routes"]
    assert "default via 10.10.0.254 dev net1 table 100" in routes
    assert "10.10.0.0/24 dev net1 scope link src 10.10.0.2" in routes or \
        "10.10.0.0/24 dev net1 proto kernel scope link src 10.10.0.2" in routes
    assert "198.51.100.0/24 via 10.10.0.254 dev net1 table 100" in routes
    assert "198.51.100.0/24 via 10.10.0.254 dev net1" not in routes  # gone from the main table


@pytest.mark.parametrize("gateways,message", [
    (["10.0.0.1", "fd00::1", "10.0.0.2"], "gateways list cannot contain more than 2 entries (one IPv4, one IPv6)"),
    (["nope"], "invalid static gateway IP address: nope"),
    (["10.0.0.1", "10.0.0.2"], "gateways list contains multiple IPv4 addresses: 10.0.0.1 and 10.0.0.2"),
])
def test_bad_gateways(gateways: list, message: str, sbr: str, cni_sandbox) -> None:
    netns = container(cni_sandbox, "b")
    outcome = run(sbr, "ADD", conf("1.0.0", prev_result("1.0.0", netns), gateways=gateways), cni_sandbox, netns)
    assert outcome.code != 0 and (outcome.json["code"], outcome.json["msg"]) == (999, message)


@pytest.mark.parametrize("extra,message", [
    ({"table": "x"}, "failed to parse network configuration: json: cannot unmarshal string into Go struct field "
                     "PluginConf.table of type int"),
    ({"addSourceHints": 1}, "failed to parse network configuration: json: cannot unmarshal number into Go struct "
                            "field PluginConf.addSourceHints of type bool"),
])
def test_config_type_errors(extra: dict, message: str, sbr: str, cni_sandbox) -> None:
    netns = container(cni_sandbox, "e")
    outcome = run(sbr, "ADD", conf("1.0.0", prev_result("1.0.0", netns), **extra), cni_sandbox, netns)
    assert outcome.code != 0 and outcome.json["msg"] == message


def test_del_with_the_namespace_gone(sbr: str, cni_sandbox, tmp_path) -> None:
    gone = str(tmp_path / "gone-netns")
    config = conf("1.0.0", None)
    outcome = run_executable(sbr, "DEL", config, host=cni_sandbox.host, netns=gone, ifname="net1")
    assert outcome.code == 0, outcome
    assert not (tmp_path / "gone-netns").exists()
