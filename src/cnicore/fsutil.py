"""Files in shared directories, written so that readers never see them
half-written and nobody can redirect the write.

A temporary file is created beside the target with ``O_CREAT | O_EXCL |
O_NOFOLLOW`` under an unpredictable name (a planted file or symlink makes the
create fail instead of being followed), gets its final mode, and is renamed
over the target — replacing a symlink there, never writing through it. No
``tempfile``: it pulls ``shutil``/``re`` into every plugin exec.
"""

from __future__ import annotations

import os

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def write_atomic(path: str, data: bytes, mode: int = 0o600, fsync: bool = False) -> None:
    """Write ``data`` to a fresh temporary file beside ``path`` and rename it into place.

    A concurrent reader sees the old content or the new, never a mix; on any
    failure (a full or read-only disk) the temporary file is removed and
    ``path`` is untouched.
    """
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, f".{name}.{os.urandom(6).hex()}.tmp")
    fd = os.open(tmp, _FLAGS, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fchmod(fd, mode)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
