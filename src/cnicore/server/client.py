"""Sending one plugin exec to the warm server from Python (libcni's warm path).

What the native launcher does in C, for a caller that already runs Python:
:func:`call` hands the request to the server named in the plugin's launcher
header and returns ``(status, stdout, stderr)`` as an exec would, or ``None``
when the server cannot take it (none running, refused, lost before the
plugin started; and after it started, for anything but ADD) so the caller
execs the plugin instead. A server that gives no first answer within
:data:`~cnicore.server._protocol.FIRST_ANSWER_TIMEOUT` of the connect counts
as none, and is not asked again by this process.
"""

from __future__ import annotations

# _socket, not socket: socket imports enum and selectors (~8 ms of a cnitool run, which
# imports nothing else that needs them); the C module's socket objects are the same.
import _socket
import os
import time

from cnicore.server import _protocol as proto

TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading
    from typing import Mapping

    from cnicore.launchers import LauncherHeader

POLL_INTERVAL = 0.05
#: Sockets of servers that let a first answer time out in this process: a chain (or a
#: cnitool command run here after its server did not answer) goes cold at once.
_unresponsive: set[str] = set()


class ServerLost(Exception):
    """The server went away after the plugin started an ADD (CNI code 11)."""


class Cancelled(Exception):
    """The call was cancelled or timed out; the worker was told to stop."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _umask() -> int:
    """This process's umask, read without changing it (threads may be creating files)."""
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def call(header: LauncherHeader, plugin_path: str, stdin: bytes, env: Mapping[str, str],
         timeout: float | None = None, cancel: threading.Event | None = None
         ) -> tuple[int, bytes, bytes] | None:
    """Run one request on the server; see the module docstring."""
    answer_by = time.monotonic() + proto.FIRST_ANSWER_TIMEOUT
    sock = _connect(header.socket)
    if sock is None or not _accepted(sock, header.socket, answer_by):
        return None
    sent: list[int] = []
    keep: list[int] = []
    try:
        memfd = os.memfd_create("cni-stdin", os.MFD_CLOEXEC)
        sent.append(memfd)
        _write_all(memfd, stdin)
        os.lseek(memfd, 0, os.SEEK_SET)
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        keep += [out_r, err_r]
        sent += [out_w, err_w]
        flags = proto.FLAG_STDIN_SNAPSHOT
        netns = env.get("CNI_NETNS", "")
        if netns:
            try:
                sent.append(os.open(netns, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK))
                flags |= proto.FLAG_NETNS_FD
            except OSError:
                pass
        _send(sock, sent[:3], sent[3:], flags, header.file, [plugin_path], env)
    except OSError:
        _close(keep)
        sock.close()
        return None
    finally:
        _close(sent)
    try:
        done = _collect(sock, out_r, err_r, env.get("CNI_COMMAND", ""), timeout, cancel, answer_by)
    except _NoAnswer:
        _unresponsive.add(header.socket)
        return None
    finally:
        _close(keep)
        sock.close()
    return done


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _close(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def _accepted(sock: _socket.socket, socket_path: str, answer_by: float, remember: bool = True) -> bool:
    """Whether a worker took the connection (its ``A`` frame) by ``answer_by``: only then
    may descriptors be sent. The socket is closed when not; a timeout marks it
    unresponsive for this process unless ``remember`` is false."""
    frame = b""
    try:
        while len(frame) < proto.FRAME.size:
            left = answer_by - time.monotonic()
            if left <= 0:
                raise TimeoutError
            sock.settimeout(left)
            more = sock.recv(proto.FRAME.size - len(frame))
            if not more:
                break
            frame += more
    except TimeoutError:
        if remember:
            _unresponsive.add(socket_path)
        frame = b""
    except OSError:
        frame = b""
    if len(frame) == proto.FRAME.size and proto.decode_frame(frame)[0] == proto.ACCEPTED:
        return True
    sock.close()
    return False


class _NoAnswer(Exception):
    """No first frame from the server within :data:`proto.FIRST_ANSWER_TIMEOUT`."""


def _connect(socket_path: str, remembered: bool = True) -> _socket.socket | None:
    """A connection to the server at ``socket_path``, or None when none answers in time
    (its sends, too, time out with the first answer's deadline) or, if ``remembered``,
    when it let a first answer time out in this process before."""
    if remembered and socket_path in _unresponsive:
        return None
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    sock.settimeout(proto.FIRST_ANSWER_TIMEOUT)
    try:
        sock.connect(socket_path)
    except OSError:
        sock.close()
        return None
    return sock


def _send(sock: _socket.socket, stdio: list[int], extra: list[int], flags: int, launcher: str,
          argv: list[str], env: Mapping[str, str]) -> None:
    """The request, with ``stdio``, this process's mount and network namespaces and the
    ``extra`` descriptors attached, in the order the server reads them."""
    from cnicore.server._native import build_id

    namespaces = [os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)]
    try:
        namespaces.append(os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC))
        message = proto.encode_request(build_id(), _umask(), flags, os.getcwd(), launcher, argv, dict(env))
        import struct  # loaded already (the protocol module); array would cost ~1-3 ms

        fds = [*stdio, *namespaces, *extra]
        rights = struct.pack(f"{len(fds)}i", *fds)
        sock.sendmsg([message[:65536]], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, rights)])
        if len(message) > 65536:
            sock.sendall(message[65536:])
    finally:
        _close(namespaces)


