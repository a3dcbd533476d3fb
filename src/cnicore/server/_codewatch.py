"""Whether the code the server serves changed on disk since its parent imported it.

Two kinds of change make the server's code stale:

* packages installed, upgraded or removed (``pip install -U``): the mtimes of
  site-packages and of every plugin's root directory change;
* a source file of a served plugin edited in place (an editable install, a
  project on a launcher's ``sys.path``): only that file's mtime changes, no
  directory's.

The check runs on every request, in the worker, before it serves. Stat'ing
every module file of the served packages is exact but costs ~2 µs a file
here: 150 µs a request for the built-ins' 75 modules (cnicore included),
1 ms for a plugin that loads 450. Checking only every N ms would miss an
edit made just before the next request. So the parent adds an inotify watch
(``IN_MODIFY``, ``IN_CLOSE_WRITE``, renames, creations, deletions, attribute
changes) on every directory that holds a watched file, and the workers
inherit the inotify descriptor: as long as no event is queued and the parent
is not looking at one, nothing in those directories changed, and a worker's
check is a ``poll`` of that descriptor and a byte of shared memory (~0.5 µs)
plus the directory stamp (a few ``stat`` calls, as before). Only when
something in a watched directory moved does it compare every file. The
kernel queues an event in the same system call that changes the file, so an
edit that finished before a request was sent is always seen by it.

The parent reads the events (so an editor's swap files do not keep the gate
open): it sets the shared "looking" byte first, drains the queue, compares
every file, and clears the byte only when nothing served changed — any event
queued after the drain keeps the descriptor readable, so no edit slips
between the two. When something did change, the byte stays set (workers refuse
requests, which run cold with the new code) and the parent restarts once the
writes have settled (:data:`SETTLE_SECONDS` without a further event).

Without inotify (the watch limit reached, an old kernel) every check compares
every file: exact, only dearer.

Modules a worker imports after the fork (a plugin found on its launcher's
``sys.path`` rather than installed in the server's environment) are stamped
when the worker first sees them, i.e. at its next request, and compared on
every request after that (a few files, stat'ed).
"""

from __future__ import annotations

import mmap
import os
import select
import struct
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterable

#: inotify(7)
IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE = 0x2, 0x4, 0x8
IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x40, 0x80, 0x100, 0x200
IN_DELETE_SELF, IN_MOVE_SELF, IN_Q_OVERFLOW, IN_ONLYDIR = 0x400, 0x800, 0x4000, 0x01000000
IN_NONBLOCK, IN_CLOEXEC = os.O_NONBLOCK, os.O_CLOEXEC
WATCH_EVENTS = (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
                | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)
_EVENT = struct.Struct("iIII")
#: After a change, the parent restarts once no event came for this long (an editor
#: or pip writes several files), and at the latest :data:`SETTLE_LIMIT` after the first.
SETTLE_SECONDS = 0.3
SETTLE_LIMIT = 3.0

Stamp = tuple[int, int, int]  # mtime_ns, size, inode; (-1, -1, -1) when missing


def _file_stamp(path: str) -> Stamp:
    try:
        st = os.stat(path)
    except OSError:
        return (-1, -1, -1)
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _under(path: str, directories: Iterable[str]) -> bool:
    return any(path.startswith(directory.rstrip(os.sep) + os.sep) for directory in directories)


def _installed_dirs() -> list[str]:
    """Where the standard library and installed distributions live (not a project of one's own,
    even when a virtualenv sits inside it)."""
    import site
    import sysconfig

    keys = ("stdlib", "platstdlib", "purelib", "platlib")
    dirs = {*site.getsitepackages(), *(sysconfig.get_paths()[k] for k in keys),
            *(sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_exec_prefix})[k] for k in keys),
            *(p for p in sys.path if os.path.basename(p) in ("site-packages", "dist-packages"))}
    if site.ENABLE_USER_SITE and site.USER_SITE:
        dirs.add(site.USER_SITE)
    return sorted(os.path.abspath(d) for d in dirs if d)


def module_files(packages: Iterable[str], project_roots: Iterable[str]) -> list[str]:
    """The source files of the loaded modules the server serves: those of the top-level
    ``packages`` (the plugins' and cnicore's), and every module loaded from one of the
    ``project_roots`` (``sys.path`` directories that are not site-packages: editable
    installs, projects on a plugin's path)."""
    packages, project_roots, installed = set(packages), list(project_roots), _installed_dirs()
    found = set()
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if not isinstance(path, str) or not os.path.isabs(path):
            continue
        if name.partition(".")[0] in packages or (_under(path, project_roots) and not _under(path, installed)):
            found.add(path)
    return sorted(found)


