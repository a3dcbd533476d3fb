"""loopback: bring ``lo`` up in the container and report its addresses.

Behaves like the reference plugin: ADD sets ``lo`` up in CNI_NETNS and
returns it (MAC all zeros, sandbox = netns) with its first IPv4 and first
IPv6 address, or passes a prevResult through unchanged; DEL sets it down and
succeeds when CNI_NETNS is empty or gone; CHECK fails if ``lo`` is down.
Unlike the reference, results for configs older than 1.0.0 are converted to
the config's format instead of printing a 1.x result under an old version.

Only the toolkit's netlink handle (:mod:`cnicore.netlink`) is used, so an exec never imports
pyroute2.
"""

from __future__ import annotations

from cnicore import __version__
from cnicore.errors import ERR_INTERNAL, CNIError
from cnicore.plugin import ALL, PluginInfo, hookimpl

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnicore.request import Request
    from cnicore.types import AnyResult

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).

#: Keeps no per-request state in the process: a warm server's worker may serve
#: the next request after this plugin's (cnicore.inprocess.warm_reusable).
WARM_REUSE = True

LOOPBACK = "lo"


@hookimpl
def cni_plugin_info() -> PluginInfo:
    return PluginInfo(ALL, about=f"CNI loopback plugin (cnicore) v{__version__}")


def _lo_up_and_addresses() -> tuple[str | None, str | None]:
    import ipaddress

    from cnicore.netlink import AF_INET, AF_INET6, Netlink

    with Netlink() as rtnl:
        link = rtnl.link(LOOPBACK)
        rtnl.set_up(link, True)
        first: list[str | None] = []
        for family in (AF_INET, AF_INET6):
            addrs = rtnl.addresses(link, family)
            for addr in addrs:
                if not ipaddress.ip_interface(addr).ip.is_loopback:
                    raise CNIError(ERR_INTERNAL, "loopback interface found with non-loopback address "
                                                 f'"{addr.split("/")[0]}"')
            first.append(addrs[0] if addrs else None)
    return first[0], first[1]


@hookimpl
def cni_add(request: Request) -> AnyResult:
    from cnicore.config import NETCONF_FIELDS, Struct, decode_struct
    from cnicore.ns import with_netns_path
    from cnicore.types import Interface, IPConfig, Result

    # The reference decodes its config into ``types.NetConf``.
    decode_struct(request.config, Struct("NetConf", NETCONF_FIELDS), "failed to parse network config: ")
    prev = request.prev_result_as_sent()
    if prev is not None:
        request.prev_result  # noqa: B018 - the reference rejects a prevResult it cannot convert
    v4, v6 = with_netns_path(request.netns, _lo_up_and_addresses)
    if prev is not None:
        return prev
    result = Result("1.1.0", interfaces=[Interface(LOOPBACK, "00:00:00:00:00:00", request.netns)])
    for addr in (v4, v6):
        if addr is not None:
            result.ips.append(IPConfig(addr, interface=0))
    return result


def _set_down() -> None:
    from cnicore.netlink import Netlink

    with Netlink() as rtnl:
        rtnl.set_up(rtnl.link(LOOPBACK), False)


@hookimpl
def cni_del(request: Request) -> None:
    from cnicore.ns import NetNSNotFoundError, with_netns_path

    if not request.netns:
        return
    try:
        with_netns_path(request.netns, _set_down)
    except NetNSNotFoundError:
        return


def _check_up() -> None:
    from cnicore.netlink import Netlink

    with Netlink() as rtnl:
        if not rtnl.link(LOOPBACK).is_up:
            raise CNIError(ERR_INTERNAL, "loopback interface is down")


@hookimpl
def cni_check(request: Request) -> None:
    from cnicore.ns import with_netns_path

    with_netns_path(request.netns, _check_up)
