"""Network namespaces: create, open, enter and remove them.

The Python counterpart of Go's ``containernetworking/plugins/pkg/ns`` plus
``testutils.NewNS``. Only the standard library is used (``ctypes`` for the
syscalls Python does not wrap), and heavy modules are imported lazily, because
every plugin exec imports this module.

Entering a namespace: :meth:`NetNS.do` switches the calling thread into the
namespace, runs the function and switches back in a ``finally`` (Go's
``ns.Do`` does the same on a locked OS thread). It used to run the function in
a fresh thread, which costs ~0.4 ms per call against ~12 µs for the two
``setns`` calls, and a bridge ADD makes three such calls. Switching back
cannot fail in practice (we hold an open fd of the thread's own namespace);
if it ever does, the process exits at once rather than let the thread go on
in the wrong namespace — Go scraps the OS thread, Python cannot.
Creating a namespace (:func:`new_netns`) still uses a throwaway thread: that
thread unshares and never returns to the caller's namespace.
"""

from __future__ import annotations

import _thread
import os
import stat

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ctypes
    from typing import Callable, ParamSpec, TypeVar

    from pyroute2 import IPRoute

    _P = ParamSpec("_P")
    _T = TypeVar("_T")

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).

__all__ = [
    "NETNS_RUN_DIR",
    "NetNSError",
    "NetNSNotFoundError",
    "NotANetNSError",
    "NetNSNameError",
    "NetNS",
    "new_netns",
    "get_netns",
    "open_container_netns",
    "preopen",
    "current_netns",
    "with_netns_path",
    "is_same_as_current",
    "list_netns",
]

NETNS_RUN_DIR = "/var/run/netns"

# Linux constants (not exposed by the os module on every Python we support).
CLONE_NEWNET = 0x40000000
NSFS_MAGIC = 0x6E736673
PROC_SUPER_MAGIC = 0x9FA0
NS_GET_NSTYPE = 0xB703  # _IO(0xb7, 0x3), Linux >= 4.11
MS_BIND = 0x1000
MS_REC = 0x4000
MS_SHARED = 1 << 20
MNT_DETACH = 0x2

_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK  # a FIFO named as a netns never blocks


class NetNSError(Exception):
    """Base class for every network-namespace failure."""


class NetNSNotFoundError(NetNSError):
    """The namespace path does not exist (DEL treats this as already gone)."""


class NotANetNSError(NetNSError):
    """The path exists but is not a network namespace."""


class NetNSNameError(NetNSError, ValueError):
    """An invalid name for :func:`new_netns` (a caller error, hence also ValueError)."""


# --------------------------------------------------------------------------
# libc access, loaded on first use so importing this module stays cheap.

_libc: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL:
    """The process's libc with errno capture, loaded once."""
    global _libc
    lib = _libc
    if lib is None:
        import ctypes

        lib = ctypes.CDLL(None, use_errno=True)
        lib.setns.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.unshare.argtypes = [ctypes.c_int]
        lib.mount.argtypes = [
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_ulong,
            ctypes.c_void_p,
        ]
        lib.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        lib.fstatfs.argtypes = [ctypes.c_int, ctypes.c_void_p]
        _libc = lib
    return lib


def _check(ret: int, what: str, path: str | None = None) -> None:
    """Turn a libc ``-1`` return into ``OSError`` carrying errno."""
    if ret == -1:
        import ctypes

        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", path)


def _setns(fd: int, nstype: int) -> None:
    _check(_lib().setns(fd, nstype), "setns")


def _unshare(flags: int) -> None:
    _check(_lib().unshare(flags), "unshare")


def _mount(source: str, target: str, fstype: str, flags: int) -> None:
    ret = _lib().mount(
        os.fsencode(source), os.fsencode(target), os.fsencode(fstype), flags, None
    )
    _check(ret, "mount", target)


def _umount2(target: str, flags: int) -> None:
    _check(_lib().umount2(os.fsencode(target), flags), "umount2", target)


