"""The bridge plugin's kernel work, one step per function, each in its namespace.

Functions taking no namespace run in the calling thread's, which is the
plugin's own ("host") namespace; container-side work is passed to
``NetNS.do`` by the caller. Every netlink socket is opened by the thread that
uses it, so it belongs to that thread's namespace.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import time

from cnicore import sysctl
from cnicore.errors import ERR_INTERNAL, CNIError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnicore.netlink import Link
    from cnicore.request import Request

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).

#: Waits (seconds) for the host veth to report operstate UP, as the reference.
OPER_UP_WAITS = (0, 0.05, 0.5, 1.0, 1.0)
IF_OPER_UP = 6


def fail(msg: str) -> CNIError:
    return CNIError(ERR_INTERNAL, msg)


#: Where bridge ADDs coordinate with rollbacks that delete a bridge (see :class:`BridgeLock`).
LOCK_DIR = "/run/cni/bridge-locks"


class BridgeLock:
    """An flock per bridge name: ADDs hold it shared from making sure the bridge
    exists until their veth is one of its ports; deleting a bridge an ADD made
    takes it exclusively, so a bridge is never deleted while another ADD is
    about to join it. The kernel drops the lock of a killed process."""

    def __init__(self, bridge: str) -> None:
        import hashlib

        # The name is user input: hash it, never build a path from it.
        digest = hashlib.sha256(bridge.encode("utf-8", "surrogateescape")).hexdigest()[:32]
        os.makedirs(LOCK_DIR, mode=0o755, exist_ok=True)
        self.fd = os.open(os.path.join(LOCK_DIR, digest), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                          0o600)

    def shared(self) -> None:
        import fcntl

        fcntl.flock(self.fd, fcntl.LOCK_SH)

    def exclusive(self, wait: bool = True) -> bool:
        """Take the lock exclusively; without ``wait``, False if others hold it."""
        import fcntl

        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            return False
        return True

    def __enter__(self) -> BridgeLock:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def ensure_bridge(name: str, mtu: int, promisc: bool, vlan_filtering: bool,
                  request: Request, lock: BridgeLock) -> tuple[Link, bool]:
    """The bridge ``name``, created if absent; an existing non-bridge is an error.

    Returns the bridge and whether this call created it (a bridge created here
    is deleted again if a later step of this function fails; ``lock`` is the
    caller's shared :class:`BridgeLock`, upgraded for that).
    """
    from cnicore.netlink import LinkExistsError, Netlink

    with Netlink() as rtnl:
        created = False
        # The common case first: the bridge is there, a bridge, up, promiscuous if
        # asked. Then the reference's add / set-up requests would change nothing.
        try:
            ready: Link | None = rtnl.link(name)
        except LookupError:
            ready = None
        if ready is not None and ready.kind == "bridge" and ready.is_up and (ready.promisc or not promisc):
            sysctl.write("net.ipv6.conf.IFNAME.accept_ra", "0", ifname=name, request=request, best_effort=True,
                         skip_same=True)
            return ready, False
        try:
            rtnl.add_bridge(name, mtu=mtu, vlan_filtering=True if vlan_filtering else None)
            created = True
        except LinkExistsError:
            pass
        except OSError as exc:
            raise fail(f'failed to create bridge "{name}": could not add "{name}": {exc.strerror}') from None
        try:
            try:
                bridge = rtnl.link(name)
            except LookupError as exc:
                raise fail(f'failed to create bridge "{name}": could not lookup "{name}": {exc}') from None
            if bridge.kind != "bridge":
                raise fail(f'failed to create bridge "{name}": "{name}" already exists but is not a bridge')
            if promisc and not bridge.promisc:
                try:
                    rtnl.set_link(bridge, promisc=True)
                except OSError as exc:
                    raise fail(f'failed to create bridge "{name}": could not set promiscuous mode on '
                               f'"{name}": {exc.strerror}') from None
            sysctl.write("net.ipv6.conf.IFNAME.accept_ra", "0", ifname=name, request=request, best_effort=True,
                         skip_same=True)
            try:
                rtnl.set_up(bridge, True)
            except OSError as exc:
                raise fail(f'failed to create bridge "{name}": {exc.strerror}') from None
            return rtnl.link(name), created
        except BaseException:
            if created and lock.exclusive(wait=False):  # others joining keep it
                _delete_if_unused(name)
            raise


def delete_unused_bridge(name: str) -> None:
    """Undo for a bridge this ADD created: delete it unless some port joined it
    meanwhile or another ADD is about to (a concurrent ADD keeps its bridge)."""
    with BridgeLock(name) as lock:
        lock.exclusive()
        _delete_if_unused(name)


def _delete_if_unused(name: str) -> None:
    from cnicore.netlink import Netlink

    with Netlink() as rtnl:
        try:
            bridge = rtnl.link(name)
        except LookupError:
            return
        if bridge.kind != "bridge" or any(link.master == bridge.index for link in rtnl.links()):
            return
        try:
            rtnl.delete_link(bridge)
        except LookupError:
            pass


def delete_link(name: str, with_addresses: bool = True) -> list[str]:
    """Delete ``name`` if present; return its global unicast addresses (for rule
    cleanup; two address dumps, skipped when the caller has no rules to clean)."""
    from cnicore.ip import del_link_by_name, del_link_by_name_addr
    from cnicore.netlink import LinkNotFoundError

    try:
        if with_addresses:
            return del_link_by_name_addr(name)
        del_link_by_name(name)
    except LinkNotFoundError:
        pass
    return []


def attach_host_veth(host_name: str, bridge: Link, hairpin: bool, isolated: bool, vlan: int,
                     vlans: list[int], preserve_default_vlan: bool, request: Request) -> Link:
    """Host side (up already, :func:`cnicore.ip.setup_veth`): accept_ra=0, enslaved to the
    bridge, port flags and VLANs."""
    from cnicore.netlink import Netlink

    with Netlink() as rtnl:
        veth = rtnl.link(host_name)
        sysctl.write("net.ipv6.conf.IFNAME.accept_ra", "0", ifname=host_name, request=request,
                     best_effort=True)
        try:
            rtnl.set_link(veth, master=bridge.index)
        except OSError as exc:
            raise fail(f'failed to connect "{host_name}" to bridge {bridge.name}: {exc.strerror}') from None
        # The port is new: hairpin and isolation start off, so only "on" needs a
        # request (the reference sends both always); one request for both, and on
        # a failure each alone again, for the reference's message.
        try:
            rtnl.set_bridge_port(veth, hairpin=hairpin or None, isolated=isolated or None)
        except OSError:
            try:
                rtnl.set_bridge_port(veth, hairpin=hairpin)
            except OSError as exc:
                raise fail(f"failed to setup hairpin mode for {host_name}: {exc.strerror}") from None
            try:
                rtnl.set_bridge_port(veth, isolated=isolated)
            except OSError as exc:
                raise fail(f"failed to set isolated on for {host_name}: {exc.strerror}") from None
        if (vlan or vlans) and not preserve_default_vlan:
            try:
                for vid, _pvid, _untagged in rtnl.bridge_vlans(veth):
                    rtnl.bridge_vlan_del(veth, vid)
            except OSError as exc:
                raise fail(f'failed to remove default vlan on interface "{host_name}": {exc.strerror}') from None
        steps = [(vlan, True, "vlan tag")] if vlan else []
        steps += [(vid, False, "vlan tag") for vid in vlans]
        if not vlan and vlans:
            steps.append((1, True, "default native vlan tag"))
        for vid, native, what in steps:
            try:
                rtnl.bridge_vlan_add(veth, vid, pvid=native, untagged=native)
            except OSError as exc:
                raise fail(f'failed to setup {what} on interface "{host_name}": {exc.strerror}') from None
        return veth  # name and MAC are what the result needs; neither changed


def ensure_gateway_address(link_name: str, gateway: str, force: bool, mac: str) -> None:
    """The gateway address on the bridge (or its VLAN interface); a different
    address of the same family (IPv4) or subnet (IPv6) is an error unless ``force``.
    ``mac`` is pinned as the link's address: the bridge's own as it was before
    this ADD attached its port, like the reference."""
    from cnicore.netlink import AF_INET, AF_INET6, Netlink

    wanted = ipaddress.ip_interface(gateway)
    family = AF_INET if wanted.version == 4 else AF_INET6
    with Netlink() as rtnl:
        link = rtnl.link(link_name)
        for existing in rtnl.addresses(link, family):
            have = ipaddress.ip_interface(existing)
            if have == wanted:
                return
            if family == AF_INET or wanted.ip in have.network or have.ip in wanted.network:
                if not force:
                    raise fail(f'failed to set bridge addr: "{link_name}" already has an IP address '
                               f"different from {gateway}")
                rtnl.del_address(link, existing)
        try:
            rtnl.add_address(link, gateway)
        except OSError as exc:
            if exc.errno != errno.EEXIST:
                raise fail(f'failed to set bridge addr: could not add IP address {gateway} to '
                           f'"{link_name}": {exc.strerror}') from None
        # Pin the MAC: a bridge without an explicit one takes its lowest port's, so
        # it would change as containers come and go (and CHECK would fail). An
        # unpinned bridge whose last port left has 00:00:00:00:00:00, which the
        # kernel refuses (the reference then fails every later ADD): pin the
        # address it has now, with our port in it, instead.
        if not usable_mac(mac):
            mac = rtnl.link(link_name).mac
        try:
            rtnl.set_link(link, mac=mac)
        except OSError as exc:
            raise fail(f"failed to set bridge addr: could not set bridge's mac: {exc.strerror}") from None


def usable_mac(mac: str) -> bool:
    """True for a unicast, non-zero Ethernet address (one a bridge can be given)."""
    try:
        raw = bytes.fromhex(mac.replace(":", ""))
    except ValueError:
        return False
    return len(raw) == 6 and any(raw) and not raw[0] & 1


def wait_oper_up(host_name: str) -> Link:
    """Wait for the bridge port to come up, like the reference (about 2.5 s at most)."""
    from cnicore.netlink import Netlink

    with Netlink() as rtnl:
        for index, pause in enumerate(OPER_UP_WAITS):
            if pause:
                time.sleep(pause)
            link = rtnl.link(host_name)
            if link.operstate == IF_OPER_UP:
                break
            if index == len(OPER_UP_WAITS) - 1:
                raise fail(f"bridge port in error state: {link.operstate}")
        return link


def link_by_name(name: str) -> Link:
    from cnicore.netlink import Netlink

    with Netlink() as rtnl:
        return rtnl.link(name)
