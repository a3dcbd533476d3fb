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

import pytest
from click.testing import CliRunner

from cnicore import registry
from cnicore.cli import main as cli_main
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
