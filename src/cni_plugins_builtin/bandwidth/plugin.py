"""bandwidth: limit a chained container's ingress and egress with tc token bucket filters.

Behaves like the reference bandwidth plugin (plugins/meta/bandwidth): the
container's veth peer in the host namespace is found from prevResult and the
container's interface; ingress (traffic to the container) is a tbf root qdisc
on that host veth; egress (traffic from the container) goes through an ifb
device in the host namespace, ``bwp`` + a hash of network name and container
ID (the reference's name, so either implementation's DEL removes the other's
device): an ingress qdisc on the host veth with a match-all u32 filter
redirecting to the ifb (the reference's two mirred actions, "stolen" then
"pass"), and a tbf root qdisc on the ifb. The tbf's rate, limit and buffer
are the reference's arithmetic (25 ms latency), sent over netlink as
vishvananda/netlink sends them, so ``tc qdisc show`` reads the same. The ifb
is added to the result. DEL removes the ifb (no error if it is gone, also
with the netns gone). Supported versions: 0.3.0 and later.

Deliberate differences:

* CHECK with no bandwidth configured succeeds (1.1.1 crashes on it; later
  releases return early, as we do);
* ADD without limits and without a prevResult is a CNI error ("must be
  called as chained plugin"); 1.1.1 crashes;
* ADD is all-or-nothing: a failure removes the qdiscs and the ifb it made
  (the reference leaves them);
* no GC or STATUS: the reference has neither (its skel answers them with success).
"""

from __future__ import annotations

from cnicore import __version__
from cnicore.errors import ERR_INTERNAL, CNIError
from cnicore.plugin import PluginInfo, hookimpl, versions_from

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnicore.netlink import Link, Netlink
    from cnicore.request import Request
    from cnicore.rollback import Rollback
    from cnicore.types import AnyResult, Result

    from .config import Bandwidth

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).

#: Keeps no per-request state in the process (cnicore.inprocess.warm_reusable).
WARM_REUSE = True
PSCHED = "/proc/net/psched"


@hookimpl
def cni_plugin_info() -> PluginInfo:
    return PluginInfo(versions_from("0.3.0"), about=f"CNI bandwidth plugin (cnicore) v{__version__}")


def _fail(msg: str) -> CNIError:
    return CNIError(ERR_INTERNAL, msg)


def _errtext(exc: OSError) -> str:
    """An errno's text as Go prints it (``file exists``)."""
    import os

    text = os.strerror(exc.errno) if exc.errno else str(exc)
    return text[:1].lower() + text[1:]


def _conf(request: Request) -> tuple[str, Bandwidth | None]:
    from .config import parse_conf

    name, bandwidth = parse_conf(request.config)
    request.prev_result  # noqa: B018 - like the reference, refuse a prevResult it cannot convert
    return name, bandwidth


def _tick() -> float:
    from .config import tick_in_usec

    with open(PSCHED) as fh:
        return tick_in_usec(fh.read())


def _peer_index(ifname: str) -> int:
    """In the container: the ifindex of the veth peer of ``ifname`` (0 and the error if none)."""
    from cnicore.ip import get_veth_peer_ifindex

    try:
        return get_veth_peer_ifindex(ifname)[1]
    except LookupError:
        raise _fail(f"container interface {ifname} has no veth peer: Link not found") from None
    except CNIError as exc:
        raise _fail(f"container interface {ifname} has no veth peer: {exc.msg}") from None


def _host_interface(rtnl: Netlink, result: Result, request: Request) -> Link:
    """The host end of the container's veth, which prevResult must list (Go's getHostInterface)."""
    from cnicore.ns import NetNSError, with_netns_path

    if not result.interfaces:
        raise _fail("no interfaces provided")
    try:
        peer = with_netns_path(request.netns, _peer_index, request.ifname)
    except NetNSError as exc:
        raise _fail(f'failed to open netns "{request.netns}": {exc}') from None
    try:
        link = rtnl.link_by_index(peer)
    except LookupError:
        raise _fail(f"veth peer with index {peer} is not in host ns") from None
    if not any(not iface.sandbox and iface.name == link.name for iface in result.interfaces):
        raise _fail("no veth peer of container interface found in host ns")
    return link


# -- ADD ---------------------------------------------------------------------------

@hookimpl
def cni_add(request: Request) -> AnyResult | None:
    from cnicore.netlink import Netlink

    name, bandwidth = _conf(request)
    result = request.prev_result
    if result is None:
        raise _fail("must be called as chained plugin")
    if bandwidth is None or bandwidth.is_zero:
        return result  # nothing to shape: prevResult passes through
    with Netlink() as rtnl:
        host = _host_interface(rtnl, result, request)
        _shape(rtnl, bandwidth, host, name, request.container_id, result)
    return result


