"""Files that readers never see half-written."""

from __future__ import annotations

import os


def _scratch(directory: str, name: str) -> tuple[int, str]:
    """A new file beside ``name``, as ``tempfile.mkstemp`` makes it: a random name,
    created exclusively, mode 0600, not inherited by children.

    Not ``tempfile`` itself: importing it pulls in shutil, random and the
    compression modules (~10–40 ms), more than a ``cnitool`` command's own work."""
    import errno

    for _ in range(100):
        path = os.path.join(directory, f".{name}.{os.urandom(6).hex()}.tmp")
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600), path
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "No usable temporary file name found")


def write_atomic(path: str, data: bytes, mode: int = 0o600, fsync: bool = False) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place.

    A concurrent reader sees the old content or the new, never a mix; on any
    failure the temporary file is removed and ``path`` is untouched.
    """
    directory, name = os.path.split(path)
    fd, tmp = _scratch(directory or ".", name)
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
