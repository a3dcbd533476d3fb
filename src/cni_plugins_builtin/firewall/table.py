"""One protocol's filter table, read once with iptables-save and changed with one iptables-restore.

The reference runs one iptables command per check and per change (about ten
per container); reading the table once and writing only what is missing in
one ``iptables-restore --noflush`` batch gives the same rules in the same
order with two tool runs, and the batch is all-or-nothing.

A batch never declares a chain: iptables-restore flushes a declared chain
that exists, even with --noflush, so a writer that saw the chain missing
would wipe the rules another writer added meanwhile. A missing chain is
created with ``iptables -N`` first (already there is fine), as the
reference's EnsureChain does. Our own writers are serialised by
:class:`NetnsLock`; against Go's plugin the race is the reference's own
check-then-insert race (at worst a shared rule twice).
"""

from __future__ import annotations

from . import tools
from .rules import FILTER, Rule, quoted

TYPE_CHECKING = False
if TYPE_CHECKING:
    import _socket


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
        """Create the chain now if it is missing (exit status 1: someone just made it)."""
        if chain not in self.chains:
            tools.run(self.family, "--wait", "-t", FILTER, "-N", chain, ok_status=(1,))
            self.chains.add(chain)

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
        """Write every rule change in one ``iptables-restore --noflush`` (nothing to do: no run)."""
        if not self._script:
            return
        script = "\n".join([f"*{FILTER}", *self._script, "COMMIT", ""])
        tools.run(self.family + "-restore", "--noflush", "--wait", stdin=script)
        self._script.clear()


class NetnsLock:
    """Our firewall writers, one at a time per network namespace.

    The lock is an abstract unix socket name (as iptables' own lock once was):
    it belongs to the namespace of the calling thread, needs no file, and is
    released when its holder exits, however it exits."""

    NAME = b"\0cnicore-firewall-plugin"
    TIMEOUT = tools.TIMEOUT

    def __init__(self) -> None:
        self._sock: _socket.socket | None = None

    def __enter__(self) -> NetnsLock:
        import _socket
        import errno
        import time

        from cnicore.errors import ERR_INTERNAL, CNIError

        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
        deadline = time.monotonic() + self.TIMEOUT
        pause = 0.001
        while True:
            try:
                sock.bind(self.NAME)
                break
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or time.monotonic() > deadline:  # in use: another writer
                    sock.close()
                    raise CNIError(ERR_INTERNAL, f"could not take the firewall lock: {exc.strerror}") from None
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
        self._sock = sock
        return self

    def __exit__(self, *exc: object) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
