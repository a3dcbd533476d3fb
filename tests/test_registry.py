"""Plugin discovery through the ``cnicore.plugins`` entry points (cnicore.registry)
and ``cnitool plugins list``.

Third-party plugins are fake distributions (``*.dist-info`` directories with
METADATA and entry_points.txt) in temporary directories put on sys.path, the
way an installed wheel looks to importlib.metadata. No namespaces are needed.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Iterator

import pytest
from click.testing import CliRunner

from cnicore import registry
from cnicore.cli.commands import main as cli_main
from cnicore.registry import PluginEntry, RegistryError
from cnicore.version import ALL

PYTHON = sys.executable
CNITOOL = os.path.join(os.path.dirname(sys.executable), "cnitool")


def make_dist(root: Path, name: str, version: str, plugins: dict[str, str],
              modules: dict[str, str] | None = None, dirname: str = "") -> Path:
    """A fake installed distribution ``name`` under ``root`` registering ``plugins``
    (type -> entry-point value), plus module files ``modules`` (name -> source)."""
    root.mkdir(parents=True, exist_ok=True)
    info = root / f"{dirname or name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = ["[cnicore.plugins]"] + [f"{t} = {v}" for t, v in plugins.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for module, source in (modules or {}).items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))
    importlib.invalidate_caches()
    return root


PLUGIN_SOURCE = """
    from cnicore.plugin import PluginInfo, hookimpl

    @hookimpl
    def cni_plugin_info():
        return PluginInfo(("0.4.0", "1.0.0"), about="fake")
