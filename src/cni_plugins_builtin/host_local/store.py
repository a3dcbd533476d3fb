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
with go-filemutex's mode 0750, records and cursors with 0644 (the mode of
the Go plugins installed beside us, Debian's v1.1.1).

Unlike the reference, and safer:

* only files whose names are IP addresses count as records: a container
  whose ID happens to equal an address can no longer release (or "find")
  ``last_reserved_ip.0``;
* a record appears with its content or not at all (written to a scratch
  file, then hard-linked into place, which fails if the name exists — the
  exclusive create): a process killed mid-ADD cannot leave an empty record
  that no DEL would match;
* the cursor is never written through a symlink planted in its place;
* who holds what is read from an index (:mod:`.index`) that is rebuilt from
  the records whenever anybody else changed the directory: an ADD costs the
  same at 99 % of a /20 as on an empty range. A write that finds the disk
  disagreeing with the index (a name it thought free exists, a record it
  named is gone or holds another) rebuilds it and starts over (:class:`StaleIndex`),
  so a wrong index is never stamped again as it was.
"""

from __future__ import annotations

import errno
import os
import stat

from cni_plugins_builtin.host_local import index
from cni_plugins_builtin.host_local.index import Listing, address_key, key_address
from cnicore import faults
from cnicore.errors import ERR_INTERNAL, CNIError
from cnicore.ip import parse_ip
from cnicore.utils import errno_text, go_os_error, trim_space

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

    from cnicore.ip import IPAddress

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).

LAST_IP_PREFIX = "last_reserved_ip."
LINE_BREAK = "\r\n"
LOCK_NAME = "lock"
DIR_MODE = 0o755
RECORD_MODE = 0o644
#: Scratch file for a record or cursor being written (never an address, never read as a record).
SCRATCH_NAME = "cnicore.scratch"
LOCK_MODE = 0o750


def clean_join(data_dir: str, network: str) -> str:
    """Go's ``filepath.Join``: joined and lexically cleaned."""
    path = os.path.normpath(os.path.join(data_dir, network))
    return "/" + path.lstrip("/") if path.startswith("//") else path


