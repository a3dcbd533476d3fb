"""CHECK for the bridge plugin: the bridge, the container veth and its host peer
still exist and match the prevResult, as the reference verifies them."""

from __future__ import annotations

from .links import fail

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnicore.netlink import Link
    from cnicore.ns import NetNS
    from cnicore.request import Request
    from cnicore.types import Interface, Result

    from .config import BridgeConf

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).


def _lookup(intf: Interface, in_sandbox: bool) -> Link:
    from cnicore.netlink import Netlink

    if not intf.name:
        raise fail("Interface name missing ")
    with Netlink() as rtnl:
        try:
            link = rtnl.link(intf.name)
        except LookupError:
            raise fail(f"Interface name {intf.name} not found") from None
    if in_sandbox and not intf.sandbox:
        raise fail(f"Interface {intf.name} is expected to be in a sandbox")
    if not in_sandbox and intf.sandbox:
        raise fail(f"Interface {intf.name} should not be in sandbox")
    return link


def _container_link(intf: Interface) -> Link:
    link = _lookup(intf, True)
    if link.kind != "veth":
        raise fail(f"Error: Container interface {link.name} not of type veth")
    if intf.mac and intf.mac != link.mac:
        raise fail(f"Interface {intf.name} Mac {intf.mac} doesn't match container Mac: {link.mac}")
    return link


def check_interfaces(request: Request, conf: BridgeConf, result: Result, netns: NetNS) -> None:
    from cnicore.types import Interface

    bridge_intf = Interface("")
    container_intf = Interface("")
    for intf in result.interfaces:
        if intf.name == conf.bridge:
            bridge_intf = intf
        elif intf.name == request.ifname and intf.sandbox == request.netns:
            container_intf = intf

    bridge = _lookup(bridge_intf, False)
    if bridge.kind != "bridge":
        raise fail(f"Interface {bridge.name} does not have link type of bridge")
    if bridge_intf.mac and bridge_intf.mac != bridge.mac:
        raise fail(f"Bridge interface {bridge.name} Mac doesn't match: {bridge_intf.mac}")
    if bridge.promisc != conf.promisc:
        raise fail(f"Bridge interface {bridge.name} configured Promisc Mode {str(conf.promisc).lower()} "
                   f"doesn't match current state: {str(bridge.promisc).lower()} ")
    if request.netns != container_intf.sandbox:
        raise fail(f"Sandbox in prevResult {container_intf.sandbox} doesn't match configured netns: "
                   f"{request.netns}")
    container = netns.do(_container_link, container_intf)

    veth_found = False
    for intf in result.interfaces:
        if intf.name in (bridge_intf.name, container_intf.name):
            continue
        link = _lookup(intf, False)
        if link.kind != "veth":
            continue
        if link.index != container.link or container.index != link.link or link.master != bridge.index:
            continue
        if intf.mac and intf.mac != link.mac:
            raise fail(f"Interface {intf.name} Mac doesn't match: {intf.mac} not found")
        veth_found = True
        break
    if not veth_found:
        raise fail(f"CNI veth created for bridge {conf.bridge} was not found")