def _shape(rtnl: Netlink, bandwidth: Bandwidth, host: Link, network: str, container_id: str,
           result: Result) -> None:
    """All or nothing: a failure takes away what this ADD made (the reference leaves it)."""
    from cnicore.rollback import Rollback

    from .config import ifb_name, tbf_params

    tick = _tick()
    with Rollback() as undo:
        if bandwidth.ingress:
            rate, limit, buffer = tbf_params(bandwidth.ingress_rate, bandwidth.ingress_burst, tick)
            try:
                rtnl.add_qdisc_tbf(host, rate=rate, limit=limit, buffer=buffer)
            except OSError as exc:
                raise _fail(f"create qdisc: {_errtext(exc)}") from None
            undo.push("ingress tbf", rtnl.delete_qdisc, host.index)
        if bandwidth.egress:
            _shape_egress(rtnl, bandwidth, host, ifb_name(network, container_id), tick, result, undo)
        undo.commit()


def _shape_egress(rtnl: Netlink, bandwidth: Bandwidth, host: Link, ifb: str, tick: float, result: Result,
                  undo: Rollback) -> None:
    """The ifb, the host veth's ingress qdisc redirecting to it, and the ifb's tbf."""
    from cnicore.netlink import TC_ACT_OK, TC_ACT_STOLEN, TC_H_INGRESS
    from cnicore.types import Interface

    from .config import tbf_params

    try:
        device = rtnl.add_link(ifb, "ifb", mtu=host.mtu, txqlen=0, up=True)
    except OSError as exc:
        raise _fail(f"adding link: {_errtext(exc)}") from None
    undo.push(f"ifb {ifb}", rtnl.delete_link, device.index)
    result.interfaces.append(Interface(ifb, device.mac))
    try:
        rtnl.add_qdisc_ingress(host)
    except OSError as exc:
        raise _fail(f"create ingress qdisc: {_errtext(exc)}") from None
    undo.push("ingress qdisc", lambda: rtnl.delete_qdisc(host.index, parent=TC_H_INGRESS, handle=0xFFFF0000))
    try:
        rtnl.add_redirect_filter(host, device, controls=(TC_ACT_STOLEN, TC_ACT_OK))
    except OSError as exc:
        raise _fail(f"add filter: {_errtext(exc)}") from None
    rate, limit, buffer = tbf_params(bandwidth.egress_rate, bandwidth.egress_burst, tick)
    try:
        rtnl.add_qdisc_tbf(device, rate=rate, limit=limit, buffer=buffer)
    except OSError as exc:
        raise _fail(f"create ifb qdisc: create qdisc: {_errtext(exc)}") from None


# -- DEL ---------------------------------------------------------------------------

@hookimpl
def cni_del(request: Request) -> None:
    """Remove the ifb (the qdiscs on the host veth go with the veth)."""
    from cnicore.netlink import Netlink

    from .config import ifb_name, parse_conf

    name, _bandwidth = parse_conf(request.config)
    with Netlink() as rtnl:
        try:
            rtnl.delete_link(ifb_name(name, request.container_id))
        except LookupError:
            pass


# -- CHECK -------------------------------------------------------------------------

@hookimpl
def cni_check(request: Request) -> None:
    from cnicore.netlink import Netlink

    from .config import ifb_name, tbf_params

    name, bandwidth = _conf(request)
    result = request.prev_result
    if result is None:
        raise _fail("must be called as a chained plugin")
    with Netlink() as rtnl:
        host = _host_interface(rtnl, result, request)
        if bandwidth is None or bandwidth.is_zero:
            return
        tick = _tick()
        if bandwidth.ingress:
            _check_tbf(rtnl, host, tbf_params(bandwidth.ingress_rate, bandwidth.ingress_burst, tick))
        if bandwidth.egress:
            ifb = ifb_name(name, request.container_id)
            try:
                device = rtnl.link(ifb)
            except LookupError:
                raise _fail("get ifb device: Link not found") from None
            _check_tbf(rtnl, device, tbf_params(bandwidth.egress_rate, bandwidth.egress_burst, tick))


def _check_tbf(rtnl: Netlink, link: Link, expected: tuple[int, int, int]) -> None:
    """Go's CHECK: the leading tbf qdiscs of the link (pfifo_fast ignored) have these values."""
    rate, limit, buffer = expected
    qdiscs = [q for q in rtnl.qdiscs(link) if q.kind != "pfifo_fast"]
    if not qdiscs:
        raise _fail("Failed to find qdisc")
    for qdisc in qdiscs:
        if qdisc.kind != "tbf":
            break
        if qdisc.rate != rate:
            raise _fail("Rate doesn't match")
        if qdisc.limit != limit:
            raise _fail("Limit doesn't match")
        if qdisc.buffer != buffer:
            raise _fail("Buffer doesn't match")
