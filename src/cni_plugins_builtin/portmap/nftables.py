"""portmap's nftables backend, as later reference releases have it (``backend: "nftables"``).

Per family (``ip``, ``ip6``) a table ``cni_hostport`` (comment "CNI portmap
plugin") with chains ``hostports`` (a DNAT rule per mapping, commented with
the container ID), ``hostip_hostports`` (kept empty, for upgrades),
``hostports_all`` (jumps to both), ``prerouting``/``output`` (nat hooks at
dstnat: ``<conditions> fib daddr type local jump hostports_all``) and, with
``snat``, ``masquerading`` (postrouting at srcnat: masquerade hairpin and
localhost connections to the container). DEL deletes the rules whose comment
is the container ID, in both families.

The reference makes one nft transaction per family for ADD, and for DEL lists
three chains and deletes per family (knftables also runs ``nft --version``
and a ``--check`` per handle). Here ADD is one ``nft -f`` for the address's
family, DEL one listing per family and one transaction for both.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .config import ContainerNet, PortMapConf

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).

TABLE = "cni_hostport"
TABLE_COMMENT = "CNI portmap plugin"
HOSTPORTS_ALL = "hostports_all"
HOSTIP_HOSTPORTS = "hostip_hostports"
HOSTPORTS = "hostports"
MASQUERADING = "masquerading"
#: knftables' DNATPriority / SNATPriority (dstnat, srcnat) for the ip and ip6 families.
DSTNAT = -100
SRCNAT = 100


def _family(ipv6: bool) -> str:
    return "ip6" if ipv6 else "ip"


def _checked(values: list[str]) -> None:
    """Refuse what would end an nft command early (a line break, ``;``) or hide the rest
    of it (``#``): a protocol, hostIP or condition must not add commands of its own."""
    from cnicore.firewall.tools import FirewallError

    for value in values:
        if any(c in value for c in "\n\r\0;#"):
            raise FirewallError(f"invalid nftables token {value!r}")


def forward_script(conf: PortMapConf, container_id: str, net: ContainerNet, object_comments: bool = True) -> list[str]:
    """The reference's ADD transaction for one address, as nft commands."""
    from cnicore.firewall.tools import nft_quote

    _checked([*conf.conditions(net.ipv6), *(v for m in conf.mappings for v in (m.protocol, m.host_ip))])

    fam = _family(net.ipv6)
    table = f"{fam} {TABLE}"
    comment = nft_quote(container_id)
    conditions = " ".join(conf.conditions(net.ipv6))
    cond = f"{conditions} " if conditions else ""
    lines = [
        f"add table {table}" + (f" {{ comment {nft_quote(TABLE_COMMENT)} ; }}" if object_comments else ""),
        f"add chain {table} {HOSTPORTS}",
        f"add chain {table} {HOSTIP_HOSTPORTS}",
        f"add chain {table} {HOSTPORTS_ALL}",
        f"flush chain {table} {HOSTPORTS_ALL}",
        f"add rule {table} {HOSTPORTS_ALL} jump {HOSTIP_HOSTPORTS}",
        f"add rule {table} {HOSTPORTS_ALL} jump {HOSTPORTS}",
    ]
    for hook in ("prerouting", "output"):
        lines += [
            f"add chain {table} {hook} {{ type nat hook {hook} priority {DSTNAT} ; }}",
            f"flush chain {table} {hook}",
            f"add rule {table} {hook} {cond}fib daddr type local jump {HOSTPORTS_ALL}",
        ]
    if conf.snat:
        lines.append(f"add chain {table} {MASQUERADING} {{ type nat hook postrouting priority {SRCNAT} ; }}")
    for m in conf.mappings:
        dst = ""
        if m.host_ip:
            from .config import host_ip_family

            host_v6, unspecified = host_ip_family(m.host_ip)
            if host_v6 != net.ipv6:
                continue
            dst = "" if unspecified else f"{fam} daddr {m.host_ip} "
        lines.append(f"add rule {table} {HOSTPORTS} {dst}{m.protocol} dport {m.host_port} "
                     f"dnat to {net.ip_port(m.container_port)} comment {comment}")
    if conf.snat:
        src = ("::/0" if net.ipv6 else "0.0.0.0/0") if conf.masq_all else net.ip
        lines.append(f"add rule {table} {MASQUERADING} {fam} saddr {src} {fam} daddr {net.ip} masquerade "
                     f"comment {comment}")
        if not net.ipv6 and not conf.masq_all:
            lines.append(f"add rule {table} {MASQUERADING} {fam} saddr 127.0.0.1 {fam} daddr {net.ip} masquerade "
                         f"comment {comment}")
    return lines


def forward_ports(conf: PortMapConf, container_id: str, net: ContainerNet) -> None:
    from cnicore.errors import ERR_INTERNAL, CNIError
    from cnicore.firewall.tools import FirewallError, nft_apply

    try:
        try:
            nft_apply(forward_script(conf, container_id, net))
        except FirewallError as exc:
            if "comment" not in exc.stderr:
                raise
            nft_apply(forward_script(conf, container_id, net, object_comments=False))
    except FirewallError as exc:
        raise CNIError(ERR_INTERNAL, f"unable to set up nftables rules for port mappings: {exc}") from None


def _rules(ipv6: bool) -> list[dict]:
    """The rules of our table in one family ([] if the table is not there)."""
    from cnicore.firewall.tools import nft_is_not_found, nft_list, nft_objects

    try:
        return nft_objects(nft_list("table", _family(ipv6), TABLE), "rule")
    except Exception as exc:
        if nft_is_not_found(exc):
            return []
        raise


def check_ports(conf: PortMapConf, container_id: str, net: ContainerNet) -> None:
    """The later reference's CHECK: enough rules with the container's comment in each chain."""
    from cnicore.errors import ERR_INTERNAL, CNIError
    from cnicore.firewall.tools import FirewallError

    host_ports = 0
    for m in conf.mappings:
        if m.host_ip:
            from .config import host_ip_family

            if host_ip_family(m.host_ip)[0] != net.ipv6:
                continue
        host_ports += 1
    masq = (1 if net.ipv6 or conf.masq_all else 2) if conf.snat else 0
    try:
        rules = _rules(net.ipv6)
    except FirewallError as exc:
        raise CNIError(ERR_INTERNAL, str(exc)) from None
    for chain, wanted in ((HOSTPORTS, host_ports), (MASQUERADING, masq)):
        if wanted and sum(1 for r in rules if r.get("chain") == chain and r.get("comment") == container_id) < wanted:
            raise CNIError(ERR_INTERNAL, f'missing hostport rules in "{chain}" chain')


def unforward_ports(conf: PortMapConf, container_id: str) -> None:
    """DEL: every rule commented with the container ID, both families, one transaction."""
    from cnicore.errors import ERR_INTERNAL, CNIError
    from cnicore.firewall.tools import FirewallError, nft_apply

    lines = []
    for ipv6 in (False, True):
        try:
            rules = _rules(ipv6)
        except FirewallError as exc:
            if exc.status is None:  # nft itself is not usable: the reference skips the family
                continue
            raise CNIError(ERR_INTERNAL, f"could not list rules in table {TABLE}: {exc}") from None
        for r in rules:
            if r.get("chain") in (HOSTPORTS, HOSTIP_HOSTPORTS, MASQUERADING) and r.get("comment") == container_id:
                lines.append(f"delete rule {_family(ipv6)} {TABLE} {r['chain']} handle {r['handle']}")
    if lines:
        try:
            nft_apply(lines)
        except FirewallError as exc:
            raise CNIError(ERR_INTERNAL, f"error deleting nftables rules: {exc}") from None
