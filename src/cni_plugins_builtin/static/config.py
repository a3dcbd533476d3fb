"""The static IPAM config: decoded and validated as the reference's ``LoadIPAMConfig``.

Where the addresses come from, as in the reference:

1. ``ipam.addresses`` (``address`` in CIDR notation, optional ``gateway``);
2. CNI_ARGS ``IP=`` (comma-separated CIDRs) is *added* to them, and
   ``GATEWAY=`` (comma-separated addresses) becomes the gateway of every
   CNI_ARGS address whose subnet holds it;
3. ``args.cni.ips`` *replaces* all of the above;
4. ``runtimeConfig.ips`` (the ``ips`` capability) replaces all of the above.

The config is decoded with Go's ``encoding/json`` rules into the reference's
``Net`` struct (which does not embed ``types.NetConf``), and a decoding
error is reported bare, without the ``failed to load netconf:`` prefix the
other plugins use — both as the reference does. Pure: no I/O.

Deliberate differences (matching host-local's, :mod:`cni_plugins_builtin.host_local.config`):

* routes keep the 1.1.0 attributes (``mtu``, ``advmss``, ``priority``,
  ``table``, ``scope``), which the reference's older libcni drops;
* a route without ``dst`` is an error instead of ``"dst": "<nil>"`` in the
  result, and a ``null`` route is skipped instead of printed (both decoded
  by :data:`cnicore.config.ROUTES`, as host-local's);
* the ``Address`` and ``Version`` keys of an address (Go struct fields the
  reference exposes by accident: ``net.IPNet`` and a string) are checked for
  their kind but not used; only ``address`` gives the address.
"""

from __future__ import annotations

from cnicore.config import NET_IP, NETCONF_FIELDS, ROUTES, STRING, Decoder, GoType, NetConfError, Slice, Struct
from cnicore.ip import parse_cidr, parse_ip

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from cnicore.ip import CIDR, IPAddress, IPNetwork
    from cnicore.types import DNS, Route

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).

def fail(msg: str) -> NetConfError:
    """Every static failure is a plain Go error: code 999."""
    return NetConfError(msg)


class _IPMask(GoType):
    """``net.IPMask`` (a ``[]byte``): base64 text or a list of bytes; only its kind matters here."""

    name = "net.IPMask"

    def decode(self, d: Decoder, value: Any, struct: str, path: tuple[str, ...]) -> Any:
        if value is not None and not isinstance(value, (str, list)):
            d.mismatch(value, self.name, struct, path)
        elif isinstance(value, list):
            for item in value:
                if item is not None and (isinstance(item, bool) or not isinstance(item, int)
                                         or not 0 <= item <= 255):
                    d.mismatch(item, "uint8", struct, path)
        return None


_STRINGS = Slice(STRING)
#: ``main.Address``. "Address" comes before "address" so that a key matching
#: both only case-insensitively goes to ``address``, Go's first field.
_ADDRESS = Struct("Address", {
    "Address": Struct("IPNet", {"IP": NET_IP, "Mask": _IPMask()}, "net.IPNet"),
    "address": STRING, "gateway": NET_IP, "Version": STRING,
}, "main.Address")
_IPAM = Struct("IPAMConfig", {
    "Name": STRING, "type": STRING, "routes": ROUTES, "addresses": Slice(_ADDRESS),
    "dns": NETCONF_FIELDS["dns"],
}, "main.IPAMConfig")
#: The reference's ``Net``: what ``LoadIPAMConfig`` decodes the config into.
NET = Struct("Net", {
    "name": STRING, "cniVersion": STRING, "ipam": _IPAM,
    "runtimeConfig": Struct("", {"ips": _STRINGS}, 'struct { IPs []string "json:\\"ips,omitempty\\"" }'),
    "args": Struct("", {"cni": Struct("IPAMArgs", {"ips": _STRINGS}, "main.IPAMArgs")},
                   'struct { A *main.IPAMArgs "json:\\"cni\\"" }'),
})


