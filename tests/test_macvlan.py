"""The built-in macvlan plugin, through its launcher (cold, or warm with
``CNICORE_TEST_LAUNCHERS=native``) and side by side with Debian's Go macvlan (v1.1.1).

Every run happens inside a sandbox: the plugins see its private "host" namespace
as theirs, where the master is one end of a veth pair made for the test (this
machine's kernel has macvlan; ipvlan and vlan are tested in the guest:
tests/guest/test_ipvlan_vlan.py, with the helpers here). host-local keeps its
store in a tmp directory.
"""

from __future__ import annotations

import json
import re

import pytest

from cnicore.netlink import Netlink
from cnicore.testing import Sandbox, ping, run_executable, run_in
from cnicore.version import ALL

pytestmark = [pytest.mark.privileged, pytest.mark.interop]

GO = "/usr/lib/cni"
#: Debian's 1.1.1 refuses 1.1.0 configs: side by side runs use 1.0.0 for it.
GO_NEWEST = "1.0.0"
TMP_NAME = re.compile(r"veth[0-9a-f]{8}")


def go_version(version: str) -> str:
    return GO_NEWEST if version == "1.1.0" else version


def make_master(netns, name: str = "m0", *, mtu: int = 1500, default_route: bool = True) -> None:
    """A veth pair in ``netns`` (the master ``name`` and its peer ``name``-p), up, with an
    address and, if asked, the namespace's default route through it."""
    def work() -> None:
        with Netlink() as nl:
            nl.add_veth(name, f"{name}p", mtu=mtu)
            nl.set_up(name)
            nl.set_up(f"{name}p")
            nl.add_address(name, "10.80.0.1/24")
            if default_route:
                nl.add_route("0.0.0.0/0", gw="10.80.0.254", link=name)

    netns.do(work)


def netconf(kind: str, version: str, store: str, *, ipam: bool = True, routes: bool = True,
            **extra: object) -> dict:
    config: dict = {"cniVersion": version, "name": f"{kind}net", "type": kind}
    if ipam:
        config["ipam"] = {"type": "host-local", "dataDir": store, "ranges": [[{"subnet": "10.80.0.0/24"}]],
                          "routes": [{"dst": "0.0.0.0/0"}] if routes else []}
    config.update(extra)
    return config


def run(binary: str, command: str, config: dict, sandbox: Sandbox, netns, cni_bin_dir: str,
        container_id: str = "c1", **kw: object):
    """One exec from the sandbox's host; IPAM found among our launchers for both sides."""
    return run_executable(binary, command, config, host=sandbox.host, netns=netns, path=cni_bin_dir,
                          container_id=container_id, timeout=120, **kw)


def link_details(netns, name: str = "eth0") -> dict | None:
    """``ip -j -d link show`` of ``name`` in ``netns`` (None if absent)."""
    out = run_in(netns, "ip", "-j", "-d", "link", "show", "dev", name, check=False)
    return json.loads(out)[0] if out.strip() else None


def link_shape(netns, name: str = "eth0") -> dict | None:
    """What both implementations must agree on about the container's link."""
    link = link_details(netns, name)
    if link is None:
        return None
    info = link.get("linkinfo", {})
    data = info.get("info_data", {})
    return {"kind": info.get("info_kind"), "mode": data.get("mode"), "id": data.get("id"), "mtu": link["mtu"],
            "up": "UP" in link["flags"], "addrs": sorted(a["local"] + "/" + str(a["prefixlen"]) for a in
                                                         json.loads(run_in(netns, "ip", "-j", "addr", "show", "dev",
                                                                           name))[0]["addr_info"]
                                                         if not a["local"].startswith("fe80"))}


def result_shape(result: dict) -> dict:
    """A result without what differs run to run (MACs, the sandbox path) and Go's empty ``dns``."""
    shaped = json.loads(json.dumps(result))
    for intf in shaped.get("interfaces", []):
        intf.pop("mac", None)
        intf["sandbox"] = "S" if intf.get("sandbox") else ""
    if shaped.get("dns") == {}:
        del shaped["dns"]
    return shaped


def error_of(outcome) -> tuple[int, int | None, str]:
    """(exit status, CNI code, message) of a run."""
    if outcome.code == 0:
        return 0, None, ""
    err = outcome.error
    return outcome.code, err.code, err.msg


