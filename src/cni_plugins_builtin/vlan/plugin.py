"""vlan: an 802.1Q VLAN link on the master, moved into the container.

Behaves like the reference vlan plugin (config keys, result, CHECK, DEL and error
texts; Debian's v1.1.1 texts where later releases changed them):

* config — ``master`` (required), ``vlanId`` (0-4094), ``mtu`` (0 to the master's),
  ``linkInContainer`` (the master is in the container's namespace: release v1.5 on);
* ADD — the VLAN link is made under a temporary ``veth`` + 8 hex name straight into
  the container and renamed to CNI_IFNAME; IPAM (required) gives its addresses and
  routes; the result's DNS is the config's;
* DEL — IPAM DEL, then CNI_IFNAME is deleted; succeeds when repeated, when the
  namespace is gone and when CNI_NETNS is empty;
* CHECK — IPAM CHECK; the interface is a VLAN with the configured id (and MTU, if
  set), the MAC, the master, the addresses and routes — with the reference's texts,
  odd ones included ("Tuning link ... configured promisc is" for a wrong VLAN id);
* STATUS — IPAM STATUS when ``ipam`` is set (release v1.2 on).

Deliberate differences from the reference:

* DEL only decodes the config: a master that is gone (or, with ``linkInContainer``,
  a namespace that is gone) does not fail it (the reference checks the master and
  its MTU on DEL too, so such a DEL never succeeds);
* GC (spec 1.1; the reference has none) passes GC on to the IPAM plugin;
* ADD undoes all it did on a failure (link and IPAM reservation).
"""

from __future__ import annotations

from cnicore import __version__
from cnicore.config import BOOL, INT, NETCONF_FIELDS, PREFIX, STRING, Struct, decode_struct
from cnicore.plugin import ALL, PluginInfo, hookimpl

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from cnicore.netlink import Netlink
    from cnicore.request import Request
    from cnicore.types import Result

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).

#: Keeps no per-request state in the process (cnicore.inprocess.warm_reusable).
WARM_REUSE = True

SCHEMA = Struct("NetConf", {**NETCONF_FIELDS, "master": STRING, "vlanId": INT, "mtu": INT, "linkInContainer": BOOL})


class VlanConf:
    """A decoded vlan config."""

    __slots__ = ("master", "vlan_id", "mtu", "link_in_container", "ipam_type", "dns")

    def __init__(self, raw: dict[str, Any]) -> None:
        conf = decode_struct(raw, SCHEMA, PREFIX)
        self.master: str = conf.get("master") or ""
        self.vlan_id: int = conf.get("vlanId") or 0
        self.mtu: int = conf.get("mtu") or 0
        self.link_in_container = bool(conf.get("linkInContainer"))
        self.ipam_type: str = (conf.get("ipam") or {}).get("type") or ""
        self.dns: dict[str, Any] = conf.get("dns") or {}


def _load(request: Request) -> VlanConf:
    """The reference's loadConf: master required, the VLAN id in range, the MTU bound."""
    from cni_plugins_builtin import sublink

    conf = VlanConf(request.config)
    if not conf.master:
        raise sublink.fail('"master" field is required. It specifies the host interface name to create the VLAN '
                           'for.')
    if not 0 <= conf.vlan_id <= 4094:
        raise sublink.fail(f"invalid VLAN ID {conf.vlan_id} (must be between 0 and 4095 inclusive)")
    sublink.check_mtu(conf.mtu, conf.master, request.netns, conf.link_in_container)
    return conf


def _require_ipam(conf: VlanConf) -> None:
    """The reference always runs IPAM: without a type, Go's invoke fails to find a plugin."""
    if not conf.ipam_type:
        from cni_plugins_builtin.sublink import fail

        raise fail("no plugin name provided")


@hookimpl
def cni_plugin_info() -> PluginInfo:
    return PluginInfo(ALL, about=f"CNI vlan plugin (cnicore) v{__version__}")


@hookimpl
def cni_add(request: Request) -> Result:
    from cni_plugins_builtin import sublink
    from cnicore import ipam
    from cnicore.errors import CNIError
    from cnicore.rollback import Rollback

    conf = _load(request)

    def make(nl: Netlink, name: str, master: int, netns_fd: int | None) -> None:
        nl.add_vlan(name, master, conf.vlan_id, mtu=conf.mtu, netns_fd=netns_fd)

    netns = sublink.open_netns(request.netns)
    with netns, Rollback() as undo:
        iface = sublink.create("vlan", make, conf.master, conf.link_in_container, netns, request.ifname)
        undo.push(f"vlan {request.ifname}", netns.do, sublink.delete_link, request.ifname)
        try:
            _require_ipam(conf)
            result = sublink.ipam_result(request)
        except CNIError as exc:
            raise CNIError(exc.code, f"failed to execute IPAM delegate: {exc.msg}", exc.details) from None
        undo.push("IPAM reservation", ipam.exec_del, request)
        sublink.require_ips(result)
        for ipc in result.ips:
            ipc.interface = 0
        result.interfaces = [iface]
        sublink.configure(netns, request, result, notify=False)
        result.dns = sublink.conf_dns(conf.dns)
        undo.commit()
    return result


@hookimpl
def cni_del(request: Request) -> None:
    from cni_plugins_builtin import sublink
    from cnicore.ipam import exec_del

    _require_ipam(VlanConf(request.config))
    exec_del(request)
    sublink.remove(request)


@hookimpl
def cni_check(request: Request) -> None:
    from cni_plugins_builtin import sublink
    from cnicore.ip import prev_result_interface
    from cnicore.ipam import exec_check

    conf = VlanConf(request.config)
    netns = sublink.open_netns(request.netns)
    with netns:
        _require_ipam(conf)
        exec_check(request)
        intf = prev_result_interface(request, "vlan: Required prevResult missing")
        sublink.check_master(conf.master, netns, conf.link_in_container)
        netns.do(_check_interface, intf.name if intf else "", intf.mac if intf else "",
                 intf.sandbox if intf else "", conf.vlan_id, conf.mtu)
        netns.do(sublink.check_addresses, request)


def _check_interface(name: str, mac: str, sandbox: str, vlan_id: int, mtu: int) -> None:
    from cni_plugins_builtin.sublink import container_link, fail
    from cnicore.netlink import Netlink

    with Netlink() as nl:
        link = container_link(nl, name, sandbox, "vlan", "vlan: ")
        if mac and mac != link.mac:
            raise fail(f"vlan: Interface {name} Mac {mac} doesn't match container Mac: {link.mac}")
        current = nl.link_info_data(link).get("vlan_id")
        if current != vlan_id:
            raise fail(f"Error: Tuning link {name} configured promisc is {vlan_id}, current value is {current}")
        if mtu and mtu != link.mtu:
            raise fail(f"Error: Tuning configured MTU of {name} is {mtu}, current value is {link.mtu}")


@hookimpl
def cni_status(request: Request) -> None:
    _pass_to_ipam(request)


@hookimpl
def cni_gc(request: Request) -> None:
    _pass_to_ipam(request)


def _pass_to_ipam(request: Request) -> None:
    from cni_plugins_builtin import sublink

    sublink.pass_to_ipam(VlanConf(request.config).ipam_type, request)
