"""The netlink handle (public toolkit): cnicore's own rtnetlink client, standard library only.

Importing pyroute2 costs ~170-330 ms, more than a whole Go plugin run, so what
plugins need — links (bridges, veths and their settings, ifb and other
simple kinds), addresses, routes (and ``route_get``, the kernel's route to an
address), bridge-port options, bridge VLANs and
traffic control (tbf and ingress qdiscs, a u32 mirred redirect filter, qdisc
dumps) — is spoken here directly over an
``AF_NETLINK`` socket with ``struct``. Semantics follow vishvananda/netlink as
used by the Go reference plugins. :mod:`cnicore.ip` (Go's ``pkg/ip``) is built
on it; a plugin uses :class:`Netlink` itself for the link operations the
toolkit's functions do not cover. For anything beyond, ``NetNS.iproute()``
gives pyroute2 bound to a namespace.

A socket belongs to the namespace of the thread that created it, so create
:class:`Netlink` inside ``NetNS.do`` (``with Netlink() as nl: ...``).

Errors: a refusal by the kernel raises ``OSError`` with its errno (on Python
3.11+ the kernel's extended-ack text, if any, is attached as a note); a
missing link raises :class:`LinkNotFoundError` (ENODEV) and an existing name on
create or rename :class:`LinkExistsError` (EEXIST), both ``OSError`` subclasses.
Every change is sent with ``NLM_F_ACK``, so nothing fails silently.

Links can be passed as a :class:`Link`, an ifindex (``int``) or a name (``str``,
looked up first).

Public: what ``__all__`` lists. The message layout (the ``_``-prefixed helpers
and the netlink constants not listed) is private. ``cnicore.rtnl`` is this
module's former name, kept for existing imports.
"""

from __future__ import annotations

# The C module directly: ``socket.py`` pulls in enum and selectors, ~2 ms per exec.
import _socket as socket
import errno
import os
import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Union

    LinkRef = Union["Link", int, str]

__all__ = [
    "AF_INET",
    "AF_INET6",
    "IFA_F_DADFAILED",
    "IFA_F_TENTATIVE",
    "RT_SCOPE_HOST",
    "RT_SCOPE_LINK",
    "RT_SCOPE_UNIVERSE",
    "RT_TABLE_MAIN",
    "TC_ACT_OK",
    "TC_ACT_STOLEN",
    "TC_H_INGRESS",
    "TC_H_ROOT",
    "Link",
    "LinkExistsError",
    "LinkNotFoundError",
    "Netlink",
    "Qdisc",
    "Route",
    "Rule",
    "MACVLAN_MODES",
    "IPVLAN_MODES",
    "TUNTAP_DEFAULT_FLAGS",
    "IFF_TAP",
    "IFF_TUN",
    "IFF_NO_PI",
    "IFF_VNET_HDR",
    "IFF_MULTI_QUEUE",
]

IFLA_IFALIAS = 20
IFLA_VRF_TABLE = 1
#: TUN/TAP (linux/if_tun.h): ioctls on /dev/net/tun and the TUNSETIFF flags.
TUNSETIFF = 0x400454CA
TUNSETPERSIST = 0x400454CB
TUNSETOWNER = 0x400454CC
TUNSETGROUP = 0x400454CE
IFF_TUN = 0x0001
IFF_TAP = 0x0002
IFF_MULTI_QUEUE = 0x0100
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
#: What ``ip tuntap add mode tap`` asks for: a TAP device without packet information.
TUNTAP_DEFAULT_FLAGS = IFF_TAP | IFF_NO_PI

# -- constants (uapi: linux/netlink.h, rtnetlink.h, if_link.h, if_addr.h,
#    if_bridge.h, veth.h, if.h) ------------------------------------------------

NETLINK_ROUTE = 0
#: nfnetlink (conntrack, nftables): the same message framing, another protocol.
NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
MSG_TRUNC = 0x20
RECV_SIZE = 1 << 20

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP_INTR = 0x10
NLM_F_ROOT = 0x100
NLM_F_MATCH = 0x200
NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH
NLM_F_REPLACE = 0x100  # modifiers of NEW requests
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_CAPPED = 0x100  # flags of an NLMSG_ERROR reply
NLM_F_ACK_TLVS = 0x200
NLMSGERR_ATTR_MSG = 1
NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF

RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_SETLINK = 19
RTM_NEWADDR = 20
RTM_DELADDR = 21
RTM_GETADDR = 22
RTM_NEWROUTE = 24
RTM_DELROUTE = 25
RTM_GETROUTE = 26

RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_PRIORITY = 6
RTA_PREFSRC = 7
RTA_METRICS = 8
RTA_TABLE = 15
RTAX_MTU = 2
RTAX_ADVMSS = 8
RT_TABLE_UNSPEC = 0
RT_TABLE_MAIN = 254
RT_TABLE_LOCAL = 255
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RT_SCOPE_HOST = 254
RT_SCOPE_NOWHERE = 255
RTPROT_BOOT = 3
RTN_UNSPEC = 0
RTN_UNICAST = 1
RTEXT_FILTER_BRVLAN = 1 << 1
RTEXT_FILTER_SKIP_STATS = 1 << 3

IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_LINK = 5
IFLA_MASTER = 10
IFLA_PROTINFO = 12
IFLA_TXQLEN = 13
IFLA_OPERSTATE = 16
IFLA_LINKINFO = 18
IFLA_AF_SPEC = 26
IFLA_NET_NS_FD = 28
IFLA_EXT_MASK = 29
IFLA_LINK_NETNSID = 37
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
IFLA_BR_VLAN_FILTERING = 7
IFLA_BRPORT_MODE = 4  # hairpin
IFLA_BRPORT_LEARNING = 8
IFLA_BRPORT_ISOLATED = 33
IFLA_BRIDGE_FLAGS = 0
IFLA_BRIDGE_VLAN_INFO = 2
BRIDGE_FLAGS_MASTER = 1
BRIDGE_FLAGS_SELF = 2
BRIDGE_VLAN_INFO_MASTER = 0x1
BRIDGE_VLAN_INFO_PVID = 0x2
BRIDGE_VLAN_INFO_UNTAGGED = 0x4
BRIDGE_VLAN_INFO_RANGE_BEGIN = 0x8
BRIDGE_VLAN_INFO_RANGE_END = 0x10
VETH_INFO_PEER = 1
IFLA_MACVLAN_MODE = 1  # if_link.h: u32, MACVLAN_MODE_*
IFLA_MACVLAN_BC_QUEUE_LEN = 7
IFLA_IPVLAN_MODE = 1  # u16, IPVLAN_MODE_*
IFLA_VLAN_ID = 1  # u16

#: macvlan modes by the names ``ip link`` (and the reference plugin) use: MACVLAN_MODE_*.
MACVLAN_MODES = {"private": 1, "vepa": 2, "bridge": 4, "passthru": 8, "source": 16}
#: ipvlan modes: IPVLAN_MODE_L2, _L3, _L3S.
IPVLAN_MODES = {"l2": 0, "l3": 1, "l3s": 2}

# traffic control (tc): qdiscs and filters
RTM_NEWQDISC = 36
RTM_DELQDISC = 37
RTM_GETQDISC = 38
RTM_NEWTFILTER = 44
TCA_KIND = 1
TCA_OPTIONS = 2
TC_H_ROOT = 0xFFFFFFFF
TC_H_INGRESS = 0xFFFFFFF1
TCA_TBF_PARMS = 1
TCA_TBF_RATE64 = 4
TCA_U32_CLASSID = 1
TCA_U32_SEL = 5
TCA_U32_ACT = 7
TC_U32_TERMINAL = 1
TCA_ACT_KIND = 1
TCA_ACT_OPTIONS = 2
TCA_MIRRED_PARMS = 2
TCA_EGRESS_REDIR = 1
TC_ACT_OK = 0
TC_ACT_STOLEN = 4
ETH_P_ALL = 0x0003

IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_BROADCAST = 4
IFA_FLAGS = 8
IFA_F_NODAD = 0x02
IFA_F_DADFAILED = 0x08
IFA_F_TENTATIVE = 0x40
IFA_F_NOPREFIXROUTE = 0x200

