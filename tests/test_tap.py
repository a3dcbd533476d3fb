"""The built-in tap plugin, through its launcher (cold, or warm with
``CNICORE_TEST_LAUNCHERS=native``). The reference's tap plugin exists only from v1.4
(Debian's 1.1.1 has none): the device flags are compared with what the reference's two
ways of making it give (``ip tuntap add``, vishvananda/netlink's Tuntap), read back
from the kernel with ``ip -d link``. All in a sandbox's throwaway namespaces.
"""

from __future__ import annotations

import os

import pytest

from cnicore.testing import Sandbox, run_executable, run_in
from cnicore.version import ALL

pytestmark = [pytest.mark.privileged]

MAC = "02:aa:bb:cc:dd:01"


@pytest.fixture
def tap(cni_bin_dir: str) -> str:
    return f"{cni_bin_dir}/tap"


def conf(version: str = "1.0.0", ipam: bool = False, **keys: object) -> dict:
    config: dict = {"cniVersion": version, "name": "tapnet", "type": "tap", **keys}
    if ipam:
        config["ipam"] = {"type": "static", "addresses": [{"address": "10.88.0.5/24", "gateway": "10.88.0.1"}],
                          "routes": [{"dst": "0.0.0.0/0"}]}
    return config


def run(binary: str, command: str, config: dict, sandbox: Sandbox, netns, cni_bin_dir: str, **kw: object):
    return run_executable(binary, command, config, host=sandbox.host, netns=netns, path=cni_bin_dir,
                          container_id="c1", **kw)


def tun_details(netns, name: str = "eth0") -> dict[str, object]:
    """The tun device as ``ip -d link`` shows it: flags, owner, group, MTU, MAC, up, master."""
    text = run_in(netns, "ip", "-d", "link", "show", name)
    words = text.split("tun type ", 1)[1].split()
    info = words[:words.index("addrgenmode")]
    first = text.split("\n", 1)[0]
    return {
        "flags": " ".join(w for w in info if w in ("tap", "multi_queue") or w in ("pi", "vnet_hdr", "persist")
                          or w in ("on", "off")),
        "user": info[info.index("user") + 1] if "user" in info else None,
        "group": info[info.index("group") + 1] if "group" in info else None,
        "mtu": int(first.split(" mtu ", 1)[1].split()[0]),
        "mac": text.split("link/ether ", 1)[1].split()[0],
        "up": ",UP" in first or "<UP" in first,
        "master": first.split(" master ", 1)[1].split()[0] if " master " in first else None,
    }


IP_TUNTAP = "tap pi off vnet_hdr off persist on"  # `ip tuntap add mode tap`
IP_TUNTAP_MQ = "tap pi off vnet_hdr off multi_queue persist on"
NETLINK = "tap pi on vnet_hdr on persist on"  # vishvananda/netlink's Tuntap with IFF_VNET_HDR
NETLINK_MQ = "tap pi off vnet_hdr on multi_queue persist on"

