"""One keep-alive HTTP/1.1 connection to one etcd member's JSON gateway, on ``http.client``.

Why this and not ``requests`` + ``etcd3gw`` (used before) or gRPC: measured
on this machine (bench/etcd_clients_bench.py; numbers and reasons in
docs/CLUSTER_IPAM.md, "The path to etcd"): ``http.client`` imports in ~30 ms
against 100–320 ms for ``requests`` and ~130 ms for ``grpc`` + ``protobuf``
(a cold exec pays that before its first byte), and does 1.5–2x the warm
throughput of ``requests``; gRPC does ~1.5x more warm, but is not safe
across the warm server's fork and adds run-time dependencies. The gateway
speaks plain JSON over HTTP/1.1: nothing of ``requests`` is needed (no
redirects, cookies, proxies — etcd is never reached through a proxy — or
encodings).

Every failure is an exception the caller sorts (:mod:`.etcd`): ``ssl.SSLError``
(TLS), ``TimeoutError``/``socket.timeout``, ``OSError`` (refused, reset),
``http.client.HTTPException`` (a broken answer). A connection the server
closed while idle is reopened once, transparently: that is not a failure of
the member.
"""

from __future__ import annotations

import http.client
import json
import socket

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ssl
    from typing import Any


class Answer:
    """An HTTP answer: status, reason and the body parsed as JSON (None if it is not JSON)."""

    __slots__ = ("status", "reason", "json")

    def __init__(self, status: int, reason: str, body: bytes) -> None:
        self.status = status
        self.reason = reason
        try:
            self.json: Any = json.loads(body)
        except ValueError:
            self.json = None


class Connection:
    """A kept-alive connection to ``scheme://host:port``; ``post`` sends one JSON request."""

    def __init__(self, scheme: str, host: str, port: int, tls: ssl.SSLContext | None) -> None:
        self.scheme, self.host, self.port, self.tls = scheme, host, port, tls
        self._conn: http.client.HTTPConnection | None = None

    def _open(self, connect_timeout: float, timeout: float) -> http.client.HTTPConnection:
        if self.scheme == "https":  # the TLS handshake is CPU on both sides: the whole try's time
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                self.host, self.port, timeout=timeout, context=self.tls)
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=connect_timeout)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def post(self, path: str, body: dict[str, Any], connect_timeout: float, timeout: float) -> Answer:
        """POST ``body`` as JSON to ``path``; the answer. Raises on any transport failure
        (the connection is then dropped, so the next call opens a fresh one)."""
        data = json.dumps(body, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "Host": f"{self.host}:{self.port}"}
        for reused in (True, False):
            fresh = self._conn is None
            if fresh:
                self._conn = self._open(connect_timeout, timeout)
            conn = self._conn
            assert conn is not None and conn.sock is not None
            conn.sock.settimeout(timeout)
            try:
                conn.request("POST", path, data, headers)
                response = conn.getresponse()
                payload = response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if fresh or not reused:
                    raise
                continue  # the member closed an idle kept-alive connection: once more, on a new one
            except BaseException:
                self.close()
                raise
            if response.will_close:
                self.close()
            return Answer(response.status, response.reason or "", payload)
        raise http.client.HTTPException("unreachable")  # pragma: no cover - the loop returns or raises


def tls_context(cacert: str, cert: str, key: str) -> ssl.SSLContext:
    """Verify the member against ``cacert`` (or the system's CAs); present ``cert``/``key`` if set."""
    import ssl

    context = ssl.create_default_context(cafile=cacert or None)
    if cert:
        context.load_cert_chain(cert, key or None)
    return context
