"""A minimal rtnetlink client for the exec hot path: look up a link, set it
up or down, list its addresses.

Importing pyroute2 costs ~170 ms, more than a whole Go plugin run, so the few
operations simple plugins (loopback, tuning's flag changes) need are spoken
here directly over an ``AF_NETLINK`` socket with ``struct``. Anything richer
(veths, bridges, routes) uses pyroute2 through :mod:`cnicore.netlink`.

A socket belongs to the namespace of the thread that created it, so create
:class:`RtnlSocket` inside ``NetNS.do``.
"""

from __future__ import annotations

import errno
import os
import struct

# The C module directly: ``socket.py`` pulls in enum and selectors, ~2 ms per exec.
import _socket as socket

NETLINK_ROUTE = 0
NLMSG_ERROR = 2
NLMSG_DONE = 3
RTM_NEWLINK = 16
RTM_GETLINK = 18
RTM_NEWADDR = 20
RTM_GETADDR = 22
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFA_ADDRESS = 1
IFA_LOCAL = 2
IFF_UP = 0x1
AF_UNSPEC = socket.AF_UNSPEC
AF_INET = socket.AF_INET
AF_INET6 = socket.AF_INET6

_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")
_IFADDRMSG = struct.Struct("=BBBBI")
_RTATTR = struct.Struct("=HH")


class LinkNotFoundError(LookupError):
    """No link with that name in this namespace."""


class Link:
    """What a link lookup returns."""

    __slots__ = ("index", "name", "flags", "mac", "mtu")

    def __init__(self, index: int, name: str, flags: int, mac: str, mtu: int) -> None:
        self.index = index
        self.name = name
        self.flags = flags
        self.mac = mac
        self.mtu = mtu

    @property
    def is_up(self) -> bool:
        return bool(self.flags & IFF_UP)

    def __repr__(self) -> str:
        return f"Link({self.index}, {self.name!r}, up={self.is_up}, mac={self.mac!r}, mtu={self.mtu})"


def _align(n: int) -> int:
    return (n + 3) & ~3


def _attr(kind: int, payload: bytes) -> bytes:
    length = _RTATTR.size + len(payload)
    return _RTATTR.pack(length, kind) + payload + b"\0" * (_align(length) - length)


def _attrs(data: bytes, offset: int) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    while offset + _RTATTR.size <= len(data):
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < _RTATTR.size:
            break
        out.setdefault(kind & 0x7FFF, data[offset + _RTATTR.size:offset + length])
        offset += _align(length)
    return out


class RtnlSocket:
    """One NETLINK_ROUTE socket; requests are synchronous."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,  # type: ignore[attr-defined]
                                   NETLINK_ROUTE)
        self._sock.bind((0, 0))
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> RtnlSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, msg_type: int, flags: int, body: bytes) -> list[tuple[int, bytes]]:
        """Send one message, collect replies until ACK / DONE; raise OSError on NLMSG_ERROR."""
        self._seq += 1
        seq = self._seq
        self._sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(body), msg_type, flags | NLM_F_REQUEST, seq, 0)
                        + body)
        replies: list[tuple[int, bytes]] = []
        while True:
            data = self._sock.recv(65536)
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                length, kind, mflags, mseq, _pid = _NLMSGHDR.unpack_from(data, offset)
                payload = data[offset + _NLMSGHDR.size:offset + length]
                offset += _align(length)
                if mseq != seq:
                    continue
                if kind == NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", payload)
                    if code:
                        raise OSError(-code, os.strerror(-code))
                    return replies
                if kind == NLMSG_DONE:
                    return replies
                replies.append((kind, payload))
                if not mflags & NLM_F_MULTI and not flags & NLM_F_ACK:
                    return replies

    def link(self, name: str) -> Link:
        """Look a link up by name; :class:`LinkNotFoundError` if absent."""
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _attr(IFLA_IFNAME, name.encode() + b"\0")
        try:
            replies = self._request(RTM_GETLINK, 0, body)
        except OSError as exc:
            if exc.errno == errno.ENODEV:
                raise LinkNotFoundError(f'Link not found: "{name}"') from None
            raise
        for kind, payload in replies:
            if kind == RTM_NEWLINK:
                return _parse_link(payload)
        raise LinkNotFoundError(f'Link not found: "{name}"')

    def set_up(self, link: Link, up: bool = True) -> None:
        """Set (or clear) IFF_UP on the link."""
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, link.index, IFF_UP if up else 0, IFF_UP)
        self._request(RTM_NEWLINK, NLM_F_ACK, body)

    def addresses(self, link: Link, family: int) -> list[str]:
        """The link's addresses of ``family`` (AF_INET/AF_INET6) as ``ip/prefix``, kernel order."""
        replies = self._request(RTM_GETADDR, NLM_F_DUMP, _IFADDRMSG.pack(family, 0, 0, 0, 0))
        out = []
        for kind, payload in replies:
            if kind != RTM_NEWADDR:
                continue
            fam, prefixlen, _flags, _scope, index = _IFADDRMSG.unpack_from(payload)
            if index != link.index or fam != family:
                continue
            attrs = _attrs(payload, _IFADDRMSG.size)
            raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
            if raw:
                out.append(f"{socket.inet_ntop(family, raw)}/{prefixlen}")
        return out


def _parse_link(payload: bytes) -> Link:
    _family, _type, index, flags, _change = _IFINFOMSG.unpack_from(payload)
    attrs = _attrs(payload, _IFINFOMSG.size)
    name = attrs.get(IFLA_IFNAME, b"").rstrip(b"\0").decode()
    mac = ":".join(f"{b:02x}" for b in attrs.get(IFLA_ADDRESS, b""))
    mtu_raw = attrs.get(IFLA_MTU, b"")
    mtu = struct.unpack("=I", mtu_raw)[0] if len(mtu_raw) == 4 else 0
    return Link(index, name, flags, mac, mtu)
