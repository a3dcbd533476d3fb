"""Masquerade for networks (public toolkit): SNAT container traffic leaving its subnet.

Go's ``ip.SetupIPMasqForNetworks`` / ``ip.TeardownIPMasqForNetworks``, for any
plugin with an ``ipMasq`` option (the bridge's is built on it). Run it with the
calling thread in the host namespace, after the container has its addresses:
``networks`` are the container's ``ip/prefix`` strings (``IPConfig.address``).

Kernel state is exactly what the reference (``pkg/ip/ipmasq_*_linux.go``)
creates, so our bridge and Go's bridge can tear down or garbage-collect each
other's rules:

* **iptables** (per family): chain ``CNI-<hash(network+containerID)>`` in
  ``nat`` holding ``-d <ip/prefix> -j ACCEPT`` and ``! -d <multicast> -j
  MASQUERADE``, plus ``POSTROUTING -s <ip> -j <chain>``, each with the comment
  ``name: "<network>" id: "<containerID>"``. Like Go, ifname is not part of it.
* **nftables**: table ``inet cni_plugins_masquerade``; chain ``postrouting``
  (nat hook, srcnat priority) skips multicast then ``goto masq_checks``; one
  rule per IP in ``masq_checks`` whose comment starts with a hash of the
  network and of ``ifname:containerID``.

Deliberate differences (the rules are the same, so Go still reads our state):
the reference execs iptables once per probe and per rule (about nine execs
per address for ADD, six for DEL); here each family in use is one
``iptables-restore --noflush`` transaction in the usual case (ADD: the
container's chain is new, created with ``-N`` inside the transaction so an
existing one fails it whole and changes nothing; DEL: our jumps, the chain's
flush and delete), and only otherwise is the table read (``iptables-save``)
and the change planned from it, or the rules probed one by one as Go does
(a repeated ADD). Teardown finds the jump rules in that read, not only by
rebuilding them from the container's IPs, so it also works when the IPs
have changed within a family, or are unknown (DEL without netns or IPAM
result: both families are read then); given addresses, only their families
are touched, as in Go. iptables GC is implemented (Go's is a no-op), by
reading the comments the rules already carry. Callers run us with the
calling thread in the target netns.
"""

from __future__ import annotations

from cnicore.firewall.command import FirewallError, ToolMissingError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ipaddress import IPv4Interface, IPv6Interface
    from typing import Callable, Iterable, Sequence, Union

    from cnicore.firewall.iptables import IPTables

    IPNet = Union[IPv4Interface, IPv6Interface]

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).

__all__ = [
    "IPTABLES",
    "NFTABLES",
    "FirewallError",
    "backend_for",
    "setup_ip_masq_for_networks",
    "teardown_ip_masq_for_networks",
    "undo_ip_masq_for_networks",
    "gc_ip_masq_for_network",
]

IPTABLES = "iptables"
NFTABLES = "nftables"

NFT_TABLE = "cni_plugins_masquerade"
NFT_MASQ_CHAIN = "masq_checks"
NFT_POSTROUTING_CHAIN = "postrouting"
NFT_TABLE_COMMENT = "Masquerading for plugins from github.com/containernetworking/plugins"
NFT_MASQ_CHAIN_COMMENT = "Masquerade traffic from certain IPs to any (non-multicast) IP outside their subnet"
#: knftables writes the named priority "srcnat" as its number for the inet family.
NFT_SRCNAT_PRIORITY = 100

MULTICAST_V4 = "224.0.0.0/4"
MULTICAST_V6 = "ff00::/8"
NAT = "nat"
POSTROUTING = "POSTROUTING"


def backend_for(requested: str | None) -> str:
    """The backend to use: ``requested`` if given, else Go's default.

    The default is iptables whenever it is usable (existing setups keep their
    rules where they are), nftables only when iptables is not but nft is.
    Raises FirewallError for an unknown name, with Go's message.
    """
    if requested is not None:
        if requested not in (IPTABLES, NFTABLES):
            from cnicore.utils import go_quote

            raise FirewallError(f"unknown ipmasq backend {go_quote(requested)}")
        return requested
    from cnicore.firewall import nftables
    from cnicore.firewall.iptables import IPTables

    if not IPTables().supported() and nftables.supported():
        return NFTABLES
    return IPTABLES


