"""Hosting one plugin for :func:`cnicore.skel.run`: its info and its hooks, with pluggy's behaviour.

Importing pluggy costs ~10 ms per exec (it pulls in ``typing`` and
``inspect``), more than a Go plugin's whole run, so the host avoids it where
pluggy would only forward a call:

* VERSION (and the about text) is read straight from the plugin's
  ``cni_plugin_info`` (never from policies);
* a hook with no implementation, or exactly one that is not a wrapper, among
  the plugin and its policies is called directly, with the arguments pluggy
  would pass.

The shortcut must not change behaviour. Before it calls anything, the host
checks the plugin and its policies as ``PluginManager.register`` and
``check_pending`` would (hook names, argument names against the specs,
wrapper options) — the plugin alone for VERSION, whose policies are never
imported. Whenever pluggy would refuse, or the case is one the shortcut does
not model (class plugins, descriptors, decorated functions, a call missing an
argument...), the real PluginManager is built and decides: errors are pluggy's
own exceptions with pluggy's messages. ``tests/test_hook_parity.py`` runs
every hook both ways. Several implementations to order and wrappers always go
through the PluginManager.
"""

from __future__ import annotations

import sys

from cnicore.plugin import PROJECT
from cnicore.version import ALL, PluginInfo

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterable

    import pluggy

    from cnicore.request import Request
    from cnicore.types import AnyResult

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).

__all__ = ["DEFAULT_POLICIES", "PluginHost"]

#: Policy modules every host registers: IPAM dispatch and the sysctl policy.
DEFAULT_POLICIES = ("cnicore.ipam", "cnicore.sysctl")
#: Every hook of :mod:`cnicore.hookspecs` and its argument names, so the direct
#: path can check implementations without importing pluggy (a test keeps it in sync).
HOOK_ARGS: dict[str, tuple[str, ...]] = {
    "cni_plugin_info": (),
    "cni_add": ("request",),
    "cni_check": ("request",),
    "cni_del": ("request",),
    "cni_gc": ("request",),
    "cni_status": ("request",),
    "cni_ipam": ("command", "ipam_type", "request"),
    "cni_sysctl_check": ("key", "value", "path", "request"),
}
#: Hooks declared ``firstresult`` in :mod:`cnicore.hookspecs` (a test keeps these in sync).
FIRSTRESULT_HOOKS = frozenset({"cni_plugin_info", "cni_add", "cni_ipam"})
_IMPL_ATTR = PROJECT + "_impl"


def _function() -> None:
    """Only its type is used: FunctionType without importing ``types``."""


class _Probe:
    def method(self) -> None:
        """Only its type is used: MethodType without importing ``types``."""


_FunctionType = type(_function)
_MethodType = type(_Probe().method)
_ModuleType = type(sys)
_CO_GENERATOR = 0x20
#: First parameters pluggy versions strip (or not) from unbound functions in classes.
_IMPLICIT = ("self", "cls", "obj")


class _Impl:
    """One hook implementation as pluggy would register it."""

    __slots__ = ("hook", "function", "argnames", "kwargnames", "wrapper")

    def __init__(self, hook: str, function: Any, argnames: tuple[str, ...], kwargnames: tuple[str, ...],
                 wrapper: bool) -> None:
        self.hook = hook
        self.function = function
        self.argnames = argnames
        self.kwargnames = kwargnames
        self.wrapper = wrapper


class PluginHost:
    """A plugin (module or object with hookimpls) ready to serve CNI commands."""

    def __init__(self, plugin: Any, name: str, policies: Iterable[str | object] = ()) -> None:
        self.plugin = plugin
        self.name = name
        self.policies = tuple(policies)
        self._pm: pluggy.PluginManager | None = None
        self._members: list[Any] | None = None
        self._plugin_ok: bool | None = None
        self._direct: dict[str, list[_Impl]] | None = None
        self._direct_known = False

    def __repr__(self) -> str:
        return f"PluginHost({self.name!r})"

    def info(self) -> PluginInfo:
        """The plugin's VERSION answer; every version when it does not say.

        A plugin pluggy would refuse fails here too, with pluggy's error."""
        if self._plugin_ok is None:
            self._plugin_ok = self._pm is not None or _scan(self.plugin) is not None
        if not self._plugin_ok:
            self.pm  # noqa: B018 - builds the PluginManager: pluggy raises for a broken plugin
            self._plugin_ok = True
        func = getattr(self.plugin, "cni_plugin_info", None)
        info = func() if func is not None else None
        if info is None:
            info = PluginInfo(ALL, about=f"CNI {self.name} plugin")
        return info

    def members(self) -> list[Any]:
        """The plugin followed by its policy objects, in registration order."""
        if self._members is None:
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
        """The PluginManager, built on first use: specs added, every member
        registered, then ``check_pending`` (an unknown hook is an error)."""
        if self._pm is None:
            import pluggy

            from cnicore import hookspecs

            pm = pluggy.PluginManager(PROJECT)
            pm.add_hookspecs(hookspecs)
            for index, member in enumerate(self.members()):
                pm.register(member, name=self.name if index == 0 else None)
            pm.check_pending()
            self._pm = pm
        return self._pm

    def validate(self) -> None:
        """Let pluggy check every implementation against its spec (argument names,
        unknown hooks, wrapper options), raising ``pluggy.PluginValidationError``."""
        self.pm.check_pending()

    def _direct_table(self) -> dict[str, list[_Impl]] | None:
        """Every member's implementations by hook, or None when pluggy must decide."""
        if not self._direct_known:
            self._direct_known = True
            self._direct = _scan_all(self.members(), self.name)
        return self._direct

    def _direct_impls(self, name: str, kwargs: dict[str, Any]) -> list[_Impl] | None:
        """The implementations of ``name`` if calling them directly is exactly what
        pluggy would do (none, or one plain one), else None."""
        if self._pm is not None or name not in HOOK_ARGS:
            return None
        table = self._direct_table()
        if table is None:
            return None
        for arg in HOOK_ARGS[name]:
            if arg not in kwargs:
                return None  # pluggy warns, and may raise HookCallError: let it
        impls = table.get(name, [])
        if len(impls) > 1 or (impls and impls[0].wrapper):
            return None
        return impls

    def call_hook(self, name: str, **kwargs: Any) -> Any:
        """Call hook ``name`` with keyword arguments, as ``pm.hook.<name>(**kwargs)`` would:
        the first non-None result for ``firstresult`` hooks, else the list of results."""
        impls = self._direct_impls(name, kwargs)
        if impls is None:
            return getattr(self.pm.hook, name)(**kwargs)
        value = None
        if impls:
            impl = impls[0]
            args = [kwargs[arg] for arg in impl.argnames]
            extra = {arg: kwargs[arg] for arg in impl.kwargnames if arg in kwargs}
            value = impl.function(*args, **extra) if extra else impl.function(*args)
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


