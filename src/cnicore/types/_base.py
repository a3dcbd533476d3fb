"""What every result family shares, and the two registries the families fill in.

* Field helpers and the pieces every family uses: :class:`Route`,
  :class:`DNS`, :class:`Interface`, :class:`IPConfig`, and the result base
  classes.
* The family registry (the reference's ``pkg/types/create``): which class
  parses which ``cniVersion`` (:func:`family_of`, :func:`parse_result`).
* The converter registry (the reference's ``pkg/types/internal/convert``):
  ``(from version, to version) -> function``. Each family module registers
  the conversions it knows, as each Go package does in its ``init``;
  :func:`convert` looks them up.

Importing :mod:`cnicore.types` imports every family, so both registries are
complete before anything parses or converts.
"""

from __future__ import annotations

import ipaddress

from cnicore import wire

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Union

    from cnicore.types._v020 import Result020
    from cnicore.types._v040 import Result040
    from cnicore.types._v100 import Result

    AnyResult = Union[Result020, Result040, Result]
    Converter = Callable[[Any, str], AnyResult]

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).


class ResultError(ValueError):
    """A result that cannot be parsed or converted."""


# -- field helpers ---------------------------------------------------------

def _ip_str(value: object, what: str) -> str:
    """Normalise an IP address string as Go's ``net.IP.String`` prints it."""
    from cnicore._go.ip import parse_ip

    ip = parse_ip(value) if isinstance(value, str) else None
    if ip is None:
        raise ResultError(f"{what}: invalid IP address {value!r}")
    return str(ip)


def _cidr_str(value: object, what: str) -> str:
    """Normalise ``ip/prefix`` as Go's ``IPNet.String`` prints a parsed CIDR
    (``net.ParseCIDR``'s rules: a decimal prefix, no zone; an IPv4-mapped
    address prints as IPv4 with the prefix reduced by 96)."""
    from cnicore._go.ip import parse_cidr

    cidr = parse_cidr(value) if isinstance(value, str) else None
    if cidr is None:
        raise ResultError(f"{what}: invalid CIDR address {value!r}")
    return str(cidr)


def is_ipv4(cidr_or_ip: str) -> bool:
    """True for an IPv4 address or CIDR (IPv4-mapped IPv6 counts as IPv4, as in Go)."""
    ip = ipaddress.ip_address(cidr_or_ip.split("/", 1)[0])
    return ip.version == 4 or ip.ipv4_mapped is not None


def _int(obj: dict[str, Any], key: str, what: str, default: int | None = 0) -> int | None:
    value = obj.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ResultError(f"{what}: {key} must be an integer, got {value!r}")
    return value


def _str(obj: dict[str, Any], key: str, what: str) -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ResultError(f"{what}: {key} must be a string, got {value!r}")
    return value


def _strs(obj: dict[str, Any], key: str, what: str) -> list[str]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ResultError(f"{what}: {key} must be a list of strings")
    return list(value)


def _list(obj: dict[str, Any], key: str, what: str) -> list[Any]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ResultError(f"{what}: {key} must be a list")
    return value


