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

from cnicore.testing import Sandbox, kernel_has, run_executable
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


@pytest.mark.parametrize("case", list(CASES))
def test_vlan_options(bridge, cni_sandbox, ipam_dir, case) -> None:  # noqa: F811
    """ADD makes the new bridge VLAN-filtering and gives the port exactly these VLANs;
    CHECK passes; DEL removes the port and its VLANs, the bridge stays filtering."""
    extra, expected, _ = CASES[case]
    ctr = cni_sandbox.container()
    conf = netconf("1.0.0", ipam_dir, **extra)
    bridge.run("ADD", conf, netns=ctr, container_id="c1").ok()
    assert vlan_filtering(cni_sandbox.host)
    assert port_vlans(cni_sandbox.host) == expected
    assert vlan_table(cni_sandbox.host)[BR] == {DEFAULT}  # the bridge's own VLAN is left alone
    bridge.run("DEL", conf, netns=ctr, container_id="c1").ok()
    assert vlan_table(cni_sandbox.host) == {BR: {DEFAULT}}
    assert vlan_filtering(cni_sandbox.host)


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


@pytest.mark.interop
@pytest.mark.parametrize("case", list(CASES))
def test_vlan_options_like_go(bridge, cni_sandbox, ipam_dir, tmp_path, case) -> None:  # noqa: F811
    """Go's bridge, same config, its own sandbox: the same exit code, the same bridge
    filtering and the same port VLANs where v1.1.1 knows the options; where it ignores
    one (vlanTrunk, preserveDefaultVlan) its port shows exactly what ignoring means.
    DEL leaves both bridges with only their own default VLAN."""
    go_available()
    extra, expected, go_same = CASES[case]
    ctr = cni_sandbox.container()
    bridge.run("ADD", netconf("1.0.0", ipam_dir, **extra), netns=ctr, container_id="c1").ok()
    ours = port_vlans(cni_sandbox.host)
    with Sandbox() as go:
        go_ctr = go.container()
        conf = netconf("1.0.0", tmp_path / "go", **extra)
        out = run_executable(GO_BRIDGE, "ADD", conf, host=go.host, netns=go_ctr, container_id="c1",
                             extra={"CNI_PATH": GO_DIR})
        assert out.code == 0, out
        go_filtering = vlan_filtering(go.host)
        theirs = port_vlans(go.host)
        out = run_executable(GO_BRIDGE, "DEL", conf, host=go.host, netns=go_ctr, container_id="c1",
                             extra={"CNI_PATH": GO_DIR})
        assert out.code == 0, out
        go_after = vlan_table(go.host)
    assert ours == expected
    if go_same:
        assert theirs == ours and go_filtering
    else:  # what always keeping VLAN 1 and ignoring vlanTrunk and preserveDefaultVlan gives
        vlan = extra.get("vlan", 0)
        assert theirs == ({KEPT, (vlan, True, True)} if vlan else {DEFAULT}) and go_filtering == bool(vlan)
    assert go_after == {BR: {DEFAULT}}


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
