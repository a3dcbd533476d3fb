"""Scaffold a new plugin project from one of cnicore's example projects (``cnitool new-plugin``).

Each example is a complete, installable, tested plugin project, one per kind
of plugin (:data:`KINDS`; ``cnitool new-plugin NAME --kind KIND``):

* ``chained`` (the default), ``cni_plugin_template/``: the ``template-routes``
  plugin, extra routes on the container interface another plugin made;
* ``main``, ``cni_plugin_template_main/``: the ``template-ptp`` plugin, a veth
  pair per container with IPAM delegated to ``ipam.type``, like the reference
  ``ptp``, written on the public toolkit only;
* ``ipam``, ``cni_plugin_template_ipam/``: the ``template-ipam`` plugin, an
  address allocator with its own store (files under ``dataDir``, locked with
  ``flock``) and GC.

There is one copy of each, the directory at the root of cnicore's source
tree; the build (``setup.py``) puts it into the cnicore package
(``cnicore/_template``, ``_template_main``, ``_template_ipam``), so an
installed cnicore carries it. In a source checkout (an editable install) it
is read from the root directly.

:func:`new_plugin` copies one with every name substituted (shown for the
chained example; the others name themselves ``cni-plugin-template-main``,
``cni_plugin_template_main``, ``template-ptp`` and so on):

============================  ==============================
in the example                in the project for ``NAME``
============================  ==============================
``cni-plugin-template``       ``cni-plugin-NAME`` (distribution)
``cni_plugin_template``       ``cni_plugin_NAME`` (package; ``-`` becomes ``_``)
``template-routes``           ``NAME`` (the CNI type, the entry-point name)
============================  ==============================

in file contents and paths alike. Build and cache leftovers (``build/``,
``*.egg-info``, ``__pycache__``...) are never copied.

This module imports only the standard library at the top, because
``setup.py`` loads it from source (for :func:`template_files`) before
cnicore or its dependencies are installed; the two cnicore imports are
inside the functions that need them.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from importlib.metadata import PackageNotFoundError, distribution

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterable

#: The names the example project uses, replaced in every copy.
TEMPLATE_TYPE = "template-routes"
TEMPLATE_PACKAGE = "cni_plugin_template"
TEMPLATE_DISTRIBUTION = "cni-plugin-template"
#: Where the example lives inside the installed cnicore package.
PACKAGED_DIR = "_template"


class Template:
    """One example project: where it lives and the names it uses (replaced in every copy)."""

    __slots__ = ("kind", "source_dir", "packaged_dir", "distribution", "package", "type")

    def __init__(self, kind: str, source_dir: str, packaged_dir: str, distribution: str, package: str,
                 type_: str) -> None:
        self.kind = kind
        self.source_dir = source_dir  # at the root of cnicore's source tree
        self.packaged_dir = packaged_dir  # inside the installed cnicore package
        self.distribution = distribution
        self.package = package
        self.type = type_


#: The example projects, by the ``--kind`` that selects them; ``chained`` is the default.
KINDS: dict[str, Template] = {
    "chained": Template("chained", TEMPLATE_PACKAGE, PACKAGED_DIR, TEMPLATE_DISTRIBUTION, TEMPLATE_PACKAGE,
                        TEMPLATE_TYPE),
    "main": Template("main", "cni_plugin_template_main", "_template_main", "cni-plugin-template-main",
                     "cni_plugin_template_main", "template-ptp"),
    "ipam": Template("ipam", "cni_plugin_template_ipam", "_template_ipam", "cni-plugin-template-ipam",
                     "cni_plugin_template_ipam", "template-ipam"),
}
DEFAULT_KIND = "chained"

#: A CNI plugin type we scaffold: lower-case letters, digits and ``-``, starting
#: with a letter or digit (so the package name is a valid identifier).
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]*$")
MAX_NAME_LENGTH = 64
#: The types of cnicore's built-in plugins (also read from its entry points).
BUILTIN_TYPES = frozenset({"bridge", "host-local", "loopback", "tuning"})
#: The reference plugins' types: a plugin of one of these names would fight
#: the Go binary for its file in the CNI bin dir.
REFERENCE_TYPES = frozenset({
    "bandwidth", "bridge", "dhcp", "dummy", "firewall", "host-device", "host-local", "ipvlan",
    "loopback", "macvlan", "portmap", "ptp", "sbr", "static", "tap", "tuning", "vlan", "vrf",
})

#: Never copied: build output, caches, virtualenvs, VCS data.
IGNORED_DIRS = frozenset({"__pycache__", "build", "dist", ".pytest_cache", ".mypy_cache",
                          ".ruff_cache", ".tox", ".nox", ".venv", "venv", ".git", ".eggs"})
IGNORED_SUFFIXES = (".pyc", ".pyo", ".egg-info", ".swp", "~")


class ScaffoldError(ValueError):
    """A name or destination :func:`new_plugin` refuses, or a missing example."""


def template_files(root: str) -> list[str]:
    """The example project's files under ``root``: relative POSIX paths, sorted,
    without build and cache leftovers (see :data:`IGNORED_DIRS`)."""
    found = []
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in IGNORED_DIRS and not d.endswith(IGNORED_SUFFIXES))
        for name in files:
            if name.endswith(IGNORED_SUFFIXES):
                continue
            path = os.path.join(directory, name)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            found.append(os.path.relpath(path, root).replace(os.sep, "/"))
    return sorted(found)


def template_of(kind: str) -> Template:
    """The example project of ``kind``, or a :class:`ScaffoldError` naming the kinds there are."""
    try:
        return KINDS[kind]
    except KeyError:
        raise ScaffoldError(f"unknown plugin kind {kind!r}: choose one of {', '.join(KINDS)}") from None


def template_root(kind: str = DEFAULT_KIND) -> str:
    """The example project's directory: the copy inside the installed package, else
    the source checkout's root directory (editable installs)."""
    template = template_of(kind)
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # cnicore/
    candidates = [os.path.join(package, template.packaged_dir),
                  os.path.join(os.path.dirname(os.path.dirname(package)), template.source_dir)]
    for candidate in candidates:
        if os.path.isfile(os.path.join(candidate, "pyproject.toml")):
            return candidate
    raise ScaffoldError(f"cnicore's example {kind} plugin project is missing (looked in "
                        + " and ".join(candidates) + "); reinstall cnicore")