def _obj(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ResultError(f"{what}: expected a JSON object, got {value!r}")
    return value


# -- shared pieces -----------------------------------------------------------

class Route:
    """A route: ``dst`` (CIDR), optional ``gw`` and the 1.1.0 attributes."""

    __slots__ = ("dst", "gw", "mtu", "advmss", "priority", "table", "scope")

    def __init__(self, dst: str, gw: str = "", mtu: int = 0, advmss: int = 0,
                 priority: int = 0, table: int | None = None, scope: int | None = None) -> None:
        self.dst = dst
        self.gw = gw
        self.mtu = mtu
        self.advmss = advmss
        self.priority = priority
        self.table = table
        self.scope = scope

    @classmethod
    def from_dict(cls, value: object) -> Route:
        obj = _obj(value, "route")
        if "dst" not in obj:
            raise ResultError("route: missing dst")
        gw = obj.get("gw")
        return cls(dst=_cidr_str(obj["dst"], "route dst"),
                   gw=_ip_str(gw, "route gw") if gw not in (None, "") else "",
                   mtu=_int(obj, "mtu", "route") or 0,
                   advmss=_int(obj, "advmss", "route") or 0,
                   priority=_int(obj, "priority", "route") or 0,
                   table=_int(obj, "table", "route", None),
                   scope=_int(obj, "scope", "route", None))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"dst": self.dst}
        if self.gw:
            out["gw"] = self.gw
        for key in ("mtu", "advmss", "priority"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        if self.table is not None:
            out["table"] = self.table
        if self.scope is not None:
            out["scope"] = self.scope
        return out

    def copy(self) -> Route:
        return Route(self.dst, self.gw, self.mtu, self.advmss, self.priority, self.table, self.scope)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Route) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"Route({self.to_dict()!r})"


class DNS:
    """Resolver settings for the container."""

    __slots__ = ("nameservers", "domain", "search", "options")

    def __init__(self, nameservers: list[str] | None = None, domain: str = "",
                 search: list[str] | None = None, options: list[str] | None = None) -> None:
        self.nameservers = list(nameservers or [])
        self.domain = domain
        self.search = list(search or [])
        self.options = list(options or [])

    @classmethod
    def from_dict(cls, value: object) -> DNS:
        if value is None:
            return cls()
        obj = _obj(value, "dns")
        return cls(_strs(obj, "nameservers", "dns"), _str(obj, "domain", "dns"),
                   _strs(obj, "search", "dns"), _strs(obj, "options", "dns"))

    def is_empty(self) -> bool:
        return not (self.nameservers or self.domain or self.search or self.options)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.nameservers:
            out["nameservers"] = list(self.nameservers)
        if self.domain:
            out["domain"] = self.domain
        if self.search:
            out["search"] = list(self.search)
        if self.options:
            out["options"] = list(self.options)
        return out

    def copy(self) -> DNS:
        return DNS(self.nameservers, self.domain, self.search, self.options)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DNS) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"DNS({self.to_dict()!r})"