def entry_files(modules: Iterable[str]) -> list[str]:
    """The source files of the plugins' entry modules, found without importing them: a
    plugin that failed to import (a file saved half-written) is watched all the same."""
    import importlib.util

    found = []
    for module in modules:
        try:
            spec = importlib.util.find_spec(module)
        except Exception:  # noqa: BLE001 - its package failed to import: watch the package's __init__
            try:
                spec = importlib.util.find_spec(module.partition(".")[0])  # a top-level name imports nothing
            except Exception:  # noqa: BLE001
                continue
        if spec is not None and spec.origin and os.path.isabs(spec.origin):
            found.append(spec.origin)
    return found


class CodeWatch:
    """The served code as the parent imported it, and the check against the disk.

    Made in the parent after the imports, before any fork; workers inherit it."""

    def __init__(self, roots: Iterable[str], packages: Iterable[str], extra_files: Iterable[str] = ()) -> None:
        import site

        self.dirs = sorted(set(roots) | {p for p in site.getsitepackages() if os.path.isdir(p)})
        self.dir_stamp = self._dir_stamp()
        installed = _installed_dirs()
        project_roots = [r for r in set(roots) if not _under(r + os.sep, installed)]
        self.files = {path: _file_stamp(path)
                      for path in sorted(set(module_files(packages, project_roots)) | set(extra_files))}
        self._installed = installed
        self._modules_seen = len(sys.modules)
        #: Modules a worker imported after the fork, stamped when it first saw them.
        self.worker_files: dict[str, Stamp] = {}
        #: Shared with the workers: 1 while the parent looks at events or knows of a change.
        self.looking = mmap.mmap(-1, 1)
        self.fd, self.watched_dirs = self._watch(sorted({os.path.dirname(p) for p in self.files}))
        self._poll = select.poll()
        if self.fd >= 0:
            self._poll.register(self.fd, select.POLLIN)

    # -- both sides -------------------------------------------------------------------

    def _dir_stamp(self) -> tuple[tuple[str, int], ...]:
        stamp = []
        for path in self.dirs:
            try:
                stamp.append((path, os.stat(path).st_mtime_ns))
            except OSError:
                stamp.append((path, -1))
        return tuple(stamp)

    def changed(self) -> str:
        """What changed since the parent's imports (``""``: nothing). Cheap unless an
        inotify event is pending (see the module docstring)."""
        if self._dir_stamp() != self.dir_stamp:
            return self._dirs_changed()
        if self.fd < 0 or self.looking[0] or self._poll.poll(0):
            found = self._files_changed()
            if found:
                return found
        return self._worker_files_changed()

    def describe(self) -> str:
        """What changed, comparing everything (for the log; the parent's side)."""
        if self._dir_stamp() != self.dir_stamp:
            return self._dirs_changed()
        return self._files_changed() or self._worker_files_changed()

    def _dirs_changed(self) -> str:
        now = dict(self._dir_stamp())
        for path, mtime in self.dir_stamp:
            if now.get(path) != mtime:
                return f"{path} changed (packages installed, upgraded or removed)"
        return "the installed packages changed"

    def _files_changed(self) -> str:
        for path, stamp in self.files.items():
            now = _file_stamp(path)
            if now != stamp:
                return f"{path} {'was removed' if now[0] < 0 else 'changed'}"
        return ""

    def _worker_files_changed(self) -> str:
        if len(sys.modules) != self._modules_seen:
            self._modules_seen = len(sys.modules)
            for name, module in list(sys.modules.items()):
                path = getattr(module, "__file__", None)
                if (isinstance(path, str) and os.path.isabs(path) and path not in self.files
                        and path not in self.worker_files and not _under(path, self._installed)):
                    self.worker_files[path] = _file_stamp(path)
        for path, stamp in self.worker_files.items():
            now = _file_stamp(path)
            if now != stamp:
                return f"{path} {'was removed' if now[0] < 0 else 'changed'}"
        return ""

    # -- the parent's side -------------------------------------------------------------

    def _watch(self, directories: list[str]) -> tuple[int, int]:
        """An inotify descriptor watching ``directories`` (-1 without inotify) and how many
        directories it watches."""
        if not directories:
            return -1, 0
        from cnicore.ns import _lib

        libc = _lib()
        fd = int(libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC))
        if fd < 0:
            return -1, 0
        for directory in directories:
            if libc.inotify_add_watch(fd, os.fsencode(directory), WATCH_EVENTS) < 0:
                os.close(fd)  # a directory we cannot watch: compare every file instead
                return -1, 0
        return fd, len(directories)

    def fileno(self) -> int:
        return self.fd

    def read_events(self) -> str:
        """Drain the queued events; what changed among the served files (``""``: nothing,
        e.g. an editor's swap file). Leaves the shared byte set while something did."""
        self.looking[0] = 1
        while True:
            try:
                if not os.read(self.fd, 65536):
                    break
            except BlockingIOError:
                break
        found = self.describe()
        if not found:
            self.looking[0] = 0
        return found

    def summary(self) -> str:
        how = f"inotify on {self.watched_dirs} directories" if self.fd >= 0 else "every file on every request"
        return f"watching {len(self.files)} source files of the served plugins for changes ({how})"
