"""The 0.1.0 / 0.2.0 result family (the reference's ``pkg/types/020``):
``ip4`` / ``ip6``, each an address with its gateway and routes."""

from __future__ import annotations

from cnicore.types._base import (
    DNS,
    ResultError,
    Route,
    _cidr_str,
    _ip_str,
    _list,
    _obj,
    _ResultBase,
    register_converter,
    register_family,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

VERSIONS_020 = ("0.1.0", "0.2.0")


class IPConfig020:
    """The 0.1.0 / 0.2.0 ``ip4`` / ``ip6`` object: an address, gateway and routes."""

    __slots__ = ("ip", "gateway", "routes")

    def __init__(self, ip: str, gateway: str = "", routes: list[Route] | None = None) -> None:
        self.ip = ip
        self.gateway = gateway
        self.routes = list(routes or [])

    @classmethod
    def from_dict(cls, value: object) -> IPConfig020:
        obj = _obj(value, "ip4/ip6")
        if "ip" not in obj:
            raise ResultError("ip4/ip6: missing ip")
        gateway = obj.get("gateway")
        return cls(_cidr_str(obj["ip"], "ip"),
                   _ip_str(gateway, "gateway") if gateway not in (None, "") else "",
                   [Route.from_dict(r) for r in _list(obj, "routes", "ip4/ip6")])

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ip": self.ip}
        if self.gateway:
            out["gateway"] = self.gateway
        if self.routes:
            out["routes"] = [r.to_dict() for r in self.routes]
        return out

    def copy(self) -> IPConfig020:
        return IPConfig020(self.ip, self.gateway, [r.copy() for r in self.routes])


class Result020(_ResultBase):
    """A 0.1.0 / 0.2.0 result."""

    family = VERSIONS_020
    accepted = ("",) + VERSIONS_020
    implemented = "0.2.0"

    __slots__ = ("cni_version", "ip4", "ip6", "dns")

    def __init__(self, cni_version: str = "", ip4: IPConfig020 | None = None,
                 ip6: IPConfig020 | None = None, dns: DNS | None = None) -> None:
        self.cni_version = cni_version
        self.ip4 = ip4
        self.ip6 = ip6
        self.dns = dns or DNS()

    @classmethod
    def from_dict(cls, value: object) -> Result020:
        obj = _obj(value, "result")
        version = cls._check_version(obj)
        return cls(version or "0.1.0",
                   IPConfig020.from_dict(obj["ip4"]) if obj.get("ip4") is not None else None,
                   IPConfig020.from_dict(obj["ip6"]) if obj.get("ip6") is not None else None,
                   DNS.from_dict(obj.get("dns")))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.cni_version:
            out["cniVersion"] = self.cni_version
        if self.ip4 is not None:
            out["ip4"] = self.ip4.to_dict()
        if self.ip6 is not None:
            out["ip6"] = self.ip6.to_dict()
        out["dns"] = self.dns.to_dict()
        return out


def _within(result: Result020, to_version: str) -> Result020:
    return Result020(to_version, result.ip4.copy() if result.ip4 else None,
                     result.ip6.copy() if result.ip6 else None, result.dns.copy())


register_family(Result020)
register_converter(VERSIONS_020, VERSIONS_020, _within)
