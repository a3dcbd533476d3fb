"""Links, addresses, routes and forwarding (public toolkit): Go's ``pkg/ip`` for Python plugins.

What a main plugin is made of, on cnicore's own netlink client
(:mod:`cnicore.netlink`, no pyroute2), with the reference's behaviour and
error texts:

* **veth pairs** — :func:`setup_veth` (Go's ``SetupVeth`` /
  ``SetupVethWithName``): called in the container namespace, it creates the
  pair with the host end (random or given name) straight in ``host_ns`` and
  brings it up; :func:`random_veth_name`; :func:`get_veth_peer_ifindex`;
* **deleting links** — :func:`del_link_by_name`, and
  :func:`del_link_by_name_addr` which also returns the link's global unicast
  addresses (for masquerade teardown);
* **routes** — :func:`add_route`, :func:`add_host_route`,
  :func:`add_default_route`, :func:`del_route` (a delete matches on-link
  routes too: scope is a wildcard, as with ``ip route del``);
* **addresses** — :func:`settle_addresses` (wait for IPv6 DAD),
  :func:`is_global_unicast`; configuring an interface from a result is
  :func:`cnicore.ipam.configure_iface`;
* **forwarding** — :func:`enable_ip4_forward`, :func:`enable_ip6_forward`,
  :func:`enable_forward`, written through :mod:`cnicore.sysctl`, so the
  admin's ``--policy`` sees them;
* **CHECK** — :func:`validate_expected_interface_ips`,
  :func:`validate_expected_route`;
* **Go's address parsing** (``net.ParseIP``, ``net.ParseCIDR``,
  ``net.ParseMAC``): :func:`parse_ip`, :func:`parse_cidr`,
  :func:`parse_ip_or_cidr`, :func:`canonical`, :class:`CIDR`,
  :func:`parse_mac`, :func:`mac_string`, :func:`ethernet_mac` — what a config
  must be read with to accept and refuse exactly what the reference does.

Everything runs in the namespace of the calling thread (use ``NetNS.do`` for
the container's). Failures a plugin reports as they are raise
:class:`~cnicore.errors.CNIError` (code 999, the reference's text); a missing
link raises :class:`~cnicore.netlink.LinkNotFoundError`, so DEL can ignore it;
route functions raise the kernel's ``OSError`` (``EEXIST``, ``ESRCH``) for the
caller to judge.
"""

from __future__ import annotations

import os

from cnicore.errors import ERR_INTERNAL, CNIError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
    from typing import Iterable, Union

    from cnicore._go.ip import CIDR, IPAddress, IPNetwork, canonical, parse_cidr, parse_ip, parse_ip_or_cidr
    from cnicore._go.mac import ethernet_mac, mac_string, parse_mac
    from cnicore.netlink import Link, Netlink
    from cnicore.ns import NetNS
    from cnicore.request import Request
    from cnicore.types import Interface, IPConfig, Route

    LinkRef = Union[Link, int, str]

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).

__all__ = [
    "CIDR",
    "DAD_SETTLE_TIMEOUT",
    "IPAddress",
    "IPNetwork",
    "add_default_route",
    "add_host_route",
    "add_route",
    "canonical",
    "del_link_by_name",
    "del_link_by_name_addr",
    "del_route",
    "enable_forward",
    "enable_ip4_forward",
    "enable_ip6_forward",
    "ethernet_mac",
    "get_veth_peer_ifindex",
    "is_global_unicast",
    "link_by_name",
    "mac_string",
    "parse_cidr",
    "parse_ip",
    "parse_ip_or_cidr",
    "parse_mac",
    "prev_result_interface",
    "random_veth_name",
    "settle_addresses",
    "setup_veth",
    "validate_expected_interface_ips",
    "validate_expected_route",
]

#: Where Go's parsing helpers live; loaded on first use (``ipaddress`` costs a cold exec ~3 ms).
_LAZY = {name: "cnicore._go.ip" for name in ("CIDR", "canonical", "parse_cidr", "parse_ip", "parse_ip_or_cidr")}
_LAZY.update({name: "cnicore._go.mac" for name in ("ethernet_mac", "mac_string", "parse_mac")})

#: Seconds :func:`settle_addresses` waits for IPv6 duplicate address detection.
DAD_SETTLE_TIMEOUT = 5.0
_SETTLE_INTERVAL = 0.05


