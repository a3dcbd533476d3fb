"""Launchers: the executables ``cnitool plugins install`` writes into a CNI bin dir.

Checked as a runtime sees them: the file on disk (#! line, mode, manifest),
what exec'ing it answers and imports, how re-installing treats our own files
and everybody else's, and loopback served through its launcher for every spec
version inside throwaway network namespaces (cnicore.testing fixtures).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cnicore import rtnl
from cnicore.cli.install import LOCK, MANIFEST, LauncherError, install, read_manifest, render
from cnicore.launchers import interpreter, read_header
from cnicore.registry import PluginEntry, get
from cnicore.testing import run_executable
from cnicore.version import ALL, greater_or_equal

PYTHON = sys.executable
CNITOOL = os.path.join(os.path.dirname(sys.executable), "cnitool")
GO_LOOPBACK = "/usr/lib/cni/loopback"
GO_BRIDGE = "/usr/lib/cni/bridge"
VERSION_ANSWER = ('{"cniVersion":"1.1.0","supportedVersions":'
                  '["0.1.0","0.2.0","0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}\n').encode()

needs_go_plugins = pytest.mark.skipif(not (os.path.exists(GO_LOOPBACK) and os.path.exists(GO_BRIDGE)),
                                      reason="Go reference plugins not installed in /usr/lib/cni")


def sha256(path: Path | str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def loopback_entry() -> PluginEntry:
    return get("loopback")


def script_interpreter(path: str) -> str:
    """The interpreter of a #! script (e.g. the cnitool console script)."""
    with open(path) as fh:
        first = fh.readline()
    assert first.startswith("#!")
    return first[2:].split()[0]


def version_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CNI_", "PYTHON"))}
    env.update(CNI_COMMAND="VERSION", **extra)
    return env


