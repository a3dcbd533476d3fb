"""The store's index: every reservation and its holder, trusted without reading the records.

Why: an ADD must know who holds what (the duplicate check) and which
addresses are taken. Reading every record, as the reference does, costs one
open/read/close per address: at 99 % of a /20 that is ~4,000 files per ADD,
more than Go's whole exec. The index makes that cost independent of how
full the range is.

Where: in the store's ``lock`` file, which both implementations only ever
``flock`` (Go never reads, writes or truncates it). The store's file names
and record bytes stay exactly the reference's, so a directory listing of a
store written by us equals one written by Go.

Format: a fixed 128-byte header ``cnicore-host-local-index 2 <mtime> <ctime>
<dev> <inode> <length>`` then ``length`` bytes of log lines, ``+<name> <address
key> <holder hex>`` for a record created and ``-<name>`` for one removed,
compacted when it grows. An address key is the address as an integer, IPv6
ones with bit 128 set (:func:`address_key`): allocation walks integers, not
address objects.

When it is trusted (the whole point): the header's stamp must equal the
directory's :func:`directory_stamp` — its mtime and ctime in nanoseconds and
its identity (device, inode). Every writer — Go, us, an administrator —
changes the directory's mtime when it creates, renames or removes a record;
after our own changes (under the store's lock) we set the directory's mtime
to *one nanosecond before* what the kernel just gave it and write that value
as the stamp. No later change can produce that value again: the kernel stamps
changes with the current time, which is never earlier than the mtime we read.
Setting the mtime back by hand (``touch -d``, ``utime``) moves the ctime on,
which nobody can set; a copy of the store (``cp -a``, which restores the
mtime, and copies the lock file and the records at different moments) is
another directory, with another inode. So any change by anyone since our last
write makes the stamp stale and the index is rebuilt from the records, as the
reference reads them. Not seen: a record's bytes rewritten in place (neither
implementation ever does that), a change *and* an mtime reset both in the
clock tick of our stamp on kernels with coarse timestamps (before 6.13; then
the first write that meets the disagreement rebuilds the index, see
:meth:`.store.DiskStore.rebuild`), and filesystems whose timestamps are
coarser than a nanosecond (detected: the stamp does not read back, and the
index is never trusted there).

Crash safety: log lines are written past the valid length first and the
header last, and the directory has changed meanwhile; a process killed
anywhere in between leaves a header whose stamp no longer matches.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnicore.ip import IPAddress

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).

MAGIC = b"cnicore-host-local-index 2 "
V6_FLAG = 1 << 128
HEADER_SIZE = 128
#: Compact when the log is this many times the live entries' size (and not tiny).
COMPACT_FACTOR = 3
COMPACT_MIN = 64 * 1024


#: What the index is trusted against: the directory's (mtime, ctime, st_dev, st_ino).
Stamp = tuple[int, int, int, int]


def directory_stamp(st: os.stat_result) -> Stamp:
    """The directory as the index records it: changed by any write to it,
    by resetting its mtime (the ctime moves), and by copying it (another inode)."""
    return st.st_mtime_ns, st.st_ctime_ns, st.st_dev, st.st_ino


def header(stamp: Stamp, length: int) -> bytes:
    """The index's header for ``length`` log bytes trusted while the directory has ``stamp``."""
    return (MAGIC + b"%d %d %d %d %d" % (*stamp, length)).ljust(HEADER_SIZE - 1) + b"\n"


def address_key(ip: IPAddress) -> int:
    """One integer per address, the two families apart."""
    return int(ip) if ip.version == 4 else int(ip) | V6_FLAG


def key_address(key: int) -> IPAddress:
    from ipaddress import IPv4Address, IPv6Address

    return IPv6Address(key ^ V6_FLAG) if key & V6_FLAG else IPv4Address(key)


