"""The firewall plugin's configuration, pure: the reference's ``FirewallNetConf``."""

from __future__ import annotations

from dataclasses import dataclass

from cnicore.config import decode
from cnicore.errors import ERR_INTERNAL, CNIError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnicore.request import Request

IPTABLES = "iptables"
FIREWALLD = "firewalld"
#: ingressPolicy values; "" means open.
OPEN, SAME_BRIDGE, ISOLATED = "open", "same-bridge", "isolated"
DEFAULT_ADMIN_CHAIN = "CNI-ADMIN"


@dataclass
class FirewallNetConf:
    """The plugin's own keys (the common NetConf keys are checked by :func:`decode`)."""

    backend: str = ""
    iptables_admin_chain_name: str = ""
    firewalld_zone: str = ""
    ingress_policy: str = ""

    @property
    def admin_chain(self) -> str:
        return self.iptables_admin_chain_name or DEFAULT_ADMIN_CHAIN

    @property
    def isolates(self) -> bool:
        """Whether ingressPolicy asks for the bridge isolation chains."""
        return self.ingress_policy in (SAME_BRIDGE, ISOLATED)


def parse_conf(request: Request) -> FirewallNetConf:
    """Decoded as Go's encoding/json would ("failed to load netconf: ..." on a bad type)."""
    conf = decode(request, FirewallNetConf)
    for name in ("backend", "iptables_admin_chain_name", "firewalld_zone", "ingress_policy"):
        if getattr(conf, name) is None:
            setattr(conf, name, "")
    return conf


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
