"""MAC spoof check (public toolkit; Go's ``link.SpoofChecker``): drop a port's frames from other MACs.

Same nftables objects as the reference's ``pkg/link/spoofcheck.go``, so either
implementation can remove the other's: in table ``bridge nat``, base chain
``PREROUTING`` (filter, prerouting hook, priority -300, policy accept) gets
``iifname "<host veth>" jump cni-br-iface-<refID>``; that chain jumps to
``cni-br-iface-<refID>-mac``, which returns for ``ether saddr <mac>`` and
drops everything else. Every rule carries the comment ``macspoofchk-<refID>``;
refID is ``<containerID>-<ifname>`` (:func:`cnicore.utils.spoofcheck_ref_id`).

Like Go we apply two batches (declare table and chains, then flush and fill
our chains) and leave the shared table and base chain in place on teardown.
Two deliberate differences: a repeated setup replaces the PREROUTING jump
instead of adding a second one, and teardown is idempotent (it only deletes
what it found), where Go reports an error for chains that are already gone.
"""

from __future__ import annotations

from cnicore.firewall.command import FirewallError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).

__all__ = ["setup_mac_spoof_check", "teardown_mac_spoof_check", "iface_chain_name",
           "mac_chain_name", "rule_comment"]

FAMILY = "bridge"
TABLE = "nat"
BASE_CHAIN = "PREROUTING"
BASE_CHAIN_PRIORITY = -300
COMMENT_PREFIX = "macspoofchk-"


def iface_chain_name(ref_id: str) -> str:
    return "cni-br-iface-" + ref_id


def mac_chain_name(ref_id: str) -> str:
    return iface_chain_name(ref_id) + "-mac"


def rule_comment(ref_id: str) -> str:
    return COMMENT_PREFIX + ref_id


def _chain(name: str, **base: Any) -> dict[str, Any]:
    return {"family": FAMILY, "table": TABLE, "name": name, **base}


def _rule(chain: str, ref_id: str, *expr: dict[str, Any]) -> dict[str, Any]:
    return {"rule": {"family": FAMILY, "table": TABLE, "chain": chain, "expr": list(expr),
                     "comment": rule_comment(ref_id)}}


def _delete_rule(chain: str, handle: int) -> dict[str, Any]:
    return {"delete": {"rule": {"family": FAMILY, "table": TABLE, "chain": chain, "handle": handle}}}


def _our_base_rules(items: list[dict[str, Any]], ref_id: str) -> list[int]:
    """Handles of PREROUTING rules labelled with ref_id (Go matches them by comment, not content)."""
    from cnicore.firewall.nftables import objects_of

    comment = rule_comment(ref_id)
    return [rule["handle"] for rule in objects_of(items, "rule")
            if rule.get("family") == FAMILY and rule.get("table") == TABLE
            and rule.get("chain") == BASE_CHAIN and rule.get("comment") == comment
            and isinstance(rule.get("handle"), int)]


def setup_mac_spoof_check(host_ifname: str, mac: str, ref_id: str) -> None:
    """Let only frames with source ``mac`` in from bridge port ``host_ifname``.

    ``mac`` is the container interface's address as the result reports it.
    Raises FirewallError ("failed to setup spoof-check: ...") like Go.
    """
    from cnicore.firewall import nftables

    iface_chain, mac_chain = iface_chain_name(ref_id), mac_chain_name(ref_id)
    base = _chain(BASE_CHAIN, type="filter", hook="prerouting", prio=BASE_CHAIN_PRIORITY, policy="accept")
    try:
        # Declaring is harmless when everything exists; it lets the flushes below succeed.
        nftables.apply_json([{"table": {"family": FAMILY, "name": TABLE}}, {"chain": base},
                             {"chain": _chain(iface_chain)}, {"chain": _chain(mac_chain)}])
        stale = _our_base_rules(nftables.list_objects("chain", FAMILY, TABLE, BASE_CHAIN), ref_id)
        nftables.apply_json([
            *(_delete_rule(BASE_CHAIN, handle) for handle in stale),
            {"flush": {"chain": _chain(iface_chain)}},
            {"flush": {"chain": _chain(mac_chain)}},
            _rule(BASE_CHAIN, ref_id,
                  {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": host_ifname}},
                  {"jump": {"target": iface_chain}}),
            _rule(iface_chain, ref_id, {"jump": {"target": mac_chain}}),
            _rule(mac_chain, ref_id,
                  {"match": {"op": "==", "left": {"payload": {"protocol": "ether", "field": "saddr"}},
                             "right": mac}},
                  {"return": None}),
            _rule(mac_chain, ref_id, {"drop": None}),
        ])
    except FirewallError as exc:
        raise FirewallError(f"failed to setup spoof-check: {exc}", exc.status, exc.stderr) from exc


def teardown_mac_spoof_check(ref_id: str) -> None:
    """Remove the PREROUTING jump and both chains of ``ref_id``; fine if already gone.

    Needs neither the interface nor the MAC, so DEL can call it without the
    container's netns. The shared table and base chain stay, as in Go.
    """
    from cnicore.firewall import nftables

    iface_chain, mac_chain = iface_chain_name(ref_id), mac_chain_name(ref_id)
    for attempt in range(2):
        try:
            items = nftables.list_objects("table", FAMILY, TABLE)
        except FirewallError as exc:
            if nftables.is_not_found(exc):
                return  # no table: nothing of ours can exist
            raise FirewallError(f"failed to teardown spoof-check: {exc}", exc.status, exc.stderr) from exc
        chains = {chain.get("name") for chain in nftables.objects_of(items, "chain")
                  if chain.get("family") == FAMILY and chain.get("table") == TABLE}
        commands = [_delete_rule(BASE_CHAIN, handle) for handle in _our_base_rules(items, ref_id)]
        # Deleting the iface chain also drops its jump into the mac chain, so order matters.
        commands += [{"delete": {"chain": _chain(name)}} for name in (iface_chain, mac_chain) if name in chains]
        if not commands:
            return
        try:
            nftables.apply_json(commands)
            return
        except FirewallError as exc:
            # Something vanished between list and delete (a concurrent DEL): look again once.
            if attempt == 0 and nftables.is_not_found(exc):
                continue
            raise FirewallError(f"failed to teardown spoof-check: {exc}", exc.status, exc.stderr) from exc