def _collect(sock: _socket.socket, out_r: int, err_r: int, command: str, timeout: float | None,
             cancel: threading.Event | None, answer_by: float) -> tuple[int, bytes, bytes] | None:
    """The exit status and output; :class:`_NoAnswer` when no frame came by ``answer_by``."""
    import select

    deadline = None if timeout is None else time.monotonic() + timeout
    poller = select.poll()
    sock.setblocking(False)
    watched = {sock.fileno(), out_r, err_r}
    for fd in watched:
        poller.register(fd, select.POLLIN)
    chunks: dict[int, list[bytes]] = {out_r: [], err_r: []}
    replies = _Replies()
    open_pipes = 2
    while replies.status is None or open_pipes:
        wait = POLL_INTERVAL if cancel is not None else None
        if deadline is not None:
            remaining = max(deadline - time.monotonic(), 0.0)
            wait = remaining if wait is None else min(wait, remaining)
        if not replies.started:
            remaining = max(answer_by - time.monotonic(), 0.0)
            wait = remaining if wait is None else min(wait, remaining)
        for fd, _ in poller.poll(None if wait is None else wait * 1000):
            if fd == sock.fileno():
                try:
                    data = sock.recv(64)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    poller.unregister(fd)
                    if replies.status is None:
                        replies.hung_up(command == "ADD", "ADD")
                        return None
                    continue
                if not replies.feed(data):
                    return None
            else:
                data = os.read(fd, 65536)
                if data:
                    chunks[fd].append(data)
                else:
                    poller.unregister(fd)
                    open_pipes -= 1
        if not replies.started and replies.status is None and time.monotonic() >= answer_by:
            raise _NoAnswer
        if cancel is not None and cancel.is_set():
            raise Cancelled("cancelled")
        if deadline is not None and time.monotonic() >= deadline:
            raise Cancelled("timeout")
    assert replies.status is not None
    return replies.status, b"".join(chunks[out_r]), b"".join(chunks[err_r])


class _Replies:
    """The server's reply frames as they arrive: ``S`` (started), then ``X`` (the exit
    status); anything else is a refusal."""

    def __init__(self) -> None:
        self.pending = b""
        self.started = False
        self.status: int | None = None

    def feed(self, data: bytes) -> bool:
        """Take ``data``; False when the server refused the request."""
        self.pending += data
        while len(self.pending) >= proto.FRAME.size and self.status is None:
            kind, value = proto.decode_frame(self.pending[:proto.FRAME.size])
            self.pending = self.pending[proto.FRAME.size:]
            if kind == proto.STARTED:
                self.started = True
            elif kind == proto.EXITED:
                self.status = value
            else:
                return False
        return True

    def hung_up(self, is_add: bool, verb: str) -> None:
        """The connection closed before the exit status: :class:`ServerLost` when an add
        had started (part of it may be done: never rerun it); otherwise the caller reruns."""
        if self.started and is_add:
            raise ServerLost(f"the warm server closed the connection during {verb}")


