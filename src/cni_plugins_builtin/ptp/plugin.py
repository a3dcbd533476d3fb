"""ptp: a veth pair per container, routed through the host.

Behaves like the reference ptp plugin (config keys, result, host names,
routes, CHECK and error texts):

* ADD — IPAM (``ipam.type``) reserves the addresses; forwarding is enabled
  for their families (through the sysctl policy); a veth pair is made, the
  host end named ``veth`` + 8 random hex digits with ``accept_ra=0``; in the
  container every address gets the reference's point-to-point trick (the
  kernel's subnet route is replaced by an on-link ``/32``/``/128`` route to
  the gateway and a route to the subnet via the gateway, both with the
  address as source), after the IPAM routes; on the host the veth carries
  each gateway as a ``/32``/``/128`` address and a host route to each
  container address. No proxy-ARP: the reference sets none. ``ipMasq``
  masquerades with the reference's chains (``CNI-<hash>``, comment
  ``name: "<net>" id: "<cid>"``; nftables with ``ipMasqBackend``). The
  config's ``dns`` replaces the IPAM plugin's when any field is set.
* DEL — IPAM DEL, then the container end (and with it the host end) is
  deleted and the masquerade rules removed; succeeds when repeated, when the
  namespace is gone, and when CNI_NETNS is empty.
* CHECK — IPAM CHECK, then the container interface of ``prevResult`` (veth,
  MAC), its addresses and routes, with the reference's messages.
* STATUS — IPAM STATUS.

Deliberate differences from the reference (which users of the bridge asked for too):

* ADD is all-or-nothing: a failure after the veth was made deletes it and
  the masquerade rules, besides releasing the IPAM reservation (the
  reference only releases the reservation and leaks the veth);
* DEL removes the masquerade rules also when CNI_NETNS is empty, the
  namespace or the interface is already gone (the reference leaks them then:
  it finds the rules through the interface's addresses);
* GC (spec 1.1; the reference has none) passes GC on to the IPAM plugin and
  removes masquerade rules of attachments not in ``cni.dev/valid-attachments``;
* the veths keep the kernel's default ``txqueuelen`` (1000), as releases after
  1.1.1 do (1.1.1 set it to 0 by accident);
* an IPv6 container interface gets ``keep_addr_on_down=1``, as releases
  after 1.1.1 do (:func:`cnicore.ipam.configure_iface`);
* a gateway shared by two addresses of one family is put on the host veth
  once (the reference fails with "file exists").

Imports: only the public toolkit; no pyroute2 on the exec path.
"""

from __future__ import annotations

from cnicore import __version__
from cnicore.errors import ERR_INTERNAL, CNIError
from cnicore.plugin import ALL, PluginInfo, hookimpl

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

    from cnicore.netlink import Link
    from cnicore.ns import NetNS
    from cnicore.request import Request
    from cnicore.types import Result

    from .config import PtpConf

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).

#: Keeps no per-request state in the process: a warm server's worker may serve
#: the next request after this plugin's (cnicore.inprocess.warm_reusable).
WARM_REUSE = True


@hookimpl
def cni_plugin_info() -> PluginInfo:
    return PluginInfo(ALL, about=f"CNI ptp plugin (cnicore) v{__version__}")


def _fail(msg: str) -> CNIError:
    """The reference reports its own failures as plain errors: code 999."""
    return CNIError(ERR_INTERNAL, msg)


def _conf(request: Request) -> PtpConf:
    from .config import PtpConf

    return PtpConf(request.config)


def _host_bits(address: str) -> int:
    return 32 if ":" not in address else 128


# -- ADD -------------------------------------------------------------------------

