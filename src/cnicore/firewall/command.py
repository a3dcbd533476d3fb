"""Run a netfilter command-line tool, reporting failures as :class:`FirewallError`.

Every netfilter change in this package goes through one of these tools, like
the reference, so rules look identical whoever made them. Keeping the one
``subprocess`` call here gives one place for timeouts, locale and error text.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Sequence

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).

#: Upper bound for one tool run; Go's spoof checker uses 55 s for nft, and a
#: hung tool must not hang the plugin (the runtime would kill it with no error).
TIMEOUT = 55.0


class FirewallError(Exception):
    """A netfilter tool failed, or could not be run.

    ``status`` is the tool's exit status (``None`` if it could not be started
    or timed out) and ``stderr`` its error output, so callers can tell "does
    not exist" apart from real failures, as go-iptables' ``IsNotExist`` does.
    """

    def __init__(self, message: str, status: int | None = None, stderr: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.stderr = stderr


class ToolMissingError(FirewallError):
    """The tool's binary is not installed (not in :data:`TOOL_DIRS`)."""


#: Where the netfilter tools are looked for, in this order: the system's own locations,
#: never the caller's PATH. Go's plugins take ``exec.LookPath`` on PATH; here a plugin
#: may run in a warm server's worker with the server's privileges, and a tool found on
#: a caller-chosen PATH would be the caller's code run there. Cold runs use the same
#: rule, so warm and cold run the same binary.
TOOL_DIRS = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")


def find_tool(name: str) -> str | None:
    """Absolute path of the executable ``name`` in :data:`TOOL_DIRS`, or None."""
    for directory in TOOL_DIRS:
        path = os.path.join(directory, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def run(argv: Sequence[str], stdin: str | None = None, timeout: float = TIMEOUT) -> str:
    """Run ``argv`` and return its stdout; raise FirewallError on any failure.

    The C locale keeps the tools' messages stable (the not-exist checks parse
    them) and stdin is always given, so a tool never waits on our stdin,
    which is the CNI config pipe.
    """
    import subprocess

    tool = find_tool(argv[0])
    if tool is None:
        raise ToolMissingError(f"failed to locate {argv[0]}: executable file not found in {':'.join(TOOL_DIRS)}")
    env = dict(os.environ, LC_ALL="C")
    try:
        proc = subprocess.run([tool, *argv[1:]], input=stdin or "", capture_output=True, text=True,
                              env=env, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise FirewallError(f"running {list(argv)}: timed out after {timeout:g}s") from exc
    except OSError as exc:
        raise FirewallError(f"running {list(argv)}: {exc.strerror or exc}") from exc
    if proc.returncode != 0:
        err = proc.stderr.strip()
        raise FirewallError(f"running {list(argv)}: exit status {proc.returncode}: {err}",
                            proc.returncode, proc.stderr)
    return proc.stdout