class Interface:
    """An interface the plugin created or configured (1.x fields included;
    the 0.3/0.4 family prints only name, mac and sandbox)."""

    __slots__ = ("name", "mac", "mtu", "sandbox", "socket_path", "pci_id")

    def __init__(self, name: str, mac: str = "", sandbox: str = "", mtu: int = 0,
                 socket_path: str = "", pci_id: str = "") -> None:
        self.name = name
        self.mac = mac
        self.mtu = mtu
        self.sandbox = sandbox
        self.socket_path = socket_path
        self.pci_id = pci_id

    @classmethod
    def from_dict(cls, value: object, full: bool = True) -> Interface:
        obj = _obj(value, "interface")
        if not full:
            return cls(_str(obj, "name", "interface"), _str(obj, "mac", "interface"),
                       _str(obj, "sandbox", "interface"))
        return cls(_str(obj, "name", "interface"), _str(obj, "mac", "interface"),
                   _str(obj, "sandbox", "interface"), _int(obj, "mtu", "interface") or 0,
                   _str(obj, "socketPath", "interface"), _str(obj, "pciID", "interface"))

    def to_dict(self, full: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.mac:
            out["mac"] = self.mac
        if full and self.mtu:
            out["mtu"] = self.mtu
        if self.sandbox:
            out["sandbox"] = self.sandbox
        if full and self.socket_path:
            out["socketPath"] = self.socket_path
        if full and self.pci_id:
            out["pciID"] = self.pci_id
        return out

    def copy(self, full: bool = True) -> Interface:
        if not full:
            return Interface(self.name, self.mac, self.sandbox)
        return Interface(self.name, self.mac, self.sandbox, self.mtu, self.socket_path, self.pci_id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Interface) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"Interface({self.to_dict()!r})"


class IPConfig:
    """One address: ``address`` in CIDR form, optional ``gateway``, and the index
    into ``interfaces`` it belongs to. ``version`` ("4"/"6") exists only on the
    wire of the 0.3/0.4 family."""

    __slots__ = ("address", "gateway", "interface", "version")

    def __init__(self, address: str, gateway: str = "", interface: int | None = None,
                 version: str = "") -> None:
        self.address = address
        self.gateway = gateway
        self.interface = interface
        self.version = version

    @classmethod
    def from_dict(cls, value: object, with_version: bool = False) -> IPConfig:
        obj = _obj(value, "ip")
        if "address" not in obj:
            raise ResultError("ip: missing address")
        gateway = obj.get("gateway")
        return cls(_cidr_str(obj["address"], "ip address"),
                   _ip_str(gateway, "ip gateway") if gateway not in (None, "") else "",
                   _int(obj, "interface", "ip", None),
                   _str(obj, "version", "ip") if with_version else "")

    def to_dict(self, with_version: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if with_version:
            out["version"] = self.version
        if self.interface is not None:
            out["interface"] = self.interface
        out["address"] = self.address
        if self.gateway:
            out["gateway"] = self.gateway
        return out

    def copy(self) -> IPConfig:
        return IPConfig(self.address, self.gateway, self.interface, self.version)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IPConfig) and self.to_dict(True) == other.to_dict(True)

    def __repr__(self) -> str:
        return f"IPConfig({self.to_dict(True)!r})"


# -- result families ---------------------------------------------------------

class _ResultBase:
    """What every result family shares: version, JSON emission, conversion."""

    __slots__ = ()
    family: tuple[str, ...] = ()
    #: The cniVersion values parsing accepts (the reference's supportedVersions).
    accepted: tuple[str, ...] = ()
    implemented: str = ""
    cni_version: str

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_dict(cls, value: object) -> Any:
        """Parse a decoded result of this family (validating its cniVersion)."""
        raise NotImplementedError

    def to_json(self) -> bytes:
        """The bytes the reference prints for this result (MarshalIndent)."""
        return wire.dumps_indent(self.to_dict(), sort_keys=self.implemented == "1.1.0")

    def convert(self, to_version: str) -> AnyResult:
        """This result as ``to_version`` (see :func:`convert`)."""
        return convert(self, to_version)  # type: ignore[arg-type]

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_dict()!r})"

    @classmethod
    def _check_version(cls, obj: dict[str, Any]) -> str:
        version = obj.get("cniVersion")
        if version is None:
            version = ""
        if not isinstance(version, str):
            raise ResultError(f"result cniVersion must be a string, got {version!r}")
        if version not in cls.accepted:
            raise ResultError(f"result type supports [{' '.join(cls.accepted)}] but unmarshalled "
                              f"CNIVersion is {wire.go_quote(version)}")
        return version


