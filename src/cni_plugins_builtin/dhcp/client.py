"""One lease's DHCP exchanges, on a UDP socket made inside the container namespace.

The socket is created in the namespace (a socket keeps the namespace it was made
in), bound to port 68 and to the interface (SO_BINDTODEVICE), so the daemon's
threads use it from the host namespace. The first exchange sets the broadcast
flag (the interface has no address yet, so the server must broadcast its
answers); RENEW is unicast from the leased address to the server (RFC 2131
4.4.5), RELEASE likewise.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import time

from .packet import (
    ACK,
    BOOTREQUEST,
    DISCOVER,
    FLAG_BROADCAST,
    NAK,
    OFFER,
    OPT_CLIENT_ID,
    OPT_MESSAGE_TYPE,
    OPT_REQUESTED_IP,
    OPT_SERVER_ID,
    RELEASE,
    REQUEST,
    Message,
)

SO_BINDTODEVICE = 25
#: The first resend after this many seconds; each wait doubles, up to the daemon's
#: ``-resendmax`` (the reference's default: 62 s), until the exchange's deadline.
RESEND = 2.0
RESEND_MAX = 62.0


class DHCPError(Exception):
    pass


def open_socket(ifname: str) -> tuple[socket.socket, bytes]:
    """Run in the container namespace: the bound socket, and the interface's MAC
    (the link brought up first, as the reference does)."""
    from cnicore.netlink import Netlink

    with Netlink() as nl:
        link = nl.link(ifname)
        if not link.is_up:
            nl.set_up(link)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, ifname.encode())
        sock.bind(("0.0.0.0", 68))
    except OSError:
        sock.close()
        raise
    return sock, bytes.fromhex(link.mac.replace(":", ""))


class Exchange:
    """The client side of a lease: ``client_id`` (the reference's
    ``<container>/<network>/<ifname>``, sent as option 61 with type 0) and the
    extra options of ``provide``/``request``."""

    def __init__(self, sock: socket.socket, mac: bytes, client_id: str, options: dict[int, bytes],
                 timeout: float = 10.0, resend_max: float = RESEND_MAX) -> None:
        self.sock, self.mac, self.timeout, self.resend_max = sock, mac, timeout, resend_max
        self.options = {OPT_CLIENT_ID: b"\0" + client_id.encode(), **options}

    def close(self) -> None:
        self.sock.close()

    def _message(self, kind: int, *, flags: int = 0, ciaddr: str = "0.0.0.0", **extra: bytes) -> Message:
        options = {OPT_MESSAGE_TYPE: bytes((kind,)), **self.options}
        for name, value in extra.items():
            options[{"requested": OPT_REQUESTED_IP, "server": OPT_SERVER_ID}[name]] = value
        return Message(BOOTREQUEST, struct.unpack("!I", os.urandom(4))[0], self.mac, flags=flags, ciaddr=ciaddr,
                       options=options)

    def _exchange(self, message: Message, to: str, wanted: tuple[int, ...]) -> Message:
        deadline = time.monotonic() + self.timeout
        data = message.encode()
        wait = RESEND
        while True:
            self.sock.sendto(data, (to, 67))
            resend = min(deadline, time.monotonic() + wait)
            wait = max(0.1, min(wait * 2, self.resend_max))
            while (left := resend - time.monotonic()) > 0:
                if not select.select([self.sock], [], [], left)[0]:
                    break
                try:
                    reply = Message.decode(self.sock.recv(4096))
                except ValueError:
                    continue
                if reply.xid == message.xid and reply.op == 2 and reply.type in wanted:
                    return reply
            if time.monotonic() >= deadline:
                raise DHCPError(f"no DHCP reply within {self.timeout:g}s")

    def acquire(self) -> Message:
        """DISCOVER, OFFER, REQUEST, ACK: the ACK."""
        offer = self._exchange(self._message(DISCOVER, flags=FLAG_BROADCAST), "255.255.255.255", (OFFER,))
        server = offer.options.get(OPT_SERVER_ID, b"")
        request = self._message(REQUEST, flags=FLAG_BROADCAST, requested=socket.inet_aton(offer.yiaddr),
                                server=server)
        ack = self._exchange(request, "255.255.255.255", (ACK, NAK))
        if ack.type == NAK:
            raise DHCPError("DHCP server answered NAK")
        return ack

    def renew(self, address: str, server: str) -> Message:
        """RENEWING: a REQUEST from ``address`` unicast to ``server``; the ACK."""
        ack = self._exchange(self._message(REQUEST, ciaddr=address), server, (ACK, NAK))
        if ack.type == NAK:
            raise DHCPError("DHCP server answered NAK to the renewal")
        return ack

    def release(self, address: str, server: str) -> None:
        """RELEASE (no answer is expected)."""
        message = self._message(RELEASE, ciaddr=address, server=socket.inet_aton(server))
        self.sock.sendto(message.encode(), (server, 67))
