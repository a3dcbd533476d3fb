"""Executables for CNI bin dirs: one small Python script per plugin type.

A launcher runs with the installing environment's own interpreter in
isolated, no-site mode (``#!<python> -IS``): no ``site`` processing, no
``.pth`` files, no entry-point scan. It puts exactly the directories it needs
on ``sys.path`` (computed at install time) and imports only its plugin module,
so a VERSION exec costs little more than the interpreter's start.

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

    __slots__ = ("type", "module", "attr", "python", "distribution", "version", "path", "policies")

    def __init__(self, type: str, module: str, attr: str, python: str, distribution: str = "",
                 version: str = "", path: Iterable[str] = (), policies: Iterable[str] = ()) -> None:
        self.type = type
        self.module = module
        self.attr = attr
        self.python = python
        self.distribution = distribution
        self.version = version
        self.path = tuple(path)
        self.policies = tuple(policies)

    def runs_here(self) -> bool:
        """True if this process's interpreter is the launcher's, so its plugin can be
        imported here instead of exec'd."""
        global _HERE
        if _HERE is None:  # two realpath() walks; asked on every in-process IPAM call
            _HERE = (sys.executable, interpreter())
        return self.python in _HERE and not self.attr


#: This process's interpreter names (sys.executable, interpreter()): they never change.
_HERE: tuple[str, str] | None = None


def read_header(path: str) -> LauncherHeader | None:
    """The header of a cnicore launcher, or ``None`` for any other file."""
    try:
        with open(path, "rb") as fh:
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
        return LauncherHeader(meta["type"], meta["module"], meta.get("attr", ""), meta["python"],
                              meta.get("distribution", ""), meta.get("version", ""), path, policies)
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


def render(entry: PluginEntry, python: str | None = None, policies: Iterable[str] = ()) -> str:
    """The launcher script for one plugin type."""
    import json  # install time only: the exec path (read_header) must not pay for re

    python = python or interpreter()
    shebang = f"#!{python} -IS"
    if len(shebang) > MAX_SHEBANG:
        raise LauncherError(f"interpreter path too long for a #! line ({len(shebang)} > {MAX_SHEBANG}): "
                            f"{python}")
    policies = list(policies)
    path = launcher_sys_path(entry.module, policies)
    meta = {"type": entry.type, "module": entry.module, "attr": entry.attr, "python": python,
            "distribution": entry.distribution, "version": entry.version, "path": path,
            "policies": policies}
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
    try:
        with open(path, "rb") as fh:
            return _sha256(fh.read())
    except OSError:
        return None


def read_manifest(directory: str) -> dict[str, dict[str, str]]:
    """``{type: {"sha256", "python"}}`` of the launchers cnicore wrote into ``directory``."""
    import json

    try:
        with open(os.path.join(directory, MANIFEST)) as fh:
            data = json.load(fh)
        launchers = data.get("launchers", {})
        return {k: v for k, v in launchers.items() if isinstance(v, dict)}
    except (OSError, ValueError, AttributeError):
        return {}


class InstallReport:
    """What :func:`install` did, type by type."""

    def __init__(self) -> None:
        self.added: list[str] = []
        self.updated: list[str] = []
        self.unchanged: list[str] = []
        self.removed: list[str] = []
        self.skipped: dict[str, str] = {}

    def as_dict(self) -> dict[str, object]:
        return {"added": self.added, "updated": self.updated, "unchanged": self.unchanged,
                "removed": self.removed, "skipped": self.skipped}


def install(directory: str = DEFAULT_DIR, entries: Iterable[PluginEntry] | None = None,
            python: str | None = None, policies: Iterable[str] = ()) -> InstallReport:
    """Write a launcher per plugin into ``directory``; see the module docstring.

    ``entries`` defaults to every discovered plugin. Only launchers recorded
    in the manifest for the same interpreter are ever rewritten or removed; a
    foreign file in the way is skipped and reported.
    """
    import json

    import fcntl

    from cnicore.fsutil import write_atomic

    if entries is None:
        from cnicore.registry import discover

        entries = discover().values()
    python = python or interpreter()
    policies = list(policies)
    os.makedirs(directory, mode=0o755, exist_ok=True)
    report = InstallReport()
    with open(os.path.join(directory, LOCK), "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        manifest = read_manifest(directory)
        wanted = {entry.type: entry for entry in entries}
        for plugin_type, entry in sorted(wanted.items()):
            if not plugin_type or "/" in plugin_type or plugin_type.startswith("."):
                report.skipped[plugin_type] = "invalid plugin type name"
                continue
            data = render(entry, python, policies).encode()
            path = os.path.join(directory, plugin_type)
            current = _file_hash(path)
            recorded = manifest.get(plugin_type)
            if current is not None and (recorded is None or recorded.get("sha256") != current):
                report.skipped[plugin_type] = f"{path} exists and was not written by cnitool; left alone"
                continue
            if current is not None and recorded is not None and recorded.get("python") != python:
                report.skipped[plugin_type] = (f"{path} is the launcher of another environment "
                                               f"({recorded.get('python')}); left alone")
                continue
            if current == _sha256(data):
                report.unchanged.append(plugin_type)
            else:
                write_atomic(os.path.join(directory, plugin_type), data, 0o755, fsync=True)
                (report.added if current is None else report.updated).append(plugin_type)
            manifest[plugin_type] = {"sha256": _sha256(data), "python": python}
        for plugin_type in sorted(set(manifest) - set(wanted)):
            recorded = manifest[plugin_type]
            if recorded.get("python") != python:
                continue  # another environment's launcher: its own install manages it
            path = os.path.join(directory, plugin_type)
            if _file_hash(path) == recorded.get("sha256"):
                os.unlink(path)
                report.removed.append(plugin_type)
            elif os.path.exists(path):
                report.skipped[plugin_type] = f"{path} changed since cnitool wrote it; left alone"
            del manifest[plugin_type]
        write_atomic(os.path.join(directory, MANIFEST),
                     json.dumps({"version": 1, "launchers": manifest}, indent=2, sort_keys=True).encode(),
                     0o644)
    return report
