"""bridge: attach a container to a Linux bridge through a veth pair.

Behaves like the reference bridge plugin (options, result, CHECK, errors),
with two deliberate improvements users asked for:

* ADD is all-or-nothing: when any step after the first change fails, the
  veth is removed, the IPAM reservation released, the masquerade and
  spoof-check rules deleted (the reference leaks them) and a bridge this ADD
  created is deleted again unless another port joined it meanwhile; the
  netns is opened before the bridge is made, so a missing netns changes
  nothing (the reference makes the bridge first);
* DEL removes the masquerade and spoof-check rules also when CNI_NETNS is
  empty or the namespace is already gone (the reference leaks the rules then),
  and GC collects rules of attachments that are no longer valid.

Imports: only the public toolkit (:mod:`cnicore.ip`, :mod:`cnicore.netlink`) — no pyroute2
on the exec path.
"""

from __future__ import annotations

from cnicore import __version__, faults
from cnicore.errors import CNIError
from cnicore.plugin import ALL, PluginInfo, hookimpl

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

    from cnicore.netlink import Link
    from cnicore.request import Request
    from cnicore.types import DNS, Result

    from .config import BridgeConf

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).

#: Keeps no per-request state in the process: a warm server's worker may serve
#: the next request after this plugin's (cnicore.inprocess.warm_reusable).
WARM_REUSE = True


@hookimpl
def cni_plugin_info() -> PluginInfo:
    return PluginInfo(ALL, about=f"CNI bridge plugin (cnicore) v{__version__}")


def _conf(request: Request) -> BridgeConf:
    from .config import BridgeConf

    return BridgeConf(request.config, request.args)


def _unique_id(container_id: str, ifname: str) -> str:
    return f"{container_id}-{ifname}"


# -- ADD -------------------------------------------------------------------------

@hookimpl
def cni_add(request: Request) -> Result:
    from cnicore.ip import setup_veth
    from cnicore.ns import current_netns, open_container_netns
    from cnicore.rollback import Rollback
    from cnicore.types import Interface, Result

    from . import links

    conf = _conf(request)
    conf.check_for_add()
    dns = _dns(conf)
    # The netns is opened before the bridge is made (the reference makes the bridge
    # first), so an ADD for a missing namespace leaves nothing behind.
    netns = open_container_netns(request.netns)
    host_ns = current_netns()
    with netns, host_ns, Rollback() as undo:
        # Until our veth is a port of the bridge, a failing ADD that created the
        # bridge must not delete it under us: joiners share this lock, deleters
        # take it exclusively (links.delete_unused_bridge).
        with links.BridgeLock(conf.bridge) as lock:
            lock.shared()
            bridge, created = links.ensure_bridge(conf.bridge, conf.mtu, conf.promisc, conf.vlan_filtering,
                                                  request, lock)
            if created:
                undo.push(f"bridge {conf.bridge}", links.delete_unused_bridge, conf.bridge)
            faults.point("bridge.add.bridge")
            host_veth, container = netns.do(setup_veth, request.ifname, conf.mtu, conf.mac, host_ns)
            undo.push(f"veth {request.ifname}", netns.do, links.delete_link, request.ifname)
            faults.point("bridge.add.veth")
            host = links.attach_host_veth(host_veth.name, bridge, conf.hairpin, conf.port_isolation, conf.vlan,
                                          conf.vlans, conf.preserve_default_vlan, request)
        faults.point("bridge.add.attached")
        result = Result("1.1.0", interfaces=[
            Interface(bridge.name, bridge.mac),
            Interface(host.name, host.mac),
            Interface(container.name, container.mac, request.netns),
        ])
        if conf.mac_spoof_check:
            from cnicore.firewall import spoofcheck

            ref = _unique_id(request.container_id, request.ifname)
            # Pushed first: a setup failing half-way leaves rules too (teardown is idempotent).
            undo.push("mac spoof check", spoofcheck.teardown_mac_spoof_check, ref)
            _firewall(spoofcheck.setup_mac_spoof_check, host.name, container.mac, ref)
            faults.point("bridge.add.spoofcheck")
        if conf.is_layer3:
            _add_layer3(request, conf, result, netns, bridge, undo)
        elif not conf.disable_container_interface:
            netns.do(_set_up, request.ifname)
        if not conf.disable_container_interface:
            host = links.wait_oper_up(host.name)
        result.interfaces[1].mac = host.mac
        result.interfaces[0].mac = links.link_by_name(conf.bridge).mac
        if dns is not None:
            result.dns = dns
        faults.point("bridge.add.done")
        undo.commit()
    return result


