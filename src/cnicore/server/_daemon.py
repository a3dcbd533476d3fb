"""The server's parent: one listening socket, a pool of pre-forked workers.

The parent is single-threaded and never serves a request itself. It imports
cnicore and every installed plugin once, freezes the heap (``gc.freeze``) so
forked workers share it copy-on-write, and keeps ``workers`` idle workers
waiting to accept. A worker that takes a connection reports itself busy
through a pipe and the parent forks a replacement, up to ``max_workers`` at
once; beyond that, connections wait in the listen backlog. A worker that may
serve again reports itself idle after its request (``_worker``); one that
stays idle long after serving exits, and the pool shrinks back.

Signals: SIGTERM/SIGINT stop (the socket closes at once, so launchers fall
back to the cold path; busy workers finish), SIGHUP restarts. A restart
re-executes the same command with the listening socket inherited, so no
connection is refused meanwhile; it also happens by itself when the served
code changed on disk (``pip install -U``, a plugin's source file edited in
place: :mod:`cnicore.server._codewatch`), and the log says which file. These
signals are blocked across the re-exec (the mask survives ``execve``, the
handlers do not) and unblocked once the new image has its handlers: a SIGHUP
storm restarts the server again, never kills it. The socket file is removed
at the stop only by the server that bound it (carried across restarts, never
one systemd passed), and only while the path still names the inode it bound.

Counters for ``cnitool daemon status`` (:data:`_worker.STATS`) live in the
memory the parent shares with its workers: the parent counts what workers
report on the status pipe, and a worker answers a status request from them.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import sys
import time

from cnicore.server import _worker
from cnicore.server._codewatch import SETTLE_LIMIT, SETTLE_SECONDS, CodeWatch, entry_files
from cnicore.server._native import build_id

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

#: The listening socket inherited across our own restart.
LISTEN_FD_ENV = "CNICORE_LISTEN_FD"
#: Across our own restart: "device:inode" of the socket file when this server bound it
#: (absent when systemd passed the socket: its file is systemd's).
LISTEN_INODE_ENV = "CNICORE_LISTEN_INODE"
#: Across our own restart: the counters so far (restarts, served, refused by reason).
COUNTS_ENV = "CNICORE_SERVER_COUNTS"
#: Stop and restart: blocked across the re-exec, and until the handlers are ours.
_CONTROL_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
SD_LISTEN_FDS_START = 3
BACKLOG = 1024


class ServerError(Exception):
    """The server cannot start."""


def _log(text: str) -> None:
    try:
        os.write(2, f"cnitool daemon[{os.getpid()}]: {text}\n".encode(errors="replace"))
    except OSError:
        pass


# -- the listening socket ------------------------------------------------------------

def _check_dir(directory: str) -> None:
    """The socket's directory: created 0700, or an existing one owned by root with no
    access for group or others (never loosened or tightened behind an admin's back)."""
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise ServerError(f"cannot create {directory}: {exc.strerror}") from None
    st = os.lstat(directory)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o077:
        raise ServerError(f"{directory} must be a directory owned by root with mode 0700 "
                          f"(it is {stat.filemode(st.st_mode)}, uid {st.st_uid})")


def _clear_stale(path: str) -> None:
    """Remove a socket file nobody listens on; refuse to steal a live one."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ServerError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        os.unlink(path)
        _log(f"removed stale socket {path}")
        return
    except OSError:
        pass
    finally:
        probe.close()
    raise ServerError(f"another server is listening on {path}")


def bind(path: str) -> socket.socket:
    """A listening socket at ``path``: mode 0600 in a 0700 directory (see :func:`identity`
    for the file it made)."""
    _check_dir(os.path.dirname(path) or ".")
    _clear_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(path)
    except OSError as exc:
        sock.close()
        raise ServerError(f"cannot bind {path}: {exc.strerror}") from None
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(BACKLOG)
    return sock


def identity(path: str) -> tuple[int, int] | None:
    """``(device, inode)`` of the file at ``path``, or None when there is none."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def inherited() -> tuple[socket.socket | None, tuple[int, int] | None]:
    """A listening socket handed to us: by our own restart, or by systemd
    (``LISTEN_FDS``); and the identity of its file when we own it (we bound it,
    before a restart), else None. Close-on-exec either way: no plugin's child
    may hold the server's listener."""
    own = os.environ.pop(LISTEN_FD_ENV, "")
    inode = os.environ.pop(LISTEN_INODE_ENV, "")
    if own.isdigit():
        os.set_inheritable(int(own), False)
        dev, _, ino = inode.partition(":")
        return socket.socket(fileno=int(own)), (int(dev), int(ino)) if dev.isdigit() and ino.isdigit() else None
    pid, count = os.environ.pop("LISTEN_PID", ""), os.environ.pop("LISTEN_FDS", "")
    os.environ.pop("LISTEN_FDNAMES", None)
    if pid == str(os.getpid()) and count.isdigit() and int(count) >= 1:
        os.set_inheritable(SD_LISTEN_FDS_START, False)
        sock = socket.socket(fileno=SD_LISTEN_FDS_START)
        if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
            raise ServerError("the socket systemd passed is not a unix stream socket")
        return sock, None
    return None, None


def _remove_own(path: str, bound: tuple[int, int] | None) -> None:
    """Unlink the socket file at ``path`` if it is still the one we bound (never one
    systemd owns, nor a successor's at the same path)."""
    if bound is None or identity(path) != bound:
        return
    try:
        os.unlink(path)
    except OSError:
        pass


# -- what workers inherit --------------------------------------------------------------

def preload() -> list[str]:
    """Import everything a request may need; returns the plugin roots to watch."""
    import importlib
    import json  # noqa: F401 - plugins and their tools use it
    import subprocess  # noqa: F401

    import pluggy  # noqa: F401

    from cnicore import (  # noqa: F401
        config,
        hookspecs,
        host,
        invoke,
        ip,
        ipam,
        launchers,
        netlink,
        ns,
        request,
        rollback,
        skel,
        sysctl,
        types,
        utils,
        wire,
    )
    from cnicore.registry import discover

    ns._lib()  # ctypes and libc, for setns
    roots = [launchers._root_of("cnicore")]
    # CNICORE_SERVER_PRELOAD=type,...: also import what those plugins name in WARM_IMPORTS
    # (cluster-ipam: etcd3gw and requests, ~18 MB) -- opt-in, since a bigger heap makes
    # every worker fork dearer for every plugin (see the pyroute2 note below).
    warm = {t for t in os.environ.get("CNICORE_SERVER_PRELOAD", "").split(",") if t}
    for entry in discover().values():
        try:
            module = importlib.import_module(entry.module)
            host.PluginHost(module, entry.type).members()
            if entry.type in warm:  # what its verbs import lazily, for an operator who asked
                for heavy in getattr(module, "WARM_IMPORTS", ()):
                    importlib.import_module(heavy)
            roots.append(launchers._root_of(entry.module.split(".")[0]))
        except Exception as exc:  # noqa: BLE001 - one broken plugin must not stop the others
            _log(f"plugin {entry.type}: cannot import {entry.module}: {exc}")
    from cnicore.server._preload import follow_lazy_imports

    owners = tuple(sorted({"cnicore"} | {e.module.rpartition(".")[0] or e.module for e in discover().values()}))
    follow_lazy_imports(owners)
    # pyroute2 (the authors' netlink library) is loaded here when a plugin imports it, as
    # the template does at its top, and then costs its requests nothing. It is not loaded
    # for plugins that do not use it: it doubles the parent's heap (~18 MB), and forking
    # and tearing down a worker costs CPU in proportion (~5 ms against ~2.5 ms a request).
    return roots


def code_watch(roots: list[str]) -> CodeWatch:
    """What the server serves, as imported: site-packages and the plugins' roots, and the
    source files of cnicore and of every plugin (see :mod:`cnicore.server._codewatch`)."""
    from cnicore.registry import discover

    entries = list(discover().values())
    packages = {"cnicore"} | {entry.module.partition(".")[0] for entry in entries}
    return CodeWatch(roots, packages, entry_files(entry.module for entry in entries))


# -- the pool ------------------------------------------------------------------------

class Pool:
    """Idle and busy workers, forked from this single-threaded parent."""

    def __init__(self, listener: socket.socket, ctx: _worker.WorkerContext,
                 idle_target: int, max_workers: int) -> None:
        self.listener = listener
        self.ctx = ctx
        self.idle_target = idle_target
        self.max_workers = max_workers
        self.workers: dict[int, str] = {}
        self.status_r, self.status_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        # The generation pipe: workers hold the read end; the write end is this parent
        # image's alone (close-on-exec), so a restart or a death ends the generation.
        ctx.generation_fd, self.generation_w = os.pipe2(os.O_CLOEXEC)
        # Idle and target counts, shared with workers (an anonymous shared mapping survives
        # fork): a worker that has served exits when it finds itself surplus after a burst.
        import mmap

        ctx.pool_counts = self.counts = mmap.mmap(-1, _worker.POOL_COUNTS.size + _worker.STATS.size)
        self._pending = b""
        self.stale = False
        self.served = 0
        #: Since the first start (carried across restarts): restarts, served, refused by reason.
        self.totals = _load_counts()

    @property
    def idle(self) -> int:
        return sum(1 for state in self.workers.values() if state == "idle")

    def publish(self) -> None:
        """Write the idle and target counts where workers read them, and the counters a
        worker answers a status request with."""
        idle = self.idle
        _worker.POOL_COUNTS.pack_into(self.counts, 0, idle, self.idle_target)
        totals = self.totals
        _worker.STATS.pack_into(self.counts, _worker.POOL_COUNTS.size, os.getpid(), len(self.workers),
                                len(self.workers) - idle, totals[0], totals[1], *totals[2:])

    def fill(self) -> None:
        """Fork until ``idle_target`` workers wait, within ``max_workers``.

        While requests run and at least half the idle workers are left, the
        refill waits for them to finish: on a small machine a fork (and the new
        worker's warm-up) competes for the CPU with the requests it would serve
        next, e.g. the rest of a chain.
        """
        busy = len(self.workers) - self.idle
        if busy and self.idle >= max(1, self.idle_target // 2):
            return
        while self.idle < self.idle_target and len(self.workers) < self.max_workers:
            self._spawn()

    def _spawn(self) -> None:
        # Signals stay blocked across fork until the child has dropped our handlers,
        # so a SIGTERM meant for a new idle worker is never swallowed by them.
        handled = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD}
        signal.pthread_sigmask(signal.SIG_BLOCK, handled)
        try:
            pid = os.fork()
        except BaseException:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, handled)
            raise
        if pid != 0:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, handled)
        if pid == 0:
            try:
                os.setpgid(0, 0)
                signal.set_wakeup_fd(-1)
                for sig in handled:
                    signal.signal(sig, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, handled)
                os.close(self.status_r)
                os.close(self.generation_w)
                import gc

                gc.disable()  # requests are short; a worker's garbage goes with it (MAX_REQUESTS)
                _worker.run(self.listener, self.status_w, self.ctx)
            finally:
                os._exit(0)
        self.workers[pid] = "idle"

    def read_status(self) -> None:
        """Busy and stale reports from workers."""
        try:
            self._pending += os.read(self.status_r, 65536)
        except BlockingIOError:
            return
        size = _worker.STATUS.size
        while len(self._pending) >= size:
            pid, kind = _worker.STATUS.unpack_from(self._pending)
            self._pending = self._pending[size:]
            if kind == _worker.BUSY and pid in self.workers:
                self.workers[pid] = "busy"
            elif kind == _worker.IDLE and pid in self.workers:
                self.workers[pid] = "idle"
            elif kind == _worker.SERVED:
                self.served += 1
                self.totals[1] += 1
            elif kind == _worker.STALE:
                self.stale = True
            elif _worker.REFUSED_BASE < kind <= _worker.REFUSED_BASE + _worker.MAX_REASONS:
                self.totals[2 + kind - _worker.REFUSED_BASE - 1] += 1

    def reap(self) -> None:
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.workers.pop(pid, None)

    def stop_idle(self) -> None:
        """End this generation (no worker takes another request) and SIGTERM idle
        workers (one that just accepted ignores it and finishes)."""
        if self.generation_w >= 0:
            os.close(self.generation_w)
            self.generation_w = -1
        self.read_status()
        for pid, state in self.workers.items():
            if state == "idle":
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass


def serve(path: str, workers: int = 4, max_workers: int | None = None, timeout: float = 300.0,
          max_requests: int = _worker.MAX_REQUESTS, idle_exit: float = _worker.IDLE_EXIT_SECONDS,
          run_command: Callable[[list[str]], int] | None = None) -> None:
    """Run the server in the foreground until SIGTERM or SIGINT.

    :param max_requests: requests one worker serves at most (1: one worker per request).
    :param idle_exit: seconds a worker that has served waits for another before it exits.
    :param run_command: runs a whole ``cnitool`` network command (its argv) in a worker,
        with the caller's stdio, and returns its exit status; without it such requests
        are refused (the caller runs the command itself).
    """
    import gc
    import selectors

    if os.geteuid() != 0:
        raise ServerError("the warm server must run as root (it enters other namespaces)")
    max_workers = max_workers or max(64, 16 * workers)
    if max_workers < workers:
        raise ServerError(f"--max-workers ({max_workers}) is below --workers ({workers})")
    # Signals are ours before the socket exists: a stop or restart asked for while we
    # import everything is acted on once we are ready, never lost or fatal.
    wake_r, wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    signal.set_wakeup_fd(wake_w)
    received: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(sig, lambda signum, frame: received.append(signum))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _CONTROL_SIGNALS)  # blocked by a restart: ours now
    listener, bound = inherited()
    if listener is None:
        listener = bind(path)
        bound = identity(path)
    bound_path = listener.getsockname() if bound is not None else ""
    roots = preload()
    watch = code_watch(roots)
    from cnicore.host import PluginHost

    ctx = _worker.WorkerContext(build_id(), timeout,
                                lambda: bool(watch.changed()), PluginHost(object(), "warm-up"),
                                max_requests=max_requests, idle_exit=idle_exit, run_command=run_command)
    gc.collect()
    gc.freeze()
    pool = Pool(listener, ctx, workers, max_workers)

    selector = selectors.DefaultSelector()
    selector.register(wake_r, selectors.EVENT_READ)
    selector.register(pool.status_r, selectors.EVENT_READ)
    if watch.fileno() >= 0:
        selector.register(watch.fileno(), selectors.EVENT_READ)
    _log(f"serving on {bound_path or 'an inherited socket'} with {workers} idle workers "
         f"(at most {max_workers}), build {ctx.build_id}")
    _log(watch.summary())
    action = reason = ""
    # A served file changed: restart once the writes have settled (workers refuse meanwhile).
    changed_at = settle_at = 0.0
    while not action:
        pool.reap()
        if pool.stale:
            action, reason = "restart", watch.describe() or "a worker found the served code changed"
            break
        if settle_at and time.monotonic() >= settle_at:
            action = "restart"
            break
        pool.fill()
        pool.publish()
        events = selector.select(max(0.0, settle_at - time.monotonic()) if settle_at else None)
        try:
            os.read(wake_r, 4096)
        except BlockingIOError:
            pass
        pool.read_status()
        if any(key.fd == watch.fileno() for key, _ in events):
            found = watch.read_events()
            if found or settle_at:
                now = time.monotonic()
                changed_at, reason = changed_at or now, reason or found
                settle_at = min(now + SETTLE_SECONDS, changed_at + SETTLE_LIMIT)
        while received:
            signum = received.pop()
            if signum in (signal.SIGTERM, signal.SIGINT):
                action = "stop"
            elif signum == signal.SIGHUP:
                action, reason = "restart", "SIGHUP"
    pool.stop_idle()
    if action == "restart":
        _log(f"restarting: {reason}")
        pool.read_status()
        _restart(listener, bound, pool.totals)
    listener.close()
    if bound_path:
        _remove_own(bound_path, bound)
    _log("stopping: waiting for busy workers")
    while pool.workers:
        pool.reap()
        pool.stop_idle()  # again: a worker forked just before the stop may have missed it
        if pool.workers:
            selector.select(0.2)
            try:
                os.read(wake_r, 4096)
            except BlockingIOError:
                pass
    pool.read_status()
    _log(f"stopped after serving {pool.served} requests")


