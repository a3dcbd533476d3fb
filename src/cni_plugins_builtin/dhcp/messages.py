"""The reference dhcp RPC's types in gob, and their conversion to cnicore's JSON shapes.

``DHCP.Allocate(args *skel.CmdArgs, result *current.Result)`` and
``DHCP.Release(args *skel.CmdArgs, reply *struct{})`` (plugins/ipam/dhcp
daemon.go) travel as gob under net/rpc's ``Request``/``Response`` headers
(net/rpc server.go). The types are the current reference's (cni pkg/skel,
pkg/types, pkg/types/100), field order and descriptor names as Go's gob
builds them, so a Go peer of any release decodes them by field name: Debian's
1.1.1 (cni 1.0.1) knows fewer fields of ``CmdArgs`` and ``Route`` and ignores
the others. ``net.IP`` and ``net.IPMask`` go as plain ``[]byte`` (4 or 16
bytes): gob never uses MarshalText (see :mod:`.gob`), as Debian's 1.1.1 shows.
A pointer to zero (``IPConfig.Interface``, ``Route.Table``/``Scope`` of 0) is
sent as nothing, so it arrives as nil, with Go's peers alike. Pure: dicts in,
dicts out.
"""

from __future__ import annotations

import socket

from .gob import BYTES, INT, STRING, UINT, GobError, Slice, Struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: net/rpc's headers (server.go): each call and each answer is a header, then a body.
REQUEST = Struct("Request", (("ServiceMethod", STRING), ("Seq", UINT)))
RESPONSE = Struct("Response", (("ServiceMethod", STRING), ("Seq", UINT), ("Error", STRING)))
#: ``struct{}``: Release's reply, and the body of every error answer (server.go's invalidRequest).
EMPTY = Struct("", ())

CMD_ARGS = Struct("CmdArgs", (("ContainerID", STRING), ("Netns", STRING), ("IfName", STRING), ("Args", STRING),
                              ("Path", STRING), ("NetnsOverride", STRING), ("StdinData", BYTES)))

IP = BYTES  # net.IP: gob's rules leave its MarshalText aside, so its bytes go as they are
IPNET = Struct("IPNet", (("IP", IP), ("Mask", BYTES)))
INTERFACE = Struct("", (("Name", STRING), ("Mac", STRING), ("Mtu", INT), ("Sandbox", STRING),
                        ("SocketPath", STRING), ("PciID", STRING)))
IP_CONFIG = Struct("", (("Interface", INT), ("Address", IPNET), ("Gateway", IP)))
ROUTE = Struct("", (("Dst", IPNET), ("GW", IP), ("MTU", INT), ("AdvMSS", INT), ("Priority", INT),
                    ("Table", INT), ("Scope", INT)))
STRINGS = Slice(STRING, "[]string")
DNS = Struct("DNS", (("Nameservers", STRINGS), ("Domain", STRING), ("Search", STRINGS), ("Options", STRINGS)))
RESULT = Struct("Result", (("CNIVersion", STRING), ("Interfaces", Slice(INTERFACE, "[]*types100.Interface")),
                           ("IPs", Slice(IP_CONFIG, "[]*types100.IPConfig")),
                           ("Routes", Slice(ROUTE, "[]*types.Route")), ("DNS", DNS)))


def cmd_args(container_id: str, netns: str, ifname: str, args: str, path: str, stdin: bytes) -> dict[str, Any]:
    return {"ContainerID": container_id, "Netns": netns, "IfName": ifname, "Args": args, "Path": path,
            "StdinData": stdin}


def typed(value: dict[str, Any], name: str, kind: type, default: Any) -> Any:
    """A decoded field, absent meaning zero; a mismatch is the decoder's error, as Go's
    (``gob: wrong type``), not a crash further on."""
    if not isinstance(value, dict):
        raise GobError(f"gob: type mismatch: a struct with {name} expected, got {type(value).__name__}")
    item = value.get(name, default)
    if not isinstance(item, kind) or isinstance(item, bool) != (kind is bool):
        raise GobError(f"gob: wrong type ({type(item).__name__}) for received field {name}")
    return item


# -- addresses: net.IP as its bytes, net.IPNet as {IP, Mask} ---------------------------------


def _ip_text(data: Any) -> str:
    """net.IP.String() of 4 or 16 bytes (an IPv4-mapped address as IPv4); empty: ''."""
    if not isinstance(data, bytes) or not data:
        return ""
    if len(data) == 16 and data[:12] == b"\0" * 10 + b"\xff\xff":
        data = data[12:]
    if len(data) not in (4, 16):
        raise GobError(f"invalid IP address in the reply: {data.hex()}")
    if len(data) == 4:
        return socket.inet_ntop(socket.AF_INET, data)
    import ipaddress  # RFC 5952 as Go prints it (inet_ntop would write ::1.2.3.4 forms)

    return str(ipaddress.IPv6Address(data))


def _ip_bytes(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)


