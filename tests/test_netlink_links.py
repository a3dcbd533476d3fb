"""Toolkit additions for issue 17's plugins, on this machine's kernel: link aliases,
TUN/TAP devices (``Netlink.add_tuntap``). All inside a
sandbox's private namespaces; VRF devices need the guest (tests/guest/test_vrf.py)."""

from __future__ import annotations

import errno

import pytest

from cnicore import netlink
from cnicore.netlink import LinkExistsError, Netlink
from cnicore.testing import Sandbox, run_in

pytestmark = [pytest.mark.privileged]


def _in(ns, fn):
    def go():
        with Netlink() as nl:
            return fn(nl)
    return ns.do(go)


def test_alias_set_read_and_cleared() -> None:
    with Sandbox() as sandbox:
        def work(nl: Netlink) -> tuple[str, str, str]:
            nl.add_link("al0", "ifb")
            before = nl.link_alias("al0")
            nl.set_alias("al0", "eth-original")
            set_ = nl.link_alias("al0")
            nl.set_alias("al0", "")
            return before, set_, nl.link_alias("al0")

        assert _in(sandbox.host, work) == ("", "eth-original", "")
        run_in(sandbox.host, "ip", "link", "set", "al0", "alias", "by-ip")
        assert _in(sandbox.host, lambda nl: nl.link_alias("al0")) == "by-ip"


def _details(ns, name: str) -> str:
    """``ip -d link show`` in the namespace (this process's /sys shows another one)."""
    return run_in(ns, "ip", "-d", "link", "show", name)


@pytest.mark.parametrize("flags, owner, group, expect", [
    (netlink.TUNTAP_DEFAULT_FLAGS, None, None, "tap pi off vnet_hdr off persist on"),
    (netlink.TUNTAP_DEFAULT_FLAGS | netlink.IFF_MULTI_QUEUE, 4242, None,
     "tap pi off vnet_hdr off multi_queue persist on user 4242"),
    (netlink.IFF_TAP | netlink.IFF_VNET_HDR, 4242, 4343, "tap pi on vnet_hdr on persist on user 4242 group 4343"),
], ids=["default", "multiqueue-owner", "vnethdr-owner-group"])
def test_add_tuntap_like_ip_tuntap(flags: int, owner, group, expect: str) -> None:
    with Sandbox() as sandbox:
        link = _in(sandbox.host, lambda nl: nl.add_tuntap("tp0", flags=flags, owner=owner, group=group, mtu=1400,
                                                          mac="02:11:22:33:44:55"))
        assert (link.name, link.mtu, link.mac) == ("tp0", 1400, "02:11:22:33:44:55")
        details = _details(sandbox.host, "tp0")
        words = details.split("tun type ", 1)[1].split()
        shown = [w for w in words[:words.index("addrgenmode")] if not w.isdigit() and not w.startswith("num")]
        assert " ".join(shown) == expect.replace(" 4242", "").replace(" 4343", ""), details
        assert ("user 4242" in details) == (owner is not None) and ("group 4343" in details) == (group is not None)
        # persistent: still there after our fd is closed; a second ADD of the name fails
        with pytest.raises(LinkExistsError):
            _in(sandbox.host, lambda nl: nl.add_tuntap("tp0"))
        _in(sandbox.host, lambda nl: nl.delete_link("tp0"))
        assert "tp0" not in run_in(sandbox.host, "ip", "-o", "link")


def test_add_tuntap_refuses_a_bad_name() -> None:
    with Sandbox() as sandbox:
        with pytest.raises(OSError) as info:
            _in(sandbox.host, lambda nl: nl.add_tuntap("x" * 16))
        assert info.value.errno == errno.EINVAL

