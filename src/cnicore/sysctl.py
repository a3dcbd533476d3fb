"""Sysctl writes gated by policy (public toolkit), and the default policy itself.

Plugins never open /proc/sys directly: :func:`write` resolves the key, asks
every ``cni_sysctl_check`` implementation (any may veto) and only then writes.
Run it inside the target namespace (``NetNS.do``): /proc/sys/net shows the
namespace of the thread that opens it.

This module is also a policy plugin: its ``cni_sysctl_check`` allows only
paths that resolve under /proc/sys/net/.
"""

from __future__ import annotations

import os

from cnicore.errors import ERR_INTERNAL, CNIError
from cnicore.plugin import hookimpl

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnicore.request import Request

__all__ = ["NET_ROOT", "SYSCTL_ROOT", "check", "is_net_path", "key_to_path", "read", "write", "write_checked"]

SYSCTL_ROOT = "/proc/sys"
NET_ROOT = "/proc/sys/net/"


def key_to_path(key: str, ifname: str = "") -> str:
    """``net.ipv4.conf.IFNAME.forwarding`` -> ``/proc/sys/net/ipv4/conf/eth0/forwarding``.

    Dots become path separators and the first ``IFNAME`` becomes ``ifname``
    (which may itself contain dots, e.g. a VLAN ``eth0.100``). A key or
    interface name that tries to leave its place (``..``, ``/``, empty
    components) is refused before anything is touched — with code 999, the
    code the reference reports for every sysctl key it cannot use.
    """
    if not key or "/" in key:
        raise CNIError(ERR_INTERNAL, f"invalid sysctl key: {key!r}")
    parts = key.split(".")
    if any(p == "" for p in parts):
        raise CNIError(ERR_INTERNAL, f"invalid sysctl key: {key!r}")
    if "IFNAME" in parts:
        if not ifname or "/" in ifname or ifname in (".", ".."):
            raise CNIError(ERR_INTERNAL,
                           f"invalid interface name {ifname!r} for sysctl key {key!r}")
        parts[parts.index("IFNAME")] = ifname
    return SYSCTL_ROOT + "/" + "/".join(parts)


def is_net_path(path: str) -> bool:
    """True if ``path`` stays under /proc/sys/net/ after normalisation."""
    if any(part == ".." for part in path.split("/")):
        return False
    return os.path.normpath(path).startswith(NET_ROOT)


@hookimpl
def cni_sysctl_check(key: str, value: str, path: str) -> None:
    """Default policy: only the network subsystem's sysctls."""
    if not is_net_path(path):
        raise CNIError(ERR_INTERNAL,
                       f"invalid net sysctl key: {key!r} (only keys under {NET_ROOT} are allowed)")


def check(key: str, value: str, path: str, request: Request | None = None, hook: object = None) -> None:
    """Ask every policy about a write; the default policy alone when no host is given."""
    if hook is None and request is not None and request.host is not None:
        request.host.call_hook("cni_sysctl_check", key=key, value=value, path=path, request=request)
    elif hook is None:
        cni_sysctl_check(key, value, path)
    else:
        hook.cni_sysctl_check(key=key, value=value, path=path, request=request)  # type: ignore[attr-defined]


def read(path: str) -> str:
    """The current value, stripped.

    Plain ``os`` calls, not ``open()``: a text file object costs more than the
    kernel's work for a /proc/sys file, and a bridge ADD reads several. Same
    errors (``OSError`` with the path) and the same text (ASCII)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 4096).decode().strip()
    finally:
        os.close(fd)


def write(key: str, value: str, *, ifname: str = "", request: Request | None = None,
          hook: object = None, best_effort: bool = False, skip_same: bool = False) -> str | None:
    """Resolve ``key``, check it with the policies, write ``value``; return the old value
    (``None`` only with ``best_effort``).

    ``best_effort``: a write the kernel refuses (a missing key, say) returns
    ``None`` instead of failing, as the reference treats its optional
    sysctls; a policy veto still fails. ``skip_same``: no write when the value
    is already set — only for plain integer keys, where writing the same
    value changes nothing (some keys act on every write, e.g. neighbour
    timers re-randomise).
    """
    path = key_to_path(key, ifname)
    check(key, value, path, request, hook)
    try:
        return write_checked(path, value, key, skip_same)
    except CNIError:
        if best_effort:
            return None
        raise


def write_checked(path: str, value: str, key: str = "", skip_same: bool = False) -> str:
    """Write a path the policies already accepted (see :func:`check`); the old value.

    For plugins that validate every key before changing anything. The write is
    ``open(path, "w").write(value)`` in plain ``os`` calls (same flags, one
    ``write``, same errors).
    """
    try:
        previous = read(path)
        if skip_same and previous == value:
            return previous
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)
    except OSError as exc:
        # The kernel refused the write: an internal error (999), as the reference reports it.
        raise CNIError(ERR_INTERNAL, f"failed to set sysctl {key or path}={value}: {exc}") from None
    return previous
