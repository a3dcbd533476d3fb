"""The part of github.com/coreos/go-iptables the reference's ipMasq uses, over the CLI.

Same commands and the same error classification as go-iptables, so our rules
and our notion of "already gone" match the Go plugins'. ``--wait`` is always
passed: every iptables we support has it, and it serialises us with other
writers through the xtables lock.
"""

from __future__ import annotations

from cnicore.firewall.command import FirewallError, ToolMissingError, run

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Sequence

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).

__all__ = ["IPTables", "is_not_exist", "split_rule"]

# go-iptables' isNotExistPatterns: any of these in stderr means "no such rule/chain".
_NOT_EXIST_PATTERNS = (
    "Bad rule (does a matching rule exist in that chain?).\n",
    "No chain/target/match by that name.\n",
    "No such file or directory",
    "does not exist",
)
_EXISTS_STATUS = 1  # exit status of "-N" when the chain exists


def is_not_exist(err: BaseException) -> bool:
    """True if an iptables failure only says the rule or chain is not there."""
    return isinstance(err, FirewallError) and not isinstance(err, ToolMissingError) and any(
        pattern in err.stderr for pattern in _NOT_EXIST_PATTERNS)


def split_rule(line: str) -> list[str]:
    """Tokens of one ``iptables -S`` line; iptables quotes comments shell-style."""
    import shlex

    return shlex.split(line)


class IPTables:
    """One protocol's iptables binary (``iptables`` or ``ip6tables``)."""

    def __init__(self, ipv6: bool = False) -> None:
        self.ipv6 = ipv6
        self.tool = "ip6tables" if ipv6 else "iptables"

    def __repr__(self) -> str:
        return f"IPTables({self.tool})"

    def run(self, *args: str) -> str:
        return run([self.tool, *args, "--wait"])

    def supported(self) -> bool:
        """Go's ``utils.SupportsIPTables``: can we even ask whether a chain exists?"""
        try:
            self.chain_exists("filter", "INPUT")
        except FirewallError:
            return False
        return True

    def chain_exists(self, table: str, chain: str) -> bool:
        """As go-iptables: ``-S chain 1`` succeeds, exit status 1 means absent."""
        try:
            self.run("-t", table, "-S", chain, "1")
        except FirewallError as exc:
            if exc.status == 1:
                return False
            raise
        return True

    def list_rules(self, table: str, chain: str | None = None) -> list[str]:
        """``-S`` lines of a table (policies, chains, then rules) or of one chain."""
        args = ["-t", table, "-S"] + ([chain] if chain else [])
        return [line for line in self.run(*args).splitlines() if line.strip()]

    def list_chains(self, table: str) -> list[str]:
        """Built-in (``-P``) and user (``-N``) chains of a table, as go-iptables ListChains."""
        chains = []
        for line in self.list_rules(table):
            if not line.startswith(("-P", "-N")):
                break
            chains.append(line.split()[1])
        return chains

    def new_chain(self, table: str, chain: str) -> None:
        self.run("-t", table, "-N", chain)

    def exists(self, table: str, chain: str, rulespec: Sequence[str]) -> bool:
        """``-C``: exit status 1 means the rule is not there (any other failure raises)."""
        try:
            self.run("-t", table, "-C", chain, *rulespec)
        except FirewallError as exc:
            if exc.status == 1:
                return False
            raise
        return True

    def append(self, table: str, chain: str, rulespec: Sequence[str]) -> None:
        self.run("-t", table, "-A", chain, *rulespec)

    def append_unique(self, table: str, chain: str, rulespec: Sequence[str]) -> None:
        """Append unless an identical rule exists anywhere in the chain."""
        if not self.exists(table, chain, rulespec):
            self.append(table, chain, rulespec)

    def delete(self, table: str, chain: str, rulespec: Sequence[str]) -> None:
        self.run("-t", table, "-D", chain, *rulespec)

    def clear_chain(self, table: str, chain: str) -> None:
        """go-iptables ClearChain: create the chain, or flush it if it exists."""
        try:
            self.new_chain(table, chain)
        except FirewallError as exc:
            if exc.status != _EXISTS_STATUS:
                raise
            self.run("-t", table, "-F", chain)

    def flush_chain(self, table: str, chain: str) -> None:
        self.run("-t", table, "-F", chain)

    def delete_chain(self, table: str, chain: str) -> None:
        """``-X``: the chain must be empty and unreferenced."""
        self.run("-t", table, "-X", chain)
