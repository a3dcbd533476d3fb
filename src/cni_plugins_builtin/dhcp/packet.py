"""DHCPv4 messages (RFC 2131) and the options cnicore uses (RFC 2132, 3442), pure."""

from __future__ import annotations

import ipaddress
import socket
import struct

BOOTREQUEST, BOOTREPLY = 1, 2
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE = 1, 2, 3, 4, 5, 6, 7
MAGIC = b"\x63\x82\x53\x63"
FLAG_BROADCAST = 0x8000

OPT_SUBNET_MASK = 1
OPT_ROUTER = 3
OPT_HOST_NAME = 12
OPT_STATIC_ROUTES = 33
OPT_REQUESTED_IP = 50
OPT_LEASE_TIME = 51
OPT_MESSAGE_TYPE = 53
OPT_SERVER_ID = 54
OPT_PARAMETER_LIST = 55
OPT_RENEWAL_TIME = 58
OPT_REBINDING_TIME = 59
OPT_CLASS_ID = 60
OPT_CLIENT_ID = 61
OPT_USER_CLASS = 77
OPT_CLASSLESS_ROUTES = 121

#: The option names the reference's ``provide``/``request`` accept (else a number 0-255).
OPTION_NAMES = {"dhcp-client-identifier": OPT_CLIENT_ID, "subnet-mask": OPT_SUBNET_MASK, "routers": OPT_ROUTER,
                "host-name": OPT_HOST_NAME, "user-class": OPT_USER_CLASS, "vendor-class-identifier": OPT_CLASS_ID}

_HEADER = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")


class Message:
    """One DHCP message: the fixed header fields cnicore needs and the options by code."""

    def __init__(self, op: int, xid: int, mac: bytes, *, flags: int = 0, ciaddr: str = "0.0.0.0",
                 yiaddr: str = "0.0.0.0", options: dict[int, bytes] | None = None) -> None:
        self.op, self.xid, self.mac, self.flags = op, xid, mac, flags
        self.ciaddr, self.yiaddr = ciaddr, yiaddr
        self.options: dict[int, bytes] = dict(options or {})

    @property
    def type(self) -> int:
        raw = self.options.get(OPT_MESSAGE_TYPE, b"")
        return raw[0] if raw else 0

    def encode(self) -> bytes:
        out = bytearray(_HEADER.pack(self.op, 1, 6, 0, self.xid, 0, self.flags, socket.inet_aton(self.ciaddr),
                                     socket.inet_aton(self.yiaddr), bytes(4), bytes(4), self.mac.ljust(16, b"\0"),
                                     bytes(64), bytes(128)))
        out += MAGIC
        for code, value in self.options.items():
            for start in range(0, max(len(value), 1), 255):  # long options split (RFC 3396)
                chunk = value[start:start + 255]
                out += bytes((code, len(chunk))) + chunk
        out += b"\xff"
        return bytes(out.ljust(300, b"\0"))

    @classmethod
    def decode(cls, data: bytes) -> Message:
        if len(data) < _HEADER.size + 4 or data[_HEADER.size:_HEADER.size + 4] != MAGIC:
            raise ValueError("not a DHCP message")
        op, _ht, hlen, _hops, xid, _secs, flags, ciaddr, yiaddr, _si, _gi, chaddr, _sn, _fi = _HEADER.unpack_from(data)
        options: dict[int, bytes] = {}
        i = _HEADER.size + 4
        while i < len(data):
            code = data[i]
            if code == 255:
                break
            if code == 0:
                i += 1
                continue
            length = data[i + 1]
            options[code] = options.get(code, b"") + data[i + 2:i + 2 + length]
            i += 2 + length
        return cls(op, xid, chaddr[:hlen], flags=flags, ciaddr=socket.inet_ntoa(ciaddr),
                   yiaddr=socket.inet_ntoa(yiaddr), options=options)

    def address(self, code: int) -> str:
        raw = self.options.get(code, b"")
        return socket.inet_ntoa(raw[:4]) if len(raw) >= 4 else ""

    def seconds(self, code: int, default: int) -> int:
        raw = self.options.get(code, b"")
        return struct.unpack("!I", raw[:4])[0] if len(raw) >= 4 else default


def parse_option_name(name: str) -> int:
    """An option of ``provide``/``request`` by name or number, the reference's way."""
    if name in OPTION_NAMES:
        return OPTION_NAMES[name]
    if name.isdigit() and int(name) < 256:
        return int(name)
    raise ValueError(f'Can not parse option: strconv.ParseUint: parsing "{name}": '
                     + ("value out of range" if name.isdigit() else "invalid syntax"))


def classless_routes(raw: bytes) -> list[tuple[str, str]]:
    """Option 121: ``(dst CIDR, gateway)`` pairs."""
    out = []
    i = 0
    while i < len(raw):
        width = raw[i]
        size = (width + 7) // 8
        dst = raw[i + 1:i + 1 + size].ljust(4, b"\0")
        gw = raw[i + 1 + size:i + 5 + size]
        i += 5 + size
        if width > 32 or len(gw) < 4:
            break
        out.append((f"{socket.inet_ntoa(dst)}/{width}", socket.inet_ntoa(gw)))
    return out


def static_routes(raw: bytes) -> list[tuple[str, str]]:
    """Option 33: classful destinations (the reference's ``parseRoutes``)."""
    out = []
    for i in range(0, len(raw) - 7, 8):
        dst = ipaddress.IPv4Address(raw[i:i + 4])
        first = int(dst) >> 24
        prefix = 8 if first < 128 else 16 if first < 192 else 24
        out.append((f"{dst}/{prefix}", socket.inet_ntoa(raw[i + 4:i + 8])))
    return out
