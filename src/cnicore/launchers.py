"""What a launcher is, as the exec path reads it: its header, its paths, its interpreter.

A launcher is the executable ``cnitool plugins install`` writes into a CNI
bin dir for one plugin type (written by :mod:`cnicore.cli.install`). A
*Python* launcher runs with the installing environment's own interpreter in
isolated, no-site mode (``#!<python> -IS``), puts the directories it needs on
``sys.path`` and calls :func:`cnicore.launch.run` for its plugin module. Its
second line is a header (:data:`HEADER_PREFIX` + JSON) saying what it runs.
A *native* launcher is the compiled forwarder of :mod:`cnicore.server`: it
hands the exec to the warm server and, when there is none, execs the Python
launcher kept in ``<dir>/.cnicore-python/<type>``.

This half is library, on the exec path: :func:`read_header` tells libcni,
in-process IPAM and the warm server whether a file is one of ours and how to
host its plugin without an exec. Writing launchers is tooling.
"""

from __future__ import annotations

import os
import stat
import sys

from cnicore import wire

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterable

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).

DEFAULT_DIR = "/opt/cni/bin"
DEFAULT_SOCKET = "/run/cnicore/cnicore.sock"
#: Where a native launcher's Python fallback lives, relative to the bin dir.
PYTHON_DIR = ".cnicore-python"
HEADER_PREFIX = "# cnicore-launcher: "


def interpreter() -> str:
    """This environment's interpreter, spelled the same however we were started.

    ``python -m cnicore.cli`` and the ``cnitool`` script may see ``bin/python``
    and ``bin/python3.11`` of one venv; launchers and the manifest always use
    ``<prefix>/bin/python3`` when that is the same interpreter.
    """
    canonical = os.path.join(sys.prefix, "bin", "python3")
    try:
        if os.path.realpath(canonical) == os.path.realpath(sys.executable):
            return canonical
    except OSError:
        pass
    return sys.executable


class LauncherHeader:
    """What a launcher says about itself on its second line.

    ``path`` is what the launcher adds to ``sys.path`` and ``policies`` the
    policy modules it registers, so a caller running the plugin in-process
    (:mod:`cnicore.ipam`) imports and hosts it exactly as the launcher would.
    """

    __slots__ = ("type", "module", "attr", "python", "distribution", "version", "path", "policies",
                 "socket", "file", "native")

    def __init__(self, type: str, module: str, attr: str, python: str, distribution: str = "",
                 version: str = "", path: Iterable[str] = (), policies: Iterable[str] = (),
                 socket: str = "", file: str = "", native: bool = False) -> None:
        self.type = type
        self.module = module
        self.attr = attr
        self.python = python
        self.distribution = distribution
        self.version = version
        self.path = tuple(path)
        self.policies = tuple(policies)
        #: The warm server's socket ("" when installed without one).
        self.socket = socket
        #: The Python launcher this header was read from.
        self.file = file
        #: True when read for a native launcher (from its Python fallback).
        self.native = native

    def runs_here(self) -> bool:
        """True if this process's interpreter is the launcher's, so its plugin can be
        imported here instead of exec'd."""
        return is_this_interpreter(self.python)


def is_this_interpreter(python: str) -> bool:
    """Whether ``python`` (as :func:`interpreter` spells it) is this process's interpreter."""
    global _HERE
    if _HERE is None:  # two realpath() walks; asked on every in-process IPAM call
        _HERE = (sys.executable, interpreter())
    return python in _HERE


#: This process's interpreter names (sys.executable, interpreter()): they never change.
_HERE: tuple[str, str] | None = None

#: The record ``cnitool plugins install`` keeps of the launchers it wrote in a directory.
MANIFEST = ".cnicore-launchers.json"


def read_manifest(directory: str) -> dict[str, dict[str, Any]]:
    """``{type: {"sha256", "python", "kind", ...}}`` of the launchers cnicore wrote into
    ``directory`` ({} when there is no readable manifest). The installer keeps it; the
    cnitool client reads the warm server's socket from it."""
    try:
        with open(os.path.join(directory, MANIFEST), "rb") as fh:
            launchers = wire.loads(fh.read()).get("launchers", {})
        return {k: v for k, v in launchers.items() if isinstance(v, dict)}
    except (OSError, ValueError, AttributeError):
        return {}


def python_launcher_path(path: str) -> str:
    """Where the Python fallback of the native launcher at ``path`` lives."""
    directory, name = os.path.split(path)
    return os.path.join(directory, PYTHON_DIR, name)


def read_header(path: str) -> LauncherHeader | None:
    """The header of a cnicore launcher (Python or native), or ``None`` for any other file."""
    head = _head(path)
    if head is None or not head.startswith(b"\x7fELF"):
        return _parse_header(path, head)
    fallback = python_launcher_path(path)  # a native launcher: its Python fallback says what it runs
    header = _parse_header(fallback, _head(fallback))
    if header is not None:
        header.native = True
    return header


def _head(path: str) -> bytes | None:
    """The first 4 KiB of ``path`` (room for the shebang and the header), or None when it
    is not a regular file: opened non-blocking, so a FIFO (or a device) named as a
    plugin never blocks its reader, e.g. a warm server's worker."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)


def _parse_header(file: str, head: bytes | None) -> LauncherHeader | None:
    if head is None:
        return None
    lines = head.split(b"\n", 2)
    if len(lines) < 2 or not lines[0].startswith(b"#!") or not lines[1].startswith(HEADER_PREFIX.encode()):
        return None
    try:
        meta = wire.loads(lines[1][len(HEADER_PREFIX):])
        path, policies = meta.get("path", []), meta.get("policies", [])
        if not all(isinstance(v, list) and all(isinstance(p, str) for p in v) for v in (path, policies)):
            return None
        socket = meta.get("socket", "")
        if not isinstance(socket, str):
            return None
        return LauncherHeader(meta["type"], meta["module"], meta.get("attr", ""), meta["python"],
                              meta.get("distribution", ""), meta.get("version", ""), path, policies,
                              socket, file)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _root_of(top_level: str) -> str:
    """The sys.path directory a top-level module or package is found in (no import).
    Install time and the server's parent only: importlib.util is not for the exec path."""
    import importlib.util

    spec = importlib.util.find_spec(top_level)
    if spec is None:
        raise LookupError(f"cannot find module {top_level!r}")
    if spec.submodule_search_locations:
        location = list(spec.submodule_search_locations)[0]
    elif spec.origin:
        location = spec.origin
    else:
        raise LookupError(f"module {top_level!r} has no location on disk")
    return os.path.dirname(os.path.abspath(location))
