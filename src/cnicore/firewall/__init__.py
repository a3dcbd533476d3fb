"""Netfilter for plugins (public toolkit), compatible with the Go reference plugins.

The rules made here are byte-for-byte what ``containernetworking/plugins``
makes (``pkg/ip``'s masquerade, ``pkg/link``'s spoof checker), so our plugins
and Go's can set up, tear down and garbage-collect each other's rules during a
mixed rollout. Everything goes through the ``iptables``/``ip6tables``/``nft``
command-line tools (as the reference does), taken from the system's
directories only, in the network namespace of the calling thread.

Public: this package (:class:`FirewallError`, :class:`ToolMissingError`),
:mod:`cnicore.firewall.masquerade` (``ipMasq`` for networks) and
:mod:`cnicore.firewall.spoofcheck` (a bridge port's MAC spoof check) and
:mod:`cnicore.firewall.tools` (the tools themselves, and batches: a table read
with ``iptables-save`` and changed with one ``iptables-restore``). The
chain names and comments they use come from :mod:`cnicore.utils`. Private:
``command`` (run one tool), ``iptables`` (the small part of go-iptables we
need), ``nftables`` (nft scripts, chains read back as JSON).

Only the error classes are imported here, so a plugin that never masquerades
pays nothing.
"""

from __future__ import annotations

from cnicore.firewall.command import FirewallError, ToolMissingError

__all__ = ["FirewallError", "ToolMissingError"]
