"""CNI errors: the spec's well-known codes and the exception that carries them.

A plugin signals failure by raising :class:`CNIError`; ``skel`` turns it into the
spec's error object on stdout and a non-zero exit status.
"""

from __future__ import annotations

# Well-known error codes (CNI spec, "Error" section).
__all__ = [
    "ERR_UNKNOWN",
    "ERR_INCOMPATIBLE_CNI_VERSION",
    "ERR_UNSUPPORTED_FIELD",
    "ERR_UNKNOWN_CONTAINER",
    "ERR_INVALID_ENVIRONMENT_VARIABLES",
    "ERR_IO_FAILURE",
    "ERR_DECODING_FAILURE",
    "ERR_INVALID_NETWORK_CONFIG",
    "ERR_INVALID_NETNS",
    "ERR_TRY_AGAIN_LATER",
    "ERR_PLUGIN_NOT_AVAILABLE",
    "ERR_LIMITED_CONNECTIVITY",
    "ERR_INTERNAL",
    "CODE_NAMES",
    "CNIError",
]

ERR_UNKNOWN = 0
ERR_INCOMPATIBLE_CNI_VERSION = 1
ERR_UNSUPPORTED_FIELD = 2
ERR_UNKNOWN_CONTAINER = 3
ERR_INVALID_ENVIRONMENT_VARIABLES = 4
ERR_IO_FAILURE = 5
ERR_DECODING_FAILURE = 6
ERR_INVALID_NETWORK_CONFIG = 7
ERR_INVALID_NETNS = 8
ERR_TRY_AGAIN_LATER = 11
ERR_PLUGIN_NOT_AVAILABLE = 50
ERR_LIMITED_CONNECTIVITY = 51
ERR_INTERNAL = 999

CODE_NAMES = {
    ERR_UNKNOWN: "unknown",
    ERR_INCOMPATIBLE_CNI_VERSION: "incompatible CNI version",
    ERR_UNSUPPORTED_FIELD: "unsupported field in network configuration",
    ERR_UNKNOWN_CONTAINER: "container unknown or does not exist",
    ERR_INVALID_ENVIRONMENT_VARIABLES: "invalid necessary environment variables",
    ERR_IO_FAILURE: "I/O failure",
    ERR_DECODING_FAILURE: "failed to decode content",
    ERR_INVALID_NETWORK_CONFIG: "invalid network config",
    ERR_INVALID_NETNS: "invalid network namespace",
    ERR_TRY_AGAIN_LATER: "try again later",
    ERR_PLUGIN_NOT_AVAILABLE: "plugin is not available",
    ERR_LIMITED_CONNECTIVITY: "limited connectivity",
    ERR_INTERNAL: "internal error",
}


class CNIError(Exception):
    """A failure with a CNI error code, a message and optional details.

    ``str(err)`` is ``"msg; details"`` like the reference's ``Error()``.
    """

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        self.code = int(code)
        self.msg = msg
        self.details = details
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.msg}; {self.details}" if self.details else self.msg

    def __repr__(self) -> str:
        return f"CNIError(code={self.code}, msg={self.msg!r}, details={self.details!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CNIError):
            return NotImplemented
        return (self.code, self.msg, self.details) == (other.code, other.msg, other.details)

    __hash__ = Exception.__hash__

    def to_dict(self, cni_version: str | None = None) -> dict[str, object]:
        """The spec's error object; ``details`` omitted when empty (as Go does)."""
        obj: dict[str, object] = {}
        if cni_version:
            obj["cniVersion"] = cni_version
        obj["code"] = self.code
        obj["msg"] = self.msg
        if self.details:
            obj["details"] = self.details
        return obj

    @classmethod
    def from_dict(cls, obj: object) -> "CNIError":
        """Parse an error object printed by a plugin (unknown keys ignored)."""
        if not isinstance(obj, dict):
            raise ValueError("error object is not a JSON object")
        code = obj.get("code", 0)
        if not isinstance(code, int) or isinstance(code, bool) or code < 0:
            raise ValueError(f"error object has an invalid code {code!r}")
        msg = obj.get("msg", "")
        details = obj.get("details", "")
        return cls(code, msg if isinstance(msg, str) else str(msg),
                   details if isinstance(details, str) else str(details))
