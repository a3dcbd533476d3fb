"""One protocol's filter table, read once with iptables-save and changed with one iptables-restore.

The reference runs one iptables command per check and per change (about ten
per container); reading the table once and writing only what is missing in
one ``iptables-restore --noflush`` batch gives the same rules in the same
order with two tool runs, and the batch is all-or-nothing. Like the
reference's check-then-insert, two writers racing between the read and the
write could both add a shared rule; the xtables lock (``--wait``) only
serialises the writes.
"""

from __future__ import annotations

from . import tools
from .rules import FILTER, Rule, quoted


def split_saved(line: str) -> list[str]:
    """The words of one iptables-save line: double quotes group, a backslash escapes the
    next character (how iptables quotes a comment); shlex's rules for these lines without
    its import of ``re`` on the exec path."""
    words: list[str] = []
    word: list[str] = []
    started = quoted = escaped = False
    for char in line:
        if escaped:
            word.append(char)
            escaped = False
        elif char == "\\":
            escaped = started = True
        elif char == '"':
            quoted = not quoted
            started = True
        elif char in " \t" and not quoted:
            if started:
                words.append("".join(word))
                word, started = [], False
        else:
            word.append(char)
            started = True
    if started:
        words.append("".join(word))
    return words


class FilterTable:
    """The chains and rules of one protocol's filter table, and the changes to make to it."""

    def __init__(self, ipv6: bool) -> None:
        self.ipv6 = ipv6
        self.chains: set[str] = set()
        self.rules: dict[str, list[Rule]] = {}
        self._script: list[str] = []

    @property
    def family(self) -> str:
        return "ip6tables" if self.ipv6 else "iptables"

    def load(self) -> FilterTable:
        """Read the table (an absent table has no chains)."""
        text = tools.run(self.family + "-save", "-t", FILTER)
        for line in text.splitlines():
            if line.startswith(":"):
                self.chains.add(line[1:].split(" ", 1)[0])
            elif line.startswith("-A "):
                tokens = split_saved(line)
                self.rules.setdefault(tokens[1], []).append(tuple(tokens[2:]))
        return self

    def has(self, chain: str, rule: Rule) -> bool:
        return rule in self.rules.get(chain, ())

    # -- changes, written by commit() ---------------------------------------------

    def ensure_chain(self, chain: str) -> None:
        if chain not in self.chains:
            self.chains.add(chain)
            self._script.append(f":{chain} - [0:0]")

    def insert_unique(self, chain: str, rule: Rule) -> None:
        """At position 1 unless an identical rule is anywhere in the chain."""
        if not self.has(chain, rule):
            self.rules.setdefault(chain, []).insert(0, rule)
            self._script.append(f"-I {chain} 1 {quoted(rule)}")

    def append_unique(self, chain: str, rule: Rule) -> None:
        if not self.has(chain, rule):
            self.rules.setdefault(chain, []).append(rule)
            self._script.append(f"-A {chain} {quoted(rule)}")

    def delete(self, chain: str, rule: Rule) -> None:
        """Delete one copy of the rule if it is there."""
        if self.has(chain, rule):
            self.rules[chain].remove(rule)
            self._script.append(f"-D {chain} {quoted(rule)}")

    @property
    def pending(self) -> bool:
        return bool(self._script)

    def commit(self) -> None:
        """Write every change in one ``iptables-restore --noflush`` (nothing to do: no run).

        Chains are declared only when missing: a declared existing chain is
        flushed by iptables-legacy-restore even with --noflush."""
        if not self._script:
            return
        chains = [line for line in self._script if line.startswith(":")]
        rules = [line for line in self._script if not line.startswith(":")]
        script = "\n".join([f"*{FILTER}", *chains, *rules, "COMMIT", ""])
        tools.run(self.family + "-restore", "--noflush", "--wait", stdin=script)
        self._script.clear()
