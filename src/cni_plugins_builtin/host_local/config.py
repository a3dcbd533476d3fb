"""The host-local IPAM config: decoded, defaulted and validated like the reference.

:func:`load_config` turns the network config (plus CNI_ARGS) into an
:class:`IPAMConfig` or raises the reference's error, message for message:
the JSON is decoded with Go's rules (:mod:`cnicore.config`), then requested
addresses are collected, range sets built and checked. Pure: no I/O.

Deliberate differences from the reference:

* ``runtimeConfig.ipRanges`` *replaces* the configured ranges (the reference
  prepends it, so a runtime range overlapping a configured one is an error
  and the container gets addresses from both);
* CNI_ARGS ``IP`` takes a comma-separated list (the reference: one address);
* ``runtimeConfig.ips: [null]`` is an error instead of a crash, a route
  without ``dst`` an error instead of ``"dst": "<nil>"`` in the result, and a
  ``null`` route is skipped instead of printed;
* routes keep the 1.1.0 attributes (``mtu``, ``advmss``, ``priority``,
  ``table``, ``scope``), which the reference's older libcni drops.

The routes differences are :data:`cnicore.config.ROUTES`'s, shared with static.
"""

from __future__ import annotations

from cnicore.config import IP_NET, NET_IP, ROUTES, STRING, Decoder, fields, lookup
from cnicore.errors import ERR_INTERNAL, CNIError
from cnicore.ip import canonical, parse_ip_or_cidr
from cnicore.version import greater_or_equal

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from cnicore.ip import CIDR, IPAddress, IPNetwork
    from cnicore.types import Route

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).

DEFAULT_DATA_DIR = "/var/lib/cni/networks"

#: Go type names that appear in the reference's decoding errors.
RUNTIME_CONFIG_TYPE = ('struct { IPRanges []allocator.RangeSet "json:\\"ipRanges,omitempty\\""; '
                       'IPs []*ip.IP "json:\\"ips,omitempty\\"" }')
ARGS_TYPE = 'struct { A *allocator.IPAMArgs "json:\\"cni\\"" }'

_NET_FIELDS = ("name", "cniVersion", "ipam", "runtimeConfig", "args")
_RANGE_FIELDS = ("rangeStart", "rangeEnd", "subnet", "gateway")
_IPAM_FIELDS = _RANGE_FIELDS + ("Name", "type", "routes", "dataDir", "resolvConf", "ranges")


def fail(msg: str) -> CNIError:
    """The reference reports every host-local failure as code 999 (internal)."""
    return CNIError(ERR_INTERNAL, msg)


# -- ranges ----------------------------------------------------------------------

class RangeSpec:
    """One range as written in the config (anything may be missing)."""

    __slots__ = ("subnet", "start", "end", "gateway")

    def __init__(self, subnet: CIDR | None = None, start: IPAddress | None = None,
                 end: IPAddress | None = None, gateway: IPAddress | None = None) -> None:
        self.subnet = subnet
        self.start = start
        self.end = end
        self.gateway = gateway


def _within(network: IPNetwork, start: IPAddress | None, end: IPAddress | None, ip: IPAddress) -> bool:
    """The reference's ``Range.Contains``: same family, in the subnet, between the
    bounds that are set (compared as integers, whatever their family)."""
    ip = canonical(ip)
    if ip.version != network.version or ip not in network:
        return False
    if start is not None and int(ip) < int(start):
        return False
    return end is None or int(ip) <= int(end)