def builtin_types() -> frozenset[str]:
    """The plugin types cnicore itself registers."""
    from cnicore.plugin import ENTRY_POINT_GROUP  # not at the top: see the module docstring

    try:
        names = {ep.name for ep in distribution("cnicore").entry_points if ep.group == ENTRY_POINT_GROUP}
    except PackageNotFoundError:  # running from a bare source tree
        names = set()
    return BUILTIN_TYPES | names


def validate_name(name: str) -> None:
    """Refuse a NAME that is not a valid CNI type for a new plugin, or that clashes
    with a built-in or reference plugin or one installed here by another distribution."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ScaffoldError(f"invalid plugin name {name!r}: use lower-case letters, digits and '-', "
                            "starting with a letter or digit (it becomes the CNI type)")
    if len(name) > MAX_NAME_LENGTH:
        raise ScaffoldError(f"plugin name {name!r} is longer than {MAX_NAME_LENGTH} characters")
    if name in builtin_types():
        raise ScaffoldError(f"{name!r} is a cnicore built-in plugin type; choose another name")
    if name in REFERENCE_TYPES:
        raise ScaffoldError(f"{name!r} is a reference CNI plugin type (its Go binary uses that file "
                            "in CNI bin dirs); choose another name")
    from cnicore.registry import RegistryError, discover  # not at the top: see the module docstring

    try:
        installed = discover().get(name)
    except RegistryError:
        installed = None
    if installed is not None and installed.distribution.lower().replace("_", "-") != distribution_name(name):
        raise ScaffoldError(f"plugin type {name!r} is already provided by the installed distribution "
                            f"{installed.distribution}; choose another name")


def package_name(name: str) -> str:
    """The import package of the project for plugin type ``name``."""
    return "cni_plugin_" + name.replace("-", "_")


def distribution_name(name: str) -> str:
    """The distribution (``pip install`` name) of the project for plugin type ``name``."""
    return "cni-plugin-" + name


def substitutions(name: str, kind: str = DEFAULT_KIND) -> list[tuple[str, str]]:
    """(example text, replacement) pairs for the example of ``kind``, applied in this order."""
    template = template_of(kind)
    return [(template.distribution, distribution_name(name)),
            (template.package, package_name(name)),
            (template.type, name)]


def substitute(text: str, pairs: Iterable[tuple[str, str]]) -> str:
    """``text`` with every pair replaced, in order."""
    for old, new in pairs:
        text = text.replace(old, new)
    return text


def new_plugin(name: str, dest: str | os.PathLike[str] | None = None, *, template: str | None = None,
               kind: str = DEFAULT_KIND) -> str:
    """Create the project for plugin type ``name`` in ``dest`` from the example of
    ``kind`` (``chained``, ``main`` or ``ipam``; ``template``: another directory
    using that example's names) and return its path.

    ``dest`` defaults to ``./cni-plugin-NAME``; it must not exist or be an
    empty directory. The project appears whole or not at all: it is written
    to a temporary sibling directory that is renamed into place at the end.
    """
    template_of(kind)
    validate_name(name)
    root = template or template_root(kind)
    target = os.path.abspath(os.fspath(dest) if dest is not None else distribution_name(name))
    if os.path.lexists(target):
        if not os.path.isdir(target) or os.path.islink(target):
            raise ScaffoldError(f"{target} exists and is not a directory")
        if os.listdir(target):
            raise ScaffoldError(f"{target} exists and is not empty; choose another --dest")
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    pairs = substitutions(name, kind)
    files = template_files(root)
    if "pyproject.toml" not in files:
        raise ScaffoldError(f"{root} is not a plugin project (no pyproject.toml)")

    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.", dir=parent)
    try:
        for relative in files:
            source = os.path.join(root, *relative.split("/"))
            out = os.path.join(staging, *substitute(relative, pairs).split("/"))
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with open(source, "rb") as fh:
                data = fh.read()
            try:
                data = substitute(data.decode("utf-8"), pairs).encode("utf-8")
            except UnicodeDecodeError:
                pass  # a binary file: copied as it is
            with open(out, "wb") as fh:
                fh.write(data)
            shutil.copymode(source, out)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)
        os.rename(staging, target)  # rename(2) replaces a missing or empty directory
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
