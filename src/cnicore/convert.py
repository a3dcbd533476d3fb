"""Conversion of results between every pair of spec versions, with the reference's rules.

* Within a family the content is copied and only ``cniVersion`` changes.
* 0.1/0.2 -> 0.3/0.4: ``ip4`` then ``ip6`` become ``ips`` with ``version``;
  their routes are concatenated.
* 0.3/0.4 -> 0.1/0.2: the first IPv4 and the first IPv6 address are kept,
  routes go to ``ip4``/``ip6`` by the family of ``dst`` keeping only dst/gw;
  a result without any address cannot be converted.
* 0.3/0.4 -> 1.x: ``version`` dropped. 1.x -> 0.3/0.4: ``mtu``, ``socketPath``
  and ``pciID`` dropped, ``version`` recomputed from each address.
* Across two steps (0.2 <-> 1.x) the result goes through 0.4.0.
"""

from __future__ import annotations

from cnicore.types import (
    VERSIONS_020,
    VERSIONS_040,
    VERSIONS_100,
    IPConfig,
    IPConfig020,
    Result,
    Result020,
    Result040,
    ResultError,
    Route,
    is_ipv4,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnicore.types import AnyResult


def convert(result: AnyResult, to_version: str) -> AnyResult:
    """Return ``result`` as ``to_version`` (empty means 0.1.0).

    The same object is returned when the version already matches; otherwise a
    new one. A result without ``cniVersion`` counts as its family's newest
    version. Raises :class:`~cnicore.types.ResultError`.
    """
    if not to_version:
        to_version = "0.1.0"
    if not result.cni_version:
        result.cni_version = result.implemented
    if result.cni_version == to_version:
        return result
    if to_version not in VERSIONS_020 + VERSIONS_040 + VERSIONS_100 or \
            result.cni_version not in result.family:
        raise ResultError(f"no converter for CNI result version {result.cni_version} to {to_version}")
    if isinstance(result, Result020):
        if to_version in VERSIONS_020:
            return Result020(to_version, result.ip4.copy() if result.ip4 else None,
                             result.ip6.copy() if result.ip6 else None, result.dns.copy())
        r040 = _from_020(result, "0.4.0" if to_version in VERSIONS_100 else to_version)
        return r040 if to_version in VERSIONS_040 else _from_040(r040, to_version)
    if isinstance(result, Result040):
        if to_version in VERSIONS_040:
            return Result040(to_version, [i.copy(full=False) for i in result.interfaces],
                             [ip.copy() for ip in result.ips], [r.copy() for r in result.routes],
                             result.dns.copy())
        if to_version in VERSIONS_020:
            return _to_020(result, to_version)
        return _from_040(result, to_version)
    if to_version in VERSIONS_100:
        return Result(to_version, [i.copy() for i in result.interfaces],
                      [ip.copy() for ip in result.ips], [r.copy() for r in result.routes],
                      result.dns.copy())
    r040 = _to_040(result, "0.4.0" if to_version in VERSIONS_020 else to_version)
    return r040 if to_version in VERSIONS_040 else _to_020(r040, to_version)


def _from_020(result: Result020, to_version: str) -> Result040:
    out = Result040(to_version, dns=result.dns.copy())
    for ipc, family in ((result.ip4, "4"), (result.ip6, "6")):
        if ipc is not None:
            out.ips.append(IPConfig(ipc.ip, ipc.gateway, None, family))
            out.routes.extend(r.copy() for r in ipc.routes)
    return out


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


def _from_040(result: Result040, to_version: str) -> Result:
    return Result(to_version, [i.copy(full=False) for i in result.interfaces],
                  [IPConfig(ip.address, ip.gateway, ip.interface) for ip in result.ips],
                  [r.copy() for r in result.routes], result.dns.copy())


def _to_040(result: Result, to_version: str) -> Result040:
    return Result040(to_version, [i.copy(full=False) for i in result.interfaces],
                     [IPConfig(ip.address, ip.gateway, ip.interface,
                               "4" if is_ipv4(ip.address) else "6") for ip in result.ips],
                     [r.copy() for r in result.routes], result.dns.copy())
