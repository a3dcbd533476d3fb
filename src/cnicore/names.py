"""Names CNI passes around: container IDs, network names, interface names.

The reference checks them in one place (``pkg/utils``) for both sides of the
protocol; so do we: :mod:`cnicore.skel` on the plugin side and
:mod:`cnicore.libcni` on the runtime side. No ``re``: it would cost every
plugin exec ~3 ms to import.
"""

from __future__ import annotations

from cnicore import errors
from cnicore._go import GO_SPACE
from cnicore.errors import CNIError

MAX_IFNAME_LEN = 15
_NAME_FIRST = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_NAME_REST = _NAME_FIRST | frozenset("_.-")


def valid_name(name: str) -> bool:
    """The reference's ``^[a-zA-Z0-9][a-zA-Z0-9_.\\-]*$`` (a full match: no
    trailing newline) for container IDs and network names."""
    return bool(name) and name[0] in _NAME_FIRST and all(c in _NAME_REST for c in name)


def validate_container_id(container_id: str) -> None:
    if container_id == "":
        raise CNIError(errors.ERR_UNKNOWN_CONTAINER, "missing containerID")
    if not valid_name(container_id):
        raise CNIError(errors.ERR_INVALID_ENVIRONMENT_VARIABLES, "invalid characters in containerID",
                       container_id)


def validate_network_name(name: str) -> None:
    if name == "":
        raise CNIError(errors.ERR_INVALID_NETWORK_CONFIG, "missing network name:")
    if not valid_name(name):
        raise CNIError(errors.ERR_INVALID_NETWORK_CONFIG, "invalid characters found in network name",
                       name)


def validate_ifname(ifname: str) -> None:
    """The kernel's rules: 1-15 bytes, not ``.``/``..``, no ``/``, ``:`` or whitespace."""
    if len(ifname) == 0:
        raise CNIError(errors.ERR_INVALID_ENVIRONMENT_VARIABLES, "interface name is empty")
    if len(ifname.encode("utf-8", "surrogateescape")) > MAX_IFNAME_LEN:
        raise CNIError(errors.ERR_INVALID_ENVIRONMENT_VARIABLES, "interface name is too long",
                       f"interface name should be less than {MAX_IFNAME_LEN + 1} characters")
    if ifname in (".", ".."):
        raise CNIError(errors.ERR_INVALID_ENVIRONMENT_VARIABLES, "interface name is . or ..")
    if any(c in "/:" or c in GO_SPACE for c in ifname):
        raise CNIError(errors.ERR_INVALID_ENVIRONMENT_VARIABLES,
                       "interface name contains / or : or whitespace characters")
