"""The macvlan plugin's configuration: the reference's ``NetConf``, decoded with Go's rules.

``master`` (absent: the default route's interface, in the plugin's own namespace or
with ``linkInContainer`` in the container's), ``mode`` (bridge, the default; private,
vepa, passthru), ``mtu`` (0 to the master's), ``mac`` (CNI_ARGS ``MAC`` overrides it,
``runtimeConfig.mac`` both), ``linkInContainer``, ``bcqueuelen`` (uint32). Errors
read ``failed to load netconf: json: ...`` and the reference's texts, code 999.
"""

from __future__ import annotations

from cnicore.config import BOOL, INT, NETCONF_FIELDS, PREFIX, STRING, NetConfError, Struct, decode_struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from cnicore.request import Request

SCHEMA = Struct("NetConf", {
    **NETCONF_FIELDS,
    "master": STRING, "mode": STRING, "mtu": INT, "mac": STRING, "linkInContainer": BOOL, "bcqueuelen": INT,
    "runtimeConfig": Struct("", {"mac": STRING}, 'struct { Mac string "json:\\"mac,omitempty\\"" }'),
})


class MacvlanConf:
    """A decoded macvlan config; :meth:`resolve` fills in and checks the master."""

    __slots__ = ("master", "mode", "mtu", "mac", "link_in_container", "bcqueuelen", "ipam_type", "dns",
                 "_runtime_mac")

    def __init__(self, raw: dict[str, Any]) -> None:
        conf = decode_struct(raw, SCHEMA, PREFIX)
        self.master: str = conf.get("master") or ""
        self.mode: str = conf.get("mode") or ""
        self.mtu: int = conf.get("mtu") or 0
        self.mac: str = conf.get("mac") or ""
        self.link_in_container: bool = bool(conf.get("linkInContainer"))
        self.bcqueuelen: int = conf.get("bcqueuelen") or 0
        if not 0 <= self.bcqueuelen < 1 << 32:  # Go's uint32
            raise NetConfError(f"{PREFIX}json: cannot unmarshal number {self.bcqueuelen} into Go struct field "
                               "NetConf.bcqueuelen of type uint32")
        self.ipam_type: str = (conf.get("ipam") or {}).get("type") or ""
        self.dns: dict[str, Any] = conf.get("dns") or {}
        self._runtime_mac: str = (conf.get("runtimeConfig") or {}).get("mac") or ""

    def resolve(self, request: Request) -> MacvlanConf:
        """The reference's loadConf after decoding, in its order: the default master, its MTU
        bound, then the MAC from CNI_ARGS and ``runtimeConfig``."""
        from cni_plugins_builtin import sublink

        if not self.master:
            self.master = sublink.default_master(request.netns, self.link_in_container)
        sublink.check_mtu(self.mtu, self.master, request.netns, self.link_in_container)
        if request.args:
            from cnicore.config import load_args

            self.mac = load_args(request.args, {"MAC": str}).get("MAC", "") or self.mac
        self.mac = self._runtime_mac or self.mac
        return self


def load(request: Request) -> MacvlanConf:
    """ADD's and CHECK's config: decoded, CNI_ARGS applied, master resolved."""
    return MacvlanConf(request.config).resolve(request)