"""


def run_python(code: str, pythonpath: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(pythonpath))
    return subprocess.run([PYTHON, "-c", textwrap.dedent(code)], env=env, capture_output=True,
                          text=True, timeout=60)


# -- discovery ---------------------------------------------------------------------

def test_discover_lists_builtin_loopback() -> None:
    entries = registry.discover()
    entry = entries["loopback"]
    assert isinstance(entry, PluginEntry)
    assert entry.type == "loopback"
    assert entry.distribution == "cnicore"
    assert entry.version == "0.1.0"
    assert entry.value == "cni_plugins_builtin.loopback"
    assert entry.module == "cni_plugins_builtin.loopback" and entry.attr == ""
    assert list(entries) == sorted(entries)
    assert registry.get("loopback").distribution == "cnicore"
    assert entry.info().supported_versions == ALL


def test_get_unknown_type_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="no CNI plugin of type 'no-such-plugin'.*loopback"):
        registry.get("no-such-plugin")


def test_third_party_plugin_with_attr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = PLUGIN_SOURCE + "\n    class Holder:\n        pass\n\n    PLUGIN = Holder()\n" \
        "    PLUGIN.inner = Holder()\n    PLUGIN.inner.cni_plugin_info = cni_plugin_info\n"
    site = make_dist(tmp_path / "site", "fake_attr", "2.5", {"fake-attr": "cnitest_reg_attr:PLUGIN.inner"},
                     {"cnitest_reg_attr": source})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "cnitest_reg_attr", raising=False)
    entry = registry.discover()["fake-attr"]
    assert (entry.distribution, entry.version) == ("fake_attr", "2.5")
    assert (entry.module, entry.attr) == ("cnitest_reg_attr", "PLUGIN.inner")
    plugin = registry.load("fake-attr")
    assert plugin is sys.modules["cnitest_reg_attr"].PLUGIN.inner
    assert entry.info().supported_versions == ("0.4.0", "1.0.0")


def test_two_distributions_claiming_one_type_is_an_error(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    site_a = make_dist(tmp_path / "a", "fake_a", "1.0", {"dup-type": "cnitest_reg_a"},
                       {"cnitest_reg_a": PLUGIN_SOURCE})
    site_b = make_dist(tmp_path / "b", "fake_b", "1.0", {"dup-type": "cnitest_reg_b"},
                       {"cnitest_reg_b": PLUGIN_SOURCE})
    monkeypatch.syspath_prepend(str(site_a))
    monkeypatch.syspath_prepend(str(site_b))
    with pytest.raises(RegistryError) as info:
        registry.discover()
    message = str(info.value)
    assert "'dup-type'" in message
    assert "fake_a (cnitest_reg_a)" in message and "fake_b (cnitest_reg_b)" in message
    assert "uninstall one" in message
    # Every entry point goes through discover(): get/load fail the same way...
    with pytest.raises(RegistryError):
        registry.load("loopback")
    # ... and cnitool reports it as an error, not a traceback.
    result = CliRunner().invoke(cli_main, ["plugins", "list"])
    assert result.exit_code == 1
    assert "claimed by two distributions" in result.output
    assert "Traceback" not in result.output
    # Listing imported neither claimant.
    assert "cnitest_reg_a" not in sys.modules and "cnitest_reg_b" not in sys.modules


def test_same_distribution_seen_twice_is_not_an_error(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # The same distribution in two sys.path entries (e.g. an old copy in a
    # user site): the first one on sys.path wins, as imports do.
    first = make_dist(tmp_path / "first", "fake_twice", "1.0", {"twice": "cnitest_reg_twice"},
                      {"cnitest_reg_twice": PLUGIN_SOURCE})
    second = make_dist(tmp_path / "second", "fake_twice", "0.9", {"twice": "cnitest_reg_twice"})
    monkeypatch.syspath_prepend(str(second))
    monkeypatch.syspath_prepend(str(first))
    entries = registry.discover()
    assert entries["twice"].distribution == "fake_twice"
    assert entries["twice"].version == "1.0"
    assert entries["loopback"].distribution == "cnicore"
    # Another spelling of the same name is still the same distribution.
    third = make_dist(tmp_path / "third", "Fake.Twice", "1.1", {"twice": "cnitest_reg_twice"})
    monkeypatch.syspath_prepend(str(third))
    entry = registry.discover()["twice"]
    assert (entry.distribution, entry.version) == ("Fake.Twice", "1.1")
    # Even when importlib.metadata lists both copies (their directories are named
    # differently), the registry compares the distributions' own names.
    fourth = make_dist(tmp_path / "fourth", "fake-twice", "1.2", {"twice": "cnitest_reg_twice"},
                       dirname="legacy_copy")
    monkeypatch.syspath_prepend(str(fourth))
    from importlib.metadata import entry_points

    assert len([ep for ep in entry_points(group="cnicore.plugins") if ep.name == "twice"]) == 2
    entry = registry.discover()["twice"]
    assert (entry.distribution, entry.version) == ("fake-twice", "1.2")


# -- what discovery and loading import ------------------------------------------------

def _poison_site(root: Path) -> Path:
    """A plugin distribution in ``root`` whose module fails loudly if it is ever imported."""
    return make_dist(root, "fake_poison", "1.0", {"poison": "cnitest_reg_poison"},
                     {"cnitest_reg_poison": "raise RuntimeError('cnitest_reg_poison was imported')\n"})


def test_load_imports_only_that_plugin(tmp_path: Path) -> None:
    site = _poison_site(tmp_path / "poison")
    proc = run_python("""
        import json, sys
        from cnicore import registry
        before = set(sys.modules)
        plugin = registry.load("loopback")
        print(json.dumps({"name": plugin.__name__,
                          "new": sorted(set(sys.modules) - before),
                          "types": sorted(registry.discover())}))
    """, site)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["name"] == "cni_plugins_builtin.loopback"
    assert "poison" in out["types"] and "loopback" in out["types"]
    assert "cnitest_reg_poison" not in out["new"]
    plugin_modules = [m for m in out["new"] if m.startswith("cni_plugins_builtin.")]
    assert plugin_modules == ["cni_plugins_builtin.loopback"]
    assert "pluggy" not in out["new"]
    assert "pyroute2" not in out["new"]


def test_discover_imports_no_plugin(tmp_path: Path) -> None:
    site = _poison_site(tmp_path / "poison")
    proc = run_python("""
        import json, sys
        from cnicore import registry
        entries = registry.discover()
        entry = registry.get("poison")
        print(json.dumps({"types": sorted(entries), "dist": entry.distribution,
                          "modules": sorted(sys.modules)}))
    """, site)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert {"loopback", "poison"} <= set(out["types"])
    assert out["dist"] == "fake_poison"
    assert "cnitest_reg_poison" not in out["modules"]
    assert "cni_plugins_builtin" not in out["modules"]
    assert "cni_plugins_builtin.loopback" not in out["modules"]
    assert "pluggy" not in out["modules"]


# -- cnitool plugins list ---------------------------------------------------------------

def test_cnitool_plugins_list_table() -> None:
    proc = subprocess.run([CNITOOL, "plugins", "list"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    header, *rows = proc.stdout.splitlines()
    assert header.split() == ["TYPE", "DISTRIBUTION", "VERSION", "CNI", "VERSIONS"]
    loopback = [row for row in rows if row.split()[0] == "loopback"]
    assert len(loopback) == 1
    fields = loopback[0].split(None, 3)
    assert fields[:3] == ["loopback", "cnicore", "0.1.0"]
    assert fields[3] == ", ".join(ALL)
    # Columns line up under their headers.
    assert loopback[0].index("cnicore") == header.index("DISTRIBUTION")
    assert loopback[0].index(", ".join(ALL)) == header.index("CNI VERSIONS")


def test_cnitool_plugins_list_json() -> None:
    proc = subprocess.run([CNITOOL, "plugins", "list", "--json"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    (loopback,) = [row for row in rows if row["type"] == "loopback"]
    assert loopback == {"type": "loopback", "distribution": "cnicore", "version": "0.1.0",
                        "module": "cni_plugins_builtin.loopback", "supportedVersions": list(ALL)}


def test_cnitool_plugins_list_shows_third_party_and_broken(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    make_dist(tmp_path / "site", "fake_listed", "3.1", {"listed": "cnitest_reg_listed"},
              {"cnitest_reg_listed": PLUGIN_SOURCE})
    _poison_site(tmp_path / "site")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "site"))
    proc = subprocess.run([CNITOOL, "plugins", "list", "--json"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    rows = {row["type"]: row for row in json.loads(proc.stdout)}
    assert rows["listed"] == {"type": "listed", "distribution": "fake_listed", "version": "3.1",
                              "module": "cnitest_reg_listed", "supportedVersions": ["0.4.0", "1.0.0"]}
    # A plugin that cannot be imported is listed with the reason, and hides no other.
    assert rows["poison"]["distribution"] == "fake_poison"
    assert "cannot load" in rows["poison"]["supportedVersions"][0]
    assert "cnitest_reg_poison was imported" in rows["poison"]["supportedVersions"][0]
    assert rows["loopback"]["supportedVersions"] == list(ALL)


# -- cnitool plugins install validates what it installs ---------------------------------------

MISNAMED_SOURCE = """
    from cnicore.plugin import hookimpl

    @hookimpl
    def cni_add(req):
        return None