def _ipnet(cidr: str) -> dict[str, Any]:
    address, _, prefix = cidr.partition("/")
    size = 16 if ":" in address else 4
    bits = int(prefix) if prefix else size * 8
    return {"IP": _ip_bytes(address), "Mask": ((1 << size * 8) - (1 << (size * 8 - bits))).to_bytes(size, "big")}


def _cidr(ipnet: Any) -> str:
    """net.IPNet.String(): the address and the mask's length (or the mask itself when
    it is not a prefix)."""
    if not isinstance(ipnet, dict):
        raise GobError("gob: wrong type for an IPNet")
    address = _ip_text(ipnet.get("IP", b""))
    mask = ipnet.get("Mask", b"")
    if not address or not isinstance(mask, bytes) or not mask:
        return "<nil>"
    if len(mask) == 16 and ":" not in address and mask[:12] == b"\xff" * 12:
        mask = mask[12:]  # an IPv4 mask in 16 bytes
    bits = int.from_bytes(mask, "big")
    ones = bin(bits).count("1")
    if bits != (1 << len(mask) * 8) - (1 << (len(mask) * 8 - ones)):
        return f"{address}/{mask.hex()}"
    return f"{address}/{ones}"


# -- current.Result <-> the CNI JSON result ---------------------------------------------------

_ROUTE_INTS = (("MTU", "mtu"), ("AdvMSS", "advmss"), ("Priority", "priority"))
_INTERFACE_FIELDS = (("Name", "name"), ("Mac", "mac"), ("Sandbox", "sandbox"), ("SocketPath", "socketPath"),
                     ("PciID", "pciID"))
_DNS_FIELDS = (("Nameservers", "nameservers"), ("Domain", "domain"), ("Search", "search"), ("Options", "options"))


def result_to_gob(result: dict[str, Any]) -> dict[str, Any]:
    """A CNI 1.x JSON result as Go's current.Result (what the daemon answers)."""
    ips = []
    for ip in result.get("ips") or []:
        config: dict[str, Any] = {"Address": _ipnet(ip["address"])}
        if ip.get("gateway"):
            config["Gateway"] = _ip_bytes(ip["gateway"])
        if ip.get("interface") is not None:
            config["Interface"] = ip["interface"]
        ips.append(config)
    routes = []
    for route in result.get("routes") or []:
        item: dict[str, Any] = {"Dst": _ipnet(route["dst"])}
        if route.get("gw"):
            item["GW"] = _ip_bytes(route["gw"])
        item.update({go: route[js] for go, js in _ROUTE_INTS if route.get(js)})
        item.update({go: route[js] for go, js in (("Table", "table"), ("Scope", "scope")) if js in route})
        routes.append(item)
    interfaces = [{**{go: i[js] for go, js in _INTERFACE_FIELDS if i.get(js)}, **({"Mtu": i["mtu"]} if i.get("mtu")
                                                                                  else {})}
                  for i in result.get("interfaces") or []]
    dns = result.get("dns") or {}
    return {"CNIVersion": result.get("cniVersion", ""), "Interfaces": interfaces, "IPs": ips, "Routes": routes,
            "DNS": {go: dns[js] for go, js in _DNS_FIELDS if dns.get(js)}}


def result_from_gob(value: dict[str, Any], cni_version: str = "1.1.0") -> dict[str, Any]:
    """Go's current.Result (what the daemon answered) as a CNI JSON result of ``cni_version``
    (the reference's plugin keeps its own ``cniVersion`` too: the daemon sends none)."""
    result: dict[str, Any] = {"cniVersion": cni_version}
    interfaces = []
    for item in typed(value, "Interfaces", list, []):
        entry = {js: typed(item, go, str, "") for go, js in _INTERFACE_FIELDS if item.get(go)}
        entry.setdefault("name", "")
        if typed(item, "Mtu", int, 0):
            entry["mtu"] = item["Mtu"]
        interfaces.append(entry)
    if interfaces:
        result["interfaces"] = interfaces
    ips = []
    for item in typed(value, "IPs", list, []):
        ip: dict[str, Any] = {}
        if "Interface" in item:
            ip["interface"] = typed(item, "Interface", int, 0)
        ip["address"] = _cidr(item.get("Address", {}))
        if _ip_text(typed(item, "Gateway", bytes, b"")):
            ip["gateway"] = _ip_text(item["Gateway"])
        ips.append(ip)
    if ips:
        result["ips"] = ips
    routes = []
    for item in typed(value, "Routes", list, []):
        route: dict[str, Any] = {"dst": _cidr(item.get("Dst", {}))}
        if _ip_text(typed(item, "GW", bytes, b"")):
            route["gw"] = _ip_text(item["GW"])
        route.update({js: typed(item, go, int, 0) for go, js in _ROUTE_INTS if item.get(go)})
        route.update({js: typed(item, go, int, 0) for go, js in (("Table", "table"), ("Scope", "scope"))
                      if go in item})
        routes.append(route)
    if routes:
        result["routes"] = routes
    dns_value = value.get("DNS") or {}
    dns = {js: dns_value[go] for go, js in _DNS_FIELDS if dns_value.get(go)}
    if dns:
        result["dns"] = dns
    return result
