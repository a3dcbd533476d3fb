"""IPAM for main plugins (public toolkit): Go's ``pkg/ipam``.

A main plugin delegates addresses to the plugin its config names in
``ipam.type``: :func:`exec_add` (returns that plugin's result),
:func:`exec_check`, :func:`exec_del`, :func:`exec_status`, :func:`exec_gc`
— Go's ``ipam.ExecAdd`` and friends — and then applies the result to the
container interface with :func:`configure_iface` (Go's
``ipam.ConfigureIface``). :func:`run_ipam` is the general form (any command).

Every call goes through the ``cni_ipam`` hook, so a policy plugin can serve
IPAM itself. The default implementation here finds ``ipam.type`` in
CNI_PATH; when that file is a cnicore launcher for this same interpreter, the
IPAM plugin runs in-process through :func:`cnicore.skel.run` (same validation,
same bytes, no exec); otherwise the binary is exec'd through
:mod:`cnicore.invoke`. Either way the IPAM plugin sees the original stdin and
environment with only CNI_COMMAND changed, as delegation requires.
"""

from __future__ import annotations

import sys

from cnicore._go import lookup
from cnicore.errors import ERR_INTERNAL, ERR_INVALID_NETWORK_CONFIG, CNIError
from cnicore.plugin import hookimpl

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnicore.launchers import LauncherHeader
    from cnicore.request import Request
    from cnicore.types import AnyResult, Result

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).

__all__ = [
    "configure_iface",
    "exec_add",
    "exec_check",
    "exec_del",
    "exec_gc",
    "exec_status",
    "ipam_type",
    "run_ipam",
]


def ipam_type(request: Request) -> str:
    """``config["ipam"]["type"]``.

    Missing or empty, it is the reference's delegate lookup failing on an empty
    name (Go's ptp: 999 "no plugin name provided"); not a string, a config error."""
    kind = lookup(lookup(request.config, "ipam"), "type")
    if kind is None or kind == "":
        raise CNIError(ERR_INTERNAL, "no plugin name provided")
    if not isinstance(kind, str):
        raise CNIError(ERR_INVALID_NETWORK_CONFIG, f"ipam type must be a string, not {type(kind).__name__}")
    return kind


def run_ipam(request: Request, command: str | None = None) -> AnyResult | None:
    """Run IPAM ``command`` (default: the request's) through the ``cni_ipam`` hook.

    Returns the result for ADD, ``None`` otherwise.
    """
    command = command or request.command
    kind = ipam_type(request)
    if request.host is None:
        outcome = cni_ipam(command, kind, request)
    else:
        outcome = request.host.call_hook("cni_ipam", command=command, ipam_type=kind, request=request)
    if command == "ADD":
        if outcome is None or outcome is True:
            raise CNIError(ERR_INVALID_NETWORK_CONFIG, f"IPAM plugin {kind!r} returned no result")
        return outcome
    return None


def exec_add(request: Request) -> AnyResult:
    """IPAM ADD for the request's ``ipam.type``: its result (any version family;
    ``.convert("1.1.0")`` for the current one). Go's ``ipam.ExecAdd``."""
    result = run_ipam(request, "ADD")
    assert result is not None
    return result


def exec_check(request: Request) -> None:
    """IPAM CHECK (raises the IPAM plugin's error). Go's ``ipam.ExecCheck``."""
    run_ipam(request, "CHECK")


def exec_del(request: Request) -> None:
    """IPAM DEL: release what ADD reserved (also the undo of :func:`exec_add`). Go's ``ipam.ExecDel``."""
    run_ipam(request, "DEL")


def exec_status(request: Request) -> None:
    """IPAM STATUS: raises when the IPAM plugin cannot serve ADDs now. Go's ``ipam.ExecStatus``."""
    run_ipam(request, "STATUS")


def exec_gc(request: Request) -> None:
    """IPAM GC with the request's ``cni.dev/valid-attachments``. Go's ``ipam.ExecGC``."""
    run_ipam(request, "GC")


@hookimpl(trylast=True)
def cni_ipam(command: str, ipam_type: str, request: Request) -> AnyResult | bool:
    """Default: in-process for a cnicore launcher of this interpreter, exec otherwise."""
    from cnicore import invoke
    from cnicore.launchers import read_header

    path = invoke.find_in_path(ipam_type, request.paths)
    header = read_header(path)
    env = dict(request.env)
    env["CNI_COMMAND"] = command
    if header is not None and header.runs_here():
        return _run_in_process(header, command, request.stdin, env)
    args = invoke.DelegateArgs(command)
    if command == "ADD":
        return invoke.exec_plugin_with_result(path, request.stdin, args, env_base=request.env)
    invoke.exec_plugin_without_result(path, request.stdin, args, env_base=request.env)
    return True


