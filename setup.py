"""Build step: ship the example plugin projects inside the cnicore package.

Everything else is declared in pyproject.toml. Each example project (one per
``cnitool new-plugin --kind``: ``cni_plugin_template/`` chained,
``cni_plugin_template_main/``, ``cni_plugin_template_ipam/``) has one copy, at
the root of the source tree (a project of its own: ``pip install
./cni_plugin_template`` and its tests run as they are). Building cnicore
copies each into the package (``cnicore/_template/``, ``_template_main/``,
``_template_ipam/``), where ``cnitool new-plugin`` finds it in an installed
cnicore; which directories and files are copied is decided by
``cnicore.cli.scaffold`` (``KINDS``, ``template_files``), loaded from source
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


def _scaffold():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("_cnicore_scaffold_for_build",
                                                  os.path.join(HERE, "src", "cnicore", "cli", "scaffold.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class build_py_with_template(build_py):
    """``build_py``, then each example project into ``<build_lib>/cnicore/<its packaged dir>``."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        scaffold = _scaffold()
        for template in scaffold.KINDS.values():
            source = os.path.join(HERE, template.source_dir)
            if not os.path.isfile(os.path.join(source, "pyproject.toml")):
                raise RuntimeError(f"{source} is missing: cnicore cannot be built without its example "
                                   f"{template.kind} plugin project")
            target = os.path.join(self.build_lib, "cnicore", template.packaged_dir)
            shutil.rmtree(target, ignore_errors=True)
            for relative in scaffold.template_files(source):
                out = os.path.join(target, *relative.split("/"))
                self.mkpath(os.path.dirname(out))
                self.copy_file(os.path.join(source, *relative.split("/")), out)


setup(cmdclass={"build_py": build_py_with_template})
