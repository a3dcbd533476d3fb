"""The public toolkit: typed config and names (pure), links, routes, forwarding,
validators, masquerade and IPAM delegation (in throwaway namespaces).

Every kernel change happens inside a :class:`cnicore.testing.Sandbox`: the
toolkit runs in its private host or container namespace, and the kernel is
read back independently with ``ip -j`` (iproute2) or ``iptables -S``.
"""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from typing import ClassVar

import pytest

from cnicore import ip, utils
from cnicore.config import FLOAT, NetConfError, decode, schema
from cnicore.errors import CNIError
from cnicore.ipam import configure_iface, exec_add, exec_check, exec_del
from cnicore.netlink import LinkNotFoundError, Netlink
from cnicore.request import Request
from cnicore.testing import run_in as sh
from cnicore.types import Interface, IPConfig, Result, Route

# -- typed config (pure) -----------------------------------------------------------------


@dataclass
class Range:
    subnet: str = ""
    min_id: int = 0


@dataclass
class PtpConf:
    name: str = ""
    mtu: int = 1500
    ip_masq: bool = False
    ranges: list[Range] = field(default_factory=list)
    by_name: dict[str, Range] = field(default_factory=dict)
    domain_name: str = field(default="", metadata={"json": "domain"})
    weight: float = 0.0
    extra: dict[str, object] | None = None
    first: Range | None = None


def test_config_decodes_with_go_key_rules() -> None:
    conf = decode({"name": "n", "MTU": 1400, "ipmasq": True, "mtu": 1300, "ranges": [{"Subnet": "10.0.0.0/8",
                   "minId": 3}], "byName": {"a": {"minID": 1}}, "domain": "example", "weight": 2,
                   "extra": {"k": [1]}, "first": {"subnet": "x"}, "unknown": {"ignored": True}}, PtpConf)
    assert conf == PtpConf(name="n", mtu=1300, ip_masq=True, ranges=[Range("10.0.0.0/8", 3)],
                           by_name={"a": Range("", 1)}, domain_name="example", weight=2.0, extra={"k": [1]},
                           first=Range("x"))
    # null and absent keep the defaults
    assert decode({"mtu": None, "ranges": None}, PtpConf) == PtpConf()


def test_config_decodes_a_request() -> None:
    request = Request("ADD", config={"cniVersion": "1.0.0", "name": "net", "mtu": 9000})
    assert decode(request, PtpConf).mtu == 9000


@pytest.mark.parametrize("config, message", [
    ({"mtu": "1500"}, "json: cannot unmarshal string into Go struct field PtpConf.mtu of type int"),
    ({"ipMasq": 1}, "json: cannot unmarshal number into Go struct field PtpConf.ipMasq of type bool"),
    ({"mtu": 1.5}, "json: cannot unmarshal number 1.5 into Go struct field PtpConf.mtu of type int"),
    ({"weight": "x"}, "json: cannot unmarshal string into Go struct field PtpConf.weight of type float64"),
    ({"ranges": {}}, "json: cannot unmarshal object into Go struct field PtpConf.ranges of type []Range"),
    ({"cniVersion": 1}, "json: cannot unmarshal number into Go struct field PtpConf.cniVersion of type string"),
    ({"ipam": []}, "json: cannot unmarshal array into Go struct field PtpConf.ipam of type types.IPAM"),
    ([], "json: cannot unmarshal array into Go value of type PtpConf"),
])
def test_config_errors_read_as_the_reference(config: object, message: str) -> None:
    with pytest.raises(NetConfError) as caught:
        decode(config, PtpConf)  # type: ignore[arg-type]
    assert caught.value.code == 999
    assert caught.value.msg == "failed to load netconf: " + message


def test_config_first_mismatch_is_reported_after_the_whole_document() -> None:
    with pytest.raises(NetConfError) as caught:
        decode({"mtu": "x", "ipMasq": "y"}, PtpConf, prefix="")
    assert caught.value.msg.endswith("PtpConf.mtu of type int")


