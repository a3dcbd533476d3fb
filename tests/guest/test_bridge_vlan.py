"""The bridge's ``vlan``, ``vlanTrunk``, ``preserveDefaultVlan`` and ``enabledad`` on a
kernel with bridge VLAN filtering (Debian's stock kernel, in the guest: scripts/guest),
our bridge and Go's (Debian's v1.1.1 in /usr/lib/cni) side by side.

The host suite (tests/test_bridge.py) tests that these options fail exactly as Go's do
on a kernel without VLAN filtering; here they must work. What a port carries is read
with ``bridge -j vlan show`` in the private host namespace after ADD, and after DEL.
"""

from __future__ import annotations

import json

import pytest

from cnicore.testing import Sandbox, kernel_has, ping, run_executable
from cnicore.testing import run_in as sh
from test_bridge import BR, GO_BRIDGE, GO_DIR, bindir, bridge, go_available, ipam_dir, netconf, sysctl  # noqa: F401

pytestmark = [pytest.mark.privileged, pytest.mark.kernel("bridge_vlan_filtering")]

#: (vid, pvid, untagged) as ``bridge vlan show`` reports a port's VLANs.
Vlans = frozenset[tuple[int, bool, bool]]


def vlan_table(netns) -> dict[str, Vlans]:
    """Every port's (and the bridge's own) VLANs in ``netns``, by link name."""
    out = json.loads(sh(netns, "bridge", "-j", "vlan", "show") or "[]")
    return {entry["ifname"]: frozenset((v["vlan"], "PVID" in v.get("flags", []),
                                        "Egress Untagged" in v.get("flags", [])) for v in entry.get("vlans", []))
            for entry in out}


def port_vlans(netns) -> Vlans:
    """The VLANs of the one veth on the bridge (the container's host side)."""
    ports = {name: vlans for name, vlans in vlan_table(netns).items() if name.startswith("veth")}
    assert len(ports) == 1, ports
    return next(iter(ports.values()))


def vlan_filtering(netns) -> bool:
    details = json.loads(sh(netns, "ip", "-d", "-j", "link", "show", BR))[0]
    return bool(details["linkinfo"]["info_data"]["vlan_filtering"])


DEFAULT = (1, True, True)  # the kernel's default VLAN on a new port: PVID, egress untagged

KEPT = (1, False, True)  # the default VLAN kept beside a new PVID: egress untagged only

#: option -> (config, the host port's VLANs after ADD, whether Debian's Go bridge (v1.1.1)
#: gives the same). We follow the current reference (v1.8.0 on): ``vlan``/``vlanTrunk``
#: remove the port's default VLAN 1 unless ``preserveDefaultVlan`` is true (a trunk without
#: ``vlan`` gets 1 back as its native VLAN). v1.1.1 knows ``vlan`` only, always keeps the
#: default VLAN and ignores vlanTrunk and preserveDefaultVlan.
CASES = {
    "vlan": ({"vlan": 100}, {(100, True, True)}, False),
    "vlan-preserveDefaultVlan": ({"vlan": 3, "preserveDefaultVlan": True}, {KEPT, (3, True, True)}, True),
    "vlanTrunk": ({"vlanTrunk": [{"id": 5}, {"minID": 10, "maxID": 12}]},
                  {DEFAULT, (5, False, False), (10, False, False), (11, False, False), (12, False, False)}, False),
    "vlanTrunk-preserveDefaultVlan": ({"vlanTrunk": [{"id": 7}], "preserveDefaultVlan": True},
                                      {DEFAULT, (7, False, False)}, False),
    "vlan+vlanTrunk": ({"vlan": 4, "vlanTrunk": [{"minID": 20, "maxID": 21}]},
                       {(4, True, True), (20, False, False), (21, False, False)}, False),
    "vlan+vlanTrunk-preserveDefaultVlan": ({"vlan": 4, "vlanTrunk": [{"id": 20}], "preserveDefaultVlan": True},
                                           {KEPT, (4, True, True), (20, False, False)}, False),
    "emptyTrunk": ({"vlanTrunk": []}, {DEFAULT}, False),
}