def __getattr__(name: str) -> object:
    if name in ("IPAddress", "IPNetwork"):
        # Type aliases for annotations; at run time the classes, for isinstance().
        import ipaddress

        kind = "Address" if name == "IPAddress" else "Network"
        value: object = (getattr(ipaddress, f"IPv4{kind}"), getattr(ipaddress, f"IPv6{kind}"))
        globals()[name] = value
        return value
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(__import__(module, fromlist=[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def _fail(msg: str) -> CNIError:
    return CNIError(ERR_INTERNAL, msg)


# -- links -------------------------------------------------------------------------


def random_veth_name() -> str:
    """``veth`` + 8 random hex digits, as Go's ``RandomVethName``."""
    return "veth" + os.urandom(4).hex()


def setup_veth(contveth_name: str, mtu: int, container_mac: str, host_ns: NetNS,
               host_veth_name: str = "") -> tuple[Link, Link]:
    """Create a veth pair: ``contveth_name`` here (the container namespace, the
    calling thread's), its peer in ``host_ns``, named ``host_veth_name`` or a random
    :func:`random_veth_name` (retried on a collision), and bring the host end up.

    ``mtu`` (0: the kernel's default) applies to both ends, ``container_mac``
    ("": random) to the container end. The container end stays down
    (:func:`cnicore.ipam.configure_iface` brings it up). Returns
    ``(host link, container link)``; on failure nothing is left. Go's
    ``SetupVeth``/``SetupVethWithName``.
    """
    from cnicore.netlink import LinkExistsError, Netlink

    with Netlink() as rtnl:
        for _ in range(10):
            peer = host_veth_name or random_veth_name()
            try:
                rtnl.add_veth(contveth_name, peer, mtu=mtu, mac=container_mac, peer_netns_fd=host_ns.fd())
            except LinkExistsError:
                if not host_veth_name:
                    try:
                        rtnl.link(contveth_name)
                    except LookupError:
                        continue  # the random host name collided: try another
                raise _fail(f'container veth name ("{contveth_name}") peer provided ("{peer}") '
                            "already exists") from None
            except OSError as exc:
                raise _fail(f"failed to make veth pair: {exc.strerror}") from None
            except ValueError as exc:  # an unparsable MAC
                raise _fail(f"failed to make veth pair: {exc}") from None
            container = rtnl.link(contveth_name)
            break
        else:
            raise _fail("failed to find a unique veth name")
        try:
            host = host_ns.do(_host_end_up, peer)
        except BaseException:
            # All or nothing: the pair goes again (deleting this end takes the peer along).
            try:
                rtnl.delete_link(container)
            except OSError:
                pass
            raise
    return host, container


def _host_end_up(name: str) -> Link:
    from cnicore.netlink import Netlink

    with Netlink() as rtnl:
        try:
            link = rtnl.link(name)
            rtnl.set_up(link, True)
        except LookupError as exc:
            raise _fail(f'failed to lookup "{name}": {exc}') from None
        except OSError as exc:
            raise _fail(f'failed to set "{name}" up: {exc.strerror}') from None
        return rtnl.link(name)


def link_by_name(name: str) -> Link:
    """The link ``name`` (a snapshot); :class:`~cnicore.netlink.LinkNotFoundError` if absent."""
    from cnicore.netlink import Netlink

    with Netlink() as rtnl:
        return rtnl.link(name)


def get_veth_peer_ifindex(ifname: str) -> tuple[Link, int]:
    """``(link, peer's ifindex)`` of veth ``ifname`` (the peer's index is in the peer's
    namespace). Go's ``GetVethPeerIfindex``."""
    link = link_by_name(ifname)
    if link.kind != "veth":
        raise _fail(f'interface "{ifname}" was not a veth interface')
    if not link.link:
        raise _fail(f'unable to determine peer index of "{ifname}"')
    return link, link.link


def del_link_by_name(ifname: str) -> None:
    """Delete link ``ifname`` (a veth takes its peer along). Go's ``DelLinkByName``:
    :class:`~cnicore.netlink.LinkNotFoundError` if it does not exist."""
    _delete(ifname, False)


def del_link_by_name_addr(ifname: str) -> list[str]:
    """Delete link ``ifname`` and return its global unicast addresses (``ip/prefix``,
    IPv4 first), e.g. to tear down masquerade rules. Go's ``DelLinkByNameAddr``:
    :class:`~cnicore.netlink.LinkNotFoundError` if it does not exist."""
    return _delete(ifname, True)


def _delete(ifname: str, with_addresses: bool) -> list[str]:
    from cnicore.netlink import AF_INET, AF_INET6, Netlink

    with Netlink() as rtnl:
        link = rtnl.link(ifname)
        addrs = rtnl.addresses(link, AF_INET) + rtnl.addresses(link, AF_INET6) if with_addresses else []
        try:
            rtnl.delete_link(link)
        except LookupError:
            raise
        except OSError as exc:
            raise _fail(f'failed to delete "{ifname}": {exc.strerror}') from None
    return [a for a in addrs if is_global_unicast(a)]


def is_global_unicast(address: str) -> bool:
    """Go's ``IP.IsGlobalUnicast`` for ``ip`` or ``ip/prefix``: not loopback,
    link-local, multicast, unspecified or the IPv4 broadcast."""
    import ipaddress

    ip = ipaddress.ip_interface(address).ip
    return not (ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified
                or str(ip) == "255.255.255.255")


# -- routes ------------------------------------------------------------------------


def add_route(dst: str, gw: str = "", dev: LinkRef | None = None, *, scope: int | None = None,
              table: int | None = None, priority: int = 0, mtu: int = 0, advmss: int = 0, src: str = "",
              replace: bool = False) -> None:
    """Add a route to CIDR ``dst`` via ``gw`` and/or out of ``dev`` (a name, ifindex or
    :class:`~cnicore.netlink.Link`). Without ``scope``, a direct IPv4 route (a device, no
    gateway) is link scope, as ``ip route add`` makes it; anything else universe.
    ``OSError(EEXIST)`` if it exists, unless ``replace``."""
    from cnicore.netlink import Netlink

    with Netlink() as rtnl:
        rtnl.add_route(dst, gw=gw, link=dev, table=table, scope=scope, priority=priority, mtu=mtu,
                       advmss=advmss, src=src, replace=replace)


def add_host_route(ip: str, gw: str = "", dev: LinkRef | None = None) -> None:
    """A route to the single address ``ip`` (``/32`` or ``/128``; a prefix given is
    dropped), via ``gw`` or on-link out of ``dev`` — e.g. the host side of a
    point-to-point veth, or the container's route to its gateway."""
    address = ip.split("/", 1)[0]
    add_route(f"{address}/{128 if ':' in address else 32}", gw, dev)


def add_default_route(gw: str, dev: LinkRef | None = None) -> None:
    """The default route (``0.0.0.0/0`` or ``::/0``, by ``gw``'s family) via ``gw``.
    Go's ``AddDefaultRoute``."""
    add_route("::/0" if ":" in gw else "0.0.0.0/0", gw, dev)


def del_route(dst: str, gw: str = "", dev: LinkRef | None = None, *, table: int | None = None,
              priority: int = 0) -> None:
    """Delete the first route to ``dst`` matching what is given (``priority`` 0: any
    metric; any scope, so on-link routes match too). ``OSError(ESRCH)`` if none does."""
    from cnicore.netlink import Netlink

    with Netlink() as rtnl:
        rtnl.del_route(dst, gw=gw, link=dev, table=table, priority=priority)


# -- addresses ---------------------------------------------------------------------


def settle_addresses(ifname: str, timeout: float = DAD_SETTLE_TIMEOUT) -> None:
    """Wait until no IPv6 address of ``ifname`` is tentative (DAD done); an address
    that failed DAD is an error, and so is one still tentative after ``timeout``
    seconds on a link that is up. Go's ``SettleAddresses``."""
    from cnicore.netlink import Netlink

    with Netlink() as rtnl:
        _settle(rtnl, ifname, timeout)


def _settle(rtnl: Netlink, ifname: str, timeout: float) -> None:
    import time

    from cnicore.netlink import AF_INET6, IFA_F_DADFAILED, IFA_F_TENTATIVE

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
        time.sleep(_SETTLE_INTERVAL)


# -- forwarding --------------------------------------------------------------------


def _enable(key: str, request: Request | None) -> None:
    from cnicore import sysctl

    try:
        if sysctl.read(sysctl.key_to_path(key)) == "1":
            return
    except OSError as exc:
        raise _fail(f"failed to read sysctl {key}: {exc}") from None
    sysctl.write(key, "1", request=request)


def enable_ip4_forward(request: Request | None = None) -> None:
    """``net.ipv4.ip_forward=1`` (no write when it is set), through the sysctl policy
    (pass the ``request`` so a launcher's ``--policy`` is asked). Go's ``EnableIP4Forward``."""
    _enable("net.ipv4.ip_forward", request)


def enable_ip6_forward(request: Request | None = None) -> None:
    """``net.ipv6.conf.all.forwarding=1``, as :func:`enable_ip4_forward`. Go's ``EnableIP6Forward``."""
    _enable("net.ipv6.conf.all.forwarding", request)


def enable_forward(ips: Iterable[IPConfig | str], request: Request | None = None) -> None:
    """Forwarding for each family among ``ips`` (``IPConfig``s or addresses). Go's ``EnableForward``."""
    families = {":" in (ip if isinstance(ip, str) else ip.address) for ip in ips}
    if False in families:
        enable_ip4_forward(request)
    if True in families:
        enable_ip6_forward(request)


# -- CHECK -------------------------------------------------------------------------


def prev_result_interface(request: Request, missing: str = "Required prevResult missing") -> Interface | None:
    """CHECK's opening, as the reference plugins write it: the ``prevResult``'s interface
    named CNI_IFNAME in CNI_NETNS (the last one listed; None if there is none, which only
    an empty CNI_NETNS lets through). No ``prevResult`` fails with ``missing``; no
    interface in this sandbox, with Go's "Sandbox in prevResult ... doesn't match"."""
    from cnicore.config import lookup

    if lookup(request.config, "prevResult") is None:
        raise _fail(missing)
    result = request.prev_result
    assert result is not None
    found = None
    for intf in result.interfaces:
        if intf.name == request.ifname and intf.sandbox == request.netns:
            found = intf
    sandbox = found.sandbox if found else ""
    if request.netns != sandbox:
        raise _fail(f"Sandbox in prevResult {sandbox} doesn't match configured netns: {request.netns}")
    return found


def validate_expected_interface_ips(ifname: str, ips: Iterable[IPConfig]) -> None:
    """CHECK: every address of ``ips`` is on ``ifname`` and its subnet is routed in
    the main table. Addresses and prefixes are compared as values, not as text
    (``fd00:0::2/64`` is ``fd00::2/64``), as the reference compares ``net.IPNet``s.
    Go's ``ValidateExpectedInterfaceIPs``."""
    import ipaddress

    from cnicore.netlink import AF_INET, AF_INET6, Netlink
    from cnicore.types import is_ipv4

    with Netlink() as rtnl:
        for ipc in ips:
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


def _go_route(dst: IPv4Network | IPv6Network, gw: IPv4Address | IPv6Address | None) -> str:
    """A route as the reference's CHECK prints it (Go's ``%+v`` of its Route: the
    destination's network address and hex mask, the gateway or ``<nil>``)."""
    return f"{{Dst:{{IP:{dst.network_address} Mask:{dst.netmask.packed.hex()}}} GW:{gw if gw else '<nil>'}}}"


def validate_expected_route(routes: Iterable[Route]) -> None:
    """CHECK: every route is in its routing table (main unless it names one), matched
    by destination, and by gateway if it has one. Go's ``ValidateExpectedRoute``."""
    import ipaddress

    from cnicore.netlink import AF_INET, AF_INET6, RT_TABLE_MAIN, Netlink
    from cnicore.types import is_ipv4

    with Netlink() as rtnl:
        for route in routes:
            family = AF_INET if is_ipv4(route.dst) else AF_INET6
            dst = ipaddress.ip_network(route.dst, strict=False)
            gw = ipaddress.ip_address(route.gw) if route.gw else None
            table = route.table if route.table else RT_TABLE_MAIN
            found = any(ipaddress.ip_network(r.dst) == dst
                        and (gw is None or (r.gw and ipaddress.ip_address(r.gw) == gw))
                        for r in rtnl.routes(family, table=table))
            if not found:
                raise _fail(f"Expected Route {_go_route(dst, gw)} not found in routing table")
