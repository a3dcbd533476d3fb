"""cnicore.rtnl, the stdlib rtnetlink client.

Every change made through :class:`RtnlSocket` is checked independently: with
iproute2 (``ip -j -d ...``/``bridge -j ...`` run through ``ip netns exec``) or
pyroute2 in the same throwaway namespace. Everything happens in sandbox
namespaces; the machine's own network is never touched.

A few tests need no namespace: they swap the socket for a fake kernel to check
the bytes we send (decoded by pyroute2) and our handling of replies the live
kernel can't easily be made to give (multi-datagram dumps with ranges,
interrupted dumps, truncation, extended acks). They also cover bridge VLANs on
kernels built without CONFIG_BRIDGE_VLAN_FILTERING, where the live VLAN test can
only check that we fail the way iproute2 does.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import struct
import subprocess
import sys

import pytest

from cnicore import rtnl
from cnicore.rtnl import LinkExistsError, LinkNotFoundError, RtnlSocket

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

    from cnicore.ns import NetNS
    from cnicore.testing import Sandbox

privileged = pytest.mark.privileged


# -- helpers -------------------------------------------------------------------------


def run(netns: NetNS, *argv: str) -> subprocess.CompletedProcess[str]:
    """A command run inside ``netns`` through ``ip netns exec``."""
    return subprocess.run(["ip", "netns", "exec", os.path.basename(netns.path), *argv], capture_output=True,
                          text=True, timeout=30, stdin=subprocess.DEVNULL)


def jrun(netns: NetNS, *argv: str) -> Any:
    proc = run(netns, *argv)
    assert proc.returncode == 0, (argv, proc.stderr)
    return json.loads(proc.stdout) if proc.stdout.strip() else []


def iplink(netns: NetNS, name: str) -> dict[str, Any]:
    """``ip -j -d link show dev name`` (None if there is no such link)."""
    proc = run(netns, "ip", "-j", "-d", "link", "show", "dev", name)
    return json.loads(proc.stdout)[0] if proc.returncode == 0 else None  # type: ignore[return-value]


def ipaddrs(netns: NetNS, name: str) -> list[dict[str, Any]]:
    return jrun(netns, "ip", "-j", "-d", "addr", "show", "dev", name)[0]["addr_info"]


def iproutes(netns: NetNS, family: int, *selector: str) -> list[dict[str, Any]]:
    return jrun(netns, "ip", "-j", "-d", "-6" if family == socket.AF_INET6 else "-4", "route", "show", *selector)


def in_ns(netns: NetNS, fn: Callable[[RtnlSocket], Any]) -> Any:
    """fn(socket) with a socket opened inside netns."""
    def body() -> Any:
        with RtnlSocket() as sock:
            return fn(sock)
    return netns.do(body)


def pyroute(netns: NetNS, fn: Callable[[Any], Any]) -> Any:
    """fn(IPRoute) with pyroute2's socket opened inside netns (the oracle)."""
    def body() -> Any:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            return fn(ipr)
    return netns.do(body)


def raises(fn: Callable[[], Any], kind: type[BaseException] = OSError) -> BaseException:
    with pytest.raises(kind) as info:
        fn()
    return info.value


# -- links ---------------------------------------------------------------------------


@privileged
def test_link_lookups_agree_with_iproute2(host_netns: NetNS) -> None:
    def work(sock: RtnlSocket) -> Any:
        sock.add_veth("la", "lb")
        sock.set_up("la")
        return sock.link("lo"), sock.link_by_index(sock.link("la").index), sock.links()

    lo, la, links = in_ns(host_netns, work)
    assert (lo.index, lo.name, lo.kind, lo.mac, lo.mtu) == (1, "lo", "", "00:00:00:00:00:00", 65536)
    oracle = {entry["ifname"]: entry for entry in jrun(host_netns, "ip", "-j", "-d", "link", "show")}
    assert [link.name for link in links] == list(oracle) == ["lo", "lb", "la"]
    for link in links:
        entry = oracle[link.name]
        assert (link.index, link.mtu, link.mac, link.txqlen) == (
            entry["ifindex"], entry["mtu"], entry["address"], entry.get("txqlen", 0))
        assert link.is_up == ("UP" in entry["flags"])
        assert link.kind == entry.get("linkinfo", {}).get("info_kind", "")
    assert la.name == "la" and la.is_up
    assert la.operstate == 3 == {"UP": 6, "LOWERLAYERDOWN": 3, "DOWN": 2}[oracle["la"]["operstate"]]  # peer down


@privileged
def test_missing_links(host_netns: NetNS) -> None:
    def work(sock: RtnlSocket) -> list[BaseException]:
        return [raises(lambda: sock.link("nosuch"), LinkNotFoundError),
                raises(lambda: sock.link("a-name-much-too-long-for-linux"), LinkNotFoundError),
                raises(lambda: sock.link_by_index(4242), LinkNotFoundError),
                raises(lambda: sock.delete_link("nosuch"), LinkNotFoundError),
                raises(lambda: sock.delete_link(4242), LinkNotFoundError),
                raises(lambda: sock.set_link(4242, up=True), LinkNotFoundError),
                raises(lambda: sock.add_address(4242, "10.1.0.1/24"), LinkNotFoundError),
                raises(lambda: sock.set_up("nosuch"), LinkNotFoundError)]

    for exc in in_ns(host_netns, work):
        assert isinstance(exc, LookupError) and isinstance(exc, OSError) and exc.errno == errno.ENODEV
        assert "Link not found" in str(exc)


@privileged
def test_add_bridge(host_netns: NetNS) -> None:
    def work(sock: RtnlSocket) -> Any:
        made = sock.add_bridge("br0", mtu=1400, mac="02:aa:bb:cc:dd:01")
        plain = sock.add_bridge("br1")
        sock.add_veth("v0", "v1")
        return (made, plain, raises(lambda: sock.add_bridge("br0"), LinkExistsError),
                raises(lambda: sock.add_bridge("v0"), LinkExistsError))

    made, plain, dup, dup_veth = in_ns(host_netns, work)
    for exc in (dup, dup_veth):
        assert isinstance(exc, OSError) and exc.errno == errno.EEXIST
    oracle = iplink(host_netns, "br0")
    assert oracle["linkinfo"]["info_kind"] == "bridge"
    assert (oracle["mtu"], oracle["address"], oracle["ifindex"]) == (1400, "02:aa:bb:cc:dd:01", made.index)
    assert (made.kind, made.mtu, made.mac, made.is_up) == ("bridge", 1400, "02:aa:bb:cc:dd:01", False)
    assert made.vlan_filtering is False and plain.vlan_filtering is False
    assert oracle["linkinfo"]["info_data"]["vlan_filtering"] == 0
    assert iplink(host_netns, "v0")["linkinfo"]["info_kind"] == "veth"  # not replaced
    assert in_ns(host_netns, lambda sock: sock.link("v0").vlan_filtering) is None


