"""tap: a TAP device named CNI_IFNAME in the container, optionally on a bridge, with IPAM.

Behaves like the reference tap plugin (v1.4 on; config, result, CHECK, error texts):

* ADD — the device is made in the container under a temporary ``veth``-style
  name and renamed to CNI_IFNAME: persistent, ``mtu`` and ``mac`` set (``mac``
  from the config, CNI_ARGS ``MAC`` or ``runtimeConfig.mac``), ``multiQueue``
  as IFF_MULTI_QUEUE, ``owner``/``group`` allowed to attach to it without
  CAP_NET_ADMIN. The device flags follow the reference's two ways of making it:
  with both ``owner`` and ``group`` (and no ``selinuxContext``) it asks netlink's
  library for a TAP with IFF_VNET_HDR, otherwise it runs ``ip tuntap add mode
  tap`` (IFF_NO_PI); we create both kinds directly (``Netlink.add_tuntap``).
  ``bridge`` names a bridge *in the container* (the reference looks it up
  there) that the tap joins. The device is set up; with ``ipam`` its addresses
  and routes are configured (``arp_notify`` on first). The result's ``dns`` is
  the config's. A failure deletes the device and releases the reservation.
* DEL — IPAM DEL (with ``ipam``), then the device is deleted; succeeds when
  repeated, when the namespace is gone and when CNI_NETNS is empty.
* CHECK — IPAM CHECK, then the addresses and routes of ``prevResult``.
* STATUS — IPAM STATUS when ``ipam`` is set.

``selinuxContext``: where SELinux is enabled the device is made by ``ip tuntap
add`` exec'd with that label (the reference's way: the label of the creating
process is the device's); where it is not, the key is ignored, as it is by the
reference's SELinux library.

Deliberate differences: the "failed to open netns" error names the path (the
reference prints a nil value there by mistake); a failed rename deletes the
temporary device (the reference may leave it); GC (spec 1.1; the reference has
none) passes GC on to the IPAM plugin.

Imports: only the public toolkit.
"""

from __future__ import annotations

import os

from cnicore import __version__
from cnicore.errors import ERR_INTERNAL, CNIError
from cnicore.plugin import ALL, PluginInfo, hookimpl

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnicore.netlink import Link, Netlink
    from cnicore.request import Request
    from cnicore.types import Result

    from .config import TapConf

#: Keeps no per-request state in the process (cnicore.inprocess.warm_reusable).
WARM_REUSE = True

SELINUX_ENFORCE = "/sys/fs/selinux/enforce"


@hookimpl
def cni_plugin_info() -> PluginInfo:
    return PluginInfo(ALL, about=f"CNI tap plugin (cnicore) v{__version__}")


def _why(exc: OSError) -> str:
    """An OS error as Go prints a syscall error ("file exists")."""
    from cnicore.utils import errno_text

    return errno_text(exc)


def _fail(msg: str) -> CNIError:
    return CNIError(ERR_INTERNAL, msg)


def _conf(request: Request) -> TapConf:
    from .config import TapConf

    return TapConf(request)


# -- ADD -------------------------------------------------------------------------

@hookimpl
def cni_add(request: Request) -> Result:
    from cnicore import ip, ipam
    from cnicore.ns import open_container_netns
    from cnicore.rollback import Rollback
    from cnicore.types import DNS, Interface
    from cnicore.types import Result as Current

    conf = _conf(request)
    with open_container_netns(request.netns) as netns, Rollback() as undo:
        link = netns.do(_create_tap, conf, request.ifname)
        undo.push(f"tap {request.ifname}", netns.do, ip.del_link_by_name, request.ifname)
        result = Current("1.1.0", interfaces=[Interface(link.name, link.mac, netns.path)])
        if conf.ipam_type:
            ipam_result = ipam.exec_add(request).convert("1.1.0")
            undo.push("IPAM reservation", ipam.exec_del, request)
            assert isinstance(ipam_result, Current)
            if not ipam_result.ips:
                raise _fail("IPAM plugin returned missing IP config")
            result.ips, result.routes = ipam_result.ips, ipam_result.routes
            for ipc in result.ips:
                ipc.interface = 0
            netns.do(_configure, request, result)
        dns = conf.dns
        result.dns = DNS(dns.get("nameservers"), dns.get("domain") or "", dns.get("search"), dns.get("options"))
        undo.commit()
    return result


def _configure(request: Request, result: Result) -> None:
    from cnicore import sysctl
    from cnicore.ipam import configure_iface

    sysctl.write("net.ipv4.conf.IFNAME.arp_notify", "1", ifname=request.ifname, request=request, best_effort=True)
    configure_iface(request.ifname, result, request)


