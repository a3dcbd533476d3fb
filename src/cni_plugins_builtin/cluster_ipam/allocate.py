"""ADD: claim one address per range set and the attachment record in one transaction.

The transaction compares ``create_revision == 0`` on the attachment key and
on every chosen address key and, only if all hold, writes them all: an
address is never handed out twice, and an ADD is all or nothing, whatever
the number of families. When it fails, its failure branch reads the
attachment and the address keys back in the same revision:

* the attachment exists — this container and interface already hold
  addresses (a retried ADD, perhaps one whose first answer was lost to a
  timeout): they are returned as they are;
* an address was taken — a requested one is an error (host-local's
  wording); otherwise another is chosen for that set and the txn repeated.

Before any write, one linearizable read of the attachment key: it needs a
quorum, so a cluster without one sees no proposal that could commit after
the ADD has failed (a timed-out write is not a failed one: it can land when
the cluster heals), and a retried ADD is answered from it.

Choosing, by the allocation index (:mod:`.index`): the first read also
reads the bitmap of a random guess per set and, for a set of at most
``MAX_SUMMARIES`` summaries, its summaries, edge bitmaps and ``PROBES``
random bitmaps; the guess is taken if free, else a free address of a
bitmap already read, else of one the summaries show with room (one more
read); none anywhere is host-local's "no IP addresses available", decided
by that first read. The transaction sets the address's bit in the same
commit (comparing the bitmap as read), so concurrent ADDs collide only in
the same 64 addresses. Sets too large for summaries fall back, after a few
random bitmaps, to :func:`find_free` (the count-guided key search, then
:func:`scan_for_gap`, exact). Unlike host-local there is no round-robin
cursor: a shared cursor would be a hot key every ADD of the cluster writes.
"""

from __future__ import annotations

import time

from cni_plugins_builtin.cluster_ipam import chance
from cni_plugins_builtin.cluster_ipam import etcd as kv
from cni_plugins_builtin.cluster_ipam.index import (
    CHUNK_SHIFT,
    CHUNK_SIZE,
    CHUNKS_PER_SUMMARY,
    SUMMARY_SHIFT,
    Index,
    IndexChanged,
    open_index,
)
from cni_plugins_builtin.cluster_ipam.model import Attachment, Keys, ip_value
from cni_plugins_builtin.host_local.config import fail

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Sequence

    from cni_plugins_builtin.cluster_ipam.config import ClusterSettings
    from cni_plugins_builtin.cluster_ipam.etcd import Etcd
    from cni_plugins_builtin.host_local.config import IPAMConfig, Range, RangeSet
    from cnicore.ip import IPAddress

#: Transactions one ADD may lose to concurrent ADDs before giving up.
MAX_ROUNDS = 50
#: Addresses (and keys) per read of a scan, and gaps collected before one is picked.
SCAN_PAGE = 2000
GAPS = 32
#: Windows counted per round trip, the size of a window whose keys are read, and the
#: most counts in one transaction (etcd allows 128 operations).
FANOUT = 16
LEAF = 256
MAX_COUNTS = 64
#: The first, blind read: at 90 % occupancy spread evenly, 64 addresses hold a free one but for 1 in 800.
PROBE = 64
#: A range set spanning at most this many index summaries (of 65,536 addresses each) is
#: judged by them: its summaries and edge bitmaps are read with the first read.
MAX_SUMMARIES = 16
MAX_EDGES = 48
#: Random bitmaps of a set read with the first read besides the guess's.
PROBES = 24
#: Random bitmaps read in a larger set before the count-guided search of its keys.
LARGE_TRIES = 3


class Exhausted(Exception):
    """A whole range set was scanned and every address is taken."""


def _usable(rangeset: RangeSet) -> list[tuple[Range, int, int]]:
    """``(range, first, last)`` as integers per range of the set."""
    return [(rng, int(rng.start), int(rng.end)) for rng in rangeset.ranges]


def _address(rng: Range, value: int) -> IPAddress:
    return type(rng.start)(value)


