"""Hosting one plugin for :func:`cnicore.skel.run`: its info and its hooks via pluggy.

Importing pluggy costs ~10 ms per exec (it pulls in ``typing`` and
``inspect``), more than a Go plugin's whole run, so the host avoids it where
pluggy would only forward a call:

* VERSION (and the about text) is read straight from ``cni_plugin_info``;
* a hook with exactly one implementation (not a wrapper) among the plugin
  and its policies is called directly, with the arguments it names — which
  is all pluggy would do.

Everything else (several implementations to order, wrappers) goes through
the real PluginManager, built on first need.
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
#: Hooks declared ``firstresult`` in :mod:`cnicore.hookspecs` (a test keeps these in sync).
FIRSTRESULT_HOOKS = frozenset({"cni_plugin_info", "cni_add", "cni_ipam"})
_IMPL_ATTR = PROJECT + "_impl"


class PluginHost:
    """A plugin (module or object with hookimpls) ready to serve CNI commands."""

    def __init__(self, plugin: Any, name: str, policies: Iterable[str | object] = ()) -> None:
        self.plugin = plugin
        self.name = name
        self.policies = tuple(policies)
        self._pm: pluggy.PluginManager | None = None
        self._members: list[Any] | None = None

    def __repr__(self) -> str:
        return f"PluginHost({self.name!r})"

    def info(self) -> PluginInfo:
        """The plugin's VERSION answer; every version when it does not say."""
        func = getattr(self.plugin, "cni_plugin_info", None)
        info = func() if func is not None else None
        if info is None:
            info = PluginInfo(ALL, about=f"CNI {self.name} plugin")
        return info

    def members(self) -> list[Any]:
        """The plugin followed by its policy objects, in registration order."""
        if self._members is None:
            import sys

            members = [self.plugin]
            for policy in DEFAULT_POLICIES + self.policies:
                obj: Any = policy
                if isinstance(policy, str):
                    __import__(policy)  # importlib.import_module without importing importlib (exec path)
                    obj = sys.modules[policy]
                if not any(obj is m for m in members):
                    members.append(obj)
            self._members = members
        return self._members

    @property
    def pm(self) -> pluggy.PluginManager:
        """The PluginManager, built on first use."""
        if self._pm is None:
            import pluggy

            from cnicore import hookspecs

            pm = pluggy.PluginManager(PROJECT)
            pm.add_hookspecs(hookspecs)
            for index, member in enumerate(self.members()):
                pm.register(member, name=self.name if index == 0 else None)
            self._pm = pm
        return self._pm

    def validate(self) -> None:
        """Let pluggy check every implementation against its spec (argument names,
        unknown hooks); the direct path skips this, so tests and cnitool call it."""
        self.pm.check_pending()

    def _single_plain_impl(self, name: str) -> Any:
        """The one implementation of hook ``name`` if pluggy would only forward to it."""
        if self._pm is not None:
            return None
        found = []
        for member in self.members():
            for attr in dir(member):
                func = getattr(member, attr, None)
                opts = getattr(func, _IMPL_ATTR, None) if callable(func) else None
                if isinstance(opts, dict) and (opts.get("specname") or attr) == name:
                    found.append((func, opts))
        if len(found) != 1:
            return None
        func, opts = found[0]
        # Alone, an implementation's tryfirst/trylast cannot matter; a wrapper still needs pluggy.
        plain = not (opts.get("wrapper") or opts.get("hookwrapper"))
        return func if plain else None

    def call_hook(self, name: str, **kwargs: Any) -> Any:
        """Call hook ``name`` with keyword arguments, as ``pm.hook.<name>(**kwargs)`` would:
        the first non-None result for ``firstresult`` hooks, else the list of results."""
        func = self._single_plain_impl(name)
        if func is None:
            return getattr(self.pm.hook, name)(**kwargs)
        value = func(**{arg: kwargs[arg] for arg in _argnames(func)})
        if name in FIRSTRESULT_HOOKS:
            return value
        return [] if value is None else [value]

    @property
    def hook(self) -> Any:
        """``pm.hook``: call hooks by name, e.g. ``host.hook.cni_sysctl_check(...)``."""
        return self.pm.hook

    def call(self, verb: str, request: Request) -> AnyResult | None:
        """Run the hook for ``verb`` (ADD, CHECK, DEL, GC, STATUS)."""
        request.host = self
        outcome = self.call_hook("cni_" + verb.lower(), request=request)
        return outcome if verb == "ADD" else None


def _argnames(func: Any) -> tuple[str, ...]:
    """The arguments pluggy would pass: positional ones without defaults, minus ``self``."""
    bound = hasattr(func, "__func__")
    code = getattr(func, "__func__", func).__code__
    defaults = getattr(func, "__defaults__", None) or ()
    names = code.co_varnames[:code.co_argcount - len(defaults)]
    return tuple(names[1:] if bound else names)