#: config keys -> (flags, user, group, mtu or None for the default, MAC or None for random)
CASES = {
    "defaults": ({}, IP_TUNTAP, None, None, None, None),
    "mtu-mac": ({"mtu": 1400, "mac": MAC}, IP_TUNTAP, None, None, 1400, MAC),
    "multiQueue": ({"multiQueue": True}, IP_TUNTAP_MQ, None, None, None, None),
    "owner": ({"owner": 4242}, IP_TUNTAP, "4242", None, None, None),
    "group": ({"group": 4343}, IP_TUNTAP, None, "4343", None, None),
    "owner-group": ({"owner": 4242, "group": 4343}, NETLINK, "4242", "4343", None, None),
    "owner-group-multiQueue": ({"owner": 0, "group": 0, "multiQueue": True}, NETLINK_MQ, "root", "root", None, None),
    # not an SELinux host: the label is ignored, the device made the `ip tuntap` way
    "selinuxContext": ({"selinuxContext": "system_u:system_r:container_t:s0", "owner": 4242, "group": 4343},
                       IP_TUNTAP, "4242", "4343", None, None),
    "runtimeConfig-mac": ({"mac": "02:00:00:00:00:09", "runtimeConfig": {"mac": MAC}}, IP_TUNTAP, None, None, None,
                          MAC),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_options(case: str, tap: str, cni_bin_dir: str) -> None:
    keys, flags, user, group, mtu, mac = CASES[case]
    if case == "selinuxContext":
        assert not os.path.exists("/sys/fs/selinux/enforce"), "this test expects a host without SELinux"
    with Sandbox() as sandbox:
        ctr = sandbox.container()
        added = run(tap, "ADD", conf(**keys), sandbox, ctr, cni_bin_dir).ok().json
        details = tun_details(ctr)
        assert details["flags"] == flags
        assert (details["user"], details["group"]) == (user, group)
        assert details["mtu"] == (mtu or 1500)
        if mac:
            assert details["mac"] == mac
        assert details["up"]
        assert added["interfaces"] == [{"name": "eth0", "mac": details["mac"], "sandbox": ctr.path}]
        run(tap, "CHECK", conf(**keys) | {"prevResult": added}, sandbox, ctr, cni_bin_dir).ok()
        run(tap, "DEL", conf(**keys), sandbox, ctr, cni_bin_dir).ok()
        assert "eth0" not in run_in(ctr, "ip", "-o", "link")


def test_mac_from_cni_args(tap: str, cni_bin_dir: str) -> None:
    with Sandbox() as sandbox:
        ctr = sandbox.container()
        run(tap, "ADD", conf(), sandbox, ctr, cni_bin_dir, args=f"IgnoreUnknown=1;MAC={MAC}").ok()
        assert tun_details(ctr)["mac"] == MAC


def test_bridge_in_the_container(tap: str, cni_bin_dir: str) -> None:
    """``bridge`` is looked up in the container's namespace, as the reference does."""
    with Sandbox() as sandbox:
        ctr = sandbox.container()
        run_in(ctr, "ip", "link", "add", "br0", "type", "bridge")
        run(tap, "ADD", conf(bridge="br0"), sandbox, ctr, cni_bin_dir).ok()
        assert tun_details(ctr)["master"] == "br0"
        out = run(tap, "ADD", conf(bridge="nosuchbr"), sandbox, ctr, cni_bin_dir, ifname="tap1")
        assert out.error is not None and out.error.msg == "failed to get bridge nosuchbr: Link not found"
        assert "tap1" not in run_in(ctr, "ip", "-o", "link") and "veth" not in run_in(ctr, "ip", "-o", "link")


@pytest.mark.parametrize("version", ALL)
def test_ipam_across_versions(version: str, tap: str, cni_bin_dir: str) -> None:
    config = conf(version, ipam=True, dns={"nameservers": ["10.88.0.53"]})
    with Sandbox() as sandbox:
        ctr = sandbox.container()
        added = run(tap, "ADD", config, sandbox, ctr, cni_bin_dir).ok().json
        assert added["cniVersion"] == version
        assert "10.88.0.5/24" in run_in(ctr, "ip", "-o", "addr", "show", "eth0")
        assert "default via 10.88.0.1 dev eth0" in run_in(ctr, "ip", "route")
        assert run_in(ctr, "cat", "/proc/sys/net/ipv4/conf/eth0/arp_notify").strip() == "1"
        if version >= "0.3.0":
            assert added["dns"] == {"nameservers": ["10.88.0.53"]}
        if version >= "0.4.0":
            run(tap, "CHECK", config | {"prevResult": added}, sandbox, ctr, cni_bin_dir).ok()
            run_in(ctr, "ip", "addr", "del", "10.88.0.5/24", "dev", "eth0")
            out = run(tap, "CHECK", config | {"prevResult": added}, sandbox, ctr, cni_bin_dir)
            assert out.error is not None and "10.88.0.5/24" in out.error.msg
        run(tap, "DEL", config, sandbox, ctr, cni_bin_dir).ok()
        run(tap, "DEL", config, sandbox, ctr, cni_bin_dir).ok()
        assert "eth0" not in run_in(ctr, "ip", "-o", "link")


def test_del_with_the_netns_gone_and_without_one(tap: str, cni_bin_dir: str) -> None:
    with Sandbox() as sandbox:
        ctr = sandbox.container()
        run(tap, "ADD", conf(), sandbox, ctr, cni_bin_dir).ok()
        path = ctr.path
        ctr.remove()
        run(tap, "DEL", conf(), sandbox, path, cni_bin_dir).ok()
        run(tap, "DEL", conf(), sandbox, "", cni_bin_dir).ok()


ERRORS = {
    "bad-mac": ({"mac": "02:aa:zz:cc:dd:01"}, "invalid args 02:aa:zz:cc:dd:01 for MAC addr: "
                "address 02:aa:zz:cc:dd:01: invalid MAC address"),
    "owner-negative": ({"owner": -1}, "failed to load netconf: json: cannot unmarshal number -1 into Go struct "
                       "field NetConf.owner of type uint32"),
    "mtu-string": ({"mtu": "1400"}, "failed to load netconf: json: cannot unmarshal string into Go struct field "
                   "NetConf.mtu of type int"),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_errors(case: str, tap: str, cni_bin_dir: str) -> None:
    keys, msg = ERRORS[case]
    with Sandbox() as sandbox:
        ctr = sandbox.container()
        out = run(tap, "ADD", conf(**keys), sandbox, ctr, cni_bin_dir)
        assert out.code == 1 and out.error is not None and (out.error.code, out.error.msg) == (999, msg)
        assert len(run_in(ctr, "ip", "-o", "link").splitlines()) == 1  # lo only


def test_name_taken_leaves_nothing_behind(tap: str, cni_bin_dir: str) -> None:
    with Sandbox() as sandbox:
        ctr = sandbox.container()
        run_in(ctr, "ip", "link", "add", "eth0", "type", "bridge")
        out = run(tap, "ADD", conf(), sandbox, ctr, cni_bin_dir)
        assert out.error is not None and out.error.msg.startswith('failed to rename tap to "eth0": ')
        assert "veth" not in run_in(ctr, "ip", "-o", "link")
