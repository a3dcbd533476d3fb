"""`cnitool plugins install` when things get in its way: an install killed half-way,
a directory or a dangling symlink named like a plugin, and the same for a native
launcher's Python fallback. Nothing an install wrote may become a file a later
install refuses to manage, and nothing it did not write may be replaced."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cnicore.cli.install import MANIFEST, install, read_manifest
from cnicore.launchers import PYTHON_DIR
from cnicore.registry import discover, get

CNITOOL = os.path.join(os.path.dirname(sys.executable), "cnitool")
TYPES = ["bridge", "host-local", "loopback", "tuning"]


def entries() -> list:
    return [get(t) for t in TYPES]


def cnitool_install(directory: Path, *flags: str, faults: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CNICORE_FAULTS"}
    if faults:
        env["CNICORE_FAULTS"] = faults
    return subprocess.run([CNITOOL, "plugins", "install", str(directory), "--json", *flags], env=env,
                          capture_output=True, text=True, timeout=120)


def test_an_install_killed_after_writing_a_launcher_is_finished_by_the_next(tmp_path: Path) -> None:
    killed = cnitool_install(tmp_path, "--python", faults="launchers.install.written=kill")
    assert killed.returncode == -9
    written = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert written == [sorted(discover())[0]]  # it died right after its first launcher
    again = cnitool_install(tmp_path, "--python")
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["skipped"] == {}
    everything = sorted(discover())
    assert sorted(report["added"] + report["updated"] + report["unchanged"]) == everything
    assert sorted(read_manifest(str(tmp_path))) == everything
    assert written[0] in report["unchanged"] + report["updated"]  # recognised as its own


def test_a_native_install_killed_half_way_is_finished_by_the_next(tmp_path: Path) -> None:
    killed = cnitool_install(tmp_path, "--native", "--socket", "/run/cnitest/none.sock",
                             faults="launchers.install.written=kill")
    assert killed.returncode == -9
    again = cnitool_install(tmp_path, "--native", "--socket", "/run/cnitest/none.sock")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["skipped"] == {}
    for plugin_type in TYPES:
        assert (tmp_path / PYTHON_DIR / plugin_type).is_file()
    version = subprocess.run([str(tmp_path / "loopback")], env={"CNI_COMMAND": "VERSION"}, capture_output=True,
                             timeout=60)
    assert version.returncode == 0 and json.loads(version.stdout)["cniVersion"] == "1.1.0"


def test_a_directory_named_like_a_plugin_is_skipped_and_the_rest_installed(tmp_path: Path) -> None:
    (tmp_path / "bridge").mkdir()
    (tmp_path / "bridge" / "keep").write_text("theirs")
    report = install(str(tmp_path), entries())
    assert "not written by cnitool" in report.skipped["bridge"]
    assert sorted(report.added) == ["host-local", "loopback", "tuning"]
    assert (tmp_path / "bridge" / "keep").read_text() == "theirs"
    assert sorted(read_manifest(str(tmp_path))) == ["host-local", "loopback", "tuning"]


def test_a_dangling_symlink_named_like_a_plugin_is_never_replaced(tmp_path: Path) -> None:
    os.symlink("/nonexistent/cnitest-target", tmp_path / "tuning")
    os.symlink(str(tmp_path / "elsewhere"), tmp_path / "loopback")  # a symlink to a file we could write
    (tmp_path / "elsewhere").write_text("theirs")
    report = install(str(tmp_path), entries())
    assert set(report.skipped) == {"tuning", "loopback"}
    assert os.readlink(tmp_path / "tuning") == "/nonexistent/cnitest-target"
    assert (tmp_path / "elsewhere").read_text() == "theirs"
    assert "tuning" not in read_manifest(str(tmp_path))


def test_something_in_a_native_launchers_fallback_place_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / PYTHON_DIR).mkdir()
    os.symlink("/nonexistent/cnitest-target", tmp_path / PYTHON_DIR / "loopback")
    report = install(str(tmp_path), entries(), kind="native", socket="/run/cnitest/none.sock")
    assert "not written by cnitool" in report.skipped["loopback"]
    assert not (tmp_path / "loopback").exists()
    assert os.readlink(tmp_path / PYTHON_DIR / "loopback") == "/nonexistent/cnitest-target"
    manifest = json.loads((tmp_path / MANIFEST).read_text())["launchers"]
    assert sorted(manifest) == ["bridge", "host-local", "tuning"]
