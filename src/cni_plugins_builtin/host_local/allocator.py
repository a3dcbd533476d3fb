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
* the whole ADD runs under one lock (the reference locks per range set).
"""

from __future__ import annotations

from cni_plugins_builtin.host_local.config import fail

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterator

    from cni_plugins_builtin.host_local.config import IPAMConfig, Range, RangeSet
    from cnicore.goip import IPAddress
    from cni_plugins_builtin.host_local.store import DiskStore, Record


class AllocationError(Exception):
    """Why one range set could not give an address (the reference's wording)."""


def candidates(rangeset: RangeSet, last: IPAddress | None) -> Iterator[tuple[IPAddress, Range]]:
    """Every address of ``rangeset`` in round-robin order after ``last``
    (from the first range's start when ``last`` is not in the set), gateways
    skipped, ``last`` itself coming last."""
    ranges = rangeset.ranges
    index = 0
    cur: IPAddress | None = None
    start: IPAddress | None = ranges[0].start
    if last is not None:
        for i, rng in enumerate(ranges):
            if rng.contains(last):
                index, cur, start = i, last, None
                break
    while True:
        rng = ranges[index]
        if cur is None:
            cur = start = rng.start
        else:
            if cur == rng.end:
                index = (index + 1) % len(ranges)
                rng = ranges[index]
                cur = rng.start
            else:
                cur = cur + 1
            if start is None:
                start = cur
            elif cur == start:
                return
        if cur != rng.gateway:
            yield cur, rng


class Allocator:
    """Allocation from one range set (index ``index`` names its cursor file)."""

    def __init__(self, rangeset: RangeSet, store: DiskStore, index: int) -> None:
        self.rangeset = rangeset
        self.store = store
        self.index = index

    def get(self, container_id: str, ifname: str, requested: IPAddress | None,
            held: list[Record], taken: set[IPAddress]) -> tuple[IPAddress, Range]:
        """Reserve ``requested``, or the next free address; ``held`` are the
        attachment's existing records, ``taken`` every reserved address (a hint:
        the exclusive create decides)."""
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
        for ip, rng in candidates(self.rangeset, last):
            if ip not in taken and self.store.reserve(container_id, ifname, ip, self.index):
                return ip, rng
        raise AllocationError(f"no IP addresses available in range set: {self.rangeset}")


def allocate(store: DiskStore, conf: IPAMConfig, container_id: str,
             ifname: str) -> list[tuple[IPAddress, Range]]:
    """ADD: one address per range set (a requested one where a request falls in
    the set), all or nothing. Call with the store locked."""
    from cnicore.errors import CNIError

    records = store.records()
    held = store.owned_by(records, container_id, ifname)
    taken = {record.ip for record in records}
    pending = list(conf.requested)
    done: list[tuple[IPAddress, Range]] = []
    try:
        for index, rangeset in enumerate(conf.ranges):
            requested = next((ip for ip in pending if rangeset.contains(ip)), None)
            if requested is not None:
                pending.remove(requested)
            try:
                ip, rng = Allocator(rangeset, store, index).get(container_id, ifname, requested, held, taken)
            except (AllocationError, CNIError) as exc:
                raise fail(f"failed to allocate for range {index}: {exc}") from None
            taken.add(ip)
            done.append((ip, rng))
        if pending:
            raise fail("failed to allocate all requested IPs: " + " ".join(str(ip) for ip in pending))
    except BaseException:
        release_reserved(store, [ip for ip, _ in done], container_id, ifname)
        raise
    return done


def release_reserved(store: DiskStore, ips: list[IPAddress], container_id: str, ifname: str) -> None:
    """Undo this ADD's reservations (each record is still ours: the lock is held)."""
    from cni_plugins_builtin.host_local.store import Record, record_key

    store.release([Record(ip, str(ip), record_key(container_id, ifname)) for ip in ips])
