"""The firewall plugin's configuration, pure: the reference's ``FirewallNetConf``."""

from __future__ import annotations

from cnicore.config import NETCONF_FIELDS, STRING, Struct, decode_struct
from cnicore.errors import ERR_INTERNAL, CNIError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

FIREWALLD = "firewalld"
#: ingressPolicy values; "" means open.
OPEN, SAME_BRIDGE, ISOLATED = "open", "same-bridge", "isolated"
DEFAULT_ADMIN_CHAIN = "CNI-ADMIN"
#: The reference's ``FirewallNetConf`` (what ``encoding/json`` decodes the config into).
SCHEMA = Struct("FirewallNetConf", {
    **NETCONF_FIELDS,
    "backend": STRING, "iptablesAdminChainName": STRING, "firewalldZone": STRING, "ingressPolicy": STRING,
})


class FirewallNetConf:
    """The plugin's own keys, decoded as Go's encoding/json would."""

    __slots__ = ("backend", "admin_chain", "ingress_policy")

    def __init__(self, raw: dict[str, Any]) -> None:
        obj = decode_struct(raw, SCHEMA, "failed to load netconf: ")
        self.backend: str = obj.get("backend") or ""
        self.admin_chain: str = obj.get("iptablesAdminChainName") or DEFAULT_ADMIN_CHAIN
        self.ingress_policy: str = obj.get("ingressPolicy") or ""

    @property
    def isolates(self) -> bool:
        """Whether ingressPolicy asks for the bridge isolation chains."""
        return self.ingress_policy in (SAME_BRIDGE, ISOLATED)


def check_ingress_policy(conf: FirewallNetConf) -> None:
    """The reference's error for a policy it does not know."""
    if conf.ingress_policy not in ("", OPEN, SAME_BRIDGE, ISOLATED):
        raise CNIError(ERR_INTERNAL, f'unknown ingress policy: "{conf.ingress_policy}"')


def check_backend(conf: FirewallNetConf) -> None:
    """Only the iptables backend is built: firewalld needs a running firewalld on the system D-Bus.

    The reference treats any other value (and none) as "firewalld if it is
    running, else iptables"; we take iptables for those.
    """
    if conf.backend == FIREWALLD:
        raise CNIError(ERR_INTERNAL, 'firewall backend "firewalld" is not supported by cnicore\'s firewall '
                                     'plugin: use "backend": "iptables"')