def _parse(networks: Iterable[str] | None) -> list[IPNet]:
    """The container's addresses with their prefix ("10.1.2.3/24"), like Go's ``*net.IPNet``."""
    import ipaddress

    return [ipaddress.ip_interface(net) for net in networks or ()]


def _raise_joined(errors: list[str]) -> None:
    """Report every backend's failure at once, newline-separated like the reference."""
    if errors:
        raise FirewallError("\n".join(errors))


# -- public API -------------------------------------------------------------------


def setup_ip_masq_for_networks(networks: Sequence[str], network_name: str, ifname: str, container_id: str,
                  backend: str | None = None) -> None:
    """Masquerade traffic from each of ``networks`` (container IP/prefix) leaving its subnet.

    Idempotent: re-running adds nothing twice (iptables) or replaces this
    attachment's rules (nftables). Raises FirewallError.

    With iptables (chosen, or the default) each family in use is tried first
    as one transaction that creates the container's chain with its rules;
    only when that fails (the chain is there already: a repeated ADD; a
    tool is missing) is the backend chosen as before and the rules probed
    one by one, as the reference does.
    """
    ipns = _parse(networks)
    if backend in (None, IPTABLES):
        ipns = _setup_iptables_batched(ipns, network_name, container_id)
        if not ipns:
            return
    chosen = backend_for(backend)
    if chosen == IPTABLES:
        _setup_iptables(ipns, network_name, container_id)
    else:
        _setup_nftables(ipns, network_name, ifname, container_id)


def teardown_ip_masq_for_networks(networks: Sequence[str] | None, network_name: str, ifname: str,
                     container_id: str) -> None:
    """Remove this attachment's masquerade rules of both backends; fine if already gone.

    ``networks`` may be None or empty: the rules are found by chain name and
    comment, not by address, in both iptables families. Given addresses,
    only their families' tables are touched. A backend that is not usable
    here is skipped (like Go); other failures are raised together as one
    FirewallError.
    """
    from cnicore.utils import format_chain_name, format_comment

    ipns = _parse(networks)
    errors = _teardown_iptables_chain(format_chain_name(network_name, container_id),
                                      format_comment(network_name, container_id), ipns)
    errors += _teardown_nftables(network_name, ifname, container_id)
    _raise_joined(errors)


def undo_ip_masq_for_networks(networks: Sequence[str], network_name: str, ifname: str, container_id: str) -> None:
    """Undo one attachment's :func:`setup_ip_masq_for_networks` (a failed ADD), sparing the
    container's other attachments on the same network.

    The iptables chain is per network and container, shared by all of its
    interfaces, and its ``-d <subnet> -j ACCEPT`` rules are shared by every
    address in that subnet. So: this attachment's POSTROUTING jumps go; the
    chain goes when no jump to it is left; a subnet rule goes when no address
    still jumping to the chain is in that subnet. nftables rules are per
    attachment already. Fine if nothing is there.
    """
    import ipaddress

    from cnicore.firewall.iptables import IPTables, is_not_exist, split_rule
    from cnicore.utils import format_chain_name, format_comment

    chain = format_chain_name(network_name, container_id)
    tagged = ["-m", "comment", "--comment", format_comment(network_name, container_id)]

    def delete(ipt: IPTables, where: str, spec: list[str]) -> None:
        try:
            ipt.delete(NAT, where, spec)
        except FirewallError as exc:
            if not is_not_exist(exc):
                raise

    errors = []
    for version in (4, 6):
        mine = [ipn for ipn in _parse(networks) if ipn.version == version]
        if not mine:
            continue
        ipt = IPTables(ipv6=version == 6)
        try:
            for ipn in mine:
                delete(ipt, POSTROUTING, ["-s", str(ipn.ip), "-j", chain, *tagged])
            lines = ipt.list_rules(NAT)
            others = []
            for line in lines:
                if line.startswith(f"-A {POSTROUTING} ") and chain in line:
                    tokens = split_rule(line)
                    source = _option(tokens, "-s")
                    if _option(tokens, "-j") == chain and source:
                        others.append(ipaddress.ip_interface(source).ip)
            if not others:
                _remove_chain(ipt, chain, lines)
                continue
            for ipn in mine:
                if not any(ip in ipn.network for ip in others):
                    delete(ipt, chain, ["-d", str(ipn), "-j", "ACCEPT", *tagged])
        except ToolMissingError:
            continue
        except (FirewallError, ValueError) as exc:
            errors.append(str(exc))
    errors += _teardown_nftables(network_name, ifname, container_id)
    _raise_joined(errors)


