"""The reference's iptables rules, chain names and comments, as iptables-save prints them.

Every rule here is the reference's rule spec in the order ``iptables-save``
prints its parts (so "does it exist" is a comparison of token lists with the
saved table), with the reference's chain names and comments, so that Go's
firewall plugin finds, checks and deletes our rules and we find and delete
its rules.
"""

from __future__ import annotations

FILTER = "filter"
FORWARD = "FORWARD"
#: The private chain FORWARD jumps to, holding the per-container rules.
PRIV_CHAIN = "CNI-FORWARD"
STAGE1 = "CNI-ISOLATION-STAGE-1"
STAGE2 = "CNI-ISOLATION-STAGE-2"

PRIV_COMMENT = "CNI firewall plugin rules"
ADMIN_COMMENT = "CNI firewall plugin admin overrides"
#: The comment of the isolation rules every bridge shares (later releases; 1.1.1 wrote "same-bridge").
ISOLATION_COMMENT = "CNI firewall plugin rules (ingressPolicy: same-bridge|isolated)"

Rule = tuple[str, ...]


def comment(text: str) -> Rule:
    return ("-m", "comment", "--comment", text)


def jump_to_priv() -> Rule:
    """FORWARD's jump to CNI-FORWARD (Go's generateFilterRule)."""
    return (*comment(PRIV_COMMENT), "-j", PRIV_CHAIN)


def jump_to_admin(admin_chain: str) -> Rule:
    """CNI-FORWARD's first rule, the jump to the admin chain (Go's generateAdminRule)."""
    return (*comment(ADMIN_COMMENT), "-j", admin_chain)


def container_rules(address: str) -> list[Rule]:
    """The two rules of one container address (``ip/32`` or ``ip/128``): replies to it, all from it."""
    return [("-d", address, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"),
            ("-s", address, "-j", "ACCEPT")]


def policy_comment(policy: str) -> Rule:
    return comment(f"CNI firewall plugin rules (ingressPolicy: {policy})")


def jump_to_stage1() -> Rule:
    return (*comment(ISOLATION_COMMENT), "-j", STAGE1)


def stage1_bridge(bridge: str, policy: str) -> Rule:
    """Traffic leaving the bridge for elsewhere goes through stage 2."""
    return ("-i", bridge, "!", "-o", bridge, *policy_comment(policy), "-j", STAGE2)


def stage1_bridge_drop(bridge: str, policy: str) -> Rule:
    """ingressPolicy isolated: nothing between two ports of the bridge."""
    return ("-i", bridge, "-o", bridge, *policy_comment(policy), "-j", "DROP")


def stage2_bridge(bridge: str) -> Rule:
    """Traffic from another bridge into this one is dropped."""
    return ("-o", bridge, *comment(ISOLATION_COMMENT), "-j", "DROP")


def stage_return() -> Rule:
    return (*comment(ISOLATION_COMMENT), "-j", "RETURN")


def host_address(address: str) -> tuple[str, bool]:
    """The reference's ipString of a result address (``ip/32`` or ``ip/128``) and whether it
    is IPv6. The IP is printed as Go and iptables-save print it: an IPv4-mapped IPv6
    address is IPv4 (Go's To4), IPv6 in its canonical form, so the saved rule matches."""
    import _socket

    ip = address.split("/", 1)[0]
    if ":" not in ip:
        return ip + "/32", False
    raw = _socket.inet_pton(_socket.AF_INET6, ip)
    if raw[:12] == b"\0" * 10 + b"\xff\xff":
        return _socket.inet_ntop(_socket.AF_INET, raw[12:]) + "/32", False
    return _socket.inet_ntop(_socket.AF_INET6, raw) + "/128", True


def show(rule: Rule) -> str:
    """A rule spec as Go's ``%v`` prints a ``[]string``, for error texts."""
    return "[" + " ".join(rule) + "]"


def has_control(text: str) -> bool:
    """A line break, NUL or other control character: never in a restore line."""
    return any(ord(char) < 32 or ord(char) == 127 for char in text)


def quoted(rule: Rule) -> str:
    """A rule spec as one iptables-restore line (the toolkit's quoting: comments quoted).

    A token with any control character is refused first (a CNI error): a line
    break would let it add lines of its own to the batch, and no rule of this
    plugin's needs one."""
    from cnicore.errors import ERR_INTERNAL, CNIError
    from cnicore.firewall.tools import restore_line

    for token in rule:
        if has_control(token):
            raise CNIError(ERR_INTERNAL, f"refusing iptables argument {token!r}: control characters")
    return restore_line(*rule)
