"""Hook documentation that cannot drift from :mod:`cnicore.hookspecs`.

Every hook must be listed with its exact signature in the docs (docs/HOOKS.md
or README.md), marked firstresult there exactly when it is, and its docstring
must follow pytest's hookspec format: ``:param name:`` for each argument and
nothing else, a ``:returns:`` line, when it is called, and whether it stops at
the first result.
"""

from __future__ import annotations

import re
from pathlib import Path

import pluggy
import pytest

from cnicore import hookspecs
from cnicore.plugin import PROJECT

ROOT = Path(__file__).resolve().parent.parent
HOOKS_DOC = ROOT / "docs" / "HOOKS.md"


def specs() -> dict[str, pluggy.HookCaller]:
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    return {name: caller for name, caller in vars(pm.hook).items() if not name.startswith("_")}


SPECS = specs()


def signature(name: str) -> str:
    spec = SPECS[name].spec
    assert spec is not None
    return f"{name}({', '.join(spec.argnames)})"


def firstresult(name: str) -> bool:
    spec = SPECS[name].spec
    assert spec is not None
    return bool(spec.opts.get("firstresult"))


def docs_text() -> str:
    return "\n".join(path.read_text() for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])


def hook_sections() -> dict[str, str]:
    """docs/HOOKS.md's sections: heading signature -> body."""
    sections: dict[str, str] = {}
    for chunk in re.split(r"^## ", HOOKS_DOC.read_text(), flags=re.M)[1:]:
        heading, _, body = chunk.partition("\n")
        sections[heading.strip().strip("`")] = body
    return sections


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_hook_is_documented_with_its_signature(name: str) -> None:
    assert f"`{signature(name)}`" in docs_text(), f"document `{signature(name)}` in docs/HOOKS.md"
    body = hook_sections().get(signature(name))
    assert body is not None, f"docs/HOOKS.md needs a section '## `{signature(name)}`'"
    assert ("**firstresult**" in body) == firstresult(name), name


def test_the_hooks_page_lists_no_other_hook() -> None:
    """A renamed or removed hook, or a changed signature, leaves no stale section."""
    assert set(hook_sections()) == {signature(name) for name in SPECS}
    for match in re.finditer(r"`(cni_[a-z_]+)\(([^)`]*)\)`", docs_text()):
        name = match.group(1)
        assert name in SPECS, f"the docs mention a hook that does not exist: {match.group(0)}"
        assert match.group(0) == f"`{signature(name)}`", f"stale signature in the docs: {match.group(0)}"


def test_the_readme_points_to_the_hooks_page() -> None:
    assert "docs/HOOKS.md" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("name", sorted(SPECS))
def test_docstring_in_pytest_hookspec_format(name: str) -> None:
    doc = getattr(hookspecs, name).__doc__
    assert doc, name
    spec = SPECS[name].spec
    assert spec is not None
    params = re.findall(r"^\s*:param (\w+):", doc, flags=re.M)
    assert params == list(spec.argnames), f"{name}: :param: lines {params} != arguments {spec.argnames}"
    assert len(re.findall(r"^\s*:returns: \S", doc, flags=re.M)) == 1, f"{name}: one ':returns:' line"
    assert re.search(r"^\s*Called ", doc, flags=re.M), f"{name}: say when it is called ('Called ...')"
    stops = "Stops at the first non-``None`` result (``firstresult``)." in doc
    every = "Every implementation is called" in doc
    assert (stops, every) == (firstresult(name), not firstresult(name)), name


def test_module_docstring_describes_the_host_not_a_launcher_pluginmanager() -> None:
    doc = " ".join((hookspecs.__doc__ or "").split())
    assert "launcher builds a pluggy" not in doc  # the stale claim: the host decides, not the launcher
    assert "cnicore.host.PluginHost" in doc and "PluginValidationError" in doc
    assert "docs/HOOKS.md" in doc
