"""The portmap plugin's configuration: decoding, defaults, validation and the
container addresses to forward to, pure (no exec, no netlink).

Keys, defaults, the order of the checks and the error texts follow the
reference's ``parseConfig``: ``snat`` defaults to true, ``markMasqBit`` to 13
(0..31, not together with ``externalSetMarkChain``), ``backend`` to iptables
(nftables only when iptables is not installed), a backend refuses options of
the other one (iptables conditions start with ``-`` or ``!``), and port numbers
must be positive. The container's addresses are the first IPv4 and first IPv6
of prevResult that do not belong to another, or a host-side, interface.
"""

from __future__ import annotations

from cnicore.config import BOOL, INT, NETCONF_FIELDS, STRING, NetConfError, Slice, Struct, decode_struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

    from cnicore.types import Result

IPTABLES = "iptables"
NFTABLES = "nftables"
#: The mark bit that asks for masquerading (Kubernetes uses 14 and 15, Calico 20-31).
DEFAULT_MARK_BIT = 13

_ENTRY = Struct("PortMapEntry", {"hostPort": INT, "containerPort": INT, "protocol": STRING, "hostIP": STRING},
                "main.PortMapEntry")
_STRINGS = Slice(STRING)
#: The reference's ``PortMapConf`` (what ``encoding/json`` decodes the config into).
SCHEMA = Struct("PortMapConf", {
    **NETCONF_FIELDS,
    "backend": STRING, "snat": BOOL, "conditionsV4": _STRINGS, "conditionsV6": _STRINGS, "masqAll": BOOL,
    "markMasqBit": INT, "externalSetMarkChain": STRING,
    "runtimeConfig": Struct("", {"portMappings": Slice(_ENTRY)},
                            'struct { PortMaps []main.PortMapEntry "json:\\"portMappings,omitempty\\"" }'),
})


class PortMapping:
    """One ``runtimeConfig.portMappings`` entry, as given (protocol and hostIP verbatim)."""

    __slots__ = ("host_port", "container_port", "protocol", "host_ip")

    def __init__(self, host_port: int, container_port: int, protocol: str, host_ip: str) -> None:
        self.host_port = host_port
        self.container_port = container_port
        self.protocol = protocol
        self.host_ip = host_ip

    def __repr__(self) -> str:
        return f"PortMapping({self.host_port}->{self.container_port}/{self.protocol} {self.host_ip!r})"


class ContainerNet:
    """A container address with its prefix length; ``cidr`` is Go's ``IPNet.String()``
    of it (the address, not the network, then the prefix)."""

    __slots__ = ("ip", "prefixlen", "ipv6")

    def __init__(self, ip: str, prefixlen: int, ipv6: bool) -> None:
        self.ip = ip
        self.prefixlen = prefixlen
        self.ipv6 = ipv6

    def __repr__(self) -> str:
        return f"ContainerNet({self.cidr})"

    @property
    def cidr(self) -> str:
        return f"{self.ip}/{self.prefixlen}"

    def ip_port(self, port: int) -> str:
        """``ip:port``, or ``[ip]:port`` for IPv6 (Go's fmtIPPort / net.JoinHostPort)."""
        return f"[{self.ip}]:{port}" if self.ipv6 else f"{self.ip}:{port}"


class PortMapConf:
    """A decoded, validated portmap config."""

    __slots__ = ("name", "backend", "snat", "conditions_v4", "conditions_v6", "masq_all", "mark_bit",
                 "external_set_mark_chain", "mappings", "has_prev_result")

    def __init__(self, obj: dict[str, Any], nft_fallback: Callable[[], bool]) -> None:
        self.name: str = obj.get("name") or ""
        self.has_prev_result = obj.get("prevResult") is not None
        snat = obj.get("snat")
        self.snat: bool = True if snat is None else snat
        self.conditions_v4: list[str] | None = obj.get("conditionsV4")
        self.conditions_v6: list[str] | None = obj.get("conditionsV6")
        self.masq_all: bool = bool(obj.get("masqAll"))
        self.external_set_mark_chain: str | None = obj.get("externalSetMarkChain")
        mark_bit = obj.get("markMasqBit")
        if mark_bit is not None and self.external_set_mark_chain is not None:
            raise NetConfError("Cannot specify externalSetMarkChain and markMasqBit")
        self.mark_bit: int = DEFAULT_MARK_BIT if mark_bit is None else mark_bit
        if not 0 <= self.mark_bit <= 31:
            raise NetConfError("MasqMarkBit must be between 0 and 31")
        self.backend: str = _backend(obj.get("backend"), self, nft_fallback)
        entries = (obj.get("runtimeConfig") or {}).get("portMappings") or []
        self.mappings = [PortMapping(e.get("hostPort") or 0, e.get("containerPort") or 0, e.get("protocol") or "",
                                     e.get("hostIP") or "") for e in entries if e is not None]
        for m in self.mappings:
            if m.container_port <= 0:
                raise NetConfError(f"Invalid container port number: {m.container_port}")
            if m.host_port <= 0:
                raise NetConfError(f"Invalid host port number: {m.host_port}")

    def conditions(self, ipv6: bool) -> list[str]:
        return list((self.conditions_v6 if ipv6 else self.conditions_v4) or [])


