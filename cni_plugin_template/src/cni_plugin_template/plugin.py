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
* DEL removes the routes that are still there. It succeeds when the
  namespace, the interface or the routes are already gone.

Import discipline: every exec pays for its imports, so this module imports
only what VERSION needs at the top; the netlink client (:mod:`cnicore.rtnl`,
standard library only), namespaces and result types are imported inside the
hooks that use them.
"""

from __future__ import annotations

from cnicore.errors import ERR_INTERNAL, ERR_INVALID_NETWORK_CONFIG, CNIError
from cnicore.plugin import PluginInfo, hookimpl, versions_from

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from cnicore.request import Request
    from cnicore.rtnl import Link, RtnlSocket
    from cnicore.types import Result

#: The CNI ``type`` this plugin is registered under (its entry-point name).
PLUGIN_TYPE = "template-routes"
#: prevResult first appeared in 0.3.0, so a chained plugin starts there.
SUPPORTED_VERSIONS = versions_from("0.3.0")


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
    import ipaddress

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
    from cnicore.ns import with_netns_path
    from cnicore.types import Route

    routes = parse_routes(request.config)
    prev = _prev_result(request)
    planned = resolve(routes, prev, request.ifname)
    with_netns_path(request.netns, _add_routes, request.ifname, planned)
    prev.routes.extend(Route(r.dst, r.gw) for r in planned)
    return prev


def _add_routes(ifname: str, routes: list[RouteSpec]) -> None:
    """Inside the container: add every route, removing them all again if one fails."""
    from cnicore.rollback import Rollback
    from cnicore.rtnl import RtnlSocket

    with RtnlSocket() as rtnl, Rollback() as undo:
        link = _link(rtnl, ifname)
        for route in routes:
            try:
                rtnl.add_route(route.dst, gw=route.gw, link=link.index)
            except OSError as exc:
                via = f" via {route.gw}" if route.gw else ""
                raise _fail(f"failed to add route {route.dst}{via} dev {ifname}: {exc.strerror or exc}") from None
            undo.push(f"route {route.dst}", _del_route, rtnl, route.dst, link.index)
        undo.commit()


def _del_route(rtnl: RtnlSocket, dst: str, index: int) -> None:
    rtnl.del_route(dst, link=index)


def _link(rtnl: RtnlSocket, ifname: str) -> Link:
    try:
        return rtnl.link(ifname)
    except LookupError:
        raise _fail(f"interface {ifname!r} not found in the container") from None


@hookimpl
def cni_check(request: Request) -> None:
    """Every route must be in prevResult and in the container, as configured."""
    from cnicore.ns import with_netns_path

    routes = parse_routes(request.config)
    prev = _prev_result(request)
    planned = resolve(routes, prev, request.ifname)
    reported = {(r.dst, r.gw) for r in prev.routes}
    for route in planned:
        if (route.dst, route.gw) not in reported:
            raise _fail(f"route to {route.dst} is missing from prevResult")
    with_netns_path(request.netns, _check_routes, request.ifname, planned)


def _check_routes(ifname: str, routes: list[RouteSpec]) -> None:
    from cnicore.rtnl import AF_INET, AF_INET6, RtnlSocket

    with RtnlSocket() as rtnl:
        link = _link(rtnl, ifname)
        present = {(r.dst, r.gw) for family in (AF_INET, AF_INET6) for r in rtnl.routes(family)
                   if r.ifindex == link.index}
    for route in routes:
        if (route.dst, route.gw) not in present:
            via = f" via {route.gw}" if route.gw else ""
            raise _fail(f"route {route.dst}{via} dev {ifname} is missing in the container")


@hookimpl
def cni_del(request: Request) -> None:
    """Remove the routes; everything already gone is fine (DEL is idempotent)."""
    from cnicore.ns import NetNSNotFoundError, with_netns_path

    routes = parse_routes(request.config)
    if not request.netns or not routes:
        return
    try:
        with_netns_path(request.netns, _del_routes, request.ifname, routes)
    except NetNSNotFoundError:
        return


def _del_routes(ifname: str, routes: list[RouteSpec]) -> None:
    import errno

    from cnicore.rtnl import RtnlSocket

    with RtnlSocket() as rtnl:
        try:
            index = rtnl.link(ifname).index
        except LookupError:
            return  # the interface is gone and its routes with it
        for route in routes:
            try:
                rtnl.del_route(route.dst, link=index)
            except OSError as exc:
                if exc.errno != errno.ESRCH:
                    raise _fail(f"failed to remove route {route.dst} dev {ifname}: {exc.strerror or exc}") \
                        from None
