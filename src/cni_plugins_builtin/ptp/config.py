"""The ptp plugin's configuration: the reference's ``NetConf``, decoded with Go's rules, pure.

``types.NetConf`` plus ``ipMasq`` (bool), ``ipMasqBackend`` (``iptables`` or
``nftables``; absent: iptables where usable) and ``mtu`` (0: the kernel's
default). Errors read ``failed to load netconf: json: ...``, code 999.
"""

from __future__ import annotations

from cnicore.config import BOOL, INT, NETCONF_FIELDS, PREFIX, STRING, Struct, decode_struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from cnicore.types import DNS

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).

#: The reference's ``NetConf`` (``types.NetConf`` embedded).
SCHEMA = Struct("NetConf", {**NETCONF_FIELDS, "ipMasq": BOOL, "ipMasqBackend": STRING, "mtu": INT})


class PtpConf:
    """A decoded ptp config."""

    __slots__ = ("name", "ip_masq", "ip_masq_backend", "mtu", "dns")

    def __init__(self, raw: dict[str, Any]) -> None:
        conf = decode_struct(raw, SCHEMA, PREFIX)
        self.name: str = conf.get("name") or ""
        self.ip_masq: bool = bool(conf.get("ipMasq"))
        self.ip_masq_backend: str | None = conf.get("ipMasqBackend")
        self.mtu: int = conf.get("mtu") or 0
        self.dns: dict[str, Any] = conf.get("dns") or {}

    def result_dns(self) -> DNS | None:
        """The config's ``dns`` when any field of it is set (an empty list counts, as
        Go's non-nil slice does): it then replaces the IPAM plugin's."""
        from cnicore.types import DNS

        dns = self.dns
        if all(dns.get(key) is None for key in ("nameservers", "search", "options")) and not dns.get("domain"):
            return None
        return DNS(dns.get("nameservers"), dns.get("domain") or "", dns.get("search"), dns.get("options"))