def _conditions_backend(conditions: list[str] | None) -> str:
    """Go's detectBackendOfConditions: iptables conditions start with ``-`` or ``!``."""
    if not conditions or conditions[0] == "":
        return ""
    return IPTABLES if conditions[0][0] in "-!" else NFTABLES


def _backend(requested: str | None, conf: PortMapConf, nft_fallback: Callable[[], bool]) -> str:
    """Go's ensureBackend: the backend, refusing the other backend's options."""
    from cnicore.wire import go_quote

    options: dict[str, list[str]] = {IPTABLES: [], NFTABLES: []}
    if conf.external_set_mark_chain is not None:
        options[IPTABLES].append("externalSetMarkChain")
    for key, value in (("conditionsV4", conf.conditions_v4), ("conditionsV6", conf.conditions_v6)):
        kind = _conditions_backend(value)
        if kind:
            options[kind].append(key)
    backend = requested if requested is not None else (NFTABLES if nft_fallback() else IPTABLES)
    wrong = NFTABLES if backend == IPTABLES else IPTABLES
    if options[wrong]:
        raise NetConfError(f"{backend} backend was requested but configuration contains {wrong}-specific "
                           f"options [{' '.join(options[wrong])}]")
    if backend not in (IPTABLES, NFTABLES):
        raise NetConfError(f"unrecognized backend {go_quote(backend)}")
    return backend


def parse_conf(raw: dict[str, Any], nft_fallback: Callable[[], bool] = lambda: False) -> PortMapConf:
    """Decode and validate; ``nft_fallback()`` says whether to default to nftables
    (called only when ``backend`` is not given)."""
    obj = decode_struct(raw, SCHEMA, "failed to parse network configuration: ")
    return PortMapConf(obj, nft_fallback)


def host_ip_family(host_ip: str) -> tuple[bool, bool]:
    """(is IPv6, is unspecified) of a hostIP as Go's ``net.ParseIP`` sees it: an
    unparseable one counts as IPv6 and specified, an IPv4-mapped one as IPv4."""
    import ipaddress

    try:
        ip = ipaddress.ip_address(host_ip)
    except ValueError:
        return True, False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return False, ip.ipv4_mapped.is_unspecified
    return ip.version == 6, ip.is_unspecified


def container_nets(result: Result | None, ifname: str) -> tuple[ContainerNet | None, ContainerNet | None]:
    """The first IPv4 and first IPv6 address of ``result`` for the container's interface
    (an address tied to another interface, or to one without a sandbox, is skipped)."""
    v4: ContainerNet | None = None
    v6: ContainerNet | None = None
    if result is None:
        return v4, v6
    import ipaddress

    for ipc in result.ips:
        iface = ipaddress.ip_interface(ipc.address)
        mapped = iface.ip.ipv4_mapped if isinstance(iface.ip, ipaddress.IPv6Address) else None
        ipv6 = iface.version == 6 and mapped is None
        if (v6 if ipv6 else v4) is not None:
            continue
        index = ipc.interface
        if index is not None and 0 <= index < len(result.interfaces):
            owner = result.interfaces[index]
            if owner.name != ifname or not owner.sandbox:
                continue
        if ipv6:
            v6 = ContainerNet(str(iface.ip), iface.network.prefixlen, True)
        elif mapped is not None:
            v4 = ContainerNet(str(mapped), max(iface.network.prefixlen - 96, 0), False)
        else:
            v4 = ContainerNet(str(iface.ip), iface.network.prefixlen, False)
    return v4, v6