def _create_tap(conf: TapConf, ifname: str) -> Link:
    """In the container: the tap under a temporary name, renamed, on its bridge, up."""
    from cnicore.ip import random_veth_name
    from cnicore.netlink import Netlink

    temp = random_veth_name()
    with Netlink() as nl:
        _make(nl, conf, temp)
        try:
            nl.set_link(temp, name=ifname)
        except OSError as exc:
            nl.delete_link(temp)
            raise _fail(f'failed to rename tap to "{ifname}": {_why(exc)}') from None
        try:
            if conf.bridge:
                try:
                    bridge = nl.link(conf.bridge)
                except LookupError:
                    raise _fail(f"failed to get bridge {conf.bridge}: Link not found") from None
                try:
                    nl.set_link(ifname, master=bridge)
                except OSError as exc:
                    raise _fail(f"failed to set tap {ifname} as a port of bridge {conf.bridge}: "
                                f"{_why(exc)}") from None
            try:
                nl.set_up(ifname)
            except OSError as exc:
                raise _fail(f"failed to set tap interface up: {_why(exc)}") from None
            return nl.link(ifname)
        except BaseException:
            nl.delete_link(ifname)
            raise


def _make(nl: Netlink, conf: TapConf, name: str) -> None:
    """The device, the reference's way for the options given (see the module docstring)."""
    from cnicore import netlink
    from cnicore.ip import ethernet_mac

    mac = ""
    if conf.mac:
        try:
            mac = ethernet_mac(conf.mac)
        except ValueError as exc:
            raise _fail(f"invalid args {conf.mac} for MAC addr: {exc}") from None
    if conf.selinux_context and _selinux_enabled():
        _make_with_ip(conf, name, mac)
        return
    if conf.owner is not None and conf.group is not None and not conf.selinux_context:
        flags = netlink.IFF_TAP | netlink.IFF_VNET_HDR  # vishvananda/netlink's Tuntap
    else:
        flags = netlink.TUNTAP_DEFAULT_FLAGS  # `ip tuntap add mode tap`
    if conf.multi_queue:
        flags |= netlink.IFF_MULTI_QUEUE | netlink.IFF_NO_PI
    try:
        nl.add_tuntap(name, flags=flags, owner=conf.owner, group=conf.group, mtu=conf.mtu, mac=mac)
    except OSError as exc:
        raise _fail(f"failed to create tap: {_why(exc)}") from None


def _selinux_enabled() -> bool:
    return os.path.exists(SELINUX_ENFORCE)


def _make_with_ip(conf: TapConf, name: str, mac: str) -> None:
    """``ip tuntap add`` exec'd with ``selinuxContext`` as its label (SELinux hosts only)."""
    import subprocess

    argv = ["ip", "tuntap", "add", "mode", "tap", "name", name]
    argv += ["multi_queue"] if conf.multi_queue else []
    argv += ["user", str(conf.owner)] if conf.owner is not None else []
    argv += ["group", str(conf.group)] if conf.group is not None else []

    def label() -> None:  # in the child, before exec: the label the exec'd ip runs with
        with open("/proc/thread-self/attr/exec", "w") as fh:
            fh.write(conf.selinux_context)

    try:
        out = subprocess.run(argv, capture_output=True, preexec_fn=label, check=False)
    except OSError as exc:
        raise _fail(f"failed set socket label: {_why(exc)}") from None
    if out.returncode:
        raise _fail(f"failed to run command {(out.stdout + out.stderr).decode(errors='replace')}: "
                    f"exit status {out.returncode}")
    argv = ["ip", "link", "set", name] + (["mtu", str(conf.mtu)] if conf.mtu else []) + (
        ["address", mac] if mac else [])
    out = subprocess.run(argv, capture_output=True, check=False)
    if out.returncode:
        raise _fail(f"failed to run command {(out.stdout + out.stderr).decode(errors='replace')}: "
                    f"exit status {out.returncode}")


# -- DEL -------------------------------------------------------------------------

@hookimpl
def cni_del(request: Request) -> None:
    from cnicore import ip
    from cnicore.netlink import LinkNotFoundError
    from cnicore.ns import NetNSNotFoundError, with_netns_path

    conf = _conf(request)
    if conf.ipam_type:
        from cnicore.ipam import exec_del

        exec_del(request)
    if not request.netns:
        return
    try:
        with_netns_path(request.netns, ip.del_link_by_name, request.ifname)
    except (NetNSNotFoundError, LinkNotFoundError):
        pass  # already gone: DEL succeeds
    except OSError as exc:
        raise _fail(_why(exc)) from None


# -- CHECK, STATUS, GC ---------------------------------------------------------------

@hookimpl
def cni_check(request: Request) -> None:
    from cnicore import ip
    from cnicore.ns import open_container_netns

    conf = _conf(request)
    with open_container_netns(request.netns) as netns:
        if conf.ipam_type:
            from cnicore.ipam import exec_check

            exec_check(request)
        ip.prev_result_interface(request)
        result = request.prev_result
        assert result is not None
        netns.do(ip.validate_expected_interface_ips, request.ifname, result.ips)
        netns.do(ip.validate_expected_route, result.routes)


@hookimpl
def cni_status(request: Request) -> None:
    conf = _conf(request)
    if conf.ipam_type:
        from cnicore.ipam import exec_status

        exec_status(request)


@hookimpl
def cni_gc(request: Request) -> None:
    conf = _conf(request)
    if conf.ipam_type:
        from cnicore.ipam import exec_gc

        exec_gc(request)
