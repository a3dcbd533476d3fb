"""The built-in ptp plugin, through its launcher (cold, or warm with
``CNICORE_TEST_LAUNCHERS=native``) and side by side with Debian's Go ptp.

Every run happens inside a sandbox: the plugins see its private "host"
namespace as theirs, and containers are throwaway namespaces; iptables rules
live in the sandbox's host namespace only. host-local keeps its store in a
tmp directory.
"""

from __future__ import annotations

import json
import re

import pytest

from cnicore.testing import Sandbox, run_executable, run_in
from cnicore.version import ALL

pytestmark = [pytest.mark.privileged, pytest.mark.interop]

GO = "/usr/lib/cni"
GO_PTP = f"{GO}/ptp"
#: Debian's 1.1.1 refuses 1.1.0 configs: side by side runs use 1.0.0 for it.
GO_NEWEST = "1.0.0"
CHAIN = "CNI-fd326d185fb2c7ffa632f30f"  # format_chain_name("ptpnet", "c1"), as Go names it
VETH = re.compile(r"veth[0-9a-f]{8}")


def conf(store: str, version: str = "1.0.0", *, dual: bool = True, **extra: object) -> dict:
    ranges = [[{"subnet": "10.70.0.0/24"}]] + ([[{"subnet": "fd70::/64"}]] if dual else [])
    routes = [{"dst": "0.0.0.0/0"}] + ([{"dst": "::/0"}] if dual else [])
    config = {"cniVersion": version, "name": "ptpnet", "type": "ptp", "ipMasq": True, "mtu": 1400,
              "ipam": {"type": "host-local", "dataDir": store, "ranges": ranges, "routes": routes}}
    config.update(extra)
    return config


@pytest.fixture
def ptp(cni_bin_dir: str) -> str:
    return f"{cni_bin_dir}/ptp"


def run(binary: str, command: str, config: dict, sandbox: Sandbox, netns, cni_bin_dir: str,
        container_id: str = "c1", **kw: object):
    """One exec from the sandbox's host; IPAM found among our launchers for both sides
    (host-local is shared by Go's and ours, on one store format)."""
    return run_executable(binary, command, config, host=sandbox.host, netns=netns, path=cni_bin_dir,
                          container_id=container_id, **kw)


def _normal(text: str) -> str:
    """Kernel listings without what differs run to run: random veth names and MACs,
    link-local addresses and their routes, DAD progress."""
    lines = []
    for line in text.splitlines():
        if "fe80" in line or "ff00::/8 dev" in line or line.startswith("#"):  # added when the carrier is up
            continue
        line = VETH.sub("vethX", line)
        line = re.sub(r"link/ether \S+ brd \S+", "link/ether M", line)
        line = re.sub(r"link-netns \S+", "link-netns N", line)
        # the carrier comes up asynchronously, some milliseconds after the ADD
        line = re.sub(r"NO-CARRIER,| state (UP|DOWN|LOWERLAYERDOWN)", "", line)
        line = re.sub(r"valid_lft.*|tentative |dadfailed ", "", line)
        # 1.1.1 set the veths' txqueuelen to 0 by accident; later releases (and we) keep the kernel's
        line = re.sub(r" ?qlen \d+", "", line).replace(" \\", "\\")
        lines.append(line.rstrip())
    return "\n".join(sorted(lines))


SYSCTLS = ("net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding", "net/ipv6/conf/IFACE/accept_ra",
           "net/ipv4/conf/IFACE/proxy_arp", "net/ipv4/conf/IFACE/forwarding", "net/ipv6/conf/IFACE/disable_ipv6")
#: Not keep_addr_on_down: releases after 1.1.1 set it to 1 for IPv6 (cnicore.ipam.configure_iface does).
CTR_SYSCTLS = ("net/ipv6/conf/eth0/disable_ipv6",
               "net/ipv6/conf/eth0/accept_dad", "net/ipv4/conf/eth0/proxy_arp", "net/ipv4/conf/eth0/arp_notify")


def _sysctls(netns, keys: tuple[str, ...], iface: str = "") -> dict[str, str]:
    def read() -> dict[str, str]:
        out = {}
        for key in keys:
            with open("/proc/sys/" + key.replace("IFACE", iface)) as fh:
                out[key] = fh.read().strip()
        return out

    return netns.do(read)


