"""The public API is what README's table says, and the built-ins use nothing else.

README.md's "The public API" table lists the public modules; each declares
``__all__``. The built-in plugins are written as a third party must write a
plugin: every cnicore name they import (at the top, inside functions, or for
type checking) is a public module or a name in a public module's ``__all__``.
Whatever they need and the toolkit lacks goes into the toolkit, never into a
private import here.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILTINS = ROOT / "src" / "cni_plugins_builtin"


def public_modules() -> set[str]:
    """The modules README's public API table lists (first column)."""
    text = (ROOT / "README.md").read_text()
    table = text[text.index("## The public API"):].split("\n## ", 1)[0]
    found = set()
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 2:
            found.update(re.findall(r"`(cnicore(?:\.[a-z_]+)*)`", cells[0]))
    return found | {"cnicore"}  # the package root: __version__


PUBLIC = public_modules()


def exported(module: str) -> set[str]:
    return set(getattr(importlib.import_module(module), "__all__", ()))


def private_names(source: str, module_package: str) -> list[str]:
    """Every cnicore name ``source`` imports that is not public, as ``module.name``."""
    bad = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "cnicore" and alias.name not in PUBLIC:
                    bad.append(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), module_package)
            if base.split(".")[0] != "cnicore":
                continue
            if base not in PUBLIC:
                bad.append(base)
                continue
            for alias in node.names:
                name = alias.name
                if f"{base}.{name}" in PUBLIC:
                    continue  # a public submodule
                if name.startswith("_") and not (name.startswith("__") and name.endswith("__")):
                    bad.append(f"{base}.{name}")
                elif name not in exported(base):
                    bad.append(f"{base}.{name}")
    return bad


def builtin_modules() -> list[Path]:
    return sorted(BUILTINS.rglob("*.py"))


def test_readme_lists_the_toolkit() -> None:
    for module in ("cnicore.ipam", "cnicore.ip", "cnicore.netlink", "cnicore.config", "cnicore.rollback",
                   "cnicore.sysctl", "cnicore.utils", "cnicore.firewall.masquerade"):
        assert module in PUBLIC, module


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_every_public_module_declares_what_it_offers(module: str) -> None:
    mod = importlib.import_module(module)
    names = getattr(mod, "__all__", None)
    assert names, f"{module} has no __all__"
    assert mod.__doc__, f"{module} has no docstring"
    missing = [name for name in names if not hasattr(mod, name)]
    assert not missing, f"{module}.__all__ names what it does not have: {missing}"


@pytest.mark.parametrize("path", builtin_modules(), ids=lambda p: str(p.relative_to(BUILTINS)))
def test_builtins_import_only_the_public_api(path: Path) -> None:
    parts = path.relative_to(BUILTINS.parent).with_suffix("").parts
    module = ".".join(p for p in parts if p != "__init__")
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    bad = private_names(path.read_text(), package)
    assert not bad, f"{module} imports private cnicore names: {bad}"


@pytest.mark.parametrize("source, bad", [
    ("from cnicore.rtnl import RtnlSocket", ["cnicore.rtnl"]),
    ("import cnicore._go.json", ["cnicore._go.json"]),
    ("from cnicore import _go", ["cnicore._go"]),
    ("from cnicore.ipam import _run_in_process", ["cnicore.ipam._run_in_process"]),
    ("from cnicore.ipam import cni_ipam", ["cnicore.ipam.cni_ipam"]),
    ("from cnicore.ip import setup_veth, link_by_name", []),
    ("from cnicore import sysctl, __version__", []),
    ("from cnicore.firewall import masquerade", []),
    ("from cnicore.firewall import command", ["cnicore.firewall.command"]),
    ("def f():\n    from cnicore.iface import configure_iface\n", ["cnicore.iface"]),
    ("if TYPE_CHECKING:\n    from cnicore.rtnl import Link\n", ["cnicore.rtnl"]),
])
def test_the_check_catches_private_imports(source: str, bad: list[str]) -> None:
    assert private_names(source, "cni_plugins_builtin.bridge") == bad


# -- the docs teach only the public API ----------------------------------------------------

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: Pages whose every ``cnicore.…`` mention, in prose too, must be public: what plugin authors read.
AUTHOR_PAGES = [ROOT / "docs" / name for name in ("WRITING_A_MAIN_PLUGIN.md", "WRITING_AN_IPAM_PLUGIN.md",
                                                  "HOOKS.md")]


def is_public(dotted: str) -> bool:
    """A public module, or a name in a public module's ``__all__`` (and attributes of it)."""
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        module = ".".join(parts[:n])
        if module in PUBLIC:
            return n == len(parts) or parts[n] in exported(module)
    return False


def code_blocks(doc: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.S)


def private_uses(source: str) -> list[str]:
    """Private imports, and ``module.name`` uses of an imported public module outside its ``__all__``."""
    bad = private_names(source, "docs_example")
    modules: dict[str, str] = {}
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "cnicore":
            for alias in node.names:
                if f"{node.module}.{alias.name}" in PUBLIC:
                    modules[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname and alias.name in PUBLIC:
                    modules[alias.asname] = alias.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
            if not is_public(f"{modules[node.value.id]}.{node.attr}"):
                bad.append(f"{modules[node.value.id]}.{node.attr}")
    return bad


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_docs_code_uses_only_public_names(doc: Path) -> None:
    bad = [name for block in code_blocks(doc) for name in private_uses(block)]
    assert not bad, f"{doc.name} teaches private names: {bad}"


@pytest.mark.parametrize("doc", AUTHOR_PAGES, ids=lambda p: p.name)
def test_author_pages_name_only_public_api(doc: Path) -> None:
    named = {name.rstrip(".") for name in re.findall(r"\bcnicore(?:\.[A-Za-z_][A-Za-z0-9_]*)+", doc.read_text())}
    assert named, doc.name
    bad = sorted(name for name in named if not is_public(name) and name != "cnicore.plugins")
    assert not bad, f"{doc.name} names private cnicore names: {bad}"


def test_the_doc_checks_catch_private_uses() -> None:
    assert private_uses("from cnicore import ip\nip.setup_veth\nip._fail\n") == ["cnicore.ip._fail"]
    assert private_uses("from cnicore import ipam\nipam.cni_ipam\n") == ["cnicore.ipam.cni_ipam"]
    assert private_uses("import cnicore.ip as nip\nnip.add_route\n") == []
    assert private_uses("from cnicore.iface import configure_iface\n") == ["cnicore.iface"]
    assert not is_public("cnicore.rtnl.RtnlSocket") and is_public("cnicore.netlink.Netlink.add_veth")
