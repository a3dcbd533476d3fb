"""Requests served in a forked process, each as an exec would run it.

A worker is forked by the server's parent with everything imported. It
accepts one connection, tells the parent it is busy (so the parent may fork
a replacement), answers ``A`` to a root caller (only then does the client
send its request and descriptors), takes the whole request within
:data:`~cnicore.server._protocol.RECEIVE_TIMEOUT` of the accept, checks the
caller and the descriptors, enters the caller's
mount namespace and then its network namespace (the process is still
single-threaded, which ``setns(CLONE_NEWNS)`` requires), takes the caller's
environment, working directory and umask, and runs the plugin through
:func:`cnicore.skel.run` with the caller's own stdio. It closes that stdio
before it sends the exit status.

Then it either exits or goes back to ``accept()`` for another request: a
fork, its copy-on-write faults and its exit cost ~5 ms of CPU per request,
several times the work of most requests. It goes back only when every plugin
that ran in it declares ``WARM_REUSE = True`` (it keeps no per-request state
in the process) and when it could become exactly what it was before the
request (:class:`Baseline`: namespaces, directory, umask, environment, argv,
stdio, signal handlers; no thread, child or namespace descriptor left over,
its memory within bounds), at most :data:`MAX_REQUESTS` times. Otherwise it
exits as a one-request worker always did.

The kernel kills the worker's process group (SIGIO) when the caller hangs
up or sends a cancel, and SIGALRM does at the deadline: nothing may keep a
runtime's stdout open after its plugin process is gone.
"""

from __future__ import annotations

import os
import socket
import stat
import struct
import sys

from cnicore.server import _code, _peer
from cnicore.server import _protocol as proto

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, NoReturn

#: Records a worker writes to the parent's status pipe: pid + kind.
STATUS = struct.Struct("=iB")
#: What the parent writes into the memory it shares with its workers: idle workers, target.
POOL_COUNTS = struct.Struct("=ii")
BUSY = 1
STALE = 2
SERVED = 3
IDLE = 4  # back in accept() after a request
#: A refusal is reported as kind REFUSED_BASE + its reason (a :data:`proto.REFUSALS` key).
REFUSED_BASE = 64
#: Refusal reasons the counters have room for.
MAX_REASONS = 32
#: The counters the parent keeps after :data:`POOL_COUNTS` in the shared memory, for a
#: status request: parent pid, workers, busy workers, restarts, served, refused by reason.
STATS = struct.Struct(f"=iiiqq{MAX_REASONS}q")

#: Requests one worker serves at most, by default (its heap grows a little with each).
MAX_REQUESTS = 200
#: A worker that has served and then waits this long for another request exits, so
#: the pool shrinks back to its idle target after a burst (the default).
IDLE_EXIT_SECONDS = 30.0
#: How often an idle worker checks whether it is surplus.
SURPLUS_CHECK_SECONDS = 2.0
#: A worker whose resident memory grew more than this since its first request exits.
RSS_GROWTH_LIMIT = 32 << 20
#: Descriptors a plugin may keep open across requests (e.g. pooled connections).
FD_GROWTH_LIMIT = 16
#: Signals whose handlers must be what they were before the request (SIGTERM and
#: SIGINT are switched by the worker itself: :func:`_busy`, :func:`_idle`).
_WATCHED_SIGNALS = ("SIGHUP", "SIGALRM", "SIGIO", "SIGCHLD", "SIGPIPE", "SIGUSR1", "SIGUSR2", "SIGQUIT")

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
NS_GET_NSTYPE = 0xB703
_STDIO_TYPES = (stat.S_ISFIFO, stat.S_ISREG, stat.S_ISCHR, stat.S_ISSOCK)


class Refused(Exception):
    """The request is not served here; the client runs the cold path."""

    def __init__(self, reason: int, detail: str = "") -> None:
        super().__init__(f"{proto.REFUSALS[reason]}{': ' + detail if detail else ''}")
        self.reason = reason


