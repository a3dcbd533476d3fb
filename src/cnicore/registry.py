"""Plugin discovery through the ``cnicore.plugins`` entry-point group.

The entry-point name is the CNI ``type``; the value is a module
(``pkg.plugin``) or an object in one (``pkg.plugin:PLUGIN``). Discovery reads
distribution metadata only: listing imports no plugin, loading one type
imports only that plugin. Two distributions claiming one type is an error
(a runtime could not know which one it execs).

Used by tooling (``cnitool plugins``, launcher installation), by the warm
server's parent (to import every plugin before it forks) and by
:mod:`cnicore.testing`; the exec path never scans entry points.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from cnicore.host import PluginHost
from cnicore.plugin import ENTRY_POINT_GROUP

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from cnicore.version import PluginInfo


class RegistryError(Exception):
    """Conflicting or broken plugin registrations."""


class PluginEntry:
    """One registered plugin type."""

    __slots__ = ("type", "value", "distribution", "version")

    def __init__(self, type: str, value: str, distribution: str, version: str) -> None:
        self.type = type
        self.value = value
        self.distribution = distribution
        self.version = version

    def __repr__(self) -> str:
        return f"PluginEntry({self.type!r}, {self.value!r}, {self.distribution} {self.version})"

    @property
    def module(self) -> str:
        return self.value.partition(":")[0].strip()

    @property
    def attr(self) -> str:
        return self.value.partition(":")[2].strip()

    def load(self) -> Any:
        """Import the plugin's module (and nothing else) and return the plugin object."""
        obj: Any = importlib.import_module(self.module)
        for part in filter(None, self.attr.split(".")):
            obj = getattr(obj, part)
        return obj

    def info(self) -> PluginInfo:
        return PluginHost(self.load(), self.type).info()


def _dist_name(ep: Any) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "unknown", ""
    return dist.metadata["Name"] or "unknown", dist.version or ""


def discover() -> dict[str, PluginEntry]:
    """Every registered plugin type; :class:`RegistryError` on conflicting claims."""
    found: dict[str, PluginEntry] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist, version = _dist_name(ep)
        entry = PluginEntry(ep.name, ep.value, dist, version)
        other = found.get(ep.name)
        if other is None:
            found[ep.name] = entry
        elif _normalise(other.distribution) != _normalise(dist):
            raise RegistryError(
                f"CNI plugin type {ep.name!r} is claimed by two distributions: "
                f"{other.distribution} ({other.value}) and {dist} ({ep.value}); uninstall one")
        # The same distribution seen twice on sys.path: the first one wins, as imports do.
    return dict(sorted(found.items()))


def _normalise(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def get(plugin_type: str) -> PluginEntry:
    """The entry for one type (``KeyError`` if none). Imports no plugin."""
    entries = discover()
    try:
        return entries[plugin_type]
    except KeyError:
        raise KeyError(f"no CNI plugin of type {plugin_type!r} is installed "
                       f"(known: {', '.join(entries) or 'none'})") from None


def load(plugin_type: str) -> Any:
    """Import and return the plugin registered for ``plugin_type``, and only it."""
    return get(plugin_type).load()
