"""Finding the host link, and moving it into the container and back.

The host never sees the container's name, so udev and NetworkManager cannot race
the renames: on ADD one netlink request moves the link and renames it (the kernel
renames it in the target namespace); on DEL it is renamed in the container, then
moved. The current reference gets the same by a hop through a temporary
namespace, which costs a second namespace move (15-30 ms of kernel time each).
The original name travels with the link as its alias (IFLA_IFALIAS), which is
how DEL (ours or Go's, any release) knows what to call it again. Each step is
undone if a later one fails, so a failed ADD or DEL leaves the link where it was.
"""

from __future__ import annotations

import os

from cnicore.errors import ERR_INTERNAL, CNIError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

    from cnicore.netlink import Link, Netlink
    from cnicore.ns import NetNS

    from .config import HostDeviceConf


def _why(exc: OSError) -> str:
    """An OS error as Go prints a syscall error ("file exists")."""
    from cnicore.utils import errno_text

    return errno_text(exc)


def fail(msg: str) -> CNIError:
    """The reference reports its failures as plain errors: code 999."""
    return CNIError(ERR_INTERNAL, msg)


# -- finding the host link ---------------------------------------------------------

def find_host_link(conf: HostDeviceConf) -> Link:
    """The link the config names, in the calling thread's namespace (the reference's
    getLink, same precedence); CNIError with the reference's text if there is none."""
    try:
        return _find(conf)
    except LookupError as exc:
        raise fail(f"failed to find host device: {_text(exc)}") from None
    except ValueError as exc:
        raise fail(f"failed to find host device: {exc}") from None


def _text(exc: Exception) -> str:
    return "Link not found" if isinstance(exc, OSError) else str(exc)


def _find(conf: HostDeviceConf) -> Link:
    from cnicore.netlink import Netlink

    from .config import SYS_BUS_AUXILIARY, SYS_BUS_PCI

    with Netlink() as nl:
        if conf.device:
            return nl.link(conf.device)
        if conf.hwaddr:
            from cnicore.ip import mac_string, parse_mac

            try:
                wanted = mac_string(parse_mac(conf.hwaddr))
            except ValueError as exc:
                raise ValueError(f'failed to parse MAC address "{conf.hwaddr}": {exc}') from None
            for link in nl.links():
                if link.mac == wanted:
                    return link
        elif conf.kernelpath:
            path = conf.kernelpath
            if not os.path.isabs(path) or not path.startswith("/sys/devices/"):
                raise ValueError(f'kernel device path "{path}" must be absolute and begin with /sys/devices/')
            return _link_from_path(nl, os.path.join(os.path.normpath(path), "net"))
        elif conf.pci_addr:
            net_dir = os.path.join(SYS_BUS_PCI, conf.pci_addr, "net")
            if not os.path.lexists(net_dir):
                import glob

                matches = sorted(glob.glob(os.path.join(SYS_BUS_PCI, conf.pci_addr, "virtio*", "net")))
                if not matches:
                    raise ValueError(f"no net directory under pci device {conf.pci_addr}")
                net_dir = matches[0]
            return _link_from_path(nl, net_dir)
        elif conf.aux_device:
            return _link_from_path(nl, os.path.join(SYS_BUS_AUXILIARY, conf.aux_device, "net"))
    raise ValueError("failed to find physical interface")


def _link_from_path(nl: Netlink, path: str) -> Link:
    """The first (by name) network device listed in a sysfs ``net`` directory."""
    from cnicore.utils import go_os_error, go_quote

    try:
        entries = sorted(os.listdir(path))
    except OSError as exc:
        raise ValueError(f"failed to read directory {path}: {go_quote(go_os_error('open', path, exc))}") from None
    if not entries:
        raise ValueError(f"failed to find network device in path {path}")
    return nl.link(entries[0])


# -- the moves ---------------------------------------------------------------------

def _in(netns: NetNS, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(nl, *args)`` with a netlink socket of ``netns``."""
    from cnicore.netlink import Netlink

    def run() -> Any:
        with Netlink() as nl:
            return fn(nl, *args)

    return netns.do(run)


def _best_effort(netns: NetNS, fn: Callable[..., Any], *args: Any) -> None:
    try:
        _in(netns, fn, *args)
    except Exception:  # noqa: BLE001 - an undo: the original error is the one to report
        pass


def move_link_in(host_dev: Link, host_ns: NetNS, container_ns: NetNS, ifname: str) -> Link:
    """Move ``host_dev`` into the container as ``ifname``, its host name kept as its
    alias, and set it up there; return it as the container sees it."""
    name = host_dev.name
    try:
        _in(host_ns, lambda nl: nl.set_alias(host_dev.index, name))
    except OSError as exc:
        raise fail(f'failed to move link failed to set alias to "{name}": {_why(exc)}') from None
    try:
        try:  # one request: moved, then renamed in the container (the host never sees ifname)
            _in(host_ns, lambda nl: nl.set_link(host_dev.index, netns_fd=container_ns.fd(), name=ifname))
        except OSError as exc:
            # the kernel moves before it renames: a failed rename leaves it in the container
            _best_effort(container_ns, lambda nl: nl.set_link(name, netns_fd=host_ns.fd()))
            raise fail(f'failed to move link failed to move "{ifname}" (host: "{name}") to container NS: '
                       f"{_why(exc)}") from None

        def up(nl: Netlink) -> Link:
            nl.set_up(ifname)
            return nl.link(ifname)

        try:
            return _in(container_ns, up)
        except OSError as exc:
            _best_effort(container_ns, lambda nl: nl.set_link(ifname, name=name))
            _best_effort(container_ns, lambda nl: nl.set_link(name, netns_fd=host_ns.fd()))
            raise fail(f'failed to move link failed to set "{ifname}" up: {_why(exc)}') from None
    except BaseException:
        _best_effort(host_ns, lambda nl: nl.set_alias(name, ""))
        if host_dev.is_up:  # moving between namespaces set it down
            _best_effort(host_ns, lambda nl: nl.set_up(name))
        raise


def move_link_out(container_ns: NetNS, host_ns: NetNS, ifname: str) -> None:
    """Move the container's ``ifname`` back to the host under its alias (left down, as
    its earlier state is unknown) and clear the alias. A link already gone is fine."""
    from cnicore.netlink import LinkNotFoundError

    def find(nl: Netlink) -> tuple[Link, str]:
        return nl.link(ifname), nl.link_alias(ifname)

    try:
        link, alias = _in(container_ns, find)
    except LinkNotFoundError:
        return  # DEL again, or the link went away with its namespace's owner: nothing to restore
    if not alias:
        raise fail(f'failed to find original ifname for "{ifname}" (alias is not set)')
    try:  # renamed in the container, then moved: the host never sees ifname
        _in(container_ns, lambda nl: nl.set_link(link.index, name=alias))
    except OSError as exc:
        raise fail(f'failed to rename device "{ifname}" to "{alias}": {_why(exc)}') from None
    try:
        _in(container_ns, lambda nl: nl.set_link(link.index, netns_fd=host_ns.fd()))
    except OSError as exc:
        _best_effort(container_ns, lambda nl: nl.set_link(alias, name=ifname))
        if link.is_up:
            _best_effort(container_ns, lambda nl: nl.set_up(ifname))
        raise fail(f'failed to move "{alias}" to hostNS: {_why(exc)}') from None
    try:
        _in(host_ns, lambda nl: nl.set_alias(alias, ""))
    except OSError as exc:
        raise fail(f'failed to unset alias of "{alias}": {_why(exc)}') from None
