"""template-routes: a chained CNI plugin that adds extra routes to the container interface.

It runs after a plugin that created the interface named by CNI_IFNAME (for
example ``bridge`` with ``host-local`` IPAM) and reads its routes from the
config::

    {"type": "template-routes",
     "routes": [{"dst": "10.99.0.0/16", "gw": "10.10.0.1"},
                {"dst": "192.0.2.0/24"}]}

* ADD adds every route to the container's main routing table through
  CNI_IFNAME. A route without ``gw`` goes through the gateway that prevResult
  gives the interface's address of the same family; without one it is an
  on-link route. The routes (with the gateway used) are appended to
  prevResult, which is returned. ADD is all-or-nothing: if one route fails,
  the ones already added are removed again.
* CHECK verifies that every route is in prevResult and in the kernel, on
  CNI_IFNAME, with the same gateway.
* DEL removes the routes that are still there: every main-table route to a
  configured ``dst`` through CNI_IFNAME (via the configured ``gw``, when there
  is one), deleted with the attributes the kernel lists for it, so on-link
  routes go too. It succeeds when the namespace, the interface or the routes
  are already gone, and fails when a route it found cannot be removed.

This module is the model to copy: it imports only cnicore's public API
(``cnicore.plugin``, ``errors``, ``request``, ``types``, ``ns``) and pyroute2,
at the top, like any Python module. Served by the warm server (``cnitool
daemon``), all of it is imported once; a cold exec (no server) pays for
pyroute2's import (~0.3 s) on every call.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from cnicore.errors import ERR_INTERNAL, ERR_INVALID_NETWORK_CONFIG, CNIError
from cnicore.ns import NetNSNotFoundError, get_netns
from cnicore.plugin import PluginInfo, hookimpl, versions_from
from cnicore.request import Request
from cnicore.types import Result, Route

#: The CNI ``type`` this plugin is registered under (its entry-point name).
PLUGIN_TYPE = "template-routes"
#: prevResult first appeared in 0.3.0, so a chained plugin starts there.
SUPPORTED_VERSIONS = versions_from("0.3.0")
#: A promise to the warm server: this module keeps no per-request state in the process
#: (every netlink socket is opened and closed within its request), so a worker may serve
#: the next request after this one instead of forking a fresh one. Leave it out, or set
#: it False, if your plugin caches anything between calls.
WARM_REUSE = True


class RouteSpec:
    """One configured route: ``dst`` as a network CIDR, ``gw`` an address or ``""``."""

    __slots__ = ("dst", "gw", "family")

    def __init__(self, dst: str, gw: str, family: int) -> None:
        self.dst = dst
        self.gw = gw
        self.family = family  # 4 or 6

    def __repr__(self) -> str:
        return f"RouteSpec({self.dst!r}, gw={self.gw!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RouteSpec):
            return NotImplemented
        return (self.dst, self.gw) == (other.dst, other.gw)


def parse_routes(config: dict[str, Any]) -> list[RouteSpec]:
    """The ``routes`` of a decoded config, validated.

    ``dst`` is normalised to its network (``10.99.1.2/16`` becomes
    ``10.99.0.0/16``, as the kernel stores it); ``gw``, when given, must be of
    the same family. Raises :class:`CNIError` (code 7) for an invalid config.
    """
    import ipaddress

    raw = config.get("routes")
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _config_error("routes must be a list of {\"dst\", \"gw\"} objects")
    routes: list[RouteSpec] = []
    for number, item in enumerate(raw):
        where = f"routes[{number}]"
        if not isinstance(item, dict):
            raise _config_error(f"{where} must be an object")
        unknown = sorted(set(item) - {"dst", "gw"})
        if unknown:
            raise _config_error(f"{where}: unknown field {unknown[0]!r}")
        dst, gw = item.get("dst"), item.get("gw", "")
        if not isinstance(dst, str) or "/" not in dst:
            raise _config_error(f"{where}: dst must be a CIDR such as \"10.99.0.0/16\", got {dst!r}")
        try:
            network = ipaddress.ip_network(dst, strict=False)
        except ValueError:
            raise _config_error(f"{where}: invalid dst {dst!r}") from None
        if not isinstance(gw, str):
            raise _config_error(f"{where}: gw must be an IP address string, got {gw!r}")
        if gw:
            try:
                gateway = ipaddress.ip_address(gw)
            except ValueError:
                raise _config_error(f"{where}: invalid gw {gw!r}") from None
            if gateway.version != network.version:
                raise _config_error(f"{where}: gw {gw} is not of the same IP family as dst {dst}")
            gw = str(gateway)
        spec = RouteSpec(str(network), gw, network.version)
        if spec in routes:
            raise _config_error(f"{where}: route to {spec.dst} configured twice")
        routes.append(spec)
    return routes


def _config_error(msg: str) -> CNIError:
    return CNIError(ERR_INVALID_NETWORK_CONFIG, f"{PLUGIN_TYPE}: {msg}")


def _fail(msg: str) -> CNIError:
    return CNIError(ERR_INTERNAL, f"{PLUGIN_TYPE}: {msg}")


def _prev_result(request: Request) -> Result:
    """prevResult as the current (1.x) model; this plugin only runs chained."""
    prev = request.prev_result
    if prev is None:
        raise _config_error("must be chained after a plugin that creates the interface: prevResult missing")
    return prev


def _gateways(prev: Result, ifname: str) -> dict[int, str]:
    """``{4: gw, 6: gw}``: the first gateway prevResult gives an address on ``ifname``."""
    found: dict[int, str] = {}
    for ip in prev.ips:
        index = ip.interface
        if not ip.gateway or index is None or not 0 <= index < len(prev.interfaces):
            continue
        if prev.interfaces[index].name != ifname:
            continue
        found.setdefault(ipaddress.ip_address(ip.gateway).version, ip.gateway)
    return found


def resolve(routes: list[RouteSpec], prev: Result, ifname: str) -> list[RouteSpec]:
    """The routes with the gateway each one really uses (see the module docstring)."""
    gateways = _gateways(prev, ifname)
    return [r if r.gw else RouteSpec(r.dst, gateways.get(r.family, ""), r.family) for r in routes]


# -- the hooks -------------------------------------------------------------------


@hookimpl
def cni_plugin_info() -> PluginInfo:
    """The VERSION answer (kept cheap: launchers call it without pluggy)."""
    return PluginInfo(SUPPORTED_VERSIONS, about=f"CNI {PLUGIN_TYPE} plugin: extra routes on the container interface")


@hookimpl
def cni_add(request: Request) -> Result:
    """Add the routes in the container and append them to prevResult."""
    routes = parse_routes(request.config)
    prev = _prev_result(request)
    planned = resolve(routes, prev, request.ifname)
    with get_netns(request.netns) as netns, netns.iproute() as ipr:
        index = _link_index(ipr, request.ifname)
        added: list[RouteSpec] = []
        try:
            for route in planned:
                ipr.route("add", **_route_args(route, index))
                added.append(route)
        except NetlinkError as exc:
            for done in added:  # all-or-nothing: take back what this ADD added
                ipr.route("del", **_route_args(done, index))
            via = f" via {route.gw}" if route.gw else ""
            raise _fail(f"failed to add route {route.dst}{via} dev {request.ifname}: "
                        f"{os.strerror(exc.code)}") from None
    prev.routes.extend(Route(r.dst, r.gw) for r in planned)
    return prev


def _route_args(route: RouteSpec, index: int) -> dict[str, Any]:
    """pyroute2's arguments for one route through the interface ``index``."""
    args: dict[str, Any] = {"dst": route.dst, "oif": index}
    if route.gw:
        args["gateway"] = route.gw
    else:
        args["scope"] = "link"  # on-link, as `ip route add DST dev IF` makes it
    return args


