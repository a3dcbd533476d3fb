"""portmap's iptables backend: the reference's chains and rules, applied in batches.

The rules are exactly the reference's (``nat`` table): ``PREROUTING`` and
``OUTPUT`` jump to ``CNI-HOSTPORT-DNAT`` for local destinations; that chain
jumps, per protocol and up to 15 ports (multiport), to the container's
``CNI-DN-<hash>`` chain (comment ``dnat name: "<net>" id: "<id>"``), which
marks hairpin and localhost connections through ``CNI-HOSTPORT-SETMARK`` and
DNATs to the container; ``POSTROUTING`` jumps first to ``CNI-HOSTPORT-MASQ``,
which masquerades what carries the mark. So Go's DEL removes our chains and
ours removes Go's.

The reference runs iptables once per probe and once per rule (about 20 execs
per family for one mapping). Here ADD reads the table once
(``iptables-save``) and writes what is missing in one ``iptables-restore
--noflush`` transaction; DEL the same (both families at once), or just the
read when there is nothing to remove. In the steady state (the shared chains
there, the container's chain new) ADD is a single exec: the reference's
``-C`` probes go into the transaction itself, which fails whole if one finds
nothing.

New chains are made with ``-N`` in the transaction, so a writer that got
there between our read and our write makes it fail whole (nothing changed),
and we read again (:data:`ATTEMPTS`); a ``:CHAIN`` line would have flushed
that writer's chain. A rule is probed on its own (``iptables -C``, as the
reference does) only where the table's text cannot answer: rules of a
container chain that already exists (a repeated ADD), and CHECK.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnicore.firewall.tools import FirewallError, IPTables

    from .config import ContainerNet, PortMapConf

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).

TABLE = "nat"
TOP_LEVEL_DNAT_CHAIN = "CNI-HOSTPORT-DNAT"
SET_MARK_CHAIN = "CNI-HOSTPORT-SETMARK"
MARK_MASQ_CHAIN = "CNI-HOSTPORT-MASQ"
OLD_TOP_LEVEL_SNAT_CHAIN = "CNI-HOSTPORT-SNAT"
#: multiport takes at most 15 ports per rule.
MULTIPORT_MAX = 15
COMMENT_MAX = 255


class Chain:
    """A chain as the reference describes it: its rules, and the entry rules that jump to
    it from ``entry_chains``. ``*_canon`` hold the text ``iptables-save`` prints for a rule
    (after ``-A CHAIN``), where we know it, so its presence is read from the saved table."""

    __slots__ = ("name", "entry_chains", "entry_rules", "rules", "prepend_entry", "rules_canon", "entry_canon")

    def __init__(self, name: str, entry_chains: list[str] | None = None, entry_rules: list[list[str]] | None = None,
                 rules: list[list[str]] | None = None, prepend_entry: bool = False,
                 rules_canon: list[str] | None = None, entry_canon: list[str] | None = None) -> None:
        self.name = name
        self.entry_chains = entry_chains or []
        self.entry_rules = entry_rules or []
        self.rules = rules or []
        self.prepend_entry = prepend_entry
        self.rules_canon = rules_canon
        self.entry_canon = entry_canon

    def entry(self, rule: list[str]) -> list[str]:
        return [*rule, "-j", self.name]


def _mark(bit: int) -> str:
    value = 1 << bit
    return f"{value:#x}/{value:#x}"


def set_mark_chain(bit: int) -> Chain:
    """``CNI-HOSTPORT-SETMARK``: set the masquerade mark and return."""
    return Chain(SET_MARK_CHAIN, rules=[["-m", "comment", "--comment", "CNI portfwd masquerade mark",
                                         "-j", "MARK", "--set-xmark", _mark(bit)]],
                 rules_canon=[f'-m comment --comment "CNI portfwd masquerade mark" -j MARK --set-xmark {_mark(bit)}'])


def mark_masq_chain(bit: int) -> Chain:
    """``CNI-HOSTPORT-MASQ``: masquerade what carries the mark; first in POSTROUTING, before
    the bridge's and ptp's own masquerade rules."""
    return Chain(MARK_MASQ_CHAIN, entry_chains=["POSTROUTING"], prepend_entry=True,
                 entry_rules=[["-m", "comment", "--comment", "CNI portfwd requiring masquerade"]],
                 rules=[["-m", "mark", "--mark", _mark(bit), "-j", "MASQUERADE"]],
                 rules_canon=[f"-m mark --mark {_mark(bit)} -j MASQUERADE"],
                 entry_canon=[f'-m comment --comment "CNI portfwd requiring masquerade" -j {MARK_MASQ_CHAIN}'])


def top_level_dnat_chain() -> Chain:
    return Chain(TOP_LEVEL_DNAT_CHAIN, entry_chains=["PREROUTING", "OUTPUT"],
                 entry_rules=[["-m", "addrtype", "--dst-type", "LOCAL"]],
                 entry_canon=[f"-m addrtype --dst-type LOCAL -j {TOP_LEVEL_DNAT_CHAIN}"])


def dnat_chain_name(network: str, container_id: str) -> str:
    from cnicore.utils import must_format_chain_name_with_prefix

    return must_format_chain_name_with_prefix(network, container_id, "DN-")


def old_snat_chain_name(network: str, container_id: str) -> str:
    """A chain old releases made; DEL still removes it, as the reference does."""
    from cnicore.utils import must_format_chain_name_with_prefix

    return must_format_chain_name_with_prefix(network, container_id, "SN-")


def _trim_comment(text: str) -> str:
    raw = text.encode()
    if len(raw) <= COMMENT_MAX:
        return text
    return raw[:COMMENT_MAX - 2].decode("utf-8", "ignore") + "..."


def _port_lists(ports: list[int]) -> list[str]:
    return [",".join(str(p) for p in ports[i:i + MULTIPORT_MAX]) for i in range(0, len(ports), MULTIPORT_MAX)]


def dnat_chain(conf: PortMapConf, container_id: str, net: ContainerNet) -> Chain:
    """The container's ``CNI-DN-<hash>`` chain with the reference's rules, in its order."""
    from .config import host_ip_family

    chain = Chain(dnat_chain_name(conf.name, container_id), entry_chains=[TOP_LEVEL_DNAT_CHAIN])
    comment = _trim_comment(f'dnat name: "{conf.name}" id: "{container_id}"')
    by_proto: dict[str, list[int]] = {}
    for m in conf.mappings:
        by_proto.setdefault(m.protocol, []).append(m.host_port)
    conditions = conf.conditions(net.ipv6)
    for proto in sorted(by_proto):
        for ports in _port_lists(by_proto[proto]):
            chain.entry_rules.append(["-m", "comment", "--comment", comment, "-m", "multiport", "-p", proto,
                                      "--destination-ports", ports, *conditions])
    mark_chain = conf.external_set_mark_chain if conf.external_set_mark_chain is not None else SET_MARK_CHAIN
    for m in conf.mappings:
        with_dst = False
        if m.host_ip:
            host_v6, unspecified = host_ip_family(m.host_ip)
            if host_v6 != net.ipv6:
                continue
            with_dst = not unspecified
        base = ["-p", m.protocol, "--dport", str(m.host_port)] + (["-d", m.host_ip] if with_dst else [])
        if conf.snat:
            masq_cidr = ("::/0" if net.ipv6 else "0.0.0.0/0") if conf.masq_all else net.cidr
            chain.rules.append([*base, "-s", masq_cidr, "-j", mark_chain])
            if not net.ipv6 and not conf.masq_all:
                chain.rules.append([*base, "-s", "127.0.0.1", "-j", mark_chain])
        chain.rules.append([*base, "-j", "DNAT", "--to-destination", net.ip_port(m.container_port)])
    return chain


# -- the saved table and restore lines -------------------------------------------------------


class SavedTable:
    """One table as ``iptables-save`` printed it: chain names and each chain's rules
    (the text after ``-A CHAIN``)."""

    __slots__ = ("chains",)

    def __init__(self, text: str) -> None:
        self.chains: dict[str, list[str]] = {}
        for line in text.splitlines():
            if line.startswith(":"):
                self.chains.setdefault(line[1:].split(" ", 1)[0], [])
            elif line.startswith("-A "):
                name, _, rest = line[3:].partition(" ")
                self.chains.setdefault(name, []).append(rest.strip())

    def has(self, chain: str, rule: str) -> bool:
        return rule in self.chains.get(chain, ())


def save(ipv6: bool) -> SavedTable:
    from cnicore.firewall.tools import iptables_save

    return SavedTable(iptables_save(TABLE, ipv6))


def restore(create: list[str], lines: list[str], ipv6: bool) -> None:
    """One ``iptables-restore --noflush`` transaction: new chains, then the rule lines.

    Chains are created with ``-N``, never declared with ``:CHAIN`` (which would flush a
    chain someone made since we read the table): if one exists by now, the whole
    transaction fails and changes nothing, and the caller reads the table again."""
    from cnicore.firewall.tools import iptables_restore

    text = "*nat\n" + "".join(f"-N {name}\n" for name in create) + "".join(f"{line}\n" for line in lines)
    iptables_restore(text + "COMMIT\n", ipv6)


#: How often ADD and DEL read the table again when a concurrent writer changed it
#: between our read and our write (the transaction then failed and changed nothing).
ATTEMPTS = 5
_RACE_PATTERNS = ("already exists", "does a matching rule exist", "No chain/target/match by that name",
                  "Too many links", "Directory not empty", "Device or resource busy")


def _raced(err: BaseException) -> bool:
    return any(p in getattr(err, "stderr", "") for p in _RACE_PATTERNS)


# -- ADD ---------------------------------------------------------------------------------


class _Batch:
    """What one ADD adds to a family's nat table, decided against the saved table."""

    def __init__(self, saved: SavedTable, ipv6: bool) -> None:
        self.saved = saved
        self.ipv6 = ipv6
        self.create: list[str] = []
        self.lines: list[str] = []
        self._ipt: IPTables | None = None

    def _probe(self, chain: str, rule: list[str]) -> bool:
        """``iptables -C``: for rules whose saved text we cannot predict."""
        if self._ipt is None:
            from cnicore.firewall.tools import IPTables

            self._ipt = IPTables(self.ipv6)
        return self._ipt.exists(TABLE, chain, rule)

    def _present(self, chain: str, rule: list[str], canon: str | None) -> bool:
        return self.saved.has(chain, canon) if canon is not None else self._probe(chain, rule)

    def setup(self, chain: Chain) -> None:
        """The reference's chain.setup: create the chain, add each missing rule, then each
        missing entry rule (appended, or inserted first with ``prepend_entry``)."""
        from cnicore.firewall.tools import restore_line

        new = chain.name not in self.saved.chains
        if new:
            self.create.append(chain.name)
            self.saved.chains[chain.name] = []
        for i, rule in enumerate(chain.rules):
            canon = chain.rules_canon[i] if chain.rules_canon else None
            if new or not self._present(chain.name, rule, canon):
                self.lines.append(restore_line("-A", chain.name, *rule))
                if canon is not None:
                    self.saved.chains[chain.name].append(canon)
        for entry_chain in chain.entry_chains:
            for i, rule in enumerate(chain.entry_rules):
                canon = chain.entry_canon[i] if chain.entry_canon else None
                full = chain.entry(rule)
                # Nothing can jump to a chain that did not exist.
                if new or not self._present(entry_chain, full, canon):
                    op = ["-I", entry_chain, "1"] if chain.prepend_entry else ["-A", entry_chain]
                    self.lines.append(restore_line(*op, *full))
                    if canon is not None:
                        self.saved.chains.setdefault(entry_chain, []).append(canon)


