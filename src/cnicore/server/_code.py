"""Which code a worker may run: only what its parent loaded, checked by file identity.

A worker runs with the server's privileges, and may serve another caller
after this one. So a launcher's plugin (or an IPAM plugin, or a plugin of a
served ``cnitool`` command) is hosted in the worker only when every module
its launcher would import for it (the plugin module, its packages, its policy
modules) is the very file the parent imported: same device, inode, mtime and
size, found the way the launcher's ``import`` would find it (its header's
``sys.path`` entries in the caller's mount namespace and root, extension
modules before source before bytecode, a package's ``__init__`` before a module
file). Anything else is not imported here: the launcher runs cold, an IPAM
plugin or a command's plugin is exec'd, as the caller's own exec would run it.

:func:`record` runs in the parent after its preload; :func:`is_servers_own` in
the worker (:data:`cnicore.launchers.code_check`).
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnicore.launchers import LauncherHeader

#: Identity of each module file the parent loaded: name -> (st_dev, st_ino, mtime_ns, size).
_LOADED: dict[str, tuple[int, int, int, int]] = {}
#: What ``import`` tries in a directory, in its order (importlib's FileFinder loaders).
_SUFFIXES: tuple[str, ...] = ()


def record() -> None:
    """Remember the file of every module loaded now (the parent's, before it forks)."""
    global _SUFFIXES
    import importlib.machinery as machinery

    _SUFFIXES = (*machinery.EXTENSION_SUFFIXES, *machinery.SOURCE_SUFFIXES, *machinery.BYTECODE_SUFFIXES)
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if not isinstance(file, str):
            continue
        try:
            _LOADED[name] = _identity(os.stat(file))
        except OSError:
            pass


def is_servers_own(header: LauncherHeader) -> bool:
    """Whether the modules ``header``'s launcher would import for its plugin are, file for
    file, the ones this process loaded (so hosting it runs no code of the caller's).

    A yes is remembered with what it rests on: the identity of every directory looked
    in (an entry added, removed or renamed there changes its mtime) and of every file
    found. While they all still stat the same, from whatever root and mount namespace,
    the answer is the same, for a few stats instead of a search."""
    key = (header.module, header.policies, header.path)
    evidence = _YES.get(key)
    if evidence is not None and _still(evidence):
        return True
    seen: dict[str, tuple[int, int, int, int]] = {}
    try:
        if not all(_same_as_loaded(name, header.path, seen) for name in (header.module, *header.policies)):
            return False
    except OSError:
        return False
    _YES[key] = tuple(seen.items())
    return True


#: Yes answers of :func:`is_servers_own`, with their evidence: (path, identity) pairs.
_YES: dict[tuple[str, tuple[str, ...], tuple[str, ...]], tuple[tuple[str, tuple[int, int, int, int]], ...]] = {}


def _still(evidence: tuple[tuple[str, tuple[int, int, int, int]], ...]) -> bool:
    try:
        return all(_identity(os.stat(path)) == identity for path, identity in evidence)
    except OSError:
        return False


def _same_as_loaded(module: str, path: tuple[str, ...], seen: dict[str, tuple[int, int, int, int]]) -> bool:
    parts = module.split(".")
    if parts[0] in sys.stdlib_module_names:
        return False  # the launcher would find the standard library's first
    search: list[str] = list(path)
    for depth, part in enumerate(parts, 1):
        want = _LOADED.get(".".join(parts[:depth]))
        if want is None:
            return False
        found = _find(part, search, seen)
        if found is None:
            return False
        file, package_dir = found
        seen[file] = _identity(os.stat(file))
        if seen[file] != want:
            return False
        if package_dir is None and depth < len(parts):
            return False
        search = [package_dir] if package_dir else []
    return True


def _find(name: str, directories: list[str],
          seen: dict[str, tuple[int, int, int, int]]) -> tuple[str, str | None] | None:
    """``(file, package directory or None)`` that ``import name`` would load from the first
    of ``directories`` holding it; None when none does (or only as a namespace package).
    Every directory looked in goes into ``seen``."""
    for directory in directories:
        try:
            seen[directory] = _identity(os.stat(directory))
        except OSError:
            continue
        package = os.path.join(directory, name)
        if os.path.isdir(package):
            seen[package] = _identity(os.stat(package))
            for suffix in _SUFFIXES:
                init = os.path.join(package, "__init__" + suffix)
                if os.path.isfile(init):
                    return init, package
        for suffix in _SUFFIXES:
            file = os.path.join(directory, name + suffix)
            if os.path.isfile(file):
                return file, None
    return None


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size