def vlan_filtering_supported(netns: NetNS) -> bool:
    """Ask iproute2 whether this kernel has CONFIG_BRIDGE_VLAN_FILTERING."""
    proc = run(netns, "ip", "link", "add", "vfprobe", "type", "bridge", "vlan_filtering", "1")
    if proc.returncode == 0:
        assert run(netns, "ip", "link", "del", "vfprobe").returncode == 0
        return True
    assert "Operation not supported" in proc.stderr, proc.stderr
    return False


@privileged
def test_bridge_vlan_filtering(host_netns: NetNS) -> None:
    supported = vlan_filtering_supported(host_netns)

    def work(sock: RtnlSocket) -> Any:
        try:
            return sock.add_bridge("brv", vlan_filtering=True)
        except OSError as exc:
            return exc

    made = in_ns(host_netns, work)
    if supported:
        assert made.vlan_filtering is True
        assert iplink(host_netns, "brv")["linkinfo"]["info_data"]["vlan_filtering"] == 1
    else:  # refused like `ip link add ... vlan_filtering 1`, and nothing left behind
        assert isinstance(made, OSError) and made.errno == errno.EOPNOTSUPP
        assert iplink(host_netns, "brv") is None


@privileged
def test_veth_with_peer_in_another_netns(cni_sandbox: Sandbox) -> None:
    host, ctr = cni_sandbox.host, cni_sandbox.container()
    in_ns(ctr, lambda sock: sock.add_veth("eth0", "vethhost", mtu=1450, mac="02:00:00:00:00:0c",
                                          peer_mac="02:00:00:00:00:0d", peer_netns_fd=host.fd()))
    inside, outside = in_ns(ctr, lambda s: s.link("eth0")), in_ns(host, lambda s: s.link("vethhost"))
    assert (inside.kind, inside.mtu, inside.mac) == ("veth", 1450, "02:00:00:00:00:0c")
    assert (outside.kind, outside.mtu, outside.mac) == ("veth", 1450, "02:00:00:00:00:0d")
    # Each end's IFLA_LINK is the other's ifindex, in the namespace named by IFLA_LINK_NETNSID.
    assert inside.link == outside.index and outside.link == inside.index
    assert inside.link_netnsid is not None and outside.link_netnsid is not None
    for netns, name, link in ((ctr, "eth0", inside), (host, "vethhost", outside)):
        oracle = iplink(netns, name)
        assert (oracle["ifindex"], oracle["link_index"], oracle["link_netnsid"], oracle["mtu"], oracle["address"]) \
            == (link.index, link.link, link.link_netnsid, link.mtu, link.mac)
    assert iplink(host, "eth0") is None and iplink(ctr, "vethhost") is None

    # A name already taken on either side: LinkExistsError, and nothing half-made.
    def again(sock: RtnlSocket) -> list[BaseException]:
        return [raises(lambda: sock.add_veth("eth0", "other", peer_netns_fd=host.fd()), LinkExistsError),
                raises(lambda: sock.add_veth("eth1", "vethhost", peer_netns_fd=host.fd()), LinkExistsError)]

    assert [exc.errno for exc in in_ns(ctr, again)] == [errno.EEXIST, errno.EEXIST]
    assert iplink(ctr, "eth1") is None and iplink(host, "other") is None

    # Deleting one end takes the other along.
    in_ns(ctr, lambda sock: sock.delete_link("eth0"))
    assert iplink(ctr, "eth0") is None and iplink(host, "vethhost") is None
    assert isinstance(raises(lambda: in_ns(ctr, lambda s: s.delete_link("eth0")), LinkNotFoundError), OSError)


@privileged
def test_veth_in_one_netns(host_netns: NetNS) -> None:
    def work(sock: RtnlSocket) -> Any:
        sock.add_veth("pa", "pb", mtu=9000)
        return sock.link("pa"), sock.link("pb")

    pa, pb = in_ns(host_netns, work)
    assert pa.link == pb.index and pb.link == pa.index
    assert pa.link_netnsid is None and pb.link_netnsid is None
    assert pa.mtu == pb.mtu == 9000
    by_index = pyroute(host_netns, lambda ipr: {m.get("index"): (m.get("ifname"), m.get("link"))
                                                 for m in ipr.get_links()})
    assert by_index[pa.index] == ("pa", pb.index) and by_index[pb.index] == ("pb", pa.index)


@privileged
def test_set_master_and_release(host_netns: NetNS) -> None:
    def enslave(sock: RtnlSocket) -> Any:
        br = sock.add_bridge("br0")
        sock.add_veth("v0", "v1")
        sock.set_link("v0", master=br)
        sock.set_link("v1", master="br0")
        return br, sock.link("v0"), sock.link("v1")

    br, v0, v1 = in_ns(host_netns, enslave)
    assert v0.master == v1.master == br.index
    assert iplink(host_netns, "v0")["master"] == iplink(host_netns, "v1")["master"] == "br0"
    assert iplink(host_netns, "v0")["linkinfo"]["info_slave_kind"] == "bridge"
    in_ns(host_netns, lambda sock: sock.set_link(v0, master=0))
    assert "master" not in iplink(host_netns, "v0") and iplink(host_netns, "v1")["master"] == "br0"
    assert in_ns(host_netns, lambda sock: sock.link("v0").master) == 0
    assert pyroute(host_netns, lambda ipr: ipr.link("get", ifname="v1")[0].get("master")) == br.index