def _link_index(ipr: IPRoute, ifname: str) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise _fail(f"interface {ifname!r} not found in the container")
    return int(found[0])


def _kernel_routes(ipr: IPRoute, index: int) -> set[tuple[str, str]]:
    """``(dst, gw)`` of the main-table routes through interface ``index``."""
    present = set()
    for family in (socket.AF_INET, socket.AF_INET6):
        for msg in ipr.get_routes(family=family, table=254):
            if msg.get_attr("RTA_OIF") != index or msg.get_attr("RTA_DST") is None:
                continue
            dst = str(ipaddress.ip_network(f"{msg.get_attr('RTA_DST')}/{msg['dst_len']}"))
            present.add((dst, msg.get_attr("RTA_GATEWAY") or ""))
    return present


@hookimpl
def cni_check(request: Request) -> None:
    """Every route must be in prevResult and in the container, as configured."""
    routes = parse_routes(request.config)
    prev = _prev_result(request)
    planned = resolve(routes, prev, request.ifname)
    reported = {(r.dst, r.gw) for r in prev.routes}
    for route in planned:
        if (route.dst, route.gw) not in reported:
            raise _fail(f"route to {route.dst} is missing from prevResult")
    with get_netns(request.netns) as netns, netns.iproute() as ipr:
        present = _kernel_routes(ipr, _link_index(ipr, request.ifname))
    for route in planned:
        if (route.dst, route.gw) not in present:
            via = f" via {route.gw}" if route.gw else ""
            raise _fail(f"route {route.dst}{via} dev {request.ifname} is missing in the container")