def gc_ip_masq_for_network(network_name: str, valid_attachments: Iterable[tuple[str, str]]) -> None:
    """Remove masquerade state of ``network_name`` whose attachment is not valid.

    ``valid_attachments`` holds ``(containerID, ifname)`` pairs (the GC
    request's ``cni.dev/valid-attachments``). nftables rules are matched per
    attachment, as Go does; iptables chains per container ID, because that
    backend never included ifname.
    """
    valid = [(str(cid), str(ifname)) for cid, ifname in valid_attachments]
    errors = _gc_iptables(network_name, {cid for cid, _ in valid})
    errors += _gc_nftables(network_name, valid)
    _raise_joined(errors)


# -- iptables ---------------------------------------------------------------------


def _setup_iptables(ipns: list[IPNet], network: str, container_id: str) -> None:
    """Go's SetupIPMasq for every address, in the same order with the same arguments."""
    from cnicore.firewall.iptables import IPTables
    from cnicore.utils import format_chain_name, format_comment

    chain = format_chain_name(network, container_id)
    comment = format_comment(network, container_id)
    tagged = ["-m", "comment", "--comment", comment]
    for ipn in ipns:
        v6 = ipn.version == 6
        ipt = IPTables(ipv6=v6)
        try:
            chains = ipt.list_chains(NAT)
        except ToolMissingError:
            raise
        except FirewallError as exc:
            raise FirewallError(f"failed to list chains: {exc}", exc.status, exc.stderr) from exc
        if chain not in chains:
            ipt.new_chain(NAT, chain)
        # Packets to the container's own subnet are not touched.
        ipt.append_unique(NAT, chain, ["-d", str(ipn), "-j", "ACCEPT", *tagged])
        # Multicast stays unmasqueraded so pods can reach each other with it.
        multicast = MULTICAST_V6 if v6 else MULTICAST_V4
        ipt.append_unique(NAT, chain, ["!", "-d", multicast, "-j", "MASQUERADE", *tagged])
        ipt.append_unique(NAT, POSTROUTING, ["-s", str(ipn.ip), "-j", chain, *tagged])


#: How often teardown reads the table again when a concurrent writer changed it between
#: our read and our write (the transaction then failed whole and changed nothing).
_ATTEMPTS = 5


def _nat_restore(lines: list[str], ipv6: bool) -> None:
    """One ``iptables-restore --noflush`` transaction on the nat table: all or nothing."""
    from cnicore.firewall.tools import iptables_restore

    iptables_restore("*nat\n" + "".join(line + "\n" for line in lines) + "COMMIT\n", ipv6)


def _masq_plan(ipns: list[IPNet], chain: str, comment: str) -> tuple[list[list[str]], list[list[str]]]:
    """The rules Go's SetupIPMasq leaves in a new ``chain`` and in POSTROUTING for one
    family's addresses, in its order. Its AppendUnique skips a rule iptables sees as
    identical, so an address whose subnet (or IP) came before adds no second one."""
    tagged = ["-m", "comment", "--comment", comment]
    rules: list[list[str]] = []
    jumps: list[list[str]] = []
    subnets: set[object] = set()
    ips: set[object] = set()
    for ipn in ipns:
        if ipn.network not in subnets:
            subnets.add(ipn.network)
            rules.append(["-d", str(ipn), "-j", "ACCEPT", *tagged])
        masq = ["!", "-d", MULTICAST_V6 if ipn.version == 6 else MULTICAST_V4, "-j", "MASQUERADE", *tagged]
        if masq not in rules:
            rules.append(masq)
        if ipn.ip not in ips:
            ips.add(ipn.ip)
            jumps.append(["-s", str(ipn.ip), "-j", chain, *tagged])
    return rules, jumps


