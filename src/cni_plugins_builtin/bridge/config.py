"""The bridge plugin's configuration: decoding and validation, pure.

Field names, defaults and error texts follow the reference bridge so that a
config and its failures read the same with either implementation. The MAC
for the container side comes from, in increasing precedence, CNI_ARGS
``MAC``, ``args.cni.mac`` and ``runtimeConfig.mac``.
"""

from __future__ import annotations

from cnicore.config import BOOL, INT, NETCONF_FIELDS, STRING, NetConfError, Slice, Struct, decode_struct, load_args
from cnicore.ip import ethernet_mac

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_BRIDGE = "cni0"
MAX_VLAN = 4094
MAX_MTU = 65535


def _get(obj: dict[str, Any], key: str, default: Any) -> Any:
    """``obj[key]``, or ``default`` when it is absent or null (decode_struct checked its kind)."""
    value = obj.get(key)
    return default if value is None else value

_MAC_ONLY = {"mac": STRING}
#: The reference's ``NetConf`` (what ``encoding/json`` decodes the config into).
SCHEMA = Struct("NetConf", {
    **NETCONF_FIELDS,
    "bridge": STRING, "isGateway": BOOL, "isDefaultGateway": BOOL, "forceAddress": BOOL, "ipMasq": BOOL,
    "ipMasqBackend": STRING, "mtu": INT, "hairpinMode": BOOL, "promiscMode": BOOL, "vlan": INT,
    "vlanTrunk": Slice(Struct("VlanTrunk", {"minID": INT, "maxID": INT, "id": INT}, "*bridge.VlanTrunk")),
    "preserveDefaultVlan": BOOL, "macspoofchk": BOOL, "enabledad": BOOL, "disableContainerInterface": BOOL,
    "portIsolation": BOOL,
    "args": Struct("", {"cni": Struct("BridgeArgs", _MAC_ONLY, "main.BridgeArgs")},
                   "struct { Cni main.BridgeArgs \"json:\\\"cni,omitempty\\\"\" }"),
    "runtimeConfig": Struct("", _MAC_ONLY, "struct { Mac string \"json:\\\"mac,omitempty\\\"\" }"),
})


def _is_vid(value: Any) -> bool:
    """A VLAN ID in 1..4094 (JSON true is not 1, as Go will not decode it into an int)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_VLAN


def collect_vlan_trunk(trunk: list[Any] | None) -> list[int]:
    """The sorted, de-duplicated VLAN IDs of ``vlanTrunk`` (``id`` or ``minID``..``maxID``)."""
    if not trunk:
        return []
    vlans: set[int] = set()
    for item in trunk:
        if not isinstance(item, dict):
            raise NetConfError("failed to load netconf: vlanTrunk entries must be objects")
        low, high, one = item.get("minID"), item.get("maxID"), item.get("id")
        if low is not None and high is not None:
            if not _is_vid(low):
                raise NetConfError("incorrect trunk minID parameter")
            if not _is_vid(high):
                raise NetConfError("incorrect trunk maxID parameter")
            if high < low:
                raise NetConfError("minID is greater than maxID in trunk parameter")
            vlans.update(range(low, high + 1))
        elif low is None and high is not None:
            raise NetConfError("minID and maxID should be configured simultaneously, minID is missing")
        elif low is not None and high is None:
            raise NetConfError("minID and maxID should be configured simultaneously, maxID is missing")
        if one is not None:
            if not _is_vid(one):
                raise NetConfError("incorrect trunk id parameter")
            vlans.add(one)
    return sorted(vlans)


class BridgeConf:
    """A decoded bridge config; see the module docstring for sources and rules."""

    __slots__ = ("name", "bridge", "is_gateway", "is_default_gateway", "force_address", "ip_masq",
                 "ip_masq_backend", "mtu", "hairpin", "promisc", "vlan", "vlans", "trunk_given",
                 "preserve_default_vlan", "mac_spoof_check", "enable_dad", "disable_container_interface",
                 "port_isolation", "ipam_type", "dns", "mac")

    def __init__(self, raw: dict[str, Any], cni_args: str = "") -> None:
        conf = decode_struct(raw, SCHEMA, "failed to load netconf: ")
        self.name: str = conf.get("name") or ""
        self.bridge: str = _get(conf, "bridge", "") or DEFAULT_BRIDGE
        self.is_default_gateway: bool = _get(conf, "isDefaultGateway", False)
        self.is_gateway: bool = _get(conf, "isGateway", False) or self.is_default_gateway
        self.force_address: bool = _get(conf, "forceAddress", False)
        self.ip_masq: bool = _get(conf, "ipMasq", False)
        self.ip_masq_backend: str | None = _get(conf, "ipMasqBackend", None)
        self.mtu: int = _get(conf, "mtu", 0)
        self.hairpin: bool = _get(conf, "hairpinMode", False)
        self.promisc: bool = _get(conf, "promiscMode", False)
        self.vlan: int = _get(conf, "vlan", 0)
        if self.vlan < 0 or self.vlan > MAX_VLAN:
            raise NetConfError(f"invalid VLAN ID {self.vlan} (must be between 0 and {MAX_VLAN})")
        trunk = _get(conf, "vlanTrunk", None)
        self.trunk_given = trunk is not None
        self.vlans = collect_vlan_trunk(trunk)
        self.preserve_default_vlan: bool = _get(conf, "preserveDefaultVlan", False)
        self.mac_spoof_check: bool = _get(conf, "macspoofchk", False)
        self.enable_dad: bool = _get(conf, "enabledad", False)
        self.disable_container_interface: bool = _get(conf, "disableContainerInterface", False)
        self.port_isolation: bool = _get(conf, "portIsolation", False)
        ipam = _get(conf, "ipam", {})
        self.ipam_type: str = _get(ipam, "type", "")
        self.dns: dict[str, Any] = _get(conf, "dns", {})
        self.mac = ""
        if cni_args:
            self.mac = load_args(cni_args, {"MAC": str}).get("MAC", "") or ""
        args_cni = _get(_get(conf, "args", {}), "cni", {})
        self.mac = _get(args_cni, "mac", "") or self.mac
        self.mac = _get(_get(conf, "runtimeConfig", {}), "mac", "") or self.mac
        if self.mac:  # checked before anything is made (Go finds out when making the veth)
            try:
                ethernet_mac(self.mac)
            except ValueError as exc:
                raise NetConfError(f"failed to make veth pair: {exc}") from None
        if not 0 <= self.mtu <= MAX_MTU:  # the kernel's bound (Go fails later, after making the bridge)
            raise NetConfError(f"failed to load netconf: invalid mtu {self.mtu} (must be 0..{MAX_MTU})")

    @property
    def is_layer3(self) -> bool:
        return bool(self.ipam_type)

    @property
    def vlan_filtering(self) -> bool:
        return self.vlan != 0 or self.trunk_given

    def check_for_add(self) -> None:
        """Combinations ADD refuses before touching anything."""
        if self.is_layer3 and self.disable_container_interface:
            raise NetConfError("cannot use IPAM when DisableContainerInterface flag is set")
        if self.hairpin and self.promisc:
            raise NetConfError("cannot set hairpin mode and promiscuous mode at the same time")
