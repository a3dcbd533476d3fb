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