IFNAMSIZ = 16
IFF_UP = 0x1
IFF_PROMISC = 0x100
IFF_ALLMULTI = 0x200

AF_UNSPEC = socket.AF_UNSPEC
AF_INET = socket.AF_INET
AF_INET6 = socket.AF_INET6
AF_BRIDGE = 7

_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")
_IFADDRMSG = struct.Struct("=BBBBI")
_RTMSG = struct.Struct("=BBBBBBBBI")
_RTATTR = struct.Struct("=HH")
_TCMSG = struct.Struct("=BxxxiIII")
_TC_RATESPEC = struct.Struct("=BBHhHI")
_TBF_QOPT = struct.Struct("=12s12sIII")
_U32_SEL = struct.Struct("=BBBxHHhhI")
_U32_KEY = struct.Struct("=IIii")
_TC_MIRRED = struct.Struct("=IIiiiiI")
_VLAN_INFO = struct.Struct("=HH")
# policy routing rules (linux/fib_rules.h)
RTM_NEWRULE = 32
RTM_DELRULE = 33
RTM_GETRULE = 34
FRA_DST = 1
FRA_SRC = 2
FRA_PRIORITY = 6
FRA_TABLE = 15
FR_ACT_TO_TBL = 1
_FIB_RULE_HDR = struct.Struct("=BBBBBBBBI")
_U8 = struct.Struct("=B")
_U16 = struct.Struct("=H")
_U32 = struct.Struct("=I")
_S32 = struct.Struct("=i")


class LinkNotFoundError(OSError, LookupError):
    """No such link in this namespace (errno ENODEV; also a ``LookupError``)."""


class LinkExistsError(OSError):
    """A link of that name already exists (errno EEXIST)."""


class _DumpInterrupted(Exception):
    """The kernel flagged a dump as inconsistent (NLM_F_DUMP_INTR): run it again."""


# -- attribute helpers ---------------------------------------------------------


def _align(n: int) -> int:
    return (n + 3) & ~3


def _attr(kind: int, payload: bytes) -> bytes:
    """One attribute (header, payload, padding)."""
    length = _RTATTR.size + len(payload)
    return _RTATTR.pack(length, kind) + payload + b"\0" * (_align(length) - length)


def _nest(kind: int, *children: bytes) -> bytes:
    """An attribute holding other attributes (pass ``kind | NLA_F_NESTED`` where the kernel wants the flag)."""
    return _attr(kind, b"".join(children))


def _u8(kind: int, value: int) -> bytes:
    return _attr(kind, _U8.pack(value))


def _u16(kind: int, value: int) -> bytes:
    return _attr(kind, _U16.pack(value))


def _u32(kind: int, value: int) -> bytes:
    return _attr(kind, _U32.pack(value))


def _str(kind: int, value: str) -> bytes:
    """A NUL-terminated string attribute."""
    return _attr(kind, value.encode("utf-8", "surrogateescape") + b"\0")


def _attr_list(data: bytes, offset: int = 0) -> list[tuple[int, bytes]]:
    """Every attribute from ``offset`` on, in order, as (type without flags, payload)."""
    out = []
    while offset + _RTATTR.size <= len(data):
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < _RTATTR.size:
            break
        out.append((kind & NLA_TYPE_MASK, data[offset + _RTATTR.size:offset + length]))
        offset += _align(length)
    return out


def _attrs(data: bytes, offset: int = 0) -> dict[int, bytes]:
    """The attributes from ``offset`` on by type (the first of repeated ones)."""
    out: dict[int, bytes] = {}
    for kind, payload in _attr_list(data, offset):
        out.setdefault(kind, payload)
    return out


def _get_u8(raw: bytes | None, default: int = 0) -> int:
    return raw[0] if raw else default


def _get_u32(raw: bytes | None, default: int = 0) -> int:
    return _U32.unpack(raw)[0] if raw and len(raw) == 4 else default


def _get_str(raw: bytes | None) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape") if raw else ""


def _mac_bytes(mac: str) -> bytes:
    raw = bytes.fromhex(mac.replace(":", "").replace("-", ""))
    if len(raw) != 6:
        raise ValueError(f"invalid MAC address {mac!r}")
    return raw


def _mac_str(raw: bytes | None) -> str:
    return ":".join(f"{b:02x}" for b in raw) if raw else ""


def _ip(text: str, family: int = 0) -> tuple[int, bytes]:
    """(family, packed address) of an IP address string."""
    family = family or (AF_INET6 if ":" in text else AF_INET)
    try:
        return family, socket.inet_pton(family, text)
    except OSError:
        raise ValueError(f"invalid IP address {text!r}") from None


def _cidr(cidr: str) -> tuple[int, bytes, int]:
    """(family, packed address, prefix length) of ``ip[/prefix]`` (no prefix: a host)."""
    addr, sep, plen = cidr.strip().partition("/")
    family, raw = _ip(addr)
    bits = len(raw) * 8
    try:
        prefix = int(plen) if sep else bits
    except ValueError:
        prefix = -1
    if not 0 <= prefix <= bits:
        raise ValueError(f"invalid prefix length in {cidr!r}")
    return family, raw, prefix


def _masked(raw: bytes, prefix: int) -> bytes:
    """The network part of ``raw`` (host bits cleared), as Go's net.ParseCIDR gives it."""
    bits = len(raw) * 8
    value = int.from_bytes(raw, "big") >> (bits - prefix) << (bits - prefix) if prefix else 0
    return value.to_bytes(len(raw), "big")


def _kernel_error(code: int, payload: bytes, flags: int, done: bool = False) -> OSError:
    """OSError for an NLMSG_ERROR (or a failed NLMSG_DONE); the extended-ack message,
    if any, becomes a note."""
    exc = OSError(code, os.strerror(code))
    if flags & NLM_F_ACK_TLVS and (done or len(payload) >= 4 + _NLMSGHDR.size):
        # ERROR: error code, the request's header (CAPPED) or whole request, TLVs; DONE: code, TLVs.
        echoed = 0 if done else _NLMSGHDR.size if flags & NLM_F_CAPPED else _NLMSGHDR.unpack_from(payload, 4)[0]
        message = _get_str(_attrs(payload, 4 + _align(echoed)).get(NLMSGERR_ATTR_MSG))
        if message and hasattr(exc, "add_note"):
            exc.add_note(f"kernel: {message}")
    return exc


# -- results -------------------------------------------------------------------


class Link:
    """What a link lookup returns (a snapshot; look the link up again after changes)."""

    __slots__ = ("index", "name", "flags", "mac", "mtu", "kind", "master", "link", "link_netnsid",
                 "txqlen", "operstate", "vlan_filtering")

    def __init__(self, index: int, name: str, flags: int, mac: str, mtu: int, *, kind: str = "",
                 master: int = 0, link: int = 0, link_netnsid: int | None = None, txqlen: int = 0,
                 operstate: int = 0, vlan_filtering: bool | None = None) -> None:
        self.index = index
        self.name = name
        self.flags = flags
        self.mac = mac
        self.mtu = mtu
        self.kind = kind  # IFLA_INFO_KIND: "bridge", "veth", ... ("" for lo and the like)
        self.master = master  # IFLA_MASTER ifindex, 0 for none
        self.link = link  # IFLA_LINK: a veth's peer ifindex (in link_netnsid's namespace), 0 for none
        self.link_netnsid = link_netnsid  # IFLA_LINK_NETNSID, None when the peer is in this namespace
        self.txqlen = txqlen
        self.operstate = operstate  # IF_OPER_*: 6 is UP, 2 DOWN
        self.vlan_filtering = vlan_filtering  # bridges only, else None

    @property
    def is_up(self) -> bool:
        return bool(self.flags & IFF_UP)

    @property
    def promisc(self) -> bool:
        return bool(self.flags & IFF_PROMISC)

    @property
    def allmulti(self) -> bool:
        return bool(self.flags & IFF_ALLMULTI)

    def __repr__(self) -> str:
        return (f"Link({self.index}, {self.name!r}, kind={self.kind!r}, up={self.is_up}, mac={self.mac!r}, "
                f"mtu={self.mtu}, master={self.master}, link={self.link})")