@hookimpl
def cni_add(request: Request) -> Result:
    from cnicore import ip, ipam
    from cnicore.ns import current_netns, open_container_netns
    from cnicore.rollback import Rollback
    from cnicore.types import Interface
    from cnicore.types import Result as Current

    conf = _conf(request)
    opened: list[NetNS] = []  # closed after the rollback, which may need them
    try:
        with Rollback() as undo:
            result = ipam.exec_add(request).convert("1.1.0")
            undo.push("IPAM reservation", ipam.exec_del, request)
            assert isinstance(result, Current)
            if not result.ips:
                raise _fail("IPAM plugin returned missing IP config")
            try:
                ip.enable_forward(result.ips, request)
            except CNIError as exc:
                raise CNIError(exc.code, f"Could not enable IP forwarding: {exc.msg}", exc.details) from None
            netns = open_container_netns(request.netns)
            opened.append(netns)
            host_ns = current_netns()
            opened.append(host_ns)
            host, container = netns.do(ip.setup_veth, request.ifname, conf.mtu, "", host_ns)
            undo.push(f"veth {request.ifname}", netns.do, ip.del_link_by_name, request.ifname)
            _accept_ra_off(host.name, request)
            result.interfaces = [Interface(host.name, host.mac),
                                 Interface(container.name, container.mac, request.netns)]
            for ipc in result.ips:
                ipc.interface = 1
            netns.do(_configure_container, request, result)
            _configure_host(host.name, result)
            if conf.ip_masq:
                from cnicore.firewall import masquerade

                networks = [ipc.address for ipc in result.ips]
                # Pushed first: a setup failing half-way leaves rules too. Only this
                # attachment's rules are undone (the chain is per network and container).
                undo.push("masquerade rules", masquerade.undo_ip_masq_for_networks, networks, conf.name,
                          request.ifname, request.container_id)
                _firewall(masquerade.setup_ip_masq_for_networks, networks, conf.name, request.ifname,
                          request.container_id, conf.ip_masq_backend)
            dns = conf.result_dns()
            if dns is not None:
                result.dns = dns
            undo.commit()
    finally:
        for ns in opened:
            ns.close()
    return result


def _firewall(fn: Callable[..., None], *args: object) -> None:
    """A firewall step; its failure is the plugin's error (999), as in the reference."""
    from cnicore.firewall import FirewallError

    try:
        fn(*args)
    except FirewallError as exc:
        raise _fail(str(exc)) from None


def _accept_ra_off(host_name: str, request: Request) -> None:
    """The host end ignores router advertisements: we own its routes (Go's SetupVeth)."""
    from cnicore import sysctl

    sysctl.write("net.ipv6.conf.IFNAME.accept_ra", "0", ifname=host_name, request=request, best_effort=True)


def _configure_container(request: Request, result: Result) -> None:
    """In the container: the IPAM result, then each subnet routed via its gateway.

    A veth is not point-to-point, so the address keeps its prefix, the
    kernel's route to the subnet goes, and the gateway becomes an on-link
    host route: everything, the subnet included, is sent to the gateway.
    """
    import ipaddress

    from cnicore.ipam import configure_iface
    from cnicore.netlink import RT_SCOPE_LINK, RT_SCOPE_UNIVERSE, Netlink

    configure_iface(request.ifname, result, request)
    with Netlink() as nl:
        link = nl.link(request.ifname)
        for ipc in result.ips:
            iface = ipaddress.ip_interface(ipc.address)
            subnet, source, gateway = str(iface.network), str(iface.ip), ipc.gateway
            try:
                nl.del_route(subnet, link=link)
            except OSError as exc:
                raise _fail(f"failed to delete route {subnet} dev {request.ifname}: {exc.strerror}") from None
            if not gateway:
                raise _fail(f"failed to add route to the gateway of {ipc.address}: "
                            "the IPAM result has no gateway")
            for dst, gw, scope in ((f"{gateway}/{_host_bits(gateway)}", "", RT_SCOPE_LINK),
                                   (subnet, gateway, RT_SCOPE_UNIVERSE)):
                try:
                    nl.add_route(dst, gw=gw, link=link, scope=scope, src=source)
                except OSError as exc:
                    raise _fail(f"failed to add route {dst} via {gw or '<nil>'} src {source} "
                                f"dev {request.ifname}: {exc.strerror}") from None


