"""CNI spec versions: parsing, comparison, config decoding, VERSION answers.

Pure functions, no I/O. Semantics follow the reference: a missing version is
0.1.0, versions compare numerically part by part, and a plugin supports a
config only if its exact version is in the plugin's list.
"""

from __future__ import annotations

from cnicore import wire
from cnicore._go import lookup, mismatch_text
from cnicore.errors import ERR_DECODING_FAILURE, CNIError

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).

__all__ = [
    "ALL",
    "CURRENT",
    "LEGACY",
    "PluginInfo",
    "config_version",
    "greater_or_equal",
    "greater_than",
    "negotiate",
    "parse_version",
    "versions_from",
]

CURRENT = "1.1.0"
ALL = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LEGACY = ("0.1.0", "0.2.0")

_INT64_MAX = 2**63 - 1


def _atoi(part: str) -> int:
    """Go's ``strconv.Atoi`` (64-bit): an optionally signed run of ASCII digits."""
    digits = part[1:] if part[:1] in ("+", "-") else part
    if not digits or not all("0" <= c <= "9" for c in digits):
        raise ValueError(f"strconv.Atoi: parsing {wire.go_quote(part)}: invalid syntax")
    value = int(part)
    if not -_INT64_MAX - 1 <= value <= _INT64_MAX:
        raise ValueError(f"strconv.Atoi: parsing {wire.go_quote(part)}: value out of range")
    return value


def parse_version(version: str) -> tuple[int, int, int]:
    """``"1.0.0"`` -> ``(1, 0, 0)``; ``""`` means 0.1.0; missing parts are 0.

    Raises ``ValueError`` for anything that is not up to three integers, with
    the reference's message (plugins report it as a decoding failure).
    """
    if version == "":
        return (0, 1, 0)
    parts = version.split(".")
    if len(parts) >= 4:
        raise ValueError(f"invalid version {wire.go_quote(version)}: too many parts")
    nums = [0, 0, 0]
    for i, (name, part) in enumerate(zip(("major", "minor", "micro"), parts)):
        try:
            nums[i] = _atoi(part)
        except ValueError as exc:
            raise ValueError(f"failed to convert {name} version part {wire.go_quote(part)}: {exc}") from None
    return (nums[0], nums[1], nums[2])


def greater_or_equal(version: str, other: str) -> bool:
    """``version >= other``, numerically."""
    return parse_version(version) >= parse_version(other)


def greater_than(version: str, other: str) -> bool:
    """``version > other``, numerically."""
    return parse_version(version) > parse_version(other)


def versions_from(minimum: str) -> tuple[str, ...]:
    """Every version in :data:`ALL` from ``minimum`` on."""
    return ALL[ALL.index(minimum):]


def config_version(config: dict[str, object]) -> str:
    """The ``cniVersion`` of a decoded config; missing or empty means 0.1.0."""
    version = lookup(config, "cniVersion")  # Go's struct{CNIVersion string}: any key case
    if version in (None, ""):
        return "0.1.0"
    if not isinstance(version, str):
        raise CNIError(ERR_DECODING_FAILURE, "decoding version from network config: "
                       + mismatch_text(version, "string", "", ("cniVersion",)))
    return version


def decode_config_version(data: bytes) -> str:
    """The ``cniVersion`` of raw config bytes (0.1.0 when absent)."""
    try:
        config = wire.loads(data)
    except ValueError as exc:
        from cnicore._go.jsonsyntax import syntax_error

        raise CNIError(ERR_DECODING_FAILURE,
                       f"decoding version from network config: {syntax_error(bytes(data)) or exc}") from None
    if config is None:  # Go decodes ``null`` into an empty struct
        return "0.1.0"
    if not isinstance(config, dict):
        raise CNIError(ERR_DECODING_FAILURE, "decoding version from network config: not a JSON object")
    return config_version(config)


def incompatible_details(config_version: str, supported: tuple[str, ...] | list[str]) -> str:
    """The reference's details text: ``config is "X", plugin supports ["a" "b"]``."""
    return f"config is {wire.go_quote(config_version)}, plugin supports {wire.go_quote_list(supported)}"


def negotiate(cni_version: str, cni_versions: list[object] | None) -> str:
    """A network list's effective version from ``cniVersion`` and ``cniVersions``.

    The highest entry not newer than :data:`CURRENT` wins (``cniVersion``
    counts as one more candidate), as libcni does. Raises ``ValueError``.
    """
    if cni_versions is None:
        return cni_version
    if not isinstance(cni_versions, list):
        raise ValueError(f"invalid type for cniVersions: {type(cni_versions).__name__}")
    candidates = []
    for i, entry in enumerate(cni_versions):
        if not isinstance(entry, str):
            raise ValueError(f"invalid type for cniVersions index {i}: {type(entry).__name__}")
        try:
            if not greater_than(entry, CURRENT):
                candidates.append(entry)
        except ValueError as exc:
            raise ValueError(f"invalid cniVersions entry {entry} at index {i}: {exc}") from None
    try:
        if cni_version and not greater_than(cni_version, CURRENT):
            candidates.append(cni_version)
    except ValueError as exc:
        raise ValueError(f"invalid cniVersion {cni_version}: {exc}") from None
    if not candidates:
        return cni_version
    return max(candidates, key=parse_version)


class PluginInfo:
    """What a plugin answers to VERSION: the spec version it speaks and the
    config versions it accepts."""

    __slots__ = ("cni_version", "supported_versions", "about")

    def __init__(self, supported_versions: tuple[str, ...] | list[str] = ALL,
                 cni_version: str = CURRENT, about: str = "") -> None:
        if not supported_versions:
            raise ValueError("a plugin must support at least one version")
        self.supported_versions = tuple(supported_versions)
        self.cni_version = cni_version
        #: Printed to stderr when the plugin is run without CNI_COMMAND; not on the wire.
        self.about = about

    def __repr__(self) -> str:
        return f"PluginInfo({list(self.supported_versions)!r}, cni_version={self.cni_version!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PluginInfo):
            return NotImplemented
        return (self.cni_version, self.supported_versions) == (other.cni_version, other.supported_versions)

    def supports(self, version: str) -> bool:
        return version in self.supported_versions

    def encode(self) -> bytes:
        """Compact JSON with a trailing newline, as the reference's encoder writes."""
        return wire.dumps_compact({"cniVersion": self.cni_version,
                                   "supportedVersions": list(self.supported_versions)}) + b"\n"

    @classmethod
    def decode(cls, data: bytes) -> "PluginInfo":
        """Parse a VERSION answer; a 0.2.0 answer without a list means 0.1.0+0.2.0."""
        try:
            obj = wire.loads(data)
        except ValueError as exc:
            raise ValueError(f"decoding version info: {exc}") from None
        if not isinstance(obj, dict):
            raise ValueError("decoding version info: not a JSON object")
        cni_version = obj.get("cniVersion")
        if cni_version is not None and not isinstance(cni_version, str):
            raise ValueError("decoding version info: cniVersion is not a string")
        if not cni_version:
            raise ValueError("decoding version info: missing field cniVersion")
        supported = obj.get("supportedVersions")
        if supported is None or supported == []:
            if cni_version == "0.2.0":
                return cls(LEGACY)
            raise ValueError("decoding version info: missing field supportedVersions")
        if not isinstance(supported, list) or not all(isinstance(v, str) for v in supported):
            raise ValueError("decoding version info: supportedVersions is not a list of strings")
        return cls(supported, cni_version)