def mkdir_all(path: str, mode: int = DIR_MODE) -> None:
    """Go's ``os.MkdirAll``, failing with the same text (``mkdir /a/f: not a directory``)."""
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
    entry; on exit it writes the index and drops the lock, closing the lock file).
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
        self._indexed = True
        try:
            self._fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, LOCK_MODE)
        except OSError:
            self._indexed = False  # a read-only store still locks and reads, without the index
            try:
                self._fd = os.open(lock_path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, LOCK_MODE)
            except OSError as exc:
                raise CNIError(ERR_INTERNAL, errno_text(exc)) from None
        self._listing: Listing | None = None
        self._dirty = False
        #: The listing was read from the records by this request: a disagreement with
        #: the disk now is a writer racing us without the lock, not a wrong index.
        self._from_records = False
        #: Bumped by each rebuild: a caller that acted on an older listing redoes its walk.
        self.generation = 0

    def __enter__(self) -> DiskStore:
        import fcntl

        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._save()
        finally:
            self.close()

    def close(self) -> None:
        """Close the lock file, which also releases the lock."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    # -- the index -------------------------------------------------------------------

    @property
    def listing(self) -> Listing:
        """Every record, from this process's copy, the lock file's index, or the records themselves."""
        if self._listing is None:
            self._listing = self._load()
        return self._listing

    def _load(self) -> Listing:
        if self._indexed:
            stamp = index.directory_stamp(os.stat(self.dir))
            warm = _WARM.get(self.dir)
            if warm is not None and warm[0] == stamp:
                return warm[1]
            try:
                listing = index.load(self._fd, stamp)
            except OSError:
                listing = None
            if listing is not None:
                _WARM[self.dir] = (stamp, listing)
                return listing
        _WARM.pop(self.dir, None)
        self._dirty = True  # rebuilt: write it whole
        self._from_records = True
        return self._read_records()

    def rebuild(self) -> bool:
        """The index disagreed with the disk: read the records again (written whole on
        exit). False, changing nothing, if the listing already came from them."""
        if self._from_records:
            return False
        _WARM.pop(self.dir, None)
        self._dirty = True
        self._from_records = True
        self._listing = self._read_records()
        self.generation += 1
        return True

    def _read_records(self) -> Listing:
        """The reference's view: every file named by an address, read."""
        listing = Listing()
        try:
            names = os.listdir(self.dir)
        except OSError:
            return listing
        for name in names:
            ip = parse_ip(name)
            if ip is None:
                continue
            text = self._holder_text(name)
            if text is not None:  # else vanished or a directory: the reference skips it too
                listing.add(name, address_key(ip), text)
        return listing

    def _holder_text(self, name: str) -> str | None:
        """What the record ``name`` says (its holder, trimmed as Go trims it), or None
        when it cannot be read (gone, or not a file)."""
        try:
            fd = os.open(self.path(name), os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            return trim_space(_read_all(fd).decode("utf-8", "surrogateescape"))
        except OSError:
            return None
        finally:
            os.close(fd)

    def _save(self) -> None:
        if not (self._dirty and self._indexed and self._listing is not None):
            return
        _WARM.pop(self.dir, None)
        faults.point("host_local.index.save")
        try:
            stamp = index.save(self._fd, self._listing, self.dir)
        except OSError:  # a full or read-only disk: the next request reads the records
            return
        if stamp is not None:
            _WARM[self.dir] = (stamp, self._listing)

    # -- reading -------------------------------------------------------------------

    def records(self) -> list[Record]:
        """Every reservation, in the reference's walk order (names sorted)."""
        entries = self.listing.entries
        return [Record(key_address(entries[name][0]), name, entries[name][1]) for name in sorted(entries)]

    def taken(self) -> dict[int, int]:
        """Records per address key (:func:`.index.address_key`): a hint for
        allocation, the exclusive create decides."""
        return self.listing.taken

    def held_by(self, *holders: str) -> list[Record]:
        """The records whose holder text is one of ``holders``, in walk order."""
        entries = self.listing.entries
        return [Record(key_address(entries[name][0]), name, entries[name][1])
                for name in self.listing.holders(holders)]

    def last_reserved_ip(self, range_id: int) -> IPAddress | None:
        """The round-robin cursor of a range set; unreadable or garbage means none."""
        try:
            with open(self.path(f"{LAST_IP_PREFIX}{range_id}"), "rb") as fh:
                text = fh.read().decode("utf-8", "replace")
        except OSError:
            return None
        return parse_ip(text)  # untrimmed, as Go's net.ParseIP(string(data))

    def owned(self, container_id: str, ifname: str) -> list[Record]:
        """The records of an attachment: ``id\\r\\nifname`` ones and legacy bare-ID ones."""
        return self.held_by(record_key(container_id, ifname), trim_space(container_id))

    def find_by_id(self, container_id: str, ifname: str) -> bool:
        return bool(self.owned(container_id, ifname))

    # -- writing -------------------------------------------------------------------

    def _write_scratch(self, data: bytes) -> str:
        """``data`` in a fresh scratch file (mode 0644) beside the records; its path.
        A leftover or a symlink planted in its place is removed first, never followed."""
        scratch = self.path(SCRATCH_NAME)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(scratch, flags, RECORD_MODE)
        except FileExistsError:
            self._unlink(scratch)
            fd = os.open(scratch, flags, RECORD_MODE)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except BaseException:
            os.close(fd)
            self._unlink(scratch)
            raise
        os.close(fd)
        return scratch

    def reserve(self, container_id: str, ifname: str, ip: IPAddress, range_id: int) -> bool:
        """Create the record for ``ip``, content and all at once; False if somebody holds it already.
        On success the set's cursor moves to ``ip``."""
        name = str(ip)
        path = self.path(name)
        key = record_key(container_id, ifname)
        self.listing  # loaded before the directory changes
        try:
            scratch = self._write_scratch(key.encode("utf-8", "surrogateescape"))
        except OSError as exc:
            raise CNIError(ERR_INTERNAL, go_os_error("open", path, exc)) from None
        self._dirty = True
        faults.point("host_local.reserve.scratch")
        try:
            os.link(scratch, path)
        except FileExistsError:
            if name not in self.listing.entries and self.rebuild():
                raise StaleIndex(name) from None  # the index missed it: start over from the records
            self._learn(name, ip)  # a lockless writer raced us: the index knows now
            return False
        except OSError as exc:
            raise CNIError(ERR_INTERNAL, go_os_error("open", path, exc)) from None
        finally:
            self._unlink(scratch)
        faults.point("host_local.reserve.linked")
        self.listing.add(name, address_key(ip), key)
        try:
            self.set_cursor(range_id, ip)
        except CNIError:
            self.release([Record(ip, name, key)])
            raise
        faults.point("host_local.reserve.cursor")
        return True

    def _learn(self, name: str, ip: IPAddress) -> None:
        text = self._holder_text(name)
        if text is not None:
            self.listing.add(name, address_key(ip), text)

    def set_cursor(self, range_id: int, ip: IPAddress) -> None:
        """Move a range set's cursor to ``ip``: the file ends up holding exactly the
        address, as Go's ``WriteFile`` leaves it, but never through a symlink
        planted in its place (that is removed first).

        Written over in place, then cut to length — not opened with ``O_TRUNC``
        as Go does: on ext4 truncating a file to zero makes ``close`` start
        writing it out (``auto_da_alloc``), 0.5–4 ms per ADD on this machine,
        against ~12 µs this way. Readers hold the lock, so none sees the
        moment between the two calls."""
        cursor = self.path(f"{LAST_IP_PREFIX}{range_id}")
        self.listing  # loaded before the directory changes
        data = str(ip).encode()
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            try:
                fd = os.open(cursor, flags, RECORD_MODE)
            except OSError as exc:
                if exc.errno != errno.ELOOP:
                    raise
                self._dirty = True
                self._unlink(cursor)
                fd = os.open(cursor, flags, RECORD_MODE)
            try:
                os.pwrite(fd, data, 0)
                os.ftruncate(fd, len(data))
            finally:
                os.close(fd)
        except OSError as exc:
            raise CNIError(ERR_INTERNAL, go_os_error("open", cursor, exc)) from None
        self._dirty = True

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
            if self._holder_text(record.name) == record.text:
                self._dirty = True
                if self._unlink(self.path(record.name)):
                    done.append(record.ip)
                self.listing.remove(record.name)
            elif self.listing.entries.get(record.name, (0, None))[1] == record.text:
                self.rebuild()  # the index named a record the disk does not have
        return done

    def release_where(self, choose: Callable[[DiskStore], list[Record]]) -> list[IPAddress]:
        """Release the records ``choose`` picks from the listing; picked again once
        if the release found the index wrong and rebuilt it."""
        generation = self.generation
        done = self.release(choose(self))
        if self.generation != generation:
            done += self.release(choose(self))
        return done

    def release_by_id(self, container_id: str, ifname: str) -> list[IPAddress]:
        """DEL: release the attachment's records; only if there are none, the
        legacy records holding the bare container ID (the reference's fallback)."""
        def mine(store: DiskStore) -> list[Record]:
            return (store.held_by(record_key(container_id, ifname))
                    or store.held_by(trim_space(container_id)))

        return self.release_where(mine)


class StaleIndex(Exception):
    """A write found the index wrong about the disk and rebuilt it from the
    records: whatever was decided from the old listing is decided again."""


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


#: This process's last trusted listing per store directory, with its stamp: a
#: warm process (a server, or a test run) skips even reading the index.
_WARM: dict[str, tuple[index.Stamp, Listing]] = {}
