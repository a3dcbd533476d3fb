"""The allocation index: which addresses are taken, 64 to a key, kept by the writes themselves.

Under ``<prefix>/<network>/``:

* ``idx/v4/c/<address >> 6, hex>`` — a bitmap of 64 addresses (8 bytes, bit
  ``address & 63`` set iff that address key exists);
* ``idx/v4/s/<address >> 16, hex>`` — a summary of 1,024 such bitmaps (128
  bytes, a bit set iff that bitmap is full); ``v6`` alike;
* ``index`` — the marker: the index is complete. Every write compares its
  ``create_revision``, so an index rebuilt (marker deleted and built anew)
  never takes a write meant for the old one;
* ``index-build`` — held by the node building the index from the address keys.

Every transaction that creates or deletes address keys (ADD, DEL, GC, reap,
the orphan sweep) updates the bitmaps of their addresses in the same
transaction, comparing each bitmap's ``mod_revision`` as read, and the
summary only when a bitmap becomes full or stops being full (so ADDs on
many nodes collide only when they land in the same 64 addresses). The
address keys stay the truth — an ADD still compares that its address key
is absent — the index only tells where to look: a free address is one read
away at any occupancy, and "no IP addresses available" is decided by
reading a set's summaries (and the few bitmaps at its edges) at once.

A pool written before the index existed (address keys, no marker) gets its
index built on first use (:func:`build`): under the ``index-build`` key, from
a paged read of the address keys, in batches guarded by that key and by "no
address key written since the read began" (a range compare), and the marker
written last by a transaction with the same guards.
"""

from __future__ import annotations

import time

from cni_plugins_builtin.cluster_ipam import chance
from cni_plugins_builtin.cluster_ipam import etcd as kv
from cni_plugins_builtin.cluster_ipam.model import dumps, loads, prefix_end

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterable

    from cni_plugins_builtin.cluster_ipam.etcd import KV, Etcd
    from cni_plugins_builtin.cluster_ipam.model import Keys
    from cnicore.ip import IPAddress

#: Addresses per bitmap and bitmaps per summary (as shifts of an address).
CHUNK_SHIFT = 6
SUMMARY_SHIFT = 16
CHUNK_SIZE = 1 << CHUNK_SHIFT
FULL = (1 << CHUNK_SIZE) - 1
CHUNKS_PER_SUMMARY = 1 << (SUMMARY_SHIFT - CHUNK_SHIFT)
#: Puts per transaction while building (etcd allows 128 operations).
BATCH = 100
#: Keys per read while building.
BUILD_PAGE = 5000
#: A build whose ``index-build`` key is older than this is taken over (its builder died).
BUILD_STALE_SECONDS = 15.0


class IndexChanged(Exception):
    """The marker changed since it was read (the index was rebuilt): start the operation again."""


def _width(version: int, shift: int) -> int:
    return ((32 if version == 4 else 128) - shift + 3) // 4


