"""Run functions for the meta plugins' side-by-side tests: ``run(command, conf, netns="",
cid=...)`` for our plugin (in-process or through its launcher) and for the reference's
binary, so one test body drives both and compares what they leave."""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import pytest

from cnicore.testing import Outcome, run_executable

Run = Callable[..., Outcome]


def need(path: str) -> None:
    """Skip the test unless the executable at ``path`` (a reference plugin) is installed."""
    if not os.access(path, os.X_OK):
        pytest.skip(f"{path} not installed")


def one_launcher(directory: Path, cni_install: Callable[..., Any], plugin_type: str) -> str:
    """Our launcher for the built-in ``plugin_type`` alone, installed in ``directory`` with this
    run's launcher kind (cold, or warm with CNICORE_TEST_LAUNCHERS=native); its path."""
    from cnicore import registry

    cni_install(str(directory), entries=[registry.get(plugin_type)])
    return str(directory / plugin_type)


def exec_run(executable: str, host: Any, cid: str) -> Run:
    """``executable`` exec'd from ``host`` (a NetNS) as a runtime would, container ID ``cid`` unless given."""
    return lambda command, conf, netns="", cid=cid: run_executable(executable, command, conf, host=host,
                                                                   netns=netns, container_id=cid)


def our_run(cni_runner: Callable[..., Any], module: ModuleType, plugin_type: str, launcher: str, via: str,
            host: Any, cid: str) -> Run:
    """Our plugin ``module``: through ``launcher`` with ``via="launcher"``, else in-process."""
    if via == "launcher":
        return exec_run(launcher, host, cid)
    return lambda command, conf, netns="", cid=cid: cni_runner(module, plugin_type).run(
        command, conf, netns=netns, container_id=cid)
