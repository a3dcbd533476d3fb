"""cnicore.fsutil: atomic replacement, and its scratch file made as tempfile.mkstemp makes one."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from cnicore import fsutil


def test_scratch_file_is_mkstemps(tmp_path: Path) -> None:
    fd, path = fsutil._scratch(str(tmp_path), "target")
    ref_fd, ref_path = tempfile.mkstemp(prefix=".target.", suffix=".tmp", dir=str(tmp_path))
    try:
        for handle, name in ((fd, path), (ref_fd, ref_path)):
            st = os.fstat(handle)
            assert stat.S_IMODE(st.st_mode) == 0o600 and stat.S_ISREG(st.st_mode)
            assert os.get_inheritable(handle) is False
            assert os.path.dirname(name) == str(tmp_path)
            base = os.path.basename(name)
            assert base.startswith(".target.") and base.endswith(".tmp")
        assert len({fsutil._scratch(str(tmp_path), "target")[1] for _ in range(20)}) == 20
    finally:
        os.close(fd)
        os.close(ref_fd)


def test_write_atomic_replaces_and_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_bytes(b"old")
    fsutil.write_atomic(str(target), b"new", 0o644)
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert os.listdir(tmp_path) == ["file"]


def test_write_atomic_failure_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_bytes(b"old")
    with pytest.raises(TypeError):
        fsutil.write_atomic(str(target), "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["file"]
    with pytest.raises(FileNotFoundError):
        fsutil.write_atomic(str(tmp_path / "missing" / "file"), b"x")


def test_importing_fsutil_imports_no_tempfile() -> None:
    src = os.path.dirname(os.path.dirname(fsutil.__file__))
    code = "import sys, cnicore.fsutil; print('tempfile' in sys.modules, 'shutil' in sys.modules)"
    out = subprocess.run([sys.executable, "-S", "-c", code], env={**os.environ, "PYTHONPATH": src},
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False False", out.stderr
