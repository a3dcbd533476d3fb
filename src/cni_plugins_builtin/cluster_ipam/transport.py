"""One keep-alive HTTP/1.1 connection to one etcd member's JSON gateway: a small client over a socket.

Why not ``http.client`` (used until issue 19's speed work; ``requests`` +
``etcd3gw`` before that): a cold exec pays its import before the first byte,
and ``http.client`` pulls in the ``email`` parser (for its headers), ``ssl``
(even for ``http://``), ``socket`` with ``enum`` and ``selectors``, and
``re``: ~18 ms of a cold ADD's ~60 ms of CPU, measured with ``python -X
importtime`` under the launcher's flags (numbers in docs/CLUSTER_IPAM.md,
"The path to etcd"). etcd's gateway sends one kind of answer — a status
line, a few headers, a JSON body framed by ``Content-Length`` or chunked —
so this module reads exactly that, the way ``http.client`` reads it (same
status-line, header, framing and keep-alive rules, same limits), and
``tests/test_cluster_ipam_transport.py`` serves generated answers (whole,
cut short, oddly framed) to both and requires the same outcome. Plain
``http://`` runs on ``_socket`` (the C socket type, without ``socket.py``'s
imports); ``ssl`` and ``socket`` are imported only for ``https://``.

Every failure is an exception the caller sorts (:mod:`.etcd`):
``ssl.SSLError`` (TLS), ``TimeoutError`` (a try's time ran out), ``OSError``
(refused, reset, unreachable; :class:`Disconnected`: closed before an
answer), :class:`BrokenAnswer` (not HTTP we can read, or cut short). A
connection the server closed while idle is reopened once, transparently:
that is not a failure of the member.
"""

from __future__ import annotations

import _json
import _socket

from cnicore import wire

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ssl
    from typing import Any

#: ``http.client``'s limits: the longest status, header or chunk-size line, and the most headers.
MAX_LINE = 65536
MAX_HEADERS = 100
_RECV = 65536


def _unencodable(obj: object) -> object:
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


#: ``json.dumps(obj, separators=(",", ":"))`` on ``_json``'s C encoder (what ``json`` uses
#: underneath; ``cnicore.wire``'s Python encoder costs ~2x per request, every ADD sends two).
_encoder = _json.make_encoder(None, _unencodable, _json.encode_basestring_ascii, None, ":", ",",
                              False, False, False)


def encode(body: dict[str, Any]) -> bytes:
    """A request body as compact JSON."""
    return "".join(_encoder(body, 0)).encode()


class BrokenAnswer(Exception):
    """The answer is not HTTP/1.x as ``http.client`` would read it, or it was cut short
    (``http.client.HTTPException`` and its kinds)."""


class Disconnected(ConnectionResetError):
    """The connection closed before the first byte of an answer (``http.client.RemoteDisconnected``)."""


class Answer:
    """An HTTP answer: status, reason, the raw body, whether the server closes the
    connection after it, and the body parsed as JSON (None if it is not JSON)."""

    __slots__ = ("status", "reason", "body", "will_close", "json")

    def __init__(self, status: int, reason: str, body: bytes, will_close: bool = False) -> None:
        self.status = status
        self.reason = reason
        self.body = body
        self.will_close = will_close
        try:
            self.json: Any = wire.loads(body.decode("utf-8"))
        except ValueError:  # UnicodeDecodeError included
            self.json = None


