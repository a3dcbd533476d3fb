"""Executables for CNI bin dirs: one small Python script per plugin type.

A launcher runs with the installing environment's own interpreter in
isolated, no-site mode (``#!<python> -IS``): no ``site`` processing, no
``.pth`` files, no entry-point scan. It puts exactly the directories it needs
on ``sys.path`` (computed at install time) and imports only its plugin module,
so a VERSION exec costs little more than the interpreter's start.

A *native* launcher (``kind="native"``) is the compiled forwarder of
:mod:`cnicore.server`: it hands the exec to the warm server and, when there
is none, execs the Python launcher, which then lives in
``<dir>/.cnicore-python/<type>``. :func:`read_header` reads either kind.

:func:`install` keeps a manifest in the directory so that re-running it adds
new plugins, rewrites changed launchers and removes the ones it wrote for
plugins that are gone, while never touching files it did not write (the Go
plugins often share the directory). Every file is replaced atomically.
"""

from __future__ import annotations

import os
import sys

from cnicore import wire

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterable

    from cnicore.registry import PluginEntry

DEFAULT_DIR = "/opt/cni/bin"
DEFAULT_SOCKET = "/run/cnicore/cnicore.sock"
#: Where a native launcher's Python fallback lives, relative to the bin dir.
PYTHON_DIR = ".cnicore-python"
MANIFEST = ".cnicore-launchers.json"
LOCK = ".cnicore-launchers.lock"
HEADER_PREFIX = "# cnicore-launcher: "
MAX_SHEBANG = 255


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


class LauncherError(Exception):
    """A launcher that cannot be written."""


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
        global _HERE
        if _HERE is None:  # two realpath() walks; asked on every in-process IPAM call
            _HERE = (sys.executable, interpreter())
        return self.python in _HERE


#: This process's interpreter names (sys.executable, interpreter()): they never change.
_HERE: tuple[str, str] | None = None


def python_launcher_path(path: str) -> str:
    """Where the Python fallback of the native launcher at ``path`` lives."""
    directory, name = os.path.split(path)
    return os.path.join(directory, PYTHON_DIR, name)


def read_header(path: str) -> LauncherHeader | None:
    """The header of a cnicore launcher (Python or native), or ``None`` for any other file."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return None
    if head.startswith(b"\x7fELF"):
        header = _parse_header(python_launcher_path(path), None)
        if header is not None:
            header.native = True
        return header
    return _parse_header(path, head)


def _parse_header(file: str, head: bytes | None) -> LauncherHeader | None:
    if head is None:
        try:
            with open(file, "rb") as fh:
                head = fh.read(4096)
        except OSError:
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
    """The sys.path directory a top-level module or package is found in (no import)."""
    import importlib.util

    spec = importlib.util.find_spec(top_level)
    if spec is None:
        raise LauncherError(f"cannot find module {top_level!r}")
    if spec.submodule_search_locations:
        location = list(spec.submodule_search_locations)[0]
    elif spec.origin:
        location = spec.origin
    else:
        raise LauncherError(f"module {top_level!r} has no location on disk")
    return os.path.dirname(os.path.abspath(location))


def launcher_sys_path(module: str, policies: Iterable[str] = ()) -> list[str]:
    """The directories a launcher adds: the roots of the plugin, of its policy modules
    and of cnicore (any may be an editable install) and the environment's
    site-packages (dependencies). A module that cannot be found is a LauncherError."""
    import site

    modules = [module, *policies, "cnicore"]
    paths = [_root_of(name.split(".")[0]) for name in modules]
    paths += [p for p in site.getsitepackages() if os.path.isdir(p)]
    base = set(getattr(sys, "_stdlib_dir", None) and [sys._stdlib_dir] or [])  # type: ignore[attr-defined]
    out: list[str] = []
    for path in paths:
        if path not in out and path not in base:
            out.append(path)
    return out


def render(entry: PluginEntry, python: str | None = None, policies: Iterable[str] = (),
           socket: str = "") -> str:
    """The Python launcher script for one plugin type."""
    import json  # install time only: the exec path (read_header) must not pay for re

    python = python or interpreter()
    shebang = f"#!{python} -IS"
    if len(shebang) > MAX_SHEBANG:
        raise LauncherError(f"interpreter path too long for a #! line ({len(shebang)} > {MAX_SHEBANG}): "
                            f"{python}")
    policies = list(policies)
    path = launcher_sys_path(entry.module, policies)
    meta: dict[str, object] = {
        "type": entry.type, "module": entry.module, "attr": entry.attr, "python": python,
        "distribution": entry.distribution, "version": entry.version, "path": path,
        "policies": policies}
    if socket:
        meta["socket"] = socket
    target = {"type": entry.type, "module": entry.module, "attr": entry.attr, "policies": policies}
    return "\n".join([
        shebang,
        HEADER_PREFIX + json.dumps(meta, sort_keys=True),
        "# Generated by `cnitool plugins install`: do not edit, re-run it instead.",
        "import sys",
        f"sys.path.extend({json.dumps(path)})",
        "from cnicore.launch import run",
        f"run(**{json.dumps(target)})",
        "",
    ])


def _sha256(data: bytes) -> str:
    import hashlib  # install-time only: read_header is on the exec path

    return hashlib.sha256(data).hexdigest()


def _file_hash(path: str) -> str | None:
    """The hash of the regular file at ``path`` (never through a symlink), else None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        import stat

        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return _sha256(fh.read())
    finally:
        os.close(fd)


