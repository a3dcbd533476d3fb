"""dummy: a dummy link named CNI_IFNAME in the container, with IPAM's addresses and routes.

Behaves like the reference dummy plugin (v1.4 on; config, result, CHECK, error texts):

* ADD — ``ipam`` is required ("dummy interface requires an IPAM configuration");
  the dummy link is created in the container, IPAM reserves the addresses and
  they are configured on it (up, routes); the result names the link (MAC,
  sandbox) and keeps IPAM's ``dns``. A failure deletes the link and releases
  the reservation.
* DEL — IPAM DEL, then the link is deleted; succeeds when repeated, when the
  namespace is gone and when CNI_NETNS is empty.
* CHECK — IPAM CHECK, then the ``prevResult`` interface: a dummy, its MAC,
  up, and its addresses (routes are not checked, as in the reference).
* STATUS — IPAM STATUS.

Deliberate differences: the "failed to open netns" error names the path (the
reference prints a nil value there by mistake); GC (spec 1.1; the reference has
none) passes GC on to the IPAM plugin.

Imports: only the public toolkit.
"""

from __future__ import annotations

from cnicore import __version__
from cnicore.errors import ERR_INTERNAL, CNIError
from cnicore.plugin import ALL, PluginInfo, hookimpl

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from cnicore.netlink import Link
    from cnicore.request import Request
    from cnicore.types import Result

#: Keeps no per-request state in the process (cnicore.inprocess.warm_reusable).
WARM_REUSE = True


@hookimpl
def cni_plugin_info() -> PluginInfo:
    return PluginInfo(ALL, about=f"CNI dummy plugin (cnicore) v{__version__}")


def _why(exc: OSError) -> str:
    """An OS error as Go prints a syscall error ("file exists")."""
    from cnicore.utils import errno_text

    return errno_text(exc)


def _fail(msg: str) -> CNIError:
    return CNIError(ERR_INTERNAL, msg)


def _ipam_type(request: Request, prefix: str = "failed to parse network config: ") -> str:
    """The reference's ``types.NetConf`` decode (its own error prefix), then ``ipam.type``."""
    from cnicore.config import NETCONF_FIELDS, Struct, decode_struct

    conf: dict[str, Any] = decode_struct(request.config, Struct("NetConf", dict(NETCONF_FIELDS)), prefix)
    return str((conf.get("ipam") or {}).get("type") or "")


@hookimpl
def cni_add(request: Request) -> Result:
    from cnicore import ip, ipam
    from cnicore.ns import open_container_netns
    from cnicore.rollback import Rollback
    from cnicore.types import Interface
    from cnicore.types import Result as Current

    if not _ipam_type(request):
        raise _fail("dummy interface requires an IPAM configuration")
    with open_container_netns(request.netns) as netns, Rollback() as undo:
        link = netns.do(_create, request.ifname)
        undo.push(f"dummy {request.ifname}", netns.do, ip.del_link_by_name, request.ifname)
        result = ipam.exec_add(request).convert("1.1.0")
        undo.push("IPAM reservation", ipam.exec_del, request)
        assert isinstance(result, Current)
        if not result.ips:
            raise _fail("IPAM plugin returned missing IP config")
        for ipc in result.ips:
            ipc.interface = 0
        result.interfaces = [Interface(link.name, link.mac, netns.path)]
        netns.do(ipam.configure_iface, request.ifname, result, request)
        undo.commit()
    return result


def _create(ifname: str) -> Link:
    from cnicore.netlink import Netlink

    with Netlink() as nl:
        try:
            return nl.add_link(ifname, "dummy")
        except OSError as exc:
            raise _fail(f"failed to create dummy: {_why(exc)}") from None


@hookimpl
def cni_del(request: Request) -> None:
    from cnicore import ip, ipam
    from cnicore.netlink import LinkNotFoundError
    from cnicore.ns import NetNSNotFoundError, with_netns_path

    _ipam_type(request)
    ipam.exec_del(request)
    if not request.netns:
        return
    try:
        with_netns_path(request.netns, ip.del_link_by_name, request.ifname)
    except (NetNSNotFoundError, LinkNotFoundError):
        pass  # already gone: DEL succeeds
    except OSError as exc:
        raise _fail(_why(exc)) from None


@hookimpl
def cni_check(request: Request) -> None:
    from cnicore import ip, ipam
    from cnicore.ns import open_container_netns

    if not _ipam_type(request):
        raise _fail("dummy interface requires an IPAM configuration")
    with open_container_netns(request.netns) as netns:
        ipam.exec_check(request)
        intf = ip.prev_result_interface(request, "dummy: Required prevResult missing")
        result = request.prev_result
        assert result is not None
        netns.do(_check_interface, intf.name if intf else "", intf.mac if intf else "", intf.sandbox if intf else "")
        netns.do(ip.validate_expected_interface_ips, request.ifname, result.ips)


def _check_interface(name: str, mac: str, sandbox: str) -> None:
    from cnicore.ip import link_by_name

    if not name:
        raise _fail(f"Container interface name missing in prevResult: {name}")
    try:
        link = link_by_name(name)
    except LookupError:
        raise _fail(f"Container Interface name in prevResult: {name} not found") from None
    if not sandbox:
        raise _fail(f"Error: Container interface {link.name} should not be in host namespace")
    if link.kind != "dummy":
        raise _fail(f"Error: Container interface {link.name} not of type dummy")
    if mac and mac != link.mac:
        raise _fail(f"Interface {name} Mac {mac} doesn't match container Mac: {link.mac}")
    if not link.is_up:
        raise _fail(f"Interface {name} is down")


@hookimpl
def cni_status(request: Request) -> None:
    from cnicore.ipam import exec_status

    _ipam_type(request, "failed to load netconf: ")
    exec_status(request)


@hookimpl
def cni_gc(request: Request) -> None:
    from cnicore.ipam import exec_gc

    if _ipam_type(request, "failed to load netconf: "):
        exec_gc(request)
