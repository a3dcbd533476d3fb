"""vrf: put the container interface into a VRF (a chained plugin, after the main one).

Behaves like the reference vrf plugin (config, result, CHECK, error texts; spec
0.3.1 on):

* ADD — needs ``prevResult``; in the container the VRF ``vrfname`` is joined if
  it exists (a different ``table`` is an error) or created and set up, on
  ``table`` or, when absent, the lowest table (from 1) no VRF there uses; the
  interface is enslaved to it, its global IPv6 addresses put back (the kernel
  drops them), and its universe-scope routes of the main table moved into the
  VRF's table (:mod:`.vrf`). The result is ``prevResult``, unchanged.
* DEL — the interface leaves the VRF; the VRF is deleted when no interface is
  left in it; succeeds when the namespace or the VRF is gone.
* CHECK — the interface must be in the VRF.

Deliberate differences: DEL also succeeds when the interface is gone while the
VRF stays (the reference fails "resetMaster: could not get link by name"; spec
1.1 wants DEL to succeed when resources are gone). Like the reference, no STATUS
or GC beyond the defaults (the plugin keeps no state outside the container).

Imports: only the public toolkit.
"""

from __future__ import annotations

from cnicore import __version__
from cnicore.errors import ERR_INTERNAL, CNIError
from cnicore.plugin import PluginInfo, hookimpl
from cnicore.version import versions_from

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from cnicore.netlink import Netlink
    from cnicore.request import Request
    from cnicore.types import AnyResult

#: Keeps no per-request state in the process (cnicore.inprocess.warm_reusable).
WARM_REUSE = True

@hookimpl
def cni_plugin_info() -> PluginInfo:
    return PluginInfo(versions_from("0.3.1"), about=f"CNI vrf plugin (cnicore) v{__version__}")


def _fail(msg: str) -> CNIError:
    return CNIError(ERR_INTERNAL, msg)


class _Conf:
    __slots__ = ("vrf_name", "table", "has_prev")

    def __init__(self, request: Request) -> None:
        from cnicore.config import NETCONF_FIELDS, PREFIX, STRING, Scalar, Struct, decode_struct, lookup

        schema = Struct("VRFNetConf", {**NETCONF_FIELDS, "vrfname": STRING, "table": Scalar("uint32")})
        conf = decode_struct(request.config, schema, PREFIX)
        self.vrf_name: str = conf.get("vrfname") or ""
        self.table: int = conf.get("table") or 0
        if not self.vrf_name:
            raise _fail("configuration is expected to have a valid vrf name")
        self.has_prev = lookup(request.config, "prevResult") is not None


def _in_netns(request: Request, fn: Any, *args: Any) -> Any:
    from cnicore.netlink import Netlink
    from cnicore.ns import with_netns_path

    def run() -> Any:
        with Netlink() as nl:
            return fn(nl, *args)

    return with_netns_path(request.netns, run)


@hookimpl
def cni_add(request: Request) -> AnyResult:
    from cnicore.types import Result as Current

    conf = _Conf(request)
    if not conf.has_prev:
        raise _fail("missing prevResult from earlier plugin")
    result = request.prev_result
    try:
        _in_netns(request, _add, conf, request.ifname)
    except CNIError as exc:
        raise _fail(f"cmdAdd failed: {exc.msg}") from None
    except Exception as exc:  # noqa: BLE001 - netns errors, in the reference's wrapping
        raise _fail(f"cmdAdd failed: {exc}") from None
    return result if result is not None else Current("1.1.0")


def _add(nl: Netlink, conf: _Conf, ifname: str) -> None:
    from cnicore.netlink import LinkNotFoundError

    from .vrf import add_interface, create_vrf, find_vrf

    try:
        vrf, table = find_vrf(nl, conf.vrf_name)
    except LinkNotFoundError:
        vrf, table = create_vrf(nl, conf.vrf_name, conf.table)
    else:
        if conf.table and table != conf.table:
            raise _fail(f"VRF {conf.vrf_name} already exist with different routing table {table}")
    add_interface(nl, vrf, table, ifname)


@hookimpl
def cni_del(request: Request) -> None:
    from cnicore.ns import NetNSNotFoundError

    conf = _Conf(request)
    if not request.netns:
        return
    try:
        _in_netns(request, _del, conf, request.ifname)
    except NetNSNotFoundError:
        return


def _del(nl: Netlink, conf: _Conf, ifname: str) -> None:
    from cnicore.netlink import LinkNotFoundError

    from .vrf import assigned_interfaces, find_vrf, reset_master

    try:
        vrf, _table = find_vrf(nl, conf.vrf_name)
    except LinkNotFoundError:
        return
    try:
        nl.link(ifname)
    except LinkNotFoundError:
        pass  # gone already (see the module docstring)
    else:
        reset_master(nl, ifname)
    if not assigned_interfaces(nl, vrf):
        try:
            nl.delete_link(vrf)
        except LinkNotFoundError:
            pass


@hookimpl
def cni_check(request: Request) -> None:
    conf = _Conf(request)
    if not conf.has_prev:
        raise _fail("missing prevResult from earlier plugin")
    try:
        _in_netns(request, _check, conf, request.ifname)
    except CNIError:
        raise
    except LookupError:
        raise _fail("Link not found") from None
    except Exception as exc:  # noqa: BLE001
        raise _fail(str(exc)) from None


def _check(nl: Netlink, conf: _Conf, ifname: str) -> None:
    from .vrf import assigned_interfaces, find_vrf

    vrf, _table = find_vrf(nl, conf.vrf_name)
    if not any(link.name == ifname for link in assigned_interfaces(nl, vrf)):
        raise _fail(f"failed to find {ifname} associated to vrf {conf.vrf_name}")
