"""An etcd client that fails over across endpoints within one time budget.

The transport (:mod:`.transport`, a small HTTP/1.1 client: measured
faster than ``http.client`` cold and than ``requests`` + ``etcd3gw`` cold
and warm) talks to one endpoint per
connection, so failover is ours: a request that is not answered by etcd
(connection refused or reset, a timeout, a 5xx such as "leader changed" or
"request timed out", anything but etcd's own JSON — a proxy's 502, a 404
from something else listening there, a body that is not JSON) is retried on
the next endpoint, round after round, until the operation's deadline. Only
etcd refusing the request itself (400/412/413 with its JSON error) stops at
once, and TLS failing on every endpoint (a wrong CA, a missing or wrong
client certificate: retrying cannot help) is answered at once as such. One
try is capped at a share of the budget (:func:`try_cap`), so a blackholed
endpoint cannot eat it whole; the endpoint that answered last is tried first
next time — by this process (clients and their connections are kept per
thread, for a warm process serving many requests) and by the next exec (a
small file per endpoint list in ``stateDir``, :class:`Preferred`). Every
request we send is safe to repeat: writes are transactions guarded by
compares, reads are linearizable (never ``serializable``: a minority member
answers those with stale data, and allocation must never see stale data).

The transport (and ``ssl``, for ``https://`` only) is imported when the
first connection is made, never when a launcher answers VERSION. Nothing
here imports ``base64``, ``json``, ``hashlib`` or ``threading``: each would
cost a cold exec 1-8 ms (``re`` and ``enum`` above all), so their C cores
(``binascii``, ``_sha256``, ``_thread``) are used instead.
"""

from __future__ import annotations

import binascii
import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from cni_plugins_builtin.cluster_ipam.config import EtcdSettings
    from cni_plugins_builtin.cluster_ipam.transport import Answer, Connection

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).

#: The longest one request may take before the next endpoint is tried.
MAX_TRY_SECONDS = 2.0
#: ... and the shortest cap, however small the budget's share.
MIN_TRY_SECONDS = 0.25
#: Connecting is one round trip: a member that does not accept within this is not there.
CONNECT_SECONDS = 0.5
#: HTTP statuses with which etcd's gateway refuses a request itself (with its JSON error).
REFUSALS = (400, 412, 413)


def try_cap(timeout: float, endpoints: int) -> float:
    """One try's cap: room for every endpoint and a second round within the budget."""
    return max(MIN_TRY_SECONDS, min(MAX_TRY_SECONDS, timeout / (endpoints + 1)))


class EtcdUnavailable(Exception):
    """No endpoint completed the request before the deadline. ``answered``:
    some endpoint sent an HTTP answer (it runs, but the cluster could not
    serve: no leader, no quorum)."""

    def __init__(self, answered: bool, failures: list[str]) -> None:
        self.answered = answered
        self.failures = failures
        super().__init__("; ".join(failures[-3:]) or "the time budget was spent before any endpoint was tried")


class EtcdRequestError(Exception):
    """etcd refused the request itself (a 4xx: malformed, too large): retrying cannot help."""


class EtcdTLSError(EtcdRequestError):
    """TLS failed with every endpoint (wrong CA, missing or wrong client certificate)."""


class Preferred:
    """The endpoint that answered last, for one endpoint list: kept in this process
    and in ``<stateDir>/endpoint-<hash>`` for the next exec (a cold exec would
    otherwise pay a dead first endpoint's timeout every time). Best effort: a
    state dir that cannot be written only loses the hint."""

    def __init__(self, urls: list[str], state_dir: str) -> None:
        self.key = tuple(urls)
        digest = _sha256("\n".join(urls).encode())[:16]
        self.path = os.path.join(state_dir, f"endpoint-{digest}") if state_dir else ""
        self._memory: dict[tuple[str, ...], int] = _reused().setdefault("preferred", {})

    def get(self) -> int:
        index = self._memory.get(self.key)
        if index is None and self.path:
            try:
                with open(self.path, "rb") as fh:
                    index = int(fh.read(16))
            except (OSError, ValueError):
                index = 0
            self._memory[self.key] = index
        return index or 0

    def set(self, index: int) -> None:
        if self._memory.get(self.key) == index:
            return
        self._memory[self.key] = index
        if not self.path:
            return
        try:
            os.makedirs(os.path.dirname(self.path), mode=0o755, exist_ok=True)
            scratch = f"{self.path}.{os.getpid()}"
            fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, str(index).encode())
            finally:
                os.close(fd)
            os.replace(scratch, self.path)
        except OSError:
            pass


def b64(text: str | bytes) -> str:
    """``base64.b64encode`` (without importing ``base64``, which imports ``re``)."""
    return binascii.b2a_base64(text.encode() if isinstance(text, str) else text, newline=False).decode()