def state(sandbox: Sandbox, ctr) -> dict[str, object]:
    """Addresses, routes, links, masquerade rules and sysctls on both sides."""
    out: dict[str, object] = {}
    for side, ns in (("host", sandbox.host), ("ctr", ctr)):
        out[f"{side} links"] = _normal(run_in(ns, "ip", "-o", "-d", "link"))
        out[f"{side} addrs"] = _normal(run_in(ns, "ip", "-o", "addr"))
        out[f"{side} routes"] = _normal(run_in(ns, "ip", "route", "show", "table", "all") +
                                        run_in(ns, "ip", "-6", "route", "show", "table", "all"))
    out["nat"] = _normal(run_in(sandbox.host, "iptables-save", "-t", "nat"))
    out["nat6"] = _normal(run_in(sandbox.host, "ip6tables-save", "-t", "nat"))
    hosts = VETH.findall(run_in(sandbox.host, "ip", "-o", "link"))
    out["host sysctls"] = _sysctls(sandbox.host, SYSCTLS, hosts[0]) if hosts else None
    out["ctr sysctls"] = _sysctls(ctr, CTR_SYSCTLS) if "eth0" in run_in(ctr, "ip", "-o", "link") else None
    return out


def _result_shape(result: dict) -> dict:
    """A result without the random names and MACs (and Debian's empty ``dns``)."""
    shaped = json.loads(VETH.sub("vethX", json.dumps(result)))
    for intf in shaped.get("interfaces", []):
        intf.pop("mac", None)
        intf["sandbox"] = "S" if intf.get("sandbox") else ""
    if shaped.get("dns") == {}:
        del shaped["dns"]
    return shaped


# -- ADD, CHECK, DEL side by side with Go ---------------------------------------------------

@pytest.mark.parametrize("version", [v for v in ALL if v >= "0.3.0"])
@pytest.mark.parametrize("dual", [True, False], ids=["dual-stack", "ipv4"])
def test_add_check_del_like_go(version: str, dual: bool, ptp: str, cni_bin_dir: str, tmp_path) -> None:
    seen = {}
    for side, binary in (("ours", ptp), ("go", GO_PTP)):
        go_version = GO_NEWEST if side == "go" and version == "1.1.0" else version
        config = conf(str(tmp_path / side), go_version, dual=dual, dns={"nameservers": ["10.1.1.1"]})
        with Sandbox() as sandbox:
            ctr = sandbox.container()
            added = run(binary, "ADD", config, sandbox, ctr, cni_bin_dir).ok().json
            assert added["cniVersion"] == go_version
            added["cniVersion"] = version
            assert VETH.fullmatch(added["interfaces"][0]["name"])
            after_add = state(sandbox, ctr)
            if version >= "0.4.0":
                run(binary, "CHECK", dict(config, prevResult=added | {"cniVersion": go_version}), sandbox, ctr,
                    cni_bin_dir).ok()
            run(binary, "DEL", config, sandbox, ctr, cni_bin_dir).ok()
            after_del = state(sandbox, ctr)
            run(binary, "DEL", config, sandbox, ctr, cni_bin_dir).ok()  # again: still fine
            seen[side] = (_result_shape(added), after_add, after_del)
    ours, go = seen["ours"], seen["go"]
    assert ours[0] == go[0]
    for key in ours[1]:
        assert ours[1][key] == go[1][key], key
    assert ours[2] == go[2]
    assert CHAIN in ours[1]["nat"] and CHAIN not in ours[2]["nat"]


def test_mtu_and_routes_in_the_container(ptp: str, cni_bin_dir: str, cni_sandbox, tmp_path) -> None:
    ctr = cni_sandbox.container()
    result = run(ptp, "ADD", conf(str(tmp_path), "1.1.0"), cni_sandbox, ctr, cni_bin_dir).ok().json
    host = result["interfaces"][0]["name"]
    assert "mtu 1400" in run_in(ctr, "ip", "link", "show", "eth0")
    assert "mtu 1400" in run_in(cni_sandbox.host, "ip", "link", "show", host)
    routes = run_in(ctr, "ip", "route")
    assert "10.70.0.0/24 via 10.70.0.1 dev eth0 src 10.70.0.2" in routes
    assert "10.70.0.1 dev eth0 scope link src 10.70.0.2" in routes
    assert "10.70.0.2 dev " + host + " scope host" in run_in(cni_sandbox.host, "ip", "route")
    assert "fd70::2 dev " + host in run_in(cni_sandbox.host, "ip", "-6", "route")


# -- traffic ------------------------------------------------------------------------

def _ping(netns, address: str) -> None:
    """Ping until it answers (IPv6 DAD may still run on the host's gateway address), bounded."""
    import time

    deadline = time.monotonic() + 30
    while True:
        out = run_in(netns, "ping", "-c", "1", "-W", "2", address, check=False)
        if " 0% packet loss" in out:
            return
        assert time.monotonic() < deadline, out
        time.sleep(0.2)


