"""The on-disk store, byte-compatible with the reference's ``disk`` backend.

``<dataDir>/<network name>/`` holds:

* one file per reserved address, named by the address as Go prints it,
  created exclusively (``O_EXCL``, so two allocators can never both win),
  holding ``<containerID>\\r\\n<ifname>`` without a trailing newline; files
  written by older versions hold the bare container ID;
* ``last_reserved_ip.<set index>``: the address last handed out from that
  range set, the round-robin cursor;
* ``lock``: ``flock(LOCK_EX)`` on it serialises every read-modify-write,
  ours and the reference's alike.

Directories are created like Go's ``os.MkdirAll(dir, 0755)``, the lock file
with go-filemutex's mode 0750, records with 0600 (upstream's mode since
v1.2; Debian's v1.1.1 uses 0644 — either reads the other's).

Unlike the reference, only files whose names are IP addresses count as
records: a container whose ID happens to equal an address can no longer
release (or "find") ``last_reserved_ip.0``.
"""

from __future__ import annotations

import os

from cnicore.errors import CNIError, ERR_INTERNAL

from cni_plugins_builtin.host_local.gotext import errno_text, go_os_error, trim_space
from cnicore.goip import parse_ip

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnicore.goip import IPAddress

LAST_IP_PREFIX = "last_reserved_ip."
LINE_BREAK = "\r\n"
LOCK_NAME = "lock"
DIR_MODE = 0o755
RECORD_MODE = 0o600
LOCK_MODE = 0o750


def clean_join(data_dir: str, network: str) -> str:
    """Go's ``filepath.Join``: joined and lexically cleaned."""
    path = os.path.normpath(os.path.join(data_dir, network))
    return "/" + path.lstrip("/") if path.startswith("//") else path


def mkdir_all(path: str, mode: int = DIR_MODE) -> None:
    """Go's ``os.MkdirAll``, failing with the same text (``mkdir /a/f: not a directory``)."""
    import errno
    import stat

    try:
        st = os.stat(path)
    except OSError:
        pass
    else:
        if stat.S_ISDIR(st.st_mode):
            return
        raise CNIError(ERR_INTERNAL, go_os_error("mkdir", path, OSError(errno.ENOTDIR, "")))
    trimmed = path.rstrip("/")
    parent = trimmed[:trimmed.rfind("/") + 1] if "/" in trimmed else ""
    if len(parent) > 1:
        mkdir_all(parent.rstrip("/") or "/", mode)
    try:
        os.mkdir(path, mode)
    except OSError as exc:
        if os.path.isdir(path) and not os.path.islink(path):
            return
        raise CNIError(ERR_INTERNAL, go_os_error("mkdir", path, exc)) from None


class Record:
    """One reserved address: ``ip`` and who holds it (``ifname`` is ``None`` for
    the legacy bare-ID form). ``text`` is the file content, trimmed as Go trims it."""

    __slots__ = ("ip", "name", "text", "container_id", "ifname")

    def __init__(self, ip: IPAddress, name: str, text: str) -> None:
        self.ip = ip
        self.name = name
        self.text = text
        cid, sep, ifname = text.partition(LINE_BREAK)
        self.container_id = cid
        self.ifname: str | None = ifname if sep else None

    def __repr__(self) -> str:
        return f"Record({self.ip}, {self.text!r})"


def record_key(container_id: str, ifname: str) -> str:
    """The content of a record file for this attachment."""
    return trim_space(container_id) + LINE_BREAK + ifname