@pytest.fixture
def macvlan(cni_bin_dir: str) -> str:
    return f"{cni_bin_dir}/macvlan"


def both(ours: str, kind: str) -> dict[str, str]:
    return {"ours": ours, "go": f"{GO}/{kind}"}


# -- ADD, CHECK, DEL side by side with Go ------------------------------------------------------

@pytest.mark.parametrize("mode", ["bridge", "vepa", "private", "passthru", ""])
def test_modes_like_go(mode: str, macvlan: str, cni_bin_dir: str, tmp_path) -> None:
    """Each mode: the same result, link and addresses as Go's; CHECK passes; DEL removes it."""
    seen = {}
    for side, binary in both(macvlan, "macvlan").items():
        config = netconf("macvlan", "1.0.0", str(tmp_path / side), master="m0", mode=mode, mtu=1400,
                         dns={"nameservers": ["10.1.1.1"]})
        with Sandbox() as sandbox:
            make_master(sandbox.host)
            ctr = sandbox.container()
            added = run(binary, "ADD", config, sandbox, ctr, cni_bin_dir).ok().json
            shape = link_shape(ctr)
            run(binary, "CHECK", dict(config, prevResult=added), sandbox, ctr, cni_bin_dir).ok()
            run(binary, "DEL", config, sandbox, ctr, cni_bin_dir).ok()
            assert link_shape(ctr) is None
            assert "m0" in run_in(sandbox.host, "ip", "-o", "link")
            run(binary, "DEL", config, sandbox, ctr, cni_bin_dir).ok()  # again: still fine
            seen[side] = (result_shape(added), shape)
    assert seen["ours"] == seen["go"]
    assert seen["ours"][1]["mode"] == (mode or "bridge") and seen["ours"][1]["mtu"] == 1400


@pytest.mark.parametrize("version", ALL)
def test_results_in_every_version(version: str, macvlan: str, cni_bin_dir: str, cni_sandbox, tmp_path) -> None:
    """ADD prints the config's version; 1.x and 0.3/0.4 carry the interface, 0.1/0.2 ip4."""
    make_master(cni_sandbox.host)
    ctr = cni_sandbox.container()
    config = netconf("macvlan", version, str(tmp_path), master="m0")
    added = run(macvlan, "ADD", config, cni_sandbox, ctr, cni_bin_dir).ok().json
    assert added["cniVersion"] == version
    if version < "0.3.0":
        assert added["ip4"]["ip"] == "10.80.0.2/24"
    else:
        assert added["interfaces"][0]["name"] == "eth0"
        assert added["ips"][0]["address"] == "10.80.0.2/24"
    if version >= "0.4.0":
        run(macvlan, "CHECK", dict(config, prevResult=added), cni_sandbox, ctr, cni_bin_dir).ok()
    run(macvlan, "DEL", config, cni_sandbox, ctr, cni_bin_dir).ok()
    assert link_details(ctr) is None


def test_l2_only_without_ipam(macvlan: str, cni_bin_dir: str, tmp_path) -> None:
    """Without ``ipam`` the interface is only set up; the result has it and no IPs (as Go's)."""
    seen = {}
    for side, binary in both(macvlan, "macvlan").items():
        config = netconf("macvlan", "1.0.0", "", ipam=False, master="m0")
        with Sandbox() as sandbox:
            make_master(sandbox.host)
            ctr = sandbox.container()
            added = run(binary, "ADD", config, sandbox, ctr, cni_bin_dir).ok().json
            seen[side] = (result_shape(added), link_shape(ctr))
            run(binary, "DEL", config, sandbox, ctr, cni_bin_dir).ok()
    assert seen["ours"] == seen["go"]
    assert "ips" not in seen["ours"][0] and seen["ours"][1]["up"]