class _InterfacesResult(_ResultBase):
    """What the 0.3/0.4 and 1.x families share: interfaces, ips, routes, dns.

    They differ only on the wire: ``interfaces`` carry the 1.x fields or not,
    ``ips`` carry ``version`` or not, and an empty ``dns`` is dropped (1.x, Go
    goes through a map) or printed as ``{}`` (0.x, a plain struct).
    """

    _full_interfaces = True
    _ip_version = False
    _empty_dns_printed = False

    __slots__ = ("cni_version", "interfaces", "ips", "routes", "dns")

    def __init__(self, cni_version: str = "", interfaces: list[Interface] | None = None,
                 ips: list[IPConfig] | None = None, routes: list[Route] | None = None,
                 dns: DNS | None = None) -> None:
        self.cni_version = cni_version
        self.interfaces = list(interfaces or [])
        self.ips = list(ips or [])
        self.routes = list(routes or [])
        self.dns = dns or DNS()

    @classmethod
    def from_dict(cls, value: object) -> Any:
        obj = _obj(value, "result")
        return cls(cls._check_version(obj),
                   [Interface.from_dict(i, full=cls._full_interfaces)
                    for i in _list(obj, "interfaces", "result")],
                   [IPConfig.from_dict(i, with_version=cls._ip_version) for i in _list(obj, "ips", "result")],
                   [Route.from_dict(r) for r in _list(obj, "routes", "result")],
                   DNS.from_dict(obj.get("dns")))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.cni_version:
            out["cniVersion"] = self.cni_version
        if self.interfaces:
            out["interfaces"] = [i.to_dict(full=self._full_interfaces) for i in self.interfaces]
        if self.ips:
            out["ips"] = [ip.to_dict(with_version=self._ip_version) for ip in self.ips]
        if self.routes:
            out["routes"] = [r.to_dict() for r in self.routes]
        if self._empty_dns_printed or not self.dns.is_empty():
            out["dns"] = self.dns.to_dict()
        return out


# -- the registries (filled in by the family modules) --------------------------------

_FAMILIES: dict[str, type[_ResultBase]] = {}
_CONVERTERS: dict[tuple[str, str], Converter] = {}


def register_family(cls: type[_ResultBase]) -> None:
    """``cls`` parses results of the versions it accepts."""
    for version in cls.accepted:
        _FAMILIES[version] = cls


def register_converter(from_versions: Iterable[str], to_versions: Iterable[str], fn: Converter) -> None:
    """``fn(result, to_version)`` converts a result of any of ``from_versions``
    into any of ``to_versions`` (Go's ``convert.RegisterConverter``)."""
    to_versions = tuple(to_versions)
    for from_version in from_versions:
        for to_version in to_versions:
            _CONVERTERS[(from_version, to_version)] = fn


def convert(result: AnyResult, to_version: str) -> AnyResult:
    """Return ``result`` as ``to_version`` (empty means 0.1.0).

    The same object is returned when the version already matches; otherwise a
    new one. A result without ``cniVersion`` counts as its family's newest
    version. Raises :class:`ResultError` when no converter is registered.
    """
    if not to_version:
        to_version = "0.1.0"
    if not result.cni_version:
        result.cni_version = result.implemented
    if result.cni_version == to_version:
        return result
    fn = _CONVERTERS.get((result.cni_version, to_version)) if result.cni_version in result.family else None
    if fn is None:
        raise ResultError(f"no converter for CNI result version {result.cni_version} to {to_version}")
    return fn(result, to_version)


def family_of(version: str) -> type[_ResultBase]:
    """The result class for a spec version; ``ResultError`` if unknown."""
    try:
        return _FAMILIES[version]
    except KeyError:
        raise ResultError(f"unsupported CNI result version {wire.go_quote(version)}") from None


def parse_result(data: bytes | str | dict[str, Any], version: str) -> AnyResult:
    """Parse a result of spec ``version`` (like the reference's ``create.Create``).

    ``data`` is JSON bytes/text or an already decoded object; the object's own
    ``cniVersion`` must belong to the same family as ``version``.
    """
    cls = family_of(version)
    if isinstance(data, (bytes, str)):
        try:
            data = wire.loads(data)
        except ValueError as exc:
            raise ResultError(f"invalid result JSON: {exc}") from None
    return cls.from_dict(data)


def result_from_json(data: bytes | str | dict[str, Any]) -> AnyResult:
    """Parse a result whose version is its own ``cniVersion`` (missing = 0.1.0)."""
    if isinstance(data, (bytes, str)):
        try:
            data = wire.loads(data)
        except ValueError as exc:
            raise ResultError(f"invalid result JSON: {exc}") from None
    obj = _obj(data, "result")
    version = obj.get("cniVersion") or "0.1.0"
    if not isinstance(version, str):
        raise ResultError("result cniVersion must be a string")
    return parse_result(obj, version)