@privileged
def test_set_link_changes_only_what_is_given(host_netns: NetNS) -> None:
    in_ns(host_netns, lambda sock: sock.add_veth("s0", "s1"))
    before = iplink(host_netns, "s0")
    ours = {"PROMISC", "ALLMULTI", "UP"}  # the flags set_link changes (the kernel adds NO-CARRIER etc.)
    values = {"mtu": before["mtu"], "address": before["address"], "txqlen": before["txqlen"],
              "flags": set(before["flags"]) & ours}
    steps: list[tuple[dict[str, Any], str, Any]] = [  # (change, what ip shows, its value)
        ({"mtu": 1280}, "mtu", 1280),
        ({"mac": "02:12:34:56:78:9a"}, "address", "02:12:34:56:78:9a"),
        ({"txqlen": 123}, "txqlen", 123),
        ({"promisc": True}, "flags", {"PROMISC"}),
        ({"allmulti": True}, "flags", {"PROMISC", "ALLMULTI"}),
        ({"up": True}, "flags", {"PROMISC", "ALLMULTI", "UP"}),
        ({"promisc": False}, "flags", {"ALLMULTI", "UP"}),
        ({"allmulti": False}, "flags", {"UP"}),
        ({"up": False}, "flags", set()),
    ]
    for change, key, value in steps:
        in_ns(host_netns, lambda sock: sock.set_link("s0", **change))
        values[key] = value
        oracle = iplink(host_netns, "s0")
        assert {k: set(oracle[k]) & ours if k == "flags" else oracle[k] for k in values} == values, change
        assert oracle["promiscuity"] == ("PROMISC" in values["flags"])
    link = in_ns(host_netns, lambda sock: sock.link("s0"))
    assert (link.mtu, link.mac, link.txqlen, link.promisc, link.allmulti, link.is_up) == (
        1280, "02:12:34:56:78:9a", 123, False, False, False)
    in_ns(host_netns, lambda sock: sock.set_link("s0", promisc=True, allmulti=True, up=True))
    link = in_ns(host_netns, lambda sock: sock.link("s0"))
    assert link.promisc and link.allmulti and link.is_up
    flags = pyroute(host_netns, lambda ipr: ipr.link("get", ifname="s0")[0]["flags"])
    assert flags & 0x301 == 0x301  # IFF_UP | IFF_PROMISC | IFF_ALLMULTI
    before = iplink(host_netns, "s0")
    in_ns(host_netns, lambda sock: sock.set_link("s0"))  # nothing given: nothing changes
    assert iplink(host_netns, "s0") == before


@privileged
def test_rename(host_netns: NetNS) -> None:
    def work(sock: RtnlSocket) -> Any:
        sock.add_veth("old0", "peer0")
        index = sock.link("old0").index
        sock.set_link("old0", name="new0")
        taken = raises(lambda: sock.set_link("new0", name="peer0"), LinkExistsError)
        sock.set_link(index, name="up0", up=True)  # rename and bring up in one request
        return index, taken, raises(lambda: sock.link("old0"), LinkNotFoundError), sock.link("up0")

    index, taken, gone, renamed = in_ns(host_netns, work)
    assert taken.errno == errno.EEXIST and gone.errno == errno.ENODEV
    assert renamed.index == index and renamed.is_up
    assert iplink(host_netns, "up0")["ifindex"] == index and iplink(host_netns, "old0") is None
    assert "UP" in iplink(host_netns, "up0")["flags"]


@privileged
def test_move_to_netns(cni_sandbox: Sandbox) -> None:
    host, ctr = cni_sandbox.host, cni_sandbox.container()

    def work(sock: RtnlSocket) -> None:
        sock.add_veth("m0", "m1")
        sock.set_link("m1", netns_fd=ctr.fd(), name="eth0", mtu=1400)

    in_ns(host, work)
    assert iplink(host, "m1") is None
    moved = iplink(ctr, "eth0")
    assert moved["mtu"] == 1400 and moved["link_index"] == iplink(host, "m0")["ifindex"]
    assert in_ns(ctr, lambda sock: sock.link("eth0")).link_netnsid is not None


# -- addresses -----------------------------------------------------------------------


@privileged
def test_addresses(host_netns: NetNS) -> None:
    def work(sock: RtnlSocket) -> Any:
        sock.add_veth("a0", "a1")
        sock.set_link("a0", up=True)
        sock.set_link("a1", up=True)
        sock.add_address("a0", "10.99.0.1/24")
        sock.add_address("a0", "10.98.0.1/24", noprefixroute=True)
        sock.add_address("a0", "10.97.0.1")  # no prefix: a host address
        sock.add_address("a0", "fd00:99::1/64", nodad=True)
        return (sock.addresses("a0", socket.AF_INET), sock.addresses("a0", socket.AF_INET6),
                raises(lambda: sock.add_address("a0", "10.99.0.1/24")))

    v4, v6, dup = in_ns(host_netns, work)
    assert dup.errno == errno.EEXIST
    assert v4 == ["10.99.0.1/24", "10.98.0.1/24", "10.97.0.1/32"]
    assert v6[0] == "fd00:99::1/64" and v6[1].startswith("fe80::") and len(v6) == 2
    oracle = {(a["local"], a["prefixlen"]): a for a in ipaddrs(host_netns, "a0")}
    assert oracle[("10.99.0.1", 24)]["broadcast"] == "10.99.0.255"  # IFA_BROADCAST, as vishvananda
    assert oracle[("10.98.0.1", 24)].get("noprefixroute") is True
    assert "broadcast" not in oracle[("10.97.0.1", 32)]
    assert oracle[("fd00:99::1", 64)].get("nodad") is True
    assert "tentative" not in oracle[("fd00:99::1", 64)]  # usable at once
    assert [f"{a['local']}/{a['prefixlen']}" for a in ipaddrs(host_netns, "a0") if a["family"] == "inet"] == v4
    routes = {r["dst"] for r in iproutes(host_netns, socket.AF_INET)}
    assert "10.99.0.0/24" in routes and "10.98.0.0/24" not in routes  # noprefixroute honoured
    by_pyroute = pyroute(host_netns, lambda ipr: sorted((m.get("IFA_ADDRESS"), m["prefixlen"])
                                                        for m in ipr.get_addr(family=socket.AF_INET)))
    assert by_pyroute == [("10.97.0.1", 32), ("10.98.0.1", 24), ("10.99.0.1", 24)]

    def delete(sock: RtnlSocket) -> Any:
        sock.del_address("a0", "10.99.0.1/24")
        sock.del_address(sock.link("a0"), "fd00:99::1/64")
        return raises(lambda: sock.del_address("a0", "10.99.0.1/24")), sock.addresses("a0", socket.AF_INET)

    missing, left = in_ns(host_netns, delete)
    assert missing.errno == errno.EADDRNOTAVAIL
    assert left == ["10.98.0.1/24", "10.97.0.1/32"]
    remaining = {a["local"] for a in ipaddrs(host_netns, "a0")}
    assert "10.99.0.1" not in remaining and "fd00:99::1" not in remaining and "10.98.0.1" in remaining


@privileged
def test_dump_spanning_many_datagrams(host_netns: NetNS) -> None:
    """1500 addresses and routes need several recv()s; all must come back."""
    class Counting:
        def __init__(self, sock: Any) -> None:
            self.sock, self.recvs = sock, 0

        def send(self, data: bytes) -> int:
            return self.sock.send(data)

        def recv_into(self, *args: Any) -> int:
            self.recvs += 1
            return self.sock.recv_into(*args)

        def close(self) -> None:
            self.sock.close()

    def work(sock: RtnlSocket) -> Any:
        sock.add_veth("d0", "d1")
        sock.set_link("d0", up=True)
        for n in range(1500):
            sock.add_address("d0", f"10.{40 + n // 250}.{n % 250}.1/32")
            sock.add_route(f"10.{100 + n // 250}.{n % 250}.0/24", link="d0")
        sock._sock = counting = Counting(sock._sock)  # type: ignore[assignment]
        addrs = sock.addresses("d0", socket.AF_INET)
        addr_recvs = counting.recvs
        return addrs, addr_recvs, sock.routes(socket.AF_INET), len(sock.links())

    addrs, recvs, routes, nlinks = in_ns(host_netns, work)
    assert recvs > 1
    assert len(addrs) == 1500 and addrs == [f"{a['local']}/32" for a in ipaddrs(host_netns, "d0")]
    assert len(routes) == 1500 == len(iproutes(host_netns, socket.AF_INET))
    assert nlinks == 3