class WorkerContext:
    """What the parent prepared for its workers."""

    def __init__(self, build_id: str, timeout: float, is_stale: Callable[[], bool],
                 warm_host: object = None, generation_fd: int = -1, max_requests: int = MAX_REQUESTS,
                 idle_exit: float = IDLE_EXIT_SECONDS, run_command: Callable[[list[str]], int] | None = None
                 ) -> None:
        self.build_id = build_id
        #: Runs a whole ``cnitool`` command (argv) here, with the caller's stdio; its exit
        #: status. Given by the tooling that starts the server (``cnitool daemon``).
        self.run_command = run_command
        #: Shared with the parent, which keeps its idle and target worker counts there.
        self.pool_counts: Any = None
        self.max_requests = max_requests
        self.idle_exit = idle_exit
        self.warm_host = warm_host
        self.parent = os.getpid()
        self.timeout = timeout
        self.is_stale = is_stale
        #: Read end of a pipe whose write end only this parent image holds (close-on-exec):
        #: at its end of file the parent has stopped, restarted or died, and a worker
        #: must not take another request for it.
        self.generation_fd = generation_fd

    def surplus(self) -> bool:
        """Whether the pool has more idle workers than it keeps (as the parent last wrote)."""
        if self.pool_counts is None:
            return False
        idle, target = POOL_COUNTS.unpack_from(self.pool_counts)
        return bool(idle > target)


def run(listener: socket.socket, status_fd: int, ctx: WorkerContext) -> NoReturn:
    """The worker's whole life: requests until one of them may not be followed by
    another (see the module docstring), then ``_exit``."""
    global _log_fd, _status_fd
    import signal

    _die_with_parent(True)
    if os.getppid() != ctx.parent:
        os._exit(0)
    _warm_up(ctx)
    _log_fd = os.dup(2)  # the server's stderr, for messages while fd 2 is a caller's
    _status_fd = status_fd
    signal.signal(signal.SIGALRM, _deadline_passed)
    from cnicore import invoke, launchers

    invoke.use_warm_server = False  # what a request runs in-process stays here
    launchers.code_check = _code.is_servers_own  # a caller's own plugin code is exec'd, not imported
    _trust_self()
    waiter = _Waiter(listener, ctx.generation_fd)
    baseline = Baseline()
    for served in range(ctx.max_requests):
        conn = _next_connection(waiter, ctx, served)
        if conn is None:
            break
        _busy()
        try:
            os.write(status_fd, STATUS.pack(os.getpid(), BUSY))
        except OSError:
            pass
        try:
            again = _serve(conn, status_fd, ctx)
        except BaseException as exc:  # noqa: BLE001 - a worker never raises into the parent's loop
            _log(f"worker {os.getpid()}: {type(exc).__name__}: {exc}")
            again = False
        conn.close()
        if not again or served + 1 >= ctx.max_requests or not baseline.restore() or waiter.generation_ended():
            break
        _idle()
        if os.getppid() != ctx.parent:
            break
        try:
            os.write(status_fd, STATUS.pack(os.getpid(), IDLE))
        except OSError:
            break
    os._exit(0)


def _next_connection(waiter: _Waiter, ctx: WorkerContext, served: int) -> socket.socket | None:
    """The next connection, or None when the worker should exit: its parent's generation
    ended; it finds itself surplus (checked every :data:`SURPLUS_CHECK_SECONDS`: more
    idle workers than the pool keeps, so a burst is over and its pages are memory the
    machine wants back); or, once it has served, it waited ``idle_exit`` seconds."""
    waited = 0.0
    # Staggered by pid, so surplus workers leave one after another and the parent's
    # counts keep up (all at once, they would all find themselves surplus).
    period = SURPLUS_CHECK_SECONDS + (os.getpid() % 16) * 0.1
    while not served or waited < ctx.idle_exit:
        step = period if not served else min(period, ctx.idle_exit - waited)
        conn = waiter.accept(step)
        if conn is not None:
            return conn
        if waiter.generation_ended() or ctx.surplus():
            return None
        waited += step
    return None


def _busy() -> None:
    """From here a stop (or death) of the server must not cut the request short."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(False)


def _idle() -> None:
    """Back to what an idle worker is: ended by SIGTERM, SIGINT or the parent's death."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    _die_with_parent(True)


