"""Files that readers never see half-written."""

from __future__ import annotations

import os


def write_atomic(path: str, data: bytes, mode: int = 0o600, fsync: bool = False) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place.

    A concurrent reader sees the old content or the new, never a mix; on any
    failure the temporary file is removed and ``path`` is untouched.
    """
    import tempfile

    directory, name = os.path.split(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory or ".")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fchmod(fh.fileno(), mode)
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
