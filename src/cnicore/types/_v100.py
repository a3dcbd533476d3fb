"""The 1.0.0 / 1.1.0 result family (the reference's ``pkg/types/100``): the model
plugins build. Interfaces carry ``mtu``/``socketPath``/``pciID``, ``ips`` have
no ``version``, and an empty ``dns`` is not printed.

Conversions it registers, with the reference's rules:

* 0.3/0.4 -> 1.x: ``version`` dropped. 1.x -> 0.3/0.4: ``mtu``,
  ``socketPath`` and ``pciID`` dropped, ``version`` recomputed from each
  address.
* 0.1/0.2 <-> 1.x: through 0.4.0.
* Within the family the content is copied and only ``cniVersion`` changes.
"""

from __future__ import annotations

from cnicore.types._base import IPConfig, _InterfacesResult, convert, is_ipv4, register_converter, register_family
from cnicore.types._v020 import VERSIONS_020, Result020
from cnicore.types._v040 import VERSIONS_040, Result040

VERSIONS_100 = ("1.0.0", "1.1.0")


class Result(_InterfacesResult):
    """A 1.0.0 / 1.1.0 result: the model plugins build and return."""

    family = VERSIONS_100
    accepted = VERSIONS_100
    implemented = "1.1.0"
    __slots__ = ()


def _from_040(result: Result040, to_version: str) -> Result:
    return Result(to_version, [i.copy(full=False) for i in result.interfaces],
                  [IPConfig(ip.address, ip.gateway, ip.interface) for ip in result.ips],
                  [r.copy() for r in result.routes], result.dns.copy())


def _from_020(result: Result020, to_version: str) -> Result:
    return _from_040(convert(result, "0.4.0"), to_version)  # type: ignore[arg-type]


def _within(result: Result, to_version: str) -> Result:
    return Result(to_version, [i.copy() for i in result.interfaces],
                  [ip.copy() for ip in result.ips], [r.copy() for r in result.routes],
                  result.dns.copy())


def _to_040(result: Result, to_version: str) -> Result040:
    return Result040(to_version, [i.copy(full=False) for i in result.interfaces],
                     [IPConfig(ip.address, ip.gateway, ip.interface,
                               "4" if is_ipv4(ip.address) else "6") for ip in result.ips],
                     [r.copy() for r in result.routes], result.dns.copy())


def _to_020(result: Result, to_version: str) -> Result020:
    return convert(_to_040(result, "0.4.0"), to_version)  # type: ignore[return-value]


register_family(Result)
register_converter(VERSIONS_020, VERSIONS_100, _from_020)
register_converter(VERSIONS_040, VERSIONS_100, _from_040)
register_converter(VERSIONS_100, VERSIONS_100, _within)
register_converter(VERSIONS_100, VERSIONS_040, _to_040)
register_converter(VERSIONS_100, VERSIONS_020, _to_020)
