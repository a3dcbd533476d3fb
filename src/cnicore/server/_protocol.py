"""The warm server's wire protocol, as pure functions (no I/O).

One request per connection. The worker that takes the connection first
sends an ``A`` frame (accepted; or ``R`` at once, for a caller it never
serves). Only then does the client (the native launcher, or
:mod:`cnicore.server.client`) send one message, with its descriptors
attached to the first byte by ``SCM_RIGHTS``: descriptors queued in a
connection that no worker takes would keep the runtime's stdout open after
the client went cold::

    "CNIW" | u32 protocol version | u32 payload length | payload
    payload: str build id | u32 umask | u32 flags | str cwd | str launcher
             | u32 argc, str... | u32 envc, str ("KEY=VALUE")...
    str: u32 length | bytes            (integers in the host's byte order)

    descriptors: stdin, stdout, stderr, mount ns, network ns[, CNI_NETNS]

The server answers with 8-byte frames: a kind byte, three zero bytes and an
i32 value: ``A`` accepted (before the request), ``R`` refused (value: a :data:`REFUSALS` reason; the client runs
the cold path), ``S`` started (the plugin is running), ``X`` exited (value:
the exit status, after the worker closed the caller's stdio). The client may
send one byte ``C`` to cancel; hanging up cancels too.

A status request (:data:`FLAG_STATUS`, no descriptors, from the server's own
uid) is answered with one ``T`` frame whose value is the length of the JSON
text that follows (``cnitool daemon status``).

Every client gives the server :data:`FIRST_ANSWER_TIMEOUT` seconds from its
connect for ``S`` or ``R`` and then runs the cold path: a
server whose parent is stopped or gone, or whose workers are all busy or
stopped, leaves a connection queued in the listen backlog with nobody to
take it, and a launcher must never wait for a server. After ``S`` the plugin
runs, and only the caller's own timeout applies.

The native launcher (``forwarder.c``) writes the same layout in C; the build
id covers both files, so a launcher compiled from another version of them is
refused and falls back instead of being misread.
"""

from __future__ import annotations

import struct

MAGIC = b"CNIW"
PROTOCOL_VERSION = 1
HEADER = struct.Struct("=4sII")
FRAME = struct.Struct("=c3xi")
#: Flags in the request.
FLAG_NETNS_FD = 1
FLAG_STDIN_SNAPSHOT = 2
#: A whole ``cnitool`` network command (argv) rather than one plugin exec; the launcher
#: field then names the caller's interpreter, which must be the server's.
FLAG_CNITOOL = 4
#: No plugin: the server's counters, for ``cnitool daemon status`` (see the module docstring).
FLAG_STATUS = 8
#: Descriptors: stdin, stdout, stderr, mount ns, net ns, and optionally CNI_NETNS.
MIN_FDS = 5
MAX_FDS = 6
#: Sanity limit on a request's payload (argv + environment), not on stdin.
MAX_PAYLOAD = 4 << 20
#: Seconds a client waits, from its connect, for the server's first frame (``S`` or
#: ``R``) before it runs the cold path instead; the one constant of every client (the
#: native launcher is compiled with it). A worker answers within milliseconds of taking
#: a connection, so only a server that cannot take it runs out this time.
FIRST_ANSWER_TIMEOUT = 2.0
#: Seconds a worker gives a connection, from its accept, to deliver the whole request
#: (header and payload); a client that has not sent it by then has given up anyway.
RECEIVE_TIMEOUT = FIRST_ANSWER_TIMEOUT

ACCEPTED = b"A"
STARTED = b"S"
EXITED = b"X"
REFUSED = b"R"
CANCEL = b"C"
STATUS_REPLY = b"T"

#: Why a request is refused (the value of an ``R`` frame).
REFUSALS = {
    1: "protocol version mismatch",
    2: "launcher build mismatch",
    3: "caller is not root",
    4: "bad descriptors",
    5: "server code changed since start (restarting)",
    6: "unknown launcher",
    7: "cannot enter the caller's namespaces or directory",
    8: "malformed request",
    9: "server shutting down",
    10: "request not received in time",
}
REFUSE_VERSION, REFUSE_BUILD, REFUSE_UID, REFUSE_FDS, REFUSE_STALE, REFUSE_LAUNCHER, \
    REFUSE_ENTER, REFUSE_MALFORMED, REFUSE_SHUTDOWN = range(1, 10)