class _Reader:
    """Buffered reads from a socket, for one answer (what is left is dropped with it,
    as ``http.client`` drops its response's buffered file)."""

    __slots__ = ("sock", "buf", "pos")

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.buf = b""
        self.pos = 0

    def _more(self) -> bool:
        data = self.sock.recv(_RECV)
        if not data:
            return False
        self.buf = self.buf[self.pos:] + data
        self.pos = 0
        return True

    def line(self, limit: int) -> bytes:
        """Up to and including the next ``\\n``, at most ``limit`` bytes; less at the end of the stream."""
        while True:
            end = self.buf.find(b"\n", self.pos, self.pos + limit)
            if end >= 0:
                out = self.buf[self.pos:end + 1]
                self.pos = end + 1
                return out
            if len(self.buf) - self.pos >= limit or not self._more():
                out = self.buf[self.pos:self.pos + limit]
                self.pos += len(out)
                return out

    def exact(self, size: int) -> bytes:
        while len(self.buf) - self.pos < size:
            if not self._more():
                raise BrokenAnswer(f"incomplete read: {len(self.buf) - self.pos} bytes, {size} expected")
        out = self.buf[self.pos:self.pos + size]
        self.pos += size
        return out

    def rest(self) -> bytes:
        while self._more():
            pass
        out = self.buf[self.pos:]
        self.pos = len(self.buf)
        return out


def _status_line(reader: _Reader) -> tuple[str, int, str]:
    raw = reader.line(MAX_LINE + 1)
    if len(raw) > MAX_LINE:
        raise BrokenAnswer("status line too long")
    if not raw:
        raise Disconnected("the member closed the connection without an answer")
    line = raw.decode("iso-8859-1")
    parts = line.split(None, 2)
    if len(parts) == 2:
        parts.append("")
    version, status, reason = parts if len(parts) == 3 else ("", "", "")
    if not version.startswith("HTTP/"):
        raise BrokenAnswer(f"bad status line {line[:100]!r}")
    try:
        code = int(status)
    except ValueError:
        raise BrokenAnswer(f"bad status line {line[:100]!r}") from None
    if not 100 <= code <= 999:
        raise BrokenAnswer(f"bad status line {line[:100]!r}")
    return version, code, reason.strip()


def _headers(reader: _Reader) -> dict[str, str]:
    """Header name (lower case) -> the first such header's value, as ``http.client``'s
    email parser gives it (leading blanks and the line end stripped)."""
    found: dict[str, str] = {}
    for count in range(1, MAX_HEADERS + 2):  # the blank line counts, as in http.client
        raw = reader.line(MAX_LINE + 1)
        if len(raw) > MAX_LINE:
            raise BrokenAnswer("header line too long")
        if count > MAX_HEADERS:
            break
        if raw in (b"\r\n", b"\n", b""):
            return found
        line = raw.decode("iso-8859-1")
        name, colon, value = line.partition(":")
        if colon:
            found.setdefault(name.lower(), value.lstrip(" \t").rstrip("\r\n"))
    raise BrokenAnswer(f"got more than {MAX_HEADERS} headers")


def read_answer(reader: _Reader) -> Answer:
    """One answer, framed as ``http.client`` frames it (a ``100 Continue`` skipped)."""
    while True:
        version, status, reason = _status_line(reader)
        if status != 100:
            break
        _headers(reader)
    if version in ("HTTP/1.0", "HTTP/0.9"):
        http10 = True
    elif version.startswith("HTTP/1."):
        http10 = False
    else:
        raise BrokenAnswer(f"unknown protocol {version[:40]!r}")
    headers = _headers(reader)
    chunked = headers.get("transfer-encoding", "").lower() == "chunked"
    connection = headers.get("connection", "").lower()
    if http10:
        will_close = not (headers.get("keep-alive") or "keep-alive" in connection
                          or "keep-alive" in headers.get("proxy-connection", "").lower())
    else:
        will_close = "close" in connection
    length: int | None = None
    if not chunked and headers.get("content-length"):
        try:
            length = int(headers["content-length"])
        except ValueError:
            length = None
        else:
            if length < 0:
                length = None
    if status in (204, 304) or 100 <= status < 200:
        length = 0
    if not will_close and not chunked and length is None:
        will_close = True
    if chunked:
        body = _chunked(reader)
    elif length is not None:
        body = reader.exact(length)
    else:
        body = reader.rest()
    return Answer(status, reason, body, will_close)