class DiskStore:
    """The store of one network; ``with DiskStore(...) as store`` holds its lock.

    Every method expects the lock to be held (the context manager takes it on
    entry and drops it, closing the lock file, on exit).
    """

    def __init__(self, data_dir: str, network: str, create: bool = True) -> None:
        """``create=False`` for verbs that must not leave directories behind
        (GC, STATUS): a missing network directory raises FileNotFoundError."""
        self.dir = clean_join(data_dir, network)
        if create:
            mkdir_all(self.dir)
        elif not os.path.isdir(self.dir):
            raise FileNotFoundError(self.dir)
        lock_path = os.path.join(self.dir, LOCK_NAME)
        try:
            self._fd = os.open(lock_path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, LOCK_MODE)
        except OSError as exc:
            raise CNIError(ERR_INTERNAL, errno_text(exc)) from None

    def __enter__(self) -> DiskStore:
        import fcntl

        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the lock file, which also releases the lock."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    # -- reading -------------------------------------------------------------------

    def records(self) -> list[Record]:
        """Every reservation, in the reference's walk order (names sorted)."""
        out: list[Record] = []
        try:
            names = sorted(os.listdir(self.dir))
        except OSError:
            return out
        for name in names:
            ip = parse_ip(name)
            if ip is None:
                continue
            try:
                with open(self.path(name), "rb") as fh:
                    data = fh.read()
            except OSError:  # vanished, or a directory: the reference skips it too
                continue
            out.append(Record(ip, name, trim_space(data.decode("utf-8", "surrogateescape"))))
        return out

    def last_reserved_ip(self, range_id: int) -> IPAddress | None:
        """The round-robin cursor of a range set; unreadable or garbage means none."""
        try:
            with open(self.path(f"{LAST_IP_PREFIX}{range_id}"), "rb") as fh:
                text = fh.read().decode("utf-8", "replace")
        except OSError:
            return None
        return parse_ip(text)  # untrimmed, as Go's net.ParseIP(string(data))

    @staticmethod
    def owned_by(records: list[Record], container_id: str, ifname: str) -> list[Record]:
        """The records of an attachment: ``id\\r\\nifname`` ones and legacy bare-ID ones."""
        key = record_key(container_id, ifname)
        bare = trim_space(container_id)
        return [r for r in records if r.text == key or r.text == bare]

    def find_by_id(self, container_id: str, ifname: str) -> bool:
        return bool(self.owned_by(self.records(), container_id, ifname))

    # -- writing -------------------------------------------------------------------

    @staticmethod
    def _write_fd(fd: int, data: bytes) -> None:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)

    def reserve(self, container_id: str, ifname: str, ip: IPAddress, range_id: int) -> bool:
        """Create the record for ``ip``; False if somebody holds it already.
        On success the set's cursor moves to ``ip``."""
        path = self.path(str(ip))
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, RECORD_MODE)
        except FileExistsError:
            return False
        except OSError as exc:
            raise CNIError(ERR_INTERNAL, go_os_error("open", path, exc)) from None
        try:
            self._write_fd(fd, record_key(container_id, ifname).encode("utf-8", "surrogateescape"))
        except OSError as exc:
            self._unlink(path)
            raise CNIError(ERR_INTERNAL, go_os_error("write", path, exc)) from None
        cursor = self.path(f"{LAST_IP_PREFIX}{range_id}")
        try:
            fd = os.open(cursor, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, RECORD_MODE)
            self._write_fd(fd, str(ip).encode())
        except OSError as exc:
            self._unlink(path)
            raise CNIError(ERR_INTERNAL, go_os_error("open", cursor, exc)) from None
        return True

    @staticmethod
    def _unlink(path: str) -> bool:
        try:
            os.unlink(path)
        except FileNotFoundError:
            return False
        return True

    def release(self, records: list[Record]) -> list[IPAddress]:
        """Remove these records (skipping any whose file changed meanwhile); the
        addresses actually released."""
        done = []
        for record in records:
            try:
                with open(self.path(record.name), "rb") as fh:
                    current = trim_space(fh.read().decode("utf-8", "surrogateescape"))
            except OSError:
                continue
            if current == record.text and self._unlink(self.path(record.name)):
                done.append(record.ip)
        return done

    def release_by_id(self, container_id: str, ifname: str) -> list[IPAddress]:
        """DEL: release the attachment's records; only if there are none, the
        legacy records holding the bare container ID (the reference's fallback)."""
        records = self.records()
        key = record_key(container_id, ifname)
        mine = [r for r in records if r.text == key]
        if not mine:
            bare = trim_space(container_id)
            mine = [r for r in records if r.text == bare]
        return self.release(mine)
