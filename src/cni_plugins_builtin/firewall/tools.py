"""Run a netfilter tool by absolute path, never through the caller's PATH.

A CNI runtime's PATH is whatever its caller had; a plugin that changes the
host's firewall must not run an ``iptables`` someone put first on it. The
tools are looked up in the standard system directories only.
"""

from __future__ import annotations

import os

from cnicore.errors import ERR_INTERNAL, CNIError

#: Where the tools may live, in order.
SYSTEM_DIRS = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")
#: One tool run may not hang the plugin (the runtime would kill it without an error).
TIMEOUT = 55.0


def tool_path(name: str) -> str:
    """The absolute path of ``name`` in :data:`SYSTEM_DIRS`; a CNI error if it is in none."""
    for directory in SYSTEM_DIRS:
        path = os.path.join(directory, name)
        if os.access(path, os.X_OK) and os.path.isfile(path):
            return path
    raise CNIError(ERR_INTERNAL, f"failed to locate {name}: not found in {', '.join(SYSTEM_DIRS)}")


def run(name: str, *args: str, stdin: str = "", ok_status: tuple[int, ...] = ()) -> str:
    """Run a tool with ``args``; its stdout, or a CNI error with its stderr (unless its
    exit status is one of ``ok_status``).

    The C locale keeps its messages stable; stdin is always given so a tool
    never reads ours (the CNI config pipe)."""
    import subprocess

    argv = [tool_path(name), *args]
    try:
        proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=TIMEOUT, check=False,
                              env={"LC_ALL": "C", "PATH": ":".join(SYSTEM_DIRS)})
    except subprocess.TimeoutExpired:
        raise CNIError(ERR_INTERNAL, f"running {argv}: timed out after {TIMEOUT:g}s") from None
    except OSError as exc:
        raise CNIError(ERR_INTERNAL, f"running {argv}: {exc.strerror or exc}") from None
    if proc.returncode != 0 and proc.returncode not in ok_status:
        raise CNIError(ERR_INTERNAL, f"running {argv}: exit status {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout
