"""Go's net/rpc over HTTP on a unix socket: the client the plugin uses and the
connection loop the daemon runs.

As net/rpc's ``DialHTTP``/``HandleHTTP`` (golang/go src/net/rpc): the client
sends ``CONNECT /_goRPC_ HTTP/1.0`` and a blank line, the server answers
``HTTP/1.0 200 Connected to Go RPC`` and a blank line, and from then on each
side writes one gob stream (:mod:`.gob`): a call is a ``Request`` header and
the arguments, an answer a ``Response`` header and the reply (with an error,
``Error`` set and an empty struct). The error texts are net/rpc's, so the
plugin can print the reference plugin's messages around them.
"""

from __future__ import annotations

from .gob import Decoder, Encoder, GobError
from .messages import EMPTY, REQUEST, RESPONSE, typed

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from io import BufferedIOBase
    from typing import Any

    from .gob import GoType

    Method = Callable[[dict[str, Any]], tuple[GoType, Any]]

RPC_PATH = "/_goRPC_"
CONNECTED = "200 Connected to Go RPC"


class DialError(Exception):
    """The connection or the HTTP handshake failed (the reference: 'error dialing DHCP daemon: ...')."""


class CallError(Exception):
    """The call failed: the server's error, or the stream broke ('error calling M: ...')."""


def _quote(text: str) -> str:
    import json

    return json.dumps(text)  # Go's %q, near enough for a message


def _read_line(rfile: BufferedIOBase) -> str:
    """One line of an HTTP head, LF or CRLF (as Go's reader)."""
    line = rfile.readline(8192)
    if not line.endswith(b"\n"):
        raise EOFError("unexpected EOF")
    return line.rstrip(b"\r\n").decode("latin-1")


def _read_head(rfile: BufferedIOBase) -> list[str]:
    """An HTTP head's lines up to the blank one."""
    lines: list[str] = []
    while text := _read_line(rfile):
        lines.append(text)
    return lines


def dial(path: str, timeout: float) -> tuple[Any, BufferedIOBase]:
    """``rpc.DialHTTP("unix", path)``: the connected socket and its reader."""
    import socket

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except OSError as exc:
        sock.close()
        from cnicore.utils import errno_text

        raise DialError(f"dial unix {path}: connect: {errno_text(exc)}") from None
    rfile = sock.makefile("rb")
    try:
        sock.sendall(f"CONNECT {RPC_PATH} HTTP/1.0\n\n".encode())
        status_line = _read_line(rfile)
        problem = _status_problem(status_line)  # Go judges the status line before the rest
        if problem:
            raise DialError(f"dial-http unix {path}: {problem}")
        _read_head(rfile)
        status = status_line.partition(" ")[2].lstrip(" ")
        if status != CONNECTED:
            raise DialError(f"dial-http unix {path}: unexpected HTTP response: {status}")
    except (OSError, EOFError) as exc:
        rfile.close()
        sock.close()
        raise DialError(f"dial-http unix {path}: {_failure(exc)}") from None
    except DialError:
        rfile.close()
        sock.close()
        raise
    return sock, rfile


def _status_problem(line: str) -> str:
    """What is malformed in the status line of the server's answer, in Go's words
    (net/http's ReadResponse); '' when it parses."""
    proto, space, status = line.partition(" ")
    if not space:
        return f"malformed HTTP response {_quote(line)}"
    status = status.lstrip(" ")
    code = status.partition(" ")[0]
    if len(code) != 3 or not code.isdigit():
        return f"malformed HTTP status code {_quote(code)}"
    if not proto.startswith("HTTP/"):
        return f"malformed HTTP version {_quote(proto)}"
    return ""


def _failure(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "i/o timeout"
    if isinstance(exc, EOFError):
        return "unexpected EOF"
    if isinstance(exc, OSError):
        from cnicore.utils import errno_text

        return errno_text(exc)
    return str(exc)


def call(path: str, method: str, args: dict[str, Any], args_type: GoType, timeout: float = 300.0) -> Any:
    """One call on a fresh connection, as the reference's plugin makes it: the reply
    value (a dict for a struct), or CallError with the server's error text."""
    sock, rfile = dial(path, timeout)
    try:
        encoder = Encoder()
        sock.sendall(encoder.encode({"ServiceMethod": method, "Seq": 0}, REQUEST) + encoder.encode(args, args_type))
        decoder = Decoder()
        _id, header = decoder.read(rfile.read)
        error = typed(header, "Error", str, "")
        _id, reply = decoder.read(rfile.read)
    except (OSError, EOFError, GobError) as exc:
        raise CallError(_failure(exc)) from None
    finally:
        rfile.close()
        sock.close()
    if error:
        raise CallError(error)
    return reply


def serve_connection(rfile: BufferedIOBase, write: Callable[[bytes], Any], service: str,
                     methods: dict[str, Method]) -> None:
    """Answer one client, as net/rpc's HTTP handler and ServeConn: the handshake, then
    calls until the client hangs up. A method raising an exception answers its text."""
    try:
        head = _read_head(rfile)
    except EOFError:
        return
    verb, _, rest = (head[0] if head else "").partition(" ")
    target = rest.partition(" ")[0]
    if verb != "CONNECT" or target != RPC_PATH:
        status, body = (("405 Method Not Allowed", "405 must CONNECT\n") if target == RPC_PATH
                        else ("404 Not Found", "404 page not found\n"))
        write(f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n"
              f"Content-Length: {len(body)}\r\n\r\n{body}".encode())
        return
    write(f"HTTP/1.0 {CONNECTED}\n\n".encode())
    decoder, encoder = Decoder(), Encoder()
    while True:
        try:
            _id, header = decoder.read(rfile.read)
            name = typed(header, "ServiceMethod", str, "")
            seq = typed(header, "Seq", int, 0)
            _id, args = decoder.read(rfile.read)
        except EOFError:
            return
        except GobError:  # net/rpc: 'rpc: server cannot decode request', and the connection ends
            return
        answer: dict[str, Any] = {"ServiceMethod": name, "Seq": seq}
        service_name, dot, method_name = name.rpartition(".")
        if not dot:
            answer["Error"] = f"rpc: service/method request ill-formed: {name}"
        elif service_name != service:
            answer["Error"] = f"rpc: can't find service {name}"
        elif method_name not in methods:
            answer["Error"] = f"rpc: can't find method {name}"
        elif not isinstance(args, dict):
            answer["Error"] = "gob: type mismatch: the arguments are not a struct"
        else:
            saved = encoder.snapshot()
            try:
                reply_type, reply = methods[method_name](args)
                message = encoder.encode(answer, RESPONSE) + encoder.encode(reply, reply_type)
            except Exception as exc:  # noqa: BLE001 - every failure goes back to the caller, as Go's error
                encoder.restore(saved)
                answer["Error"] = str(exc) or type(exc).__name__
        if "Error" in answer:
            message = encoder.encode(answer, RESPONSE) + encoder.encode({}, EMPTY)
        write(message)
