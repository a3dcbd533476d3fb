"""Reading plugin configs the way the reference plugins report problems with them.

The Go plugins decode their config into structs; a wrongly typed field is a
plain error there, which reaches the runtime as code 999. Plugins here read
fields with :func:`get_field` and raise :class:`ConfigError` so that both
the code and the ``failed to load netconf:`` wording match.
"""

from __future__ import annotations

from cnicore.errors import ERR_INTERNAL, CNIError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_TYPE_NAMES = {bool: "bool", int: "int", str: "string", list: "array", dict: "object"}


class ConfigError(CNIError):
    """A config the reference rejects; like it, reported as an internal error (999)."""

    def __init__(self, msg: str) -> None:
        super().__init__(ERR_INTERNAL, msg)


def get_field(obj: dict[str, Any], key: str, kind: type, default: Any, where: str = "") -> Any:
    """``obj[key]`` if it is a ``kind`` (``null`` or absent: ``default``); a bool
    is not an int. ``where`` prefixes the key in the message (``args.cni.``)."""
    value = obj.get(key)
    if value is None:
        return default
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise ConfigError(f"failed to load netconf: {where}{key} must be of type "
                          f"{_TYPE_NAMES.get(kind, kind.__name__)}, got {type(value).__name__}")
    return value