def _dns(conf: BridgeConf) -> DNS | None:
    """The config's ``dns`` (None if unset), decoded before anything is changed."""
    from cnicore.types import DNS, ResultError

    if not conf.dns:
        return None
    try:
        return DNS.from_dict(conf.dns)
    except (ResultError, ValueError) as exc:
        from cnicore.config import NetConfError

        raise NetConfError(f"failed to load netconf: {exc}") from None


def _firewall(fn: Callable[..., None], *args: object) -> None:
    """Run a firewall step; its failure is the plugin's error (999), as in the reference."""
    from cnicore.firewall import FirewallError

    from . import links

    try:
        fn(*args)
    except FirewallError as exc:
        raise links.fail(str(exc)) from None


def _set_up(ifname: str) -> None:
    from cnicore.netlink import Netlink

    from . import links

    with Netlink() as rtnl:
        try:
            rtnl.set_up(rtnl.link(ifname), True)
        except LookupError as exc:
            raise links.fail(f"failed to retrieve link: {exc}") from None


def _add_layer3(request: Request, conf: BridgeConf, result: Result, netns: object, bridge: Link,
                undo: object) -> None:
    """IPAM, container addresses and routes, gateway and forwarding, masquerade."""
    from cnicore import sysctl
    from cnicore.ipam import configure_iface, exec_add, exec_del
    from cnicore.types import Result as Current

    from . import links

    ipam_result = exec_add(request)
    undo.push("IPAM reservation", exec_del, request)  # type: ignore[attr-defined]
    faults.point("bridge.add.ipam")
    ipam_result = ipam_result.convert("1.1.0")
    assert isinstance(ipam_result, Current)
    result.ips, result.routes, result.dns = ipam_result.ips, ipam_result.routes, ipam_result.dns
    if not result.ips:
        raise links.fail("IPAM plugin returned missing IP config")
    gateways = _calc_gateways(result, conf)
    result_for_iface = result

    def optional_sysctl(key: str, value: str) -> None:
        # IPv6 per-device keys are plain values: rewriting the same one does nothing.
        sysctl.write(key, value, ifname=request.ifname, request=request, best_effort=True,
                     skip_same=key.startswith("net.ipv6."))

    def configure() -> None:
        if conf.enable_dad:
            optional_sysctl("net.ipv6.conf.IFNAME.enhanced_dad", "1")
            optional_sysctl("net.ipv6.conf.IFNAME.accept_dad", "1")
        else:
            optional_sysctl("net.ipv6.conf.IFNAME.accept_dad", "0")
        optional_sysctl("net.ipv4.conf.IFNAME.arp_notify", "1")
        configure_iface(request.ifname, result_for_iface, request)

    netns.do(configure)  # type: ignore[attr-defined]
    faults.point("bridge.add.addresses")
    if conf.is_gateway:
        _setup_gateways(request, conf, result, bridge, gateways)
        faults.point("bridge.add.gateway")
    if conf.ip_masq:
        from cnicore.firewall import masquerade

        networks = [ip.address for ip in result.ips]
        # Pushed first: a setup failing half-way leaves rules too. Only this
        # attachment's rules are undone: the container's other interfaces on
        # this network share the iptables chain.
        undo.push("masquerade rules", masquerade.undo_ip_masq_for_networks,  # type: ignore[attr-defined]
                  networks, conf.name, request.ifname, request.container_id)
        _firewall(masquerade.setup_ip_masq_for_networks, networks, conf.name, request.ifname, request.container_id,
                  conf.ip_masq_backend)
        faults.point("bridge.add.masquerade")


def _calc_gateways(result: Result, conf: BridgeConf) -> dict[int, list[str]]:
    """Set each IP's interface index and gateway, add default routes; return the
    gateway addresses (``gw/prefix``) per family for the bridge."""
    import ipaddress

    from cnicore.types import Route

    gateways: dict[int, list[str]] = {4: [], 6: []}
    default_found = {4: False, 6: False}
    for ipc in result.ips:
        iface = ipaddress.ip_interface(ipc.address)
        family = 4 if iface.version == 4 or iface.ip.ipv4_mapped is not None else 6
        default = "0.0.0.0/0" if family == 4 else "::/0"
        ipc.interface = 2
        if not ipc.gateway and conf.is_gateway:
            ipc.gateway = str(iface.network.network_address + 1)
        if conf.is_default_gateway and not default_found[family]:
            if not any(r.gw and r.dst == default for r in result.routes):
                result.routes.append(Route(default, ipc.gateway))
            default_found[family] = True
        if conf.is_gateway:
            gateways[family].append(f"{ipc.gateway}/{iface.network.prefixlen}")
    return gateways