def _run_in_process(header: LauncherHeader, command: str, stdin: bytes,
                    env: dict[str, str]) -> AnyResult | bool:
    """Serve the request as the launcher would (:mod:`cnicore.inprocess`)."""
    from cnicore import inprocess, invoke, wire

    name = header.type
    code, out, err = inprocess.run(header, env, stdin)
    if err:
        sys.stderr.buffer.write(err)
    if code != 0:
        try:
            raise CNIError.from_dict(wire.loads(out))
        except ValueError:
            raise CNIError(0, f"IPAM plugin {name} failed: {out!r}") from None
    if command != "ADD":
        return True
    from cnicore.types import parse_result

    version, fixed = invoke.fixup_result_version(stdin, out)
    return parse_result(fixed, version)


# -- configuring an interface from a result ------------------------------------------


def _fail(msg: str) -> CNIError:
    return CNIError(ERR_INTERNAL, msg)


def _enable_ipv6(ifname: str, request: Request | None) -> None:
    from cnicore import sysctl

    for iface in ("lo", ifname):
        path = sysctl.key_to_path("net.ipv6.conf.IFNAME.disable_ipv6", iface)
        try:
            if sysctl.read(path) == "0":
                continue
        except OSError:
            continue
        sysctl.write("net.ipv6.conf.IFNAME.disable_ipv6", "0", ifname=iface, request=request)
    sysctl.write("net.ipv6.conf.IFNAME.keep_addr_on_down", "1", ifname=ifname, request=request)


def configure_iface(ifname: str, result: Result, request: Request | None = None) -> None:
    """Apply a (1.x) result to ``ifname`` in the calling thread's namespace (the
    container's: run it through ``NetNS.do``), as Go's ``ipam.ConfigureIface``.

    Adds the result's addresses whose ``interface`` index names ``ifname``
    (enabling IPv6 on it first if needed, through the sysctl policy: pass the
    ``request``), brings it up, waits for IPv6 DAD when there is an IPv6
    gateway, and adds the routes (a route without ``gw`` uses the first gateway
    of its family). Raises :class:`~cnicore.errors.CNIError` (999) with the
    reference's text.
    """
    from cnicore.ip import DAD_SETTLE_TIMEOUT, _settle
    from cnicore.netlink import Netlink
    from cnicore.types import is_ipv4

    if not result.interfaces:
        raise _fail("no interfaces to configure")
    with Netlink() as rtnl:
        try:
            link = rtnl.link(ifname)
        except LookupError as exc:
            raise _fail(f'failed to lookup "{ifname}": {exc}') from None
        gw4 = gw6 = ""
        ipv6_enabled = False
        for ipc in result.ips:
            if ipc.interface is None:
                continue
            if not 0 <= ipc.interface < len(result.interfaces) or result.interfaces[ipc.interface].name != ifname:
                raise _fail(f'failed to add IP addr {ipc.address} to "{ifname}": invalid interface index')
            v4 = is_ipv4(ipc.address)
            if not v4 and not ipv6_enabled:
                _enable_ipv6(ifname, request)
                ipv6_enabled = True
            try:
                rtnl.add_address(link, ipc.address)
            except OSError as exc:
                raise _fail(f'failed to add IP addr {ipc.address} to "{ifname}": {exc.strerror}') from None
            if ipc.gateway:
                if is_ipv4(ipc.gateway) and not gw4:
                    gw4 = ipc.gateway
                elif not is_ipv4(ipc.gateway) and not gw6:
                    gw6 = ipc.gateway
        try:
            rtnl.set_up(link, True)
        except OSError as exc:
            raise _fail(f'failed to set "{ifname}" UP: {exc.strerror}') from None
        if gw6:
            _settle(rtnl, ifname, DAD_SETTLE_TIMEOUT)
        for route in result.routes:
            gw = route.gw or (gw4 if is_ipv4(route.dst) else gw6)
            try:
                rtnl.add_route(route.dst, gw=gw, link=link, table=route.table, scope=route.scope,
                               priority=route.priority, mtu=route.mtu, advmss=route.advmss)
            except OSError as exc:
                raise _fail(f"failed to add route '{route.dst} via {gw or '<nil>'} dev {ifname} "
                            f"metric {route.priority}': {exc.strerror}") from None