def test_master_defaults_to_the_default_route_interface(macvlan: str, cni_bin_dir: str, cni_sandbox,
                                                        tmp_path) -> None:
    """No ``master``: the private host's default route's interface (m1 here, not m0)."""
    make_master(cni_sandbox.host, "m0", default_route=False)
    make_master(cni_sandbox.host, "m1")
    ctr = cni_sandbox.container()
    config = netconf("macvlan", "1.0.0", str(tmp_path))
    run(macvlan, "ADD", config, cni_sandbox, ctr, cni_bin_dir).ok()
    host_links = {link["ifindex"]: link["ifname"] for link in
                  json.loads(run_in(cni_sandbox.host, "ip", "-j", "link"))}
    assert host_links[link_details(ctr)["link_index"]] == "m1"
    other = cni_sandbox.container()
    added = run(macvlan, "ADD", config, cni_sandbox, other, cni_bin_dir, container_id="c2").ok().json
    run(macvlan, "CHECK", dict(config, prevResult=added), cni_sandbox, other, cni_bin_dir, container_id="c2").ok()
    run(macvlan, "DEL", config, cni_sandbox, ctr, cni_bin_dir).ok()
    run(macvlan, "DEL", config, cni_sandbox, other, cni_bin_dir, container_id="c2").ok()


@pytest.mark.parametrize("where", ["config", "CNI_ARGS", "runtimeConfig"])
def test_mac_from_config_args_and_runtime_config(where: str, macvlan: str, cni_bin_dir: str, tmp_path) -> None:
    """``mac``, overridden by CNI_ARGS ``MAC``, overridden by ``runtimeConfig.mac`` — as Go's."""
    mac = "02:11:22:33:44:55"
    extra: dict = {"mac": "02:00:00:00:00:09"}
    env: dict = {}
    if where == "config":
        extra["mac"] = mac
    elif where == "CNI_ARGS":
        env["args"] = f"IgnoreUnknown=1;MAC={mac}"
    else:
        env["args"] = "IgnoreUnknown=1;MAC=02:00:00:00:00:0a"  # host-local gets CNI_ARGS too
        extra["runtimeConfig"] = {"mac": mac}
    for side, binary in both(macvlan, "macvlan").items():
        with Sandbox() as sandbox:
            make_master(sandbox.host)
            ctr = sandbox.container()
            config = netconf("macvlan", "1.0.0", str(tmp_path / side), master="m0", **extra)
            added = run(binary, "ADD", config, sandbox, ctr, cni_bin_dir, **env).ok().json
            assert added["interfaces"][0]["mac"] == mac, side
            assert link_details(ctr)["address"] == mac, side


def test_link_in_container(macvlan: str, cni_bin_dir: str, cni_sandbox, tmp_path) -> None:
    """``linkInContainer``: the master (and the default route) are the container's own."""
    ctr = cni_sandbox.container()
    make_master(ctr, "c0")
    config = netconf("macvlan", "1.1.0", str(tmp_path), routes=False, linkInContainer=True, mode="private")
    added = run(macvlan, "ADD", config, cni_sandbox, ctr, cni_bin_dir).ok().json
    link = link_details(ctr)
    assert link["linkinfo"]["info_data"]["mode"] == "private"
    assert link["link"] == "c0"  # iproute2 names a parent of the same namespace
    assert "c0" not in run_in(cni_sandbox.host, "ip", "-o", "link")
    run(macvlan, "CHECK", dict(config, prevResult=added), cni_sandbox, ctr, cni_bin_dir).ok()
    bad = run(macvlan, "ADD", dict(config, master="nope"), cni_sandbox, ctr, cni_bin_dir, ifname="net1")
    assert error_of(bad) == (1, 999, "Link not found")
    run(macvlan, "DEL", config, cni_sandbox, ctr, cni_bin_dir).ok()
    assert link_details(ctr) is None