# -- routes --------------------------------------------------------------------------


def route_setup(sock: RtnlSocket) -> int:
    sock.add_veth("r0", "r1")
    sock.set_link("r0", up=True)
    sock.set_link("r1", up=True)
    sock.add_address("r0", "10.99.0.1/24")
    sock.add_address("r0", "fd00:99::1/64", nodad=True)
    return sock.link("r0").index


@privileged
def test_routes_ipv4(host_netns: NetNS) -> None:
    def work(sock: RtnlSocket) -> Any:
        index = route_setup(sock)
        sock.add_route("10.50.0.0/16", gw="10.99.0.9", link="r0", priority=50, mtu=1300, advmss=1200)
        sock.add_route("0.0.0.0/0", gw="10.99.0.254")
        sock.add_route("10.60.0.0/16", gw="10.99.0.9", table=100)
        sock.add_route("10.61.0.0/16", link=index, table=1000)  # beyond rtm_table's u8: RTA_TABLE only
        sock.add_route("10.70.0.0/16", link="r0")  # no gateway: link scope, as `ip route add`
        sock.add_route("10.80.1.2/16", link="r0", src="10.99.0.1")  # host bits dropped
        dup = raises(lambda: sock.add_route("10.50.0.0/16", gw="10.99.0.9", link="r0", priority=50))
        return index, dup, sock.routes(socket.AF_INET), sock.routes(socket.AF_INET, table=None)

    index, dup, main, every = in_ns(host_netns, work)
    assert dup.errno == errno.EEXIST
    ours = {r.dst: r for r in main}
    assert set(ours) == {"10.99.0.0/24", "10.50.0.0/16", "0.0.0.0/0", "10.70.0.0/16", "10.80.0.0/16"}
    r = ours["10.50.0.0/16"]
    assert (r.gw, r.ifindex, r.table, r.priority, r.mtu, r.advmss, r.scope, r.proto, r.family) == (
        "10.99.0.9", index, 254, 50, 1300, 1200, rtnl.RT_SCOPE_UNIVERSE, rtnl.RTPROT_BOOT, socket.AF_INET)
    assert (ours["0.0.0.0/0"].gw, ours["0.0.0.0/0"].ifindex) == ("10.99.0.254", index)
    assert (ours["10.70.0.0/16"].scope, ours["10.70.0.0/16"].gw) == (rtnl.RT_SCOPE_LINK, "")
    assert ours["10.80.0.0/16"].src == "10.99.0.1"
    assert ours["10.99.0.0/24"].proto == 2  # the kernel's prefix route
    other = {(r.dst, r.table) for r in every}
    assert {("10.60.0.0/16", 100), ("10.61.0.0/16", 1000), ("10.99.0.1/32", 255)} <= other

    oracle = {r["dst"]: r for r in iproutes(host_netns, socket.AF_INET)}
    assert set(oracle) == {"10.99.0.0/24", "10.50.0.0/16", "default", "10.70.0.0/16", "10.80.0.0/16"}
    o = oracle["10.50.0.0/16"]
    assert (o["gateway"], o["dev"], o["metric"], o["protocol"], o["metrics"]) == (
        "10.99.0.9", "r0", 50, "boot", [{"mtu": 1300, "advmss": 1200}])
    assert oracle["default"]["gateway"] == "10.99.0.254"
    assert oracle["10.70.0.0/16"]["scope"] == "link" and "gateway" not in oracle["10.70.0.0/16"]
    assert oracle["10.80.0.0/16"]["prefsrc"] == "10.99.0.1"
    assert [(r["dst"], r["gateway"]) for r in iproutes(host_netns, socket.AF_INET, "table", "100")] == [
        ("10.60.0.0/16", "10.99.0.9")]
    assert [r["dst"] for r in iproutes(host_netns, socket.AF_INET, "table", "1000")] == ["10.61.0.0/16"]
    assert [r.dst for r in in_ns(host_netns, lambda s: s.routes(socket.AF_INET, table=100))] == ["10.60.0.0/16"]
    assert pyroute(host_netns, lambda ipr: [(m.get("RTA_GATEWAY"), m.get("RTA_PRIORITY"))
                                            for m in ipr.get_routes(family=socket.AF_INET, dst_len=16, table=254)
                                            if m.get("RTA_DST") == "10.50.0.0"]) == [("10.99.0.9", 50)]

    def change(sock: RtnlSocket) -> Any:
        sock.add_route("10.50.0.0/16", gw="10.99.0.8", link="r0", priority=50, mtu=1400, replace=True)
        sock.add_route("10.50.0.0/16", gw="10.99.0.7", priority=60)  # same prefix, other metric
        sock.del_route("10.50.0.0/16", priority=50)
        sock.del_route("0.0.0.0/0")
        sock.del_route("10.60.0.0/16", gw="10.99.0.9", table=100)
        sock.del_route("10.61.0.0/16", link="r0", table=1000)
        sock.del_route("10.70.0.0/16", link="r0")
        return (raises(lambda: sock.del_route("10.70.0.0/16")),
                raises(lambda: sock.del_route("10.80.0.0/16", gw="10.99.0.200")))

    gone, wrong_gw = in_ns(host_netns, change)
    assert gone.errno == errno.ESRCH and wrong_gw.errno == errno.ESRCH
    oracle = {r["dst"]: r for r in iproutes(host_netns, socket.AF_INET)}
    assert set(oracle) == {"10.99.0.0/24", "10.50.0.0/16", "10.80.0.0/16"}
    assert (oracle["10.50.0.0/16"]["gateway"], oracle["10.50.0.0/16"]["metric"]) == ("10.99.0.7", 60)
    assert iproutes(host_netns, socket.AF_INET, "table", "100") == []
    assert iproutes(host_netns, socket.AF_INET, "table", "1000") == []


