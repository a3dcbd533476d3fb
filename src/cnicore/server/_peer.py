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

The peer is read race-free: ``SO_PEERPIDFD`` pins the process that connected
(the one ``SO_PEERCRED`` names), its capabilities (``capget``), user namespace
and root directory are read by pid, and only then is the pidfd asked whether
the process still lives: if it does, its pid was not reused and what was read
is the peer's. Anything else raises :class:`NotTrusted`; the client runs the
cold path with its own credentials.

Kernels before 6.5 (Debian 12's 6.1 among them) have no ``SO_PEERPIDFD``. There
the pidfd is opened by the pid ``SO_PEERCRED`` gave (``pidfd_open``, 5.3), as
systemd does on such kernels: the same checks follow, and one race remains
that 6.5 closes — should the connecting process exit after connecting, leave
the connection to a child, and its pid be handed to another process before
``pidfd_open``, that process is the one checked. It needs the whole PID space
to wrap in the microseconds between ``accept`` and ``pidfd_open``.
"""

from __future__ import annotations

import os
import socket

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: ``SO_PEERPIDFD`` (Linux 6.5): a pidfd of the process that connected.
SO_PEERPIDFD = 77
#: ``ioctl(ns_fd, NS_GET_USERNS)``: a descriptor of the user namespace owning a namespace.
NS_GET_USERNS = 0xB701
_CAPABILITY_VERSION_3 = 0x20080522
#: How the caller's root directory is held (to take it when it runs under chroot).
_OPEN_PATH_DIR = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC


class NotTrusted(Exception):
    """The caller may not be served warm; ``reason`` is a refusal code of :mod:`._protocol`."""

    def __init__(self, reason: int, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class Server:
    """What the worker itself is (read once, before its first request), and ``capget``
    prepared once."""

    def __init__(self) -> None:
        import ctypes

        from cnicore import ns

        lib = ns._lib()
        self._capget: Any = lib.capget
        self._cap_header = (ctypes.c_uint32 * 2)(_CAPABILITY_VERSION_3, 0)
        self._cap_data = (ctypes.c_uint32 * 6)()
        st = os.stat("/proc/self/ns/user")
        self.userns = (st.st_dev, st.st_ino)
        self.caps = self.capabilities(os.getpid())
        #: Whether /proc numbers processes as this PID namespace does (peers are read by pid).
        self.proc_is_ours = os.readlink("/proc/self") == str(os.getpid())
        #: Whether the kernel gives a peer's pidfd with the connection (6.5).
        self.peer_pidfd = True

    def capabilities(self, pid: int) -> int:
        """The effective capability set of process ``pid`` (``capget``)."""
        import ctypes

        self._cap_header[1] = pid
        if self._capget(self._cap_header, self._cap_data) != 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
        return int(self._cap_data[0]) | int(self._cap_data[3]) << 32


class Caller:
    """The checked peer: its pid and a descriptor of its root directory (which may be a
    ``chroot`` inside its mount namespace)."""

    __slots__ = ("pid", "root")

    def __init__(self, pid: int, root: int) -> None:
        self.pid = pid
        self.root = root

    def close(self) -> None:
        if self.root >= 0:
            fd, self.root = self.root, -1
            os.close(fd)


def check(conn: socket.socket, pid: int, server: Server) -> Caller:
    """The peer of ``conn`` (``pid`` by ``SO_PEERCRED``) if it may be served warm, else
    :class:`NotTrusted`."""
    from cnicore.server import _protocol as proto

    pidfd = _peer_pidfd(conn, pid, server)
    root = -1
    try:
        if pid <= 0 or not server.proc_is_ours:
            raise NotTrusted(proto.REFUSE_PRIVILEGE, "the peer is not in this PID namespace and its /proc")
        try:
            caps = server.capabilities(pid)
            st = os.stat(f"/proc/{pid}/ns/user")
            root = os.open(f"/proc/{pid}/root", _OPEN_PATH_DIR)
        except OSError as exc:
            raise NotTrusted(proto.REFUSE_PRIVILEGE, f"cannot read the peer {pid}: {exc.strerror}") from None
        try:  # after the reads: while the peer lives, its pid was not reused
            import signal

            signal.pidfd_send_signal(pidfd, 0)
        except OSError:
            raise NotTrusted(proto.REFUSE_PRIVILEGE, f"caller {pid} exited") from None
        if (st.st_dev, st.st_ino) != server.userns:
            raise NotTrusted(proto.REFUSE_USERNS, f"caller {pid} is in another user namespace")
        missing = server.caps & ~caps
        if missing:
            raise NotTrusted(proto.REFUSE_PRIVILEGE, f"caller {pid} lacks capabilities {missing:#x}")
    except BaseException:
        if root >= 0:
            os.close(root)
        raise
    finally:
        os.close(pidfd)
    return Caller(pid, root)


def _peer_pidfd(conn: socket.socket, pid: int, server: Server) -> int:
    """A pidfd of the peer: the connection's own (6.5), else one opened by its pid."""
    import errno

    from cnicore.server import _protocol as proto

    if server.peer_pidfd:
        try:
            return conn.getsockopt(socket.SOL_SOCKET, SO_PEERPIDFD)
        except OSError as exc:
            if exc.errno != errno.ENOPROTOOPT:
                raise NotTrusted(proto.REFUSE_PRIVILEGE, f"no pidfd of the peer: {exc.strerror}") from None
            server.peer_pidfd = False  # a kernel before 6.5: for the worker's life
    if pid <= 0 or not server.proc_is_ours:
        raise NotTrusted(proto.REFUSE_PRIVILEGE, "the peer is not in this PID namespace and its /proc")
    try:
        return os.pidfd_open(pid)
    except OSError as exc:
        raise NotTrusted(proto.REFUSE_PRIVILEGE, f"no pidfd of the peer {pid}: {exc.strerror}") from None


def check_namespaces(fds: list[int], server: Server, known: set[tuple[int, int]]) -> None:
    """Every namespace descriptor in ``fds`` is owned by the server's user namespace.

    ``known``: namespaces already found so (the worker's own to begin with); those found
    here are added (a runtime passes its own on every request). Should a namespace die
    and its inode number come back for one of another owner, the worker's ``setns``
    still needs the server's own capabilities there: what the caller, who holds all of
    them in the same user namespace, could do itself."""
    import fcntl

    from cnicore.server import _protocol as proto

    for fd in fds:
        st = os.fstat(fd)
        ns_id = (st.st_dev, st.st_ino)
        if ns_id in known:
            continue
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
        if len(known) < KNOWN_NAMESPACES:
            known.add(ns_id)


#: How many namespaces a worker remembers as owned by its user namespace.
KNOWN_NAMESPACES = 64
