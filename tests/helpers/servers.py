"""What the warm-server tests share: their test plugins' package, servers of a test's
own, launchers started as a runtime starts them, the processes they leave, and
hand-made requests on a server's socket (below the native launcher)."""

from __future__ import annotations

import array
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

from cnicore.server import _protocol as proto
from cnicore.testing import WarmServer


@contextlib.contextmanager
def plugin_package(root: Path, package: str, modules: dict[str, str]) -> Iterator[Path]:
    """Test plugins written as ``package``'s modules (name -> source) under ``root``,
    importable inside the block (``root`` on ``sys.path``: a server's parent loads them)."""
    (root / package).mkdir()
    (root / package / "__init__.py").write_text("")
    for name, source in modules.items():
        (root / package / f"{name}.py").write_text(source)
    sys.path.insert(0, str(root))
    try:
        yield root
    finally:
        sys.path.remove(str(root))


@contextlib.contextmanager
def own_servers(tmp_path: Path, plugins: tuple[str, list]) -> Iterator[Callable[..., WarmServer]]:
    """``start(directory="", **kw)``: servers of a test's own, with ``plugins`` in their
    environment unless given (a worker hosts only plugins its parent loaded). Afterwards
    each is continued (a test may have stopped it or its workers) and stopped."""
    servers: list[WarmServer] = []

    def start(directory: str = "", **kw) -> WarmServer:
        kw.setdefault("plugins", plugins)
        server = WarmServer(directory or str(tmp_path / f"server{len(servers)}"), **kw)
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            for pid in [server.pid, *server.workers()]:
                try:
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
            server.stop()


def launch(executable: str | Path, env: dict[str, str], **popen) -> subprocess.Popen:
    """Start a launcher as a runtime does: pipes for stdio, its own environment."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CNI_", "PYTHON"))}
    return subprocess.Popen([str(executable)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**base, **env}, **popen)


def wait_for(path: Path, timeout: float = 20.0) -> str:
    """The text of ``path`` once it exists (a test plugin's marker)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return path.read_text()
        time.sleep(0.02)
    raise AssertionError(f"{path} never appeared")


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def gone_within(pid: int, timeout: float = 5.0) -> bool:
    """Whether the process exits (or is a zombie) within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.02)
    return False


# -- hand-made requests ---------------------------------------------------------------------

def read_frame(client: socket.socket) -> tuple[bytes, int]:
    """One frame of the server's answer; the connection closing first fails the test."""
    data = b""
    while len(data) < proto.FRAME.size:
        more = client.recv(proto.FRAME.size - len(data))
        assert more, "server closed without an answer"
        data += more
    return proto.decode_frame(data)


@contextlib.contextmanager
def caller_fds() -> Iterator[list[int]]:
    """The descriptors a launcher passes: stdin, stdout, stderr (here /dev/null), then
    the caller's mount and network namespaces (here this process's)."""
    devnull = os.open(os.devnull, os.O_RDWR)
    mnt = os.open("/proc/self/ns/mnt", os.O_RDONLY)
    net = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        yield [devnull, devnull, devnull, mnt, net]
    finally:
        for fd in (devnull, mnt, net):
            os.close(fd)


def raw_request(socket_path: str, message: bytes, fds: list[int]) -> list[tuple[bytes, int]]:
    """Every frame the server answers a hand-made request with, until it closes (after
    the ``ACCEPTED`` it sends before taking descriptors, which is checked)."""
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        client.settimeout(20)
        client.connect(socket_path)
        assert read_frame(client) == (proto.ACCEPTED, 0)  # descriptors only to a worker that took it
        client.sendmsg([message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
        data = b""
        while more := client.recv(64):
            data += more
    finally:
        client.close()
    return [proto.decode_frame(data[i:i + proto.FRAME.size]) for i in range(0, len(data), proto.FRAME.size)]