REFUSE_SLOW = 10


class ProtocolError(ValueError):
    """A request that cannot be decoded; ``reason`` is a :data:`REFUSALS` key."""

    def __init__(self, reason: int, detail: str) -> None:
        super().__init__(f"{REFUSALS[reason]}: {detail}")
        self.reason = reason


class Request:
    """One decoded request (the descriptors travel beside it)."""

    __slots__ = ("build_id", "umask", "flags", "cwd", "launcher", "argv", "env")

    def __init__(self, build_id: str, umask: int, flags: int, cwd: str, launcher: str,
                 argv: list[str], env: dict[str, str]) -> None:
        self.build_id = build_id
        self.umask = umask
        self.flags = flags
        self.cwd = cwd
        self.launcher = launcher
        self.argv = argv
        self.env = env

    def __repr__(self) -> str:
        return f"Request(launcher={self.launcher!r}, command={self.env.get('CNI_COMMAND')!r})"


def _str(value: str) -> bytes:
    data = value.encode("utf-8", "surrogateescape")
    return struct.pack("=I", len(data)) + data


def encode_request(build_id: str, umask: int, flags: int, cwd: str, launcher: str,
                   argv: list[str], env: dict[str, str]) -> bytes:
    """The whole message, as the native launcher writes it."""
    parts = [_str(build_id), struct.pack("=II", umask, flags), _str(cwd), _str(launcher),
             struct.pack("=I", len(argv)), *map(_str, argv),
             struct.pack("=I", len(env)), *(_str(f"{k}={v}") for k, v in env.items())]
    payload = b"".join(parts)
    return HEADER.pack(MAGIC, PROTOCOL_VERSION, len(payload)) + payload


def decode_header(data: bytes) -> int:
    """The payload length announced by the first :data:`HEADER` bytes."""
    if len(data) < HEADER.size:
        raise ProtocolError(REFUSE_MALFORMED, "short header")
    magic, version, length = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ProtocolError(REFUSE_MALFORMED, "bad magic")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(REFUSE_VERSION, f"client speaks {version}, server {PROTOCOL_VERSION}")
    if length > MAX_PAYLOAD:
        raise ProtocolError(REFUSE_MALFORMED, f"payload of {length} bytes")
    return int(length)


def decode_payload(payload: bytes) -> Request:
    """The request in ``payload`` (everything after the header)."""
    view = memoryview(payload)
    offset = 0

    def u32() -> int:
        nonlocal offset
        if offset + 4 > len(view):
            raise ProtocolError(REFUSE_MALFORMED, "truncated payload")
        (value,) = struct.unpack_from("=I", view, offset)
        offset += 4
        return int(value)

    def text() -> str:
        nonlocal offset
        size = u32()
        if offset + size > len(view):
            raise ProtocolError(REFUSE_MALFORMED, "truncated string")
        value = bytes(view[offset:offset + size]).decode("utf-8", "surrogateescape")
        offset += size
        return value

    build_id = text()
    umask, flags = u32(), u32()
    cwd, launcher = text(), text()
    argv = [text() for _ in range(u32())]
    env: dict[str, str] = {}
    for _ in range(u32()):
        key, sep, value = text().partition("=")
        if sep:  # the last of duplicates wins, as in a cold launcher's os.environ
            env[key] = value
    if offset != len(view):
        raise ProtocolError(REFUSE_MALFORMED, "trailing bytes")
    return Request(build_id, umask & 0o777, flags, cwd, launcher, argv, env)


def frame(kind: bytes, value: int = 0) -> bytes:
    """One reply frame."""
    return FRAME.pack(kind, value)


def decode_frame(data: bytes) -> tuple[bytes, int]:
    """``(kind, value)`` of one reply frame."""
    kind, value = FRAME.unpack(data)
    return kind, int(value)
