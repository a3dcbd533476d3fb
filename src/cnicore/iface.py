"""Configuring and checking a container interface from a result, as the reference does.

Used by main plugins inside the container namespace (``NetNS.do``):
:func:`configure_iface` applies a result's addresses and routes to the
interface (``ipam.ConfigureIface`` in the reference); :func:`validate_ips`
and :func:`validate_routes` are CHECK's counterparts.
"""

from __future__ import annotations

import time

from cnicore.errors import ERR_INTERNAL, CNIError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnicore.request import Request
    from cnicore.rtnl import RtnlSocket
    from cnicore.types import Result

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).

DAD_SETTLE_TIMEOUT = 5.0
SETTLE_INTERVAL = 0.05


def _fail(msg: str) -> CNIError:
    return CNIError(ERR_INTERNAL, msg)


def _enable_ipv6(ifname: str, request: Request | None) -> None:
    from cnicore import sysctl

    for iface in ("lo", ifname):
        path = sysctl.key_to_path("net.ipv6.conf.IFNAME.disable_ipv6", iface)
        try:
            if sysctl.read(path) == "0":
                continue
        except OSError:
            continue
        sysctl.write("net.ipv6.conf.IFNAME.disable_ipv6", "0", ifname=iface, request=request)
    sysctl.write("net.ipv6.conf.IFNAME.keep_addr_on_down", "1", ifname=ifname, request=request)


def settle_addresses(rtnl: RtnlSocket, ifname: str, timeout: float = DAD_SETTLE_TIMEOUT) -> None:
    """Wait until no IPv6 address of ``ifname`` is tentative (DAD done)."""
    from cnicore.rtnl import AF_INET6, IFA_F_DADFAILED, IFA_F_TENTATIVE

    deadline = time.monotonic() + timeout
    while True:
        link = rtnl.link(ifname)
        pending = False
        for address, flags in rtnl.address_flags(link, AF_INET6):
            if flags & IFA_F_DADFAILED:
                raise _fail(f"link {ifname} has address {address.split('/')[0]} in DADFAILED state")
            if flags & IFA_F_TENTATIVE:
                pending = True
        if not pending:
            return
        if time.monotonic() > deadline:
            if link.is_up:
                raise _fail(f"link {ifname} still has tentative addresses after {timeout:g} seconds")
            return
        time.sleep(SETTLE_INTERVAL)


def configure_iface(ifname: str, result: Result, request: Request | None = None) -> None:
    """Add the result's addresses for ``ifname`` (those whose ``interface`` index
    names it), bring it up, wait for IPv6 DAD, add the routes (a route without
    ``gw`` uses the first gateway of its family)."""
    from cnicore.rtnl import RtnlSocket
    from cnicore.types import is_ipv4

    if not result.interfaces:
        raise _fail("no interfaces to configure")
    with RtnlSocket() as rtnl:
        try:
            link = rtnl.link(ifname)
        except LookupError as exc:
            raise _fail(f'failed to lookup "{ifname}": {exc}') from None
        gw4 = gw6 = ""
        ipv6_enabled = False
        for ipc in result.ips:
            if ipc.interface is None:
                continue
            if not 0 <= ipc.interface < len(result.interfaces) or result.interfaces[ipc.interface].name != ifname:
                raise _fail(f'failed to add IP addr {ipc.address} to "{ifname}": invalid interface index')
            v4 = is_ipv4(ipc.address)
            if not v4 and not ipv6_enabled:
                _enable_ipv6(ifname, request)
                ipv6_enabled = True
            try:
                rtnl.add_address(link, ipc.address)
            except OSError as exc:
                raise _fail(f'failed to add IP addr {ipc.address} to "{ifname}": {exc.strerror}') from None
            if ipc.gateway:
                if is_ipv4(ipc.gateway) and not gw4:
                    gw4 = ipc.gateway
                elif not is_ipv4(ipc.gateway) and not gw6:
                    gw6 = ipc.gateway
        try:
            rtnl.set_up(link, True)
        except OSError as exc:
            raise _fail(f'failed to set "{ifname}" UP: {exc.strerror}') from None
        if gw6:
            settle_addresses(rtnl, ifname)
        for route in result.routes:
            gw = route.gw or (gw4 if is_ipv4(route.dst) else gw6)
            try:
                rtnl.add_route(route.dst, gw=gw, link=link, table=route.table, scope=route.scope,
                               priority=route.priority, mtu=route.mtu, advmss=route.advmss)
            except OSError as exc:
                raise _fail(f"failed to add route '{route.dst} via {gw or '<nil>'} dev {ifname} "
                            f"metric {route.priority}': {exc.strerror}") from None


def validate_ips(ifname: str, result: Result) -> None:
    """CHECK: every result address is on ``ifname`` and its subnet is routed in the main table.

    Addresses and prefixes are compared as values, not as text (``fd00:0::2/64``
    is ``fd00::2/64``), as the reference compares ``net.IPNet``s.
    """
    import ipaddress

    from cnicore.rtnl import AF_INET, AF_INET6, RtnlSocket
    from cnicore.types import is_ipv4

    with RtnlSocket() as rtnl:
        for ipc in result.ips:
            try:
                link = rtnl.link(ifname)
            except LookupError:
                raise _fail(f"Cannot find container link {ifname}") from None
            family = AF_INET if is_ipv4(ipc.address) else AF_INET6
            wanted = ipaddress.ip_interface(ipc.address)
            if not any(ipaddress.ip_interface(a) == wanted for a in rtnl.addresses(link, family)):
                raise _fail(f"Failed to match addr {ipc.address} on interface {ifname}")
            if not any(ipaddress.ip_network(r.dst) == wanted.network for r in rtnl.routes(family)):
                raise _fail(f"Failed to find Gateway {ipc.gateway or '<nil>'} for interface {ifname}")


def validate_routes(result: Result) -> None:
    """CHECK: every result route is in its routing table (main unless it names one),
    matched by destination, and by gateway if it has one."""
    import ipaddress
    import json

    from cnicore.rtnl import AF_INET, AF_INET6, RT_TABLE_MAIN, RtnlSocket
    from cnicore.types import is_ipv4

    with RtnlSocket() as rtnl:
        for route in result.routes:
            family = AF_INET if is_ipv4(route.dst) else AF_INET6
            dst = ipaddress.ip_network(route.dst, strict=False)
            gw = ipaddress.ip_address(route.gw) if route.gw else None
            table = route.table if route.table else RT_TABLE_MAIN
            found = any(ipaddress.ip_network(r.dst) == dst
                        and (gw is None or (r.gw and ipaddress.ip_address(r.gw) == gw))
                        for r in rtnl.routes(family, table=table))
            if not found:
                shown = json.dumps(route.to_dict(), separators=(",", ":"))
                raise _fail(f"Expected Route {shown} not found in routing table")
