"""One behaviour with or without pluggy: PluginHost's direct calls against a real PluginManager.

``PluginHost`` calls a lone implementation directly so the exec path never
imports pluggy. These tests generate, for every hook in :mod:`cnicore.hookspecs`,
valid and broken implementations (subsets of the arguments, misnamed and extra
arguments, defaults, keyword-only arguments, ``specname``, wrappers, unknown
hooks, a broken implementation of another hook) in modules and in instances,
call each hook through the host and through a ``pluggy.PluginManager`` holding
the same objects, and compare results, exception types and messages, and
warnings. They also check that the direct path was really taken wherever it
may be, and that a generated launcher reports pluggy's message as its CNI error.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator

import pluggy
import pytest

from cnicore import hookspecs
from cnicore import host as host_module
from cnicore.cli.install import render
from cnicore.errors import CNIError
from cnicore.host import FIRSTRESULT_HOOKS, HOOK_ARGS, PluginHost
from cnicore.plugin import PROJECT, hookimpl
from cnicore.registry import PluginEntry
from cnicore.testing import cni_env, run_executable


def spec_callers() -> dict[str, Any]:
    """pluggy's own view of every hookspec: name -> HookCaller (with ``.spec``)."""
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    return {name: caller for name, caller in vars(pm.hook).items() if not name.startswith("_")}


SPECS = spec_callers()
HOOKS = sorted(SPECS)


def test_the_host_tables_match_the_hookspecs() -> None:
    """The direct path checks implementations against HOOK_ARGS: it must be the specs."""
    assert set(HOOK_ARGS) == set(HOOKS)
    for name, caller in SPECS.items():
        spec = caller.spec
        assert HOOK_ARGS[name] == spec.argnames, name
        assert (name in FIRSTRESULT_HOOKS) == bool(spec.opts.get("firstresult")), name
        # What the direct path does not model: a spec using it needs host.py taught first.
        assert spec.kwargnames == (), name
        assert not spec.opts.get("historic") and not caller.is_historic(), name
        assert spec.warn_on_impl is None and not spec.opts.get("warn_on_impl_args"), name


# -- generated implementations ----------------------------------------------------------------

class Variant:
    """A plugin to register: how to build it, and whether pluggy accepts it."""

    def __init__(self, label: str, build: Callable[[], Any], direct: bool) -> None:
        self.label = label
        self.build = build
        #: True when the host must call the hook without pluggy (valid, one plain implementation).
        self.direct = direct

    def __repr__(self) -> str:
        return self.label


def _source(name: str, params: list[str], options: str, body: str, method: bool) -> str:
    marker = "@hookimpl" + (f"({options})" if options else "")
    params = (["self"] if method else []) + params
    indent = "    " if method else ""
    lines = [marker, f"def {name}({', '.join(params)}):"] + [f"    {line}" for line in body.splitlines()]
    return "\n".join(indent + line for line in lines) + "\n"


BODIES = {
    "returns-args": "return {'impl': %(tag)r, 'got': {k: v for k, v in locals().items() if k != 'self'}}",
    "returns-none": "return None",
    "raises-cni": "raise CNIError(7, 'refused by ' + %(tag)r, 'details')",
    "raises-keyerror": "raise KeyError('req')",
}


def _module(label: str, defs: list[tuple[str, list[str], str, str]]) -> ModuleType:
    """A module whose functions are hook implementations (as a plugin's module is)."""
    module = ModuleType(f"cnitest_parity_{abs(hash(label))}")
    code = "".join(_source(name, params, options, body, False) for name, params, options, body in defs)
    module.__dict__.update(hookimpl=hookimpl, CNIError=CNIError)
    exec(compile(code, f"<{label}>", "exec"), module.__dict__)  # noqa: S102 - generated test plugins
    return module