def _fstatfs_type(fd: int) -> int:
    """``f_type`` of ``fstatfs(fd)``: the first word of ``struct statfs``."""
    import ctypes

    buf = ctypes.create_string_buffer(512)  # larger than struct statfs anywhere
    _check(_lib().fstatfs(fd, buf), "fstatfs")
    return ctypes.c_ulong.from_buffer(buf).value & 0xFFFFFFFF


def _thread_ns_path(pid_in_path: bool = True) -> str:
    """This thread's netns file; with the real pid so other processes can use it."""
    pid = os.getpid() if pid_in_path else "self"
    return f"/proc/{pid}/task/{_thread.get_native_id()}/ns/net"


def _check_netns_fd(fd: int, path: str) -> None:
    """Raise NotANetNSError unless fd is a network namespace (like Go's IsNSorErr)."""
    try:
        magic = _fstatfs_type(fd)
    except OSError as exc:
        raise NetNSError(f"failed to fstatfs {path!r}: {exc.strerror}") from exc
    if magic not in (NSFS_MAGIC, PROC_SUPER_MAGIC):
        raise NotANetNSError(f"unknown FS magic on {path!r}: {magic:#x}")
    import errno
    import fcntl

    try:
        nstype = fcntl.ioctl(fd, NS_GET_NSTYPE)
    except OSError as exc:
        if exc.errno in (errno.ENOTTY, errno.EINVAL, errno.ENOSYS):
            return  # old kernel (or procfs ns file): the magic check is all we have
        raise NetNSError(f"failed to query namespace type of {path!r}: {exc.strerror}") from exc
    if nstype != CLONE_NEWNET:
        raise NotANetNSError(f"{path!r} is not a network namespace (type {nstype:#x})")


#: This process's ``/proc/<pid>/task`` directory, open, once :func:`use_own_proc` was called:
#: the calling thread's namespace is then found there, not through whatever ``/proc`` the
#: current mount namespace has (a warm server's worker in a caller's mount namespace, whose
#: /proc may be of another PID namespace that does not show the worker).
_task_dir = -1