class _Waiter:
    """Waits for a connection on the listener shared by every worker.

    The listener is non-blocking (only workers accept on it) and watched with
    ``EPOLLEXCLUSIVE``, so one connection wakes one idle worker; the generation
    pipe is watched too, so a worker of a parent that restarted or stopped
    never takes another request.
    """

    def __init__(self, listener: socket.socket, generation_fd: int) -> None:
        import select

        self.listener = listener
        self.generation_fd = generation_fd
        listener.setblocking(False)
        self.epoll = select.epoll(2)
        self.epoll.register(listener.fileno(), select.EPOLLIN | select.EPOLLEXCLUSIVE)
        if generation_fd >= 0:
            self.epoll.register(generation_fd, select.EPOLLIN)

    def accept(self, timeout: float | None) -> socket.socket | None:
        """A connection, or None when the wait timed out or the generation ended."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = -1.0 if deadline is None else deadline - time.monotonic()
            if deadline is not None and left <= 0:
                return None
            events = self.epoll.poll(left)
            if any(fd == self.generation_fd for fd, _ in events):
                return None
            try:
                conn, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                continue  # another worker took it
            except OSError:
                return None  # the listener was closed under us
            conn.setblocking(True)
            return conn

    def generation_ended(self) -> bool:
        import select

        if self.generation_fd < 0:
            return False
        poller = select.poll()
        poller.register(self.generation_fd, select.POLLIN)
        return bool(poller.poll(0))


class Baseline:
    """What an idle worker is, taken before its first request and put back after each
    (:meth:`restore`), or the verdict that it cannot be put back and the worker must exit."""

    def __init__(self) -> None:
        import resource
        import signal

        self.mnt = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        self.net = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self.ns_ids = (_inode("/proc/self/ns/mnt"), _inode("/proc/self/ns/net"))
        self.cwd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self.sys_path = list(sys.path)
        #: Modules loaded: a request that imports one more (or drops one) ends the worker.
        self.modules = set(sys.modules)
        self.sigmask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
        self.rlimits = [(limit, resource.getrlimit(limit)) for limit in _rlimits()]
        self.umask = os.umask(0o022)
        os.umask(self.umask)
        self.environ = dict(os.environ)
        self.argv = list(sys.argv)
        self.handlers = {name: signal.getsignal(getattr(signal, name)) for name in _WATCHED_SIGNALS
                         if hasattr(signal, name)}
        self.fds = _open_fds()
        self.rss = _rss()

    def restore(self) -> bool:
        """Put the worker back as it was; False when something the request left behind
        cannot be undone here (a thread, a child, a changed signal handler, descriptors or
        memory beyond the limits), and the worker must exit instead."""
        import signal

        from cnicore import ns

        ns._forget_preopened()
        try:  # first home, by descriptor: the caller's /proc may not show this process
            if CLONE_NEWNET in _entered:
                ns._setns(self.net, CLONE_NEWNET)
            if CLONE_NEWNS in _entered:
                ns._setns(self.mnt, CLONE_NEWNS)  # also its root, the namespace's
            elif CHROOT in _entered:
                os.fchdir(self.root)
                os.chroot(".")
            _entered.clear()
            os.fchdir(self.cwd)
        except OSError as exc:
            _log(f"worker {os.getpid()}: cannot return to its own namespaces: {exc}")
            return False
        if (_inode("/proc/self/ns/mnt"), _inode("/proc/self/ns/net")) != self.ns_ids:
            return _retire("not back in its own namespaces")
        if len(os.listdir("/proc/self/task")) != 1:
            return _retire("the request left a thread")
        if _has_children():
            return _retire("the request left a child process")
        if any(signal.getsignal(getattr(signal, name)) != handler for name, handler in self.handlers.items()):
            return _retire("the request changed a signal handler")
        leftover = self._process_state_change()
        if leftover:
            return _retire(leftover)
        os.umask(self.umask)
        _replace_environ(self.environ)
        sys.argv = list(self.argv)
        if sys.path != self.sys_path:
            sys.path[:] = self.sys_path
        fds = _open_fds()
        if not self.fds <= fds or len(fds - self.fds) > FD_GROWTH_LIMIT or any(_nstype(fd) for fd in fds - self.fds):
            return _retire("the request left descriptors beyond the limit")
        if _rss() - self.rss > RSS_GROWTH_LIMIT:
            return _retire("its memory grew beyond the limit")
        return True

    def _process_state_change(self) -> str:
        """What differs, or "": a module imported or dropped (a caller's code must not
        stay for the next caller), the signal mask or resource limits (a blocked SIGIO or
        SIGALRM would disable cancellation and deadlines; a lowered limit would hold for
        the next caller). Not put back: a worker that differs exits."""
        import resource
        import signal

        if len(sys.modules) != len(self.modules):
            added = sorted(set(sys.modules) - self.modules)
            return f"the request imported {', '.join(added[:5]) or 'nothing, but dropped modules'}"
        if signal.pthread_sigmask(signal.SIG_BLOCK, []) != self.sigmask:
            return "the request changed the signal mask"
        if not all(resource.getrlimit(limit) == value for limit, value in self.rlimits):
            return "the request changed a resource limit"
        return ""


def _retire(reason: str) -> bool:
    """Say in the server's log why this worker exits instead of serving again; False."""
    _log(f"worker {os.getpid()}: exits after its request: {reason}")
    return False


