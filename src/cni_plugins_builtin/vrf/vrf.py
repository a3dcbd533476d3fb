"""The VRF device and moving an interface into it (the reference's ``vrf.go``).

Runs in the container's namespace. Enslaving a link to a VRF makes the kernel
move its connected routes into the VRF's table, drop its other routes from the
main table and (with the link cycled down and up) forget its global IPv6
addresses; so the global routes through the link are read before, IPv6 addresses
put back after, and the routes replaced into the VRF's table.
"""

from __future__ import annotations

import ipaddress
import time

from cnicore.errors import ERR_INTERNAL, CNIError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnicore.netlink import Link, Netlink, Route

#: How long to wait for the kernel's local route of a restored IPv6 address: 10 ms
#: doubled up to 8 times, as the reference does (~5 s in all).
BACKOFF_BASE = 0.010
MAX_RETRIES = 8


def _why(exc: OSError) -> str:
    """An OS error as Go prints a syscall error ("file exists")."""
    from cnicore.utils import errno_text

    return errno_text(exc)


def fail(msg: str) -> CNIError:
    return CNIError(ERR_INTERNAL, msg)


def find_vrf(nl: Netlink, name: str) -> tuple[Link, int]:
    """The VRF ``name`` and its table; LinkNotFoundError if there is no such link,
    CNIError if it is something else."""
    link = nl.link(name)
    if link.kind != "vrf":
        raise fail(f"Netlink {name} is not a VRF")
    return link, nl.vrf_table(link)


def create_vrf(nl: Netlink, name: str, table: int) -> tuple[Link, int]:
    """A new VRF, up, on ``table`` (0: the lowest table no VRF here uses, from 1)."""
    if not table:
        taken = {nl.vrf_table(link) for link in nl.links() if link.kind == "vrf"}
        table = next(t for t in range(1, 2**32) if t not in taken)
    try:
        link = nl.add_vrf(name, table)
    except OSError as exc:
        raise fail(f"could not add VRF {name}: {_why(exc)}") from None
    try:
        nl.set_up(link)
    except OSError as exc:
        raise fail(f"could not set link up for VRF {name}: {_why(exc)}") from None
    return link, table


def assigned_interfaces(nl: Netlink, vrf: Link) -> list[Link]:
    return [link for link in nl.links() if link.master == vrf.index]


def _global_ipv6(nl: Netlink, link: Link) -> list[str]:
    from cnicore.netlink import AF_INET6

    return [cidr for cidr in nl.addresses(link, AF_INET6)
            if not ipaddress.ip_interface(cidr).ip.is_link_local]


def _global_routes(nl: Netlink, link: Link) -> list[Route]:
    """The main table's routes out of ``link`` with universe scope (no connected, no local ones)."""
    from cnicore.netlink import AF_INET, AF_INET6, RT_SCOPE_UNIVERSE, RT_TABLE_MAIN

    return [route for family in (AF_INET, AF_INET6) for route in nl.routes(family, table=RT_TABLE_MAIN)
            if route.ifindex == link.index and route.scope == RT_SCOPE_UNIVERSE]


def add_interface(nl: Netlink, vrf: Link, table: int, ifname: str) -> None:
    """Enslave ``ifname`` to the VRF, keeping its IPv6 addresses and moving its routes."""
    try:
        link = nl.link(ifname)
    except LookupError:
        raise fail(f"could not get link by name {ifname}") from None
    if link.master:
        try:
            master = nl.link_by_index(link.master).name
        except LookupError as exc:
            raise fail(f"interface {ifname} has already a master set, could not retrieve the name: {exc}") from None
        raise fail(f"interface {ifname} has already a master set: {master}")
    before = _global_ipv6(nl, link)
    routes = _global_routes(nl, link)
    try:
        nl.set_link(link, master=vrf)
    except OSError as exc:
        raise fail(f"could not set vrf {vrf.name} as master of {ifname}: {_why(exc)}") from None
    after = set(_global_ipv6(nl, link))
    for cidr in before:
        if cidr in after:
            continue
        try:
            nl.add_address(link, cidr)
        except OSError as exc:
            raise fail(f"could not restore address {cidr} to {ifname} @ {vrf.name}: {_why(exc)}") from None
        _wait_for_local_route(nl, link, table, cidr)
    for route in routes:
        try:
            nl.add_route(route.dst, gw=route.gw, link=link, table=table, scope=route.scope,
                         priority=route.priority, mtu=route.mtu, advmss=route.advmss, src=route.src, replace=True)
        except OSError as exc:
            raise fail(f"could not add route '{route.dst} via {route.gw or '<nil>'} table {table}': "
                       f"{_why(exc)}") from None


def _wait_for_local_route(nl: Netlink, link: Link, table: int, cidr: str) -> None:
    """The kernel adds a restored address's host route to the VRF's table shortly after."""
    from cnicore.netlink import AF_INET6

    host = f"{ipaddress.ip_interface(cidr).ip}/128"
    for retry in range(MAX_RETRIES + 1):
        if any(r.dst == host and r.ifindex == link.index for r in nl.routes(AF_INET6, table=table)):
            return
        if retry == MAX_RETRIES:
            break
        time.sleep(BACKOFF_BASE * (1 << retry))
    raise fail(f"failed getting local/host addresses for {link.name} in table {table} with dst {cidr}")


def reset_master(nl: Netlink, ifname: str) -> None:
    try:
        link = nl.link(ifname)
    except LookupError:
        raise fail(f"resetMaster: could not get link by name {ifname}") from None
    try:
        nl.set_link(link, master=0)
    except OSError:
        raise fail(f"resetMaster: could reset master to {ifname}") from None
