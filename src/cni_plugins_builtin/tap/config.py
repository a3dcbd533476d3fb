"""The tap plugin's configuration: the reference's ``NetConf``, decoded with Go's rules.

``types.NetConf`` plus ``multiQueue``, ``mtu``, ``mac``, ``owner`` and ``group``
(uids/gids: absent is not 0), ``selinuxContext`` and ``bridge``; the MAC may also
come from CNI_ARGS ``MAC`` and, above both, ``runtimeConfig.mac``.
"""

from __future__ import annotations

from cnicore.config import BOOL, INT, NETCONF_FIELDS, PREFIX, STRING, Scalar, Struct, decode_struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from cnicore.request import Request

_UINT32 = Scalar("uint32")
SCHEMA = Struct("NetConf", {
    **NETCONF_FIELDS,
    "multiQueue": BOOL, "mtu": INT, "mac": STRING, "owner": _UINT32, "group": _UINT32,
    "selinuxContext": STRING, "bridge": STRING,
    "runtimeConfig": Struct("", {"mac": STRING}, "struct { Mac string \"json:\\\"mac,omitempty\\\"\" }"),
})


class TapConf:
    """A decoded tap config."""

    __slots__ = ("multi_queue", "mtu", "mac", "owner", "group", "selinux_context", "bridge", "ipam_type", "dns")

    def __init__(self, request: Request) -> None:
        conf: dict[str, Any] = decode_struct(request.config, SCHEMA, PREFIX)
        self.multi_queue = bool(conf.get("multiQueue"))
        self.mtu: int = conf.get("mtu") or 0
        self.mac: str = conf.get("mac") or ""
        self.owner: int | None = conf.get("owner")
        self.group: int | None = conf.get("group")
        self.selinux_context: str = conf.get("selinuxContext") or ""
        self.bridge: str = conf.get("bridge") or ""
        self.ipam_type: str = (conf.get("ipam") or {}).get("type") or ""
        self.dns: dict[str, Any] = conf.get("dns") or {}
        if request.args:
            from cnicore.config import load_args

            args = load_args(request.args, {"MAC": str})
            if args.get("MAC"):
                self.mac = args["MAC"]
        runtime_mac = (conf.get("runtimeConfig") or {}).get("mac")
        if runtime_mac:
            self.mac = runtime_mac