class Range:
    """A canonical range: subnet, first and last address, gateway (all set)."""

    __slots__ = ("network", "start", "end", "gateway")

    def __init__(self, network: IPNetwork, start: IPAddress, end: IPAddress, gateway: IPAddress) -> None:
        self.network = network
        self.start = start
        self.end = end
        self.gateway = gateway

    @classmethod
    def from_spec(cls, spec: RangeSpec) -> Range:
        """Fill in the defaults and check the range; ``ValueError`` with the reference's text."""
        cidr = spec.subnet
        if cidr is None:
            raise ValueError("IP <nil> not v4 nor v6")
        if cidr.prefix > cidr.bits - 2:  # no address left once network and broadcast are out
            raise ValueError(f"Network {cidr} too small to allocate from")
        if cidr.mixed:
            raise ValueError("IPNet IP and Mask version mismatch")
        network = cidr.network()
        if network.network_address != cidr.ip:
            raise ValueError(f"Network has host bits set. For a subnet mask of length {cidr.prefix} "
                             f"the network address is {network.network_address}")
        first = network.network_address + 1
        gateway = spec.gateway if spec.gateway is not None else first
        if spec.start is not None and not _within(network, spec.start, spec.end, spec.start):
            raise ValueError(f"RangeStart {spec.start} not in network {cidr}")
        start = spec.start if spec.start is not None else first
        if spec.end is not None and not _within(network, start, spec.end, spec.end):
            raise ValueError(f"RangeEnd {spec.end} not in network {cidr}")
        if spec.end is not None:
            end = spec.end
        else:
            last = network.broadcast_address
            end = last - 1 if network.version == 4 else last  # IPv4 never hands out broadcast
        return cls(network, start, end, gateway)

    @property
    def version(self) -> int:
        return self.start.version

    def contains(self, ip: IPAddress) -> bool:
        return _within(self.network, self.start, self.end, ip)

    def overlaps(self, other: Range) -> bool:
        if self.version != other.version:
            return False
        return (self.contains(other.start) or self.contains(other.end)
                or other.contains(self.start) or other.contains(self.end))

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"

    def __repr__(self) -> str:
        return f"Range({self.network}, {self}, gw={self.gateway})"


class RangeSet:
    """Disjoint ranges of one family; one address is allocated per set."""

    __slots__ = ("ranges",)

    def __init__(self, ranges: list[Range]) -> None:
        self.ranges = ranges

    @classmethod
    def from_specs(cls, specs: list[RangeSpec]) -> RangeSet:
        """Canonicalise every range, then check family and overlaps (reference order)."""
        if not specs:
            raise ValueError("empty range set")
        ranges: list[Range] = []
        for spec in specs:
            rng = Range.from_spec(spec)
            if ranges and rng.version != ranges[0].version:
                raise ValueError("mixed address families")
            ranges.append(rng)
        for i, first in enumerate(ranges):
            for second in ranges[i + 1:]:
                if first.overlaps(second):
                    raise ValueError(f"subnets {first} and {second} overlap")
        return cls(ranges)

    @property
    def version(self) -> int:
        return self.ranges[0].version

    def range_for(self, ip: IPAddress) -> Range | None:
        ip = canonical(ip)
        for rng in self.ranges:
            if rng.contains(ip):
                return rng
        return None

    def contains(self, ip: IPAddress) -> bool:
        return self.range_for(ip) is not None

    def overlaps(self, other: RangeSet) -> bool:
        return any(a.overlaps(b) for a in self.ranges for b in other.ranges)

    def __str__(self) -> str:
        return ",".join(str(rng) for rng in self.ranges)

    def __repr__(self) -> str:
        return f"RangeSet({self})"


# -- decoding (Go's rules, see cnicore.config) ---------------------------------------------

class IPAMSpec:
    """The ``ipam`` object as decoded, before validation."""

    __slots__ = ("legacy", "routes", "data_dir", "resolv_conf", "ranges")

    def __init__(self) -> None:
        self.legacy: RangeSpec | None = None
        self.routes: list[Route] = []
        self.data_dir = ""
        self.resolv_conf = ""
        self.ranges: list[list[RangeSpec]] = []


class NetSpec:
    """The parts of the network config host-local reads, as decoded."""

    __slots__ = ("ipam", "runtime_ranges", "runtime_ips", "arg_ips")

    def __init__(self) -> None:
        self.ipam: IPAMSpec | None = None
        self.runtime_ranges: list[list[RangeSpec]] = []
        self.runtime_ips: list[IPAddress | None] = []
        self.arg_ips: list[IPAddress | None] = []


def _string(d: Decoder, value: Any, struct: str, path: tuple[str, ...]) -> str:
    """A ``string`` field as Go decodes it, "" for null or a mismatch (remembered in ``d``)."""
    return STRING.decode(d, value, struct, path) or ""