def read_manifest(directory: str) -> dict[str, dict[str, str]]:
    """``{type: {"sha256", "python", ...}}`` of the launchers cnicore wrote into ``directory``."""
    import json

    try:
        with open(os.path.join(directory, MANIFEST)) as fh:
            data = json.load(fh)
        launchers = data.get("launchers", {})
        return {k: v for k, v in launchers.items() if isinstance(v, dict)}
    except (OSError, ValueError, AttributeError):
        return {}


def _write_manifest(directory: str, manifest: dict[str, dict[str, str]]) -> None:
    import json

    from cnicore.fsutil import write_atomic

    write_atomic(os.path.join(directory, MANIFEST),
                 json.dumps({"version": 1, "launchers": manifest}, indent=2, sort_keys=True).encode(),
                 0o644)


class InstallReport:
    """What :func:`install` did, type by type."""

    def __init__(self) -> None:
        self.added: list[str] = []
        self.updated: list[str] = []
        self.unchanged: list[str] = []
        self.removed: list[str] = []
        self.skipped: dict[str, str] = {}
        #: Types skipped because pluggy refuses the plugin or it cannot be imported
        #: (the reason is in ``skipped``); cnitool then exits with status 1.
        self.refused: list[str] = []

    def as_dict(self) -> dict[str, object]:
        return {"added": self.added, "updated": self.updated, "unchanged": self.unchanged,
                "removed": self.removed, "skipped": self.skipped}


def _ours(path: str, recorded: dict[str, str] | None, key: str = "sha256") -> bool | None:
    """None if nothing is at ``path``; True if it is a file we recorded (the
    current hash, or the one we were about to write when an install stopped);
    False for anything else, symlinks and directories included."""
    if not os.path.lexists(path):
        return None
    current = _file_hash(path)
    if current is None or recorded is None:
        return False
    return current in (recorded.get(key), recorded.get("pending_" + key))


def _remove_ours(path: str, recorded: dict[str, str], key: str) -> bool:
    if _ours(path, recorded, key):
        os.unlink(path)
        return True
    return False


def _refusal(entry: PluginEntry, policies: list[str]) -> str:
    """Why ``entry`` must not be installed: pluggy's message when it (or a policy) does
    not validate against :mod:`cnicore.hookspecs`, or why it cannot be imported; "" if fine.
    Every exec would fail the same way, so the runtime should never find its launcher."""
    import pluggy

    from cnicore.host import PluginHost

    try:
        PluginHost(entry.load(), entry.type, policies).validate()
    except pluggy.PluginValidationError as exc:
        return f"refused, pluggy says: {exc}"
    except Exception as exc:  # noqa: BLE001 - one broken plugin must not stop the others
        return f"refused, cannot load it: {type(exc).__name__}: {exc}"
    return ""