class Listing:
    """The records of one store: ``entries`` maps a file name to (its address
    key, its holder text trimmed as Go trims it); ``taken`` counts names per
    address and ``by_holder`` lists names per holder, so neither the allocation
    nor the duplicate check walks the entries."""

    __slots__ = ("entries", "taken", "by_holder", "log", "length", "live_bytes")

    def __init__(self) -> None:
        self.entries: dict[str, tuple[int, str]] = {}
        self.taken: dict[int, int] = {}
        self.by_holder: dict[str, set[str]] = {}
        self.log: list[bytes] = []  # lines not yet written
        self.length = -1  # valid log bytes on disk; -1: the whole index must be written
        self.live_bytes = 0

    def add(self, name: str, address: int, holder: str) -> None:
        self.remove(name)
        self.entries[name] = (address, holder)
        self.taken[address] = self.taken.get(address, 0) + 1
        self.by_holder.setdefault(holder, set()).add(name)
        line = _add_line(name, address, holder)
        self.live_bytes += len(line)
        self.log.append(line)

    def remove(self, name: str) -> None:
        old = self.entries.pop(name, None)
        if old is None:
            return
        address, holder = old
        names = self.by_holder[holder]
        names.discard(name)
        if not names:
            del self.by_holder[holder]
        left = self.taken[address] - 1
        if left:
            self.taken[address] = left
        else:
            del self.taken[address]
        self.live_bytes -= len(_add_line(name, *old))
        self.log.append(b"-" + name.encode("utf-8", "surrogateescape") + b"\n")

    def holders(self, texts: tuple[str, ...]) -> list[str]:
        """Names of the records whose holder is one of ``texts``, sorted like the reference's walk."""
        by_holder = self.by_holder
        return sorted(name for text in set(texts) for name in by_holder.get(text, ()))


def _add_line(name: str, address: int, holder: str) -> bytes:
    return b"+%s %d %s\n" % (name.encode("utf-8", "surrogateescape"), address,
                             holder.encode("utf-8", "surrogateescape").hex().encode())


def load(fd: int, stamp: Stamp) -> Listing | None:
    """The index in ``fd`` if its stamp is ``stamp`` and it parses; else None."""
    head = os.pread(fd, HEADER_SIZE, 0)
    if len(head) != HEADER_SIZE or not head.startswith(MAGIC):
        return None
    try:
        *stamp_texts, length_text = head[len(MAGIC):].split()
        if tuple(int(text) for text in stamp_texts) != stamp:
            return None
        length = int(length_text)
    except ValueError:
        return None
    body = os.pread(fd, length, HEADER_SIZE) if length else b""
    if len(body) != length:
        return None
    listing = Listing()
    entries, taken, by_holder = listing.entries, listing.taken, listing.by_holder
    try:
        for line in body.split(b"\n")[:-1]:
            if line[:1] == b"+":
                raw_name, raw_address, raw_holder = line[1:].split(b" ")
                name = raw_name.decode("utf-8", "surrogateescape")
                listing.remove(name)
                address = int(raw_address)
                holder = bytes.fromhex(raw_holder.decode()).decode("utf-8", "surrogateescape")
                entries[name] = (address, holder)
                taken[address] = taken.get(address, 0) + 1
                names = by_holder.get(holder)
                if names is None:
                    by_holder[holder] = {name}
                else:
                    names.add(name)
                listing.live_bytes += len(line) + 1
            elif line[:1] == b"-":
                listing.remove(line[1:].decode("utf-8", "surrogateescape"))
            else:
                return None
    except ValueError:
        return None
    listing.log.clear()
    listing.length = length
    return listing


def stamp_directory(path: str) -> Stamp | None:
    """Give the directory an mtime no later change can produce; its stamp, or None
    where the filesystem cannot keep nanoseconds (then the index is never trusted)."""
    st = os.stat(path)
    mtime = st.st_mtime_ns - 1
    os.utime(path, ns=(st.st_atime_ns, mtime))
    st = os.stat(path)
    return directory_stamp(st) if st.st_mtime_ns == mtime else None


def save(fd: int, listing: Listing, directory: str) -> Stamp | None:
    """Write what changed, stamp the directory, then the header; the stamp (or None)."""
    compact = listing.length < 0 or (
        listing.length > COMPACT_MIN and listing.length > COMPACT_FACTOR * listing.live_bytes)
    if compact:
        os.pwrite(fd, b"\0" * HEADER_SIZE, 0)
        body = b"".join(_add_line(name, *entry) for name, entry in listing.entries.items())
        _pwrite_all(fd, body, HEADER_SIZE)
        os.ftruncate(fd, HEADER_SIZE + len(body))
        length = len(body)
    else:
        body = b"".join(listing.log)
        _pwrite_all(fd, body, HEADER_SIZE + listing.length)
        length = listing.length + len(body)
    listing.log.clear()
    stamp = stamp_directory(directory)
    if stamp is None:
        listing.length = -1
        return None
    os.pwrite(fd, header(stamp, length), 0)
    listing.length = length
    return stamp


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        done = os.pwrite(fd, view, offset)
        view = view[done:]
        offset += done