def _instance(label: str, defs: list[tuple[str, list[str], str, str]]) -> Any:
    """An instance whose methods are hook implementations (as policy objects are)."""
    body = "".join(_source(name, params, options, body, True) for name, params, options, body in defs)
    code = f"class Plugin:\n    '''{label}'''\n{body or '    pass'}\n"
    scope: dict[str, Any] = {"hookimpl": hookimpl, "CNIError": CNIError}
    exec(compile(code, f"<{label}>", "exec"), scope)  # noqa: S102 - generated test plugins
    return scope["Plugin"]()


def variants(hook: str) -> Iterator[Variant]:
    """Valid and broken implementations of ``hook`` in a module and in an instance."""
    spec = list(HOOK_ARGS[hook])
    other = "cni_del" if hook != "cni_del" else "cni_add"
    cases: list[tuple[str, list[tuple[str, list[str], str, str]], bool]] = []
    for size in range(len(spec) + 1):
        for subset in itertools.combinations(spec, size):
            for body in BODIES:
                cases.append((f"args={subset} {body}", [(hook, list(subset), "", BODIES[body])], True))
    full = BODIES["returns-args"]
    cases += [
        ("reversed args", [(hook, spec[::-1], "", full)], True),
        ("extra defaulted arg", [(hook, spec + ["extra=1", "kept='kept'"], "", full)], True),
        ("*args and **kwargs", [(hook, spec + ["*rest", "**more"], "", full)], True),
        ("keyword-only arg", [(hook, spec + ["*", "needed"], "", full)], True),
        ("tryfirst", [(hook, spec, "tryfirst=True", full)], True),
        ("trylast", [(hook, spec, "trylast=True", full)], True),
        ("optionalhook", [(hook, spec, "optionalhook=True", full)], True),
        ("specname", [("impl_" + hook, spec, f"specname={hook!r}", full)], True),
        ("another hook too", [(hook, spec, "", full), (other, ["request"], "", "return None")], True),
        ("unknown optional hook too", [(hook, spec, "", full), ("cni_nope", ["x"], "optionalhook=True", "return x")],
         True),
        ("wrapper alone", [(hook, spec, "wrapper=True", "return (yield)")], False),
        ("old-style wrapper alone", [(hook, spec, "hookwrapper=True", "yield")], False),
        # Refused by pluggy:
        ("misnamed arg", [(hook, (spec[1:] if spec else []) + ["req"], "", full)], False),
        ("extra positional arg", [(hook, spec + ["bogus"], "", full)], False),
        ("misnamed arg in another hook", [(hook, spec, "", full), (other, ["req"], "", "return None")], False),
        ("specname of an unknown hook", [("impl", spec, "specname='cni_nope'", full)], False),
        ("unknown hook", [(hook, spec, "", full), (hook + "x", spec, "", full)], False),
        ("wrapper not a generator", [(hook, spec, "wrapper=True", full)], False),
        ("hookwrapper not a generator", [(hook, spec, "hookwrapper=True", full)], False),
        ("wrapper and hookwrapper", [(hook, spec, "wrapper=True, hookwrapper=True", "yield")], False),
    ]
    for label, defs, direct in cases:
        for kind, make in (("module", _module), ("instance", _instance)):
            full_label = f"{hook} {kind} {label}"
            tagged = [(name, params, options, body % {"tag": full_label} if "%(" in body else body)
                      for name, params, options, body in defs]
            yield Variant(full_label, lambda make=make, full_label=full_label, tagged=tagged: make(full_label, tagged),
                          direct)


def call_kwargs(hook: str) -> Iterator[tuple[str, dict[str, Any], bool]]:
    """Ways to call ``hook``: (label, kwargs, whether the direct path may take it)."""
    values = {arg: f"<{arg}>" for arg in HOOK_ARGS[hook]}
    yield "all args", values, True
    yield "all args and an unknown one", dict(values, extra="given"), True
    for arg in HOOK_ARGS[hook]:
        yield f"without {arg}", {k: v for k, v in values.items() if k != arg}, False


# -- running both ways --------------------------------------------------------------------------