@privileged
def test_routes_ipv6(host_netns: NetNS) -> None:
    def work(sock: RtnlSocket) -> Any:
        index = route_setup(sock)
        sock.add_route("fd00:50::/64", gw="fd00:99::9", link="r0", mtu=1280, advmss=1220, priority=10)
        sock.add_route("::/0", gw="fd00:99::fe", link="r0")
        sock.add_route("fd00:60::/64", link="r0", table=200)
        return index, sock.routes(socket.AF_INET6)

    index, routes = in_ns(host_netns, work)
    ours = {r.dst: r for r in routes}
    r = ours["fd00:50::/64"]
    assert (r.gw, r.ifindex, r.mtu, r.advmss, r.priority, r.family) == (
        "fd00:99::9", index, 1280, 1220, 10, socket.AF_INET6)
    assert ours["::/0"].gw == "fd00:99::fe"
    assert "fd00:60::/64" not in ours
    oracle = {r["dst"]: r for r in iproutes(host_netns, socket.AF_INET6)}
    assert (oracle["fd00:50::/64"]["gateway"], oracle["fd00:50::/64"]["metric"]) == ("fd00:99::9", 10)
    assert oracle["fd00:50::/64"]["metrics"] == [{"mtu": 1280, "advmss": 1220}]
    assert oracle["default"]["gateway"] == "fd00:99::fe"
    assert [r["dst"] for r in iproutes(host_netns, socket.AF_INET6, "table", "200")] == ["fd00:60::/64"]

    def delete(sock: RtnlSocket) -> Any:
        sock.del_route("::/0", gw="fd00:99::fe")
        sock.del_route("fd00:50::/64", link="r0")
        sock.del_route("fd00:60::/64", table=200)
        return raises(lambda: sock.del_route("fd00:50::/64"))

    assert in_ns(host_netns, delete).errno == errno.ESRCH
    remaining = {r["dst"] for r in iproutes(host_netns, socket.AF_INET6)}
    assert "default" not in remaining and "fd00:50::/64" not in remaining and "fd00:99::/64" in remaining
    assert iproutes(host_netns, socket.AF_INET6, "table", "200") == []


def test_route_arguments_are_checked() -> None:
    sock = fake_socket(ack_everything)
    for call in (lambda: sock.add_route("10.0.0.0/33", link=1), lambda: sock.add_route("nonsense/8", link=1),
                 lambda: sock.add_route("10.0.0.0/8", gw="fd00::1"), lambda: sock.add_address(1, "10.0.0.1/x"),
                 lambda: sock.set_link(1, mac="02:00")):
        with pytest.raises(ValueError):
            call()
    assert sock._sock.sent == []  # type: ignore[attr-defined]


# -- bridge ports and VLANs ----------------------------------------------------------


@privileged
def test_bridge_port_options(host_netns: NetNS) -> None:
    def work(sock: RtnlSocket) -> Any:
        br = sock.add_bridge("br0")
        sock.add_veth("p0", "p1")
        sock.set_link("p0", master=br)
        states = [sock.bridge_port("p0")]
        sock.set_bridge_port("p0", hairpin=True)
        states.append(sock.bridge_port("p0"))
        sock.set_bridge_port("p0", isolated=True, learning=False)
        states.append(sock.bridge_port("p0"))
        sock.set_bridge_port("p0")  # nothing given: nothing sent
        return states

    default, hairpin, all_set = in_ns(host_netns, work)
    assert default == {"hairpin": False, "isolated": False, "learning": True}
    assert hairpin == {"hairpin": True, "isolated": False, "learning": True}
    assert all_set == {"hairpin": True, "isolated": True, "learning": False}
    slave = iplink(host_netns, "p0")["linkinfo"]["info_slave_data"]
    assert (slave["hairpin"], slave["isolated"], slave["learning"]) == (True, True, False)
    (port,) = jrun(host_netns, "bridge", "-j", "-d", "link", "show", "dev", "p0")
    assert (port["hairpin"], port["isolated"], port["learning"]) == (True, True, False)

    in_ns(host_netns, lambda sock: sock.set_bridge_port("p0", hairpin=False, learning=True))
    slave = iplink(host_netns, "p0")["linkinfo"]["info_slave_data"]
    assert (slave["hairpin"], slave["isolated"], slave["learning"]) == (False, True, True)

    def not_a_port(sock: RtnlSocket) -> Any:
        return (raises(lambda: sock.set_bridge_port("p1", hairpin=True)), raises(lambda: sock.bridge_port("p1")),
                raises(lambda: sock.bridge_port("br0")), raises(lambda: sock.bridge_port(4242), LinkNotFoundError))

    errs = in_ns(host_netns, not_a_port)
    assert [e.errno for e in errs] == [errno.EOPNOTSUPP] * 3 + [errno.ENODEV]


def vlan_oracle(netns: NetNS, dev: str) -> list[tuple[int, bool, bool]]:
    """``bridge -j vlan show dev`` as (vid, pvid, untagged)."""
    out = []
    for entry in jrun(netns, "bridge", "-j", "vlan", "show", "dev", dev):
        for v in entry["vlans"]:
            flags = v.get("flags", [])
            for vid in range(v["vlan"], v.get("vlanEnd", v["vlan"]) + 1):
                out.append((vid, "PVID" in flags, "Egress Untagged" in flags))
    return sorted(out)


@privileged
def test_bridge_vlans(host_netns: NetNS) -> None:
    supported = vlan_filtering_supported(host_netns)

    def setup(sock: RtnlSocket) -> None:
        br = sock.add_bridge("br0", vlan_filtering=True if supported else None)
        sock.add_veth("p0", "p1")
        sock.set_link("p0", master=br)

    in_ns(host_netns, setup)
    if not supported:
        # Without CONFIG_BRIDGE_VLAN_FILTERING the kernel refuses to add VLANs, accepts
        # (ignores) deletions and reports none: we must do just what iproute2 does. The
        # request bytes and the reply parsing are checked against pyroute2 by the
        # fake-kernel tests below.
        def outcome(call: Callable[[RtnlSocket], None]) -> int:
            try:
                in_ns(host_netns, call)
            except OSError as exc:
                return exc.errno
            return 0

        cases = [(lambda s: s.bridge_vlan_add("p0", 10, pvid=True, untagged=True),
                  "vlan add dev p0 vid 10 pvid untagged"),
                 (lambda s: s.bridge_vlan_add("br0", 10, master=False), "vlan add dev br0 vid 10 self"),
                 (lambda s: s.bridge_vlan_del("p0", 1), "vlan del dev p0 vid 1"),
                 (lambda s: s.bridge_vlan_del("br0", 1, master=False), "vlan del dev br0 vid 1 self")]
        for call, command in cases:
            ours = outcome(call)
            theirs = run(host_netns, "bridge", *command.split())
            assert (ours == 0) == (theirs.returncode == 0), (command, ours, theirs.stderr)
            assert ours in (0, errno.EOPNOTSUPP)
        assert outcome(cases[0][0]) == errno.EOPNOTSUPP
        port, bridge, loose = in_ns(host_netns, lambda s: (s.bridge_vlans("p0"), s.bridge_vlans("br0"),
                                                           s.bridge_vlans("p1")))
        assert port == vlan_oracle(host_netns, "p0") == [] and bridge == loose == []
        return

    def add(sock: RtnlSocket) -> Any:
        sock.bridge_vlan_add("p0", 10, pvid=True, untagged=True)
        sock.bridge_vlan_add("p0", 20)
        sock.bridge_vlan_add("p0", 30, untagged=True)
        sock.bridge_vlan_add("br0", 40, master=False)  # on the bridge device itself ("self")
        return sock.bridge_vlans("p0"), sock.bridge_vlans("br0"), sock.bridge_vlans("p1")

    port, bridge, loose = in_ns(host_netns, add)
    assert port == vlan_oracle(host_netns, "p0")
    assert port == [(1, False, True), (10, True, True), (20, False, False), (30, False, True)]
    assert bridge == vlan_oracle(host_netns, "br0") and (40, False, False) in bridge
    assert loose == []

    def delete(sock: RtnlSocket) -> Any:
        sock.bridge_vlan_del("p0", 20)
        sock.bridge_vlan_del("p0", 1)
        sock.bridge_vlan_del("br0", 40, master=False)
        return sock.bridge_vlans("p0"), sock.bridge_vlans("br0")

    port, bridge = in_ns(host_netns, delete)
    assert port == vlan_oracle(host_netns, "p0") == [(10, True, True), (30, False, True)]
    assert bridge == vlan_oracle(host_netns, "br0") and all(vid != 40 for vid, _, _ in bridge)