def _rlimits() -> list[int]:
    import resource

    return [getattr(resource, name) for name in sorted(dir(resource)) if name.startswith("RLIMIT_")]


def _inode(path: str) -> int:
    return os.stat(path).st_ino


def _open_fds() -> set[int]:
    return {int(name) for name in os.listdir("/proc/self/fd")}


def _has_children() -> bool:
    """Whether the request left a child process behind (running, or a zombie reaped here)."""
    try:
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return False
    return True


def _rss() -> int:
    with open("/proc/self/statm", "rb") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _replace_environ(env: dict[str, str]) -> None:
    """Make ``os.environ`` (and the C environment) exactly ``env``, touching only what differs."""
    for key in [k for k in os.environ if k not in env]:
        del os.environ[key]
    for key, value in env.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


def _die_with_parent(enabled: bool) -> None:
    """An idle worker must not outlive a killed server (PR_SET_PDEATHSIG)."""
    import signal

    from cnicore import ns

    ns._lib().prctl(1, signal.SIGKILL if enabled else 0, 0, 0, 0)


def _warm_up(ctx: WorkerContext) -> None:
    """Touch, while idle, what every request touches: after fork each first write to a
    shared page copies it, and that is better paid before a caller waits."""
    from cnicore import launchers, skel

    if ctx.warm_host is not None:
        skel.run(ctx.warm_host, {"CNI_COMMAND": "VERSION"}, b"")  # type: ignore[arg-type]
    sample = dict(os.environ, CNI_COMMAND="ADD", CNI_CONTAINERID="warm-up", CNI_IFNAME="eth0")
    proto.decode_payload(proto.encode_request(ctx.build_id, 0o22, 0, "/", "/", ["x"], sample)[proto.HEADER.size:])
    header = (b'#!/bin/python3 -IS\n' + launchers.HEADER_PREFIX.encode()
              + b'{"type": "t", "module": "m", "python": "/bin/python3", "path": ["/"], "policies": []}\n')
    launchers._parse_header("", header)
    ctx.is_stale()


def _log(text: str) -> None:
    try:
        os.write(_log_fd, (text + "\n").encode(errors="replace"))
    except OSError:
        pass


#: The server's own stderr, kept on a private descriptor (fd 2 becomes the caller's).
_log_fd = 2
#: The parent's status pipe (refusals are counted there).
_status_fd = -1


class _RequestLog:
    """The one log line of a request: who asked, for what, how it went, how long it took."""

    __slots__ = ("started", "pid", "plugin", "command")

    def __init__(self, conn: socket.socket) -> None:
        import time

        self.started = time.monotonic()
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        self.pid = int(struct.unpack("3i", creds)[0])
        self.plugin = self.command = "-"

    def name(self, req: proto.Request) -> None:
        if req.flags & proto.FLAG_CNITOOL:
            self.plugin, self.command = "cnitool", " ".join(req.argv[1:2]) or "-"
        else:
            self.plugin = os.path.basename(req.launcher) or "-"
            self.command = req.env.get("CNI_COMMAND", "") or "-"

    def done(self, outcome: str) -> None:
        import time

        took = (time.monotonic() - self.started) * 1000
        _log(f"cnitool daemon: request pid={self.pid} plugin={self.plugin} command={self.command} "
             f"{outcome} {took:.1f} ms")


