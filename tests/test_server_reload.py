"""The warm server while a plugin is being developed: an edited source file is served at once.

A small plugin project is installed editable (``pip install -e``) into this
environment, served by a server of this test's own (in its own throwaway
namespace) through a native launcher; its ``plugin.py`` is then edited in
place, as an author does. The very next exec must answer with the new code,
the server's log must name the file, and after the restart the new code is
served warm. What it costs a request is in ``cnicore.server._codewatch``'s
docstring.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cnicore.cli.install import install
from cnicore.registry import PluginEntry
from cnicore.server._codewatch import CodeWatch
from cnicore.testing import WarmServer, run_executable

pytestmark = pytest.mark.privileged

PYTHON = sys.executable
DIST, TYPE, PACKAGE = "cnitest-devloop-plugin", "cnitest-devloop", "cnitest_devloop_plugin"

PROJECT = f'''
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "{DIST}"
version = "0.1"

[project.entry-points."cnicore.plugins"]
{TYPE} = "{PACKAGE}.plugin"

[tool.setuptools.packages.find]
where = ["src"]
'''
PLUGIN = '''
from cnicore.plugin import PluginInfo, hookimpl
from {package} import helper

WARM_REUSE = True
OWN = {versions!r}


@hookimpl
def cni_plugin_info():
    return PluginInfo(sorted(set(OWN) | set(helper.VERSIONS)))
'''
HELPER = '''
VERSIONS = {versions!r}
'''


@pytest.fixture
def editable_plugin(tmp_path: Path):
    """A plugin project in src layout, installed editable; uninstalled afterwards."""
    project = tmp_path / "project"
    source = project / "src" / PACKAGE
    source.mkdir(parents=True)
    (project / "pyproject.toml").write_text(PROJECT)
    (source / "__init__.py").write_text("")
    (source / "plugin.py").write_text(PLUGIN.format(package=PACKAGE, versions=["0.4.0", "1.0.0"]))
    (source / "helper.py").write_text(HELPER.format(versions=[]))
    try:
        subprocess.run([PYTHON, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                        "--disable-pip-version-check", "-e", str(project)], check=True, timeout=300,
                       capture_output=True)
        sys.path.insert(0, str(source.parent))  # what the install's .pth gives every new process
        importlib.invalidate_caches()
        yield source
    finally:
        if str(source.parent) in sys.path:
            sys.path.remove(str(source.parent))
        subprocess.run([PYTHON, "-m", "pip", "uninstall", "-q", "-y", DIST], capture_output=True, timeout=120)


def wait_for(server: WarmServer, predicate, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate(server.log()):
        assert time.monotonic() < deadline, f"{what} not within {timeout} s; log:\n{server.log()}"
        assert server.proc.poll() is None, f"the server exited; log:\n{server.log()}"
        time.sleep(0.05)


def test_edited_plugin_file_is_served_on_the_next_request_and_reloaded(editable_plugin: Path, cni_sandbox,
                                                                        tmp_path: Path) -> None:
    server = WarmServer(str(tmp_path / "server"), workers=1)
    try:
        entry = PluginEntry(TYPE, f"{PACKAGE}.plugin", DIST, "0.1")
        assert not install(str(tmp_path / "bin"), [entry], kind="native", socket=server.socket).skipped
        launcher = str(tmp_path / "bin" / TYPE)

        def version() -> dict:
            answer = run_executable(launcher, "VERSION", b"", host=cni_sandbox.host)
            assert answer.code == 0, answer
            return json.loads(answer.stdout)

        wait_for(server, lambda log: "serving on" in log, "the server's start")
        assert "source files of the served plugins for changes (inotify" in server.log(), server.log()
        assert version()["supportedVersions"] == ["0.4.0", "1.0.0"]
        assert version()["supportedVersions"] == ["0.4.0", "1.0.0"]  # warm, the same worker

        plugin_py = editable_plugin / "plugin.py"
        with open(plugin_py, "r+") as fh:  # in place: same inode, as most editors and `sed -i` do not
            fh.write(PLUGIN.format(package=PACKAGE, versions=["0.4.0", "1.0.0", "1.1.0"]))
            fh.truncate()
        assert version()["supportedVersions"] == ["0.4.0", "1.0.0", "1.1.0"]  # the very next request

        wait_for(server, lambda log: log.count("serving on") >= 2, "a restart")
        assert f"restarting: {plugin_py} changed" in server.log()
        assert version()["supportedVersions"] == ["0.4.0", "1.0.0", "1.1.0"]  # warm again, new code

        # A module the plugin imports, replaced by a rename as other editors save it: the same.
        helper = editable_plugin / "helper.py"
        (editable_plugin / ".helper.py.new").write_text(HELPER.format(versions=["0.3.1"]))
        os.rename(editable_plugin / ".helper.py.new", helper)
        assert version()["supportedVersions"] == ["0.3.1", "0.4.0", "1.0.0", "1.1.0"]
        wait_for(server, lambda log: log.count("serving on") >= 3, "a second restart")
        assert f"restarting: {helper} changed" in server.log()
        assert version()["supportedVersions"] == ["0.3.1", "0.4.0", "1.0.0", "1.1.0"]

        # An editor's swap file next to the sources is not a change of the served code.
        restarts = server.log().count("serving on")
        (editable_plugin / ".plugin.py.swp").write_text("swap")
        assert version()["supportedVersions"] == ["0.3.1", "0.4.0", "1.0.0", "1.1.0"]
        time.sleep(1.0)  # longer than the settle time: a restart would have begun
        assert server.log().count("serving on") == restarts
        server.stop()
        # Refused (so run cold, with the new code): at most the first request after each edit.
        assert len(server.refused()) <= 2, server.refused()
        assert server.served() == 2, server.log()  # the last image served both requests after its start
    finally:
        server.stop()


def test_a_plugin_only_on_its_launchers_path_is_reloaded_too(cni_sandbox, tmp_path: Path) -> None:
    """A plugin the server does not import itself (not installed in its environment, found on the
    launcher's ``sys.path``): a worker imports it, stamps it at its next request, and an edit after
    that is served at once as well."""
    root = tmp_path / "pluginpath"
    package = root / "cnitest_pathonly_plugin"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "helper.py").write_text(HELPER.format(versions=[]))
    (package / "plugin.py").write_text(PLUGIN.format(package=package.name, versions=["1.0.0"]))
    sys.path.insert(0, str(root))
    server = WarmServer(str(tmp_path / "server"), workers=1)
    try:
        entry = PluginEntry("cnitest-pathonly", f"{package.name}.plugin", "", "")
        assert not install(str(tmp_path / "bin"), [entry], kind="native", socket=server.socket).skipped

        def versions() -> list[str]:
            answer = run_executable(str(tmp_path / "bin" / "cnitest-pathonly"), "VERSION", b"",
                                    host=cni_sandbox.host)
            assert answer.code == 0, answer
            return list(json.loads(answer.stdout)["supportedVersions"])

        assert versions() == ["1.0.0"]  # imported by the worker
        assert versions() == ["1.0.0"]  # the same worker: it stamps what it imported
        (package / "plugin.py").write_text(PLUGIN.format(package=package.name, versions=["1.0.0", "1.1.0"]))
        assert versions() == ["1.0.0", "1.1.0"]
        wait_for(server, lambda log: "restarting:" in log, "a restart")
        assert versions() == ["1.0.0", "1.1.0"]
        server.stop()
        assert server.served() >= 1
    finally:
        server.stop()
        sys.path.remove(str(root))


def test_the_check_is_a_poll_until_something_changes(tmp_path: Path) -> None:
    """Nothing pending: the worker's check reads no file (the cost stays constant with the
    number of modules); an edit is seen by the next check, before the parent read the event."""
    package = tmp_path / "cnitest_watch_pkg"
    package.mkdir()
    files = []
    for n in range(200):
        path = package / f"m{n}.py"
        path.write_text(f"X = {n}\n")
        files.append(str(path))
    watch = CodeWatch([], [], files)
    try:
        assert watch.fileno() >= 0 and watch.watched_dirs == 1
        assert watch.changed() == ""
        stats = []
        real_stat = os.stat

        def counting_stat(path, *args, **kw):
            stats.append(path)
            return real_stat(path, *args, **kw)

        os.stat = counting_stat  # type: ignore[assignment]
        try:
            assert watch.changed() == ""
            checked = list(stats)
            (package / "m7.py").write_text("X = 'edited'\n")
            found = watch.changed()
        finally:
            os.stat = real_stat  # type: ignore[assignment]
        assert not [p for p in checked if str(p).startswith(str(package))], checked
        assert found == f"{package / 'm7.py'} changed"
        assert watch.read_events() == found and watch.looking[0] == 1  # the parent keeps the gate open
        (package / "m7.py").write_text("X = 7\n")  # a new mtime: still a change against the import
        assert watch.changed() == found
    finally:
        if watch.fileno() >= 0:
            os.close(watch.fileno())


def test_an_unrelated_event_closes_the_gate_again(tmp_path: Path) -> None:
    package = tmp_path / "cnitest_watch_pkg2"
    package.mkdir()
    (package / "a.py").write_text("A = 1\n")
    watch = CodeWatch([], [], [str(package / "a.py")])
    try:
        (package / ".a.py.swp").write_text("swap")
        assert watch._poll.poll(0)  # an event is pending
        assert watch.changed() == ""  # compared: nothing served changed
        assert watch.read_events() == "" and watch.looking[0] == 0
        assert not watch._poll.poll(0)
    finally:
        os.close(watch.fileno())