@hookimpl
def cni_del(request: Request) -> None:
    """Remove the routes; everything already gone is fine (DEL is idempotent)."""
    routes = parse_routes(request.config)
    if not request.netns or not routes:
        return
    try:
        netns = get_netns(request.netns)
    except NetNSNotFoundError:
        return
    with netns, netns.iproute() as ipr:
        found = ipr.link_lookup(ifname=request.ifname)
        if not found:
            return  # the interface is gone and its routes with it
        for route in routes:
            for msg in _routes_to(ipr, route, int(found[0])):
                _delete_route(ipr, msg, route, request.ifname)


def _routes_to(ipr: IPRoute, route: RouteSpec, index: int) -> list[Any]:
    """The main-table routes to ``route.dst`` through interface ``index`` (via ``route.gw`` when the
    config names one: a route via another gateway is not ours), as the kernel lists them."""
    network = ipaddress.ip_network(route.dst)
    family = socket.AF_INET6 if network.version == 6 else socket.AF_INET
    gateway = ipaddress.ip_address(route.gw) if route.gw else None
    matches = []
    for msg in ipr.get_routes(family=family, table=254):
        dst = msg.get_attr("RTA_DST")
        if dst is None or msg.get_attr("RTA_OIF") != index or msg.get_attr("RTA_TABLE", 254) != 254:
            continue
        if ipaddress.ip_network(f"{dst}/{msg['dst_len']}") != network:
            continue
        via = msg.get_attr("RTA_GATEWAY")
        if gateway is not None and (via is None or ipaddress.ip_address(via) != gateway):
            continue
        matches.append(msg)
    return matches


def _delete_route(ipr: IPRoute, msg: Any, route: RouteSpec, ifname: str) -> None:
    """Delete one listed route, described as the kernel listed it.

    The kernel deletes only a route whose scope, metric and gateway match the request's: a
    request at pyroute2's default scope (universe) never matches an on-link route (scope link),
    and the "no such route" it gets back is the same error as for a route that is gone. So the
    request carries the route's own attributes, and "no such route" counts as gone only if the
    route is then really no longer listed.
    """
    args: dict[str, Any] = {"dst": route.dst, "oif": msg.get_attr("RTA_OIF"), "table": 254,
                            "scope": msg["scope"], "proto": msg["proto"], "type": msg["type"],
                            "tos": msg["tos"]}
    for attr, key in (("RTA_GATEWAY", "gateway"), ("RTA_PRIORITY", "priority")):
        value = msg.get_attr(attr)
        if value is not None:
            args[key] = value
    try:
        ipr.route("del", **args)
    except NetlinkError as exc:
        if exc.code == errno.ESRCH and not _routes_to(ipr, RouteSpec(route.dst, msg.get_attr("RTA_GATEWAY") or "",
                                                                    route.family), args["oif"]):
            return  # removed meanwhile: gone is what DEL wants
        raise _fail(f"failed to remove route {route.dst} dev {ifname}: {os.strerror(exc.code)}") from None