def test_two_containers_reach_each_other(macvlan: str, cni_bin_dir: str, cni_sandbox, tmp_path) -> None:
    """Bridge mode: two containers on one master (one by ours, one by Go's) talk. Private
    mode: two containers on another master do not (the kernel drops traffic between its
    macvlans; a bounded two-second ping must get no reply)."""
    make_master(cni_sandbox.host)
    one, two = cni_sandbox.container(), cni_sandbox.container()
    config = netconf("macvlan", "1.0.0", str(tmp_path), master="m0")
    first = run(macvlan, "ADD", config, cni_sandbox, one, cni_bin_dir, container_id="one").ok().json
    second = run(f"{GO}/macvlan", "ADD", config, cni_sandbox, two, cni_bin_dir, container_id="two").ok().json
    ping(one, second["ips"][0]["address"].split("/")[0], timeout=30)
    ping(two, first["ips"][0]["address"].split("/")[0], timeout=30)
    run(macvlan, "DEL", config, cni_sandbox, one, cni_bin_dir, container_id="one").ok()
    run(macvlan, "DEL", config, cni_sandbox, two, cni_bin_dir, container_id="two").ok()

    make_master(cni_sandbox.host, "m1", default_route=False)
    private = netconf("macvlan", "1.0.0", str(tmp_path / "private"), routes=False, master="m1", mode="private")
    three, four = cni_sandbox.container(), cni_sandbox.container()
    run(macvlan, "ADD", private, cni_sandbox, three, cni_bin_dir, container_id="three").ok()
    fourth = run(macvlan, "ADD", private, cni_sandbox, four, cni_bin_dir, container_id="four").ok().json
    out = run_in(three, "ping", "-c", "2", "-W", "1", fourth["ips"][0]["address"].split("/")[0], check=False)
    assert " 0 received" in out, out


# -- DEL ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("adder", "deleter"), [("ours", "go"), ("go", "ours")])
def test_del_of_the_other_implementation_cleans_up(adder: str, deleter: str, macvlan: str, cni_bin_dir: str,
                                                   cni_sandbox, tmp_path) -> None:
    binaries = both(macvlan, "macvlan")
    make_master(cni_sandbox.host)
    ctr = cni_sandbox.container()
    config = netconf("macvlan", "1.0.0", str(tmp_path), master="m0")
    run(binaries[adder], "ADD", config, cni_sandbox, ctr, cni_bin_dir).ok()
    run(binaries[deleter], "DEL", config, cni_sandbox, ctr, cni_bin_dir).ok()
    assert link_details(ctr) is None
    assert not list((tmp_path / "macvlannet").glob("10.*"))  # the address released


def test_del_with_the_netns_or_master_gone(macvlan: str, cni_bin_dir: str, cni_sandbox, tmp_path) -> None:
    """DEL succeeds with the namespace gone, with an empty CNI_NETNS and with the master gone
    (Go's v1.1.1 fails the last: it looks the master up on DEL), releasing the address."""
    make_master(cni_sandbox.host)
    config = netconf("macvlan", "1.0.0", str(tmp_path), master="m0")
    ctr = cni_sandbox.container()
    run(macvlan, "ADD", config, cni_sandbox, ctr, cni_bin_dir).ok()
    path = ctr.path
    ctr.remove()
    run(macvlan, "DEL", config, cni_sandbox, path, cni_bin_dir).ok()
    run(macvlan, "DEL", config, cni_sandbox, "", cni_bin_dir).ok()
    assert not list((tmp_path / "macvlannet").glob("10.*"))
    ctr = cni_sandbox.container()
    run(macvlan, "ADD", config, cni_sandbox, ctr, cni_bin_dir).ok()
    run_in(cni_sandbox.host, "ip", "link", "del", "m0")
    assert link_details(ctr) is None  # the kernel took the macvlan with its master
    run(macvlan, "DEL", config, cni_sandbox, ctr, cni_bin_dir).ok()
    assert not list((tmp_path / "macvlannet").glob("10.*"))


# -- errors side by side with Go ---------------------------------------------------------------

