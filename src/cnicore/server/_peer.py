"""Who is asking: a warm request is served only for a caller that could do its work itself.

A worker runs as root with the server's capabilities in the server's user
namespace. Serving a caller with less would do on its behalf what its own
exec could not (a root of its own user namespace, or a root that dropped
CAP_NET_ADMIN, gets EPERM cold). So before anything is entered, the peer of
the connection must be, right now:

- in the server's user namespace;
- holding every capability the worker holds in its effective set (a plugin is
  code: which of them it will use cannot be known, so the worker's whole set is
  the only bound that keeps a warm request within the caller's privileges);
- and every namespace it passed must be owned by the server's user namespace
  (such a caller, with CAP_SYS_ADMIN there, may enter it itself).

The peer is read race-free: ``SO_PEERPIDFD`` pins the process that connected,
its pid is read through that pidfd's ``fdinfo`` (so it is the pid in this
``/proc``), its ``/proc`` entries are read, and only then is the pidfd asked
whether the process still lives: if it does, its pid was not reused and what was
read is the peer's. Anything else raises :class:`NotTrusted`; the client runs
the cold path with its own credentials.
"""

from __future__ import annotations

import os
import socket

#: ``SO_PEERPIDFD`` (Linux 6.5): a pidfd of the process that connected.
SO_PEERPIDFD = 77
#: ``ioctl(ns_fd, NS_GET_USERNS)``: a descriptor of the user namespace owning a namespace.
NS_GET_USERNS = 0xB701
#: How the caller's root directory is held (to take it when it runs under chroot).
_OPEN_PATH_DIR = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC


class NotTrusted(Exception):
    """The caller may not be served warm; ``reason`` is a refusal code of :mod:`._protocol`."""

    def __init__(self, reason: int, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class Server:
    """What the worker itself is (read once, before its first request)."""

    def __init__(self) -> None:
        st = os.stat("/proc/self/ns/user")
        self.userns = (st.st_dev, st.st_ino)
        self.caps = _cap_eff(_read(f"/proc/{os.getpid()}/status"))


class Caller:
    """The checked peer: its pid in this ``/proc`` and a descriptor of its root directory
    (which may be a ``chroot`` inside its mount namespace)."""

    __slots__ = ("pid", "root")

    def __init__(self, pid: int, root: int) -> None:
        self.pid = pid
        self.root = root

    def close(self) -> None:
        if self.root >= 0:
            fd, self.root = self.root, -1
            os.close(fd)


def check(conn: socket.socket, server: Server) -> Caller:
    """The peer of ``conn`` if it may be served warm, else :class:`NotTrusted`."""
    from cnicore.server import _protocol as proto

    try:
        pidfd = conn.getsockopt(socket.SOL_SOCKET, SO_PEERPIDFD)
    except OSError as exc:
        raise NotTrusted(proto.REFUSE_PRIVILEGE, f"no pidfd of the peer: {exc.strerror}") from None
    root = -1
    try:
        pid = _pid_of(pidfd)
        if pid <= 0:
            raise NotTrusted(proto.REFUSE_PRIVILEGE, "the peer is not visible in this /proc")
        try:
            status = _read(f"/proc/{pid}/status")
            st = os.stat(f"/proc/{pid}/ns/user")
            root = os.open(f"/proc/{pid}/root", _OPEN_PATH_DIR)
        except OSError as exc:
            raise NotTrusted(proto.REFUSE_PRIVILEGE, f"cannot read the peer {pid}: {exc.strerror}") from None
        _alive(pidfd, pid)  # after the reads: the pid was the peer's while they ran
    except BaseException:
        if root >= 0:
            os.close(root)
        raise
    finally:
        os.close(pidfd)
    if (st.st_dev, st.st_ino) != server.userns:
        os.close(root)
        raise NotTrusted(proto.REFUSE_USERNS, f"caller {pid} is in another user namespace")
    missing = server.caps & ~_cap_eff(status)
    if missing:
        os.close(root)
        raise NotTrusted(proto.REFUSE_PRIVILEGE, f"caller {pid} lacks capabilities {missing:#x}")
    return Caller(pid, root)


def check_namespaces(fds: list[int], server: Server) -> None:
    """Every namespace descriptor in ``fds`` is owned by the server's user namespace."""
    import fcntl

    from cnicore.server import _protocol as proto

    for fd in fds:
        try:
            owner = fcntl.ioctl(fd, NS_GET_USERNS)
        except OSError as exc:
            raise NotTrusted(proto.REFUSE_USERNS, f"owner of a namespace: {exc.strerror}") from None
        try:
            st = os.fstat(owner)
        finally:
            os.close(owner)
        if (st.st_dev, st.st_ino) != server.userns:
            raise NotTrusted(proto.REFUSE_USERNS, "a namespace owned by another user namespace")


def _pid_of(pidfd: int) -> int:
    """The pid a pidfd refers to, as this ``/proc`` numbers it (0: not in its pid
    namespace; -1: exited)."""
    text = _read(f"/proc/self/fdinfo/{pidfd}")
    start = text.find(b"\nPid:")
    if start < 0:
        return -1
    return int(text[start + 5:text.index(b"\n", start + 5)])


def _alive(pidfd: int, pid: int) -> None:
    import signal

    from cnicore.server import _protocol as proto

    try:
        signal.pidfd_send_signal(pidfd, 0)
    except OSError:
        raise NotTrusted(proto.REFUSE_PRIVILEGE, f"caller {pid} exited") from None


def _read(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 8192)
    finally:
        os.close(fd)


def _cap_eff(status: bytes) -> int:
    start = status.index(b"\nCapEff:") + 8
    return int(status[start:status.index(b"\n", start)], 16)
