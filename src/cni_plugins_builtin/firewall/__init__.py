"""Netfilter helpers for the built-in plugins, compatible with the Go reference plugins.

The rules we install must be byte-for-byte what ``containernetworking/plugins``
installs, so that our bridge and Go's bridge can set up, tear down and garbage
collect each other's rules during a mixed rollout. Everything is done through
the ``iptables``/``ip6tables``/``nft`` command-line tools (as the reference
does), in the network namespace of the calling thread.

Submodules, each with one job:

* :mod:`.naming` — Go's chain-name hashes and rule comments.
* :mod:`.command` — run a netfilter tool and turn failures into :class:`FirewallError`.
* :mod:`.iptables` — the small part of go-iptables we need.
* :mod:`.nftables` — run nft scripts and read chains back as JSON.
* :mod:`.masquerade` — the bridge's ``ipMasq`` (iptables and nftables backends).
* :mod:`.spoofcheck` — the bridge's ``macspoofchk``.

Nothing is imported here, so a plugin that never masquerades pays nothing.
"""