class Route:
    """One route of a dump. ``dst`` is a CIDR (``0.0.0.0/0``/``::/0`` for default routes),
    ``gw`` and ``src`` (RTA_PREFSRC) are ``""`` when absent, ``mtu``/``advmss`` 0 when unset."""

    __slots__ = ("family", "dst", "gw", "src", "ifindex", "table", "scope", "priority", "mtu", "advmss",
                 "proto", "type")

    def __init__(self, *, family: int, dst: str, gw: str = "", src: str = "", ifindex: int = 0,
                 table: int = RT_TABLE_MAIN, scope: int = RT_SCOPE_UNIVERSE, priority: int = 0, mtu: int = 0,
                 advmss: int = 0, proto: int = 0, type: int = RTN_UNICAST) -> None:
        self.family = family
        self.dst = dst
        self.gw = gw
        self.src = src
        self.ifindex = ifindex
        self.table = table
        self.scope = scope
        self.priority = priority
        self.mtu = mtu
        self.advmss = advmss
        self.proto = proto
        self.type = type

    def __repr__(self) -> str:
        extra = "".join(f", {k}={getattr(self, k)!r}" for k in ("gw", "src", "priority", "mtu", "advmss")
                        if getattr(self, k))
        return f"Route({self.dst!r}, ifindex={self.ifindex}, table={self.table}, scope={self.scope}{extra})"


def _parse_link(payload: bytes) -> Link:
    _family, _type, index, flags, _change = _IFINFOMSG.unpack_from(payload)
    attrs = _attrs(payload, _IFINFOMSG.size)
    info = _attrs(attrs.get(IFLA_LINKINFO, b""))
    kind = _get_str(info.get(IFLA_INFO_KIND))
    vlan_filtering = None
    if kind == "bridge":
        raw = _attrs(info.get(IFLA_INFO_DATA, b"")).get(IFLA_BR_VLAN_FILTERING)
        if raw:
            vlan_filtering = bool(raw[0])
    netnsid = attrs.get(IFLA_LINK_NETNSID)
    return Link(index, _get_str(attrs.get(IFLA_IFNAME)), flags, _mac_str(attrs.get(IFLA_ADDRESS)),
                _get_u32(attrs.get(IFLA_MTU)), kind=kind, master=_get_u32(attrs.get(IFLA_MASTER)),
                link=_get_u32(attrs.get(IFLA_LINK)),
                link_netnsid=_S32.unpack(netnsid)[0] if netnsid and len(netnsid) == 4 else None,
                txqlen=_get_u32(attrs.get(IFLA_TXQLEN)), operstate=_get_u8(attrs.get(IFLA_OPERSTATE)),
                vlan_filtering=vlan_filtering)


class Qdisc:
    """One queueing discipline of a dump: ``kind`` ("tbf", "ingress", ...), ``handle`` and
    ``parent`` as 32-bit tc handles; for tbf, ``rate`` (bytes/s), ``limit`` (bytes) and
    ``buffer`` (ticks) as the kernel reports them, else 0."""

    __slots__ = ("ifindex", "kind", "handle", "parent", "rate", "limit", "buffer")

    def __init__(self, ifindex: int, kind: str, handle: int, parent: int, rate: int = 0, limit: int = 0,
                 buffer: int = 0) -> None:
        self.ifindex = ifindex
        self.kind = kind
        self.handle = handle
        self.parent = parent
        self.rate = rate
        self.limit = limit
        self.buffer = buffer

    def __repr__(self) -> str:
        return (f"Qdisc({self.kind!r}, ifindex={self.ifindex}, handle={self.handle:#x}, parent={self.parent:#x}, "
                f"rate={self.rate}, limit={self.limit}, buffer={self.buffer})")


def _parse_qdisc(payload: bytes) -> Qdisc:
    _family, ifindex, handle, parent, _info = _TCMSG.unpack_from(payload)
    attrs = _attrs(payload, _TCMSG.size)
    kind = _get_str(attrs.get(TCA_KIND))
    qdisc = Qdisc(ifindex, kind, handle, parent)
    if kind == "tbf":
        options = _attrs(attrs.get(TCA_OPTIONS, b""))
        parms = options.get(TCA_TBF_PARMS)
        if parms and len(parms) >= _TBF_QOPT.size:
            rate, _peak, qdisc.limit, qdisc.buffer, _mtu = _TBF_QOPT.unpack_from(parms)
            qdisc.rate = _TC_RATESPEC.unpack(rate)[5]
        rate64 = options.get(TCA_TBF_RATE64)
        if rate64 and len(rate64) == 8:
            qdisc.rate = struct.unpack("=Q", rate64)[0]
    return qdisc


def _parse_route(payload: bytes) -> Route:
    family, dst_len, _src_len, _tos, table, proto, scope, rtype, _flags = _RTMSG.unpack_from(payload)
    attrs = _attrs(payload, _RTMSG.size)
    zero = b"\0" * (4 if family == AF_INET else 16)
    metrics = _attrs(attrs.get(RTA_METRICS, b""))
    gw = attrs.get(RTA_GATEWAY)
    src = attrs.get(RTA_PREFSRC)
    return Route(family=family, dst=f"{socket.inet_ntop(family, attrs.get(RTA_DST) or zero)}/{dst_len}",
                 gw=socket.inet_ntop(family, gw) if gw else "", src=socket.inet_ntop(family, src) if src else "",
                 ifindex=_get_u32(attrs.get(RTA_OIF)), table=_get_u32(attrs.get(RTA_TABLE), table), scope=scope,
                 priority=_get_u32(attrs.get(RTA_PRIORITY)), mtu=_get_u32(metrics.get(RTAX_MTU)),
                 advmss=_get_u32(metrics.get(RTAX_ADVMSS)), proto=proto, type=rtype)


# -- the socket ----------------------------------------------------------------