def _steady_state_lines(chains: list[Chain]) -> list[str]:
    """ADD in one exec for the usual case: every shared chain and rule is there (``-C``,
    the reference's own probe, as lines of the transaction) and the container's chain is
    new (``-N``). Anything else fails the transaction, which then changed nothing."""
    from cnicore.firewall.tools import restore_line

    *shared, container = chains
    lines = []
    for chain in shared:
        lines += [restore_line("-C", chain.name, *rule) for rule in chain.rules]
        lines += [restore_line("-C", entry_chain, *chain.entry(rule))
                  for entry_chain in chain.entry_chains for rule in chain.entry_rules]
    lines.append(restore_line("-N", container.name))
    lines += [restore_line("-A", container.name, *rule) for rule in container.rules]
    lines += [restore_line("-A", entry_chain, *container.entry(rule))
              for entry_chain in container.entry_chains for rule in container.entry_rules]
    return lines


def forward_ports(conf: PortMapConf, container_id: str, net: ContainerNet) -> None:
    """ADD for one address: the shared chains if missing, and the container's chain."""
    from cnicore.firewall.tools import FirewallError

    chains = [set_mark_chain(conf.mark_bit), mark_masq_chain(conf.mark_bit)] \
        if conf.snat and conf.external_set_mark_chain is None else []
    chains += [top_level_dnat_chain(), dnat_chain(conf, container_id, net)]
    try:
        restore([], _steady_state_lines(chains), net.ipv6)
        return
    except FirewallError:
        pass  # not the steady state (a first ADD, a repeated one, a race, an error): read and plan
    for attempt in range(ATTEMPTS):
        try:
            saved = save(net.ipv6)
        except FirewallError as exc:
            raise FirewallError(f"failed to open iptables: {exc}") from None
        batch = _Batch(saved, net.ipv6)
        for chain in chains:
            batch.setup(chain)
        if not (batch.create or batch.lines):
            return
        try:
            restore(batch.create, batch.lines, net.ipv6)
            return
        except FirewallError as exc:
            if attempt + 1 < ATTEMPTS and _raced(exc):
                continue
            raise FirewallError(f"unable to setup DNAT: {exc}") from None