def test_vlan_two_containers_one_bridge(bridge, cni_sandbox, ipam_dir) -> None:  # noqa: F811
    """A second ADD with another ``vlan`` on the same (existing, filtering) bridge tags
    only its own port; DEL of one leaves the other's VLANs untouched."""
    a, b = cni_sandbox.container(), cni_sandbox.container()
    bridge.run("ADD", netconf("1.0.0", ipam_dir, vlan=10), netns=a, container_id="a").ok()
    bridge.run("ADD", netconf("1.0.0", ipam_dir, vlan=20), netns=b, container_id="b").ok()
    ports = {vlans for name, vlans in vlan_table(cni_sandbox.host).items() if name.startswith("veth")}
    assert ports == {frozenset({(10, True, True)}), frozenset({(20, True, True)})}
    bridge.run("DEL", netconf("1.0.0", ipam_dir, vlan=10), netns=a, container_id="a").ok()
    assert port_vlans(cni_sandbox.host) == {(20, True, True)}
    bridge.run("DEL", netconf("1.0.0", ipam_dir, vlan=20), netns=b, container_id="b").ok()


def container_ip(result: dict) -> str:
    return result["ips"][0]["address"].split("/")[0]


def test_vlan_isolates_traffic(bridge, cni_sandbox, ipam_dir) -> None:  # noqa: F811
    """The tags take effect: two containers on VLAN 10 reach each other, one on VLAN 20
    in the same subnet reaches neither (the bridge drops across VLANs)."""
    a, b, c = cni_sandbox.container(), cni_sandbox.container(), cni_sandbox.container()
    ips = {}
    for netns, cid, vlan in ((a, "a", 10), (b, "b", 10), (c, "c", 20)):
        ips[cid] = container_ip(bridge.run("ADD", netconf("1.0.0", ipam_dir, vlan=vlan), netns=netns,
                                           container_id=cid).ok().json)
    ping(a, ips["b"], timeout=30)
    for src, dst in ((a, "c"), (c, "b")):
        out = sh(src, "ping", "-c", "2", "-W", "1", ips[dst], check=False)
        assert " 0 received" in out, out


@pytest.mark.interop
def test_vlan_gateway_interface_like_go(bridge, cni_sandbox, ipam_dir, tmp_path) -> None:  # noqa: F811
    """``isGateway`` with ``vlan``: the gateway address goes on a veth ``br0.<vlan>`` whose
    peer is a port tagged with the VLAN, reported as a fourth interface, as Go's does;
    the container reaches its gateway through the VLAN."""
    go_available()
    ctr = cni_sandbox.container()
    result = bridge.run("ADD", netconf("1.0.0", ipam_dir, isGateway=True, vlan=100), netns=ctr,
                        container_id="c1").ok().json
    with Sandbox() as go:
        go_ctr = go.container()
        out = run_executable(GO_BRIDGE, "ADD", netconf("1.0.0", tmp_path / "go", isGateway=True, vlan=100),
                             host=go.host, netns=go_ctr, container_id="c1", extra={"CNI_PATH": GO_DIR})
        assert out.code == 0, out
        go_result = out.json
        go_gateway = json.loads(sh(go.host, "ip", "-j", "addr", "show", f"{BR}.100"))[0]
        go_ports = {v for name, v in vlan_table(go.host).items() if name.startswith("veth")}
    names = [i["name"] for i in result["interfaces"]]
    assert names[0] == BR and names[-1] == f"{BR}.100" and len(names) == 4
    assert [i["name"] for i in go_result["interfaces"]][-1] == f"{BR}.100" and len(go_result["interfaces"]) == 4
    gateway = json.loads(sh(cni_sandbox.host, "ip", "-j", "addr", "show", f"{BR}.100"))[0]
    for found in (gateway, go_gateway):
        assert [(a["local"], a["prefixlen"]) for a in found["addr_info"] if a["family"] == "inet"] == [
            ("10.10.0.1", 24)]
    # Both ports (the container's and the gateway veth's peer) carry VLAN 100 as PVID;
    # Go's v1.1.1 keeps VLAN 1 beside it (see CASES).
    ours = {v for name, v in vlan_table(cni_sandbox.host).items() if name.startswith("veth")}
    assert ours == {frozenset({(100, True, True)})}
    assert go_ports == {frozenset({KEPT, (100, True, True)})}
    assert len([n for n in vlan_table(cni_sandbox.host) if n.startswith("veth")]) == 2
    ping(ctr, "10.10.0.1", timeout=30)
    bridge.run("DEL", netconf("1.0.0", ipam_dir, isGateway=True, vlan=100), netns=ctr, container_id="c1").ok()


