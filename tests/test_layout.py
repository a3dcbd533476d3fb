"""The tree shows the architecture, and the README's tour says which: checked here.

README.md's "A short tour" table lists every module of cnicore by layer,
bottom up. These tests read that table and hold the code to it: every
top-level module is listed, every import (at the top or inside a function;
``TYPE_CHECKING`` imports are for type checkers only and do not count) goes to
the importer's own layer or one listed before it, and every ``cnicore.…``
module path the docs name exists.
"""

from __future__ import annotations

import ast
import importlib
import re
from importlib.util import resolve_name
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
#: The one import that crosses layers the other way: IPAM delegation execs a plugin
#: through the runtime side's invoke, as Go's ipam.ExecAdd does (README says so too).
CROSSINGS = {("cnicore.ipam", "cnicore.invoke")}
#: Names in the docs that look like module paths but are not: the entry-point group,
#: the systemd units and the socket file.
NOT_MODULES = {"cnicore.plugins", "cnicore.service", "cnicore.socket", "cnicore.sock"}


def tour() -> dict[str, int]:
    """module (or package) -> its layer's position in the tour, bottom first."""
    text = (ROOT / "README.md").read_text()
    table = text[text.index("## A short tour"):].split("\n\n## ", 1)[0]
    layers: dict[str, int] = {}
    position = -1
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or cells[0] in ("layer", "---"):
            continue
        if cells[0]:
            position += 1
        for name in re.findall(r"`([a-z_.]+)`", cells[1]):
            layers[name] = position
    return layers


LAYERS = tour()


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in LAYERS:
            return LAYERS[".".join(parts[:n])]
    return 0 if module == "cnicore" else None  # the package root: __version__


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(SRC.glob("cni*/**/*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        if "_template" in parts:
            continue
        found[".".join(p for p in parts if p != "__init__")] = path
    return found


def imports(module: str, path: Path) -> set[str]:
    """Every cnicore or built-in module ``module`` imports, outside TYPE_CHECKING blocks."""
    tree = ast.parse(path.read_text())
    skip = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
            and getattr(block.test, "id", "") == "TYPE_CHECKING" for node in ast.walk(block)}
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = resolve_name("." * node.level + (node.module or ""), package)
            found.add(base)
            for alias in node.names:  # `from pkg import submodule`
                sub = SRC / base.replace(".", "/") / alias.name
                if sub.with_suffix(".py").exists() or (sub / "__init__.py").exists():
                    found.add(f"{base}.{alias.name}")
    return {name for name in found if name.split(".")[0] in ("cnicore", "cni_plugins_builtin")}


def test_the_tour_lists_every_module() -> None:
    top = {f"cnicore.{path.stem if path.suffix else path.name}" for path in (SRC / "cnicore").iterdir()
           if (path.suffix == ".py" and path.stem != "__init__") or (path / "__init__.py").exists()}
    assert top - set(LAYERS) == set(), "add these to README's tour"
    assert set(LAYERS) - top - {"cni_plugins_builtin"} == set(), "README's tour lists modules that do not exist"
    assert "cni_plugins_builtin" in LAYERS


@pytest.mark.parametrize("module", sorted(modules()))
def test_imports_follow_the_layers(module: str) -> None:
    own = layer_of(module)
    assert own is not None, f"{module} is in no layer of README's tour"
    wrong = sorted(name for name in imports(module, modules()[module])
                   if (layer_of(name) or 0) > own and (module, name) not in CROSSINGS)
    assert not wrong, f"{module} (layer {own}) imports from later layers: {wrong}"


def test_the_library_never_imports_tooling() -> None:
    tooling = LAYERS["cnicore.cli"]
    for module, path in modules().items():
        if (layer_of(module) or 0) < tooling:
            assert not {name for name in imports(module, path) if name.startswith("cnicore.cli")}, module


def _resolves(name: str) -> bool:
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:n]))
        except ImportError:
            continue
        for attr in parts[n:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def test_the_docs_name_only_modules_that_exist() -> None:
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench" / "README.md",
            ROOT / "contrib" / "systemd" / "README.md"]
    named = {name.rstrip(".") for doc in docs for name in re.findall(r"\bcnicore(?:\.[A-Za-z_][A-Za-z0-9_]*)+",
                                                                       doc.read_text())}
    stale = sorted(name for name in named - NOT_MODULES if not _resolves(name))
    assert not stale, f"the docs name what does not exist: {stale}"


def test_the_allowed_crossings_still_exist() -> None:
    """An exception nobody needs any more is removed from here and from README."""
    for module, name in CROSSINGS:
        assert name in imports(module, modules()[module]), (module, name)
        assert f"`{module}`" in (ROOT / "README.md").read_text() and f"`{name}`" in (ROOT / "README.md").read_text()
