"""portmap: publish container ports on the host, as a chained plugin.

Behaves like the reference portmap (containernetworking/plugins
``plugins/meta/portmap``): ``runtimeConfig.portMappings`` (``hostPort``,
``containerPort``, ``protocol`` tcp/udp/sctp, ``hostIP``), ``snat`` (hairpin
and localhost masquerade, default true), ``markMasqBit`` (default 13) or
``externalSetMarkChain``, ``conditionsV4``/``conditionsV6``, ``masqAll`` and
``backend`` (``iptables`` with the reference's chains, or ``nftables`` as
later releases have it); forwards to the first IPv4 and the first IPv6 address
of prevResult on the container's interface; sets ``route_localnet`` on the
host interface that routes to the container's IPv4 address, so 127.0.0.1
connections to the host port reach it; drops stale UDP conntrack entries for
the host ports (:mod:`cnicore.conntrack`). The rules are the reference's, byte for
byte, so Go's DEL removes ours and ours Go's.

Deliberate differences:

* rules are written in batches (``iptables-save`` + one ``iptables-restore
  --noflush``, or one ``nft -f``), not one exec per rule; see
  :mod:`.iptables` and :mod:`.nftables`;
* CHECK looks for each address's rules in that address's family only; Debian's
  1.1.1 also looks for the IPv4 rules in ip6tables, so its CHECK fails for
  every container with mappings (later releases fixed it, as here);
* the default backend is iptables when the ``iptables`` tool is installed
  (the reference also runs it once to see that it works);
* the tools are run from the system's directories, never from the caller's
  PATH (:mod:`cnicore.firewall.tools`);
* a protocol, hostIP or condition that would end its command in the batch
  (a line break; for nft also ``;`` or ``#``) is refused: exec'd per rule, the
  reference's iptables sees each as one argument, but its nft script (knftables
  joins the text) would run the rest as commands of their own;
* GC and STATUS are not implemented by the reference (no-ops there and here).
"""

from __future__ import annotations

from cnicore import __version__
from cnicore.errors import ERR_INTERNAL, CNIError
from cnicore.plugin import ALL, PluginInfo, hookimpl

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Any, Callable

    from cnicore.request import Request
    from cnicore.types import AnyResult

    from .config import ContainerNet, PortMapConf

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).

#: Keeps no per-request state in the process: a warm server's worker may serve
#: the next request after this plugin's (cnicore.inprocess.warm_reusable).
WARM_REUSE = True


@hookimpl
def cni_plugin_info() -> PluginInfo:
    return PluginInfo(ALL, about=f"CNI portmap plugin (cnicore) v{__version__}")


def _nft_fallback() -> bool:
    """No backend given: nftables only if iptables is not installed and nft is usable."""
    from cnicore.firewall.tools import find_tool

    if find_tool("iptables") is not None:
        return False
    from cnicore.firewall.masquerade import NFTABLES, backend_for

    return backend_for(None) == NFTABLES


def _conf(request: Request, prefix: str) -> tuple[PortMapConf, ContainerNet | None, ContainerNet | None]:
    """Parse like the reference's parseConfig; errors get ``prefix`` (ADD and DEL wrap them)."""
    from cnicore.config import NetConfError

    from .config import container_nets, parse_conf

    try:
        conf = parse_conf(request.config, _nft_fallback)
        result = request.prev_result if conf.has_prev_result else None
    except (NetConfError, CNIError) as exc:
        raise CNIError(getattr(exc, "code", ERR_INTERNAL) or ERR_INTERNAL, prefix + str(getattr(exc, "msg", exc))) \
            from None
    v4, v6 = container_nets(result, request.ifname)
    return conf, v4, v6


def _backend(conf: PortMapConf) -> ModuleType:
    """The backend module: forward_ports, check_ports, unforward_ports."""
    from .config import NFTABLES

    if conf.backend == NFTABLES:
        from . import nftables

        return nftables
    from . import iptables

    return iptables


def _firewall(fn: Callable[..., None], *args: Any) -> None:
    """Run a backend step; a tool failure is the reference's internal error."""
    from cnicore.firewall.tools import FirewallError

    try:
        fn(*args)
    except FirewallError as exc:
        raise CNIError(ERR_INTERNAL, str(exc)) from None


# -- ADD ---------------------------------------------------------------------------

@hookimpl
def cni_add(request: Request) -> AnyResult:
    conf, v4, v6 = _conf(request, "failed to parse config: ")
    prev = request.prev_result_as_sent()
    if prev is None:
        raise CNIError(ERR_INTERNAL, "must be called as chained plugin")
    if not conf.mappings:
        return prev
    backend = _backend(conf)
    if v4 is not None:
        _firewall(backend.forward_ports, conf, request.container_id, v4)
        _delete_stale_udp_entries(conf, ipv6=False)
        if conf.snat:
            _enable_localnet_routing(v4.ip, request)
    if v6 is not None:
        _firewall(backend.forward_ports, conf, request.container_id, v6)
        _delete_stale_udp_entries(conf, ipv6=True)
    return prev


def _delete_stale_udp_entries(conf: PortMapConf, ipv6: bool) -> None:
    """Drop conntrack entries for the UDP host ports, made before the rules existed, or UDP
    flows keep following them past the new DNAT. As the reference: after the rules are in
    place, and a failure only costs that cleanup."""
    ports = sorted({m.host_port for m in conf.mappings if m.protocol.lower() == "udp"})
    if not ports:
        return
    from cnicore.conntrack import PROTOCOL_UDP, delete_entries_for_dst_port
    from cnicore.netlink import AF_INET, AF_INET6

    for port in ports:
        try:
            delete_entries_for_dst_port(port, PROTOCOL_UDP, AF_INET6 if ipv6 else AF_INET)
        except (OSError, ValueError):
            return


def _enable_localnet_routing(container_ip: str, request: Request) -> None:
    """route_localnet=1 on the host interface that routes to the container, so 127/8
    sources may cross it (localhost connections to the host port)."""
    from cnicore import sysctl
    from cnicore.netlink import Netlink

    try:
        with Netlink() as nl:
            name = nl.link_by_index(nl.route_get(container_ip).ifindex).name
    except (OSError, LookupError):
        return  # as the reference: no route, no interface to change
    try:
        sysctl.write("net.ipv4.conf.IFNAME.route_localnet", "1", ifname=name, request=request)
    except CNIError as exc:
        raise CNIError(ERR_INTERNAL, f"unable to enable route_localnet: {exc.msg}") from None


# -- DEL ---------------------------------------------------------------------------

@hookimpl
def cni_del(request: Request) -> None:
    """Idempotent, and needs neither the netns nor prevResult: the rules are found by name."""
    conf, _v4, _v6 = _conf(request, "failed to parse config: ")
    if not conf.mappings:
        return
    _firewall(_backend(conf).unforward_ports, conf, request.container_id)


# -- CHECK -------------------------------------------------------------------------

@hookimpl
def cni_check(request: Request) -> None:
    conf, v4, v6 = _conf(request, "")
    if not conf.has_prev_result:
        raise CNIError(ERR_INTERNAL, "Required prevResult missing")
    if not conf.mappings:
        return
    backend = _backend(conf)
    for net in (v4, v6):
        if net is not None:
            _firewall(backend.check_ports, conf, request.container_id, net)