def _cni_ips(d: Decoder, value: Any, struct: str, path: tuple[str, ...]) -> list[IPAddress | None]:
    """A ``[]*ip.IP`` list; an empty or null entry is kept as ``None`` (rejected later)."""
    if value is None:
        return []
    if not isinstance(value, list):
        d.mismatch(value, "[]*ip.IP", struct, path)
        return []
    out: list[IPAddress | None] = []
    for item in value:
        if item is None or item == "":
            out.append(None)
        elif not isinstance(item, str):
            d.mismatch(item, "*ip.IP", struct, path)
        else:
            ip = parse_ip_or_cidr(item)
            if ip is None:
                raise fail(f"invalid IP address {item}")
            out.append(ip)
    return out


def _range_field(d: Decoder, spec: RangeSpec, name: str, value: Any, struct: str,
                 path: tuple[str, ...]) -> None:
    if name == "subnet":
        spec.subnet = IP_NET.decode(d, value, struct, path)
    elif name == "rangeStart":
        spec.start = NET_IP.decode(d, value, struct, path)
    elif name == "rangeEnd":
        spec.end = NET_IP.decode(d, value, struct, path)
    else:
        spec.gateway = NET_IP.decode(d, value, struct, path)


def _range_sets(d: Decoder, value: Any, struct: str, path: tuple[str, ...]) -> list[list[RangeSpec]]:
    """A ``[]allocator.RangeSet`` (a list of lists of range objects)."""
    if value is None:
        return []
    if not isinstance(value, list):
        d.mismatch(value, "[]allocator.RangeSet", struct, path)
        return []
    sets: list[list[RangeSpec]] = []
    for item in value:
        specs: list[RangeSpec] = []
        if isinstance(item, list):
            for obj in item:
                spec = RangeSpec()
                if isinstance(obj, dict):
                    for name, field_value in fields(obj, _RANGE_FIELDS):
                        _range_field(d, spec, name, field_value, "Range", path + (name,))
                elif obj is not None:
                    d.mismatch(obj, "allocator.Range", struct, path)
                specs.append(spec)
        elif item is not None:
            d.mismatch(item, "allocator.RangeSet", struct, path)
        sets.append(specs)
    return sets


def _ipam(d: Decoder, obj: dict[str, Any]) -> IPAMSpec:
    spec = IPAMSpec()
    struct = "IPAMConfig"
    for name, value in fields(obj, _IPAM_FIELDS):
        path = ("ipam", name)
        if name in _RANGE_FIELDS:
            if spec.legacy is None:
                spec.legacy = RangeSpec()
            _range_field(d, spec.legacy, name, value, struct, path)
        elif name == "routes":
            spec.routes = ROUTES.decode(d, value, struct, path)
        elif name == "ranges":
            spec.ranges = _range_sets(d, value, struct, path)
        elif name == "dataDir":
            spec.data_dir = _string(d, value, struct, path)
        elif name == "resolvConf":
            spec.resolv_conf = _string(d, value, struct, path)
        else:  # Name, type: only checked for their kind
            _string(d, value, struct, path)
    return spec


def decode(config: dict[str, Any]) -> NetSpec:
    """Decode what host-local reads from the network config, with the reference's errors."""
    d = Decoder()
    net = NetSpec()
    for name, value in fields(config, _NET_FIELDS):
        if name == "ipam":
            if isinstance(value, dict):
                net.ipam = _ipam(d, value)
            elif value is not None:
                d.mismatch(value, "allocator.IPAMConfig", "Net", ("ipam",))
        elif name == "runtimeConfig":
            if isinstance(value, dict):
                for key, item in fields(value, ("ipRanges", "ips")):
                    if key == "ipRanges":
                        net.runtime_ranges = _range_sets(d, item, "", ("runtimeConfig", key))
                    else:
                        net.runtime_ips = _cni_ips(d, item, "", ("runtimeConfig", key))
            elif value is not None:
                d.mismatch(value, RUNTIME_CONFIG_TYPE, "Net", ("runtimeConfig",))
        elif name == "args":
            if isinstance(value, dict):
                for _, cni in fields(value, ("cni",)):
                    if isinstance(cni, dict):
                        for _, ips in fields(cni, ("ips",)):
                            net.arg_ips = _cni_ips(d, ips, "IPAMArgs", ("args", "cni", "ips"))
                    elif cni is not None:
                        d.mismatch(cni, "allocator.IPAMArgs", "", ("args", "cni"))
            elif value is not None:
                d.mismatch(value, ARGS_TYPE, "Net", ("args",))
        # name and cniVersion were checked by skel
    d.finish()
    return net