def outcome(call: Callable[[], Any]) -> tuple[object, list[tuple[type, str]]]:
    """What a call did: its result or exception (type and message), and its warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result: object = ("returned", call())
        except Exception as exc:  # noqa: BLE001 - compared, not handled
            result = ("raised", type(exc), str(exc))
    return result, [(w.category, str(w.message)) for w in caught]


def through_pluggy(plugin: Any, name: str, hook: str, kwargs: dict[str, Any],
                   members: tuple[Any, ...] = ()) -> tuple[object, list[tuple[type, str]]]:
    """The reference: a PluginManager with the specs and the same objects registered."""
    def run() -> Any:
        pm = pluggy.PluginManager(PROJECT)
        pm.add_hookspecs(hookspecs)
        pm.register(plugin, name=name)
        for member in members:
            pm.register(member)
        pm.check_pending()
        return getattr(pm.hook, hook)(**kwargs)
    return outcome(run)


@pytest.fixture
def no_default_policies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hosts with the plugin alone: the policies implement cni_ipam and cni_sysctl_check,
    which would otherwise never take the direct path."""
    monkeypatch.setattr(host_module, "DEFAULT_POLICIES", ())


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_behaves_as_pluggy(hook: str, no_default_policies: None) -> None:
    compared = direct_calls = 0
    for variant in variants(hook):
        for call_label, kwargs, may_be_direct in call_kwargs(hook):
            plugin = variant.build()
            expected = through_pluggy(plugin, "cnitest-parity", hook, kwargs)
            host = PluginHost(plugin, "cnitest-parity")
            got = outcome(lambda: host.call_hook(hook, **kwargs))
            where = f"{variant!r}, {call_label}"
            assert got == expected, where
            if variant.direct and may_be_direct:
                assert host._pm is None, f"{where}: took pluggy where it need not"
                direct_calls += 1
            compared += 1
            # VERSION checks the plugin as registering it would, with the same error.
            fresh = PluginHost(plugin, "cnitest-parity")
            info = outcome(fresh.info)
            if expected[0][0] == "raised" and expected[0][1] is pluggy.PluginValidationError:
                assert info == (expected[0], []), where
            else:
                assert not (info[0][0] == "raised" and info[0][1] is pluggy.PluginValidationError), where
    assert compared >= 90 and direct_calls >= 40  # the comparison really ran, and the shortcut too


@pytest.mark.parametrize("hook", ["cni_plugin_info", "cni_add", "cni_check", "cni_del", "cni_gc", "cni_status"])
def test_with_the_default_policies_too(hook: str) -> None:
    import cnicore.ipam
    import cnicore.sysctl

    for variant in variants(hook):
        for call_label, kwargs, _ in call_kwargs(hook):
            plugin = variant.build()
            expected = through_pluggy(plugin, "cnitest-parity", hook, kwargs, (cnicore.ipam, cnicore.sysctl))
            host = PluginHost(plugin, "cnitest-parity")
            assert outcome(lambda: host.call_hook(hook, **kwargs)) == expected, f"{variant!r}, {call_label}"


def test_no_implementation_is_answered_without_pluggy(no_default_policies: None) -> None:
    empty = _module("empty", [])
    for hook in HOOKS:
        kwargs = {arg: 1 for arg in HOOK_ARGS[hook]}
        host = PluginHost(empty, "cnitest-parity")
        assert outcome(lambda: host.call_hook(hook, **kwargs)) == through_pluggy(empty, "x", hook, kwargs)
        assert host._pm is None


def test_what_the_shortcut_leaves_to_pluggy(no_default_policies: None) -> None:
    """Plugins outside what the direct path models still behave as pluggy's (through pluggy)."""
    class WithProperty:
        @property
        def cni_add(self) -> Any:
            return hookimpl(lambda request: "from a property")

    class WithStatic:
        @staticmethod
        @hookimpl
        def cni_add(request: Any) -> str:
            return "static"

    class AsClass:
        @hookimpl
        def cni_add(self, request: Any) -> str:
            return "class"

    import functools

    def deco(func: Any) -> Any:
        @functools.wraps(func)
        def inner(*args: Any) -> Any:
            return func(*args)
        return inner

    decorated = _module("decorated", [])
    decorated.cni_add = hookimpl(deco(lambda req: "decorated"))  # type: ignore[attr-defined]
    same_name = ModuleType("cnitest-parity")
    for plugin in (WithProperty(), WithStatic(), AsClass, decorated, same_name):
        kwargs = {"request": "<request>"}
        host = PluginHost(plugin, "cnitest-parity", [same_name] if plugin is not same_name else [])
        members = (same_name,) if plugin is not same_name else ()
        assert outcome(lambda: host.call_hook("cni_add", **kwargs)) == \
            through_pluggy(plugin, "cnitest-parity", "cni_add", kwargs, members), plugin


