"""Round-robin allocation over a store, in the reference's order.

Each range set continues after the address in its ``last_reserved_ip.<n>``
cursor, walks to the end of that range, on to the next range of the set,
wraps around to the first, and gives up when it is back where it started.
Gateways are never handed out. So an address just released is not reused
before every other free address of the set was used once: a crash-looping
container does not get the same address back at once.

Deliberate differences from the reference (both strictly safer):

* a duplicate ADD (the attachment already holds an address in a set) is an
  error also when addresses are requested, not only for automatic ones;
* on failure only the addresses this ADD reserved are released (the
  reference releases everything recorded for the container ID + ifname);
* the whole ADD runs under one lock (the reference locks per range set);
* requested addresses that fall in no range set are refused before
  anything is reserved, so such a request leaves no cursor behind (the
  reference reserves and moves the cursor first, then gives up).

"No IP addresses available" and a reservation that finds a name the index
thought free are both checked against the records: the store is read again
and the ADD decided again (:class:`.store.StaleIndex`), so an index that is
wrong — however it got past its stamp — is repaired, not trusted again.
"""

from __future__ import annotations

from cni_plugins_builtin.host_local.config import fail
from cnicore.errors import CNIError
from cnicore.ip import canonical

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterator

    from cni_plugins_builtin.host_local.config import IPAMConfig, Range, RangeSet
    from cni_plugins_builtin.host_local.store import DiskStore, Record
    from cnicore.ip import IPAddress

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).


class AllocationError(Exception):
    """Why one range set could not give an address (the reference's wording)."""


def candidate_keys(rangeset: RangeSet, last: IPAddress | None) -> Iterator[tuple[int, Range]]:
    """Every address of ``rangeset`` in round-robin order after ``last``
    (from the first range's start when ``last`` is not in the set), gateways
    skipped, ``last`` itself coming last — as address keys
    (:func:`.index.address_key`), because at 99 % of a /20 the walk can pass
    thousands of taken addresses and address objects cost a microsecond each."""
    from cni_plugins_builtin.host_local.index import address_key

    ranges = rangeset.ranges
    bounds = [(address_key(r.start), address_key(r.end),
               address_key(r.gateway) if r.gateway.version == r.start.version else -1) for r in ranges]
    index = 0
    cur: int | None = None
    start: int | None = bounds[0][0]
    if last is not None:
        for i, rng in enumerate(ranges):
            if rng.contains(last):
                index, cur, start = i, address_key(canonical(last)), None
                break
    while True:
        first, end, gateway = bounds[index]
        if cur is None:
            cur = start = first
        else:
            if cur == end:
                index = (index + 1) % len(ranges)
                first, end, gateway = bounds[index]
                cur = first
            else:
                cur += 1
            if start is None:
                start = cur
            elif cur == start:
                return
        if cur != gateway:
            yield cur, ranges[index]


def candidates(rangeset: RangeSet, last: IPAddress | None) -> Iterator[tuple[IPAddress, Range]]:
    """:func:`candidate_keys` as addresses."""
    from cni_plugins_builtin.host_local.index import key_address

    for key, rng in candidate_keys(rangeset, last):
        yield key_address(key), rng


class Allocator:
    """Allocation from one range set (index ``index`` names its cursor file)."""

    def __init__(self, rangeset: RangeSet, store: DiskStore, index: int) -> None:
        self.rangeset = rangeset
        self.store = store
        self.index = index

    def get(self, container_id: str, ifname: str, requested: IPAddress | None,
            held: list[Record]) -> tuple[IPAddress, Range]:
        """Reserve ``requested``, or the next free address; ``held`` are the
        attachment's existing records."""
        for record in held:
            if self.rangeset.contains(record.ip):
                raise AllocationError(f"{record.ip} has been allocated to {container_id}, "
                                      "duplicate allocation is not allowed")
        if requested is not None:
            rng = self.rangeset.range_for(requested)
            if rng is None:
                raise AllocationError(f"{requested} not in range set {self.rangeset}")
            if requested == rng.gateway:
                raise AllocationError(f"requested ip {requested} is subnet's gateway")
            if not self.store.reserve(container_id, ifname, requested, self.index):
                raise AllocationError(f"requested IP address {requested} is not available in range set "
                                      f"{self.rangeset}")
            return requested, rng
        last = self.store.last_reserved_ip(self.index)
        from cni_plugins_builtin.host_local.index import key_address

        store = self.store
        taken = store.taken()
        for key, rng in candidate_keys(self.rangeset, last):
            if key not in taken:
                ip = key_address(key)
                if store.reserve(container_id, ifname, ip, self.index):
                    return ip, rng
        if store.rebuild():  # "full" is confirmed from the records, never from the index alone
            from cni_plugins_builtin.host_local.store import StaleIndex

            raise StaleIndex(str(self.rangeset))
        raise AllocationError(f"no IP addresses available in range set: {self.rangeset}")


def allocate(store: DiskStore, conf: IPAMConfig, container_id: str,
             ifname: str) -> list[tuple[IPAddress, Range]]:
    """ADD: one address per range set (a requested one where a request falls in
    the set), all or nothing. Call with the store locked. Decided again, from the
    records, when a reservation finds the index wrong (the duplicate check and
    the free addresses both came from it)."""
    from cni_plugins_builtin.host_local.store import StaleIndex

    try:
        return _allocate(store, conf, container_id, ifname)
    except StaleIndex:
        return _allocate(store, conf, container_id, ifname)


def _allocate(store: DiskStore, conf: IPAMConfig, container_id: str,
              ifname: str) -> list[tuple[IPAddress, Range]]:
    held = store.owned(container_id, ifname)
    pending = list(conf.requested)
    wanted: list[IPAddress | None] = []
    for rangeset in conf.ranges:
        requested = next((ip for ip in pending if rangeset.contains(ip)), None)
        if requested is not None:
            pending.remove(requested)
        wanted.append(requested)
    if pending:
        raise fail("failed to allocate all requested IPs: " + " ".join(str(ip) for ip in pending))
    done: list[tuple[IPAddress, Range]] = []
    try:
        for index, (rangeset, requested) in enumerate(zip(conf.ranges, wanted)):
            try:
                ip, rng = Allocator(rangeset, store, index).get(container_id, ifname, requested, held)
            except (AllocationError, CNIError) as exc:
                raise fail(f"failed to allocate for range {index}: {exc}") from None
            done.append((ip, rng))
    except BaseException:
        release_reserved(store, [ip for ip, _ in done], container_id, ifname)
        raise
    return done


def release_reserved(store: DiskStore, ips: list[IPAddress], container_id: str, ifname: str) -> None:
    """Undo this ADD's reservations (each record is still ours: the lock is held)."""
    from cni_plugins_builtin.host_local.store import Record, record_key

    store.release([Record(ip, str(ip), record_key(container_id, ifname)) for ip in ips])
