"""Source-based routing inside the container namespace, as the reference sets it up.

Every function here runs in the calling thread's namespace (the plugin calls them
through ``with_netns_path``). Errors are the reference's texts, code 999.

Table numbering, as the reference: the first table from 100 that no existing rule
(of either family) looks up, then for each further address the next one after
it that no rule existing before this ADD looks up. (The reference also skips
tables with routes, but its route list only holds main-table routes, so in
effect only rules count.)
"""

from __future__ import annotations

import ipaddress

from cnicore.errors import ERR_INTERNAL, CNIError
from cnicore.ip import canonical, parse_ip
from cnicore.netlink import AF_INET, AF_INET6, RT_SCOPE_LINK, RT_TABLE_MAIN, LinkNotFoundError, Netlink, Route
from cnicore.utils import errno_text

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

    from cnicore.types import IPConfig

FIRST_TABLE = 100

Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _fail(text: str) -> CNIError:
    return CNIError(ERR_INTERNAL, text)


def _free_table(used: set[int], candidate: int) -> int:
    while candidate in used:
        candidate += 1
    return candidate


def _host_cidr(ip: Address) -> str:
    return f"{ip}/{ip.max_prefixlen}"


def _contains(network: Interface, text: str) -> bool:
    if not text:
        return False
    ip = ipaddress.ip_address(text)
    return ip.version == network.version and ip in network.network


def static_gateways(gateways: Iterable[str]) -> dict[int, str]:
    """``gateways`` by IP version (at most one of each), or the reference's error."""
    gateways = list(gateways)
    if len(gateways) > 2:
        raise _fail("gateways list cannot contain more than 2 entries (one IPv4, one IPv6)")
    out: dict[int, str] = {}
    for text in gateways:
        ip = parse_ip(text)  # Go's net.ParseIP: an IPv4-mapped address is IPv4
        if ip is None:
            raise _fail(f"invalid static gateway IP address: {text}")
        gateway = canonical(ip)
        if gateway.version in out:
            raise _fail(f"gateways list contains multiple IPv{gateway.version} addresses: "
                        f"{out[gateway.version]} and {text}")
        out[gateway.version] = str(gateway)
    return out


def link_routes(nl: Netlink, index: int) -> list[Route]:
    """The link's main-table routes, both families (Go's ``RouteList(link, FAMILY_ALL)``)."""
    return [r for family in (AF_INET, AF_INET6) for r in nl.routes(family) if r.ifindex == index]


def do_routes(ips: list[IPConfig], ifname: str, gateways: list[str], add_source_hints: bool) -> None:
    """A table per address: a ``from <ip> lookup <table>`` rule, a default route to
    the gateway, and the link's routes of that address's subnet moved there."""
    with Netlink() as nl:
        used = {rule.table for rule in nl.rules()}
        table = _free_table(used, FIRST_TABLE)
        try:
            link = nl.link(ifname)
        except LinkNotFoundError:
            raise _fail(f"Cannot find network interface {ifname}: Link not found") from None
        routes = link_routes(nl, link.index)
        static = static_gateways(gateways)
        for ipc in ips:
            iface: Interface = ipaddress.ip_interface(ipc.address)
            try:
                nl.add_rule(src=_host_cidr(iface.ip), table=table)
            except OSError as exc:
                raise _fail(f"Failed to add rule: {errno_text(exc)}") from None
            gateway = static.get(iface.version) or ipc.gateway
            if gateway:
                default = "0.0.0.0/0" if iface.version == 4 else "::/0"
                try:
                    nl.add_route(default, gw=gateway, link=link.index, table=table)
                except OSError as exc:
                    raise _fail(f"Failed to add default route to {gateway}: {errno_text(exc)}") from None
            for route in routes:
                if _contains(iface, route.src) or _contains(iface, route.gw) or (not route.src and not route.gw):
                    try:
                        nl.put_route(route, table=table)
                    except OSError as exc:
                        raise _fail(f"Failed to readd route: {errno_text(exc)}") from None
            table = _free_table(used, table + 1)
        if add_source_hints:
            _add_source_hints(nl, ips, link.index, routes)
            return
        # Deleted only now: several addresses of one subnet all need the subnet route above.
        for route in routes:
            try:
                nl.del_route(route.dst, gw=route.gw, link=route.ifindex, table=route.table, priority=route.priority)
            except OSError as exc:
                raise _fail(f"Failed to delete route: {errno_text(exc)}") from None


def _add_source_hints(nl: Netlink, ips: list[IPConfig], index: int, routes: list[Route]) -> None:
    """Keep each subnet route in the main table with the address as its source hint, and
    drop the link's other main-table routes (best effort, as the reference: warnings only)."""
    for ipc in ips:
        iface: Interface = ipaddress.ip_interface(ipc.address)
        try:
            nl.add_route(str(iface.network), link=index, table=RT_TABLE_MAIN, scope=RT_SCOPE_LINK,
                         src=str(iface.ip), replace=True)
        except OSError:
            pass
    for route in routes:
        if route.scope != RT_SCOPE_LINK:
            try:
                nl.del_route(route.dst, gw=route.gw, link=route.ifindex, table=route.table,
                             priority=route.priority)
            except OSError:
                pass


def do_routes_with_table(ips: list[IPConfig], table: int) -> None:
    """``table`` given: only the ``from <ip> lookup <table>`` rules (the routes are the user's)."""
    with Netlink() as nl:
        for ipc in ips:
            ip = ipaddress.ip_interface(ipc.address).ip
            try:
                nl.add_rule(src=_host_cidr(ip), table=table)
            except OSError as exc:
                raise _fail(f"failed to add rule: {errno_text(exc)}") from None


def tidy_rules(ifname: str, table: int | None) -> None:
    """DEL: remove the rules whose source is one of the link's addresses (of ``table``
    only, when given); keep going on errors and report the last, as the reference."""
    with Netlink() as nl:
        rules = nl.rules()
        if table is not None:
            rules = [rule for rule in rules if rule.table == table]
        try:
            link = nl.link(ifname)
        except LinkNotFoundError:
            return
        addresses = {ipaddress.ip_interface(a).ip for family in (AF_INET, AF_INET6)
                     for a in nl.addresses(link, family)}
        failure = ""
        for rule in rules:
            if rule.src and ipaddress.ip_interface(rule.src).ip in addresses:
                try:
                    nl.del_rule(rule)
                except OSError as exc:
                    failure = f"Failed to delete rule {errno_text(exc)}"
        if failure:
            raise _fail(failure)
