"""What the server imports before it forks: everything a request would import.

The exec path imports lazily (inside functions) so that a cold launcher pays
only for what its verb uses. A worker is a fork that lives for one request:
whatever its request imports lazily, it imports from disk every time. So the
parent follows those lazy imports ahead of time: for every module already
loaded from cnicore or a plugin's own package, it reads the module's source
and imports each module named by an ``import`` statement inside a function,
when that module is cnicore's (tooling excepted), the plugin package's own,
or the standard library's. Third-party libraries a plugin imports only inside
its hooks are left alone (they can be large; see ``WARM_IMPORTS``).
"""

from __future__ import annotations

import ast
import importlib
import sys
from importlib.util import resolve_name

#: cnicore's tooling: never on a request's path, and it pulls in click or pytest.
TOOLING = ("cnicore.cli", "cnicore.testing", "cnicore.registry", "cnicore.server._daemon")


def lazy_imports(source: str, package: str) -> set[str]:
    """Absolute names of the modules imported inside functions in ``source``."""
    names: set[str] = set()
    for func in ast.walk(ast.parse(source)):
        if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(func):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = resolve_name("." * node.level + (node.module or ""), package)
                names.add(base)
                names.update(f"{base}.{alias.name}" for alias in node.names)  # submodules, if any
    return names


def _wanted(name: str, owners: tuple[str, ...]) -> bool:
    top = name.split(".")[0]
    if name.startswith(TOOLING):
        return False
    return top in sys.stdlib_module_names or name.startswith(owners)


def follow_lazy_imports(owners: tuple[str, ...]) -> int:
    """Import, transitively, the lazy imports of the loaded modules under ``owners``
    (package prefixes such as ``"cnicore"``); returns how many modules were added."""
    done: set[str] = set()
    added = 0
    while True:
        todo = [name for name, module in list(sys.modules.items())
                if name.startswith(owners) and name not in done and getattr(module, "__file__", None)]
        if not todo:
            return added
        for name in todo:
            done.add(name)
            module = sys.modules[name]
            try:
                with open(module.__file__ or "", encoding="utf-8") as fh:
                    source = fh.read()
            except (OSError, UnicodeDecodeError):
                continue
            package = name if hasattr(module, "__path__") else name.rpartition(".")[0]
            for wanted in sorted(lazy_imports(source, package)):
                if wanted in sys.modules or not _wanted(wanted, owners):
                    continue
                try:
                    importlib.import_module(wanted)
                    added += 1
                except Exception:  # noqa: BLE001 - a name that is an attribute, not a module
                    pass