def _peer_creds(conn: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the peer, as it connected (``SO_PEERCRED``)."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _ = struct.unpack("3i", creds)
    return int(pid), int(uid)


def _receive(conn: socket.socket) -> tuple[proto.Request, list[int]]:
    """The request and its descriptors (closed again on any failure), all of it within
    :data:`proto.RECEIVE_TIMEOUT` of the accept: a client that trickles its request
    byte by byte holds a worker no longer than one that sends nothing."""
    import time

    deadline = time.monotonic() + proto.RECEIVE_TIMEOUT

    def in_time() -> socket.socket:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Refused(proto.REFUSE_SLOW, f"not sent within {proto.RECEIVE_TIMEOUT:g} s")
        conn.settimeout(left)
        return conn

    fds: list[int] = []
    try:
        data, ancdata, flags, _ = in_time().recvmsg(65536, socket.CMSG_SPACE(proto.MAX_FDS * 4))
        for level, kind, cdata in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                count = len(cdata) // 4
                fds.extend(struct.unpack(f"{count}i", cdata[:count * 4]))
        if not data and not fds:
            raise EOFError  # a connect-and-close probe (a readiness check): nothing to serve
        if flags & socket.MSG_CTRUNC:
            raise Refused(proto.REFUSE_FDS, "too many descriptors")
        while len(data) < proto.HEADER.size:
            more = in_time().recv(proto.HEADER.size - len(data))
            if not more:
                raise Refused(proto.REFUSE_MALFORMED, "connection closed in the header")
            data += more
        length = proto.decode_header(data)
        payload = bytearray(data[proto.HEADER.size:])
        while len(payload) < length:
            more = in_time().recv(min(length - len(payload), 1 << 20))
            if not more:
                raise Refused(proto.REFUSE_MALFORMED, "connection closed in the payload")
            payload += more
        if len(payload) != length:
            raise Refused(proto.REFUSE_MALFORMED, "request longer than announced")
        return proto.decode_payload(bytes(payload)), fds
    except proto.ProtocolError as exc:
        _close_all(fds)
        raise Refused(exc.reason, str(exc)) from None
    except TimeoutError:
        _close_all(fds)
        raise Refused(proto.REFUSE_SLOW, f"not sent within {proto.RECEIVE_TIMEOUT:g} s") from None
    except (OSError, Refused):
        _close_all(fds)
        raise


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def _check_fds(req: proto.Request, fds: list[int]) -> None:
    """Three stdio descriptors of a stream kind, then namespaces of the right types.

    CNI_NETNS is the caller's input, not the caller's own state: when what it
    names is not a network namespace, the descriptor is dropped and the plugin
    opens the path itself and reports it exactly as on the cold path.
    """
    expected = proto.MIN_FDS + (1 if req.flags & proto.FLAG_NETNS_FD else 0)
    if len(fds) != expected:
        raise Refused(proto.REFUSE_FDS, f"{len(fds)} descriptors, expected {expected}")
    for fd in fds[:3]:
        mode = os.fstat(fd).st_mode
        if not any(check(mode) for check in _STDIO_TYPES):
            raise Refused(proto.REFUSE_FDS, f"stdio descriptor of mode {mode:#o}")
    for fd, nstype in ((fds[3], CLONE_NEWNS), (fds[4], CLONE_NEWNET)):
        actual = _nstype(fd)
        if actual != nstype:
            raise Refused(proto.REFUSE_FDS, f"namespace of type {actual:#x}, expected {nstype:#x}")
    if len(fds) > proto.MIN_FDS and _nstype(fds[5]) != CLONE_NEWNET:
        os.close(fds.pop())
        req.flags &= ~proto.FLAG_NETNS_FD


def _nstype(fd: int) -> int:
    """The namespace type of ``fd``, or 0 when it is not a namespace."""
    import fcntl

    try:
        return int(fcntl.ioctl(fd, NS_GET_NSTYPE))
    except OSError:
        return 0


def _load_plugin(req: proto.Request) -> object:
    """The plugin host for the launcher the request names, as the launcher would build it
    (:func:`cnicore.inprocess.host_for`), read in the caller's view (its mount namespace and
    root). A launcher of another interpreter, or whose plugin is not the very code the
    server loaded (:mod:`._code`), is refused: it runs cold, as the caller's own."""
    from cnicore import inprocess
    from cnicore.launchers import is_this_interpreter, read_header

    header = read_header(req.launcher)
    if header is None:
        raise Refused(proto.REFUSE_LAUNCHER, f"{req.launcher} is not a cnicore launcher")
    if not is_this_interpreter(header.python):
        raise Refused(proto.REFUSE_LAUNCHER, f"{req.launcher} runs with {header.python}")
    if not _code.is_servers_own(header):
        raise Refused(proto.REFUSE_CODE, f"{req.launcher}: {header.module} is not the server's own file")
    try:
        return inprocess.host_for(header)
    except Exception as exc:  # noqa: BLE001 - the cold path reports it as the launcher would
        raise Refused(proto.REFUSE_LAUNCHER, f"cannot import {header.module}: {exc}") from None


def _check_interpreter(req: proto.Request) -> None:
    """A command is run with this server's code only for a caller of this server's own
    environment (its interpreter in the launcher field), as a launcher's plugin is."""
    from cnicore.launchers import is_this_interpreter

    if not is_this_interpreter(req.launcher):
        raise Refused(proto.REFUSE_LAUNCHER, f"cnitool of {req.launcher}")


def _trust_self() -> None:
    """What the worker is, read once: its user namespace and capabilities (what a caller
    must match, :mod:`._peer`), its own namespaces (compared by descriptor while in a
    caller's, whose /proc may not show this process) and its stdio's encodings."""
    global _server, _null
    from cnicore import ns

    _server = _peer.Server()
    _null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    ns.use_own_proc()
    for nstype, name in ((CLONE_NEWNS, "mnt"), (CLONE_NEWNET, "net")):
        st = os.stat(f"/proc/self/ns/{name}")
        _own_ns[nstype] = (st.st_dev, st.st_ino)
    _known_ns.update(_own_ns.values())
    _stdio_text[:] = [(stream.encoding, stream.errors or "strict") if stream is not None else ("utf-8", "strict")
                      for stream in (sys.stdin, sys.stdout, sys.stderr)]


def _check_caller(conn: socket.socket, pid: int, fds: list[int]) -> _peer.Caller:
    """The caller, when it could do this request's work itself (:mod:`._peer`)."""
    try:
        caller = _peer.check(conn, pid, _server)
        try:
            _peer.check_namespaces(fds[3:], _server, _known_ns)
        except BaseException:
            caller.close()
            raise
    except _peer.NotTrusted as exc:
        raise Refused(exc.reason, str(exc)) from None
    return caller


def _enter(req: proto.Request, fds: list[int], caller: _peer.Caller) -> None:
    """Take the caller's view: its mount namespace, its root directory (a chroot in it),
    its network namespace and its directory."""
    from cnicore import ns

    try:
        for fd, nstype in ((fds[3], CLONE_NEWNS), (fds[4], CLONE_NEWNET)):
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != _own_ns[nstype]:  # a runtime beside us: nothing to enter
                _entered.add(nstype)
                ns._setns(fd, nstype)
        _take_root(caller.root)
        os.chdir(req.cwd or "/")
    except OSError as exc:
        raise Refused(proto.REFUSE_ENTER, str(exc)) from None


def _take_root(root: int) -> None:
    """A caller that runs under ``chroot`` resolves every path from its root, not from its
    mount namespace's: so does its request (its stores, its launchers, its CNI_NETNS).
    Taken always: cheaper than telling whether it differs (a bind mount of / has /'s
    inode; only the mount tells them apart), and the same when it does not."""
    _entered.add(CHROOT)
    os.fchdir(root)
    os.chroot(".")


def _become(req: proto.Request, fds: list[int]) -> None:
    """Become the caller: umask, environment, stdio (the objects :func:`_renew_stdio` made
    after the last request: nothing it buffered reaches this one), argv."""
    from cnicore import ns

    os.umask(req.umask)
    _replace_environ(req.env)
    netns = req.env.get("CNI_NETNS", "")
    if req.flags & proto.FLAG_NETNS_FD and netns:
        ns.preopen(netns, fds[5])
    for target, fd in enumerate(fds[:3]):
        os.dup2(fd, target)
        os.close(fd)
    os.close(fds[3])
    os.close(fds[4])
    if os.isatty(1):  # as a fresh interpreter buffers it
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    sys.argv = list(req.argv) or [req.launcher]


def _renew_stdio() -> None:
    """Once descriptors 0-2 are /dev/null again, nothing the request's ``sys.stdin``,
    ``stdout`` and ``stderr`` hold may reach the next caller (e.g. a result whose flush
    failed on a broken pipe, or stdin read ahead). ``stdin`` is made anew (what it read
    ahead cannot be seen from outside); ``stdout`` and ``stderr`` are flushed into
    /dev/null and kept when they are the objects made here, still open and buffered as
    made (a fresh interpreter's: stderr line by line), else closed and made anew. Done
    after the caller has its answer: no caller waits for it."""
    (in_enc, in_err), (out_enc, out_err), (err_enc, err_err) = _stdio_text
    try:
        sys.stdin.close()
    except (OSError, ValueError, AttributeError):
        pass
    sys.stdin = open(0, encoding=in_enc, errors=in_err, closefd=False)
    for name, fd, encoding, errors, by_line in (("stdout", 1, out_enc, out_err, False),
                                                ("stderr", 2, err_enc, err_err, True)):
        stream = getattr(sys, name)
        try:
            if stream is _made[fd] and stream.line_buffering == by_line:
                stream.flush()
                continue
            stream.close()
        except (OSError, ValueError, AttributeError):
            pass
        _made[fd] = open(fd, "w", buffering=1 if by_line else -1, encoding=encoding, errors=errors, closefd=False)
        setattr(sys, name, _made[fd])


#: The stdout and stderr objects :func:`_renew_stdio` made, by descriptor.
_made: dict[int, Any] = {1: None, 2: None}


#: The worker's identity, its namespaces and its stdio's (encoding, errors) (:func:`_trust_self`).
_server: _peer.Server
_null = -1
#: Namespaces (st_dev, st_ino) known to be owned by the worker's user namespace: its own,
#: then those callers passed (:func:`._peer.check_namespaces`).
_known_ns: set[tuple[int, int]] = set()
_own_ns: dict[int, tuple[int, int]] = {}
_stdio_text: list[tuple[str, str]] = []


#: The namespace types the current request entered (the worker returns from them),
#: and :data:`CHROOT` when it took the caller's root directory.
_entered: set[int] = set()
CHROOT = 1


def _read_stdin() -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = os.read(0, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _arm_cancellation(conn: socket.socket, timeout: float) -> bool:
    """Make the kernel kill this worker's process group when the caller hangs up or sends
    a cancel (SIGIO, whose default action terminates), and SIGALRM do it at the deadline
    (its handler is :func:`_deadline_passed`, set once by :func:`run`).

    No watcher thread: a second thread would cost a GIL hand-over on every request.
    False when the caller is already gone.
    """
    import fcntl
    import select
    import signal

    fcntl.fcntl(conn.fileno(), fcntl.F_SETOWN, -os.getpgrp())
    fcntl.fcntl(conn.fileno(), fcntl.F_SETFL, fcntl.fcntl(conn.fileno(), fcntl.F_GETFL) | os.O_ASYNC)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN | select.POLLHUP | select.POLLERR)
    return not poller.poll(0)  # gone before O_ASYNC was set: no signal would come


def _disarm_cancellation(conn: socket.socket) -> None:
    import fcntl
    import signal

    signal.setitimer(signal.ITIMER_REAL, 0)
    fcntl.fcntl(conn.fileno(), fcntl.F_SETFL, fcntl.fcntl(conn.fileno(), fcntl.F_GETFL) & ~os.O_ASYNC)


def _deadline_passed(signum: int, frame: object) -> None:
    import signal

    _log(f"worker {os.getpid()}: deadline passed; killing")
    os.killpg(0, signal.SIGKILL)


def _serve(conn: socket.socket, status_fd: int, ctx: WorkerContext) -> bool:
    """One request; True when the worker may serve another after it (see the module docstring)."""
    log = _RequestLog(conn)
    pid, uid = _peer_creds(conn)
    if uid != 0:
        _refuse(conn, Refused(proto.REFUSE_UID, f"uid {uid}"), log)
        return True
    try:
        conn.sendall(proto.frame(proto.ACCEPTED))  # now the client hands over its descriptors
        req, fds = _receive(conn)
    except (EOFError, BrokenPipeError, ConnectionResetError):
        return True  # a connect-and-close probe (a readiness check), or a caller that went cold
    except Refused as exc:
        _refuse(conn, exc, log)
        return True
    log.name(req)
    if req.flags & proto.FLAG_STATUS:
        _close_all(fds)
        _answer_status(conn, ctx)
        log.done("status")
        return True
    caller = None
    try:
        if req.build_id != ctx.build_id:
            raise Refused(proto.REFUSE_BUILD, f"{req.build_id} != {ctx.build_id}")
        _check_fds(req, fds)
        caller = _check_caller(conn, pid, fds)
        if ctx.is_stale():
            try:
                os.write(status_fd, STATUS.pack(os.getpid(), STALE))
            except OSError:
                pass
            raise Refused(proto.REFUSE_STALE)
        host = None
        if req.flags & proto.FLAG_CNITOOL:
            if ctx.run_command is None:
                raise Refused(proto.REFUSE_LAUNCHER, "this server runs no commands")
            _check_interpreter(req)
        _enter(req, fds, caller)
        if not req.flags & proto.FLAG_CNITOOL:
            host = _load_plugin(req)  # as the caller sees its launcher: after _enter
        _become(req, fds)
    except Refused as exc:
        _close_all(fds)
        _refuse(conn, exc, log)
        return exc.reason != proto.REFUSE_STALE  # Baseline.restore takes it home, or it exits
    finally:
        if caller is not None:
            caller.close()
    from cnicore import inprocess, skel

    conn.settimeout(None)
    try:
        conn.sendall(proto.frame(proto.STARTED))
    except OSError:  # the caller stopped waiting for a first answer and runs it cold
        log.done("not run: the caller stopped waiting (it runs cold)")
        return False
    if not _arm_cancellation(conn, ctx.timeout):
        log.done("not run: the caller hung up")
        return False
    if host is None:
        assert ctx.run_command is not None
        code = ctx.run_command(list(req.argv))
    else:
        code, out, err = skel.run(host, os.environ, _read_stdin)  # type: ignore[arg-type]
        if err:
            skel._write_all(2, err)
        if out:
            skel._write_all(1, out)
    _disarm_cancellation(conn)
    for stream in (sys.stdout, sys.stderr):  # what was printed goes to the caller, as at a cold exit
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    for fd in (0, 1, 2):  # the worker's own /dev/null: the caller's root may have none
        os.dup2(_null, fd)
    try:
        conn.sendall(proto.frame(proto.EXITED, code))
    except OSError:
        pass
    _renew_stdio()
    try:
        os.write(status_fd, STATUS.pack(os.getpid(), SERVED))
    except OSError:
        pass
    log.done(f"warm exit={code}")
    return inprocess.warm_reusable()


def _refuse(conn: socket.socket, refusal: Refused, log: _RequestLog | None = None) -> None:
    """Tell the client to run the cold path, say why in the server's log, and count it."""
    if log is not None:
        log.done(f"refused: {refusal} (the caller runs it cold)")
    else:
        _log(f"worker {os.getpid()}: refused: {refusal}")
    if 0 < refusal.reason <= MAX_REASONS:
        try:
            os.write(_status_fd, STATUS.pack(os.getpid(), REFUSED_BASE + refusal.reason))
        except OSError:
            pass
    try:
        conn.sendall(proto.frame(proto.REFUSED, refusal.reason))
    except OSError:
        pass


def _answer_status(conn: socket.socket, ctx: WorkerContext) -> None:
    """The parent's counters as JSON, after a ``T`` frame giving its length."""
    import json

    status: dict[str, object] = {}
    if ctx.pool_counts is not None:
        pid, workers, busy, restarts, served, *refused = STATS.unpack_from(ctx.pool_counts, POOL_COUNTS.size)
        status = {"pid": pid, "workers": workers, "busy": busy, "idle": workers - busy, "served": served,
                  "restarts": restarts,
                  "refused": {proto.REFUSALS[reason]: count for reason, count in enumerate(refused, 1)
                              if count and reason in proto.REFUSALS}}
    body = json.dumps(status).encode()
    try:
        conn.settimeout(proto.RECEIVE_TIMEOUT)
        conn.sendall(proto.frame(proto.STATUS_REPLY, len(body)) + body)
    except OSError:
        pass
