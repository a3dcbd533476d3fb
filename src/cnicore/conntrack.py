"""Connection tracking entries (public toolkit): Go's ``pkg/utils`` conntrack helpers.

A plugin that starts forwarding a port (portmap) or reuses an address must drop
the kernel's stale conntrack entries for it, or UDP flows keep following the
old entries (the reference deletes them after setting up its rules). This is
``DeleteConntrackEntriesForDstPort`` / ``DeleteConntrackEntriesForDstIP`` over a
``NETLINK_NETFILTER`` socket, standard library only: one dump of the family's
table, then a delete per matching entry (by its original tuple), in the
calling thread's network namespace. An entry that vanished meanwhile counts as
deleted.
"""

from __future__ import annotations

import errno
import struct

from cnicore.netlink import AF_INET, AF_INET6, NETLINK_NETFILTER, Netlink

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

__all__ = [
    "PROTOCOL_SCTP",
    "PROTOCOL_TCP",
    "PROTOCOL_UDP",
    "delete_entries_for_dst_ip",
    "delete_entries_for_dst_port",
]

#: IANA protocol numbers (Go's utils.PROTOCOL_*).
PROTOCOL_TCP = 6
PROTOCOL_UDP = 17
PROTOCOL_SCTP = 132

_NFNL_SUBSYS_CTNETLINK = 1
_IPCTNL_MSG_CT_NEW = 0
_IPCTNL_MSG_CT_GET = 1
_IPCTNL_MSG_CT_DELETE = 2
_NFGENMSG = struct.Struct("=BBH")  # family, version (NFNETLINK_V0), res_id (big endian)
_CTA_TUPLE_ORIG = 1
_CTA_ZONE = 18
_CTA_TUPLE_IP = 1
_CTA_TUPLE_PROTO = 2
_CTA_IP_V4_DST = 2
_CTA_IP_V6_DST = 4
_CTA_PROTO_NUM = 1
_CTA_PROTO_DST_PORT = 3


def _delete_matching(family: int, match: Callable[[dict[int, bytes], dict[int, bytes]], bool]) -> int:
    """Delete every entry of ``family`` whose original tuple ``match(ip_attrs, proto_attrs)``
    accepts; the number deleted."""
    from cnicore.netlink import NLA_F_NESTED, NLM_F_ACK, _attr, _attr_list, _attrs

    msg = (_NFNL_SUBSYS_CTNETLINK << 8)
    deleted = 0
    with Netlink(NETLINK_NETFILTER) as ct:
        entries = ct._dump(msg | _IPCTNL_MSG_CT_GET, _NFGENMSG.pack(family, 0, 0))
        for kind, payload in entries:
            if kind != msg | _IPCTNL_MSG_CT_NEW:
                continue
            attrs = dict(reversed(_attr_list(payload, _NFGENMSG.size)))
            orig = attrs.get(_CTA_TUPLE_ORIG)
            if orig is None:
                continue
            tuple_attrs = _attrs(orig)
            if not match(_attrs(tuple_attrs.get(_CTA_TUPLE_IP, b"")), _attrs(tuple_attrs.get(_CTA_TUPLE_PROTO, b""))):
                continue
            body = _NFGENMSG.pack(family, 0, 0) + _attr(_CTA_TUPLE_ORIG | NLA_F_NESTED, orig)
            if _CTA_ZONE in attrs:
                body += _attr(_CTA_ZONE, attrs[_CTA_ZONE])
            try:
                ct._request(msg | _IPCTNL_MSG_CT_DELETE, NLM_F_ACK, body)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    raise
            deleted += 1
    return deleted


def delete_entries_for_dst_port(port: int, protocol: int, family: int) -> int:
    """Delete the entries of ``family`` (``AF_INET``/``AF_INET6``) for ``protocol`` whose
    original destination port is ``port``; the number deleted. OSError on failure."""
    if family not in (AF_INET, AF_INET6):
        raise ValueError(f"not an IP family: {family}")

    def match(_ip: dict[int, bytes], proto: dict[int, bytes]) -> bool:
        num, dport = proto.get(_CTA_PROTO_NUM, b""), proto.get(_CTA_PROTO_DST_PORT, b"")
        return num[:1] == bytes([protocol]) and len(dport) >= 2 and struct.unpack("!H", dport[:2])[0] == port

    return _delete_matching(family, match)


def delete_entries_for_dst_ip(ip: str, protocol: int) -> int:
    """Delete the entries for ``protocol`` whose original destination is ``ip``; the number
    deleted. ValueError for a bad address, OSError on failure."""
    import ipaddress

    address = ipaddress.ip_address(ip)
    family = AF_INET6 if address.version == 6 else AF_INET
    key = _CTA_IP_V6_DST if address.version == 6 else _CTA_IP_V4_DST

    def match(ips: dict[int, bytes], proto: dict[int, bytes]) -> bool:
        return proto.get(_CTA_PROTO_NUM, b"")[:1] == bytes([protocol]) and ips.get(key) == address.packed

    return _delete_matching(family, match)
