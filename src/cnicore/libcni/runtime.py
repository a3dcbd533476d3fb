"""What a runtime says about one attachment, beyond the network config.

:class:`RuntimeConf` is the per-call input (container, netns, interface,
CNI_ARGS, capability arguments); :class:`NetworkAttachment` is what the
result cache remembers of it. The validators refuse values that would
break the cache file name or the kernel's interface rules before any plugin
runs, with the reference's codes and messages.
"""

from __future__ import annotations

import re

from cnicore.errors import (CNIError, ERR_INVALID_ENVIRONMENT_VARIABLES,
                            ERR_INVALID_NETWORK_CONFIG, ERR_UNKNOWN_CONTAINER)

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


_VALID_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.\-]*")
MAX_IFNAME_LEN = 15


def validate_container_id(container_id: str) -> None:
    """Refuse an empty ID or one that is unsafe in a cache file name."""
    if not container_id:
        raise CNIError(ERR_UNKNOWN_CONTAINER, "missing containerID")
    if not _VALID_NAME.fullmatch(container_id):
        raise CNIError(ERR_INVALID_ENVIRONMENT_VARIABLES, "invalid characters in containerID",
                       container_id)


def validate_network_name(name: str) -> None:
    """Refuse an empty network name or one that is unsafe in a file name."""
    if not name:
        raise CNIError(ERR_INVALID_NETWORK_CONFIG, "missing network name:")
    if not _VALID_NAME.fullmatch(name):
        raise CNIError(ERR_INVALID_NETWORK_CONFIG, "invalid characters found in network name", name)


def validate_interface_name(ifname: str) -> None:
    """The kernel's rules: 1-15 bytes, not ``.``/``..``, no ``/``, ``:`` or whitespace."""
    if not ifname:
        raise CNIError(ERR_INVALID_ENVIRONMENT_VARIABLES, "interface name is empty")
    if len(ifname.encode("utf-8", "surrogateescape")) > MAX_IFNAME_LEN:
        raise CNIError(ERR_INVALID_ENVIRONMENT_VARIABLES, "interface name is too long",
                       f"interface name should be less than {MAX_IFNAME_LEN + 1} characters")
    if ifname in (".", ".."):
        raise CNIError(ERR_INVALID_ENVIRONMENT_VARIABLES, "interface name is . or ..")
    if any(ch in "/:" or ch.isspace() for ch in ifname):
        raise CNIError(ERR_INVALID_ENVIRONMENT_VARIABLES,
                       "interface name contains / or : or whitespace characters")