class Netlink:
    """One NETLINK_ROUTE socket (or, with ``protocol``, another netlink family that frames
    its messages the same way, e.g. :data:`NETLINK_NETFILTER`); requests are synchronous."""

    def __init__(self, protocol: int = NETLINK_ROUTE) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, protocol)
        try:
            self._sock.bind((0, 0))
            for option in (NETLINK_EXT_ACK, NETLINK_CAP_ACK):
                try:
                    self._sock.setsockopt(SOL_NETLINK, option, 1)
                except OSError:  # older kernels: plain errors, full echo
                    pass
        except BaseException:
            self._sock.close()
            raise
        self._seq = 0
        self._buf: bytearray | None = None

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport -------------------------------------------------------------

    def _request(self, msg_type: int, flags: int, body: bytes) -> list[tuple[int, bytes]]:
        """Send one message and collect its replies until the ACK or NLMSG_DONE
        (a dump may take several datagrams); raise OSError on NLMSG_ERROR."""
        self._seq = seq = (self._seq + 1) & 0xFFFFFFFF or 1
        self._sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(body), msg_type, flags | NLM_F_REQUEST, seq, 0)
                        + body)
        buf = self._buf
        if buf is None:
            buf = self._buf = bytearray(RECV_SIZE)
        replies: list[tuple[int, bytes]] = []
        interrupted = False
        while True:
            size = self._sock.recv_into(buf, 0, MSG_TRUNC)  # the full size, even if it did not fit
            if size > len(buf):
                raise OSError(errno.EMSGSIZE, f"netlink reply of {size} bytes does not fit {len(buf)}")
            data = bytes(memoryview(buf)[:size])
            offset = 0
            while offset + _NLMSGHDR.size <= size:
                length, kind, mflags, mseq, _pid = _NLMSGHDR.unpack_from(data, offset)
                if length < _NLMSGHDR.size:
                    break
                payload = data[offset + _NLMSGHDR.size:offset + length]
                offset += _align(length)
                if mseq != seq:
                    continue  # a late reply to an earlier, abandoned request
                interrupted = interrupted or bool(mflags & NLM_F_DUMP_INTR)
                if kind == NLMSG_ERROR:
                    (code,) = _S32.unpack_from(payload)
                    if code:
                        raise _kernel_error(-code, payload, mflags)
                    return replies
                if kind == NLMSG_DONE:
                    code = _S32.unpack_from(payload)[0] if len(payload) >= 4 else 0
                    if code < 0:
                        raise _kernel_error(-code, payload, mflags, done=True)
                    if interrupted:
                        raise _DumpInterrupted()
                    return replies
                replies.append((kind, payload))
                if not mflags & NLM_F_MULTI and not flags & NLM_F_ACK:
                    return replies

    def _dump(self, msg_type: int, body: bytes) -> list[tuple[int, bytes]]:
        """A dump request, run again if the kernel says it raced with a change."""
        for _ in range(10):
            try:
                return self._request(msg_type, NLM_F_DUMP, body)
            except _DumpInterrupted:
                continue
        raise OSError(errno.EAGAIN, "netlink dump kept being interrupted by concurrent changes")

    def _change(self, msg_type: int, body: bytes, what: str, flags: int = 0, names_link: bool = False) -> None:
        """A change request with NLM_F_ACK; ENODEV → LinkNotFoundError, and EEXIST
        → LinkExistsError when the request names a link (create, rename)."""
        try:
            self._request(msg_type, flags | NLM_F_ACK, body)
        except OSError as exc:
            if exc.errno == errno.ENODEV:
                raise LinkNotFoundError(errno.ENODEV, f"Link not found: {what}") from exc
            if exc.errno == errno.EEXIST and names_link:
                raise LinkExistsError(errno.EEXIST, f"{what}: {exc.strerror}") from exc
            raise

    def _index(self, link: LinkRef) -> int:
        if isinstance(link, Link):
            return link.index
        if isinstance(link, str):
            return self.link(link).index
        return int(link)

    @staticmethod
    def _what(link: LinkRef) -> str:
        if isinstance(link, Link):
            return f'"{link.name}"'
        return f'"{link}"' if isinstance(link, str) else f"index {link}"

    # -- links -----------------------------------------------------------------

    def _get_link(self, body: bytes, what: str) -> Link:
        try:
            replies = self._request(RTM_GETLINK, 0, body + _u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS))
        except OSError as exc:
            if exc.errno == errno.ENODEV:
                raise LinkNotFoundError(errno.ENODEV, f"Link not found: {what}") from None
            raise
        for kind, payload in replies:
            if kind == RTM_NEWLINK:
                return _parse_link(payload)
        raise LinkNotFoundError(errno.ENODEV, f"Link not found: {what}")

    def link(self, name: str) -> Link:
        """Look a link up by name; :class:`LinkNotFoundError` if absent."""
        # A name no link can have: the kernel would answer ERANGE.
        if not name or len(name.encode("utf-8", "surrogateescape")) >= IFNAMSIZ:
            raise LinkNotFoundError(errno.ENODEV, f'Link not found: "{name}"')
        return self._get_link(_IFINFOMSG.pack(AF_UNSPEC, 0, 0, 0, 0) + _str(IFLA_IFNAME, name), f'"{name}"')

    def link_by_index(self, index: int) -> Link:
        """Look a link up by ifindex; :class:`LinkNotFoundError` if absent."""
        if index <= 0:
            raise LinkNotFoundError(errno.ENODEV, f"Link not found: index {index}")
        return self._get_link(_IFINFOMSG.pack(AF_UNSPEC, 0, index, 0, 0), f"index {index}")

    def links(self) -> list[Link]:
        """Every link of the namespace, in ifindex order."""
        body = _IFINFOMSG.pack(AF_UNSPEC, 0, 0, 0, 0) + _u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)
        return [_parse_link(p) for kind, p in self._dump(RTM_GETLINK, body) if kind == RTM_NEWLINK]

    def set_up(self, link: LinkRef, up: bool = True) -> None:
        """Set (or clear) IFF_UP on the link."""
        self.set_link(link, up=up)

    def add_bridge(self, name: str, *, mtu: int = 0, mac: str = "", vlan_filtering: bool | None = None) -> Link:
        """Create bridge ``name`` (``LinkExistsError`` if the name is taken) and return it.

        ``vlan_filtering`` None leaves the kernel default (off) and sends nothing;
        True/False is sent as IFLA_BR_VLAN_FILTERING, which a kernel built without
        CONFIG_BRIDGE_VLAN_FILTERING refuses with EOPNOTSUPP (even for False).
        """
        data = b"" if vlan_filtering is None else _nest(IFLA_INFO_DATA, _u8(IFLA_BR_VLAN_FILTERING, vlan_filtering))
        body = (_IFINFOMSG.pack(AF_UNSPEC, 0, 0, 0, 0) + _str(IFLA_IFNAME, name) + self._link_attrs(mtu, mac)
                + _nest(IFLA_LINKINFO, _attr(IFLA_INFO_KIND, b"bridge"), data))
        self._change(RTM_NEWLINK, body, f'"{name}"', NLM_F_CREATE | NLM_F_EXCL, names_link=True)
        return self.link(name)

    def add_veth(self, name: str, peer_name: str, *, mtu: int = 0, mac: str = "", peer_mac: str = "",
                 peer_netns_fd: int | None = None) -> None:
        """Create veth pair ``name`` <-> ``peer_name``; the peer goes straight into the
        namespace of ``peer_netns_fd`` when given. ``mtu`` applies to both ends.
        ``LinkExistsError`` if either name is taken (where that end would be created)."""
        peer = (_IFINFOMSG.pack(AF_UNSPEC, 0, 0, 0, 0) + _str(IFLA_IFNAME, peer_name)
                + self._link_attrs(mtu, peer_mac)
                + (b"" if peer_netns_fd is None else _u32(IFLA_NET_NS_FD, peer_netns_fd)))
        body = (_IFINFOMSG.pack(AF_UNSPEC, 0, 0, 0, 0) + _str(IFLA_IFNAME, name) + self._link_attrs(mtu, mac)
                + _nest(IFLA_LINKINFO, _attr(IFLA_INFO_KIND, b"veth"),
                        _nest(IFLA_INFO_DATA, _attr(VETH_INFO_PEER, peer))))
        self._change(RTM_NEWLINK, body, f'"{name}" or its peer "{peer_name}"', NLM_F_CREATE | NLM_F_EXCL,
                     names_link=True)

    @staticmethod
    def _link_attrs(mtu: int, mac: str) -> bytes:
        return (_u32(IFLA_MTU, mtu) if mtu else b"") + (_attr(IFLA_ADDRESS, _mac_bytes(mac)) if mac else b"")

    def delete_link(self, link_or_name: LinkRef) -> None:
        """Delete a link (a veth takes its peer along); ``LinkNotFoundError`` if it is gone."""
        if isinstance(link_or_name, str):
            body = _IFINFOMSG.pack(AF_UNSPEC, 0, 0, 0, 0) + _str(IFLA_IFNAME, link_or_name)
        else:
            body = _IFINFOMSG.pack(AF_UNSPEC, 0, self._index(link_or_name), 0, 0)
        self._change(RTM_DELLINK, body, self._what(link_or_name))

    def set_link(self, link: LinkRef, *, up: bool | None = None, mtu: int | None = None, mac: str | None = None,
                 promisc: bool | None = None, allmulti: bool | None = None, txqlen: int | None = None,
                 name: str | None = None, master: LinkRef | None = None, netns_fd: int | None = None) -> None:
        """Change only the given settings, in one RTM_SETLINK. ``master=0`` releases the
        link from its bridge; ``netns_fd`` moves it (the other changes apply there)."""
        flags = change = 0
        for flag, value in ((IFF_UP, up), (IFF_PROMISC, promisc), (IFF_ALLMULTI, allmulti)):
            if value is not None:
                change |= flag
                flags |= flag if value else 0
        attrs = []
        if netns_fd is not None:
            attrs.append(_u32(IFLA_NET_NS_FD, netns_fd))
        if name is not None:
            attrs.append(_str(IFLA_IFNAME, name))
        if mtu is not None:
            attrs.append(_u32(IFLA_MTU, mtu))
        if mac is not None:
            attrs.append(_attr(IFLA_ADDRESS, _mac_bytes(mac)))
        if txqlen is not None:
            attrs.append(_u32(IFLA_TXQLEN, txqlen))
        if master is not None:
            attrs.append(_u32(IFLA_MASTER, self._index(master) if master else 0))
        if not change and not attrs:
            return
        body = _IFINFOMSG.pack(AF_UNSPEC, 0, self._index(link), flags, change) + b"".join(attrs)
        what = self._what(link) if name is None else f'{self._what(link)} (renaming to "{name}")'
        self._change(RTM_SETLINK, body, what, names_link=name is not None)

    def add_link(self, name: str, kind: str, *, mtu: int = 0, txqlen: int | None = None, up: bool = False) -> Link:
        """Create a simple virtual link of ``kind`` ("ifb", "dummy": no kind-specific data)
        and return it; ``LinkExistsError`` if the name is taken. ``txqlen`` None sends
        none (the kernel default); ``up`` creates it up, in the same request."""
        body = (_IFINFOMSG.pack(AF_UNSPEC, 0, 0, IFF_UP if up else 0, IFF_UP if up else 0)
                + _str(IFLA_IFNAME, name) + self._link_attrs(mtu, "")
                + (_u32(IFLA_TXQLEN, txqlen) if txqlen is not None else b"")
                + _nest(IFLA_LINKINFO, _attr(IFLA_INFO_KIND, kind.encode())))
        self._change(RTM_NEWLINK, body, f'"{name}"', NLM_F_CREATE | NLM_F_EXCL, names_link=True)
        return self.link(name)

    # -- traffic control ---------------------------------------------------------

    def _add_tc(self, msg_type: int, link: LinkRef, handle: int, parent: int, info: int, kind: str,
                options: bytes) -> None:
        body = (_TCMSG.pack(AF_UNSPEC, self._index(link), handle, parent, info) + _str(TCA_KIND, kind)
                + _attr(TCA_OPTIONS, options))
        self._change(msg_type, body, self._what(link), NLM_F_CREATE | NLM_F_EXCL)

    def add_qdisc_tbf(self, link: LinkRef, *, rate: int, limit: int, buffer: int, handle: int = 0x10000,
                      parent: int = TC_H_ROOT) -> None:
        """A token bucket filter qdisc (``tc qdisc add ... tbf``), as vishvananda/netlink
        sends it: ``rate`` in bytes/s (RATE64 from 2**32 on), ``limit`` in bytes,
        ``buffer`` in scheduler ticks (``/proc/net/psched``). EEXIST if the place is taken."""
        ratespec = _TC_RATESPEC.pack(0, 0, 0, 0, 0, min(rate, 0xFFFFFFFF))
        options = _attr(TCA_TBF_PARMS, _TBF_QOPT.pack(ratespec, b"\0" * _TC_RATESPEC.size, limit, buffer, 0))
        if rate >= 1 << 32:
            options += _attr(TCA_TBF_RATE64, struct.pack("=Q", rate))
        self._add_tc(RTM_NEWQDISC, link, handle, parent, 0, "tbf", options)

    def add_qdisc_ingress(self, link: LinkRef) -> None:
        """The ingress qdisc (handle ``ffff:``), where ingress filters attach."""
        self._add_tc(RTM_NEWQDISC, link, 0xFFFF0000, TC_H_INGRESS, 0, "ingress", b"")

    def add_redirect_filter(self, link: LinkRef, target: LinkRef, *, parent: int = 0xFFFF0000, prio: int = 1,
                            classid: int = 0x10001, controls: tuple[int, ...] = (TC_ACT_STOLEN,)) -> None:
        """A match-all u32 filter (every protocol) redirecting the link's packets to the
        egress of ``target`` (``tc filter add ... u32 match u32 0 0 action mirred
        egress redirect dev TARGET``): one mirred action per entry of ``controls``,
        each the action's verdict (``TC_ACT_STOLEN``, ``TC_ACT_OK``)."""
        target_index = self._index(target)
        sel = _U32_SEL.pack(TC_U32_TERMINAL, 0, 1, 0, 0, 0, 0, 0) + _U32_KEY.pack(0, 0, 0, 0)
        actions = b"".join(
            _nest(order, _str(TCA_ACT_KIND, "mirred"),
                  _nest(TCA_ACT_OPTIONS, _attr(TCA_MIRRED_PARMS, _TC_MIRRED.pack(0, 0, control, 0, 0,
                                                                                  TCA_EGRESS_REDIR,
                                                                                  target_index))))
            for order, control in enumerate(controls, 1))
        options = _attr(TCA_U32_SEL, sel) + _u32(TCA_U32_CLASSID, classid) + _nest(TCA_U32_ACT, actions)
        info = (prio << 16) | ((ETH_P_ALL & 0xFF) << 8 | ETH_P_ALL >> 8)  # protocol in network order
        self._add_tc(RTM_NEWTFILTER, link, 0, parent, info, "u32", options)

    def delete_qdisc(self, link: LinkRef, *, parent: int = TC_H_ROOT, handle: int = 0) -> None:
        """Delete the qdisc at ``parent`` (the root by default; ``TC_H_INGRESS`` with
        handle ``0xffff0000`` for the ingress qdisc), its filters with it. ENOENT if none."""
        body = _TCMSG.pack(AF_UNSPEC, self._index(link), handle, parent, 0)
        self._change(RTM_DELQDISC, body, self._what(link))

    def qdiscs(self, link: LinkRef | None = None) -> list[Qdisc]:
        """The qdiscs of one link (or of all), in the kernel's order (root first)."""
        index = 0 if link is None else self._index(link)
        replies = self._dump(RTM_GETQDISC, _TCMSG.pack(AF_UNSPEC, 0, 0, 0, 0))
        out = [_parse_qdisc(p) for kind, p in replies if kind == RTM_NEWQDISC]
        return [q for q in out if not index or q.ifindex == index]

    # -- addresses -------------------------------------------------------------

    def addresses(self, link: LinkRef, family: int) -> list[str]:
        """The link's addresses of ``family`` (AF_INET/AF_INET6) as ``ip/prefix``, kernel order."""
        return [address for address, _flags in self.address_flags(link, family)]

    def address_flags(self, link: LinkRef, family: int) -> list[tuple[str, int]]:
        """``(ip/prefix, IFA_F_* flags)`` for the link's addresses of ``family``."""
        index = self._index(link)
        out = []
        for kind, payload in self._dump(RTM_GETADDR, _IFADDRMSG.pack(family, 0, 0, 0, 0)):
            if kind != RTM_NEWADDR:
                continue
            fam, prefixlen, flags, _scope, ifindex = _IFADDRMSG.unpack_from(payload)
            if ifindex != index or fam != family:
                continue
            attrs = _attrs(payload, _IFADDRMSG.size)
            raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
            if raw:
                out.append((f"{socket.inet_ntop(family, raw)}/{prefixlen}", _get_u32(attrs.get(IFA_FLAGS), flags)))
        return out

    def _addr_msg(self, link: LinkRef, cidr: str, flags: int) -> bytes:
        family, raw, prefix = _cidr(cidr)
        body = (_IFADDRMSG.pack(family, prefix, flags & 0xFF, RT_SCOPE_UNIVERSE, self._index(link))
                + _attr(IFA_LOCAL, raw) + _attr(IFA_ADDRESS, raw))
        if family == AF_INET and prefix < 31:  # as vishvananda/netlink: the subnet broadcast
            host_mask = (1 << (32 - prefix)) - 1
            body += _attr(IFA_BROADCAST, (int.from_bytes(raw, "big") | host_mask).to_bytes(4, "big"))
        if flags > 0xFF:
            body += _u32(IFA_FLAGS, flags)
        return body

    def add_address(self, link: LinkRef, cidr: str, *, noprefixroute: bool = False, nodad: bool = False) -> None:
        """Add ``ip/prefix``; OSError(EEXIST) if the link already has it."""
        flags = (IFA_F_NOPREFIXROUTE if noprefixroute else 0) | (IFA_F_NODAD if nodad else 0)
        self._change(RTM_NEWADDR, self._addr_msg(link, cidr, flags), self._what(link), NLM_F_CREATE | NLM_F_EXCL)

    def del_address(self, link: LinkRef, cidr: str) -> None:
        """Remove ``ip/prefix``; OSError(EADDRNOTAVAIL) if the link does not have it."""
        self._change(RTM_DELADDR, self._addr_msg(link, cidr, 0), self._what(link))

    # -- routes ----------------------------------------------------------------

    def routes(self, family: int, *, table: int | None = RT_TABLE_MAIN) -> list[Route]:
        """The routes of ``family`` in ``table`` (None: every table), kernel order."""
        out = []
        for kind, payload in self._dump(RTM_GETROUTE, _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)):
            if kind == RTM_NEWROUTE and payload[0] == family:
                route = _parse_route(payload)
                if table is None or route.table == table:
                    out.append(route)
        return out

    def route_get(self, dst: str) -> Route:
        """The route the kernel would use to reach the address ``dst`` (``ip route get``,
        Go's ``netlink.RouteGet``): its ``ifindex`` is the outgoing link. OSError
        (ENETUNREACH...) if there is none."""
        family, raw = _ip(dst)
        body = _RTMSG.pack(family, len(raw) * 8, 0, 0, 0, 0, 0, 0, 0) + _attr(RTA_DST, raw)
        for kind, payload in self._request(RTM_GETROUTE, 0, body):
            if kind == RTM_NEWROUTE:
                return _parse_route(payload)
        raise OSError(errno.ENETUNREACH, f"no route to {dst}")

    def _route_msg(self, delete: bool, dst: str, gw: str, link: LinkRef | None, table: int | None,
                   scope: int | None, priority: int, mtu: int, advmss: int, src: str) -> bytes:
        family, raw, prefix = _cidr(dst)
        table = RT_TABLE_MAIN if table is None else table
        if delete:  # as iproute2: unspecified protocol and type, and scope as a wildcard
            proto, rtype = 0, RTN_UNSPEC
            scope = RT_SCOPE_NOWHERE if scope is None else scope
        else:  # as `ip route add`: a direct IPv4 route (no gateway, a device) is link scope
            proto, rtype = RTPROT_BOOT, RTN_UNICAST
            if scope is None:
                scope = RT_SCOPE_LINK if family == AF_INET and not gw and link is not None else RT_SCOPE_UNIVERSE
        attrs = [_u32(RTA_TABLE, table), _attr(RTA_DST, _masked(raw, prefix))]
        if gw:
            attrs.append(_attr(RTA_GATEWAY, _ip(gw, family)[1]))
        if link is not None:
            attrs.append(_u32(RTA_OIF, self._index(link)))
        if priority:
            attrs.append(_u32(RTA_PRIORITY, priority))
        if src:
            attrs.append(_attr(RTA_PREFSRC, _ip(src, family)[1]))
        metrics = (_u32(RTAX_MTU, mtu) if mtu else b"") + (_u32(RTAX_ADVMSS, advmss) if advmss else b"")
        if metrics:
            attrs.append(_attr(RTA_METRICS, metrics))
        return (_RTMSG.pack(family, prefix, 0, 0, table if table < 256 else RT_TABLE_UNSPEC, proto, scope, rtype, 0)
                + b"".join(attrs))

    def add_route(self, dst: str, *, gw: str = "", link: LinkRef | None = None, table: int | None = None,
                  scope: int | None = None, priority: int = 0, mtu: int = 0, advmss: int = 0, src: str = "",
                  replace: bool = False) -> None:
        """Add a unicast route to CIDR ``dst`` (``0.0.0.0/0``/``::/0`` for a default route;
        host bits are cleared). OSError(EEXIST) if it exists, unless ``replace``."""
        body = self._route_msg(False, dst, gw, link, table, scope, priority, mtu, advmss, src)
        what = "the route's device" if link is None else self._what(link)
        self._change(RTM_NEWROUTE, body, what, NLM_F_CREATE | (NLM_F_REPLACE if replace else NLM_F_EXCL))

    def del_route(self, dst: str, *, gw: str = "", link: LinkRef | None = None, table: int | None = None,
                  priority: int = 0) -> None:
        """Delete the first route matching ``dst`` and whatever else is given (``priority``
        0: any metric); OSError(ESRCH) if none does."""
        body = self._route_msg(True, dst, gw, link, table, None, priority, 0, 0, "")
        self._change(RTM_DELROUTE, body, "the route's device" if link is None else self._what(link))

    # -- bridge ports and VLANs ------------------------------------------------

    def _bridge_entries(self, index: int, ext_mask: int) -> list[list[tuple[int, bytes]]]:
        """The attribute lists of ``index``'s entries in an AF_BRIDGE link dump."""
        body = _IFINFOMSG.pack(AF_BRIDGE, 0, 0, 0, 0) + (_u32(IFLA_EXT_MASK, ext_mask) if ext_mask else b"")
        out = []
        for kind, payload in self._dump(RTM_GETLINK, body):
            if kind == RTM_NEWLINK and _IFINFOMSG.unpack_from(payload)[2] == index:
                out.append(_attr_list(payload, _IFINFOMSG.size))
        return out

    def set_bridge_port(self, link: LinkRef, *, hairpin: bool | None = None, isolated: bool | None = None,
                        learning: bool | None = None) -> None:
        """Set the given options of a bridge port (EOPNOTSUPP if not enslaved to a bridge)."""
        options = [_u8(attr, value) for attr, value in ((IFLA_BRPORT_MODE, hairpin),
                   (IFLA_BRPORT_ISOLATED, isolated), (IFLA_BRPORT_LEARNING, learning)) if value is not None]
        if not options:
            return
        body = _IFINFOMSG.pack(AF_BRIDGE, 0, self._index(link), 0, 0) + _nest(IFLA_PROTINFO | NLA_F_NESTED, *options)
        self._change(RTM_SETLINK, body, self._what(link))

    def bridge_port(self, link: LinkRef) -> dict[str, bool]:
        """``{"hairpin", "isolated", "learning"}`` of a bridge port (EOPNOTSUPP if it is none)."""
        index = self._index(link)
        for attrs in self._bridge_entries(index, 0):
            for kind, payload in attrs:
                if kind == IFLA_PROTINFO:
                    port = _attrs(payload)
                    return {"hairpin": bool(_get_u8(port.get(IFLA_BRPORT_MODE))),
                            "isolated": bool(_get_u8(port.get(IFLA_BRPORT_ISOLATED))),
                            "learning": bool(_get_u8(port.get(IFLA_BRPORT_LEARNING)))}
        name = self.link_by_index(index).name  # LinkNotFoundError if it is gone altogether
        raise OSError(errno.EOPNOTSUPP, f'"{name}" is not a bridge port')

    def _bridge_vlan(self, msg_type: int, link: LinkRef, vid: int, info: int, master: bool) -> None:
        spec = _nest(IFLA_AF_SPEC, _u16(IFLA_BRIDGE_FLAGS, BRIDGE_FLAGS_MASTER if master else BRIDGE_FLAGS_SELF),
                     _attr(IFLA_BRIDGE_VLAN_INFO, _VLAN_INFO.pack(info, vid)))
        self._change(msg_type, _IFINFOMSG.pack(AF_BRIDGE, 0, self._index(link), 0, 0) + spec, self._what(link))

    def bridge_vlan_add(self, link: LinkRef, vid: int, *, pvid: bool = False, untagged: bool = False,
                        master: bool = True) -> None:
        """Allow VLAN ``vid`` on a bridge port (``master=False``: on the bridge device itself,
        ``bridge vlan add ... self``)."""
        info = (BRIDGE_VLAN_INFO_PVID if pvid else 0) | (BRIDGE_VLAN_INFO_UNTAGGED if untagged else 0)
        self._bridge_vlan(RTM_SETLINK, link, vid, info, master)

    def bridge_vlan_del(self, link: LinkRef, vid: int, *, master: bool = True) -> None:
        """Remove VLAN ``vid`` from a bridge port (or, ``master=False``, the bridge itself)."""
        self._bridge_vlan(RTM_DELLINK, link, vid, 0, master)

    def bridge_vlans(self, link: LinkRef) -> list[tuple[int, bool, bool]]:
        """``(vid, pvid, untagged)`` of the link's bridge VLANs, by vid ([] if it has none)."""
        index = self._index(link)
        found: dict[int, tuple[int, bool, bool]] = {}
        for attrs in self._bridge_entries(index, RTEXT_FILTER_BRVLAN):
            for kind, payload in attrs:
                if kind != IFLA_AF_SPEC:
                    continue
                start = 0
                for sub, raw in _attr_list(payload):
                    if sub != IFLA_BRIDGE_VLAN_INFO or len(raw) < _VLAN_INFO.size:
                        continue
                    flags, vid = _VLAN_INFO.unpack_from(raw)
                    if flags & BRIDGE_VLAN_INFO_RANGE_BEGIN:
                        start = vid
                        continue
                    first = start if flags & BRIDGE_VLAN_INFO_RANGE_END and start else vid
                    start = 0
                    for v in range(first, vid + 1):
                        found[v] = (v, bool(flags & BRIDGE_VLAN_INFO_PVID), bool(flags & BRIDGE_VLAN_INFO_UNTAGGED))
        return [found[v] for v in sorted(found)]


    # -- policy routing rules (``ip rule``) --------------------------------------

    def rules(self, family: int = AF_UNSPEC) -> list[Rule]:
        """The policy routing rules of ``family`` (AF_UNSPEC: IPv4 and IPv6), kernel order."""
        out = []
        for kind, payload in self._dump(RTM_GETRULE, _FIB_RULE_HDR.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)):
            if kind == RTM_NEWRULE and (family == AF_UNSPEC or payload[0] == family):
                out.append(_parse_rule(payload))
        return out

    def _rule_msg(self, family: int, src: str, table: int, priority: int | None) -> bytes:
        attrs = [_u32(FRA_TABLE, table)]
        prefix = 0
        if src:
            family, raw, prefix = _cidr(src)
            attrs.append(_attr(FRA_SRC, _masked(raw, prefix)))
        if priority is not None:
            attrs.append(_u32(FRA_PRIORITY, priority))
        return (_FIB_RULE_HDR.pack(family, 0, prefix, 0, table if table < 256 else RT_TABLE_UNSPEC, 0, 0,
                                   FR_ACT_TO_TBL, 0) + b"".join(attrs))

    def add_rule(self, *, src: str, table: int, priority: int | None = None) -> None:
        """``ip rule add from SRC lookup TABLE [pref PRIORITY]``: ``src`` a CIDR
        (``10.0.0.2/32``); without ``priority`` the kernel picks the one before the
        first non-zero rule (32765 on a fresh namespace), as iproute2 and Go do, so
        the same rule may be added twice; with a ``priority`` that already has it,
        OSError(EEXIST)."""
        family = _cidr(src)[0]
        self._change(RTM_NEWRULE, self._rule_msg(family, src, table, priority), "the rule",
                     NLM_F_CREATE | NLM_F_EXCL)

    def del_rule(self, rule: Rule) -> None:
        """Delete the rule matching ``rule``'s family, source, table and priority
        (a :class:`Rule` from :meth:`rules`); OSError(ENOENT) if none does."""
        body = self._rule_msg(rule.family, rule.src, rule.table, rule.priority)
        self._change(RTM_DELRULE, body, "the rule")

    # -- routes, as they are ---------------------------------------------------

    def put_route(self, route: Route, *, table: int, replace: bool = True) -> None:
        """Write ``route`` (from :meth:`routes`) into ``table`` with its own type,
        protocol, scope, source, gateway, link, metric and metrics — how policy routing
        moves a link's routes to a table of its own (Go's ``RouteReplace`` of a listed
        route). OSError(EEXIST) if present and not ``replace``."""
        family, raw, prefix = _cidr(route.dst)
        attrs = [_u32(RTA_TABLE, table), _attr(RTA_DST, _masked(raw, prefix))]
        if route.gw:
            attrs.append(_attr(RTA_GATEWAY, _ip(route.gw, family)[1]))
        if route.ifindex:
            attrs.append(_u32(RTA_OIF, route.ifindex))
        if route.priority:
            attrs.append(_u32(RTA_PRIORITY, route.priority))
        if route.src:
            attrs.append(_attr(RTA_PREFSRC, _ip(route.src, family)[1]))
        metrics = (_u32(RTAX_MTU, route.mtu) if route.mtu else b"") + (
            _u32(RTAX_ADVMSS, route.advmss) if route.advmss else b"")
        if metrics:
            attrs.append(_attr(RTA_METRICS, metrics))
        body = (_RTMSG.pack(family, prefix, 0, 0, table if table < 256 else RT_TABLE_UNSPEC, route.proto,
                            route.scope, route.type, 0) + b"".join(attrs))
        self._change(RTM_NEWROUTE, body, "the route's device", NLM_F_CREATE | (NLM_F_REPLACE if replace
                                                                                   else NLM_F_EXCL))


    # -- links on a parent: macvlan, ipvlan, vlan ---------------------------------

    def _add_sublink(self, name: str, kind: str, parent: LinkRef, data: bytes, *, mtu: int, mac: str,
                     netns_fd: int | None) -> None:
        """Create a link of ``kind`` on ``parent`` (IFLA_LINK, an ifindex of this namespace),
        straight into the namespace of ``netns_fd`` when given (as vishvananda/netlink's
        LinkAdd with ``Namespace``)."""
        body = (_IFINFOMSG.pack(AF_UNSPEC, 0, 0, 0, 0) + _str(IFLA_IFNAME, name) + self._link_attrs(mtu, mac)
                + _u32(IFLA_LINK, self._index(parent))
                + (b"" if netns_fd is None else _u32(IFLA_NET_NS_FD, netns_fd))
                + _nest(IFLA_LINKINFO, _attr(IFLA_INFO_KIND, kind.encode()), _nest(IFLA_INFO_DATA, data)))
        self._change(RTM_NEWLINK, body, f'"{name}" on {self._what(parent)}', NLM_F_CREATE | NLM_F_EXCL,
                     names_link=True)

    def add_macvlan(self, name: str, parent: LinkRef, *, mode: str = "bridge", mtu: int = 0, mac: str = "",
                    bcqueuelen: int = 0, netns_fd: int | None = None) -> None:
        """Create macvlan ``name`` on ``parent`` in ``mode`` (a key of :data:`MACVLAN_MODES`);
        ``netns_fd`` puts it straight into that namespace. ``bcqueuelen`` 0 sends none (the
        kernel's default broadcast queue). ``ValueError`` for an unknown mode;
        :class:`LinkNotFoundError` if the parent is gone, :class:`LinkExistsError` if the
        name is taken, OSError otherwise (EBUSY: a passthru parent already has one)."""
        if mode not in MACVLAN_MODES:
            raise ValueError(f"unknown macvlan mode {mode!r}")
        data = _u32(IFLA_MACVLAN_MODE, MACVLAN_MODES[mode])
        if bcqueuelen:
            data += _u32(IFLA_MACVLAN_BC_QUEUE_LEN, bcqueuelen)
        self._add_sublink(name, "macvlan", parent, data, mtu=mtu, mac=mac, netns_fd=netns_fd)

    def add_ipvlan(self, name: str, parent: LinkRef, *, mode: str = "l2", mtu: int = 0,
                   netns_fd: int | None = None) -> None:
        """Create ipvlan ``name`` on ``parent`` in ``mode`` (a key of :data:`IPVLAN_MODES`;
        the kernel's default flags, bridge); errors as :meth:`add_macvlan`."""
        if mode not in IPVLAN_MODES:
            raise ValueError(f"unknown ipvlan mode {mode!r}")
        data = _u16(IFLA_IPVLAN_MODE, IPVLAN_MODES[mode])
        self._add_sublink(name, "ipvlan", parent, data, mtu=mtu, mac="", netns_fd=netns_fd)

    def add_vlan(self, name: str, parent: LinkRef, vlan_id: int, *, mtu: int = 0,
                 netns_fd: int | None = None) -> None:
        """Create 802.1Q VLAN ``name`` with id ``vlan_id`` on ``parent``; errors as
        :meth:`add_macvlan` (ERANGE for an id the kernel refuses)."""
        self._add_sublink(name, "vlan", parent, _u16(IFLA_VLAN_ID, vlan_id), mtu=mtu, mac="", netns_fd=netns_fd)

    def link_info_data(self, link: LinkRef) -> dict[str, object]:
        """The kind-specific settings of a macvlan (``{"mode": "bridge"}``, a key of
        :data:`MACVLAN_MODES`, or the number if unknown), an ipvlan (``{"mode": "l2"}``) or
        a vlan (``{"vlan_id": 100}``); ``{}`` for other kinds. LinkNotFoundError if absent."""
        index = self._index(link)
        replies = self._request(RTM_GETLINK, 0, _IFINFOMSG.pack(AF_UNSPEC, 0, index, 0, 0)
                                + _u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS))
        for kind, payload in replies:
            if kind != RTM_NEWLINK:
                continue
            info = _attrs(_attrs(payload, _IFINFOMSG.size).get(IFLA_LINKINFO, b""))
            link_kind = _get_str(info.get(IFLA_INFO_KIND))
            data = _attrs(info.get(IFLA_INFO_DATA, b""))
            if link_kind in ("macvlan", "macvtap"):
                mode = _get_u32(data.get(IFLA_MACVLAN_MODE))
                return {"mode": next((k for k, v in MACVLAN_MODES.items() if v == mode), mode)}
            if link_kind == "ipvlan":
                raw = data.get(IFLA_IPVLAN_MODE)
                number = _U16.unpack(raw)[0] if raw and len(raw) == 2 else 0
                return {"mode": next((k for k, v in IPVLAN_MODES.items() if v == number), number)}
            if link_kind == "vlan":
                raw = data.get(IFLA_VLAN_ID)
                return {"vlan_id": _U16.unpack(raw)[0] if raw and len(raw) == 2 else 0}
            return {}
        raise LinkNotFoundError(errno.ENODEV, f"Link not found: {self._what(link)}")

    # -- aliases, VRFs, TUN/TAP devices (issue 17) -------------------------------

    def link_alias(self, link: LinkRef) -> str:
        """The link's alias (IFLA_IFALIAS, ``ip link set ... alias``), ``""`` when unset."""
        index = self._index(link)
        body = _IFINFOMSG.pack(AF_UNSPEC, 0, index, 0, 0) + _u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)
        for kind, payload in self._request(RTM_GETLINK, 0, body):
            if kind == RTM_NEWLINK:
                return _get_str(_attrs(payload, _IFINFOMSG.size).get(IFLA_IFALIAS))
        raise LinkNotFoundError(errno.ENODEV, f"Link not found: {self._what(link)}")

    def set_alias(self, link: LinkRef, alias: str) -> None:
        """Set the link's alias; ``""`` removes it (Go's ``netlink.LinkSetAlias``)."""
        body = (_IFINFOMSG.pack(AF_UNSPEC, 0, self._index(link), 0, 0)
                + _attr(IFLA_IFALIAS, alias.encode("utf-8", "surrogateescape")))
        self._change(RTM_SETLINK, body, self._what(link))

    def add_vrf(self, name: str, table: int, *, up: bool = False) -> Link:
        """Create VRF device ``name`` bound to routing ``table`` (``ip link add NAME type vrf
        table T``) and return it; ``LinkExistsError`` if the name is taken, EOPNOTSUPP
        where the kernel has no VRF support."""
        body = (_IFINFOMSG.pack(AF_UNSPEC, 0, 0, IFF_UP if up else 0, IFF_UP if up else 0)
                + _str(IFLA_IFNAME, name)
                + _nest(IFLA_LINKINFO, _attr(IFLA_INFO_KIND, b"vrf"),
                        _nest(IFLA_INFO_DATA, _u32(IFLA_VRF_TABLE, table))))
        self._change(RTM_NEWLINK, body, f'"{name}"', NLM_F_CREATE | NLM_F_EXCL, names_link=True)
        return self.link(name)

    def vrf_table(self, link: LinkRef) -> int:
        """The routing table of a VRF device; ValueError if the link is no VRF."""
        index = self._index(link)
        body = _IFINFOMSG.pack(AF_UNSPEC, 0, index, 0, 0) + _u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)
        for kind, payload in self._request(RTM_GETLINK, 0, body):
            if kind == RTM_NEWLINK:
                info = _attrs(_attrs(payload, _IFINFOMSG.size).get(IFLA_LINKINFO, b""))
                if _get_str(info.get(IFLA_INFO_KIND)) != "vrf":
                    raise ValueError(f"link {self._what(link)} is not a VRF")
                return _get_u32(_attrs(info.get(IFLA_INFO_DATA, b"")).get(IFLA_VRF_TABLE))
        raise LinkNotFoundError(errno.ENODEV, f"Link not found: {self._what(link)}")

    def add_tuntap(self, name: str, *, flags: int = TUNTAP_DEFAULT_FLAGS, owner: int | None = None,
                   group: int | None = None, mtu: int = 0, mac: str = "") -> Link:
        """Create a persistent TUN/TAP device ``name`` in the calling thread's namespace and
        return it. Not rtnetlink: the kernel makes these through ``/dev/net/tun``
        (``TUNSETIFF``, ``TUNSETOWNER``/``TUNSETGROUP``, ``TUNSETPERSIST``), as ``ip tuntap
        add`` and vishvananda/netlink do. ``flags``: ``IFF_TAP`` or ``IFF_TUN`` with
        ``IFF_NO_PI``, ``IFF_VNET_HDR``, ``IFF_MULTI_QUEUE`` (the default is ``ip tuntap
        add mode tap``'s). ``owner``/``group`` None leaves the device usable by any process
        with CAP_NET_ADMIN only. ``mtu``/``mac`` are set afterwards over netlink.
        ``LinkExistsError`` if the name is taken by another kind of link."""
        import fcntl

        if not name or len(name.encode()) >= IFNAMSIZ:
            raise OSError(errno.EINVAL, f'invalid TUN/TAP device name "{name}"')
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
        try:
            try:
                self.link(name)
            except LinkNotFoundError:
                pass
            else:  # TUNSETIFF would attach to an existing TUN/TAP device of that name
                raise LinkExistsError(errno.EEXIST, f'"{name}": File exists')
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), flags & 0xFFFF))
            try:
                if owner is not None:
                    fcntl.ioctl(fd, TUNSETOWNER, owner)
                if group is not None:
                    fcntl.ioctl(fd, TUNSETGROUP, group)
                fcntl.ioctl(fd, TUNSETPERSIST, 1)
            except BaseException:
                os.close(fd)  # not yet persistent: closing removes it
                fd = -1
                raise
        finally:
            if fd >= 0:
                os.close(fd)
        try:
            self.set_link(name, mtu=mtu or None, mac=mac or None)
        except BaseException:
            self.delete_link(name)
            raise
        return self.link(name)