# -- CHECK -------------------------------------------------------------------------------


def _go_rules(rules: list[list[str]]) -> str:
    """Go's ``%s`` of a [][]string."""
    return "[" + " ".join("[" + " ".join(rule) + "]" for rule in rules) + "]"


def check_ports(conf: PortMapConf, container_id: str, net: ContainerNet) -> None:
    """CHECK for one address, in that address's family only (1.1.1 also looked for the IPv4
    rules in ip6tables, so CHECK failed for every container; later releases fixed it)."""
    from cnicore.errors import ERR_INTERNAL, CNIError
    from cnicore.firewall.tools import FirewallError, IPTables

    family = "ipv6" if net.ipv6 else "ipv4"
    chain = dnat_chain(conf, container_id, net)
    ipt = IPTables(net.ipv6)
    try:
        ipt.list_rules(TABLE, "OUTPUT")
    except FirewallError as exc:
        err4, err6 = ("<nil>", exc) if net.ipv6 else (exc, "<nil>")
        raise CNIError(ERR_INTERNAL, f"neither iptables nor ip6tables is usable, (iptables) {err4}, "
                       f"(ip6tables) {err6}") from None

    def fail(msg: str) -> CNIError:
        return CNIError(ERR_INTERNAL, f"could not check {family} dnat: {msg}")

    def exists(name: str, rule: list[str]) -> bool:
        try:
            return ipt.exists(TABLE, name, rule)
        except FirewallError:
            return False

    try:
        present = ipt.chain_exists(TABLE, chain.name)
    except FirewallError as exc:
        raise fail(str(exc)) from None
    if not present:
        raise fail(f"chain {chain.name} not found in iptables table {TABLE}")
    for rule in reversed(chain.rules):
        if not exists(chain.name, rule):
            raise fail(f"rule {_go_rules(chain.rules)} in chain {chain.name} not found in table {TABLE}")
    for entry_chain in chain.entry_chains:
        for rule in reversed(chain.entry_rules):
            if not exists(entry_chain, chain.entry(rule)):
                raise fail(f"rule {_go_rules(chain.entry_rules)} in chain {entry_chain} not found in table {TABLE}")


