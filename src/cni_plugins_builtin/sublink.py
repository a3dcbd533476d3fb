"""What the macvlan, ipvlan and vlan plugins share: a link made on a parent ("master").

The three reference plugins (``plugins/main/{macvlan,ipvlan,vlan}``) differ only in
the kind of link and its settings; the steps are the same:

* the master: named by the config, else (macvlan, ipvlan) the interface of the
  first default route of the plugin's own namespace — or of the container's with
  ``linkInContainer`` — looked up there;
* the link is created under a temporary ``veth`` + 8 hex name (the reference's
  workaround for a kernel that checks the name in the master's namespace) straight
  into the container namespace, then renamed to CNI_IFNAME there; a failed rename
  deletes it;
* DEL deletes CNI_IFNAME in the container namespace; a namespace or link already
  gone is success.

Errors are the reference's texts, code 999. Imports: the public toolkit only.
"""

from __future__ import annotations

from cnicore.errors import ERR_INTERNAL, CNIError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

    from cnicore.netlink import Link, Netlink
    from cnicore.ns import NetNS
    from cnicore.request import Request
    from cnicore.types import DNS, Interface, Result

    #: make(nl, temporary_name, master_ifindex, container_netns_fd): create the link.
    Maker = Callable[[Netlink, str, int, "int | None"], None]

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).

#: Go's netlink.LinkNotFoundError text.
LINK_NOT_FOUND = "Link not found"


def fail(msg: str) -> CNIError:
    """The reference reports its own failures as plain errors: code 999."""
    return CNIError(ERR_INTERNAL, msg)


def open_netns(path: str) -> NetNS:
    """The container namespace, or the reference's error."""
    from cnicore.ns import open_container_netns

    return open_container_netns(path)


def in_place(netns_path: str, in_container: bool, fn: Callable[..., object], *args: object) -> object:
    """``fn(*args)`` in the plugin's own namespace, or with ``linkInContainer`` in the container's."""
    if not in_container:
        return fn(*args)
    netns = open_netns(netns_path)
    with netns:
        return netns.do(fn, *args)


def _default_route_interface() -> str:
    """The link of the first default route (IPv4 first, then IPv6, main table), as Go's
    ``RouteList(nil, FAMILY_ALL)`` walk finds it."""
    from cnicore.netlink import AF_INET, AF_INET6, Netlink

    with Netlink() as nl:
        for family in (AF_INET, AF_INET6):
            for route in nl.routes(family):
                if route.dst in ("0.0.0.0/0", "::/0"):
                    try:
                        return nl.link_by_index(route.ifindex).name
                    except LookupError:
                        raise fail(LINK_NOT_FOUND) from None
    raise fail("no default route interface found")


def default_master(netns_path: str, in_container: bool) -> str:
    """The master when the config names none: the default route's interface."""
    return str(in_place(netns_path, in_container, _default_route_interface))


def _mtu_of(name: str) -> int:
    from cnicore.ip import link_by_name

    try:
        return link_by_name(name).mtu
    except LookupError:
        raise fail(LINK_NOT_FOUND) from None


def check_mtu(mtu: int, master: str, netns_path: str, in_container: bool) -> None:
    """The master exists and ``mtu`` fits it (0: the kernel's choice)."""
    master_mtu = in_place(netns_path, in_container, _mtu_of, master)
    assert isinstance(master_mtu, int)
    if mtu < 0 or mtu > master_mtu:
        raise fail(f"invalid MTU {mtu}, must be [0, master MTU({master_mtu})]")


def _master_index(name: str) -> int:
    from cnicore.ip import link_by_name

    try:
        return link_by_name(name).index
    except LookupError:
        raise fail(f'failed to lookup master "{name}": {LINK_NOT_FOUND}') from None


def create(kind: str, make: Maker, master: str, in_container: bool, netns: NetNS, ifname: str) -> Interface:
    """Make the link on ``master`` under a temporary name in ``netns``, rename it to
    ``ifname`` there and return it as the result's interface."""
    from cnicore.ip import random_veth_name

    index = in_place(netns.path, in_container, _master_index, master)
    assert isinstance(index, int)
    tmp = random_veth_name()

    def add(netns_fd: int | None) -> None:
        from cnicore.netlink import Netlink
        from cnicore.utils import errno_text

        with Netlink() as nl:
            try:
                make(nl, tmp, index, netns_fd)
            except OSError as exc:
                raise fail(f"failed to create {kind}: {errno_text(exc)}") from None

    if in_container:
        netns.do(add, None)
    else:
        add(netns.fd())
    return netns.do(_rename, kind, tmp, ifname, netns.path)