def _setup_iptables_batched(ipns: list[IPNet], network: str, container_id: str) -> list[IPNet]:
    """Each family's rules as one transaction that creates the container's chain (``-N``,
    which fails the whole transaction if the chain exists: nothing is changed then).
    Returns the addresses of the families that still need the probing path."""
    from cnicore.firewall.tools import restore_line
    from cnicore.utils import format_chain_name, format_comment

    chain = format_chain_name(network, container_id)
    comment = format_comment(network, container_id)
    left: list[IPNet] = []
    for version in (4, 6):
        mine = [ipn for ipn in ipns if ipn.version == version]
        if not mine:
            continue
        rules, jumps = _masq_plan(mine, chain, comment)
        lines = [f"-N {chain}"] + [restore_line("-A", chain, *rule) for rule in rules] \
            + [restore_line("-A", POSTROUTING, *jump) for jump in jumps]
        try:
            _nat_restore(lines, version == 6)
        except FirewallError:
            left += mine
    return left


def _removal_lines(chain: str, saved: str) -> list[str]:
    """Restore lines deleting every POSTROUTING jump to ``chain`` in an ``iptables-save``
    text, then flushing and deleting the chain; none for what is not there."""
    from cnicore.firewall.tools import split_rule

    lines = []
    exists = False
    for line in saved.splitlines():
        if line.startswith(f":{chain} "):
            exists = True
        elif line.startswith(f"-A {POSTROUTING} ") and chain in line:
            try:
                tokens = split_rule(line)
            except ValueError:
                continue
            if _option(tokens, "-j") == chain:
                lines.append("-D" + line[2:])  # save output is restore input
    return lines + [f"-F {chain}", f"-X {chain}"] if exists else lines


def _remove_chain_batched(chain: str, saved: str, ipv6: bool) -> None:
    """Remove ``chain`` and the jumps to it as planned from ``saved`` (the nat table's
    ``iptables-save``), in one transaction; nothing is written when nothing is there.
    A concurrent writer that changed the table since makes the transaction fail whole:
    the table is read again and, if the plan changed, tried again."""
    from cnicore.firewall.tools import iptables_save

    lines = _removal_lines(chain, saved)
    for attempt in range(_ATTEMPTS):
        if not lines:
            return
        try:
            _nat_restore(lines, ipv6)
            return
        except FirewallError:
            again = _removal_lines(chain, iptables_save(NAT, ipv6))
            if again == lines or attempt + 1 == _ATTEMPTS:
                raise
            lines = again


def _option(tokens: list[str], name: str) -> str | None:
    """The value following option ``name`` in a split ``-S`` line (None if absent)."""
    try:
        return tokens[tokens.index(name) + 1]
    except (ValueError, IndexError):
        return None


def _remove_chain(ipt: IPTables, chain: str, nat_lines: list[str]) -> None:
    """Delete every POSTROUTING jump to ``chain``, then flush and delete the chain.

    ``nat_lines`` is an ``iptables -t nat -S`` listing; it tells which jumps
    exist and whether the chain does, so nothing is run for what is absent.
    Rules or chains that vanish meanwhile (a concurrent DEL) are not errors.
    """
    from cnicore.firewall.iptables import is_not_exist, split_rule

    for line in nat_lines:
        if not line.startswith(f"-A {POSTROUTING} ") or chain not in line:
            continue
        try:
            tokens = split_rule(line)
        except ValueError:
            continue
        if _option(tokens, "-j") != chain:
            continue
        try:
            ipt.delete(NAT, POSTROUTING, tokens[2:])
        except FirewallError as exc:
            if not is_not_exist(exc):
                raise
    if f"-N {chain}" not in nat_lines:
        return
    for remove in (ipt.flush_chain, ipt.delete_chain):
        try:
            remove(NAT, chain)
        except FirewallError as exc:
            if not is_not_exist(exc):
                raise


