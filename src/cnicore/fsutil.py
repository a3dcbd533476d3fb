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

from cnicore import faults

__all__ = ["remove_dead_temporaries", "write_atomic"]

TMP_SUFFIX = ".tmp"
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def write_atomic(path: str, data: bytes, mode: int = 0o600, fsync: bool = False) -> None:
    """Write ``data`` to a fresh temporary file beside ``path`` and rename it into place.

    A concurrent reader sees the old content or the new, never a mix; on any
    failure (a full or read-only disk) the temporary file is removed and
    ``path`` is untouched.
    """
    directory, name = os.path.split(path)
    # The writer's PID in the name lets a later cleanup tell a dead writer's leftover.
    # Not tempfile: importing it pulls in shutil, random and the compression modules
    # (~10-40 ms), more than a cnitool command's own work.
    tmp = os.path.join(directory, f".{name}.{os.getpid()}.{os.urandom(6).hex()}{TMP_SUFFIX}")
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
        faults.point("fsutil.before_rename")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def remove_dead_temporaries(directory: str) -> list[str]:
    """Remove :func:`write_atomic` temporaries in ``directory`` whose writer is
    dead (killed mid-write); returns their names. Live writers' are kept."""
    removed: list[str] = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        parts = name.split(".")
        if not (name.startswith(".") and name.endswith(TMP_SUFFIX) and len(parts) >= 5 and parts[-3].isdigit()):
            continue
        pid = int(parts[-3])
        try:
            os.kill(pid, 0)
            continue  # still running (or a reused PID: keep it, be safe)
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        try:
            os.unlink(os.path.join(directory, name))
            removed.append(name)
        except FileNotFoundError:
            pass
    return removed