def _scan_all(members: list[Any], name: str) -> dict[str, list[_Impl]] | None:
    """What registering ``members`` would give pluggy, by hook; None if pluggy would
    refuse any of it (then it must say why) or the shortcut does not model it."""
    names: list[str] = []
    table: dict[str, list[_Impl]] = {}
    for index, member in enumerate(members):
        if any(member == earlier or earlier == member for earlier in members[:index]):
            return None  # pluggy: "already registered under a different name"
        member_name = (name if index == 0 else None) or getattr(member, "__name__", None) or str(id(member))
        if member_name in names:
            return None  # pluggy: "Plugin name already registered"
        names.append(member_name)
        impls = _scan(member)
        if impls is None:
            return None
        for impl in impls:
            table.setdefault(impl.hook, []).append(impl)
    return table


def _scan(member: Any) -> list[_Impl] | None:
    """``member``'s hook implementations, found and checked as pluggy's ``register`` and
    ``check_pending`` would; None when pluggy would refuse one or the member is outside
    what this models: a module, or an instance of a plain class whose implementations
    are plain functions (no descriptors, slots, ``__getattr__``, ``__wrapped__``)."""
    classes: tuple[type, ...] = ()
    if member is None or isinstance(member, type):
        return None
    if type(member) is _ModuleType:
        own = member.__dict__
        if "__dir__" in own:
            return None
    else:
        cls = type(member)
        if type(cls) is not type:
            return None
        classes = cls.__mro__[:-1]
        for klass in classes:
            for attr, value in klass.__dict__.items():
                if attr in ("__slots__", "__getattr__", "__getattribute__", "__dir__"):
                    return None
                if type(value) is not _FunctionType and hasattr(type(value), "__get__") \
                        and not attr.startswith("__"):
                    return None  # properties, staticmethods...: pluggy versions differ
        try:
            own = object.__getattribute__(member, "__dict__")
        except AttributeError:
            own = {}
        if not isinstance(own, dict):
            return None
    found: list[_Impl] = []
    for attr in dir(member):
        bind = False
        if attr in own:
            value = own[attr]
        else:
            for klass in classes:
                if attr in klass.__dict__:
                    value, bind = klass.__dict__[attr], True
                    break
            else:
                continue
        if type(value) is not _FunctionType:
            if isinstance(value, (_MethodType, staticmethod, classmethod)) and (
                    getattr(value, _IMPL_ATTR, None) is not None
                    or getattr(getattr(value, "__func__", None), _IMPL_ATTR, None) is not None):
                return None
            continue
        opts = getattr(value, _IMPL_ATTR, None)
        if opts is None or not isinstance(opts, dict):
            continue
        if attr.startswith("__") or "__wrapped__" in value.__dict__:
            return None
        impl = _impl(value, opts, attr, member if bind else None)
        if impl is None:
            return None
        found.append(impl)
    return found


def _impl(func: Any, opts: dict[str, Any], attr: str, instance: Any) -> _Impl | None:
    """One implementation as pluggy's ``varnames``/``_verify_hook`` see it; None if pluggy
    would refuse it (or its versions disagree on it)."""
    code = func.__code__
    names = code.co_varnames[:code.co_argcount]
    defaults = func.__defaults__ or ()
    cut = len(names) - len(defaults)
    args, kwargs = names[:cut], names[cut:]
    if instance is not None:
        if not args and names:
            return None  # a default on ``self``: pluggy versions differ
        args = args[1:]
        function = func.__get__(instance, type(instance))
    else:
        if args and args[0] in _IMPLICIT and "." in func.__qualname__:
            return None
        function = func
    hook = opts.get("specname") or attr
    wrapper, hookwrapper = bool(opts.get("wrapper")), bool(opts.get("hookwrapper"))
    spec = HOOK_ARGS.get(hook)
    if spec is None:
        # No spec: registered unchecked, but check_pending refuses it unless optional.
        return _Impl(hook, function, args, kwargs, wrapper or hookwrapper) if opts.get("optionalhook") else None
    if not set(args) <= set(spec):
        return None  # "Argument(s) ... can not be found in the hookspec"
    if (wrapper or hookwrapper) and not code.co_flags & _CO_GENERATOR:
        return None  # "... but function is not a generator function"
    if wrapper and hookwrapper:
        return None  # "... mutually exclusive"
    return _Impl(hook, function, args, kwargs, wrapper or hookwrapper)
