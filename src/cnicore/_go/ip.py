"""IP addresses and prefixes parsed the way Go's ``net`` package parses them.

The reference decodes configs and results with ``net.ParseIP`` /
``net.ParseCIDR`` and canonicalises IPv4-mapped IPv6 addresses to IPv4;
accepting exactly the same text keeps configs and results portable between
the two implementations (host-local's config, every result's addresses). Addresses are
:mod:`ipaddress` objects (ordered, hashable, ``+ 1`` for the next one).
"""

from __future__ import annotations

import ipaddress

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Union

    IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
    IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


def canonical(ip: IPAddress) -> IPAddress:
    """IPv4-mapped IPv6 becomes IPv4, as Go's ``To4`` does before comparing."""
    if ip.version == 6:
        mapped = ip.ipv4_mapped
        if mapped is not None:
            return mapped
    return ip


def _parse_v4(text: str) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        return None


def _parse_v6(text: str) -> ipaddress.IPv6Address | None:
    if "%" in text:  # Go's ParseIP knows no zones; Python would accept one
        return None
    try:
        return ipaddress.IPv6Address(text)
    except ValueError:
        return None


def parse_ip(text: str) -> IPAddress | None:
    """``net.ParseIP`` plus canonicalisation; ``None`` when Go would return nil."""
    if not isinstance(text, str):
        return None
    # Go decides the family by whichever of "." and ":" comes first.
    for ch in text:
        if ch == ".":
            return _parse_v4(text)
        if ch == ":":
            ip6 = _parse_v6(text)
            return canonical(ip6) if ip6 is not None else None
    return None


class CIDR:
    """A parsed ``ip/prefix``: the address as written (host bits kept, like the
    reference's ``types.IPNet``) and the family it was written in (``bits``:
    32 or 128; an IPv4-mapped address keeps 128 with a canonical IPv4 ``ip``)."""

    __slots__ = ("ip", "prefix", "bits")

    def __init__(self, ip: IPAddress, prefix: int, bits: int) -> None:
        self.ip = ip
        self.prefix = prefix
        self.bits = bits

    @property
    def mixed(self) -> bool:
        """An IPv4 address with an IPv6 mask (Go: "IP and Mask version mismatch")."""
        return self.ip.version == 4 and self.bits == 128

    def network(self) -> IPNetwork:
        return ipaddress.ip_network((self.ip, self.prefix), strict=False)

    def __str__(self) -> str:
        """Go's ``IPNet.String``: a mapped address prints as IPv4 with the mask cut to 32 bits."""
        prefix = self.prefix - 96 if self.mixed else self.prefix
        return f"{self.ip}/{max(prefix, 0)}"

    def __repr__(self) -> str:
        return f"CIDR({self})"


def parse_cidr(text: str) -> CIDR | None:
    """``net.ParseCIDR``: an address, ``/`` and a decimal prefix length; ``None`` if invalid."""
    if not isinstance(text, str):
        return None
    addr, sep, mask = text.partition("/")
    if not sep or not mask.isascii() or not mask.isdigit():
        return None
    ip4 = _parse_v4(addr)
    ip: IPAddress | None = ip4 if ip4 is not None else _parse_v6(addr)
    if ip is None:
        return None
    bits = 32 if ip4 is not None else 128
    digits = mask.lstrip("0") or "0"  # Go allows leading zeros
    if len(digits) > 3 or int(digits) > bits:
        return None
    return CIDR(canonical(ip), int(digits), bits)


def parse_ip_or_cidr(text: str) -> IPAddress | None:
    """The reference's ``ip.IP`` text form (CNI_ARGS ``IP``, ``ips`` lists): an
    address, or ``address/prefix`` of which only the address counts."""
    if "/" in text:
        cidr = parse_cidr(text)
        return cidr.ip if cidr is not None else None
    return parse_ip(text)