def install(directory: str = DEFAULT_DIR, entries: Iterable[PluginEntry] | None = None,
            python: str | None = None, policies: Iterable[str] = (), *,
            kind: str = "python", socket: str = "") -> InstallReport:
    """Write a launcher per plugin into ``directory``; see the module docstring.

    ``entries`` defaults to every discovered plugin. ``kind`` is ``"python"``
    (a script) or ``"native"`` (the compiled forwarder to the warm server at
    ``socket``, with the script as its fallback). Only launchers recorded in
    the manifest for the same interpreter are ever rewritten or removed; a
    foreign file in the way (a symlink, a directory, a Go plugin) is skipped
    and reported, and so is a plugin pluggy refuses or that cannot be imported
    (also listed in ``refused``; a launcher already there is left alone). The
    manifest records what is about to be written before it is written, so an
    interrupted install leaves nothing a later one will not recognise as its
    own.
    """
    import fcntl

    from cnicore import faults
    from cnicore.fsutil import write_atomic

    if kind not in ("python", "native"):
        raise LauncherError(f"unknown launcher kind {kind!r}")
    if kind == "native" and not socket:
        socket = DEFAULT_SOCKET
    if entries is None:
        from cnicore.registry import discover

        entries = discover().values()
    python = python or interpreter()
    policies = list(policies)
    native_binary = b""
    if kind == "native":
        from cnicore.server._native import NativeBuildError, compile_launcher

        try:
            native_binary = compile_launcher(socket)
        except NativeBuildError as exc:
            raise LauncherError(str(exc)) from None
    os.makedirs(directory, mode=0o755, exist_ok=True)
    fallback_dir = os.path.join(directory, PYTHON_DIR)
    report = InstallReport()
    with open(os.path.join(directory, LOCK), "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        manifest = read_manifest(directory)
        wanted = {entry.type: entry for entry in entries}
        for plugin_type, entry in sorted(wanted.items()):
            if not plugin_type or "/" in plugin_type or plugin_type.startswith(".") or "\0" in plugin_type:
                report.skipped[plugin_type] = "invalid plugin type name"
                continue
            script = render(entry, python, policies, socket).encode()
            refusal = _refusal(entry, policies)
            if refusal:
                report.skipped[plugin_type] = refusal
                report.refused.append(plugin_type)
                continue
            main_data, fallback_data = (native_binary, script) if kind == "native" else (script, b"")
            path = os.path.join(directory, plugin_type)
            fallback = os.path.join(fallback_dir, plugin_type)
            recorded = manifest.get(plugin_type)
            if recorded is not None and recorded.get("python") != python and os.path.lexists(path):
                report.skipped[plugin_type] = (f"{path} is the launcher of another environment "
                                               f"({recorded.get('python')}); left alone")
                continue
            mine = _ours(path, recorded)
            if mine is False:
                report.skipped[plugin_type] = f"{path} exists and was not written by cnitool; left alone"
                continue
            if kind == "native" and _ours(fallback, recorded, "fallback_sha256") is False:
                report.skipped[plugin_type] = f"{fallback} exists and was not written by cnitool; left alone"
                continue
            old = recorded or {}
            entry_record = {"sha256": _sha256(main_data), "python": python, "kind": kind}
            if fallback_data:
                entry_record["fallback_sha256"] = _sha256(fallback_data)
            if mine and old.get("sha256") == entry_record["sha256"] and \
                    old.get("fallback_sha256") == entry_record.get("fallback_sha256") and \
                    (not fallback_data or _ours(fallback, old, "fallback_sha256")):
                report.unchanged.append(plugin_type)
                manifest[plugin_type] = entry_record
                continue
            # Record the intent first: a crash after this leaves files we recognise.
            manifest[plugin_type] = dict(old, python=python,
                                         pending_sha256=entry_record["sha256"],
                                         pending_fallback_sha256=entry_record.get("fallback_sha256", ""))
            _write_manifest(directory, manifest)
            if fallback_data:
                os.makedirs(fallback_dir, mode=0o755, exist_ok=True)
                write_atomic(fallback, fallback_data, 0o755, fsync=True)
            write_atomic(path, main_data, 0o755, fsync=True)
            faults.point("launchers.install.written")
            if not fallback_data and "fallback_sha256" in old:
                _remove_ours(fallback, old, "fallback_sha256")
            (report.updated if mine else report.added).append(plugin_type)
            manifest[plugin_type] = entry_record
            _write_manifest(directory, manifest)
        for plugin_type in sorted(set(manifest) - set(wanted)):
            recorded = manifest[plugin_type]
            if recorded.get("python") != python:
                continue  # another environment's launcher: its own install manages it
            path = os.path.join(directory, plugin_type)
            if _remove_ours(path, recorded, "sha256"):
                report.removed.append(plugin_type)
            elif os.path.lexists(path):
                report.skipped[plugin_type] = f"{path} changed since cnitool wrote it; left alone"
            _remove_ours(os.path.join(fallback_dir, plugin_type), recorded, "fallback_sha256")
            del manifest[plugin_type]
        _write_manifest(directory, manifest)
    return report