def _rename(kind: str, tmp: str, ifname: str, sandbox: str) -> Interface:
    from cnicore.netlink import Netlink
    from cnicore.types import Interface
    from cnicore.utils import errno_text

    with Netlink() as nl:
        try:
            nl.set_link(tmp, name=ifname)
        except OSError as exc:
            try:
                nl.delete_link(tmp)
            except OSError:
                pass
            raise fail(f'failed to rename {kind} to "{ifname}": {errno_text(exc)}') from None
        try:
            link = nl.link(ifname)
        except LookupError:
            raise fail(f'failed to refetch {kind} "{ifname}": {LINK_NOT_FOUND}') from None
    return Interface(ifname, link.mac, sandbox)


def delete_link(ifname: str) -> None:
    """Delete the container's link (run in its namespace); gone already is fine."""
    from cnicore.netlink import Netlink

    with Netlink() as nl:
        try:
            nl.delete_link(ifname)
        except LookupError:
            pass


def remove(request: Request) -> None:
    """DEL's link part: nothing without a netns; a namespace already gone is success."""
    from cnicore.ns import NetNSError, NetNSNotFoundError, with_netns_path
    from cnicore.utils import errno_text

    if not request.netns:
        return
    try:
        with_netns_path(request.netns, delete_link, request.ifname)
    except NetNSNotFoundError:
        pass
    except NetNSError as exc:
        raise fail(f'failed to open netns "{request.netns}": {exc}') from None
    except OSError as exc:
        raise fail(errno_text(exc)) from None


def configure(netns: NetNS, request: Request, result: Result, *, notify: bool = True) -> None:
    """The IPAM result on the container's link (Go's ConfigureIface), after the
    ARP/NDISC notify sysctls macvlan and ipvlan set (best effort, as the reference)."""

    def work() -> None:
        from cnicore import sysctl
        from cnicore.ipam import configure_iface

        if notify:
            for key in ("net.ipv4.conf.IFNAME.arp_notify", "net.ipv6.conf.IFNAME.ndisc_notify"):
                sysctl.write(key, "1", ifname=request.ifname, request=request, best_effort=True)
        configure_iface(request.ifname, result, request)

    netns.do(work)


def ipam_result(request: Request) -> Result:
    """IPAM ADD as a current Result."""
    from cnicore import ipam
    from cnicore.types import Result as Current

    result = ipam.exec_add(request).convert("1.1.0")
    assert isinstance(result, Current)
    return result


def require_ips(result: Result) -> None:
    if not result.ips:
        raise fail("IPAM plugin returned missing IP config")


def conf_dns(dns: dict[str, Any]) -> DNS:
    """The config's ``dns``, which replaces the IPAM plugin's in the result, as the
    reference does (``result.DNS = n.DNS``, even when empty)."""
    from cnicore.types import DNS

    return DNS(dns.get("nameservers"), str(dns.get("domain") or ""), dns.get("search"), dns.get("options"))


# -- CHECK -------------------------------------------------------------------------

def check_master(master: str, netns: NetNS, in_container: bool) -> None:
    from cnicore.ip import link_by_name

    def look() -> None:
        try:
            link_by_name(master)
        except LookupError:
            raise fail(f'failed to lookup master "{master}": {LINK_NOT_FOUND}') from None

    if in_container:
        netns.do(look)
    else:
        look()


def check_addresses(request: Request) -> None:
    """The prevResult's addresses and routes are in the container (run in its namespace)."""
    from cnicore.ip import validate_expected_interface_ips, validate_expected_route

    result = request.prev_result
    assert result is not None
    validate_expected_interface_ips(request.ifname, result.ips)
    validate_expected_route(result.routes)


def container_link(nl: Netlink, name: str, sandbox: str, kind: str, prefix: str = "") -> Link:
    """CHECK's first steps, as the three reference plugins word them: the prevResult names
    a link of ``kind`` that exists in the container (``prefix``: vlan's ``"vlan: "``)."""
    if not name:
        raise fail(f"Container interface name missing in prevResult: {name}")
    try:
        link = nl.link(name)
    except LookupError:
        raise fail(f"{prefix}Container Interface name in prevResult: {name} not found") from None
    if not sandbox:
        raise fail(f"{prefix}Error: Container interface {name} should not be in host namespace")
    if link.kind != kind:
        raise fail(f"Error: Container interface {name} not of type {kind}")
    return link


def pass_to_ipam(ipam_type: str, request: Request) -> None:
    """STATUS and GC: handed to the configured IPAM plugin; nothing to do without one."""
    if ipam_type:
        from cnicore.ipam import exec_gc, exec_status

        (exec_status if request.command == "STATUS" else exec_gc)(request)