def _chunked(reader: _Reader) -> bytes:
    parts = []
    while True:
        raw = reader.line(MAX_LINE + 1)
        if len(raw) > MAX_LINE:
            raise BrokenAnswer("chunk size line too long")
        size_text = raw.split(b";", 1)[0]
        try:
            size = int(size_text, 16)
        except ValueError:
            raise BrokenAnswer(f"bad chunk size {raw[:40]!r}") from None
        if size < 0:
            raise BrokenAnswer(f"bad chunk size {raw[:40]!r}")
        if size == 0:
            break
        parts.append(reader.exact(size))
        reader.exact(2)  # the chunk's CRLF (not checked, as http.client does not)
    while True:  # trailers, up to the blank line or the end
        raw = reader.line(MAX_LINE + 1)
        if len(raw) > MAX_LINE:
            raise BrokenAnswer("trailer line too long")
        if raw in (b"\r\n", b"\n", b""):
            return b"".join(parts)


def _connect_plain(host: str, port: int, timeout: float) -> Any:
    """``socket.create_connection`` on the C socket type. The host goes to
    getaddrinfo as bytes: a str makes the C code load the ``idna`` codec (and
    ``unicodedata``) at the first connection — ~1.5 ms of a cold exec, and in a warm
    worker a module imported during a request, which retires the worker after it
    (with ``http.client`` every warm request paid a fresh worker: ~15 ms of server CPU)."""
    last: OSError | None = None
    for family, kind, proto, _, address in _socket.getaddrinfo(host.encode(), port, 0, _socket.SOCK_STREAM):
        sock = _socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    raise last or OSError(f"getaddrinfo returned nothing for {host}")


class Connection:
    """A kept-alive connection to ``scheme://host:port``; ``post`` sends one JSON request."""

    def __init__(self, scheme: str, host: str, port: int, tls: ssl.SSLContext | None) -> None:
        self.scheme, self.host, self.port, self.tls = scheme, host, port, tls
        self._sock: Any = None
        self._host_header = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def _open(self, connect_timeout: float, timeout: float) -> Any:
        if self.scheme == "https":  # the TLS handshake is CPU on both sides: the whole try's time
            # ssl encodes server_hostname with the idna codec, a module loaded by C code: named
            # here, so the warm server's parent loads it too (a worker that imports a module
            # during a request exits after it, and every request would then pay a fresh worker).
            import encodings.idna  # noqa: F401
            import socket

            assert self.tls is not None
            sock: Any = self.tls.wrap_socket(socket.create_connection((self.host, self.port), timeout),
                                             server_hostname=self.host)
        else:
            sock = _connect_plain(self.host, self.port, connect_timeout)
        sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        return sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def post(self, path: str, body: dict[str, Any], connect_timeout: float, timeout: float) -> Answer:
        """POST ``body`` as JSON to ``path``; the answer. Raises on any transport failure
        (the connection is then dropped, so the next call opens a fresh one)."""
        data = encode(body)
        request = (f"POST {path} HTTP/1.1\r\nHost: {self._host_header}\r\nAccept-Encoding: identity\r\n"
                   f"Content-Length: {len(data)}\r\nContent-Type: application/json\r\n\r\n").encode() + data
        for reused in (True, False):
            fresh = self._sock is None
            if fresh:
                self._sock = self._open(connect_timeout, timeout)
            sock = self._sock
            sock.settimeout(timeout)
            try:
                sock.sendall(request)
                answer = read_answer(_Reader(sock))
            except (BrokenPipeError, ConnectionResetError):  # Disconnected included
                self.close()
                if fresh or not reused:
                    raise
                continue  # the member closed an idle kept-alive connection: once more, on a new one
            except BaseException:
                self.close()
                raise
            if answer.will_close:
                self.close()
            return answer
        raise BrokenAnswer("unreachable")  # pragma: no cover - the loop returns or raises


def tls_context(cacert: str, cert: str, key: str) -> ssl.SSLContext:
    """Verify the member against ``cacert`` (or the system's CAs); present ``cert``/``key`` if set."""
    import ssl

    context = ssl.create_default_context(cafile=cacert or None)
    if cert:
        context.load_cert_chain(cert, key or None)
    return context