def _load_counts() -> list[int]:
    """restarts, served, refused by reason: carried by a restart, else zeros."""
    size = 2 + _worker.MAX_REASONS
    counts = [int(c) for c in os.environ.pop(COUNTS_ENV, "").split(",") if c.isdigit()]
    return counts if len(counts) == size else [0] * size


def _restart(listener: socket.socket, bound: tuple[int, int] | None, totals: list[int]) -> None:
    """Re-execute this command, handing it the listening socket, whether we own its file,
    and the counters; stop and restart signals stay blocked until its handlers are set."""
    os.set_inheritable(listener.fileno(), True)
    os.environ[LISTEN_FD_ENV] = str(listener.fileno())
    if bound is not None:
        os.environ[LISTEN_INODE_ENV] = f"{bound[0]}:{bound[1]}"
    os.environ[COUNTS_ENV] = ",".join(map(str, [totals[0] + 1, *totals[1:]]))
    signal.pthread_sigmask(signal.SIG_BLOCK, _CONTROL_SIGNALS)
    signal.set_wakeup_fd(-1)
    argv = list(getattr(sys, "orig_argv", [])) or [sys.executable, *sys.argv]
    try:
        os.execv(sys.executable, [sys.executable, *argv[1:]])
    finally:  # the exec failed: stop instead, with our signals back
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _CONTROL_SIGNALS)