class Index:
    """One network's index as one operation has read it: the marker's revision and
    the bitmaps and summaries read so far (``None``: absent, all clear)."""

    def __init__(self, keys: Keys) -> None:
        self.keys = keys
        self.marker_key = keys.base + "index"
        self.build_key = keys.base + "index-build"
        self.root = keys.base + "idx/"
        self.marker_revision = 0
        self.seen: dict[str, KV | None] = {}

    # -- key names -------------------------------------------------------------------

    def chunk_key(self, version: int, chunk: int) -> str:
        return f"{self.root}v{version}/c/{chunk:0{_width(version, CHUNK_SHIFT)}x}"

    def summary_key(self, version: int, summary: int) -> str:
        return f"{self.root}v{version}/s/{summary:0{_width(version, SUMMARY_SHIFT)}x}"

    def keys_for(self, ip: IPAddress) -> list[str]:
        """The bitmap and summary keys an address's write touches."""
        value = int(ip)
        return [self.chunk_key(ip.version, value >> CHUNK_SHIFT), self.summary_key(ip.version, value >> SUMMARY_SHIFT)]

    # -- values as read --------------------------------------------------------------

    def value(self, key: str) -> int:
        item = self.seen[key]
        return int.from_bytes(item.value, "big") if item is not None else 0

    def bitmap(self, version: int, chunk: int) -> int:
        return self.value(self.chunk_key(version, chunk)) & FULL

    def has(self, ip: IPAddress) -> bool:
        """The address's bit is set (its bitmap must have been read)."""
        return bool(self.bitmap(ip.version, int(ip) >> CHUNK_SHIFT) >> (int(ip) & (CHUNK_SIZE - 1)) & 1)

    def knows(self, key: str) -> bool:
        return key in self.seen

    def missing(self, keys: Iterable[str]) -> list[str]:
        return list(dict.fromkeys(key for key in keys if key not in self.seen))

    def absorb(self, index_keys: list[str], responses: list[dict[str, Any]]) -> None:
        """Record the answers of reads of ``index_keys`` (a txn's responses)."""
        for key, response in zip(index_keys, responses):
            found = kv.kvs(response.get("response_range", response))
            self.seen[key] = found[0] if found else None

    # -- reading ---------------------------------------------------------------------

    def read(self, etcd: Etcd, plain: list[str], index_keys: list[str]) -> list[KV | None]:
        """One linearizable read (one txn) of the marker, ``plain`` keys (returned) and
        ``index_keys`` (recorded). :class:`IndexChanged` if the marker is not the one
        this operation started with."""
        index_keys = self.missing(index_keys)
        ops = [kv.read(self.marker_key)] + [kv.read(key) for key in plain + index_keys]
        _, responses = etcd.txn([], ops)
        marker = kv.kvs(responses[0].get("response_range", {}))
        revision = marker[0].create_revision if marker else 0
        if self.marker_revision and revision != self.marker_revision:
            raise IndexChanged()
        self.marker_revision = revision
        self.absorb(index_keys, responses[1 + len(plain):])
        found = [kv.kvs(response.get("response_range", {})) for response in responses[1:1 + len(plain)]]
        return [items[0] if items else None for items in found]

    # -- writing ---------------------------------------------------------------------

    def update(self, sets: list[IPAddress], clears: list[IPAddress]) -> tuple[list[dict[str, Any]],
                                                                             list[dict[str, Any]], list[str]]:
        """``(compares, puts, keys)`` that set the bits of ``sets`` and clear those of
        ``clears`` in the bitmaps as read, and flip the summaries of the bitmaps that
        become full or stop being full; ``keys``: every index key compared (to read
        back in a failure branch). Every key must have been read."""
        changed: dict[str, int] = {}
        for ips, on in ((sets, True), (clears, False)):
            for ip in ips:
                key = self.chunk_key(ip.version, int(ip) >> CHUNK_SHIFT)
                bit = 1 << (int(ip) & (CHUNK_SIZE - 1))
                old = changed.get(key, self.value(key))
                changed[key] = (old | bit) if on else (old & ~bit)
        summaries: dict[str, int] = {}
        for ips in (sets, clears):
            for ip in ips:
                chunk_key, summary_key = self.keys_for(ip)
                was_full = self.value(chunk_key) & FULL == FULL
                is_full = changed[chunk_key] & FULL == FULL
                if was_full != is_full:
                    bit = 1 << ((int(ip) >> CHUNK_SHIFT) & (CHUNKS_PER_SUMMARY - 1))
                    old = summaries.get(summary_key, self.value(summary_key))
                    summaries[summary_key] = (old | bit) if is_full else (old & ~bit)
        compares = [kv.created_at(self.marker_key, self.marker_revision)]
        puts = []
        for key, new in list(changed.items()) + list(summaries.items()):
            item = self.seen[key]
            compares.append(kv.unmodified_since(key, item.mod_revision) if item is not None else kv.absent(key))
            size = 8 if key in changed else CHUNKS_PER_SUMMARY // 8
            puts.append(kv.put(key, new.to_bytes(size, "big")))
        return compares, puts, list(changed) + list(summaries)


def open_index(etcd: Etcd, keys: Keys, plain: list[str], index_keys: list[str]) -> tuple[Index, list[KV | None]]:
    """The index with ``index_keys`` read and ``plain`` keys' values, all in one read —
    after building the index from the address keys if the pool has none yet."""
    for _ in range(3):
        index = Index(keys)
        found = index.read(etcd, plain, index_keys)
        if index.marker_revision:
            return index, found
        build(etcd, keys)
    from cni_plugins_builtin.cluster_ipam.etcd import EtcdUnavailable

    raise EtcdUnavailable(True, ["the allocation index could not be built: address keys kept changing"])


