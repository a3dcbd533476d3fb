"""What a runtime says about one attachment, beyond the network config.

:class:`RuntimeConf` is the per-call input (container, netns, interface,
CNI_ARGS, capability arguments); :class:`NetworkAttachment` is what the
result cache remembers of it. The validators refuse values that would
break the cache file name or the kernel's interface rules before any plugin
runs, with the reference's codes and messages.
"""

from __future__ import annotations

from cnicore.names import validate_container_id, validate_network_name
from cnicore.names import validate_ifname as validate_interface_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterable, Mapping

__all__ = ["RuntimeConf", "NetworkAttachment", "validate_container_id",
           "validate_network_name", "validate_interface_name"]


class RuntimeConf:
    """The arguments of one invocation, except the network configuration.

    ``capability_args`` holds values for capabilities such as
    ``portMappings``; each plugin receives only those it declares in its
    ``capabilities`` (as ``runtimeConfig``). ``cache_dir`` is honoured only
    when the :class:`~cnicore.libcni.api.CNIConfig` has none (deprecated in
    the reference, kept for compatibility).
    """

    __slots__ = ("container_id", "netns", "ifname", "args", "capability_args", "cache_dir")

    def __init__(self, container_id: str = "", netns: str = "", ifname: str = "",
                 args: Iterable[tuple[str, str]] | None = None,
                 capability_args: Mapping[str, Any] | None = None, cache_dir: str = "") -> None:
        self.container_id = container_id
        self.netns = netns
        self.ifname = ifname
        self.args = [(str(k), str(v)) for k, v in (args or [])]
        self.capability_args = dict(capability_args or {})
        self.cache_dir = cache_dir

    def copy(self, **changes: Any) -> RuntimeConf:
        fields = {name: getattr(self, name) for name in self.__slots__}
        fields.update(changes)
        return RuntimeConf(**fields)

    def cni_args(self) -> str:
        """CNI_ARGS as plugins see it: ``K=V;K=V``."""
        return ";".join(f"{k}={v}" for k, v in self.args)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RuntimeConf):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
        return f"RuntimeConf({inner})"


class NetworkAttachment:
    """One cached attachment: enough to DEL it later without the runtime."""

    __slots__ = ("container_id", "network", "ifname", "config", "netns", "cni_args",
                 "capability_args")

    def __init__(self, container_id: str, network: str, ifname: str, config: bytes | None,
                 netns: str = "", cni_args: list[tuple[str, str]] | None = None,
                 capability_args: dict[str, Any] | None = None) -> None:
        self.container_id = container_id
        self.network = network
        self.ifname = ifname
        self.config = config
        self.netns = netns
        self.cni_args = list(cni_args or [])
        self.capability_args = dict(capability_args or {})

    def runtime_conf(self) -> RuntimeConf:
        """The :class:`RuntimeConf` that DELs this attachment."""
        return RuntimeConf(self.container_id, self.netns, self.ifname, self.cni_args,
                           self.capability_args)

    def __repr__(self) -> str:
        return (f"NetworkAttachment(container_id={self.container_id!r}, network={self.network!r}, "
                f"ifname={self.ifname!r}, netns={self.netns!r})")
