"""cnicore.fsutil: atomic replacement, and its scratch file made as tempfile.mkstemp makes one."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cnicore import fsutil


def test_temporary_file_is_like_mkstemps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """write_atomic's temporary: beside the target, hidden, 0600, not inherited, unique."""
    seen = []
    real_replace = os.replace

    def spy(src: str, dst: str) -> None:
        st = os.stat(src)
        seen.append((os.path.basename(src), stat.S_IMODE(st.st_mode)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    for _ in range(20):
        fsutil.write_atomic(str(tmp_path / "target"), b"x", 0o600)
    assert len({name for name, _ in seen}) == 20
    assert all(name.startswith(".target.") and name.endswith(".tmp") and mode == 0o600 for name, mode in seen)


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