def _configure_host(host_name: str, result: Result) -> None:
    """On the host: each gateway on our end of the veth, a host route to each container address."""
    import errno

    from cnicore.netlink import AF_INET, AF_INET6, RT_SCOPE_HOST, Netlink

    with Netlink() as nl:
        try:
            link: Link = nl.link(host_name)
        except LookupError as exc:
            raise _fail(f'failed to lookup "{host_name}": {exc}') from None
        for ipc in result.ips:
            bits = _host_bits(ipc.address)
            gateway = f"{ipc.gateway}/{bits}"
            if gateway not in nl.addresses(link, AF_INET if bits == 32 else AF_INET6):
                try:
                    nl.add_address(link, gateway)
                except OSError as exc:
                    raise _fail(f"failed to add IP addr {gateway} to veth: {exc.strerror}") from None
            address = ipc.address.split("/", 1)[0]
            try:
                nl.add_route(f"{address}/{bits}", link=link, scope=RT_SCOPE_HOST)
            except OSError as exc:
                if exc.errno != errno.EEXIST:
                    raise _fail(f"failed to add route on host: {exc.strerror}") from None


# -- DEL -------------------------------------------------------------------------

@hookimpl
def cni_del(request: Request) -> None:
    from cnicore import ip, ipam
    from cnicore.netlink import LinkNotFoundError
    from cnicore.ns import NetNSError, NetNSNotFoundError, with_netns_path

    conf = _conf(request)
    ipam.exec_del(request)
    addresses: list[str] | None = None
    if request.netns:
        try:
            addresses = with_netns_path(request.netns, ip.del_link_by_name_addr, request.ifname)
        except (NetNSNotFoundError, LinkNotFoundError):
            pass  # already gone: DEL succeeds
        except NetNSError as exc:  # not a netns: an error, as in the reference
            raise _fail(f'failed to open netns "{request.netns}": {exc}') from None
    if conf.ip_masq:
        from cnicore.firewall import masquerade

        # Without the addresses (netns or link gone, or never given) the rules
        # are found by their chain and comment, so they are not leaked.
        _firewall(masquerade.teardown_ip_masq_for_networks, addresses or None, conf.name, request.ifname,
                  request.container_id)


# -- CHECK -----------------------------------------------------------------------

@hookimpl
def cni_check(request: Request) -> None:
    from cnicore import ip, ipam
    from cnicore.ns import open_container_netns

    _conf(request)
    with open_container_netns(request.netns) as netns:
        ipam.exec_check(request)
        intf = ip.prev_result_interface(request, "ptp: Required prevResult missing")
        result = request.prev_result
        assert result is not None
        netns.do(_check_container_interface, intf.name if intf else "", intf.mac if intf else "")
        netns.do(ip.validate_expected_interface_ips, request.ifname, result.ips)
        netns.do(ip.validate_expected_route, result.routes)


def _check_container_interface(name: str, mac: str) -> None:
    from cnicore.ip import link_by_name

    if not name:
        raise _fail(f"Container interface name missing in prevResult: {name}")
    try:
        link = link_by_name(name)
    except LookupError:
        raise _fail(f"ptp: Container Interface name in prevResult: {name} not found") from None
    if link.kind != "veth":
        raise _fail(f"Error: Container interface {name} not of type veth/p2p")
    if mac and mac != link.mac:
        raise _fail(f"ptp: Interface {name} Mac {mac} doesn't match container Mac: {link.mac}")


# -- STATUS, GC --------------------------------------------------------------------

@hookimpl
def cni_status(request: Request) -> None:
    from cnicore.ipam import exec_status

    _conf(request)
    exec_status(request)


@hookimpl
def cni_gc(request: Request) -> None:
    from cnicore.config import lookup
    from cnicore.ipam import exec_gc

    conf = _conf(request)
    exec_gc(request)
    if conf.ip_masq:
        from cnicore.firewall import masquerade

        valid = [(lookup(a, "containerID", ""), lookup(a, "ifname", ""))
                 for a in lookup(request.config, "cni.dev/valid-attachments") or [] if isinstance(a, dict)]
        _firewall(masquerade.gc_ip_masq_for_network, conf.name, valid)