def dir_listing(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


# -- what cnitool writes ---------------------------------------------------------------

def test_cnitool_install_writes_an_isolated_python_launcher(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    proc = subprocess.run([CNITOOL, "plugins", "install", str(bindir), "--python"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "added:" in proc.stdout and "loopback" in proc.stdout

    launcher = bindir / "loopback"
    assert launcher.is_file()
    assert os.stat(launcher).st_mode & 0o777 == 0o755
    first = launcher.read_text().splitlines()[0]
    # The installing environment's own interpreter (the one cnitool runs with),
    # in isolated, no-site mode; never a shell.
    assert first.startswith("#!") and first.endswith(" -IS")
    interpreter = first[2:-4]
    assert os.path.realpath(interpreter) == os.path.realpath(script_interpreter(CNITOOL))
    assert os.path.realpath(interpreter) == os.path.realpath(PYTHON)
    assert os.path.dirname(interpreter) == os.path.join(sys.prefix, "bin")
    assert "sh" not in os.path.basename(interpreter)

    header = read_header(str(launcher))
    assert header is not None
    assert (header.type, header.module, header.attr) == ("loopback", "cni_plugins_builtin.loopback", "")
    assert (header.python, header.distribution, header.version) == (interpreter, "cnicore", "0.1.0")

    manifest = json.loads((bindir / MANIFEST).read_text())
    assert manifest["version"] == 1
    assert manifest["launchers"]["loopback"] == {"sha256": sha256(launcher), "python": interpreter, "kind": "python"}
    assert sorted(manifest["launchers"]) == sorted(p.name for p in bindir.iterdir() if not p.name.startswith("."))

    again = subprocess.run([CNITOOL, "plugins", "install", str(bindir), "--python", "--json"], capture_output=True,
                           text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    second = json.loads(again.stdout)
    assert "loopback" in second["unchanged"]
    assert second["added"] == second["updated"] == second["removed"] == [] and second["skipped"] == {}


def test_launcher_answers_version_exactly(tmp_path: Path) -> None:
    install(str(tmp_path), entries=[loopback_entry()])
    proc = subprocess.run([str(tmp_path / "loopback")], env=version_env(), capture_output=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == VERSION_ANSWER
    assert proc.stderr == b""
    # VERSION never reads stdin: a runtime may leave it open.
    with subprocess.Popen([str(tmp_path / "loopback")], env=version_env(), stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as open_stdin:
        try:
            assert open_stdin.wait(timeout=30) == 0
        finally:
            open_stdin.kill()
        assert open_stdin.stdout is not None
        assert open_stdin.stdout.read() == VERSION_ANSWER
    # Without CNI_COMMAND it prints its about text, as the reference does.
    env = version_env()
    del env["CNI_COMMAND"]
    about = subprocess.run([str(tmp_path / "loopback")], env=env, capture_output=True, timeout=60)
    assert about.returncode == 0
    assert about.stdout == b""
    assert b"CNI loopback plugin (cnicore)" in about.stderr
    assert ", ".join(ALL).encode() in about.stderr


# -- install: idempotence, ownership, atomicity ---------------------------------------

@pytest.fixture
def foreign_bridge(tmp_path: Path) -> Path:
    """A CNI bin dir that already holds somebody else's binary (a Go plugin)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    source = GO_BRIDGE if os.path.exists(GO_BRIDGE) else sys.executable
    shutil.copy2(source, bindir / "bridge")
    return bindir


def test_install_is_idempotent_and_tracks_changes(foreign_bridge: Path) -> None:
    bindir = foreign_bridge
    bridge_hash = sha256(bindir / "bridge")
    bridge_stat = os.stat(bindir / "bridge")
    entry = loopback_entry()

    report = install(str(bindir), entries=[entry])
    assert report.as_dict() == {"added": ["loopback"], "updated": [], "unchanged": [], "removed": [],
                                "skipped": {}}
    launcher = bindir / "loopback"
    first_hash = sha256(launcher)
    assert launcher.read_bytes() == render(entry).encode()

    report = install(str(bindir), entries=[entry])
    assert report.unchanged == ["loopback"]
    assert report.added == report.updated == report.removed == [] and report.skipped == {}
    assert sha256(launcher) == first_hash

    # A changed plugin (here: a policy baked in) is rewritten, by replacing the file.
    inode = os.stat(launcher).st_ino
    report = install(str(bindir), entries=[entry], policies=["cnicore.sysctl"])
    assert report.updated == ["loopback"] and report.unchanged == []
    assert sha256(launcher) != first_hash
    assert os.stat(launcher).st_ino != inode
    assert os.stat(launcher).st_mode & 0o777 == 0o755
    assert '"policies": ["cnicore.sysctl"]' in launcher.read_text()
    header = read_header(str(launcher))
    assert header is not None and header.policies == ("cnicore.sysctl",)

    # Another entry-point value for the same type is a change too.
    moved = PluginEntry("loopback", "cni_plugins_builtin.loopback", "cnicore", "0.2.0")
    assert install(str(bindir), entries=[moved]).updated == ["loopback"]
    assert read_header(str(launcher)).version == "0.2.0"  # type: ignore[union-attr]

    manifest = json.loads((bindir / MANIFEST).read_text())
    assert manifest["launchers"] == {"loopback": {"sha256": sha256(launcher), "python": interpreter(), "kind": "python"}}
    assert read_manifest(str(bindir)) == manifest["launchers"]

    # The plugin is gone: its launcher goes too.
    report = install(str(bindir), entries=[])
    assert report.removed == ["loopback"]
    assert not launcher.exists()
    assert json.loads((bindir / MANIFEST).read_text()) == {"version": 1, "launchers": {}}
    assert install(str(bindir), entries=[]).as_dict() == {
        "added": [], "updated": [], "unchanged": [], "removed": [], "skipped": {}}

    # The foreign binary survived every run untouched, and no temp file is left over.
    assert sha256(bindir / "bridge") == bridge_hash
    assert os.stat(bindir / "bridge").st_ino == bridge_stat.st_ino
    assert os.stat(bindir / "bridge").st_mtime_ns == bridge_stat.st_mtime_ns
    assert [n for n in dir_listing(bindir) if n.endswith(".tmp")] == []
    assert dir_listing(bindir) == sorted(["bridge", MANIFEST, LOCK])


@needs_go_plugins
def test_foreign_file_with_the_plugin_name_is_never_touched(foreign_bridge: Path) -> None:
    bindir = foreign_bridge
    shutil.copy2(GO_LOOPBACK, bindir / "loopback")
    go_hash = sha256(bindir / "loopback")

    for entries in ([loopback_entry()], [loopback_entry()], []):
        report = install(str(bindir), entries=entries)
        assert report.added == report.updated == report.unchanged == report.removed == []
        if entries:
            assert list(report.skipped) == ["loopback"]
            assert "not written by cnitool" in report.skipped["loopback"]
        assert sha256(bindir / "loopback") == go_hash
        assert read_manifest(str(bindir)) == {}
    # It still is the Go plugin.
    proc = subprocess.run([str(bindir / "loopback")], env=version_env(), capture_output=True, timeout=60)
    assert b"supportedVersions" in proc.stdout and proc.stdout != VERSION_ANSWER


def test_file_changed_after_install_is_left_alone(tmp_path: Path) -> None:
    install(str(tmp_path), entries=[loopback_entry()])
    launcher = tmp_path / "loopback"
    launcher.write_text("#!/bin/sh\necho somebody else's now\n")
    mine = sha256(launcher)

    report = install(str(tmp_path), entries=[loopback_entry()])
    assert "loopback" in report.skipped and report.updated == []
    assert sha256(launcher) == mine

    report = install(str(tmp_path), entries=[])
    assert report.removed == []
    assert "changed since cnitool wrote it" in report.skipped["loopback"]
    assert sha256(launcher) == mine
    assert read_manifest(str(tmp_path)) == {}
    # No longer ours: later runs keep refusing to overwrite it.
    assert "not written by cnitool" in install(str(tmp_path), entries=[loopback_entry()]).skipped["loopback"]
    assert sha256(launcher) == mine


def test_another_interpreters_launchers_are_not_ours(tmp_path: Path) -> None:
    other_python = str(tmp_path / "other-env" / "bin" / "python")
    mine = PluginEntry("mine", "cni_plugins_builtin.loopback", "cnicore", "0.1.0")
    theirs = PluginEntry("theirs", "cni_plugins_builtin.loopback", "cnicore", "0.1.0")
    bindir = tmp_path / "bin"
    assert install(str(bindir), entries=[theirs, mine], python=other_python).added == ["mine", "theirs"]
    assert (bindir / "theirs").read_text().startswith(f"#!{other_python} -IS\n")
    their_hashes = {name: sha256(bindir / name) for name in ("mine", "theirs")}

    # This interpreter's install knows neither plugin: it removes nothing of theirs...
    report = install(str(bindir), entries=[])
    assert report.removed == [] and report.skipped == {}
    assert {name: sha256(bindir / name) for name in ("mine", "theirs")} == their_hashes
    # ... and does not take over a type the other environment wrote.
    report = install(str(bindir), entries=[mine])
    assert "another environment" in report.skipped["mine"]
    assert sha256(bindir / "mine") == their_hashes["mine"]
    assert read_manifest(str(bindir)) == {
        name: {"sha256": their_hashes[name], "python": other_python, "kind": "python"} for name in ("mine", "theirs")}

    # The other environment still manages its own launchers.
    assert install(str(bindir), entries=[], python=other_python).removed == ["mine", "theirs"]
    assert dir_listing(bindir) == sorted([MANIFEST, LOCK])


def test_manifest_survives_garbage_and_invalid_names(tmp_path: Path) -> None:
    (tmp_path / MANIFEST).write_text("{not json")
    bad = PluginEntry("../escape", "cni_plugins_builtin.loopback", "x", "1")
    hidden = PluginEntry(".hidden", "cni_plugins_builtin.loopback", "x", "1")
    report = install(str(tmp_path), entries=[loopback_entry(), bad, hidden])
    assert report.added == ["loopback"]
    assert set(report.skipped) == {"../escape", ".hidden"}
    assert not (tmp_path.parent / "escape").exists() and not (tmp_path / ".hidden").exists()
    data = json.loads((tmp_path / MANIFEST).read_text())
    assert list(data["launchers"]) == ["loopback"]


def test_launcher_errors(tmp_path: Path) -> None:
    with pytest.raises(LauncherError, match="too long"):
        render(loopback_entry(), python="/" + "p" * 300)
    # A plugin whose module is missing is refused and reported; the others are installed.
    report = install(str(tmp_path / "some"), entries=[PluginEntry("x", "cnitest_no_such_module.plugin", "x", "1"),
                                                      loopback_entry()])
    assert report.refused == ["x"] and "No module named 'cnitest_no_such_module'" in report.skipped["x"]
    assert report.added == ["loopback"] and not (tmp_path / "some" / "x").exists()
    with pytest.raises(LauncherError, match="cannot find module 'cnitest_no_such_policy'"):
        install(str(tmp_path), entries=[loopback_entry()], policies=["cnitest_no_such_policy"])
    assert not (tmp_path / "x").exists() and not (tmp_path / "loopback").exists()
    assert read_header(str(tmp_path)) is None
    assert read_header(GO_LOOPBACK) is None


# -- loopback through its launcher, in real namespaces -----------------------------------

def lo_state() -> tuple[bool, list[str], list[str]]:
    """``lo``'s up flag and addresses in the calling thread's namespace."""
    import socket

    with rtnl.RtnlSocket() as sock:
        link = sock.link("lo")
        return link.is_up, sock.addresses(link, socket.AF_INET), sock.addresses(link, socket.AF_INET6)


@pytest.fixture
def loopback_launcher(tmp_path: Path) -> str:
    install(str(tmp_path), entries=[loopback_entry()])
    return str(tmp_path / "loopback")


def expected_result(version: str, sandbox: str) -> dict[str, object]:
    if version in ("0.1.0", "0.2.0"):
        return {"cniVersion": version, "ip4": {"ip": "127.0.0.1/8"}, "ip6": {"ip": "::1/128"}, "dns": {}}
    interface = {"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": sandbox}
    if version.startswith("0."):
        return {"cniVersion": version, "interfaces": [interface],
                "ips": [{"version": "4", "interface": 0, "address": "127.0.0.1/8"},
                        {"version": "6", "interface": 0, "address": "::1/128"}],
                "dns": {}}
    return {"cniVersion": version, "interfaces": [interface],
            "ips": [{"interface": 0, "address": "127.0.0.1/8"}, {"interface": 0, "address": "::1/128"}]}


@pytest.mark.privileged
@pytest.mark.parametrize("version", ALL)
def test_launcher_serves_loopback_for_every_version(version: str, loopback_launcher: str,
                                                    host_netns, container_netns) -> None:
    config = {"cniVersion": version, "name": "lo-net", "type": "loopback"}
    assert container_netns.do(lo_state) == (False, [], [])
    host_before = host_netns.do(lo_state)

    added = run_executable(loopback_launcher, "ADD", config, host=host_netns, netns=container_netns).ok()
    assert added.stderr == b""
    expected = expected_result(version, container_netns.path)
    assert added.json == expected
    # Exact bytes: 4-space indent, no trailing newline; 1.x prints sorted keys, older
    # families their struct order.
    assert added.stdout == json.dumps(expected, indent=4, sort_keys=version.startswith("1.")).encode()
    assert container_netns.do(lo_state) == (True, ["127.0.0.1/8"], ["::1/128"])

    if greater_or_equal(version, "0.4.0"):
        run_executable(loopback_launcher, "CHECK", config, host=host_netns, netns=container_netns).ok()
    else:
        early = run_executable(loopback_launcher, "CHECK", config, host=host_netns, netns=container_netns)
        assert early.code == 1 and early.error is not None and early.error.code == 1

    deleted = run_executable(loopback_launcher, "DEL", config, host=host_netns, netns=container_netns).ok()
    assert deleted.stdout == b""
    assert container_netns.do(lo_state)[0] is False
    if greater_or_equal(version, "0.4.0"):
        down = run_executable(loopback_launcher, "CHECK", config, host=host_netns, netns=container_netns)
        assert down.code == 1 and down.error is not None
        assert down.error.msg == "loopback interface is down"

    # Only the container's lo was touched.
    assert host_netns.do(lo_state) == host_before


@pytest.mark.privileged
@pytest.mark.parametrize("version", ["0.3.1", "1.0.0", "1.1.0"])
def test_launcher_del_without_a_namespace_succeeds(version: str, loopback_launcher: str, host_netns,
                                                   tmp_path: Path) -> None:
    config = {"cniVersion": version, "name": "lo-net", "type": "loopback"}
    gone = run_executable(loopback_launcher, "DEL", config, host=host_netns,
                          netns="/var/run/netns/cnitest-does-not-exist")
    assert (gone.code, gone.stdout) == (0, b""), gone
    empty = run_executable(loopback_launcher, "DEL", config, host=host_netns, netns="")
    assert (empty.code, empty.stdout) == (0, b""), empty
    # ADD needs a namespace, and says so.
    missing = run_executable(loopback_launcher, "ADD", config, host=host_netns, netns="")
    assert missing.code == 1 and missing.error is not None and missing.error.code == 4
    assert "CNI_NETNS" in missing.error.msg


@pytest.mark.privileged
def test_launcher_refuses_its_own_namespace(loopback_launcher: str, host_netns) -> None:
    config = {"cniVersion": "1.0.0", "name": "lo-net", "type": "loopback"}
    before = host_netns.do(lo_state)
    out = run_executable(loopback_launcher, "ADD", config, host=host_netns, netns=host_netns)
    assert out.code == 1 and out.error is not None and out.error.code == 8
    assert host_netns.do(lo_state) == before


POLICY_SOURCE = '''
from cnicore.errors import CNIError
from cnicore.plugin import hookimpl


@hookimpl(tryfirst=True)
def cni_add(request):
    if request.config.get("refuse"):
        raise CNIError(7, "refused by launcher policy", request.host.name)
'''


@pytest.mark.privileged
def test_launcher_registers_its_policies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host_netns,
                                         container_netns) -> None:
    # The policy module lives in its own directory (say, an editable install): the
    # launcher must find it without site processing.
    policy_root = tmp_path / "policy-root"
    policy_root.mkdir()
    (policy_root / "cnitest_launcher_policy.py").write_text(POLICY_SOURCE)
    monkeypatch.syspath_prepend(str(policy_root))
    bindir = tmp_path / "bin"
    install(str(bindir), entries=[loopback_entry()], policies=["cnitest_launcher_policy"])
    launcher = str(bindir / "loopback")
    assert str(policy_root) in read_header(launcher).path  # type: ignore[union-attr]

    config = {"cniVersion": "1.1.0", "name": "lo-net", "type": "loopback"}
    refused = run_executable(launcher, "ADD", dict(config, refuse=True), host=host_netns, netns=container_netns)
    assert refused.json == {"cniVersion": "1.1.0", "code": 7, "msg": "refused by launcher policy",
                            "details": "loopback"}
    assert container_netns.do(lo_state)[0] is False  # refused before the plugin ran
    run_executable(launcher, "ADD", config, host=host_netns, netns=container_netns).ok()
    assert container_netns.do(lo_state)[0] is True