@pytest.mark.interop
@pytest.mark.parametrize("case", list(CASES))
def test_vlan_options(bridge, cni_sandbox, ipam_dir, tmp_path, case) -> None:  # noqa: F811
    """ADD makes the new bridge VLAN-filtering and gives the port exactly these VLANs,
    leaving the bridge's own alone; CHECK passes; DEL removes the port and its VLANs and
    the bridge stays filtering. Go's bridge, same config in its own sandbox: the same
    port VLANs where v1.1.1 knows the options, else exactly what ignoring them gives;
    its DEL leaves the same."""
    go_available()
    extra, expected, go_same = CASES[case]
    ctr = cni_sandbox.container()
    conf = netconf("1.0.0", ipam_dir, **extra)
    result = bridge.run("ADD", conf, netns=ctr, container_id="c1").ok().json
    assert vlan_filtering(cni_sandbox.host)
    assert port_vlans(cni_sandbox.host) == expected
    assert vlan_table(cni_sandbox.host)[BR] == {DEFAULT}
    bridge.run("CHECK", dict(conf, prevResult=result), netns=ctr, container_id="c1").ok()
    bridge.run("DEL", conf, netns=ctr, container_id="c1").ok()
    assert vlan_table(cni_sandbox.host) == {BR: {DEFAULT}}
    assert vlan_filtering(cni_sandbox.host)
    with Sandbox() as go:
        go_ctr = go.container()
        go_conf = netconf("1.0.0", tmp_path / "go", **extra)
        out = run_executable(GO_BRIDGE, "ADD", go_conf, host=go.host, netns=go_ctr, container_id="c1",
                             extra={"CNI_PATH": GO_DIR})
        assert out.code == 0, out
        go_filtering = vlan_filtering(go.host)
        theirs = port_vlans(go.host)
        out = run_executable(GO_BRIDGE, "DEL", go_conf, host=go.host, netns=go_ctr, container_id="c1",
                             extra={"CNI_PATH": GO_DIR})
        assert out.code == 0, out
        assert vlan_table(go.host) == {BR: {DEFAULT}}
    if go_same:
        assert theirs == expected and go_filtering
    else:  # what always keeping VLAN 1 and ignoring vlanTrunk and preserveDefaultVlan gives
        vlan = extra.get("vlan", 0)
        assert theirs == ({KEPT, (vlan, True, True)} if vlan else {DEFAULT}) and go_filtering == bool(vlan)


@pytest.mark.parametrize("enabled", [True, False])
def test_enabledad_like_go(bridge, cni_sandbox, ipam_dir, tmp_path, enabled) -> None:  # noqa: F811
    """``enabledad`` turns on (enhanced) DAD on the container's interface as Go's does;
    without it DAD is off (addresses usable at once)."""
    go_available()
    extra = {"enabledad": True} if enabled else {}

    def dad(netns) -> tuple[str, str]:
        return (sysctl(netns, "net/ipv6/conf/eth0/accept_dad"), sysctl(netns, "net/ipv6/conf/eth0/enhanced_dad"))

    ctr = cni_sandbox.container()
    bridge.run("ADD", netconf("1.0.0", ipam_dir, v6=True, **extra), netns=ctr, container_id="c1").ok()
    ours = dad(ctr)
    with Sandbox() as go:
        go_ctr = go.container()
        out = run_executable(GO_BRIDGE, "ADD", netconf("1.0.0", tmp_path / "go", v6=True, **extra), host=go.host,
                             netns=go_ctr, container_id="c1", extra={"CNI_PATH": GO_DIR})
        assert out.code == 0, out
        theirs = dad(go_ctr)
    assert ours == theirs == (("1", "1") if enabled else ("0", "1"))


@pytest.mark.kernel("dummy")
def test_kernel_has_both_ways() -> None:
    """kernel_has answers from the kernel: the stock kernel makes a dummy link (this test
    runs only there), and nobody's kernel makes a link of a kind that does not exist."""
    assert kernel_has("dummy") and kernel_has("bridge_vlan_filtering") and kernel_has("veth")
    from cnicore import testing

    testing.KERNEL_FEATURES["nonsense"] = ("link add t0 type cnicore-no-such-kind",)
    try:
        assert not kernel_has("nonsense")
    finally:
        del testing.KERNEL_FEATURES["nonsense"]
        testing._kernel_answers.pop("nonsense", None)