def unb64(text: str) -> bytes:
    """``base64.b64decode`` (characters outside the alphabet skipped, as it does)."""
    return binascii.a2b_base64(text)


def _sha256(data: bytes) -> str:
    """``hashlib.sha256(data).hexdigest()`` from the C module, without ``hashlib``'s OpenSSL load."""
    try:
        from _sha256 import sha256  # CPython 3.11 (3.12 renamed it: hashlib then)
    except ImportError:  # pragma: no cover
        from hashlib import sha256
    return sha256(data).hexdigest()


class KV:
    """One key-value pair from a range answer (key decoded, revisions as ints)."""

    __slots__ = ("key", "value", "create_revision", "mod_revision")

    def __init__(self, raw: dict[str, Any]) -> None:
        self.key = unb64(raw["key"]).decode("utf-8", "surrogateescape")
        self.value = unb64(raw.get("value", ""))
        self.create_revision = int(raw.get("create_revision", 0))
        self.mod_revision = int(raw.get("mod_revision", 0))

    def __repr__(self) -> str:
        return f"KV({self.key!r}, c={self.create_revision}, m={self.mod_revision})"


def kvs(response: dict[str, Any]) -> list[KV]:
    """The pairs of a range response (or of a txn's ``response_range``)."""
    return [KV(raw) for raw in response.get("kvs", [])]


class Etcd:
    """The cluster behind ``settings.endpoints``; every call finishes (or gives
    up) by ``deadline`` (monotonic) when one is set, else within
    ``settings.timeout`` of its start."""

    def __init__(self, settings: EtcdSettings, deadline: float | None = None) -> None:
        self.settings = settings
        self.deadline = deadline
        self._tls = (settings.cacert, settings.cert, settings.key)
        self._clients: dict[tuple[Any, ...], Connection] = _reused().setdefault("clients", {})
        self._preferred = Preferred(settings.urls, getattr(settings, "state_dir", ""))
        self._current = self._preferred.get() % len(settings.endpoints)

    def _client(self, index: int) -> Connection:
        """The endpoint's connection; kept per thread, so a warm process reuses it,
        and per network namespace: a warm server's worker serves callers in
        different ones, and a connection belongs to the namespace it was opened in."""
        cache_key = (_netns_id(), self.settings.endpoints[index]) + self._tls
        client = self._clients.get(cache_key)
        if client is None:
            from cni_plugins_builtin.cluster_ipam.transport import Connection, tls_context

            scheme, host, port = self.settings.endpoints[index]
            context = tls_context(*self._tls) if scheme == "https" else None
            client = self._clients[cache_key] = Connection(scheme, host, port, context)
        return client

    def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` to ``/v3/<path>`` on the first endpoint that answers in time."""
        from cni_plugins_builtin.cluster_ipam.transport import BrokenAnswer

        ssl_error = _ssl_error(self.settings)
        now = time.monotonic()
        deadline = self.deadline if self.deadline is not None else now + self.settings.timeout
        count = len(self.settings.endpoints)
        cap = try_cap(self.settings.timeout, count)
        failures: list[str] = []
        tls_failed: set[int] = set()
        answered = False
        attempt = 0
        while True:
            index = (self._current + attempt) % count
            remaining = deadline - time.monotonic()
            if remaining <= 0.01:
                raise EtcdUnavailable(answered, failures)
            url = self.settings.urls[index]
            per_try = min(remaining, cap)
            try:
                answer = self._client(index).post("/v3/" + path, body, min(per_try, CONNECT_SECONDS), per_try)
            except ssl_error as exc:
                tls_failed.add(index)
                failures.append(f"{url}: {_tls_reason(exc)}")
                if len(tls_failed) == count:
                    raise EtcdTLSError("; ".join(failures[-count:])) from None
            except TimeoutError:
                failures.append(f"{url}: timed out")
            except (OSError, BrokenAnswer) as exc:
                failures.append(f"{url}: {_connection_reason(exc)}")
            else:
                answered = True
                result, problem = _etcd_answer(answer)
                if result is not None:
                    self._current = index
                    self._preferred.set(index)
                    return result
                if answer.status in REFUSALS and problem.startswith("etcd: "):
                    raise EtcdRequestError(f"{url}: {problem[6:]}")
                failures.append(f"{url}: {problem}")
            attempt += 1
            if attempt % count == 0:  # a whole round failed: let an election finish
                time.sleep(min(0.05 * (attempt // count), 0.25, max(deadline - time.monotonic(), 0)))

    # -- the operations cluster-ipam needs -------------------------------------------

    def range(self, key: str, range_end: str | None = None, *, limit: int = 0, keys_only: bool = False,
              count_only: bool = False) -> dict[str, Any]:
        """A linearizable range read (the raw answer, header included)."""
        body: dict[str, Any] = {"key": b64(key)}
        if range_end is not None:
            body["range_end"] = b64(range_end)
        if limit:
            body["limit"] = limit
        if keys_only:
            body["keys_only"] = True
        if count_only:
            body["count_only"] = True
        return self.call("kv/range", body)

    def get(self, key: str) -> KV | None:
        found = kvs(self.range(key))
        return found[0] if found else None

    def txn(self, compare: list[dict[str, Any]], success: list[dict[str, Any]],
            failure: list[dict[str, Any]] | None = None) -> tuple[bool, list[dict[str, Any]]]:
        """One transaction: ``(succeeded, responses)``. A failed txn's JSON has no
        ``succeeded`` at all (protobuf omits false)."""
        answer = self.call("kv/txn", {"compare": compare, "success": success, "failure": failure or []})
        return bool(answer.get("succeeded", False)), list(answer.get("responses", []))

    def status(self, index: int, timeout: float) -> dict[str, Any] | None:
        """``maintenance/status`` of one endpoint, or None if it does not answer in ``timeout``."""
        from cni_plugins_builtin.cluster_ipam.transport import BrokenAnswer

        try:
            answer = self._client(index).post("/v3/maintenance/status", {}, min(timeout, CONNECT_SECONDS), timeout)
        except (OSError, BrokenAnswer):
            return None
        result, _ = _etcd_answer(answer)
        return result


_local: Any = None


def _netns_id() -> tuple[int, int]:
    """The calling thread's network namespace (device and inode of its nsfs file; found
    through the process's own /proc in a warm worker: :func:`cnicore.ns.current_netns_id`)."""
    from cnicore import ns

    return ns.current_netns_id()


def _reused() -> dict[str, Any]:
    """This thread's reusable state: clients by endpoint + TLS files, preferred endpoint by list."""
    global _local
    if _local is None:
        import _thread

        _local = _thread._local()
    state: dict[str, Any] = _local.__dict__
    return state


# -- transaction pieces ---------------------------------------------------------------

def absent(key: str) -> dict[str, Any]:
    """Compare: the key does not exist."""
    return {"key": b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": 0}


def created_at(key: str, revision: int) -> dict[str, Any]:
    """Compare: the key exists and was created at ``revision``."""
    return {"key": b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": revision}


def unmodified_since(key: str, revision: int) -> dict[str, Any]:
    """Compare: the key was last written at ``revision`` (so it exists, unchanged)."""
    return {"key": b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": revision}


def put(key: str, value: bytes) -> dict[str, Any]:
    return {"request_put": {"key": b64(key), "value": b64(value)}}


def delete(key: str) -> dict[str, Any]:
    return {"request_delete_range": {"key": b64(key)}}


def read(key: str) -> dict[str, Any]:
    return {"request_range": {"key": b64(key)}}


def count(key: str, range_end: str) -> dict[str, Any]:
    """A txn read of how many keys lie in ``[key, range_end)`` (no keys sent back)."""
    return {"request_range": {"key": b64(key), "range_end": b64(range_end), "count_only": True}}


def _etcd_answer(response: Answer) -> tuple[dict[str, Any] | None, str]:
    """``(answer, "")`` for etcd's JSON 200, else ``(None, why)``; ``why`` starts
    with ``etcd: `` when etcd itself sent the error (its JSON)."""
    obj = response.json
    status = response.status
    if status == 200:
        if isinstance(obj, dict):
            return obj, ""
        return None, "HTTP 200 without etcd's JSON answer"
    if isinstance(obj, dict) and (obj.get("error") or obj.get("message")):
        return None, f"etcd: {obj.get('error') or obj.get('message')}"[:300]
    return None, f"HTTP {status} {response.reason or ''}".rstrip()


def _ssl_error(settings: EtcdSettings) -> type[Exception]:
    """``ssl.SSLError`` when an endpoint is ``https://`` (its connections load ``ssl``
    anyway), else a class nothing raises: plain ``http://`` never imports ``ssl``."""
    if not any(scheme == "https" for scheme, _, _ in settings.endpoints):
        return _NoSSL
    import ssl

    return ssl.SSLError


class _NoSSL(Exception):
    """Never raised: stands for ``ssl.SSLError`` when no endpoint speaks TLS."""


def _tls_reason(exc: Exception) -> str:
    text = str(exc)
    start = text.find("[SSL")
    if start < 0:
        return "TLS: handshake failed"
    return "TLS: " + text[start:].split("'")[0].split('"')[0].rstrip(" (),")[:200]


def _connection_reason(exc: Exception) -> str:
    text = str(exc)
    if "refused" in text:
        return "connection refused"
    if "reset" in text.lower():
        return "connection reset"
    return "connection failed"
