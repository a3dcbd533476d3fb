"""firewall: accept a chained container's traffic in the host's FORWARD chain (iptables).

Behaves like the reference firewall plugin's iptables backend
(plugins/meta/firewall): FORWARD jumps (first rule) to ``CNI-FORWARD``,
whose first rule jumps to the admin chain (``CNI-ADMIN`` or
``iptablesAdminChainName``) and which holds, per prevResult address, "accept
replies to it" and "accept everything from it"; ``ingressPolicy``
``same-bridge`` / ``isolated`` add the shared ``CNI-ISOLATION-STAGE-1/2``
chains for the bridge of ``prevResult.interfaces[0]``. Chain names, rule
specs and comments are the reference's, so either implementation's DEL
removes the other's rules. DEL removes the container's rules only (never the
shared chains); it needs neither the netns nor the interface. Supported
versions: 0.4.0 and later, as the reference.

Deliberate differences:

* ``backend: "firewalld"`` is a CNI error naming the backend (firewalld needs
  a running firewalld on the system D-Bus, which cnicore does not talk to);
  an unset or unknown backend means iptables (the reference picks firewalld
  when it is running);
* the isolation rules carry later releases' comments ("same-bridge|isolated"
  on the shared rules; 1.1.1 wrote "(ingressPolicy: same-bridge)" on all of
  them) and ``isolated`` is supported, as in later releases;
* every input is checked before anything changes: an unknown
  ``ingressPolicy``, a same-bridge policy without a prevResult interface or
  with a bridge name iptables refuses (16 bytes or more) fails ADD before any
  rule is written (the reference writes the CNI-FORWARD rules first); a
  bridge name with a control character is refused (iptables takes a line
  break in an interface name; in a restore batch it would start a new line);
  each protocol's changes are one
  ``iptables-restore --noflush`` batch, all-or-nothing, and a failure
  removes the container rules already written for the other protocol;
* our ADDs and DELs in one network namespace take turns (a lock), so two
  first ADDs at once never add the FORWARD jump twice (the reference can);
* CHECK changes nothing (the reference creates missing chains on CHECK);
* tools run by absolute path from /usr/sbin, /sbin, /usr/bin, /bin, never
  from the caller's PATH.

No GC or STATUS: the reference has neither (its skel answers them with success).
"""

from __future__ import annotations

from cnicore import __version__
from cnicore.errors import ERR_INTERNAL, CNIError
from cnicore.plugin import PluginInfo, hookimpl, versions_from

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnicore.request import Request
    from cnicore.types import AnyResult, Result

    from .config import FirewallNetConf
    from .table import FilterTable

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).

#: Keeps no per-request state in the process (cnicore.inprocess.warm_reusable).
WARM_REUSE = True
IFNAMSIZ = 16


@hookimpl
def cni_plugin_info() -> PluginInfo:
    return PluginInfo(versions_from("0.4.0"), about=f"CNI firewall plugin (cnicore) v{__version__}")


def _prev(request: Request) -> Result:
    from cnicore.config import lookup

    if lookup(request.config, "prevResult") is None:
        raise CNIError(ERR_INTERNAL, "missing prevResult from earlier plugin")
    result = request.prev_result
    assert result is not None
    return result


def _addresses(result: Result | None) -> tuple[list[str], list[str]]:
    """(IPv4, IPv6) host addresses of the result's IPs, in order."""
    from .rules import host_address

    v4: list[str] = []
    v6: list[str] = []
    for ip in getattr(result, "ips", None) or ():
        address, ipv6 = host_address(ip.address)
        (v6 if ipv6 else v4).append(address)
    return v4, v6


def _bridge(conf: FirewallNetConf, result: Result) -> str:
    """The bridge the isolation rules name: the first interface of the prevResult."""
    if not result.interfaces:
        raise CNIError(ERR_INTERNAL, f'interface needs to be set for ingress policy "{conf.ingress_policy}", '
                                     'make sure to chain "firewall" plugin with "bridge"')
    from .rules import has_control

    name = result.interfaces[0].name
    if not name:
        raise CNIError(ERR_INTERNAL, "got empty bridge name")
    # What iptables refuses (the reference fails there, after writing the CNI-FORWARD rules);
    # a control character could also add lines of its own to our restore batch.
    if len(name.encode("utf-8", "surrogateescape")) >= IFNAMSIZ:
        raise CNIError(ERR_INTERNAL, f"interface name `{name}' must be shorter than IFNAMSIZ (15)")
    if has_control(name):
        raise CNIError(ERR_INTERNAL, f"invalid bridge name {name!r}: control characters")
    return name


# -- ADD ---------------------------------------------------------------------------