def _teardown_iptables_chain(chain: str, comment: str, ipns: list[IPNet]) -> list[str]:
    """Remove ``chain`` and the jumps to it; return error messages.

    The families of ``ipns``, or both when no address is known. Each family
    is first tried as one blind transaction (delete our addresses' jumps,
    flush and delete the chain: one exec, the usual DEL); if anything in it
    is not as expected (the chain is gone, another jump to it is left, a
    rule differs) it changed nothing, and the table is read and the removal
    planned from what is there. A family whose nat table cannot even be
    read is skipped when it holds none of the container's addresses (IPv6
    may be off), or when iptables is unusable altogether (Go ignores errors
    then too).
    """
    from cnicore.firewall.tools import IPTables, iptables_save, restore_line

    errors = []
    tagged = ["-m", "comment", "--comment", comment]
    for version in sorted({ipn.version for ipn in ipns}) or [4, 6]:
        v6 = version == 6
        mine = [ipn for ipn in ipns if ipn.version == version]
        if mine:
            jumps = [restore_line("-D", POSTROUTING, "-s", str(ip), "-j", chain, *tagged)
                     for ip in dict.fromkeys(ipn.ip for ipn in mine)]
            try:
                _nat_restore([*jumps, f"-F {chain}", f"-X {chain}"], v6)
                continue
            except FirewallError:
                pass  # not the usual state: read the table and plan
        try:
            saved = iptables_save(NAT, v6)
        except FirewallError as exc:
            if mine and not isinstance(exc, ToolMissingError) and IPTables(ipv6=v6).supported():
                errors.append(str(exc))
            continue
        try:
            _remove_chain_batched(chain, saved, v6)
        except FirewallError as exc:
            errors.append(str(exc))
    return errors


def _gc_iptables(network: str, valid_ids: set[str]) -> list[str]:
    """Remove per-container chains of ``network`` whose container ID is not valid.

    Ownership is read from the comments the reference already puts on every
    rule (no extra marker rule is needed): a rule counts only if its chain,
    or its jump target, is exactly the chain name derived from that comment,
    so rules of other plugins using the same comment format are left alone.
    """
    from cnicore.firewall.iptables import IPTables, split_rule
    from cnicore.utils import format_chain_name, parse_comment

    errors = []
    for version in (4, 6):
        ipt = IPTables(ipv6=version == 6)
        try:
            lines = ipt.list_rules(NAT)
        except FirewallError:
            continue  # no usable iptables for this family: nothing of ours can be there
        stale: dict[str, str] = {}
        for line in lines:
            if not line.startswith("-A ") or "--comment" not in line:
                continue
            try:
                tokens = split_rule(line)
            except ValueError:
                continue
            comment = _option(tokens, "--comment")
            cid = parse_comment(comment, network) if comment is not None else None
            if cid is None or cid in valid_ids:
                continue
            chain = format_chain_name(network, cid)
            if chain in (tokens[1], _option(tokens, "-j")):
                stale[cid] = chain
        for chain in sorted(set(stale.values())):
            try:
                _remove_chain(ipt, chain, lines)
            except FirewallError as exc:
                errors.append(str(exc))
    return errors


# -- nftables ---------------------------------------------------------------------


def _nft_rules(comment_prefix: str) -> list[tuple[int, str]]:
    """(handle, comment) of the masq_checks rules whose comment starts with the prefix.

    A missing table or chain means there are none (knftables IsNotFound).
    """
    from cnicore.firewall import nftables

    try:
        items = nftables.list_objects("chain", "inet", NFT_TABLE, NFT_MASQ_CHAIN)
    except FirewallError as exc:
        if nftables.is_not_found(exc):
            return []
        raise
    found = []
    for rule in nftables.objects_of(items, "rule"):
        comment, handle = rule.get("comment"), rule.get("handle")
        if isinstance(comment, str) and isinstance(handle, int) and comment.startswith(comment_prefix):
            found.append((handle, comment))
    return found


def _nft_delete_rules(handles: Iterable[int]) -> None:
    from cnicore.firewall import nftables

    lines = [f"delete rule inet {NFT_TABLE} {NFT_MASQ_CHAIN} handle {handle}" for handle in handles]
    if lines:
        nftables.apply_script(lines)


