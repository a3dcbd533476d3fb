"""Building the native launcher (``forwarder.c``) at install time.

The C source ships in the package and is compiled where the launchers are
installed, with the server's socket path and a build id baked in. The build
id is a digest of the C source and of the Python side of the protocol, so the
server refuses (and the launcher falls back for) any launcher built from
another version of either.
"""

from __future__ import annotations

import os

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "forwarder.c")
_PROTOCOL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_protocol.py")
COMPILERS = ("cc", "gcc", "clang")

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_build_id: str | None = None


class NativeBuildError(Exception):
    """The native launcher could not be compiled."""


def build_id() -> str:
    """A digest of the launcher source and the protocol module (computed once)."""
    global _build_id
    if _build_id is None:
        digest = _sha256()
        for path in (SOURCE, _PROTOCOL):
            with open(path, "rb") as fh:
                digest.update(fh.read())
        _build_id = digest.hexdigest()[:24]
    return _build_id


def _sha256() -> Any:
    """``hashlib.sha256()`` without importing hashlib, which loads OpenSSL (~4 ms of
    every ``cnitool add``, where the client computes the build id): CPython's own
    SHA-256 gives the same digest (a test compares them)."""
    try:
        from _sha2 import sha256  # Python >= 3.12
    except ImportError:
        try:
            from _sha256 import sha256  # Python 3.11
        except ImportError:  # an interpreter built without them
            from hashlib import sha256
    return sha256()


def compiler() -> str | None:
    """The C compiler to use (``$CC`` first), or None when there is none."""
    import shutil

    for name in (os.environ.get("CC", ""), *COMPILERS):
        if name and shutil.which(name):
            return name
    return None


def _c_string(text: str) -> str:
    if any(ch in text for ch in '"\\\n') or not text.isprintable():
        raise NativeBuildError(f"path not usable in a C string: {text!r}")
    return f'"{text}"'


def compile_launcher(socket_path: str) -> bytes:
    """The launcher binary for ``socket_path``, compiled now."""
    import subprocess
    import tempfile

    from cnicore.server._protocol import FIRST_ANSWER_TIMEOUT

    cc = compiler()
    if cc is None:
        raise NativeBuildError("no C compiler found (cc, gcc, clang or $CC)")
    if len(socket_path.encode()) >= 108:
        raise NativeBuildError(f"socket path too long for a unix socket: {socket_path}")
    with tempfile.TemporaryDirectory(prefix="cnicore-native-") as tmp:
        out = os.path.join(tmp, "launcher")
        argv = [cc, "-O2", "-Wall", "-o", out, SOURCE,
                f"-DCNICORE_SOCKET={_c_string(socket_path)}",
                f"-DCNICORE_BUILD_ID={_c_string(build_id())}",
                f"-DCNICORE_FIRST_ANSWER_MS={round(FIRST_ANSWER_TIMEOUT * 1000)}"]
        # Static where libc.a is installed: no dynamic loader per exec (~0.3 ms here).
        done = subprocess.run([*argv, "-static"], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise NativeBuildError(f"{' '.join(argv[:2])} failed: {done.stderr.strip()}")
        with open(out, "rb") as fh:
            return fh.read()
