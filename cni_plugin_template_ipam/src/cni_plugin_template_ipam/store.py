"""The allocator's store: a directory per network, one file per reserved address, locked with flock.

Layout under the config's ``dataDir``::

    <dataDir>/<network name>/lock           flock(2): exclusive to change, shared to read
    <dataDir>/<network name>/10.30.0.2      "<container ID>\\n<ifname>": one reservation
    <dataDir>/<network name>/fd30::2        (IPv6 addresses too)

Every process that serves a request opens the lock file itself and holds the
lock for the whole request, so concurrent ADDs (several runtimes, several
warm workers, threads) never hand out one address twice. A reservation file
is written with :func:`cnicore.fsutil.write_atomic` (a crash leaves the old
state or the new one, never half a file); a leftover temporary of a writer
that died is removed when the store is next changed.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os

from cnicore.fsutil import remove_dead_temporaries, write_atomic
from cnicore.ip import IPAddress, IPNetwork

#: The owner of a reservation: (container ID, interface name).
Owner = tuple[str, str]


class Store:
    """``with Store(data_dir, network) as store:`` the network's reservations, locked."""

    def __init__(self, data_dir: str, network: str, *, shared: bool = False) -> None:
        self.directory = os.path.join(data_dir, network)
        self.shared = shared
        self._lock = -1

    def __enter__(self) -> Store:
        os.makedirs(self.directory, mode=0o755, exist_ok=True)
        self._lock = os.open(os.path.join(self.directory, "lock"),
                             os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        fcntl.flock(self._lock, fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX)
        if not self.shared:
            remove_dead_temporaries(self.directory)
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self._lock)  # releases the lock
        self._lock = -1

    def reservations(self) -> dict[IPAddress, Owner]:
        """Every reserved address and its owner."""
        found: dict[IPAddress, Owner] = {}
        for name in os.listdir(self.directory):
            try:
                address = ipaddress.ip_address(name)
            except ValueError:
                continue  # the lock file, a temporary
            try:
                with open(os.path.join(self.directory, name), encoding="utf-8", errors="replace") as fh:
                    container_id, _, ifname = fh.read().partition("\n")
            except FileNotFoundError:
                continue
            found[address] = (container_id.strip(), ifname.strip())
        return found

    def reserve(self, address: IPAddress, owner: Owner) -> None:
        self._check_exclusive()
        write_atomic(os.path.join(self.directory, str(address)), f"{owner[0]}\n{owner[1]}".encode(), mode=0o644)

    def release(self, address: IPAddress) -> None:
        """Forget a reservation (nothing happens if there is none)."""
        self._check_exclusive()
        try:
            os.unlink(os.path.join(self.directory, str(address)))
        except FileNotFoundError:
            pass

    def _check_exclusive(self) -> None:
        if self._lock < 0 or self.shared:
            raise RuntimeError("the store is changed only under its exclusive lock")


def inside(address: IPAddress, subnet: IPNetwork) -> bool:
    """``address in subnet``, also false across families (ipaddress alone compares bits)."""
    return address.version == subnet.version and address in subnet


def gateway_of(subnet: IPNetwork) -> IPAddress:
    """The subnet's gateway: its first address after the network address."""
    return subnet.network_address + 1


def next_free(subnet: IPNetwork, taken: set[IPAddress] | dict[IPAddress, Owner]) -> IPAddress | None:
    """The lowest address of ``subnet`` after its gateway that is not ``taken`` (never
    the IPv4 broadcast address); ``None`` when the subnet is full."""
    address = type(subnet.network_address)
    last = int(subnet.broadcast_address) - (1 if subnet.version == 4 else 0)
    for value in range(int(gateway_of(subnet)) + 1, last + 1):  # at most len(taken) + 1 steps
        candidate = address(value)
        if candidate not in taken:
            return candidate
    return None