def test_config_sub_object_without_netconf_keys() -> None:
    assert "cniVersion" not in schema(Range, netconf=False).fields
    assert decode({"cniVersion": 1, "subnet": "s"}, Range, netconf=False) == Range("s")
    assert schema(PtpConf) is schema(PtpConf)  # cached
    assert FLOAT.name == "float64"


def test_config_refuses_what_it_cannot_map() -> None:
    class NotADataclass:
        pass

    @dataclass
    class Tuple2:
        pair: set[int] = field(default_factory=set)

    with pytest.raises(TypeError):
        decode({}, NotADataclass)
    with pytest.raises(TypeError):
        decode({}, Tuple2)


class Pool:
    subnet: str
    weight: float = 1.5


class BaseConf:
    name: str = ""


class PlainConf(BaseConf):
    """The fast form: a plain class with annotated fields (no dataclasses import)."""

    mtu: int
    ip_masq: bool
    dns_domain: str = "cluster.local"
    pools: list[Pool] = []
    pool: Pool
    labels: dict[str, str]
    maybe: str | None
    counter: ClassVar[int] = 0  # a class variable, not a field
    _private: int = 0
    __json__ = {"dns_domain": "domain"}


def test_plain_class_config() -> None:
    empty = decode({}, PlainConf)
    assert (empty.name, empty.mtu, empty.ip_masq, empty.dns_domain, empty.pools, empty.labels, empty.maybe) == \
        ("", 0, False, "cluster.local", [], {}, None)  # Go's zero values where there is no default
    assert (empty.pool.subnet, empty.pool.weight) == ("", 1.5)  # an empty nested struct, as in Go
    conf = decode({"Name": "n", "mtu": 9000, "ipMasq": True, "domain": "example", "maybe": "x",
                   "pools": [{"subnet": "10.0.0.0/8", "weight": 3}], "pool": {"subnet": "s"},
                   "labels": {"a": "b"}, "counter": "ignored", "private": 5}, PlainConf)
    assert (conf.name, conf.mtu, conf.ip_masq, conf.dns_domain, conf.maybe, conf.labels) == \
        ("n", 9000, True, "example", "x", {"a": "b"})
    assert [(p.subnet, p.weight) for p in conf.pools] == [("10.0.0.0/8", 3.0)] and conf.pool.subnet == "s"
    assert PlainConf.counter == 0 and not hasattr(conf, "private")
    assert decode({}, PlainConf).pools is not decode({}, PlainConf).pools  # a mutable default is copied
    with pytest.raises(NetConfError, match="Go struct field Pool.pools.weight of type float64"):
        decode({"pools": [{"weight": "heavy"}]}, PlainConf)
    with pytest.raises(NetConfError, match="Go struct field PlainConf.domain of type string"):
        decode({"domain": 1}, PlainConf)