# -- the fake kernel: request bytes and reply handling ------------------------------------

_HDR = struct.Struct("=IHHII")


def nlmsg(kind: int, flags: int, seq: int, payload: bytes) -> bytes:
    length = _HDR.size + len(payload)
    return _HDR.pack(length, kind, flags, seq, 0) + payload + b"\0" * ((-length) % 4)


def ack(seq: int, request: bytes, code: int = 0) -> bytes:
    return nlmsg(rtnl.NLMSG_ERROR, 0x100, seq, struct.pack("=i", code) + request[:16])


def ack_everything(seq: int, request: bytes) -> list[bytes]:
    return [ack(seq, request)]


class FakeKernel:
    """Stands in for the netlink socket: records requests, answers with respond()."""

    def __init__(self, respond: Callable[[int, bytes], list[bytes]]) -> None:
        self.respond = respond
        self.sent: list[bytes] = []
        self.pending: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.sent.append(bytes(data))
        self.pending.extend(self.respond(_HDR.unpack_from(data)[3], bytes(data)))
        return len(data)

    def recv_into(self, buf: bytearray, nbytes: int = 0, flags: int = 0) -> int:
        data = self.pending.pop(0)
        size = min(len(data), len(buf))
        buf[:size] = data[:size]
        return len(data) if flags & rtnl.MSG_TRUNC else size

    def close(self) -> None:
        pass


def fake_socket(respond: Callable[[int, bytes], list[bytes]]) -> RtnlSocket:
    """An RtnlSocket talking to a FakeKernel (no real socket is opened)."""
    sock = RtnlSocket.__new__(RtnlSocket)
    sock._sock = FakeKernel(respond)  # type: ignore[assignment]
    sock._seq = 0
    sock._buf = None
    return sock


def decoded(sock: RtnlSocket, cls: Any) -> Any:
    msg = cls(sock._sock.sent[-1])  # type: ignore[attr-defined]
    msg.decode()
    return msg


def pairs(nla: Any) -> list[tuple[str, Any]]:
    """A decoded pyroute2 message's attributes as (name, value)."""
    return [(name, value) for name, value in nla["attrs"]]


def test_requests_decoded_by_pyroute2() -> None:
    from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
    from pyroute2.netlink.rtnl.rtmsg import rtmsg

    sock = fake_socket(ack_everything)
    ack_flags = rtnl.NLM_F_REQUEST | rtnl.NLM_F_ACK
    create = ack_flags | rtnl.NLM_F_CREATE | rtnl.NLM_F_EXCL

    sock.bridge_vlan_add(5, 10, pvid=True, untagged=True)
    msg = decoded(sock, ifinfmsg)
    assert (msg["header"]["type"], msg["header"]["flags"], msg["family"], msg["index"]) == (
        rtnl.RTM_SETLINK, ack_flags, rtnl.AF_BRIDGE, 5)
    spec = msg.get_attr("IFLA_AF_SPEC")
    assert spec.get_attr("IFLA_BRIDGE_VLAN_FLAGS") == rtnl.BRIDGE_FLAGS_MASTER
    assert spec.get_attr("IFLA_BRIDGE_VLAN_INFO") == {"flags": 6, "vid": 10}  # PVID | UNTAGGED

    sock.bridge_vlan_del(7, 20, master=False)
    msg = decoded(sock, ifinfmsg)
    assert (msg["header"]["type"], msg["family"], msg["index"]) == (rtnl.RTM_DELLINK, rtnl.AF_BRIDGE, 7)
    spec = msg.get_attr("IFLA_AF_SPEC")
    assert spec.get_attr("IFLA_BRIDGE_VLAN_FLAGS") == rtnl.BRIDGE_FLAGS_SELF
    assert spec.get_attr("IFLA_BRIDGE_VLAN_INFO") == {"flags": 0, "vid": 20}

    sock.set_bridge_port(5, hairpin=True, isolated=False, learning=False)
    msg = decoded(sock, ifinfmsg)
    assert (msg["header"]["type"], msg["family"]) == (rtnl.RTM_SETLINK, rtnl.AF_BRIDGE)
    slot = msg["attrs"][0]
    assert slot.name == "IFLA_PROTINFO" and slot.get_flags() & rtnl.NLA_F_NESTED  # the kernel needs the flag
    assert pairs(slot.value) == [("IFLA_BRPORT_MODE", 1), ("IFLA_BRPORT_ISOLATED", 0), ("IFLA_BRPORT_LEARNING", 0)]

    sock.add_veth("eth0", "vethx", mtu=1400, mac="02:00:00:00:00:01", peer_mac="02:00:00:00:00:02",
                  peer_netns_fd=9)
    msg = decoded(sock, ifinfmsg)
    assert msg["header"]["flags"] == create
    assert (msg.get_attr("IFLA_IFNAME"), msg.get_attr("IFLA_MTU"), msg.get_attr("IFLA_ADDRESS")) == (
        "eth0", 1400, "02:00:00:00:00:01")
    info = msg.get_attr("IFLA_LINKINFO")
    assert info.get_attr("IFLA_INFO_KIND") == "veth"
    peer = info.get_attr("IFLA_INFO_DATA").get_attr("VETH_INFO_PEER")
    assert pairs(peer) == [("IFLA_IFNAME", "vethx"), ("IFLA_MTU", 1400),
                                                  ("IFLA_ADDRESS", "02:00:00:00:00:02"), ("IFLA_NET_NS_FD", 9)]

    sock.set_link(3, up=True, promisc=False, mtu=9000, master=0, txqlen=10)
    msg = decoded(sock, ifinfmsg)
    assert (msg["flags"], msg["change"]) == (rtnl.IFF_UP, rtnl.IFF_UP | rtnl.IFF_PROMISC)
    assert (msg.get_attr("IFLA_MTU"), msg.get_attr("IFLA_MASTER"), msg.get_attr("IFLA_TXQLEN")) == (9000, 0, 10)
    assert msg.get_attr("IFLA_ADDRESS") is None and msg.get_attr("IFLA_IFNAME") is None

    sock.add_route("10.1.2.3/8", gw="10.9.9.9", link=3, table=1000, priority=5, mtu=1300, advmss=1200)
    msg = decoded(sock, rtmsg)
    assert (msg["header"]["flags"], msg["table"], msg["dst_len"], msg["proto"], msg["type"], msg["scope"]) == (
        create, 0, 8, rtnl.RTPROT_BOOT, rtnl.RTN_UNICAST, rtnl.RT_SCOPE_UNIVERSE)
    assert (msg.get_attr("RTA_TABLE"), msg.get_attr("RTA_DST"), msg.get_attr("RTA_GATEWAY"),
            msg.get_attr("RTA_OIF"), msg.get_attr("RTA_PRIORITY")) == (1000, "10.0.0.0", "10.9.9.9", 3, 5)
    assert pairs(msg.get_attr("RTA_METRICS")) == [("RTAX_MTU", 1300), ("RTAX_ADVMSS", 1200)]
    sock.add_route("::/0", gw="fd00::1", replace=True)
    msg = decoded(sock, rtmsg)
    assert msg["header"]["flags"] == ack_flags | rtnl.NLM_F_CREATE | rtnl.NLM_F_REPLACE
    assert (msg["family"], msg["table"], msg["dst_len"]) == (socket.AF_INET6, 254, 0)
    sock.del_route("10.0.0.0/8", link=3)
    msg = decoded(sock, rtmsg)
    assert (msg["header"]["type"], msg["proto"], msg["type"], msg["scope"]) == (
        rtnl.RTM_DELROUTE, 0, 0, rtnl.RT_SCOPE_NOWHERE)

    sock.add_address(4, "192.168.7.9/22", noprefixroute=True, nodad=True)
    msg = decoded(sock, ifaddrmsg)
    assert (msg["family"], msg["prefixlen"], msg["index"], msg["flags"]) == (socket.AF_INET, 22, 4, rtnl.IFA_F_NODAD)
    assert (msg.get_attr("IFA_LOCAL"), msg.get_attr("IFA_ADDRESS"), msg.get_attr("IFA_BROADCAST"),
            msg.get_attr("IFA_FLAGS")) == ("192.168.7.9", "192.168.7.9", "192.168.7.255", 0x202)