@hookimpl
def cni_add(request: Request) -> AnyResult:
    from cnicore.rollback import Rollback

    from .config import ISOLATED, FirewallNetConf, check_backend, check_ingress_policy
    from .table import FilterTable, NetnsLock

    conf = FirewallNetConf(request.config)
    result = _prev(request)
    check_backend(conf)
    check_ingress_policy(conf)
    bridge = _bridge(conf, result) if conf.isolates else ""

    with NetnsLock(), Rollback() as undo:
        for ipv6, addresses in enumerate(_addresses(result)):
            if not addresses:
                continue
            table = FilterTable(bool(ipv6)).load()
            _add_rules(table, conf, addresses)
            if bridge:
                _add_isolation(table, bridge, conf.ingress_policy == ISOLATED)
            table.commit()
            undo.push(f"{table.family} container rules", _delete_rules, bool(ipv6), addresses)
        undo.commit()
    return result


def _add_rules(table: FilterTable, conf: FirewallNetConf, addresses: list[str]) -> None:
    """Go's setupChains and addRules."""
    from .rules import FORWARD, PRIV_CHAIN, container_rules, jump_to_admin, jump_to_priv

    table.ensure_chain(PRIV_CHAIN)
    table.ensure_chain(conf.admin_chain)
    table.insert_unique(FORWARD, jump_to_priv())
    table.insert_unique(PRIV_CHAIN, jump_to_admin(conf.admin_chain))
    for address in addresses:
        for rule in container_rules(address):
            table.append_unique(PRIV_CHAIN, rule)


def _add_isolation(table: FilterTable, bridge: str, isolated: bool) -> None:
    """Go's setupIsolationChains: the stage-1 jump goes before CNI-FORWARD's."""
    from .rules import (
        FORWARD,
        STAGE1,
        STAGE2,
        jump_to_stage1,
        stage1_bridge,
        stage1_bridge_drop,
        stage2_bridge,
        stage_return,
    )

    policy = "isolated" if isolated else "same-bridge"
    table.ensure_chain(STAGE1)
    table.ensure_chain(STAGE2)
    table.insert_unique(FORWARD, jump_to_stage1())
    table.insert_unique(STAGE1, stage1_bridge(bridge, policy))
    if isolated:
        table.insert_unique(STAGE1, stage1_bridge_drop(bridge, policy))
    table.append_unique(STAGE1, stage_return())
    table.insert_unique(STAGE2, stage2_bridge(bridge))
    table.append_unique(STAGE2, stage_return())


def _delete_rules(ipv6: bool, addresses: list[str]) -> None:
    from .rules import PRIV_CHAIN, container_rules
    from .table import FilterTable

    table = FilterTable(ipv6).load()
    for address in addresses:
        for rule in container_rules(address):
            table.delete(PRIV_CHAIN, rule)
    table.commit()


# -- DEL ---------------------------------------------------------------------------

@hookimpl
def cni_del(request: Request) -> None:
    """Remove the container's rules (those of prevResult's addresses; none without one).

    Like the reference, an unknown ingressPolicy fails DEL after the rules are gone."""
    from cnicore.config import lookup

    from .config import FirewallNetConf, check_backend, check_ingress_policy
    from .table import NetnsLock

    conf = FirewallNetConf(request.config)
    result = request.prev_result if lookup(request.config, "prevResult") is not None else None
    check_backend(conf)
    v4, v6 = _addresses(result)
    if v4 or v6:
        with NetnsLock():
            for ipv6, addresses in enumerate((v4, v6)):
                if addresses:
                    _delete_rules(bool(ipv6), addresses)
    check_ingress_policy(conf)


# -- CHECK -------------------------------------------------------------------------

@hookimpl
def cni_check(request: Request) -> None:
    from .config import FirewallNetConf, check_backend
    from .rules import FORWARD, PRIV_CHAIN, container_rules, jump_to_admin, jump_to_priv, show
    from .table import FilterTable

    conf = FirewallNetConf(request.config)
    result = _prev(request)
    check_backend(conf)
    for ipv6, addresses in enumerate(_addresses(result)):
        if not addresses:
            continue
        table = FilterTable(bool(ipv6)).load()
        if not table.has(FORWARD, jump_to_priv()):
            raise CNIError(ERR_INTERNAL, f"expected {FORWARD} rule {show(jump_to_priv())} not found")
        admin = jump_to_admin(conf.admin_chain)
        if not table.has(PRIV_CHAIN, admin):
            raise CNIError(ERR_INTERNAL, f"expected {PRIV_CHAIN} rule {show(admin)} not found")
        for address in addresses:
            for rule in container_rules(address):
                if not table.has(PRIV_CHAIN, rule):
                    raise CNIError(ERR_INTERNAL, f"expected rule {show(rule)} not found")