# -- the validated config ----------------------------------------------------------

class IPAMConfig:
    """Everything ADD/DEL/CHECK need, validated: ``ranges`` (one address per
    set), ``requested`` addresses (deduplicated, in request order), ``routes``
    and ``resolv_conf`` for the result, and where the store lives."""

    __slots__ = ("name", "cni_version", "ranges", "requested", "routes", "data_dir", "resolv_conf")

    def __init__(self, name: str, cni_version: str, ranges: list[RangeSet], requested: list[IPAddress],
                 routes: list[Route], data_dir: str, resolv_conf: str) -> None:
        self.name = name
        self.cni_version = cni_version
        self.ranges = ranges
        self.requested = requested
        self.routes = routes
        self.data_dir = data_dir
        self.resolv_conf = resolv_conf


def _ip_list_arg(text: str) -> list[IPAddress]:
    """CNI_ARGS ``IP``: one address or several separated by commas."""
    ips = []
    for piece in text.split(","):
        if piece == "":
            continue  # "IP=" requests nothing, as in the reference
        ip = parse_ip_or_cidr(piece)
        if ip is None:
            raise ValueError(f"invalid IP address {piece}")
        ips.append(ip)
    return ips


def _env_ips(cni_args: str) -> list[IPAddress]:
    from cnicore.config import load_args

    return list(load_args(cni_args, {"IP": _ip_list_arg}).get("IP", []))


def store_location(config: dict[str, Any]) -> tuple[str, str]:
    """``(data dir, network name)``: all GC needs, without validating ranges."""
    net = decode(config)
    if net.ipam is None:
        raise fail("IPAM config missing 'ipam' key")
    return net.ipam.data_dir or DEFAULT_DATA_DIR, str(lookup(config, "name", "") or "")


def load_config(config: dict[str, Any], cni_args: str = "") -> IPAMConfig:
    """The validated IPAM config (``config`` is the decoded stdin, already
    checked by skel); raises the reference's CNIError."""
    net = decode(config)
    ipam = net.ipam
    if ipam is None:
        raise fail("IPAM config missing 'ipam' key")

    requested: list[IPAddress] = []
    wanted = (_env_ips(cni_args) if cni_args else []) + net.arg_ips + net.runtime_ips
    for ip in wanted:
        if ip is None:
            raise fail("cannot understand ip: IP <nil> not v4 nor v6")
        if ip not in requested:
            requested.append(ip)

    if net.runtime_ranges:
        specs = net.runtime_ranges
    else:
        specs = ([[ipam.legacy]] if ipam.legacy is not None and ipam.legacy.subnet is not None else [])
        specs += ipam.ranges
    if not specs:
        raise fail("no IP ranges specified")

    ranges: list[RangeSet] = []
    for index, set_specs in enumerate(specs):
        try:
            ranges.append(RangeSet.from_specs(set_specs))
        except ValueError as exc:
            raise fail(f"invalid range set {index}: {exc}") from None

    version = lookup(config, "cniVersion") or ""
    per_family = [rs.version for rs in ranges]
    if per_family.count(4) > 1 or per_family.count(6) > 1:
        try:
            modern = greater_or_equal(str(version), "0.3.0")
        except ValueError:
            modern = False
        if not modern:
            raise fail(f"CNI version {version} does not support more than 1 address per family")

    for i, first in enumerate(ranges):
        for j in range(i + 1, len(ranges)):
            if first.overlaps(ranges[j]):
                raise fail(f"range set {i} overlaps with {j}")

    return IPAMConfig(str(lookup(config, "name", "") or ""), str(version), ranges, requested, ipam.routes,
                      ipam.data_dir or DEFAULT_DATA_DIR, ipam.resolv_conf)