def test_bridge_vlans_parsed_from_a_multipart_dump() -> None:
    """Entries of several links, over two datagrams, with a compressed range."""
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

    def entry(seq: int, index: int, vlans: list[tuple[int, int]]) -> bytes:
        msg = ifinfmsg()
        msg["family"], msg["index"] = rtnl.AF_BRIDGE, index
        msg["header"].update({"type": rtnl.RTM_NEWLINK, "flags": rtnl.NLM_F_MULTI, "sequence_number": seq})
        msg["attrs"] = [("IFLA_IFNAME", f"if{index}"), ("IFLA_MASTER", 2),
                        ("IFLA_AF_SPEC", {"attrs": [("IFLA_BRIDGE_VLAN_INFO", {"flags": f, "vid": v})
                                                    for f, v in vlans]})]
        msg.encode()
        return bytes(msg.data)

    def respond(seq: int, request: bytes) -> list[bytes]:
        assert struct.unpack_from("=B", request, 16)[0] == rtnl.AF_BRIDGE
        assert request.endswith(struct.pack("=HHI", 8, rtnl.IFLA_EXT_MASK, rtnl.RTEXT_FILTER_BRVLAN))
        return [entry(seq, 5, [(6, 1), (0, 20)]) + entry(seq, 6, [(0, 30)]),
                entry(seq, 5, [(0x8, 100), (0x10 | 0x4, 102)])
                + nlmsg(rtnl.NLMSG_DONE, rtnl.NLM_F_MULTI, seq, b"\0\0\0\0")]

    sock = fake_socket(respond)
    assert sock.bridge_vlans(5) == [(1, True, True), (20, False, False), (100, False, True), (101, False, True),
                                    (102, False, True)]
    assert sock.bridge_vlans(6) == [(30, False, False)]


def test_interrupted_dump_is_run_again() -> None:
    calls = []

    def respond(seq: int, request: bytes) -> list[bytes]:
        calls.append(seq)
        addr = struct.pack("=BBBBI", socket.AF_INET, 24, 0, 0, 3) + struct.pack("=HH", 8, rtnl.IFA_LOCAL)
        flags = rtnl.NLM_F_MULTI | (rtnl.NLM_F_DUMP_INTR if len(calls) == 1 else 0)
        ip = socket.inet_aton(f"10.0.0.{len(calls)}")
        return [nlmsg(rtnl.RTM_NEWADDR, flags, seq, addr + ip),
                nlmsg(rtnl.NLMSG_DONE, flags, seq, b"\0\0\0\0")]

    sock = fake_socket(respond)
    assert sock.addresses(3, socket.AF_INET) == ["10.0.0.2/24"]
    assert len(calls) == 2


def test_stale_replies_are_skipped_and_truncation_is_an_error() -> None:
    def respond(seq: int, request: bytes) -> list[bytes]:
        return [ack(seq - 1, request, -errno.EINVAL) + ack(seq, request)]  # a late answer to an older request

    sock = fake_socket(respond)
    sock.set_link(3, up=True)

    def huge(seq: int, request: bytes) -> list[bytes]:
        return [b"\0" * (rtnl.RECV_SIZE + 1)]

    assert raises(lambda: fake_socket(huge).links()).errno == errno.EMSGSIZE


def test_kernel_error_carries_the_extended_ack() -> None:
    def respond(seq: int, request: bytes) -> list[bytes]:
        tlv = struct.pack("=HH", 4 + 5, rtnl.NLMSGERR_ATTR_MSG) + b"boom\0" + b"\0" * 3
        payload = struct.pack("=i", -errno.EINVAL) + request[:16] + tlv
        return [nlmsg(rtnl.NLMSG_ERROR, rtnl.NLM_F_CAPPED | rtnl.NLM_F_ACK_TLVS, seq, payload)]

    exc = raises(lambda: fake_socket(respond).set_link(3, mtu=1))
    assert type(exc) is OSError and exc.errno == errno.EINVAL and exc.strerror == os.strerror(errno.EINVAL)
    if sys.version_info >= (3, 11):
        assert exc.__notes__ == ["kernel: boom"]


