"""What a user would look at to see whether a plugin run changed anything:
links and addresses in the sandbox's namespaces, the host's firewall rules,
sysctls a plugin may write, and the files under a directory."""

from __future__ import annotations

import os

from cnicore.testing import Sandbox, run_in

SYSCTLS = ("net/ipv4/ip_forward", "net/ipv4/conf/all/rp_filter", "net/ipv6/conf/all/forwarding")


def _netns_state(netns) -> tuple:
    links = run_in(netns, "ip", "-o", "link", "show").encode("utf-8", "surrogateescape")
    addrs = run_in(netns, "ip", "-o", "addr", "show")
    routes = run_in(netns, "ip", "route", "show", "table", "all")

    def sysctls() -> tuple:
        out = []
        for key in SYSCTLS:
            with open("/proc/sys/" + key) as fh:
                out.append(fh.read())
        return tuple(out)

    return links, addrs, routes, netns.do(sysctls)


def files_under(root: str) -> dict[str, bytes]:
    out = {}
    for base, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(base, name)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, root)] = fh.read()
    return out


def snapshot(sandbox: Sandbox, containers, *roots: str) -> tuple:
    """Everything observable: kernel state of the host and ``containers``, the
    host's iptables and nftables rules, and the files under ``roots``."""
    rules = firewall_rules(sandbox.host)
    return (_netns_state(sandbox.host), tuple(_netns_state(c) for c in containers), rules,
            tuple(files_under(root) for root in roots))


#: The shared masquerade table's fixed rules (kept after the last DEL, as Go keeps them).
_NFT_SKELETON = {"ip daddr 224.0.0.0/4 return", "ip6 daddr ff00::/8 return", "goto masq_checks"}


def firewall_rules(netns) -> tuple[list[str], list[str]]:
    """The host's iptables rules and CNI chains, and its nftables rules and CNI
    chains: empty tables, built-in chains and the masquerade table's fixed
    rules left by a first run do not count."""
    ipt = [line for line in run_in(netns, "iptables-save").splitlines()
           if line.startswith("-A") or line.startswith(":CNI")]
    nft = []
    for line in run_in(netns, "nft", "list", "ruleset").splitlines():
        text = line.strip()
        if text.startswith("chain") and "cni" in text.lower():
            nft.append(text)
        elif text and not text.startswith(("table", "chain", "type", "}", "policy", 'comment "')) \
                and text not in _NFT_SKELETON:
            nft.append(text)
    return ipt, nft