# -- DEL ---------------------------------------------------------------------------------


def _teardown_lines(saved: SavedTable, name: str, entry_chain: str) -> list[str]:
    """Delete every rule of ``entry_chain`` that jumps to ``name``, then flush and delete it."""
    import shlex

    from cnicore.firewall.tools import restore_line

    if name not in saved.chains:
        return []
    lines = []
    for rule in saved.chains.get(entry_chain, ()):
        if rule.endswith("-j " + name):
            lines.append(restore_line("-D", entry_chain, *shlex.split(rule)))
    return [*lines, restore_line("-F", name), restore_line("-X", name)]


def _teardown_family(names: list[tuple[str, str]], ipv6: bool) -> FirewallError | None:
    """DEL in one family: None when done; the error of a family iptables cannot read
    (skipped, as the reference skips a family it cannot use). Raises on a failed write."""
    from cnicore.errors import ERR_INTERNAL, CNIError
    from cnicore.firewall.tools import FirewallError

    for attempt in range(ATTEMPTS):
        try:
            saved = save(ipv6)
        except FirewallError as exc:
            return exc
        lines = [line for name, entry in names for line in _teardown_lines(saved, name, entry)]
        if not lines:
            return None
        try:
            restore([], lines, ipv6)
            return None
        except FirewallError as exc:
            if attempt + 1 < ATTEMPTS and _raced(exc):
                continue
            raise CNIError(ERR_INTERNAL, f"could not teardown {'ipv6' if ipv6 else 'ipv4'} dnat: {exc}") from None
    return None


def unforward_ports(conf: PortMapConf, container_id: str) -> None:
    """DEL: the container's chain (and an old release's SNAT chain) in both families,
    the two at once (each is a read and maybe a write: tools waited on in parallel).
    A family whose iptables cannot be used is skipped, unless both cannot."""
    import threading

    from cnicore.errors import ERR_INTERNAL, CNIError

    names = [(dnat_chain_name(conf.name, container_id), TOP_LEVEL_DNAT_CHAIN),
             (old_snat_chain_name(conf.name, container_id), OLD_TOP_LEVEL_SNAT_CHAIN)]
    outcome: dict[bool, BaseException | None] = {}

    def ipv6_family() -> None:
        try:
            outcome[True] = _teardown_family(names, True)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread below
            outcome[True] = exc

    worker = threading.Thread(target=ipv6_family, name="portmap-del-ipv6", daemon=True)
    worker.start()
    try:
        outcome[False] = _teardown_family(names, False)
    finally:
        worker.join()
    for ipv6 in (False, True):
        if isinstance(outcome[ipv6], CNIError):
            raise outcome[ipv6]  # type: ignore[misc]
    if all(outcome[ipv6] is not None for ipv6 in (False, True)):
        raise CNIError(ERR_INTERNAL, f"neither iptables nor ip6tables is usable, (iptables) {outcome[False]}, "
                       f"(ip6tables) {outcome[True]}")