def build(etcd: Etcd, keys: Keys) -> None:
    """Build the index from the address keys (a pool written before the index), unless
    another node is doing so: then wait for it (until the etcd deadline) or take
    its build over when it went stale. Returns when a marker exists (or this try
    lost a race: the caller reads again)."""
    index = Index(keys)
    # Stop waiting a little before the budget ends, so the answer says why.
    give_up = (etcd.deadline if etcd.deadline is not None else time.monotonic() + etcd.settings.timeout) - 0.15
    while True:
        _, responses = etcd.txn([], [kv.read(index.marker_key), kv.read(index.build_key)])
        if kv.kvs(responses[0].get("response_range", {})):
            return
        held = kv.kvs(responses[1].get("response_range", {}))
        if held and time.time() - _build_started(held[0].value) < BUILD_STALE_SECONDS:
            if time.monotonic() > give_up:
                from cni_plugins_builtin.cluster_ipam.etcd import EtcdUnavailable

                raise EtcdUnavailable(True, ["the allocation index is being built by another node"])
            time.sleep(min(0.05 + chance.fraction() * 0.05, max(give_up - time.monotonic(), 0)))
            continue
        guard_lock = kv.unmodified_since(index.build_key, held[0].mod_revision) if held else kv.absent(index.build_key)
        lock_value = dumps({"at": round(time.time(), 3)})
        answer = etcd.call("kv/txn", {"compare": [kv.absent(index.marker_key), guard_lock],
                                      "success": [kv.put(index.build_key, lock_value)], "failure": []})
        if not answer.get("succeeded"):
            continue
        _fill(etcd, index, int(answer["header"]["revision"]))
        return


def _build_started(value: bytes) -> float:
    try:
        at = loads(value).get("at")
        return float(at) if isinstance(at, (int, float)) and not isinstance(at, bool) else 0.0
    except (ValueError, AttributeError, UnicodeDecodeError):
        return 0.0


def _fill(etcd: Etcd, index: Index, lock_revision: int) -> None:
    """Read every address key, write the bitmaps and summaries, then the marker — each
    write guarded by our build key and by "no address key written since the read
    began" (a range compare over the address keys)."""
    keys = index.keys
    bits: dict[str, int] = {}
    summaries: dict[str, int] = {}
    start, end = keys.ips, prefix_end(keys.ips)
    since = 0
    while True:
        answer = etcd.range(start, end, limit=BUILD_PAGE, keys_only=True)
        since = since or int(answer.get("header", {}).get("revision", 0))
        names = [kv.unb64(item["key"]).decode("utf-8", "surrogateescape") for item in answer.get("kvs", [])]
        for name in names:
            ip = keys.parse_ip(name)
            if ip is not None:
                key = index.chunk_key(ip.version, int(ip) >> CHUNK_SHIFT)
                bits[key] = bits.get(key, 0) | 1 << (int(ip) & (CHUNK_SIZE - 1))
                if bits[key] == FULL:
                    skey = index.summary_key(ip.version, int(ip) >> SUMMARY_SHIFT)
                    bit = 1 << ((int(ip) >> CHUNK_SHIFT) & (CHUNKS_PER_SUMMARY - 1))
                    summaries[skey] = summaries.get(skey, 0) | bit
        if not answer.get("more") or not names:
            break
        start = names[-1] + "\x00"
    guards = [kv.unmodified_since(index.build_key, lock_revision), kv.absent(index.marker_key),
              {"key": kv.b64(keys.ips), "range_end": kv.b64(end), "target": "MOD", "result": "LESS",
               "mod_revision": since + 1}]
    puts = [kv.put(key, value.to_bytes(8, "big")) for key, value in bits.items()]
    puts += [kv.put(key, value.to_bytes(CHUNKS_PER_SUMMARY // 8, "big")) for key, value in summaries.items()]
    wipe = {"request_delete_range": {"key": kv.b64(index.root), "range_end": kv.b64(prefix_end(index.root))}}
    for batch in [[wipe]] + [puts[i:i + BATCH] for i in range(0, len(puts), BATCH)]:
        ok, _ = etcd.txn(guards, batch)
        if not ok:  # keys written meanwhile (an older release), or our build was taken over: read again
            etcd.txn([guards[0]], [kv.delete(index.build_key)])
            return
    marker = dumps({"chunkBits": CHUNK_SHIFT, "summaryBits": SUMMARY_SHIFT, "builtFrom": since})
    ok, _ = etcd.txn(guards, [kv.put(index.marker_key, marker), kv.delete(index.build_key)])
    if not ok:
        etcd.txn([guards[0]], [kv.delete(index.build_key)])