def random_guess(rangeset: RangeSet) -> IPAddress | None:
    """A random address of the set that is not a gateway (the first guess, before
    anything is known taken)."""
    spans = _usable(rangeset)
    total = sum(last - first + 1 for _, first, last in spans)
    for _ in range(8):
        offset = chance.below(total)
        for rng, first, last in spans:
            size = last - first + 1
            if offset < size:
                ip = _address(rng, first + offset)
                if ip != rng.gateway:
                    return ip
                break
            offset -= size
    return None


def find_free(etcd: Etcd, keys: Keys, rangeset: RangeSet, taken: set[IPAddress]) -> IPAddress:
    """A free address of the set, found in a number of reads that does not grow with
    how full the set is or where its free addresses lie.

    First the keys of one random window of ``PROBE`` addresses are read: in a pool
    with room spread through it, that finds a gap. Else one transaction of
    ``count_only`` reads (one round trip, linearizable) counts
    the keys of up to ``FANOUT`` windows; a window with fewer keys than addresses
    certainly holds a free one (foreign keys only add to a count), so a random
    such window is split again, down to ``LEAF`` addresses, whose keys are read:
    about four round trips for a /16 at any occupancy. When no window has room
    — the set is full, or keys that are not addresses fill the count — the set
    is scanned key by key (:func:`scan_for_gap`), which is exact."""
    spans = _usable(rangeset)
    rng, first, last = chance.choice(spans)
    low = chance.between(first, max(first, last - PROBE + 1))
    gaps = _gaps(etcd, keys, rng, low, min(low + PROBE - 1, last), taken)  # a pool with room: done in one read
    if gaps:
        return chance.choice(gaps)
    windows = [part for window in spans for part in _split(window, max(1, FANOUT // len(spans)))]
    while windows:
        counts = _count(etcd, keys, windows[:MAX_COUNTS])
        roomy = [w for w, count in zip(windows, counts) if count < _size(w)]
        if not roomy:
            break
        rng, low, high = chance.choice(roomy)
        if high - low + 1 <= LEAF:
            gaps = _gaps(etcd, keys, rng, low, high, taken)
            if gaps:
                return chance.choice(gaps)
            break  # taken meanwhile (or only by this ADD's own collisions): the exact scan decides
        windows = _split((rng, low, high), FANOUT)
    return scan_for_gap(etcd, keys, rangeset, taken)


def _split(window: tuple[Range, int, int], parts: int) -> list[tuple[Range, int, int]]:
    rng, low, high = window
    step = max(1, -(-(high - low + 1) // parts))
    return [(rng, start, min(start + step - 1, high)) for start in range(low, high + 1, step)]


def _size(window: tuple[Range, int, int]) -> int:
    """Addresses of the window that can be handed out (its gateway excluded)."""
    rng, low, high = window
    gateway = int(rng.gateway) if rng.gateway.version == rng.start.version else -1
    return high - low + 1 - (1 if low <= gateway <= high else 0)


def _count(etcd: Etcd, keys: Keys, windows: list[tuple[Range, int, int]]) -> list[int]:
    """The number of keys in each window's key range, all at one revision."""
    _, responses = etcd.txn([], [kv.count(keys.ip(_address(rng, low)), keys.ip(_address(rng, high)) + "\x00")
                                 for rng, low, high in windows])
    return [int(response.get("response_range", {}).get("count", 0)) for response in responses]


def _gaps(etcd: Etcd, keys: Keys, rng: Range, low: int, high: int, taken: set[IPAddress]) -> list[IPAddress]:
    """The free addresses of one small window (its keys read, foreign ones stepped over)."""
    return _free_in(etcd, keys, rng, low, high, taken, high - low + 1)


def _free_in(etcd: Etcd, keys: Keys, rng: Range, low: int, high: int, taken: set[IPAddress],
             want: int) -> list[IPAddress]:
    """Up to ``want`` free addresses of ``low .. high`` in ``rng``, in order, read window by
    window. Keys are compared as integers (no address objects per key: a full /16 is
    65,000 of them), and only keys exactly of an address's form count as taken."""
    version = rng.start.version
    prefix, width = keys.ip_prefix(version), 8 if version == 4 else 32
    gateway = int(rng.gateway) if rng.gateway.version == version else -1
    taken_values = {int(ip) for ip in taken if ip.version == version}
    found: list[int] = []
    start_key: str | None = None
    while low <= high and len(found) < want:
        window_high = min(low + SCAN_PAGE - 1, high)
        answer = etcd.range(start_key or keys.ip(_address(rng, low)),
                            keys.ip(_address(rng, window_high)) + "\x00", limit=SCAN_PAGE, keys_only=True)
        names = [kv.unb64(item["key"]).decode("utf-8", "surrogateescape") for item in answer.get("kvs", [])]
        used = _address_values(names, prefix, width)
        more = bool(answer.get("more")) and bool(names)
        upto = _last_covered(keys, rng, low, window_high, names[-1]) if more else window_high
        for value in range(low, upto + 1):
            if value not in used and value != gateway and value not in taken_values:
                found.append(value)
                if len(found) >= want:
                    break
        low = upto + 1
        start_key = names[-1] + "\x00" if more else None
    return [_address(rng, value) for value in found]


HEX_DIGITS = "0123456789abcdef"


def _address_values(names: list[str], prefix: str, width: int) -> set[int]:
    """The addresses (as integers) that these key names hold; foreign names left out."""
    size = len(prefix) + width
    return {int(name[-width:], 16) for name in names
            if len(name) == size and name.startswith(prefix) and not name[-width:].strip(HEX_DIGITS)}


def scan_for_gap(etcd: Etcd, keys: Keys, rangeset: RangeSet, taken: set[IPAddress]) -> IPAddress:
    """A free address found by reading the set's keys from a random point round to it.

    Each read covers a window of ``SCAN_PAGE`` addresses, never "to the end of the
    range with a limit": etcd 3.4 walks the whole requested range for every such
    page (it counts it), so a scan of a full /16 cost seconds. Pages follow the
    keys, not the addresses: a window may hold foreign keys (``0a000005.bak``,
    written by hand), and the next read starts after the last key seen."""
    spans = _usable(rangeset)
    start_range = chance.below(len(spans))
    rng, first, last = spans[start_range]
    origin = chance.between(first, last)
    order = spans[start_range:] + spans[:start_range] + [spans[start_range]]
    for step, (rng, first, last) in enumerate(order):
        low = origin if step == 0 else first
        high = origin - 1 if step == len(order) - 1 else last
        gaps = _free_in(etcd, keys, rng, low, high, taken, GAPS)
        if gaps:
            return chance.choice(gaps)
    raise Exhausted()


def _last_covered(keys: Keys, rng: Range, low: int, high: int, last_key: str) -> int:
    """The highest address in ``low-1 .. high`` whose key sorts at or before ``last_key``
    (every such key was in the pages read so far)."""
    lo, hi = low - 1, high
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if keys.ip(_address(rng, mid)) <= last_key:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _requested_ok(rangeset: RangeSet, ip: IPAddress) -> None:
    """host-local's checks of a requested address: ValueError with its wording."""
    rng = rangeset.range_for(ip)
    if rng is None:
        raise ValueError(f"{ip} not in range set {rangeset}")
    if ip == rng.gateway:
        raise ValueError(f"requested ip {ip} is subnet's gateway")


def allocate(etcd: Etcd, conf: IPAMConfig, cluster: ClusterSettings, container_id: str,
             ifname: str) -> Attachment:
    """The attachment's record: newly claimed, or the one it already holds."""
    keys = Keys(cluster.prefix, cluster.network)
    pending = list(conf.requested)
    requested: list[IPAddress | None] = []
    for index, rangeset in enumerate(conf.ranges):
        want = next((ip for ip in pending if rangeset.contains(ip)), None)
        if want is not None:
            pending.remove(want)
            try:
                _requested_ok(rangeset, want)
            except ValueError as exc:
                raise fail(f"failed to allocate for range {index}: {exc}") from None
        requested.append(want)
    if pending:
        raise fail("failed to allocate all requested IPs: " + " ".join(str(ip) for ip in pending))
    for _ in range(3):
        try:
            return _claim(etcd, conf, cluster, keys, container_id, ifname, requested)
        except IndexChanged:
            continue  # the index was rebuilt under us: start again with the new one
    raise fail("the allocation index keeps being rebuilt, try again")


def _claim(etcd: Etcd, conf: IPAMConfig, cluster: ClusterSettings, keys: Keys, container_id: str, ifname: str,
           requested: list[IPAddress | None]) -> Attachment:
    """One attempt with one index: the first read, then guarded transactions until one wins."""
    akey = keys.attachment(cluster.node, container_id, ifname)
    guesses = [want or random_guess(rangeset) for want, rangeset in zip(requested, conf.ranges)]
    views = [SetView(rangeset) for rangeset in conf.ranges]
    upfront = [key for view in views for key in view.upfront_keys(keys)]
    # One linearizable read before any write, of the attachment key and of what the index says
    # about the guesses and the sets: it needs a quorum, so without one the ADD fails having
    # proposed nothing (a timed-out proposal can still commit when the cluster heals, and the
    # failed ADD would then have written); and a retried ADD is answered from it.
    index, (held_before,) = open_index(etcd, keys, [akey], upfront + _index_keys(keys, guesses))
    for view in views:
        view.index = index
    if held_before is not None:
        return held_record(conf, cluster, akey, held_before.value, container_id, ifname)
    taken: set[IPAddress] = set()
    repairs: dict[IPAddress, int] = {}
    tried: list[set[int]] = [set() for _ in conf.ranges]
    picks: list[IPAddress | None] = list(requested)
    value = ip_value(container_id, ifname, cluster.node)
    for _ in range(MAX_ROUNDS):
        for i, rangeset in enumerate(conf.ranges):
            if picks[i] is None:
                try:
                    picks[i] = views[i].choose(etcd, keys, guesses[i], taken, tried[i])
                except Exhausted:
                    _mend(etcd, keys, index, repairs)
                    raise fail(f"failed to allocate for range {i}: no IP addresses available "
                               f"in range set: {rangeset}") from None
                guesses[i] = None
        chosen = [ip for ip in picks if ip is not None]
        wanted = index.missing(_index_keys(keys, chosen + list(repairs)))
        if wanted:
            index.read(etcd, [], wanted)
        ranges = [_range(conf, i, ip) for i, ip in enumerate(chosen)]
        record = Attachment(container_id, ifname, cluster.node,
                            [(f"{ip}/{rng.network.prefixlen}", str(rng.gateway)) for ip, rng in zip(chosen, ranges)],
                            time.time())
        fixing = list(repairs)
        index_compares, index_puts, index_keys = index.update(chosen + fixing, [])
        ok, responses = etcd.txn(
            [kv.absent(akey)] + [kv.absent(keys.ip(ip)) for ip in chosen]
            + [kv.created_at(keys.ip(ip), repairs[ip]) for ip in fixing] + index_compares,
            [kv.put(keys.ip(ip), value) for ip in chosen] + [kv.put(akey, record.encode())] + index_puts,
            [kv.read(akey)] + [kv.read(keys.ip(ip)) for ip in chosen + fixing] + [kv.read(index.marker_key)]
            + [kv.read(key) for key in index_keys])
        if ok:
            return record
        held = kv.kvs(responses[0].get("response_range", {}))
        if held:
            return held_record(conf, cluster, akey, held[0].value, container_id, ifname)
        found = [kv.kvs(response.get("response_range", {})) for response in responses[1:1 + len(chosen) + len(fixing)]]
        marker = kv.kvs(responses[1 + len(chosen) + len(fixing)].get("response_range", {}))
        if not marker or marker[0].create_revision != index.marker_revision:
            raise IndexChanged()
        index.absorb(index_keys, responses[2 + len(chosen) + len(fixing):])
        for ip, items in zip(fixing, found[len(chosen):]):
            if not items or items[0].create_revision != repairs[ip] or index.has(ip):
                del repairs[ip]
        for i, ip in enumerate(chosen):
            items = found[i]
            if items:
                if requested[i] is not None:
                    raise fail(f"failed to allocate for range {i}: requested IP address {ip} is not "
                               f"available in range set {conf.ranges[i]}")
                if not index.has(ip):  # a key the index does not know (written by an older release): mend it
                    repairs[ip] = items[0].create_revision
            elif requested[i] is not None or not index.has(ip):
                continue  # only the index moved meanwhile: the same address again, with the new bitmap
            taken.add(ip)
            picks[i] = None
    raise fail(f"could not claim addresses after {MAX_ROUNDS} contended transactions, try again")


def _mend(etcd: Etcd, keys: Keys, index: Index, repairs: dict[IPAddress, int]) -> None:
    """Set the bits of address keys the index did not know (best effort: a pool answered
    as full must leave the index as it found the keys)."""
    if repairs:
        wanted = index.missing(_index_keys(keys, list(repairs)))
        if wanted:
            index.read(etcd, [], wanted)
        compares, puts, _ = index.update(list(repairs), [])
        etcd.txn([kv.created_at(keys.ip(ip), rev) for ip, rev in repairs.items()] + compares, puts)


def _index_keys(keys: Keys, addresses: Sequence[IPAddress | None]) -> list[str]:
    index = Index(keys)
    return [key for ip in addresses if ip is not None for key in index.keys_for(ip)]


class SetView:
    """What the index says about one range set: the keys to read with the first read
    (its summaries, and the bitmaps at its edges, when it spans at most
    ``MAX_SUMMARIES`` summaries), and where there is room."""

    def __init__(self, rangeset: RangeSet) -> None:
        self.rangeset = rangeset
        self.spans = _usable(rangeset)
        self.version = rangeset.ranges[0].start.version
        self.gateways = {int(rng.gateway) for rng in rangeset.ranges if rng.gateway.version == self.version}
        self.summaries = sorted({s for _, first, last in self.spans
                                 for s in range(first >> SUMMARY_SHIFT, (last >> SUMMARY_SHIFT) + 1)}
                                if sum((last >> SUMMARY_SHIFT) - (first >> SUMMARY_SHIFT) + 1
                                       for _, first, last in self.spans) <= MAX_SUMMARIES else [])
        #: Bitmaps not wholly inside one range or holding a gateway: the summary cannot judge them.
        self.edges = {v >> CHUNK_SHIFT for _, first, last in self.spans for v in (first, last)}
        self.edges |= {g >> CHUNK_SHIFT for g in self.gateways}
        self.small = bool(self.summaries) and len(self.edges) <= MAX_EDGES
        #: Random bitmaps read with the first read: where the guess's is full (9 times in 10 at
        #: 90 % contiguous), one of these has room but for 0.9 ** PROBES of the time.
        self.probes = sorted({int(ip) >> CHUNK_SHIFT for ip in (random_guess(rangeset) for _ in range(PROBES))
                              if ip is not None}) if self.small else []
        self.index: Index

    def upfront_keys(self, keys: Keys) -> list[str]:
        if not self.small:
            return []
        index = Index(keys)
        return ([index.summary_key(self.version, s) for s in self.summaries]
                + [index.chunk_key(self.version, c) for c in sorted(self.edges | set(self.probes))])

    def _address(self, value: int) -> IPAddress:
        return type(self.rangeset.ranges[0].start)(value)

    def free_in(self, chunk: int, taken: set[int]) -> list[int]:
        """The free addresses of one bitmap that belong to the set (gateways and this ADD's
        known-taken ones left out)."""
        base = chunk << CHUNK_SHIFT
        mask = 0
        for _, first, last in self.spans:
            low, high = max(first, base), min(last, base + CHUNK_SIZE - 1)
            if low <= high:
                mask |= ((1 << (high - low + 1)) - 1) << (low - base)
        for gateway in self.gateways:
            if base <= gateway < base + CHUNK_SIZE:
                mask &= ~(1 << (gateway - base))
        free = mask & ~self.index.bitmap(self.version, chunk)
        return [base + bit for bit in range(CHUNK_SIZE) if free >> bit & 1 and base + bit not in taken]

    def roomy(self) -> list[int]:
        """Bitmaps of the set with a free address: by the summaries, and the edges by their bitmaps."""
        index = self.index
        found: set[int] = set()
        for _, first, last in self.spans:
            for s in range(first >> SUMMARY_SHIFT, (last >> SUMMARY_SHIFT) + 1):
                full = index.value(index.summary_key(self.version, s))
                low = max(first >> CHUNK_SHIFT, s * CHUNKS_PER_SUMMARY)
                high = min(last >> CHUNK_SHIFT, (s + 1) * CHUNKS_PER_SUMMARY - 1)
                for chunk in range(low, high + 1):
                    if chunk in self.edges:
                        if self.free_in(chunk, set()):
                            found.add(chunk)
                    elif not full >> (chunk & (CHUNKS_PER_SUMMARY - 1)) & 1:
                        found.add(chunk)
        return sorted(found)

    def choose(self, etcd: Etcd, keys: Keys, guess: IPAddress | None, taken: set[IPAddress],
               tried: set[int]) -> IPAddress:
        """A free address of the set by the index: the guess's bitmap if it has room, else
        a bitmap with room (by the summaries; in a set too large for them, a few random
        bitmaps, then the count-guided search of the keys); :class:`Exhausted` when the
        summaries and the edge bitmaps show every address taken."""
        values = {int(ip) for ip in taken if ip.version == self.version}
        index = self.index
        if guess is not None and index.knows(index.chunk_key(self.version, int(guess) >> CHUNK_SHIFT)):
            free = self.free_in(int(guess) >> CHUNK_SHIFT, values)
            if int(guess) in free:
                return guess
            if free:
                return self._address(chance.choice(free))
            tried.add(int(guess) >> CHUNK_SHIFT)
        for attempt in range(MAX_ROUNDS):
            if self.small:
                # A bitmap already read (a probe, an edge) with room costs no round trip nor a walk
                # of the summaries; else a bitmap the summaries show with room.
                known = [chunk for chunk in self.probes + sorted(self.edges) if chunk not in tried
                         and index.knows(index.chunk_key(self.version, chunk)) and self.free_in(chunk, values)]
                roomy = known or [chunk for chunk in self.roomy() if chunk not in tried]
                if not roomy:
                    raise Exhausted()
                chunk = chance.choice(roomy)
            elif attempt < LARGE_TRIES:
                ip = random_guess(self.rangeset)
                if ip is None:
                    continue
                chunk = int(ip) >> CHUNK_SHIFT
            else:
                return find_free(etcd, keys, self.rangeset, taken)
            if not index.knows(index.chunk_key(self.version, chunk)):
                index.read(etcd, [], index.keys_for(self._address(chunk << CHUNK_SHIFT)))
            free = self.free_in(chunk, values)
            if free:
                return self._address(chance.choice(free))
            tried.add(chunk)
        raise Exhausted()


def held_record(conf: IPAMConfig, cluster: ClusterSettings, akey: str, data: bytes, container_id: str,
                ifname: str) -> Attachment:
    """A repeated ADD's answer: the stored record, if it is one this attachment's
    ADD could have written (its names, one address in each range set); else a
    clear error — never a corrupted record handed to the runtime as a result."""
    try:
        record = Attachment.decode(data)
        if (record.container_id, record.ifname, record.node) != (container_id, ifname, cluster.node):
            raise ValueError(f"it names {record.node}/{record.container_id}/{record.ifname}")
        addresses = record.addresses()
        if len(addresses) != len(conf.ranges) or not all(
                rangeset.contains(ip) for rangeset, ip in zip(conf.ranges, addresses)):
            raise ValueError(f"its addresses {[str(ip) for ip in addresses]} are not one per range set")
    except ValueError as exc:
        raise fail(f"the stored attachment {akey} is not valid ({exc}); DEL it (or `cnitool ipam "
                   f"reap-node`) and ADD again") from None
    return record


def _range(conf: IPAMConfig, index: int, ip: IPAddress) -> Range:
    rng = conf.ranges[index].range_for(ip)
    assert rng is not None
    return rng

