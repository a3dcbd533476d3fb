"""The 0.3.0 / 0.3.1 / 0.4.0 result family (the reference's ``pkg/types/040``):
``interfaces``, ``ips`` with ``version``, ``routes``, ``dns`` (always printed).

Conversions it registers, with the reference's rules:

* 0.1/0.2 -> 0.3/0.4: ``ip4`` then ``ip6`` become ``ips`` with ``version``;
  their routes are concatenated.
* 0.3/0.4 -> 0.1/0.2: the first IPv4 and the first IPv6 address are kept,
  routes go to ``ip4``/``ip6`` by the family of ``dst`` keeping only dst/gw;
  a result without any address cannot be converted.
* Within the family the content is copied and only ``cniVersion`` changes.
"""

from __future__ import annotations

from cnicore.types._base import (
    IPConfig,
    ResultError,
    Route,
    _InterfacesResult,
    is_ipv4,
    register_converter,
    register_family,
)
from cnicore.types._v020 import VERSIONS_020, IPConfig020, Result020

VERSIONS_040 = ("0.3.0", "0.3.1", "0.4.0")


class Result040(_InterfacesResult):
    """A 0.3.0 / 0.3.1 / 0.4.0 result."""

    family = VERSIONS_040
    accepted = VERSIONS_040
    implemented = "0.4.0"
    _full_interfaces = False
    _ip_version = True
    _empty_dns_printed = True
    __slots__ = ()


def _from_020(result: Result020, to_version: str) -> Result040:
    out = Result040(to_version, dns=result.dns.copy())
    for ipc, family in ((result.ip4, "4"), (result.ip6, "6")):
        if ipc is not None:
            out.ips.append(IPConfig(ipc.ip, ipc.gateway, None, family))
            out.routes.extend(r.copy() for r in ipc.routes)
    return out


def _within(result: Result040, to_version: str) -> Result040:
    return Result040(to_version, [i.copy(full=False) for i in result.interfaces],
                     [ip.copy() for ip in result.ips], [r.copy() for r in result.routes],
                     result.dns.copy())


def _to_020(result: Result040, to_version: str) -> Result020:
    out = Result020(to_version, dns=result.dns.copy())
    for ip in result.ips:
        if ip.version == "4" and out.ip4 is None:
            out.ip4 = IPConfig020(ip.address, ip.gateway)
        elif ip.version == "6" and out.ip6 is None:
            out.ip6 = IPConfig020(ip.address, ip.gateway)
        if out.ip4 is not None and out.ip6 is not None:
            break
    for route in result.routes:
        target = out.ip4 if is_ipv4(route.dst) else out.ip6
        if target is not None:
            target.routes.append(Route(route.dst, route.gw))
    if out.ip4 is None and out.ip6 is None:
        raise ResultError("cannot convert: no valid IP addresses")
    return out


register_family(Result040)
register_converter(VERSIONS_020, VERSIONS_040, _from_020)
register_converter(VERSIONS_040, VERSIONS_040, _within)
register_converter(VERSIONS_040, VERSIONS_020, _to_020)
