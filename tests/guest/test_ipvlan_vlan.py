"""ipvlan and vlan on a kernel that has them (Debian's stock kernel, in the guest:
scripts/guest), ours and Go's (Debian's v1.1.1 in /usr/lib/cni) side by side in the
same guest: result, link (kind, mode or VLAN id, MTU, addresses), CHECK, DEL — and
traffic over a VLAN. Few, focused cases: every exec costs about a second under TCG.
The refusals before the link is made run on the host (tests/test_ipvlan_vlan_errors.py).
"""

from __future__ import annotations

import pytest

from cnicore.netlink import Netlink
from cnicore.testing import Sandbox, ping
from test_macvlan import GO, error_of, link_shape, make_master, netconf, result_shape, run

pytestmark = [pytest.mark.privileged]


def masters(netns) -> None:
    """m2, m3: a master per case, so each ipvlan port has its own mode."""
    for name in ("m2", "m3"):
        make_master(netns, name, default_route=False)


@pytest.mark.kernel("ipvlan")
def test_ipvlan_like_go(cni_bin_dir: str, tmp_path) -> None:
    """l3s with an MTU, and l2 (the default) chained: no ``ipam`` or ``master``, so the
    prevResult's one interface is the master and its IPs go on the ipvlan — results and
    links as Go's; CHECK passes, and refuses another mode with Go's text; DEL removes the
    link (l3 is made by the toolkit test below). Each side in one sandbox, with as few execs as the cases need (each costs seconds
    under TCG); the default route's master and repeated DELs are macvlan's tests on the host
    (the same code, cni_plugins_builtin.sublink)."""
    seen: dict[str, list] = {}
    prev = {"cniVersion": "1.0.0", "interfaces": [{"name": "m3"}],
            "ips": [{"address": "10.80.0.9/24", "gateway": "10.80.0.1"}]}
    for side, binary in (("ours", f"{cni_bin_dir}/ipvlan"), ("go", f"{GO}/ipvlan")):
        store = str(tmp_path / side)
        configs = {"l3s": netconf("ipvlan", "1.0.0", store, master="m2", mode="l3s", mtu=1400),
                   "chained": netconf("ipvlan", "1.0.0", "", ipam=False, prevResult=prev)}
        with Sandbox() as sandbox:
            masters(sandbox.host)
            ctrs = {case: sandbox.container() for case in configs}
            seen[side] = []
            results = {}
            for case, config in configs.items():
                results[case] = run(binary, "ADD", config, sandbox, ctrs[case], cni_bin_dir,
                                    container_id=case).ok().json
                seen[side].append((case, result_shape(results[case]), link_shape(ctrs[case])))
            run(binary, "CHECK", dict(configs["l3s"], prevResult=results["l3s"]), sandbox, ctrs["l3s"],
                cni_bin_dir, container_id="l3s").ok()
            wrong_mode = dict(configs["l3s"], mode="l3", prevResult=results["l3s"])
            seen[side].append(error_of(run(binary, "CHECK", wrong_mode, sandbox, ctrs["l3s"], cni_bin_dir,
                                           container_id="l3s")))
            run(binary, "DEL", configs["l3s"], sandbox, ctrs["l3s"], cni_bin_dir, container_id="l3s").ok()
            assert link_shape(ctrs["l3s"]) is None
    assert seen["ours"] == seen["go"]
    links = {case: link for case, _result, link in seen["ours"][:2]}
    assert {case: (link["kind"], link["mode"]) for case, link in links.items()} == {
        "l3s": ("ipvlan", "l3s"), "chained": ("ipvlan", "l2")}
    assert links["l3s"]["mtu"] == 1400 and links["chained"]["addrs"] == ["10.80.0.9/24"]
    assert seen["ours"][2] == (1, 999, "Container IPVlan mode l3s does not match expected value: l3")


@pytest.mark.kernel("vlan")
def test_vlan_like_go(cni_bin_dir: str, tmp_path) -> None:
    """VLAN 200 with an MTU: result and link as Go's; the container reaches an address on
    VLAN 200 at the far end of the master's veth (m0p.200; the untagged m0 has no address
    in the subnet); CHECK passes and refuses another VLAN id with the reference's (odd)
    text; each implementation's DEL removes the other's link."""
    seen: dict[str, list] = {}
    binaries = {"ours": f"{cni_bin_dir}/vlan", "go": f"{GO}/vlan"}
    for side, other in (("ours", "go"), ("go", "ours")):
        binary = binaries[side]
        config = netconf("vlan", "1.0.0", str(tmp_path / side), routes=False, master="m0", vlanId=200, mtu=1400)
        with Sandbox() as sandbox:
            make_master(sandbox.host, default_route=False)
            sandbox.host.do(_far_end)
            ctr = sandbox.container()
            added = run(binary, "ADD", config, sandbox, ctr, cni_bin_dir).ok().json
            seen[side] = [result_shape(added), link_shape(ctr)]
            ping(ctr, "10.80.0.200", timeout=60)
            run(binary, "CHECK", dict(config, prevResult=added), sandbox, ctr, cni_bin_dir).ok()
            bad = dict(config, vlanId=101, prevResult=added)
            seen[side].append(error_of(run(binary, "CHECK", bad, sandbox, ctr, cni_bin_dir)))
            run(binaries[other], "DEL", config, sandbox, ctr, cni_bin_dir).ok()
            assert link_shape(ctr) is None
    assert seen["ours"] == seen["go"]
    assert (seen["ours"][1]["kind"], seen["ours"][1]["id"], seen["ours"][1]["mtu"]) == ("vlan", 200, 1400)
    assert seen["ours"][2] == (1, 999, "Error: Tuning link eth0 configured promisc is 101, current value is 200")


def _far_end() -> None:
    """VLAN 200 on the master's peer, with the subnet's .200; m0 itself leaves the subnet."""
    with Netlink() as nl:
        nl.add_vlan("m0p.200", "m0p", 200)
        nl.add_address("m0p.200", "10.80.0.200/24")
        nl.set_up("m0p.200")
        nl.del_address("m0", "10.80.0.1/24")


@pytest.mark.kernel("ipvlan", "vlan")
def test_netlink_ipvlan_and_vlan(cni_sandbox) -> None:
    """The toolkit's add_ipvlan / add_vlan and link_info_data, against iproute2."""
    ctr = cni_sandbox.container()
    make_master(cni_sandbox.host, default_route=False)

    def work() -> None:
        with Netlink() as nl:
            nl.add_ipvlan("ip0", "m0", mode="l3", mtu=1300, netns_fd=ctr.fd())
            nl.add_vlan("v0", "m0", 4094, mtu=1200)
            assert nl.link_info_data("v0") == {"vlan_id": 4094}
            with pytest.raises(OSError):
                nl.add_vlan("v1", "m0", 4095)

    cni_sandbox.host.do(work)
    assert link_shape(ctr, "ip0") == {"kind": "ipvlan", "mode": "l3", "id": None, "mtu": 1300, "up": False,
                                      "addrs": []}
    assert link_shape(cni_sandbox.host, "v0")["id"] == 4094

    def read() -> dict:
        with Netlink() as nl:
            return nl.link_info_data("ip0")

    assert ctr.do(read) == {"mode": "l3"}