# -- where it runs: a launcher ----------------------------------------------------------------------

MISNAMED = '''
"""A plugin whose ADD names its argument wrongly."""
from cnicore.plugin import hookimpl


@hookimpl
def cni_add(req):
    return req.prev_result


@hookimpl
def cni_del(request):
    return None
'''


def test_a_launcher_reports_pluggys_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            host_netns, container_netns) -> None:
    """The launcher (``python -IS``, direct path) refuses a misnamed argument as pluggy
    would, for every command, with pluggy's message as the CNI error."""
    package = tmp_path / "plugins" / "cnitest_parity_misnamed"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "plugin.py").write_text(MISNAMED)
    monkeypatch.syspath_prepend(str(tmp_path / "plugins"))
    import importlib

    importlib.invalidate_caches()
    module = importlib.import_module("cnitest_parity_misnamed.plugin")
    try:
        with pytest.raises(pluggy.PluginValidationError) as refused:
            PluginHost(module, "cnitest-misnamed").validate()
        message = str(refused.value)
        assert "Argument(s) {'req'} are declared in the hookimpl" in message
        entry = PluginEntry("cnitest-misnamed", "cnitest_parity_misnamed.plugin", "cnicore-tests", "0")
        bindir = tmp_path / "bin"
        bindir.mkdir()
        launcher = bindir / "cnitest-misnamed"
        launcher.write_text(render(entry))  # install() would refuse it: write it as an older version's
        launcher.chmod(0o755)
    finally:
        for name in [m for m in sys.modules if m.startswith("cnitest_parity_misnamed")]:
            del sys.modules[name]

    config = {"cniVersion": "1.0.0", "name": "n", "type": "cnitest-misnamed"}
    for command in ("ADD", "DEL"):
        ran = run_executable(str(launcher), command, config, host=host_netns,
                             netns=container_netns if command == "ADD" else "")
        assert ran.code == 1, ran
        assert json.loads(ran.stdout) == {"cniVersion": "1.0.0", "code": 999, "msg": message}, ran
        assert b"PluginValidationError" in ran.stderr
    version = subprocess.run([str(launcher)], env={"CNI_COMMAND": "VERSION"}, capture_output=True, timeout=60)
    assert version.returncode == 1
    assert json.loads(version.stdout)["msg"] == message


def test_a_valid_launcher_still_runs_without_pluggy(tmp_path: Path) -> None:
    """The check costs no import: a launcher's DEL never loads pluggy or the hookspecs."""
    entry = PluginEntry("loopback", "cni_plugins_builtin.loopback", "cnicore", "0")
    launcher = tmp_path / "loopback"
    launcher.write_text(render(entry))
    record = tmp_path / "modules.json"
    probe = textwrap.dedent(f"""
        import atexit, json, sys
        atexit.register(lambda: open({str(record)!r}, 'w').write(json.dumps(sorted(sys.modules))))
        sys.argv = [{str(launcher)!r}]
        exec(compile(open({str(launcher)!r}).read(), {str(launcher)!r}, 'exec'))
    """)
    env = cni_env("DEL", path="/nonexistent")
    proc = subprocess.run([sys.executable, "-IS", "-c", probe], env=env, capture_output=True, timeout=60,
                          input=b'{"cniVersion":"1.0.0","name":"n","type":"loopback"}')
    assert proc.returncode == 0, proc
    modules = set(json.loads(record.read_text()))
    assert "cnicore.host" in modules
    assert not {"pluggy", "cnicore.hookspecs", "inspect"} & modules