# -- a whole cnitool command --------------------------------------------------------

def socket_for(cni_path: str) -> str:
    """The warm server named by the launchers ``cnitool plugins install`` wrote in the
    first directory of ``cni_path`` that has any ("" when none names one): the server the
    plugins of a ``cnitool add`` would be sent to anyway."""
    from cnicore.launchers import read_manifest

    for directory in filter(None, cni_path.split(os.pathsep)):
        for meta in read_manifest(directory).values():
            socket_path = meta.get("socket")
            if isinstance(socket_path, str) and socket_path:
                return socket_path
    return ""


def run_command(socket_path: str, interpreter: str, argv: list[str], env: Mapping[str, str],
                verb: str) -> int | None:
    """Run a ``cnitool`` network command (``argv``) in a worker of the server at
    ``socket_path``, with this process's stdio, namespaces, directory, umask and
    environment, as :func:`cnicore.cli.netverbs.run_verb` would run it here; its exit
    status. None when the server cannot take it (none running, refused, lost before
    it started; and after it started, for anything but add), so the caller runs it
    itself. :class:`ServerLost` when the server went away during an add."""
    answer_by = time.monotonic() + proto.FIRST_ANSWER_TIMEOUT
    sock = _connect(socket_path)
    if sock is None or not _accepted(sock, socket_path, answer_by):
        return None
    try:
        _send(sock, [0, 1, 2], [], proto.FLAG_CNITOOL, interpreter, argv, env)
        return _await_exit(sock, verb == "add", answer_by)
    except _NoAnswer:
        _unresponsive.add(socket_path)
        return None
    except OSError:
        return None
    finally:
        sock.close()


def _await_exit(sock: _socket.socket, is_add: bool, answer_by: float) -> int | None:
    """The exit status in the server's frames (see :func:`run_command` for None);
    :class:`_NoAnswer` when no frame came by ``answer_by``."""
    replies = _Replies()
    while replies.status is None:
        if replies.started:
            sock.settimeout(None)
        else:
            left = answer_by - time.monotonic()
            if left <= 0:
                raise _NoAnswer
            sock.settimeout(left)
        try:
            data = sock.recv(64)
        except TimeoutError:
            raise _NoAnswer from None
        if not data:
            replies.hung_up(is_add, "add")
            return None
        if not replies.feed(data):
            return None
    return replies.status


# -- the server's counters ------------------------------------------------------------

def status(socket_path: str) -> dict[str, object] | None:
    """The counters of the server at ``socket_path`` (``cnitool daemon status``), or None
    when it gives no answer within :data:`proto.FIRST_ANSWER_TIMEOUT` (none running,
    every worker busy or stopped) or refuses (another uid, another protocol). Asked afresh
    every time: a status question neither skips nor marks an unresponsive server (a
    readiness probe asks again until a worker answers)."""
    import json

    from cnicore.server._native import build_id

    answer_by = time.monotonic() + proto.FIRST_ANSWER_TIMEOUT
    sock = _connect(socket_path, remembered=False)
    if sock is None or not _accepted(sock, socket_path, answer_by, remember=False):
        return None
    try:
        sock.sendall(proto.encode_request(build_id(), 0, proto.FLAG_STATUS, "/", "", [], {}))
        data = b""
        while True:
            left = answer_by - time.monotonic()
            if left <= 0:
                return None
            sock.settimeout(left)
            more = sock.recv(65536)
            if not more:
                return None
            data += more
            if len(data) >= proto.FRAME.size:
                kind, length = proto.decode_frame(data[:proto.FRAME.size])
                if kind != proto.STATUS_REPLY:
                    return None
                if len(data) >= proto.FRAME.size + length:
                    answer = json.loads(data[proto.FRAME.size:proto.FRAME.size + length])
                    return answer if isinstance(answer, dict) else None
    except (OSError, ValueError):
        return None
    finally:
        sock.close()
