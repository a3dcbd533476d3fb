"""template-ptp: a main CNI plugin that links each container to the host by its own veth pair.

It behaves like the reference ``ptp`` plugin::

    {"cniVersion": "1.0.0", "name": "mynet", "type": "template-ptp", "mtu": 1400,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.20.0.0/24"}]]}}

* ADD asks the IPAM plugin named in ``ipam.type`` for addresses, creates a
  veth pair (CNI_IFNAME in the container, ``veth…`` on the host), puts the
  addresses on the container end and routes everything through the host: in
  the container the gateway is on-link (a /32 or /128 route) and the subnet
  goes via the gateway; on the host, the host end holds the gateway address
  and a /32 or /128 route leads to each container address. IP forwarding is
  enabled through the sysctl policy. ADD is all-or-nothing: a failure
  removes the veth and releases the addresses.
* CHECK compares prevResult with the container: the veth, its MAC, the
  addresses and routes (and asks the IPAM plugin to check its reservation).
* DEL releases the addresses and removes the veth (its peer and the host
  routes go with it); it succeeds when the namespace or the veth is gone.
* STATUS and GC are the IPAM plugin's.

IPv4 and IPv6, spec versions 0.1.0 to 1.1.0. Written on cnicore's public
toolkit only (:mod:`cnicore.ip`, :mod:`cnicore.ipam`, :mod:`cnicore.config`,
:mod:`cnicore.rollback`), which speaks netlink without pyroute2, so a cold
exec (a fresh interpreter per request, when no warm server runs) stays fast:
every module imported here is one ADD and DEL need anyway.
"""

from __future__ import annotations

from cnicore.config import decode
from cnicore.errors import ERR_INTERNAL, CNIError
from cnicore.ip import (
    add_host_route,
    add_route,
    del_link_by_name,
    del_route,
    enable_forward,
    link_by_name,
    setup_veth,
    validate_expected_interface_ips,
    validate_expected_route,
)
from cnicore.ipam import configure_iface, exec_add, exec_check, exec_del, exec_gc, exec_status
from cnicore.netlink import RT_SCOPE_LINK, LinkNotFoundError, Netlink
from cnicore.ns import NetNS, NetNSNotFoundError, current_netns, get_netns, with_netns_path
from cnicore.plugin import ALL, PluginInfo, hookimpl
from cnicore.request import Request
from cnicore.rollback import Rollback
from cnicore.types import Interface, Result

#: The CNI ``type`` this plugin is registered under (its entry-point name).
PLUGIN_TYPE = "template-ptp"
#: A promise to the warm server: nothing of a request stays in the process, so a
#: worker may serve the next request after this one.
WARM_REUSE = True


class DNS:
    """The config's ``dns`` (named as Go's ``types.DNS``, which error texts name)."""

    nameservers: list[str] = []
    domain: str = ""
    search: list[str] = []
    options: list[str] = []


class NetConf:
    """The config keys this plugin reads, as the reference's Go struct: ``cnicore.config.decode``
    fills it in with Go's encoding/json rules and error texts (``"mtu": "x"`` fails as ptp fails),
    and checks the keys every config has (``cniVersion``, ``name``, ``ipam``, ...). A plain class:
    a ``@dataclass`` works too, but importing ``dataclasses`` costs every cold exec ~20 ms."""

    mtu: int = 0
    dns: DNS


def fail(msg: str) -> CNIError:
    return CNIError(ERR_INTERNAL, msg)


def open_netns(request: Request) -> NetNS:
    try:
        return get_netns(request.netns)
    except Exception as exc:  # noqa: BLE001 - the reference's wording for any failure
        raise fail(f'failed to open netns "{request.netns}": {exc}') from None


@hookimpl
def cni_plugin_info() -> PluginInfo:
    return PluginInfo(ALL, about=f"CNI {PLUGIN_TYPE} plugin: a point-to-point veth per container")