def test_two_containers_reach_each_other_through_the_host(ptp: str, cni_bin_dir: str, cni_sandbox,
                                                          tmp_path) -> None:
    config = conf(str(tmp_path), "1.0.0")
    one, two = cni_sandbox.container(), cni_sandbox.container()
    first = run(ptp, "ADD", config, cni_sandbox, one, cni_bin_dir, container_id="one").ok().json
    second = run(GO_PTP, "ADD", config, cni_sandbox, two, cni_bin_dir, container_id="two").ok().json
    addresses = [[ip["address"].split("/")[0] for ip in r["ips"]] for r in (first, second)]
    _ping(one, addresses[1][0])
    _ping(one, addresses[1][1])
    _ping(two, addresses[0][0])
    _ping(two, addresses[0][1])
    run(ptp, "DEL", config, cni_sandbox, one, cni_bin_dir, container_id="one").ok()
    run(ptp, "DEL", config, cni_sandbox, two, cni_bin_dir, container_id="two").ok()
    assert not VETH.search(run_in(cni_sandbox.host, "ip", "-o", "link"))


# -- interop: Go's DEL after our ADD, ours after Go's ----------------------------------------

@pytest.mark.parametrize(("adder", "deleter"), [("ours", "go"), ("go", "ours")])
def test_del_of_the_other_implementation_cleans_up(adder: str, deleter: str, ptp: str, cni_bin_dir: str,
                                                   cni_sandbox, tmp_path) -> None:
    binaries = {"ours": ptp, "go": GO_PTP}
    config = conf(str(tmp_path))
    ctr = cni_sandbox.container()
    before = state(cni_sandbox, ctr)
    run(binaries[adder], "ADD", config, cni_sandbox, ctr, cni_bin_dir).ok()
    assert CHAIN in run_in(cni_sandbox.host, "iptables-save", "-t", "nat")
    run(binaries[deleter], "DEL", config, cni_sandbox, ctr, cni_bin_dir).ok()
    assert state(cni_sandbox, ctr) == before
    assert not [p for p in (tmp_path / "ptpnet").iterdir() if p.name[0].isdigit()]


# -- DEL without a namespace ------------------------------------------------------------------

@pytest.mark.parametrize("gone", ["netns-removed", "netns-empty", "link-removed"])
def test_del_removes_masquerade_rules_without_the_namespace(gone: str, ptp: str, cni_bin_dir: str, cni_sandbox,
                                                            tmp_path) -> None:
    config = conf(str(tmp_path))
    ctr = cni_sandbox.container()
    result = run(ptp, "ADD", config, cni_sandbox, ctr, cni_bin_dir).ok().json
    path = ctr.path
    if gone == "netns-removed":
        ctr.remove()
    elif gone == "link-removed":
        run_in(ctr, "ip", "link", "del", "eth0")
    netns = "" if gone == "netns-empty" else path
    for _ in range(2):
        run_executable(ptp, "DEL", config, host=cni_sandbox.host, netns=netns, path=cni_bin_dir,
                       container_id="c1").ok()
    assert CHAIN not in run_in(cni_sandbox.host, "iptables-save", "-t", "nat")
    assert CHAIN not in run_in(cni_sandbox.host, "ip6tables-save", "-t", "nat")
    if gone != "netns-empty":
        assert result["interfaces"][0]["name"] not in run_in(cni_sandbox.host, "ip", "-o", "link")


# -- failures: all-or-nothing ---------------------------------------------------------------

def test_failed_add_leaves_nothing(ptp: str, cni_bin_dir: str, cni_sandbox, tmp_path) -> None:
    ctr = cni_sandbox.container()
    config = conf(str(tmp_path), ipMasqBackend="bogus")
    before = state(cni_sandbox, ctr)
    outcome = run(ptp, "ADD", config, cni_sandbox, ctr, cni_bin_dir)
    assert outcome.code != 0 and outcome.json["code"] == 999
    assert "unknown ipmasq backend" in outcome.json["msg"]
    after = state(cni_sandbox, ctr)
    for key in ("host links", "host addrs", "ctr links", "ctr addrs", "nat", "nat6"):
        assert after[key] == before[key], key
    assert not [p for p in (tmp_path / "ptpnet").iterdir() if p.name[0].isdigit()]