def _setup_gateways(request: Request, conf: BridgeConf, result: Result, bridge: Link,
                    gateways: dict[int, list[str]]) -> None:
    from cnicore.ip import enable_ip4_forward, enable_ip6_forward
    from cnicore.types import Interface

    from . import links

    # The bridge's MAC as looked up before this ADD attached its port: pinning it
    # keeps the bridge from taking over the lowest port's MAC, as in the reference.
    target, mac = bridge.name, bridge.mac
    for family in (4, 6):
        for gateway in gateways[family]:
            if conf.vlan:
                target = _ensure_vlan_interface(request, conf, bridge.name)
                link = links.link_by_name(target)
                mac = link.mac
                if not any(i.name == target for i in result.interfaces):
                    result.interfaces.append(Interface(link.name, link.mac))
            links.ensure_gateway_address(target, gateway, conf.force_address, mac)
        if gateways[family]:
            try:
                (enable_ip4_forward if family == 4 else enable_ip6_forward)(request)
            except CNIError as exc:
                raise links.fail(f"failed to enable forwarding: {exc}") from None


def _ensure_vlan_interface(request: Request, conf: BridgeConf, bridge_name: str) -> str:
    """The bridge's gateway interface for ``vlan``: a veth ``<bridge>.<vlan>`` in the
    host namespace whose peer is a tagged bridge port, as the reference makes it."""
    from cnicore.ip import setup_veth
    from cnicore.ns import current_netns

    from . import links

    name = f"{bridge_name}.{conf.vlan}"
    try:
        links.link_by_name(name)
        return name
    except LookupError:
        pass
    with current_netns() as host_ns:
        peer, _ = setup_veth(name, 0, "", host_ns)
    bridge = links.link_by_name(bridge_name)
    links.attach_host_veth(peer.name, bridge, False, False, conf.vlan, [], conf.preserve_default_vlan, request)
    _set_up(name)
    return name


# -- DEL -------------------------------------------------------------------------

@hookimpl
def cni_del(request: Request) -> None:
    from cnicore.ipam import exec_del
    from cnicore.ns import NetNSError, NetNSNotFoundError, with_netns_path

    from . import links

    conf = _conf(request)
    addresses: list[str] | None = None
    if request.netns:
        try:
            addresses = with_netns_path(request.netns, links.delete_link, request.ifname,
                                        conf.is_layer3 and conf.ip_masq)
        except NetNSNotFoundError:
            addresses = None
        except NetNSError as exc:  # not a netns: an error, as in the reference
            raise links.fail(f'failed to open netns "{request.netns}": {exc}') from None
    if conf.is_layer3:
        exec_del(request)
    if conf.mac_spoof_check:
        import sys

        from cnicore.firewall import FirewallError, spoofcheck

        try:
            spoofcheck.teardown_mac_spoof_check(_unique_id(request.container_id, request.ifname))
        except FirewallError as exc:  # reported, not fatal, as in the reference
            print(exc, file=sys.stderr)
    if conf.is_layer3 and conf.ip_masq:
        from cnicore.firewall import masquerade

        # Without the addresses (netns gone or never given) the rules are found by
        # their chain and comment, so they are not leaked.
        _firewall(masquerade.teardown_ip_masq_for_networks, addresses or None, conf.name, request.ifname,
                  request.container_id)


# -- CHECK -----------------------------------------------------------------------

@hookimpl
def cni_check(request: Request) -> None:
    from cnicore.config import lookup
    from cnicore.ip import validate_expected_interface_ips, validate_expected_route
    from cnicore.ipam import exec_check
    from cnicore.ns import open_container_netns

    from . import checks, links

    conf = _conf(request)
    with open_container_netns(request.netns) as netns:
        if conf.is_layer3:
            exec_check(request)
        if lookup(request.config, "prevResult") is None:
            raise links.fail("Required prevResult missing")
        result = request.prev_result
        assert result is not None
        checks.check_interfaces(request, conf, result, netns)
        netns.do(validate_expected_interface_ips, request.ifname, result.ips)
        netns.do(validate_expected_route, result.routes)


# -- STATUS, GC --------------------------------------------------------------------

@hookimpl
def cni_status(request: Request) -> None:
    from cnicore.ipam import exec_status

    if _conf(request).is_layer3:
        exec_status(request)


@hookimpl
def cni_gc(request: Request) -> None:
    from cnicore.config import lookup
    from cnicore.ipam import exec_gc

    conf = _conf(request)
    if conf.is_layer3:
        exec_gc(request)
    if conf.ip_masq:
        from cnicore.firewall import masquerade

        valid = [(lookup(a, "containerID", ""), lookup(a, "ifname", ""))
                 for a in lookup(request.config, "cni.dev/valid-attachments") or [] if isinstance(a, dict)]
        _firewall(masquerade.gc_ip_masq_for_network, conf.name, valid)