class Rule:
    """One policy routing rule of a dump: ``src``/``dst`` CIDRs (``""`` for "all"),
    ``table`` (FRA_TABLE, else the header's), ``priority`` (``pref``), ``action``
    (1: lookup a table)."""

    __slots__ = ("family", "src", "dst", "table", "priority", "action")

    def __init__(self, *, family: int, src: str = "", dst: str = "", table: int = 0, priority: int = 0,
                 action: int = FR_ACT_TO_TBL) -> None:
        self.family = family
        self.src = src
        self.dst = dst
        self.table = table
        self.priority = priority
        self.action = action

    def __repr__(self) -> str:
        return (f"Rule(family={self.family}, src={self.src!r}, dst={self.dst!r}, table={self.table}, "
                f"priority={self.priority})")


def _parse_rule(payload: bytes) -> Rule:
    family, dst_len, src_len, _tos, table, _r1, _r2, action, _flags = _FIB_RULE_HDR.unpack_from(payload)
    attrs = _attrs(payload, _FIB_RULE_HDR.size)
    src, dst = attrs.get(FRA_SRC), attrs.get(FRA_DST)
    return Rule(family=family, src=f"{socket.inet_ntop(family, src)}/{src_len}" if src else "",
                dst=f"{socket.inet_ntop(family, dst)}/{dst_len}" if dst else "",
                table=_get_u32(attrs.get(FRA_TABLE), table), priority=_get_u32(attrs.get(FRA_PRIORITY)),
                action=action)


#: The class's former name (``cnicore.rtnl.RtnlSocket``), kept for existing code.
RtnlSocket = Netlink