# -- the whole thing -----------------------------------------------------------------


@privileged
def test_two_containers_on_a_bridge_can_talk(cni_sandbox: Sandbox) -> None:
    host = cni_sandbox.host
    ctrs = [cni_sandbox.container(), cni_sandbox.container()]

    def make_bridge(sock: RtnlSocket) -> None:
        br = sock.add_bridge("cni0")
        sock.add_address(br, "10.99.0.1/24")
        sock.set_up(br)

    in_ns(host, make_bridge)
    for n, ctr in enumerate(ctrs, start=2):
        def plumb(sock: RtnlSocket, n: int = n) -> None:  # in the container: the peer lands in the host
            sock.add_veth("eth0", f"veth{n}", peer_netns_fd=host.fd())
            eth0 = sock.link("eth0")
            sock.add_address(eth0, f"10.99.0.{n}/24")
            sock.add_address(eth0, f"fd00:99::{n}/64", nodad=True)
            sock.set_link(eth0, up=True)
            sock.set_up("lo")
            sock.add_route("0.0.0.0/0", gw="10.99.0.1", link=eth0)

        in_ns(ctr, plumb)

        def attach(sock: RtnlSocket, n: int = n) -> None:
            sock.set_link(f"veth{n}", master="cni0", up=True)

        in_ns(host, attach)

    ping = run(ctrs[0], "ping", "-c", "1", "-W", "1", "10.99.0.3")
    assert ping.returncode == 0, ping.stdout + ping.stderr
    ping = run(ctrs[1], "ping", "-c", "1", "-W", "1", "10.99.0.1")  # the bridge, via the host
    assert ping.returncode == 0, ping.stdout + ping.stderr
    ping = run(ctrs[1], "ping", "-6", "-c", "1", "-W", "1", "fd00:99::2")
    assert ping.returncode == 0, ping.stdout + ping.stderr


def test_policy_rules_and_put_route_agree_with_iproute2(host_netns: NetNS) -> None:
    """rules/add_rule/del_rule are ``ip rule``'s; put_route copies a route into another table as it is."""

    def run() -> tuple[list[str], list[str], list[str], list[str]]:
        with RtnlSocket() as nl:
            nl.add_veth("rl0", "rl0p")
            link = nl.link("rl0")
            nl.add_address(link, "10.66.0.2/24")
            nl.set_up(link)
            nl.add_rule(src="10.66.0.2/32", table=100)
            nl.add_rule(src="fd66::2/128", table=1000, priority=500)
            with pytest.raises(OSError) as exc:
                nl.add_rule(src="fd66::2/128", table=1000, priority=500)
            assert exc.value.errno == errno.EEXIST
            ours = [repr(r) for r in nl.rules() if r.table in (100, 1000)]
            shown = (subprocess.run(["ip", "rule"], capture_output=True, text=True).stdout.splitlines()
                     + subprocess.run(["ip", "-6", "rule"], capture_output=True, text=True).stdout.splitlines())
            subnet = [r for r in nl.routes(rtnl.AF_INET) if r.ifindex == link.index]
            nl.put_route(subnet[0], table=100)
            moved = subprocess.run(["ip", "route", "show", "table", "100"], capture_output=True,
                                   text=True).stdout.splitlines()
            for rule in nl.rules():
                if rule.table in (100, 1000):
                    nl.del_rule(rule)
            left = [repr(r) for r in nl.rules() if r.table in (100, 1000)]
            return ours, shown, moved, left

    ours, shown, moved, left = host_netns.do(run)
    assert sorted(ours) == sorted(["Rule(family=10, src='fd66::2/128', dst='', table=1000, priority=500)",
                                "Rule(family=2, src='10.66.0.2/32', dst='', table=100, priority=32765)"])
    assert "32765:\tfrom 10.66.0.2 lookup 100" in shown and "500:\tfrom fd66::2 lookup 1000" in shown
    assert [line.replace(" linkdown", "").strip() for line in moved] == [
        "10.66.0.0/24 dev rl0 proto kernel scope link src 10.66.0.2"]
    assert left == []


@privileged
def test_add_macvlan(cni_sandbox: Sandbox) -> None:
    """A macvlan on a parent of the host, made straight into a container namespace, with
    each mode, MTU, MAC and broadcast queue as iproute2 reports them; the mode read back."""
    host, ctr = cni_sandbox.host, cni_sandbox.container()
    in_ns(host, lambda sock: sock.add_veth("p0", "p1"))
    for n, mode in enumerate(("bridge", "vepa", "private")):
        in_ns(host, lambda sock, n=n, mode=mode: sock.add_macvlan(  # type: ignore[misc]
            f"mv{n}", "p0", mode=mode, mtu=1400 - n, mac=f"02:00:00:00:00:0{n}", bcqueuelen=100 + n,
            netns_fd=ctr.fd()))
        link = iplink(ctr, f"mv{n}")
        data = link["linkinfo"]["info_data"]
        assert (link["linkinfo"]["info_kind"], data["mode"], link["mtu"], link["address"]) == (
            "macvlan", mode, 1400 - n, f"02:00:00:00:00:0{n}")
        assert data.get("bcqueuelen", 100 + n) == 100 + n  # iproute2 6.1 shows it when the kernel has it
        assert in_ns(ctr, lambda sock, n=n: sock.link_info_data(f"mv{n}")) == {"mode": mode}  # type: ignore[misc]
        assert iplink(host, f"mv{n}") is None
    # passthru takes the parent for itself: refused beside others, fine on a fresh parent
    busy = raises(lambda: in_ns(host, lambda sock: sock.add_macvlan("pt", "p0", mode="passthru")))
    assert isinstance(busy, OSError) and busy.errno == errno.EINVAL
    in_ns(host, lambda sock: sock.add_veth("q0", "q1"))
    in_ns(host, lambda sock: sock.add_macvlan("pt", "q0", mode="passthru"))
    assert in_ns(host, lambda sock: sock.link_info_data("pt")) == {"mode": "passthru"}
    assert in_ns(host, lambda sock: sock.link_info_data("q0")) == {}
    raises(lambda: in_ns(host, lambda sock: sock.add_macvlan("mvx", "nope")), LinkNotFoundError)
    raises(lambda: in_ns(host, lambda sock: sock.add_macvlan("pt", "p0")), LinkExistsError)
    raises(lambda: in_ns(host, lambda sock: sock.add_macvlan("mvx", "p0", mode="fast")), ValueError)
    raises(lambda: in_ns(host, lambda sock: sock.add_ipvlan("ipx", "p0", mode="l4")), ValueError)
