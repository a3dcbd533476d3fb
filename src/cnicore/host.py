"""Hosting one plugin for :func:`cnicore.skel.run`: its info and its verbs via pluggy.

VERSION (and the about text) is read straight from the plugin's
``cni_plugin_info`` without importing pluggy; the PluginManager — the plugin
plus the default policies and any policies baked into the launcher — is built
only when a verb runs.
"""

from __future__ import annotations

from cnicore.plugin import PROJECT
from cnicore.version import ALL, PluginInfo

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterable

    import pluggy

    from cnicore.request import Request
    from cnicore.types import AnyResult

#: Policy modules every host registers: IPAM dispatch and the sysctl policy.
DEFAULT_POLICIES = ("cnicore.ipam", "cnicore.sysctl")


class PluginHost:
    """A plugin (module or object with hookimpls) ready to serve CNI commands."""

    def __init__(self, plugin: Any, name: str, policies: Iterable[str | object] = ()) -> None:
        self.plugin = plugin
        self.name = name
        self.policies = tuple(policies)
        self._pm: pluggy.PluginManager | None = None

    def __repr__(self) -> str:
        return f"PluginHost({self.name!r})"

    def info(self) -> PluginInfo:
        """The plugin's VERSION answer; every version when it does not say."""
        func = getattr(self.plugin, "cni_plugin_info", None)
        info = func() if func is not None else None
        if info is None:
            info = PluginInfo(ALL, about=f"CNI {self.name} plugin")
        return info

    @property
    def pm(self) -> pluggy.PluginManager:
        """The PluginManager, built on first use."""
        if self._pm is None:
            import importlib

            import pluggy

            from cnicore import hookspecs

            pm = pluggy.PluginManager(PROJECT)
            pm.add_hookspecs(hookspecs)
            pm.register(self.plugin, name=self.name)
            for policy in DEFAULT_POLICIES + self.policies:
                obj = importlib.import_module(policy) if isinstance(policy, str) else policy
                if not pm.is_registered(obj):
                    pm.register(obj)
            self._pm = pm
        return self._pm

    @property
    def hook(self) -> Any:
        """``pm.hook``: call hooks by name, e.g. ``host.hook.cni_sysctl_check(...)``."""
        return self.pm.hook

    def call(self, verb: str, request: Request) -> AnyResult | None:
        """Run the hook for ``verb`` (ADD, CHECK, DEL, GC, STATUS)."""
        request.host = self
        hook = getattr(self.pm.hook, "cni_" + verb.lower())
        outcome = hook(request=request)
        return outcome if verb == "ADD" else None
