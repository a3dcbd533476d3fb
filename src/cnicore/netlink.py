"""The netlink handle (public toolkit): cnicore's own rtnetlink client, standard library only.

:class:`Netlink` is one ``NETLINK_ROUTE`` socket with synchronous requests for
links (bridges, veths and their settings), addresses, routes, bridge-port
options and bridge VLANs; semantics follow vishvananda/netlink as the Go
reference plugins use it. It is what :mod:`cnicore.ip` is built on, and what
a plugin uses for the few link operations the toolkit's functions do not
cover, without importing pyroute2 (~170-330 ms per cold exec). For anything
beyond it, ``NetNS.iproute()`` gives pyroute2 bound to a namespace.

A socket belongs to the namespace of the thread that created it: create the
handle inside ``NetNS.do`` (``with Netlink() as nl: ...``). Links can be
passed as a :class:`Link`, an ifindex or a name. Errors: the kernel's
refusal is an ``OSError`` with its errno; a missing link is a
:class:`LinkNotFoundError` (also a ``LookupError``), a name taken on create
or rename a :class:`LinkExistsError`.

The methods (see their docstrings): ``link``, ``link_by_index``, ``links``,
``set_link``, ``set_up``, ``add_veth``, ``add_bridge``, ``delete_link``,
``addresses``, ``address_flags``, ``add_address``, ``del_address``,
``routes``, ``route_get``, ``add_route``, ``del_route``, ``set_bridge_port``,
``bridge_port``, ``bridge_vlans``, ``bridge_vlan_add``, ``bridge_vlan_del``.
The implementation (:mod:`cnicore.rtnl`, message packing and the rest)
is private.
"""

from __future__ import annotations

from cnicore.rtnl import (
    AF_INET,
    AF_INET6,
    IFA_F_DADFAILED,
    IFA_F_TENTATIVE,
    RT_SCOPE_HOST,
    RT_SCOPE_LINK,
    RT_SCOPE_UNIVERSE,
    RT_TABLE_MAIN,
    Link,
    LinkExistsError,
    LinkNotFoundError,
    Route,
)
from cnicore.rtnl import RtnlSocket as Netlink

__all__ = [
    "AF_INET",
    "AF_INET6",
    "IFA_F_DADFAILED",
    "IFA_F_TENTATIVE",
    "RT_SCOPE_HOST",
    "RT_SCOPE_LINK",
    "RT_SCOPE_UNIVERSE",
    "RT_TABLE_MAIN",
    "Link",
    "LinkExistsError",
    "LinkNotFoundError",
    "Netlink",
    "Route",
]
