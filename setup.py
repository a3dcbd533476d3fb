"""Build step: ship the example plugin project inside the cnicore package.

Everything else is declared in pyproject.toml. The example project has one
copy, ``cni_plugin_template/`` at the root of the source tree (a project of
its own: ``pip install ./cni_plugin_template`` and its tests run as they
are). Building cnicore copies it into the package as ``cnicore/_template/``,
where ``cnitool new-plugin`` finds it in an installed cnicore; which files are
copied is decided by ``cnicore.cli.scaffold.template_files``, loaded from source
here because cnicore is not importable while it is being built. Editable
installs skip the copy: ``cnicore.cli.scaffold`` then reads the root directly.
"""

from __future__ import annotations

import importlib.util
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATE = os.path.join(HERE, "cni_plugin_template")


def _scaffold():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("_cnicore_scaffold_for_build",
                                                  os.path.join(HERE, "src", "cnicore", "cli", "scaffold.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class build_py_with_template(build_py):
    """``build_py``, then the example project into ``<build_lib>/cnicore/_template``."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        scaffold = _scaffold()
        if not os.path.isfile(os.path.join(TEMPLATE, "pyproject.toml")):
            raise RuntimeError(f"{TEMPLATE} is missing: cnicore cannot be built without its example plugin project")
        target = os.path.join(self.build_lib, "cnicore", scaffold.PACKAGED_DIR)
        shutil.rmtree(target, ignore_errors=True)
        for relative in scaffold.template_files(TEMPLATE):
            out = os.path.join(target, *relative.split("/"))
            self.mkpath(os.path.dirname(out))
            self.copy_file(os.path.join(TEMPLATE, *relative.split("/")), out)


setup(cmdclass={"build_py": build_py_with_template})