class Address:
    """One address to hand out: ``cidr`` (host bits kept) and its gateway, if any."""

    __slots__ = ("cidr", "gateway")

    def __init__(self, cidr: CIDR, gateway: IPAddress | None = None) -> None:
        self.cidr = cidr
        self.gateway = gateway

    @property
    def network(self) -> IPNetwork:
        """The subnet, as Go's ``IPNet.Contains`` sees it (an IPv4-mapped address: its IPv4 subnet)."""
        import ipaddress

        prefix = max(self.cidr.prefix - 96, 0) if self.cidr.mixed else self.cidr.prefix
        return ipaddress.ip_network((self.cidr.ip, prefix), strict=False)


class StaticConf:
    """The validated config: ``addresses`` in order, ``routes``, ``dns``, and the
    config's ``cniVersion`` (the version the result is printed in)."""

    __slots__ = ("addresses", "routes", "dns", "cni_version")

    def __init__(self, addresses: list[Address], routes: list[Route], dns: DNS, cni_version: str) -> None:
        self.addresses = addresses
        self.routes = routes
        self.dns = dns
        self.cni_version = cni_version


def _cidr(text: str, what: str) -> CIDR:
    cidr = parse_cidr(text)
    if cidr is None:
        raise fail(f"{what}, got: '{text}'")
    return cidr


def _from_cni_args(cni_args: str, addresses: list[Address]) -> None:
    """CNI_ARGS ``IP`` (added to ``addresses``) and ``GATEWAY`` (set on those it fits)."""
    from cnicore.config import load_args
    from cnicore.utils import trim_space

    env = load_args(cni_args, {"IP": str, "GATEWAY": str})
    mine: list[Address] = []
    for item in (env.get("IP") or "").split(",") if env.get("IP") else ():
        text = trim_space(item)
        mine.append(Address(_cidr(text, "the 'ip' field is expected to be in CIDR notation")))
    addresses.extend(mine)
    for item in (env.get("GATEWAY") or "").split(",") if env.get("GATEWAY") else ():
        gw = parse_ip(trim_space(item))
        if gw is None:
            raise fail(f"invalid gateway address: {item}")
        # Only addresses parsed so far hold a subnet: in the reference those from
        # the config are parsed later, so a CNI_ARGS gateway never applies to them.
        for address in mine:
            if gw.version == address.network.version and gw in address.network:
                address.gateway = gw


def _replace(ips: list[Any] | None) -> list[Address] | None:
    """``args.cni.ips`` or ``runtimeConfig.ips``: the addresses that replace all others."""
    if not ips:
        return None
    return [Address(_cidr(text or "", "an entry in the 'ips' field is NOT in CIDR notation")) for text in ips]


def load_config(config: dict[str, Any], cni_args: str = "") -> StaticConf:
    """The validated config (``config`` is the decoded stdin, already checked by skel);
    raises the reference's errors, in its order."""
    from cnicore.config import lookup
    from cnicore.types import DNS
    from cnicore.version import greater_or_equal

    d = Decoder()
    net = NET.decode(d, config, "Net", ())
    d.finish()
    ipam = net.get("ipam")
    if ipam is None:
        raise fail("IPAM config missing 'ipam' key")

    addresses: list[Address] = []
    configured = [a for a in ipam.get("addresses") or [] if a is not None]
    if cni_args:
        _from_cni_args(cni_args, addresses)
    args_cni = (net.get("args") or {}).get("cni") or {}
    replaced = _replace(args_cni.get("ips"))
    runtime = _replace((net.get("runtimeConfig") or {}).get("ips"))
    if runtime is not None:
        addresses, configured = runtime, []
    elif replaced is not None:
        addresses, configured = replaced, []
    else:
        # The config's own addresses come first, then those from CNI_ARGS.
        parsed = [Address(_cidr(a.get("address") or "", "the 'address' field is expected to be in CIDR notation"),
                          a.get("gateway")) for a in configured]
        addresses = parsed + addresses

    version = str(lookup(config, "cniVersion") or "")
    v4 = sum(1 for a in addresses if a.cidr.ip.version == 4)
    if v4 > 1 or len(addresses) - v4 > 1:
        try:
            modern = greater_or_equal(version, "0.3.0")
        except ValueError:
            modern = False
        if not modern:
            raise fail(f"CNI version {version} does not support more than 1 address per family")

    dns = ipam.get("dns") or {}
    return StaticConf(addresses, ipam.get("routes") or [],
                      DNS(dns.get("nameservers") or [], dns.get("domain") or "", dns.get("search") or [],
                          dns.get("options") or []), version)