def use_own_proc() -> None:
    """Find this thread's namespaces through the /proc seen now, from here on."""
    global _task_dir
    if _task_dir < 0:
        _task_dir = os.open(f"/proc/{os.getpid()}/task", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def _open_thread_ns(path: str) -> int:
    """Open the calling thread's netns (``path`` names it in the current /proc)."""
    if _task_dir >= 0:
        return os.open(f"{_thread.get_native_id()}/ns/net", _OPEN_FLAGS, dir_fd=_task_dir)
    return os.open(path, _OPEN_FLAGS)


def current_netns_id() -> tuple[int, int]:
    """(st_dev, st_ino) of the calling thread's network namespace: what tells two apart."""
    if _task_dir >= 0:
        st = os.stat(f"{_thread.get_native_id()}/ns/net", dir_fd=_task_dir)
    else:
        st = os.stat("/proc/thread-self/ns/net")
    return st.st_dev, st.st_ino


def _open_current_ns() -> int:
    path = _thread_ns_path(pid_in_path=False)
    try:
        return _open_thread_ns(path)
    except OSError as exc:
        raise NetNSError(f"failed to open current netns {path!r}: {exc.strerror}") from exc


def _return_home(home: int) -> None:
    """Switch the calling thread back to ``home`` (an fd, closed here); exit if impossible."""
    try:
        _setns(home, CLONE_NEWNET)
    except BaseException as exc:  # noqa: BLE001 - nothing may run on in the wrong namespace
        os.write(2, f"cnicore.ns: cannot return to the thread's own network namespace: {exc}\n".encode())
        os._exit(70)
    finally:
        os.close(home)


def _run_in_thread(name: str, fn: Callable[[], _T]) -> _T:
    """Run fn in a new thread that exits afterwards; return or re-raise in the caller."""
    import threading

    box: list[object] = []
    failed = False

    def target() -> None:
        nonlocal failed
        try:
            box.append(fn())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            failed = True
            box.append(exc)

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    thread.join()
    if not box:  # the thread died without running target (should not happen)
        raise NetNSError(f"thread {name!r} exited without a result")
    value = box[0]
    if failed:
        assert isinstance(value, BaseException)
        try:
            raise value
        finally:
            del value, box  # break the frame <-> traceback cycle
    return value  # type: ignore[return-value]


# --------------------------------------------------------------------------


class NetNS:
    """An open network namespace file (a bind mount under NETNS_RUN_DIR or a /proc path).

    The fd is opened at construction and kept until :meth:`close`, so the
    namespace stays valid even if the path is unmounted or its process exits.
    """

    __slots__ = ("path", "_fd")

    def __init__(self, path: str, fd: int) -> None:
        """Wrap an already opened fd (which this object now owns) for ``path``."""
        self.path = path
        self._fd = fd

    def fd(self) -> int:
        """The open O_RDONLY|O_CLOEXEC fd of the namespace file."""
        fd = self._fd
        if fd < 0:
            raise NetNSError(f"{self.path!r} has already been closed")
        return fd

    def do(self, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """Run ``fn(*args, **kwargs)`` inside this namespace and return its result.

        The calling thread enters the namespace and is switched back before
        this returns or raises, so the caller's namespace never changes; fn's
        exception is re-raised unchanged. Subprocesses and threads started by
        fn inherit the namespace; nested calls restore each level's own.
        """
        target = self.fd()
        home = _open_current_ns()
        try:
            _setns(target, CLONE_NEWNET)
        except OSError as exc:  # never left: nothing to return from (a caller without
            os.close(home)      # CAP_SYS_ADMIN could not return either, and gets the error)
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            reason = reason[:1].lower() + reason[1:]  # the reference's (Go's) texts, both levels
            raise NetNSError(f"error switching to ns {self.path}: Error switching to ns {self.path}: "
                             f"{reason}") from exc
        except BaseException:  # interrupted (KeyboardInterrupt): it may have entered
            _return_home(home)
            raise
        try:
            return fn(*args, **kwargs)
        finally:
            _return_home(home)

    def iproute(self) -> IPRoute:
        """pyroute2's ``IPRoute`` speaking to this namespace, from any thread.

        The netlink socket is opened by a thread inside the namespace, so it
        belongs to it for its whole life; close the ``IPRoute`` (``with
        netns.iproute() as ipr:``) when done. Never build an ``IPRoute()``
        inside :meth:`do` and use it afterwards: pyroute2 opens its socket on
        first use, in whatever namespace the using thread is in. (Its own
        ``IPRoute(netns=...)`` forks a process for the same job: ~45 ms here,
        against ~3 ms for this.)
        """
        import socket

        from pyroute2 import IPRoute

        sock = self.do(socket.socket, socket.AF_NETLINK, socket.SOCK_DGRAM, socket.NETLINK_ROUTE)
        return IPRoute(fileno=sock.detach())

    def close(self) -> None:
        """Close the fd; calling it again does nothing."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def remove(self) -> None:
        """Close, then unmount and delete the bind-mount file (like ``ip netns delete``).

        Only for namespaces under NETNS_RUN_DIR; a file that is already gone or
        no longer mounted is fine, so removing twice succeeds.
        """
        parent = os.path.dirname(os.path.abspath(self.path))
        if os.path.realpath(parent) != os.path.realpath(NETNS_RUN_DIR):
            raise NetNSError(f"refusing to remove {self.path!r}: not under {NETNS_RUN_DIR}")
        self.close()
        try:
            _umount2(self.path, MNT_DETACH)
        except OSError as exc:
            import errno

            if exc.errno not in (errno.EINVAL, errno.ENOENT):  # not mounted / gone
                raise NetNSError(f"failed to unmount {self.path!r}: {exc.strerror}") from exc
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise NetNSError(f"failed to remove {self.path!r}: {exc.strerror}") from exc

    def inode(self) -> tuple[int, int]:
        """``(st_dev, st_ino)`` of the namespace: equal for the same namespace."""
        fd = self._fd
        st = os.fstat(fd) if fd >= 0 else os.stat(self.path)
        return st.st_dev, st.st_ino

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NetNS):
            return NotImplemented
        return self.inode() == other.inode()

    def __hash__(self) -> int:
        return hash(self.inode())

    def __enter__(self) -> NetNS:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = f"fd={self._fd}" if self._fd >= 0 else "closed"
        return f"<NetNS {self.path!r} {state}>"

    def __del__(self) -> None:
        # Do not leak fds when a caller forgets close(); never raise from here.
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass


# --------------------------------------------------------------------------

_run_dir_lock = _thread.allocate_lock()  # serialises the make-shared dance below


def _ensure_run_dir() -> None:
    """Make NETNS_RUN_DIR a shared mount point, exactly as iproute2's netns_add does.

    Shared propagation lets bind mounts made later show up in other mount
    namespaces (e.g. ``ip netns exec`` or a container runtime's).
    """
    os.makedirs(NETNS_RUN_DIR, mode=0o755, exist_ok=True)
    with _run_dir_lock:
        made_mount = False
        while True:
            try:
                _mount("", NETNS_RUN_DIR, "none", MS_SHARED | MS_REC)
                return
            except OSError as exc:
                import errno

                if exc.errno != errno.EINVAL or made_mount:
                    raise NetNSError(
                        f"mount --make-shared {NETNS_RUN_DIR} failed: {exc.strerror}"
                    ) from exc
            # Not a mount point yet: bind it onto itself, then retry.
            try:
                _mount(NETNS_RUN_DIR, NETNS_RUN_DIR, "none", MS_BIND | MS_REC)
            except OSError as exc:
                raise NetNSError(
                    f"mount --bind {NETNS_RUN_DIR} {NETNS_RUN_DIR} failed: {exc.strerror}"
                ) from exc
            made_mount = True


def _validate_name(name: str) -> None:
    if not isinstance(name, str) or not name:
        raise NetNSNameError(f"invalid network namespace name {name!r}: empty")
    if "/" in name or "\0" in name or name in (".", ".."):
        raise NetNSNameError(f"invalid network namespace name {name!r}")


def new_netns(name: str | None = None) -> NetNS:
    """Create a netns persisted by a bind mount at NETNS_RUN_DIR/<name>, as ``ip netns add``.

    The path can be handed to other processes (``ip netns exec``, plugins via
    CNI_NETNS). The name defaults to a random ``cni-<uuid4>``.
    """
    if name is None:
        import uuid

        name = f"cni-{uuid.uuid4()}"
    _validate_name(name)
    _ensure_run_dir()
    path = os.path.join(NETNS_RUN_DIR, name)

    try:
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444))
    except FileExistsError as exc:
        raise NetNSError(f"network namespace {name!r} already exists at {path}") from exc
    except OSError as exc:
        raise NetNSError(f"failed to create {path!r}: {exc.strerror}") from exc

    def create() -> None:
        # This thread leaves the caller's netns and dies right after.
        _unshare(CLONE_NEWNET)
        _mount(_thread_ns_path(pid_in_path=False), path, "none", MS_BIND)

    fd = -1
    try:
        _run_in_thread(f"netns-new {name}", create)
        fd = os.open(path, _OPEN_FLAGS)
        _check_netns_fd(fd, path)
    except BaseException as exc:
        if fd >= 0:
            os.close(fd)
        _discard_mount_file(path)
        if isinstance(exc, NetNSError):
            raise
        if isinstance(exc, OSError):
            raise NetNSError(
                f"failed to create network namespace {name!r}: {exc.strerror or exc}"
            ) from exc
        raise
    return NetNS(path, fd)


def _discard_mount_file(path: str) -> None:
    """Best-effort cleanup of a half-made namespace file."""
    try:
        _umount2(path, MNT_DETACH)
    except OSError:
        pass
    try:
        os.unlink(path)
    except OSError:
        pass


#: Namespaces the caller opened for us, by path (see :func:`preopen`).
_preopened: dict[str, int] = {}


def preopen(path: str, fd: int) -> None:
    """Make :func:`get_netns` of ``path`` return the namespace open at ``fd``.

    The warm server's worker gets CNI_NETNS already opened by its caller, who
    may see a path the worker cannot (another root, a private mount).
    """
    _preopened[path] = fd


def _forget_preopened() -> None:
    """Close what :func:`preopen` was given: the request that needed it is over."""
    while _preopened:
        try:
            os.close(_preopened.popitem()[1])
        except OSError:
            pass


def get_netns(path: str) -> NetNS:
    """Open an existing network namespace file.

    Raises NetNSNotFoundError if the path is missing and NotANetNSError if it
    is not a network namespace (a plain file, another namespace type...).
    """
    if path in _preopened:
        return _checked(path, os.dup(_preopened[path]))
    try:
        st = os.stat(path)
    except FileNotFoundError as exc:
        raise NetNSNotFoundError(f"failed to open {path!r}: no such file") from exc
    except OSError as exc:
        raise NetNSError(f"failed to stat {path!r}: {exc.strerror}") from exc
    if not stat.S_ISREG(st.st_mode):  # nsfs inodes are regular; also avoids blocking on FIFOs
        raise NotANetNSError(f"{path!r} is not a network namespace (not a namespace file)")
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError as exc:
        raise NetNSNotFoundError(f"failed to open {path!r}: no such file") from exc
    except OSError as exc:
        raise NetNSError(f"failed to open {path!r}: {exc.strerror}") from exc
    return _checked(path, fd)


def open_container_netns(path: str) -> NetNS:
    """:func:`get_netns` for a plugin: any failure is the reference plugins' error, code 999
    ``failed to open netns "PATH": why`` (Go's ``ns.GetNS`` wrapped as every plugin wraps it)."""
    from cnicore.errors import ERR_INTERNAL, CNIError

    try:
        return get_netns(path)
    except Exception as exc:  # noqa: BLE001 - the reference's wording for any open failure
        raise CNIError(ERR_INTERNAL, f'failed to open netns "{path}": {exc}') from None


def _checked(path: str, fd: int) -> NetNS:
    """``fd`` as a NetNS if it is a network namespace; closed and refused otherwise."""
    try:
        _check_netns_fd(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return NetNS(path, fd)


def current_netns() -> NetNS:
    """The calling thread's netns, opened now so it stays valid after the thread moves on."""
    path = _thread_ns_path()
    try:
        fd = _open_thread_ns(path)
    except OSError as exc:
        raise NetNSError(f"failed to open current netns {path!r}: {exc.strerror}") from exc
    return NetNS(path, fd)


def with_netns_path(path: str, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """Run fn inside the netns at path and return its result (Go's ns.WithNetNSPath)."""
    ns = get_netns(path)
    try:
        return ns.do(fn, *args, **kwargs)
    finally:
        ns.close()


def is_same_as_current(path: str) -> bool:
    """True if path is the calling thread's netns; False if it can't be opened."""
    try:
        target = os.stat(path)
        if _task_dir >= 0:
            current = os.stat(f"{_thread.get_native_id()}/ns/net", dir_fd=_task_dir)
        else:
            current = os.stat(_thread_ns_path(pid_in_path=False))
    except OSError:
        return False
    return (target.st_dev, target.st_ino) == (current.st_dev, current.st_ino)


def list_netns() -> list[str]:
    """Names of the namespaces under NETNS_RUN_DIR (sorted; empty if it doesn't exist)."""
    try:
        return sorted(os.listdir(NETNS_RUN_DIR))
    except FileNotFoundError:
        return []