def test_plain_class_config_imports_no_dataclasses(tmp_path) -> None:
    """The fast form's promise, where it matters: a fresh ``python -IS`` (a cold exec)."""
    module = tmp_path / "plainconf.py"
    module.write_text("from __future__ import annotations\n\n"
                      "class Conf:\n    mtu: int = 0\n    names: list[str] = []\n")
    probe = (f"import sys\nsys.path[:0] = {[str(tmp_path), *sys.path]!r}\n"
             "from cnicore.config import decode\nimport plainconf\n"
             "conf = decode({'MTU': 1400, 'names': ['a']}, plainconf.Conf)\n"
             "assert (conf.mtu, conf.names) == (1400, ['a'])\n"
             "print(sorted(m for m in sys.modules if m in ('dataclasses', 'typing', 'inspect', 're')))\n")
    done = subprocess.run([sys.executable, "-IS", "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# -- names and addresses (pure) ----------------------------------------------------------


def test_chain_names_are_the_references() -> None:
    assert utils.format_chain_name("masqnet", "ctr-go-1") == "CNI-1d1f1e1580117167e5e7f382"
    assert utils.must_format_chain_name_with_prefix("net", "ctr", "DN-").startswith("CNI-DN-")
    assert len(utils.must_format_chain_name_with_prefix("net", "ctr", "DN-")) == utils.MAX_CHAIN_LENGTH
    with pytest.raises(ValueError):
        utils.must_format_hash_with_prefix(4, "CNI-", "x")


def test_random_veth_names() -> None:
    names = {ip.random_veth_name() for _ in range(50)}
    assert len(names) == 50 and all(re.fullmatch(r"veth[0-9a-f]{8}", n) for n in names)


@pytest.mark.parametrize("address, expected", [
    ("10.1.2.3/24", True), ("2001:db8::1/64", True), ("127.0.0.1/8", False), ("fe80::1/64", False),
    ("169.254.1.1", False), ("224.0.0.1", False), ("0.0.0.0", False), ("255.255.255.255", False),
])
def test_is_global_unicast(address: str, expected: bool) -> None:
    assert ip.is_global_unicast(address) is expected


def test_go_address_parsing_is_reexported() -> None:
    assert str(ip.parse_ip("::ffff:10.0.0.1")) == "10.0.0.1"  # as Go prints a v4-in-v6 address
    assert ip.parse_ip("010.0.0.1") is None  # Go refuses leading zeros
    assert ip.parse_cidr("10.0.0.5/24") is not None
    assert ip.ethernet_mac("02-00-00-00-00-AA") == "02:00:00:00:00:aa"
    assert isinstance(ip.parse_ip("10.0.0.1"), ip.IPAddress)  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        ip.no_such_name  # type: ignore[attr-defined]  # noqa: B018


# -- links (privileged) --------------------------------------------------------------------


def _link(netns, name: str) -> dict:
    return json.loads(sh(netns, "ip", "-j", "-d", "link", "show", "dev", name))[0]


def _exists(netns, name: str) -> bool:
    return any(link["ifname"] == name for link in json.loads(sh(netns, "ip", "-j", "link", "show")))


def test_setup_veth_random_host_name(host_netns, container_netns) -> None:
    host, container = container_netns.do(ip.setup_veth, "eth0", 1400, "", host_netns)
    assert re.fullmatch(r"veth[0-9a-f]{8}", host.name) and container.name == "eth0"
    host_side, cont_side = _link(host_netns, host.name), _link(container_netns, "eth0")
    assert "UP" in host_side["flags"] and "UP" not in cont_side["flags"]  # the container end: configure_iface
    assert host_side["mtu"] == cont_side["mtu"] == 1400
    assert host_side["linkinfo"]["info_kind"] == cont_side["linkinfo"]["info_kind"] == "veth"
    assert host_side["address"] == host.mac and cont_side["address"] == container.mac
    # each end knows its peer's index
    assert container_netns.do(ip.get_veth_peer_ifindex, "eth0")[1] == host.index
    assert host_netns.do(ip.get_veth_peer_ifindex, host.name)[1] == container.index


def test_setup_veth_given_names_and_mac(host_netns, container_netns) -> None:
    host, container = container_netns.do(ip.setup_veth, "net1", 0, "02:00:00:00:00:42", host_netns, "hostside1")
    assert host.name == "hostside1" and container.mac == "02:00:00:00:00:42"
    assert _link(container_netns, "net1")["address"] == "02:00:00:00:00:42"
    assert _exists(host_netns, "hostside1")


def test_setup_veth_refuses_taken_names_and_leaves_nothing(host_netns, container_netns) -> None:
    container_netns.do(ip.setup_veth, "eth0", 0, "", host_netns, "taken0")
    before_host = sh(host_netns, "ip", "-o", "link", "show")
    with pytest.raises(CNIError) as caught:  # the container name is taken
        container_netns.do(ip.setup_veth, "eth0", 0, "", host_netns)
    assert caught.value.code == 999 and "already exists" in caught.value.msg
    with pytest.raises(CNIError) as caught:  # the given host name is taken
        container_netns.do(ip.setup_veth, "eth1", 0, "", host_netns, "taken0")
    assert caught.value.msg == 'container veth name ("eth1") peer provided ("taken0") already exists'
    with pytest.raises(CNIError) as caught:
        container_netns.do(ip.setup_veth, "eth2", 0, "zz:00", host_netns)
    assert caught.value.msg.startswith("failed to make veth pair")
    assert sh(host_netns, "ip", "-o", "link", "show") == before_host
    assert not any(_exists(container_netns, n) for n in ("eth1", "eth2"))


def test_setup_veth_removes_the_pair_when_the_host_end_fails(host_netns, container_netns) -> None:
    class HostGoneAfterCreate:
        """The host namespace as setup_veth sees it, failing once the pair exists (a namespace
        that vanished, a host end the kernel refuses to bring up)."""

        def fd(self) -> int:
            return host_netns.fd()

        def do(self, fn, *args):
            raise CNIError(999, "host namespace gone")

    before_host = sh(host_netns, "ip", "-o", "link", "show")
    with pytest.raises(CNIError, match="host namespace gone"):
        container_netns.do(ip.setup_veth, "eth0", 0, "", HostGoneAfterCreate(), "hostend0")
    assert not _exists(container_netns, "eth0") and not _exists(host_netns, "hostend0")
    assert sh(host_netns, "ip", "-o", "link", "show") == before_host


def test_get_veth_peer_ifindex_of_a_non_veth(container_netns) -> None:
    with pytest.raises(CNIError, match='interface "lo" was not a veth interface'):
        container_netns.do(ip.get_veth_peer_ifindex, "lo")


def test_delete_by_name_and_by_name_addr(host_netns, container_netns) -> None:
    host, _ = container_netns.do(ip.setup_veth, "eth0", 0, "", host_netns)
    container_netns.do(ip.del_link_by_name, "eth0")
    assert not _exists(container_netns, "eth0") and not _exists(host_netns, host.name)  # the peer went too
    with pytest.raises(LinkNotFoundError):
        container_netns.do(ip.del_link_by_name, "eth0")
    container_netns.do(ip.setup_veth, "eth0", 0, "", host_netns)
    for address in ("10.1.2.3/24", "2001:db8::5/64", "169.254.9.9/16"):
        sh(container_netns, "ip", "addr", "add", address, "dev", "eth0")
    assert container_netns.do(ip.del_link_by_name_addr, "eth0") == ["10.1.2.3/24", "2001:db8::5/64"]
    with pytest.raises(LinkNotFoundError):
        container_netns.do(ip.del_link_by_name_addr, "eth0")
    assert not _exists(container_netns, "eth0")


# -- routes (privileged) -----------------------------------------------------------------


def _routes(netns, *args: str) -> list[dict]:
    return json.loads(sh(netns, "ip", "-j", *args, "route", "show"))


def test_routes_added_and_deleted_on_link_too(host_netns, container_netns) -> None:
    host, _ = container_netns.do(ip.setup_veth, "eth0", 0, "", host_netns)
    sh(container_netns, "ip", "link", "set", "eth0", "up")
    sh(container_netns, "ip", "addr", "add", "10.99.0.2/24", "dev", "eth0")
    container_netns.do(ip.add_host_route, "10.99.1.1/24", "", "eth0")  # prefix dropped: a host route
    container_netns.do(ip.add_route, "10.98.0.0/16", "", "eth0")  # on-link
    container_netns.do(ip.add_route, "10.97.0.0/16", "10.99.0.1", "eth0")
    container_netns.do(ip.add_default_route, "10.99.0.1", "eth0")
    routes = {r["dst"]: r for r in _routes(container_netns)}
    assert routes["10.99.1.1"].get("scope") == "link" and routes["10.98.0.0/16"].get("scope") == "link"
    assert routes["10.97.0.0/16"]["gateway"] == "10.99.0.1" and routes["default"]["gateway"] == "10.99.0.1"
    with pytest.raises(OSError) as caught:
        container_netns.do(ip.add_route, "10.98.0.0/16", "", "eth0")
    assert caught.value.errno == errno.EEXIST
    # the template's bug: deleting an on-link route at scope 0 never matched it
    for dst in ("10.98.0.0/16", "10.99.1.1/32", "10.97.0.0/16", "0.0.0.0/0"):
        container_netns.do(ip.del_route, dst, dev="eth0")
    assert {r["dst"] for r in _routes(container_netns)} == {"10.99.0.0/24"}
    with pytest.raises(OSError) as caught:
        container_netns.do(ip.del_route, "10.98.0.0/16", dev="eth0")
    assert caught.value.errno == errno.ESRCH
    # host side of a point-to-point link: a route to the container's address
    host_netns.do(ip.add_host_route, "10.99.0.2", "", host.name)
    assert _routes(host_netns)[0]["dst"] == "10.99.0.2" and _routes(host_netns)[0]["dev"] == host.name


# -- forwarding (privileged) ------------------------------------------------------------


def _sysctl(netns, key: str) -> str:
    return netns.do(lambda: open("/proc/sys/" + key.replace(".", "/")).read().strip())


class _VetoHost:
    """A request's host whose sysctl policy refuses every write (what a ``--policy`` may do)."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def call_hook(self, name: str, **kwargs: object) -> None:
        self.asked.append(f"{name}:{kwargs['key']}")
        raise CNIError(999, f"policy refuses {kwargs['key']}")


def test_forwarding_through_the_sysctl_policy(host_netns) -> None:
    assert _sysctl(host_netns, "net.ipv4.ip_forward") == "0"  # a new namespace starts without
    refused = Request("ADD")
    refused.host = _VetoHost()  # type: ignore[assignment]
    with pytest.raises(CNIError, match="policy refuses net.ipv4.ip_forward"):
        host_netns.do(ip.enable_ip4_forward, refused)
    assert _sysctl(host_netns, "net.ipv4.ip_forward") == "0"
    host_netns.do(ip.enable_forward, [IPConfig("10.0.0.2/24")])
    assert _sysctl(host_netns, "net.ipv4.ip_forward") == "1"
    assert _sysctl(host_netns, "net.ipv6.conf.all.forwarding") == "0"
    host_netns.do(ip.enable_forward, ["2001:db8::2/64"])
    assert _sysctl(host_netns, "net.ipv6.conf.all.forwarding") == "1"
    host_netns.do(ip.enable_ip4_forward, refused)  # already on: nothing to write, nothing to ask
    assert refused.host.asked == ["cni_sysctl_check:net.ipv4.ip_forward"]  # type: ignore[union-attr]


# -- configure_iface and the CHECK validators (privileged) ---------------------------------


def _result() -> Result:
    return Result("1.1.0", interfaces=[Interface("eth0", sandbox="/x")],
                  ips=[IPConfig("10.55.0.2/24", "10.55.0.1", 0), IPConfig("fd55::2/64", "fd55::1", 0)],
                  routes=[Route("10.56.0.0/16"), Route("fd56::/64"), Route("10.57.0.0/16", "10.55.0.9")])


def test_configure_iface_then_validate(host_netns, container_netns) -> None:
    container_netns.do(ip.setup_veth, "eth0", 0, "", host_netns)
    result = _result()
    container_netns.do(configure_iface, "eth0", result)
    link = _link(container_netns, "eth0")
    assert "UP" in link["flags"]
    addrs = json.loads(sh(container_netns, "ip", "-j", "addr", "show", "dev", "eth0"))[0]["addr_info"]
    assert {(a["local"], a["prefixlen"]) for a in addrs} >= {("10.55.0.2", 24), ("fd55::2", 64)}
    assert not any("tentative" in a for a in addrs)  # DAD settled before the routes
    routes = {r["dst"]: r.get("gateway") for r in _routes(container_netns) + _routes(container_netns, "-6")}
    assert routes["10.56.0.0/16"] == "10.55.0.1" and routes["fd56::/64"] == "fd55::1"
    assert routes["10.57.0.0/16"] == "10.55.0.9"
    container_netns.do(ip.validate_expected_interface_ips, "eth0", result.ips)
    container_netns.do(ip.validate_expected_route, result.routes)
    container_netns.do(ip.settle_addresses, "eth0", 1.0)
    # a route gone, then an address gone: CHECK says which, in the reference's words
    sh(container_netns, "ip", "route", "del", "10.57.0.0/16")
    with pytest.raises(CNIError, match=r"^Expected Route \{Dst:\{IP:10.57.0.0 Mask:ffff0000\} GW:10.55.0.9\} "
                                       r"not found in routing table$"):
        container_netns.do(ip.validate_expected_route, result.routes)
    sh(container_netns, "ip", "addr", "del", "fd55::2/64", "dev", "eth0")
    with pytest.raises(CNIError, match="Failed to match addr fd55::2/64 on interface eth0"):
        container_netns.do(ip.validate_expected_interface_ips, "eth0", result.ips)
    with pytest.raises(CNIError, match="Cannot find container link eth9"):
        container_netns.do(ip.validate_expected_interface_ips, "eth9", result.ips)


def test_configure_iface_refuses_a_wrong_interface_index(container_netns) -> None:
    result = Result("1.1.0", interfaces=[Interface("eth0")], ips=[IPConfig("10.0.0.2/24", interface=3)])
    with pytest.raises(CNIError, match="invalid interface index"):
        container_netns.do(configure_iface, "lo", result)


def test_netlink_handle_is_the_toolkits(container_netns) -> None:
    def up_lo() -> bool:
        with Netlink() as nl:
            nl.set_up(nl.link("lo"))
            return nl.link("lo").is_up

    assert container_netns.do(up_lo)


def test_route_get_names_the_outgoing_link(container_netns) -> None:
    def probe() -> tuple[str, str, int]:
        with Netlink() as nl:
            nl.add_veth("rg0", "rg1")
            nl.set_up(nl.link("rg0"))
            nl.add_address("rg0", "10.67.0.1/24")
            nl.add_address("rg0", "fd67::1/64", nodad=True)
            v4 = nl.link_by_index(nl.route_get("10.67.0.9").ifindex).name
            v6 = nl.link_by_index(nl.route_get("fd67::9").ifindex).name
            try:
                nl.route_get("192.0.2.1")
            except OSError as exc:
                return v4, v6, exc.errno
            return v4, v6, 0

    assert container_netns.do(probe) == ("rg0", "rg0", errno.ENETUNREACH)


# -- masquerade (privileged: iptables in the sandbox's host namespace) -----------------------


def test_masquerade_set_up_and_torn_down(host_netns) -> None:
    from cnicore.firewall.masquerade import IPTABLES, setup_ip_masq_for_networks, teardown_ip_masq_for_networks

    chain = utils.format_chain_name("toolnet", "ctr-1")
    host_netns.do(setup_ip_masq_for_networks, ["10.66.0.5/24"], "toolnet", "eth0", "ctr-1", IPTABLES)
    rules = sh(host_netns, "iptables", "-t", "nat", "-S")
    comment = utils.format_comment("toolnet", "ctr-1")
    assert f"-N {chain}" in rules
    assert f'-A POSTROUTING -s 10.66.0.5/32 -m comment --comment "{comment[:5]}' in rules.replace("\\", "")
    assert f"-A {chain} -d 10.66.0.0/24" in rules and "-j MASQUERADE" in rules
    host_netns.do(teardown_ip_masq_for_networks, None, "toolnet", "eth0", "ctr-1")
    assert chain not in sh(host_netns, "iptables", "-t", "nat", "-S")


def test_firewall_tools_batch_and_system_dirs(host_netns, tmp_path, monkeypatch) -> None:
    """A table read with iptables_save and changed with one iptables_restore; the tools
    come from TOOL_DIRS even when PATH names a planted one first."""
    from cnicore.firewall import tools

    planted = tmp_path / "iptables-restore"
    planted.write_text("#!/bin/sh\nexit 3\n")
    planted.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ.get('PATH', '')}")
    assert tools.find_tool("iptables-restore") == next(
        os.path.join(d, "iptables-restore") for d in tools.TOOL_DIRS
        if os.path.exists(os.path.join(d, "iptables-restore")))
    host_netns.do(tools.iptables_restore, '*nat\n:TOOLKIT-T - [0:0]\n-A TOOLKIT-T -m comment --comment "a \\"b\\"" '
                  "-j RETURN\nCOMMIT\n")
    saved = host_netns.do(tools.iptables_save, "nat")
    assert '-A TOOLKIT-T -m comment --comment "a \\"b\\"" -j RETURN' in saved
    assert "TOOLKIT-T" not in host_netns.do(tools.iptables_save, "nat", True)
    with pytest.raises(tools.FirewallError):
        host_netns.do(tools.iptables_restore, "*nat\n-A NO-SUCH-CHAIN -j RETURN\nCOMMIT\n")


def conntrack_entries(netns) -> list[str]:
    """The namespace's conntrack table (/proc/thread-self: the calling thread's namespace)."""
    def read() -> list[str]:
        with open("/proc/thread-self/net/nf_conntrack") as fh:
            return fh.read().splitlines()

    return netns.do(read)


def send_udp(netns, ip: str, port: int) -> None:
    import socket

    def send() -> None:
        with socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"x", (ip, port))

    netns.do(send)


def test_conntrack_entries_deleted_by_port_and_by_address(host_netns) -> None:
    import socket

    from cnicore import conntrack

    sh(host_netns, "ip", "link", "set", "lo", "up")
    for tool in ("iptables", "ip6tables"):  # conntrack runs in a namespace only once something uses it
        sh(host_netns, tool, "-A", "OUTPUT", "-m", "conntrack", "--ctstate", "NEW", "-j", "ACCEPT")
    for address in ("127.0.0.1", "::1"):
        for port in (5353, 5354):
            send_udp(host_netns, address, port)
    assert len([e for e in conntrack_entries(host_netns) if " udp " in e]) == 4
    assert host_netns.do(conntrack.delete_entries_for_dst_port, 5353, conntrack.PROTOCOL_UDP, socket.AF_INET) == 1
    assert host_netns.do(conntrack.delete_entries_for_dst_port, 5353, conntrack.PROTOCOL_TCP, socket.AF_INET6) == 0
    left = conntrack_entries(host_netns)
    assert not [e for e in left if e.startswith("ipv4") and "dport=5353 " in e]
    assert [e for e in left if e.startswith("ipv6") and "dport=5353 " in e]
    assert host_netns.do(conntrack.delete_entries_for_dst_ip, "::1", conntrack.PROTOCOL_UDP) == 2
    left = conntrack_entries(host_netns)
    assert len(left) == 1 and "dport=5354 " in left[0] and left[0].startswith("ipv4")


# -- IPAM delegation (privileged: host-local through its launcher, in-process) -------------------


def test_exec_add_check_del(cni_bin_dir, container_netns, tmp_path) -> None:
    config = {"cniVersion": "1.0.0", "name": "toolkit-ipam", "type": "toolkit-test",
              "ipam": {"type": "host-local", "subnet": "10.77.0.0/24", "dataDir": str(tmp_path)}}
    stdin = json.dumps(config).encode()

    def request(command: str) -> Request:
        env = {"CNI_COMMAND": command, "CNI_CONTAINERID": "ctr-ipam", "CNI_NETNS": container_netns.path,
               "CNI_IFNAME": "eth0", "CNI_PATH": cni_bin_dir, "PATH": os.environ.get("PATH", "")}
        return Request(command, container_id="ctr-ipam", netns=container_netns.path, ifname="eth0",
                       path=cni_bin_dir, stdin=stdin, config=config, cni_version="1.0.0", env=env)

    result = exec_add(request("ADD")).convert("1.1.0")
    assert [ipc.address for ipc in result.ips] == ["10.77.0.2/24"]
    assert os.path.exists(tmp_path / "toolkit-ipam" / "10.77.0.2")
    exec_check(request("CHECK"))
    exec_del(request("DEL"))
    assert not os.path.exists(tmp_path / "toolkit-ipam" / "10.77.0.2")


# -- traffic control (privileged) -------------------------------------------------------------


def test_tc_helpers_ifb_tbf_ingress_and_redirect(host_netns) -> None:
    from cnicore.netlink import TC_ACT_OK, TC_ACT_STOLEN, LinkExistsError

    def build() -> tuple[list, list, list]:
        with Netlink() as nl:
            nl.add_veth("tcv0", "tcv1")
            ifb = nl.add_link("tcifb0", "ifb", mtu=1400, txqlen=0, up=True)
            assert (ifb.kind, ifb.mtu, ifb.txqlen, ifb.is_up) == ("ifb", 1400, 0, True)
            with pytest.raises(LinkExistsError):
                nl.add_link("tcifb0", "ifb")
            nl.add_qdisc_tbf("tcv0", rate=1_000_000, limit=35_000, buffer=156_250)
            with pytest.raises(OSError) as info:
                nl.add_qdisc_tbf("tcv0", rate=1_000_000, limit=35_000, buffer=156_250)
            assert info.value.errno == errno.EEXIST
            nl.add_qdisc_tbf(ifb, rate=5 * 2**32, limit=1_000, buffer=1_000)  # RATE64
            nl.add_qdisc_ingress("tcv0")
            nl.add_redirect_filter("tcv0", ifb, controls=(TC_ACT_STOLEN, TC_ACT_OK))
            return nl.qdiscs("tcv0"), nl.qdiscs(ifb), nl.qdiscs()

    def delete() -> list:
        from cnicore.netlink import TC_H_INGRESS

        with Netlink() as nl:
            nl.delete_qdisc("tcv0", parent=TC_H_INGRESS, handle=0xFFFF0000)
            nl.delete_qdisc("tcv0")
            with pytest.raises(OSError):
                nl.delete_qdisc("tcv0")
            return nl.qdiscs("tcv0")

    veth, ifb, every = host_netns.do(build)
    assert [(q.kind, q.handle, q.rate, q.limit, q.buffer) for q in veth] == \
        [("tbf", 0x10000, 1_000_000, 35_000, 156_250), ("ingress", 0xFFFF0000, 0, 0, 0)]
    assert veth[1].parent == 0xFFFFFFF1
    assert [(q.kind, q.rate, q.limit, q.buffer) for q in ifb] == [("tbf", 5 * 2**32, 1_000, 1_000)]
    assert len(every) >= 3
    shown = sh(host_netns, "tc", "qdisc", "show", "dev", "tcv0")
    assert "tbf 1: root" in shown and "rate 8Mbit burst 10000b lat 25ms" in shown
    filters = sh(host_netns, "tc", "filter", "show", "dev", "tcv0", "ingress")
    assert "u32" in filters and "flowid 1:1" in filters and "match 00000000/00000000 at 0" in filters
    assert "mirred (Egress Redirect to device tcifb0) stolen" in filters
    assert "mirred (Egress Redirect to device tcifb0) pass" in filters
    assert [q.kind for q in host_netns.do(delete)] in ([], ["noqueue"])  # the filters went with the qdisc
    assert "u32" not in sh(host_netns, "tc", "filter", "show", "dev", "tcv0", "ingress")