#: name -> (config changes, CNI_ARGS): bad configs that fail before or at link creation.
BAD = {
    "no-master-no-default-route": ({"master": None}, ""),
    "missing-master": ({"master": "nope"}, ""),
    "mtu-too-big": ({"mtu": 9000}, ""),
    "mtu-negative": ({"mtu": -1}, ""),
    "mtu-string": ({"mtu": "1400"}, ""),
    "master-number": ({"master": 5}, ""),
    "unknown-mode": ({"mode": "fast"}, ""),
    "mode-source": ({"mode": "source"}, ""),
    "bad-mac": ({"mac": "zz:00"}, ""),
    "mac-8-bytes": ({"mac": "02:00:00:00:00:00:00:01"}, ""),
    "multicast-mac": ({"mac": "01:00:5e:00:00:01"}, ""),
    "bad-cni-args": ({}, "FOO=bar"),
    "bad-cni-args-and-mtu": ({"mtu": 9000}, "FOO=bar"),  # the MTU is checked first
    "bad-runtime-config": ({"runtimeConfig": {"mac": 5}}, ""),
    "ipam-missing-plugin": ({"ipam": {"type": "no-such-ipam"}}, ""),
    "ipam-no-ranges": ({"ipam": {"type": "host-local"}}, ""),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_configs_fail_like_go(case: str, macvlan: str, cni_bin_dir: str, tmp_path) -> None:
    """Same exit status, code and message as Go's; nothing left behind in the container."""
    changes, args = BAD[case]
    seen = {}
    for side, binary in both(macvlan, "macvlan").items():
        config = netconf("macvlan", "1.0.0", str(tmp_path / side), master="m0")
        config.update(changes)
        config = {k: v for k, v in config.items() if v is not None}
        with Sandbox() as sandbox:
            make_master(sandbox.host, default_route=False)
            ctr = sandbox.container()
            outcome = run(binary, "ADD", config, sandbox, ctr, cni_bin_dir, args=args)
            assert not outcome.stderr.startswith(b"Traceback"), outcome
            seen[side] = error_of(outcome)
            if side == "ours":  # Go's v1.1.1 leaks the link when IPAM fails; ours undoes it
                assert run_in(ctr, "ip", "-o", "link").count("\n") == 1, side  # lo only
    assert seen["ours"] == seen["go"]
    assert seen["ours"][0] == 1


def test_bad_netns_and_check_errors_like_go(macvlan: str, cni_bin_dir: str, tmp_path) -> None:
    """CHECK's refusals (no prevResult, another mode, another MAC, a missing interface) read as Go's."""
    seen: dict[str, list] = {}
    for side, binary in both(macvlan, "macvlan").items():
        config = netconf("macvlan", "1.0.0", str(tmp_path / side), master="m0", mode="vepa")
        with Sandbox() as sandbox:
            make_master(sandbox.host)
            ctr = sandbox.container()
            added = run(binary, "ADD", config, sandbox, ctr, cni_bin_dir).ok().json
            other_mac = json.loads(json.dumps(added))
            other_mac["interfaces"][0]["mac"] = "02:00:00:00:00:99"
            other_name = json.loads(json.dumps(added))
            other_name["interfaces"][0]["name"] = "eth9"
            no_sandbox = json.loads(json.dumps(added))
            no_sandbox["interfaces"][0]["sandbox"] = ""
            checks = [dict(config), dict(config, prevResult=added, mode="bridge"),
                      dict(config, prevResult=other_mac), dict(config, prevResult=no_sandbox),
                      dict(config, prevResult=added, master="gone")]
            seen[side] = [error_of(run(binary, "CHECK", c, sandbox, ctr, cni_bin_dir)) for c in checks]
            seen[side].append(error_of(run(binary, "CHECK", dict(config, prevResult=other_name), sandbox, ctr,
                                           cni_bin_dir, ifname="eth9")))
            mac = added["interfaces"][0]["mac"]
            seen[side] = [(code, err, msg.replace(ctr.path, "NS").replace(mac, "MAC"))
                          for code, err, msg in seen[side]]
    assert seen["ours"] == seen["go"]
    assert all(code == 1 for code, _err, _msg in seen["ours"])


# -- STATUS, GC ----------------------------------------------------------------------------------

def test_status_and_gc(macvlan: str, cni_bin_dir: str, cni_sandbox, tmp_path) -> None:
    """STATUS asks IPAM; GC passes on to IPAM, which releases addresses of attachments not valid."""
    make_master(cni_sandbox.host)
    config = netconf("macvlan", "1.1.0", str(tmp_path), routes=False, master="m0")
    ctr = cni_sandbox.container()
    run(macvlan, "ADD", config, cni_sandbox, ctr, cni_bin_dir, container_id="keep").ok()
    run(macvlan, "ADD", config, cni_sandbox, ctr, cni_bin_dir, container_id="stale", ifname="net1").ok()
    run(macvlan, "STATUS", config, cni_sandbox, "", cni_bin_dir).ok()
    gc = dict(config, **{"cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"}]})
    run(macvlan, "GC", gc, cni_sandbox, "", cni_bin_dir).ok()
    held = sorted(p.name for p in (tmp_path / "macvlannet").glob("10.*"))
    assert held == ["10.80.0.2"]
