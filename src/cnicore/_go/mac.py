"""MAC addresses parsed and printed the way Go's ``net`` package does, so a
config's MAC is accepted or refused exactly as by the reference plugins."""

from __future__ import annotations

_HEX = frozenset("0123456789abcdefABCDEF")


def parse_mac(text: str) -> bytes:
    """Go's ``net.ParseMAC``: 6, 8 or 20 bytes as ``aa:bb``, ``aa-bb`` or ``aabb.ccdd``."""
    def invalid() -> ValueError:
        return ValueError(f"address {text}: invalid MAC address")

    if len(text) < 14:
        raise invalid()
    if text[2] in ":-":
        if (len(text) + 1) % 3:
            raise invalid()
        groups, sep, width = (len(text) + 1) // 3, text[2], 2
    elif text[4] == ".":
        if (len(text) + 1) % 5:
            raise invalid()
        groups, sep, width = (len(text) + 1) // 5, ".", 4
    else:
        raise invalid()
    if groups * width // 2 not in (6, 8, 20):
        raise invalid()
    parts = text.split(sep)
    if len(parts) != groups or any(len(p) != width or not set(p) <= _HEX for p in parts):
        raise invalid()
    return bytes.fromhex("".join(parts))


def mac_string(raw: bytes) -> str:
    """Go's ``HardwareAddr.String()``: lowercase, colon-separated."""
    return ":".join(f"{b:02x}" for b in raw)


def ethernet_mac(text: str) -> str:
    """The canonical form of a MAC an Ethernet interface can take; ValueError
    (Go's text) otherwise."""
    raw = parse_mac(text)
    if len(raw) != 6:
        raise ValueError(f"a {len(raw)}-byte address cannot be set on an Ethernet interface")
    return mac_string(raw)