def _setup_nftables(ipns: list[IPNet], network: str, ifname: str, container_id: str) -> None:
    """Go's setupIPMasqNFTables: one batch that (re)creates the table, chains and our rules.

    The attachment's old rules are deleted in the same batch, so repeating
    ADD, or an ADD with new IPs, leaves exactly one rule per current IP.
    """
    from cnicore.firewall import nftables
    from cnicore.utils import nft_comment_for_instance, nft_hash_for_instance

    stale = _nft_rules(nft_hash_for_instance(network, ifname, container_id))
    comment = nftables.quote(nft_comment_for_instance(network, ifname, container_id))
    table = f"inet {NFT_TABLE}"

    def script(object_comments: bool) -> list[str]:
        table_body = f" {{ comment {nftables.quote(NFT_TABLE_COMMENT)} ; }}" if object_comments else ""
        chain_body = f" {{ comment {nftables.quote(NFT_MASQ_CHAIN_COMMENT)} ; }}" if object_comments else ""
        lines = [
            f"add table {table}{table_body}",
            f"add chain {table} {NFT_MASQ_CHAIN}{chain_body}",
            f"add chain {table} {NFT_POSTROUTING_CHAIN} {{ type nat hook postrouting"
            f" priority {NFT_SRCNAT_PRIORITY} ; }}",
            f"flush chain {table} {NFT_POSTROUTING_CHAIN}",
            f"add rule {table} {NFT_POSTROUTING_CHAIN} ip daddr == {MULTICAST_V4}  return",
            f"add rule {table} {NFT_POSTROUTING_CHAIN} ip6 daddr == {MULTICAST_V6}  return",
            f"add rule {table} {NFT_POSTROUTING_CHAIN} goto {NFT_MASQ_CHAIN}",
        ]
        lines += [f"delete rule {table} {NFT_MASQ_CHAIN} handle {handle}" for handle, _ in stale]
        for ipn in ipns:
            ip = "ip6" if ipn.version == 6 else "ip"
            lines.append(f"add rule {table} {NFT_MASQ_CHAIN} {ip} saddr == {ipn.ip} "
                         f"{ip} daddr != {ipn.network} masquerade comment {comment}")
        return lines

    try:
        nftables.apply_script(script(object_comments=True))
    except FirewallError as exc:
        if not nftables.object_comments_rejected(exc):
            raise
        nftables.apply_script(script(object_comments=False))


def _nft_errors_matter(exc: FirewallError) -> bool:
    """Go ignores nftables cleanup failures where nftables is not usable at all."""
    from cnicore.firewall import nftables

    return not isinstance(exc, ToolMissingError) and nftables.supported()


def _delete_nft_rules(comment_prefix: str, keep: Callable[[str], bool]) -> list[str]:
    """Delete the rules under ``comment_prefix`` whose comment ``keep`` rejects;
    the errors worth reporting. A rule deleted meanwhile aborts nft's whole
    batch, so the rules are listed again once."""
    from cnicore.firewall import nftables

    for attempt in range(2):
        try:
            _nft_delete_rules(handle for handle, comment in _nft_rules(comment_prefix) if not keep(comment))
            return []
        except FirewallError as exc:
            if attempt == 0 and nftables.is_not_found(exc):
                continue
            return [str(exc)] if _nft_errors_matter(exc) else []
    return []


_NFNL_SUBSYS_NFTABLES = 10
_NFT_MSG_GETTABLE = 1
_NFTA_TABLE_NAME = 1
_NFPROTO_INET = 1


def _nft_table_absent() -> bool:
    """True if the kernel says our nftables table does not exist (one netlink request,
    no ``nft`` exec); False if it exists or the kernel could not say (then nft is asked).

    The usual DEL has nothing in nftables (the default backend is iptables), and
    ``nft --json list`` would cost a process and the whole ruleset's parsing to learn it."""
    import errno
    import struct

    from cnicore.netlink import NETLINK_NETFILTER, NLM_F_ACK, Netlink, _attr

    body = struct.pack("=BBH", _NFPROTO_INET, 0, 0) + _attr(_NFTA_TABLE_NAME, NFT_TABLE.encode() + b"\0")
    try:
        with Netlink(NETLINK_NETFILTER) as nfnl:
            nfnl._request((_NFNL_SUBSYS_NFTABLES << 8) | _NFT_MSG_GETTABLE, NLM_F_ACK, body)
    except OSError as exc:
        return exc.errno == errno.ENOENT
    return False


def _teardown_nftables(network: str, ifname: str, container_id: str) -> list[str]:
    """Delete this attachment's masq_checks rules (the table and chains stay, as in Go)."""
    from cnicore.utils import nft_hash_for_instance

    if _nft_table_absent():
        return []
    return _delete_nft_rules(nft_hash_for_instance(network, ifname, container_id), lambda _: False)


def _gc_nftables(network: str, valid: list[tuple[str, str]]) -> list[str]:
    """Go's gcIPMasqNFTables: drop this network's rules whose comment no valid attachment has."""
    from cnicore.utils import nft_comment_for_instance, nft_hash_for_network

    keep = {nft_comment_for_instance(network, ifname, cid) for cid, ifname in valid}
    return _delete_nft_rules(nft_hash_for_network(network), keep.__contains__)
