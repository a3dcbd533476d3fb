"""cluster-ipam's HTTP client reads every answer as ``http.client`` reads it.

The plugin's transport (``cluster_ipam/transport.py``) is a small HTTP/1.1
client over a socket, written to keep ``http.client``'s imports (~18 ms) out
of a cold exec. It is allowed only because it behaves like the library for
what etcd's gateway sends, and this file is the proof: generated answers —
``Content-Length``, chunked (extensions, trailers, odd sizes) and
close-delimited bodies, HTTP/1.0 and 1.1 keep-alive rules, ``100 Continue``,
odd status lines, duplicate and malformed length headers, answers cut short
anywhere — are served by a server started here on 127.0.0.1 to both clients,
which must agree: the same status, reason, body and "the server closes", or
the same kind of failure (a broken answer; closed before any answer). Then
the connection's own rules: keep-alive reuse, an idle connection closed by
the member reopened once, timeouts, a refused connection, and the request
bytes etcd receives.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cni_plugins_builtin.cluster_ipam.transport import BrokenAnswer, Connection, Disconnected

PATH = "/v3/kv/range"
BODY = {"key": "L2NuaS1pcGFtL3YxL25ldC9hdHRhY2gvbi9jL2V0aDA=", "limit": 2}


class OneShot:
    """A server on 127.0.0.1 that answers each accepted connection's requests with the
    given byte strings (one per request), then closes it; what each request was."""

    def __init__(self, answers: list[list[bytes]]) -> None:
        self.answers = answers  # per connection, per request
        self.requests: list[tuple[bytes, dict[str, str], bytes]] = []
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.listener.settimeout(10)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            for per_connection in self.answers:
                conn, _ = self.listener.accept()
                with conn:
                    conn.settimeout(10)
                    reader = conn.makefile("rb")
                    for answer in per_connection:
                        self.requests.append(read_request(reader))
                        conn.sendall(answer)
                    conn.shutdown(socket.SHUT_WR)
                    while conn.recv(65536):  # until the client closes: no reset on unread bytes
                        pass
        except OSError:
            pass
        finally:
            self.listener.close()

    def done(self) -> None:
        self.thread.join(15)
        assert not self.thread.is_alive()


def read_request(reader) -> tuple[bytes, dict[str, str], bytes]:
    start = reader.readline()
    headers = {}
    while True:
        line = reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    return start, headers, reader.read(int(headers.get("content-length", 0)))


def with_http_client(port: int) -> tuple[object, ...]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    import json

    try:
        conn.request("POST", PATH, json.dumps(BODY, separators=(",", ":")).encode(),
                     {"Content-Type": "application/json", "Host": f"127.0.0.1:{port}"})
        response = conn.getresponse()
        body = response.read()
        return ("answer", response.status, response.reason, body, bool(response.will_close))
    except http.client.RemoteDisconnected:  # before HTTPException: it is both
        return ("disconnected",)
    except http.client.HTTPException:
        return ("broken",)
    finally:
        conn.close()


def with_transport(port: int) -> tuple[object, ...]:
    conn = Connection("http", "127.0.0.1", port, None)
    try:
        answer = conn.post(PATH, BODY, 5, 10)
        return ("answer", answer.status, answer.reason, answer.body, answer.will_close)
    except Disconnected:
        return ("disconnected",)
    except BrokenAnswer:
        return ("broken",)
    finally:
        conn.close()


def both(response: bytes) -> tuple[tuple[object, ...], tuple[object, ...]]:
    results = []
    for client in (with_http_client, with_transport):
        server = OneShot([[response]])
        results.append(client(server.port))
        server.done()
    return results[0], results[1]


# -- generated answers ---------------------------------------------------------------

TOKEN = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-"),
                min_size=1, max_size=12)
VALUE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=30)
CRLF = st.sampled_from([b"\r\n", b"\r\n", b"\n"])


def _case(text: str) -> st.SearchStrategy[str]:
    return st.sampled_from([text, text.lower(), text.upper()])


@st.composite
def answers(draw: st.DrawFn) -> bytes:
    eol = draw(CRLF)
    out = b""
    if draw(st.integers(0, 9)) == 0:  # a 100 Continue first (skipped by both)
        out += b"HTTP/1.1 100 Continue" + eol + draw(st.sampled_from([b"", b"X-A: b" + eol])) + eol
    version = draw(st.sampled_from(["HTTP/1.1"] * 6 + ["HTTP/1.0"] * 3 + ["HTTP/0.9", "HTTP/1.2", "HTTP/2.0", "ICY"]))
    status = draw(st.one_of(st.sampled_from(["200"] * 8 + ["404", "500", "502", "503", "204", "304", "101", "400"]),
                            st.integers(0, 1200).map(str), st.sampled_from(["abc", "", "2OO"])))
    reason = draw(st.one_of(st.sampled_from(["OK", "Not Found", "Bad Gateway", ""]), VALUE))
    shape = draw(st.integers(0, 9))
    if shape == 0:
        status_line = f"{version} {status}"
    elif shape == 1:
        status_line = f"{version}  {status}   {reason}"
    else:
        status_line = f"{version} {status} {reason}"
    out += status_line.encode() + eol

    body = draw(st.one_of(
        st.sampled_from([b'{"header":{"revision":"7"},"kvs":[],"count":"0"}', b"{}", b"",
                         b'{"error":"etcdserver: request timed out","code":14}', b"<html>502</html>"]),
        st.binary(max_size=300)))
    framing = draw(st.sampled_from(["length", "length", "chunked", "chunked", "close"]))
    headers: list[tuple[str, str]] = draw(st.lists(st.tuples(TOKEN, VALUE), max_size=4))
    headers.insert(0, ("Content-Type", "application/json"))
    if framing == "length":
        length = draw(st.one_of(st.just(str(len(body))), st.just(str(len(body))),
                                st.integers(-3, len(body) + 5).map(str), st.sampled_from(["", "x", " 3 ", "+2"])))
        headers.append((draw(_case("Content-Length")), length))
        if draw(st.booleans()):
            headers.append(("Content-Length", str(draw(st.integers(0, 400)))))
    elif framing == "chunked":
        headers.append((draw(_case("Transfer-Encoding")), draw(st.sampled_from(
            ["chunked", "chunked", "Chunked", "chunked ", "gzip"]))))
        if draw(st.booleans()):
            headers.append(("Content-Length", str(draw(st.integers(0, 400)))))
    connection = draw(st.sampled_from([None, None, "close", "keep-alive", "Keep-Alive", "close, te", "Upgrade"]))
    if connection is not None:
        headers.append((draw(_case("Connection")), connection))
    if draw(st.integers(0, 4)) == 0:
        headers.append(("Keep-Alive", "timeout=5"))
    headers = draw(st.permutations(headers))
    for name, value in headers:
        out += f"{name}:{draw(st.sampled_from(['', ' ', '  ', chr(9)]))}{value}".encode() + eol
    out += eol

    if framing == "chunked":  # chunk-encoded even when the header says otherwise ("gzip")
        cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=4)))
        pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)]) if b > a]
        for piece in pieces:
            size = draw(st.sampled_from(["{:x}", "{:X}", "0{:x}", "{:x} "])).format(len(piece))
            ext = draw(st.sampled_from(["", "", ";name=value"]))
            out += f"{size}{ext}".encode() + eol + piece + eol
        out += b"0" + eol
        if draw(st.booleans()):
            out += b"Trailer-A: x" + eol
        out += eol
    else:
        out += body
    if draw(st.integers(0, 3)) == 0:  # cut short anywhere
        out = out[:draw(st.integers(0, len(out)))]
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answers())
@example(b"")  # closed before any answer
@example(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
@example(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
@example(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")  # a chunk size that is not hex
@example(b"HTTP/1.0 200 OK\r\n\r\n{}")  # close-delimited
@example(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{}")  # cut short
@example(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n{}")  # a negative length is no length
@example(b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 99 + b"\r\n")  # 99 headers and the blank line: the most
@example(b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 100 + b"\r\n")  # one more: too many
@example(b"HTTP/1.1 200 " + b"x" * 70000 + b"\r\n\r\n")  # a status line over the limit
@example(b"HTTP/1.1 200 OK\r\nX: " + b"x" * 70000 + b"\r\n\r\n")  # a header line over the limit
def test_every_answer_is_read_as_http_client_reads_it(answer: bytes) -> None:
    library, ours = both(answer)
    assert ours == library


# -- the connection's own rules ---------------------------------------------------------

OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}'


def test_the_request_is_the_one_http_client_sends() -> None:
    sent = []
    for client in (with_http_client, with_transport):
        server = OneShot([[OK]])
        client(server.port)
        server.done()
        start, headers, body = server.requests[0]
        headers["host"] = headers["host"].rsplit(":", 1)[0]  # the ports differ
        sent.append((start, headers, body))
    assert sent[0] == sent[1]
    assert sent[1][0] == b"POST /v3/kv/range HTTP/1.1\r\n"


def test_a_kept_alive_connection_serves_the_next_request() -> None:
    server = OneShot([[OK, OK.replace(b"{}", b"[]")]])
    conn = Connection("http", "127.0.0.1", server.port, None)
    try:
        assert conn.post(PATH, BODY, 5, 10).json == {}
        assert conn.post(PATH, BODY, 5, 10).json == []
    finally:
        conn.close()
    server.done()
    assert len(server.requests) == 2


def test_an_idle_connection_closed_by_the_member_is_reopened_once() -> None:
    # The first connection answers once and closes; the second request finds it closed
    # (an empty answer or a reset) and is sent again on a new connection.
    server = OneShot([[OK], [OK.replace(b"{}", b"[]")]])
    conn = Connection("http", "127.0.0.1", server.port, None)
    try:
        assert conn.post(PATH, BODY, 5, 10).json == {}
        time.sleep(0.05)  # let the close arrive; the retry is what is tested, not this wait
        assert conn.post(PATH, BODY, 5, 10).json == []
    finally:
        conn.close()
    server.done()


def test_a_fresh_connection_closed_without_an_answer_fails() -> None:
    server = OneShot([[b""]])
    conn = Connection("http", "127.0.0.1", server.port, None)
    with pytest.raises(Disconnected):
        conn.post(PATH, BODY, 5, 10)
    server.done()


def test_an_answer_that_does_not_come_times_out() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepted by the kernel, never answered
    conn = Connection("http", "127.0.0.1", listener.getsockname()[1], None)
    try:
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            conn.post(PATH, BODY, 5, 0.3)
        assert time.monotonic() - start < 5
    finally:
        conn.close()
        listener.close()


def test_a_refused_connection_is_an_os_error() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    with pytest.raises(ConnectionRefusedError):
        Connection("http", "127.0.0.1", port, None).post(PATH, BODY, 5, 5)


def test_the_json_body_is_parsed_and_a_non_json_body_is_none() -> None:
    server = OneShot([[OK.replace(b"{}", b"[]"), b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 4\r\n\r\n<h1>"]])
    conn = Connection("http", "127.0.0.1", server.port, None)
    try:
        assert conn.post(PATH, BODY, 5, 10).json == []
        answer = conn.post(PATH, BODY, 5, 10)
        assert (answer.status, answer.reason, answer.json) == (502, "Bad Gateway", None)
    finally:
        conn.close()
    server.done()