@hookimpl
def cni_add(request: Request) -> Result:
    conf = decode(request, NetConf)
    with open_netns(request) as netns, current_netns() as host_ns, Rollback() as undo:
        result = exec_add(request).convert("1.1.0")
        assert isinstance(result, Result)
        undo.push("IPAM reservation", exec_del, request)
        if not result.ips:
            raise fail("IPAM plugin returned missing IP config")
        try:
            enable_forward(result.ips, request)
        except CNIError as exc:
            raise fail(f"Could not enable IP forwarding: {exc.msg}") from None
        host, container = netns.do(setup_veth, request.ifname, conf.mtu, "", host_ns)
        undo.push(f"veth {request.ifname}", netns.do, del_link_by_name, request.ifname)
        result.interfaces = [Interface(host.name, host.mac), Interface(container.name, container.mac, netns.path)]
        for ipc in result.ips:
            ipc.interface = 1  # every address goes on the container end
        netns.do(setup_container_veth, request, result)
        setup_host_veth(host.name, result)
        dns = conf.dns
        if dns.nameservers or dns.domain or dns.search or dns.options:  # the config's DNS wins over IPAM's
            result.dns.nameservers, result.dns.domain = dns.nameservers, dns.domain
            result.dns.search, result.dns.options = dns.search, dns.options
        undo.commit()
    return result


def setup_container_veth(request: Request, result: Result) -> None:
    """In the container: the result's addresses, then the kernel's subnet route replaced
    by "gateway on-link" and "subnet via gateway", so all traffic goes to the host."""
    configure_iface(request.ifname, result, request)
    for ipc in result.ips:  # ipc.address is "ip/prefix": as a route's dst, the subnet
        if not ipc.gateway:
            raise fail(f"IPAM plugin returned no gateway for {ipc.address}")
        src, bits = ipc.address.split("/")[0], host_bits(ipc.address)
        del_route(ipc.address, dev=request.ifname)
        add_route(f"{ipc.gateway}/{bits}", dev=request.ifname, scope=RT_SCOPE_LINK, src=src)
        add_route(ipc.address, ipc.gateway, request.ifname, src=src)


def host_bits(address: str) -> int:
    return 128 if ":" in address else 32


def setup_host_veth(name: str, result: Result) -> None:
    """On the host: the gateway address on the host end, a host route to each container address."""
    with Netlink() as netlink:
        veth = netlink.link(name)
        for ipc in result.ips:
            try:
                netlink.add_address(veth, f"{ipc.gateway}/{host_bits(ipc.address)}")
            except OSError as exc:
                raise fail(f"failed to add IP addr {ipc.gateway} to veth {name}: {exc.strerror}") from None
            try:
                add_host_route(ipc.address, dev=name)
            except FileExistsError:
                pass
            except OSError as exc:
                raise fail(f"failed to add route on host: {exc.strerror}") from None


@hookimpl
def cni_check(request: Request) -> None:
    decode(request, NetConf)
    with open_netns(request) as netns:
        exec_check(request)
        result = request.prev_result
        if result is None:
            raise fail(f"{PLUGIN_TYPE}: Required prevResult missing")
        container = next((i for i in result.interfaces if i.name == request.ifname and i.sandbox == request.netns),
                         None)
        if container is None:
            raise fail(f"Sandbox in prevResult doesn't match configured netns: {request.netns}")
        netns.do(check_container_veth, container, result)


def check_container_veth(iface: Interface, result: Result) -> None:
    try:
        link = link_by_name(iface.name)
    except LinkNotFoundError:
        raise fail(f"{PLUGIN_TYPE}: Container Interface name in prevResult: {iface.name} not found") from None
    if link.kind != "veth":
        raise fail(f"Error: Container interface {iface.name} not of type veth/p2p")
    if iface.mac and iface.mac != link.mac:
        raise fail(f"{PLUGIN_TYPE}: Interface {iface.name} Mac {iface.mac} doesn't match container Mac: {link.mac}")
    validate_expected_interface_ips(iface.name, result.ips)
    validate_expected_route(result.routes)


@hookimpl
def cni_del(request: Request) -> None:
    decode(request, NetConf)
    exec_del(request)
    if not request.netns:
        return
    try:
        with_netns_path(request.netns, del_link_by_name, request.ifname)
    except (NetNSNotFoundError, LinkNotFoundError):
        pass  # already gone: DEL may be called any number of times


@hookimpl
def cni_status(request: Request) -> None:
    exec_status(request)


@hookimpl
def cni_gc(request: Request) -> None:
    exec_gc(request)
