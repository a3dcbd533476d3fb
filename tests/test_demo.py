"""The README's main job runs end to end and leaves nothing behind."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = [pytest.mark.privileged, pytest.mark.interop]


def _demo_namespaces() -> list[str]:
    """The demo's own namespaces (other suites may run on this machine at the same time)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line.startswith("cnitest-demo-")]


def test_demo_builds_pings_and_cleans_up():
    before = _demo_namespaces()
    proc = subprocess.run([sys.executable, "-m", "cnicore.cli.demo"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count(": ok") == 4
    assert "loopback (cnicore)" in proc.stdout
    assert "bridge (cnicore), tuning (cnicore)" in proc.stdout
    assert "native launchers in" in proc.stdout
    # loopback, bridge and tuning for two containers: ADD, CHECK and DEL each.
    assert "warm server stopped after serving 18 requests" in proc.stdout
    assert _demo_namespaces() == before
