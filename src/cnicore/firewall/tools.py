"""The netfilter tools for plugins that write their own rules (public toolkit).

A plugin with rules of its own (portmap's NAT chains, a firewall's filter
chains) needs what :mod:`cnicore.firewall.masquerade` does inside: run
``iptables``/``ip6tables``/``nft`` from the system's own directories
(:data:`TOOL_DIRS`, never the caller's PATH: a warm server's worker runs with
the server's privileges), in the calling thread's network namespace, with
failures as :class:`FirewallError`. On top of the one-command-at-a-time
:class:`IPTables` (go-iptables' calls, for rules that must be probed one by
one), it offers batches: read a whole table with :func:`iptables_save` and
change it with one :func:`iptables_restore` (``--noflush``: only the lines
given are applied, in one transaction; :func:`restore_line` writes a line),
or one ``nft -f`` script with :func:`nft_apply`. The reference execs a tool per rule; a batch is one exec
for any number of rules, and the rules it leaves are the same.
"""

from __future__ import annotations

from cnicore.firewall.command import TOOL_DIRS, FirewallError, ToolMissingError, find_tool, run
from cnicore.firewall.iptables import IPTables, is_not_exist, split_rule
from cnicore.firewall.nftables import apply_script as nft_apply
from cnicore.firewall.nftables import is_not_found as nft_is_not_found
from cnicore.firewall.nftables import list_objects as nft_list
from cnicore.firewall.nftables import objects_of as nft_objects
from cnicore.firewall.nftables import quote as nft_quote

__all__ = [
    "TOOL_DIRS",
    "FirewallError",
    "IPTables",
    "ToolMissingError",
    "find_tool",
    "iptables_restore",
    "iptables_save",
    "is_not_exist",
    "nft_apply",
    "nft_is_not_found",
    "nft_list",
    "nft_objects",
    "nft_quote",
    "restore_line",
    "run",
    "split_rule",
]


def iptables_save(table: str, ipv6: bool = False) -> str:
    """``iptables-save -t table`` (``ip6tables-save`` with ``ipv6``): the table as restore lines.

    The output has ``:CHAIN`` lines for every chain and ``-A CHAIN ...`` lines in
    the canonical form iptables prints (``-s 10.0.0.0/24 -p tcp -m tcp --dport 80``),
    so a caller can tell which chains and rules exist with one exec."""
    return run(["ip6tables-save" if ipv6 else "iptables-save", "-t", table])


def iptables_restore(text: str, ipv6: bool = False) -> None:
    """Apply restore lines (``*table``, ``:CHAIN - [0:0]``, ``-A``/``-I``/``-D``/``-F``/``-X``,
    ``COMMIT``) with ``--noflush`` and the xtables lock, as one transaction.

    ``--noflush`` leaves everything not named alone; a ``:CHAIN`` line for a chain
    that exists flushes it, so declare only chains that are new."""
    run(["ip6tables-restore" if ipv6 else "iptables-restore", "--noflush", "--wait"], stdin=text)


#: Unquoted in a restore line; anything else is double-quoted (comments hold spaces and quotes).
_RESTORE_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:,=+@[]%!")


def restore_line(*tokens: str) -> str:
    """One ``iptables-restore`` line (``restore_line("-A", chain, *rule)``): the tokens
    joined, each double-quoted with ``\\``-escapes where its parser needs it.

    A token holding a line break or NUL is refused (:class:`FirewallError`):
    restore reads a line at a time, so it would add lines of its own to the
    batch, and iptables exec'd with it as one argument would refuse it too."""
    out = []
    for token in tokens:
        if any(c in token for c in "\n\r\0"):
            raise FirewallError(f"invalid iptables argument {token!r}: line breaks are not allowed")
        if token and all(c in _RESTORE_SAFE for c in token):
            out.append(token)
        else:
            out.append('"' + token.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return " ".join(out)
