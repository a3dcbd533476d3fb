"""host-device: move an existing host link (by name, MAC, sysfs path or PCI address)
into the container as CNI_IFNAME, and back under its own name on DEL.

Behaves like the reference host-device plugin (config keys, result, CHECK and
error texts), the current release's way:

* ADD — the link is found by ``device``, else ``hwaddr``, else ``kernelpath``
  (``/sys/devices/...``, its ``net`` directory), else ``pciBusID`` (or the
  runtime's ``runtimeConfig.deviceID``: PCI or auxiliary bus); its host name
  is kept as its alias, it is moved into the container and renamed to
  CNI_IFNAME there in one request, and set up (see :mod:`.links`). With
  ``ipam`` the addresses and routes are configured on it and the result's
  ``dns`` is the config's. A PCI device bound to a userspace
  (DPDK) driver is not moved: the result only names it.
* DEL — IPAM DEL, then the link goes back to the host namespace named after
  its alias, down (its earlier state is unknown), the alias cleared.
* CHECK — IPAM CHECK, then the interface of ``prevResult`` (name, MAC), its
  addresses and routes, with the reference's messages.
* STATUS — IPAM STATUS when ``ipam`` is set.

Deliberate differences from the reference:

* DEL succeeds when the namespace is gone or the link is no longer in it (the
  reference fails with "failed to open netns" / "failed to find ... in
  containerNS": spec 1.1 says DEL must succeed when resources are already
  gone; a virtual device dies with its namespace, a physical one returns to
  the initial namespace by itself);
* a failed ADD after IPAM also moves the link back to the host (the reference
  releases the addresses only and leaves the link in the container);
* GC (spec 1.1; the reference has none) passes GC on to the IPAM plugin.

How the link moves: Debian's 1.1.1 moves it under its host name and renames it
in the container (DEL: the reverse, leaving the alias set); releases from 1.4
hop through a temporary namespace so the host never sees a transient name, at
the cost of two namespace moves each way. We move and rename in one request
(ADD) and rename in the container before moving (DEL): no transient name on
the host either, one move each way, the alias cleared. Any of them restores a
link another moved (the alias is the contract).

Imports: only the public toolkit.
"""

from __future__ import annotations

from cnicore import __version__
from cnicore.plugin import ALL, PluginInfo, hookimpl

from .links import fail

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnicore.ns import NetNS
    from cnicore.request import Request
    from cnicore.types import Interface, Result

    from .config import HostDeviceConf

#: Keeps no per-request state in the process (cnicore.inprocess.warm_reusable).
WARM_REUSE = True


@hookimpl
def cni_plugin_info() -> PluginInfo:
    return PluginInfo(ALL, about=f"CNI host-device plugin (cnicore) v{__version__}")


def _conf(request: Request, check_device: bool = True) -> HostDeviceConf:
    from .config import HostDeviceConf

    return HostDeviceConf(request.config, check_device=check_device)


# -- ADD -------------------------------------------------------------------------

@hookimpl
def cni_add(request: Request) -> Result:
    from cnicore.ns import current_netns, open_container_netns
    from cnicore.types import DNS, Interface
    from cnicore.types import Result as Current

    from .links import find_host_link, move_link_in, move_link_out

    conf = _conf(request)
    with open_container_netns(request.netns) as netns:
        interface = Interface(request.ifname, "", netns.path)
        moved = False
        if not conf.dpdk_mode:
            host_dev = find_host_link(conf)
            with current_netns() as host_ns:
                link = move_link_in(host_dev, host_ns, netns, request.ifname)
            interface = Interface(link.name, link.mac, netns.path)
            moved = True
        if not conf.ipam_type:
            return Current("1.1.0", interfaces=[interface])
        try:
            result = _ipam(request, interface, netns, moved)
        except BaseException:
            if moved:
                with current_netns() as host_ns:
                    try:
                        move_link_out(netns, host_ns, request.ifname)
                    except Exception:  # noqa: BLE001 - the ADD's error is the one to report
                        pass
            raise
    dns = conf.dns
    result.dns = DNS(dns.get("nameservers"), dns.get("domain") or "", dns.get("search"), dns.get("options"))
    return result


def _ipam(request: Request, interface: Interface, netns: NetNS, configure: bool) -> Result:
    from cnicore import ipam
    from cnicore.rollback import Rollback
    from cnicore.types import Result as Current

    with Rollback() as undo:
        result = ipam.exec_add(request).convert("1.1.0")
        undo.push("IPAM reservation", ipam.exec_del, request)
        assert isinstance(result, Current)
        if not result.ips:
            raise fail("IPAM plugin returned missing IP config")
        for ipc in result.ips:
            ipc.interface = 0
        result.interfaces = [interface]
        if configure:
            netns.do(ipam.configure_iface, request.ifname, result, request)
        undo.commit()
    return result


# -- DEL -------------------------------------------------------------------------

@hookimpl
def cni_del(request: Request) -> None:
    from cnicore.ns import NetNSNotFoundError, current_netns, get_netns

    from .links import move_link_out

    conf = _conf(request)
    if not request.netns:
        return
    try:
        netns = get_netns(request.netns)
    except NetNSNotFoundError:
        netns = None  # gone: the link went with it (see the module docstring)
    except Exception as exc:  # noqa: BLE001
        raise fail(f'failed to open netns "{request.netns}": {exc}') from None
    if conf.ipam_type:
        from cnicore.ipam import exec_del

        exec_del(request)
    if netns is None or conf.dpdk_mode:
        if netns is not None:
            netns.close()
        return
    with netns, current_netns() as host_ns:
        move_link_out(netns, host_ns, request.ifname)


# -- CHECK -----------------------------------------------------------------------

@hookimpl
def cni_check(request: Request) -> None:
    from cnicore import ip
    from cnicore.config import lookup
    from cnicore.ns import open_container_netns

    conf = _conf(request)
    with open_container_netns(request.netns) as netns:
        if conf.ipam_type:
            from cnicore.ipam import exec_check

            exec_check(request)
        if conf.dpdk_mode:  # a prevResult is still required; its interface is not checked
            if lookup(request.config, "prevResult") is None:
                raise fail("Required prevResult missing")
            return
        intf = ip.prev_result_interface(request)
        result = request.prev_result
        assert result is not None
        netns.do(_check_interface, intf.name if intf else "", intf.mac if intf else "", intf.sandbox if intf else "")
        netns.do(ip.validate_expected_interface_ips, request.ifname, result.ips)
        netns.do(ip.validate_expected_route, result.routes)


def _check_interface(name: str, mac: str, sandbox: str) -> None:
    from cnicore.ip import link_by_name

    if not name:
        raise fail(f"Container interface name missing in prevResult: {name}")
    try:
        link = link_by_name(name)
    except LookupError:
        raise fail(f"Container Interface name in prevResult: {name} not found") from None
    if not sandbox:
        raise fail(f"Error: Container interface {link.name} should not be in host namespace")
    if mac and mac != link.mac:
        raise fail(f"Interface {name} Mac {mac} doesn't match container Mac: {link.mac}")


# -- STATUS, GC --------------------------------------------------------------------

@hookimpl
def cni_status(request: Request) -> None:
    conf = _conf(request, check_device=False)
    if conf.ipam_type:
        from cnicore.ipam import exec_status

        exec_status(request)


@hookimpl
def cni_gc(request: Request) -> None:
    conf = _conf(request, check_device=False)
    if conf.ipam_type:
        from cnicore.ipam import exec_gc

        exec_gc(request)