"""

UNKNOWN_HOOK_SOURCE = """
    from cnicore.plugin import hookimpl

    @hookimpl
    def cni_addd(request):
        return None
"""


@pytest.fixture
def forget_install_plugins() -> Iterator[None]:
    """The test plugins below are imported by install(): drop them afterwards."""
    yield
    for name in [m for m in sys.modules if m.startswith("cnitest_inst_")]:
        del sys.modules[name]


def test_cnitool_plugins_install_refuses_what_pluggy_refuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             forget_install_plugins: None) -> None:
    import pluggy

    from cnicore.cli.install import install, read_manifest
    from cnicore.host import PluginHost

    broken = {"cnitest-misnamed": "cnitest_inst_misnamed", "cnitest-unknown-hook": "cnitest_inst_unknown"}
    site = make_dist(tmp_path / "site", "cnitest-install-mix", "1.0",
                     dict(broken, **{"cnitest-good": "cnitest_inst_good"}),
                     {"cnitest_inst_misnamed": MISNAMED_SOURCE, "cnitest_inst_unknown": UNKNOWN_HOOK_SOURCE,
                      "cnitest_inst_good": PLUGIN_SOURCE})
    monkeypatch.syspath_prepend(str(site))
    messages = {}
    for plugin_type, module in broken.items():
        with pytest.raises(pluggy.PluginValidationError) as refused:
            PluginHost(importlib.import_module(module), plugin_type).validate()
        messages[plugin_type] = str(refused.value)
    assert "Argument(s) {'req'}" in messages["cnitest-misnamed"]
    assert "unknown hook 'cni_addd'" in messages["cnitest-unknown-hook"]

    # The library: refused types are skipped with pluggy's message, the others installed.
    bindir = tmp_path / "bin"
    report = install(str(bindir))
    assert sorted(report.refused) == sorted(broken)
    for plugin_type, message in messages.items():
        assert message in report.skipped[plugin_type]
        assert not (bindir / plugin_type).exists()
    assert {"cnitest-good", "loopback", "bridge"} <= set(report.added)
    assert set(read_manifest(str(bindir))) == set(report.added)

    # cnitool, text and JSON: the same, and exit status 1.
    text = CliRunner().invoke(cli_main, ["plugins", "install", str(tmp_path / "bin2"), "--python"])
    assert text.exit_code == 1, text.output
    for plugin_type, message in messages.items():
        assert f"skipped: {plugin_type} (refused, pluggy says: {message})" in text.stderr
    assert "cnitest-good" in text.stdout
    as_json = CliRunner().invoke(cli_main, ["plugins", "install", str(tmp_path / "bin3"), "--python", "--json"])
    assert as_json.exit_code == 1
    data = json.loads(as_json.stdout)
    assert "cnitest-good" in data["added"] and not set(broken) & set(data["added"])
    assert {t: m in data["skipped"][t] for t, m in messages.items()} == {t: True for t in broken}
    good = subprocess.run([str(tmp_path / "bin3" / "cnitest-good")], env={"CNI_COMMAND": "VERSION"},
                          capture_output=True, timeout=60)
    assert good.returncode == 0 and json.loads(good.stdout)["supportedVersions"] == ["0.4.0", "1.0.0"]

    # The console script as a user runs it.
    proc = subprocess.run([CNITOOL, "plugins", "install", str(tmp_path / "bin4"), "--python"],
                          env=dict(os.environ, PYTHONPATH=str(site)), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert messages["cnitest-misnamed"] in proc.stderr
    assert (tmp_path / "bin4" / "cnitest-good").exists() and not (tmp_path / "bin4" / "cnitest-misnamed").exists()

    # Once fixed, the next install takes it.
    (site / "cnitest_inst_misnamed.py").write_text(textwrap.dedent(MISNAMED_SOURCE.replace("(req)", "(request)")))
    sys.modules.pop("cnitest_inst_misnamed")
    importlib.invalidate_caches()
    again = install(str(bindir))
    assert again.added == ["cnitest-misnamed"] and again.refused == ["cnitest-unknown-hook"]


def test_install_refuses_a_plugin_that_cannot_be_imported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          forget_install_plugins: None) -> None:
    from cnicore.cli.install import install

    site = make_dist(tmp_path / "site", "cnitest-install-raises", "1.0", {"cnitest-raises": "cnitest_inst_raises"},
                     {"cnitest_inst_raises": "raise RuntimeError('no import for you')\n"})
    monkeypatch.syspath_prepend(str(site))
    entry = registry.get("cnitest-raises")
    report = install(str(tmp_path / "bin"), entries=[entry, registry.get("loopback")])
    assert report.refused == ["cnitest-raises"] and report.added == ["loopback"]
    assert report.skipped == {"cnitest-raises": "refused, cannot load it: RuntimeError: no import for you"}