CONFIG_ERRORS = [
    ("mtu-string", {"mtu": "x"}),
    ("ipmasq-string", {"ipMasq": "yes"}),
    ("backend-number", {"ipMasqBackend": 5}),
    ("dns-string", {"dns": "x"}),
    ("no-ipam-type", {"ipam": {}}),
    ("empty-ipam-type", {"ipam": {"type": ""}}),
    ("null-ipam", {"ipam": None}),
    ("ipam-missing-plugin", {"ipam": {"type": "no-such-ipam"}}),
]


@pytest.mark.parametrize(("case_id", "change"), CONFIG_ERRORS, ids=[c[0] for c in CONFIG_ERRORS])
@pytest.mark.parametrize("command", ["ADD", "DEL"])
def test_config_errors_like_go(case_id: str, change: dict, command: str, ptp: str, cni_bin_dir: str, cni_sandbox,
                               tmp_path) -> None:
    ctr = cni_sandbox.container()
    config = dict(conf(str(tmp_path)), **change)
    ours = run(ptp, command, config, cni_sandbox, ctr, cni_bin_dir)
    go = run(GO_PTP, command, config, cni_sandbox, ctr, cni_bin_dir)
    assert b"Traceback" not in ours.stdout
    if case_id == "backend-number":  # 1.1.1 has no ipMasqBackend; later releases do
        assert ours.json["msg"].endswith("NetConf.ipMasqBackend of type string")
        run(GO_PTP, "DEL", config, cni_sandbox, ctr, cni_bin_dir)
        return
    assert ours.code == go.code
    if go.code:
        assert ours.json["code"] == go.json["code"]
        if case_id != "ipam-missing-plugin":  # Go names its CNI_PATH search differently
            assert ours.json["msg"] == go.json["msg"]


# -- CHECK ---------------------------------------------------------------------------------

def test_check_finds_what_changed(ptp: str, cni_bin_dir: str, cni_sandbox, tmp_path) -> None:
    ctr = cni_sandbox.container()
    config = conf(str(tmp_path))
    result = run(ptp, "ADD", config, cni_sandbox, ctr, cni_bin_dir).ok().json
    checked = dict(config, prevResult=result)
    run(ptp, "CHECK", checked, cni_sandbox, ctr, cni_bin_dir).ok()
    for binary in (ptp, GO_PTP):
        wrong_mac = json.loads(json.dumps(checked))
        wrong_mac["prevResult"]["interfaces"][1]["mac"] = "02:00:00:00:00:01"
        outcome = run(binary, "CHECK", wrong_mac, cni_sandbox, ctr, cni_bin_dir)
        assert outcome.code == 1 and "doesn't match container Mac" in outcome.json["msg"], outcome
        no_prev = dict(config)
        outcome = run(binary, "CHECK", no_prev, cni_sandbox, ctr, cni_bin_dir)
        assert outcome.json["msg"] == "ptp: Required prevResult missing"
    run_in(ctr, "ip", "route", "del", "default")
    outcome = run(ptp, "CHECK", checked, cni_sandbox, ctr, cni_bin_dir)
    go = run(GO_PTP, "CHECK", checked, cni_sandbox, ctr, cni_bin_dir)
    assert outcome.code == go.code == 1 and outcome.json["code"] == go.json["code"]
    # the route printed as the reference prints it (Go's %+v of its Route)
    assert outcome.json["msg"] == go.json["msg"] == \
        "Expected Route {Dst:{IP:0.0.0.0 Mask:00000000} GW:<nil>} not found in routing table"
    run(ptp, "DEL", config, cni_sandbox, ctr, cni_bin_dir).ok()


# -- STATUS, GC ----------------------------------------------------------------------------

def test_status_and_gc(ptp: str, cni_bin_dir: str, cni_sandbox, tmp_path) -> None:
    config = conf(str(tmp_path), "1.1.0")
    run(ptp, "STATUS", config, cni_sandbox, "", cni_bin_dir).ok()
    ctr = cni_sandbox.container()
    run(ptp, "ADD", config, cni_sandbox, ctr, cni_bin_dir).ok()
    kept = dict(config, **{"cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"}]})
    run(ptp, "GC", kept, cni_sandbox, "", cni_bin_dir).ok()
    assert CHAIN in run_in(cni_sandbox.host, "iptables-save", "-t", "nat")
    assert [p for p in (tmp_path / "ptpnet").iterdir() if p.name[0].isdigit()]
    run(ptp, "GC", dict(config, **{"cni.dev/valid-attachments": []}), cni_sandbox, "", cni_bin_dir).ok()
    assert CHAIN not in run_in(cni_sandbox.host, "iptables-save", "-t", "nat")
    assert not [p for p in (tmp_path / "ptpnet").iterdir() if p.name[0].isdigit()]
