"""ipvlan: an ipvlan on the master link, moved into the container.

Behaves like the reference ipvlan plugin (config keys, result, CHECK, DEL and
error texts; Debian's v1.1.1 texts where later releases changed them):

* config — ``master`` (absent: with a ``prevResult`` holding exactly one named
  interface, that interface — ipvlan chained after another plugin; else the default
  route's interface, in the plugin's namespace or with ``linkInContainer`` the
  container's), ``mode`` (l2, the default; l3, l3s; the kernel's default flags: the
  reference sets none), ``mtu``, ``linkInContainer``;
* ADD — the ipvlan is made under a temporary ``veth`` + 8 hex name straight into the
  container and renamed to CNI_IFNAME; its addresses come from IPAM, or, without
  ``ipam``, from the prevResult's IPs (chained); ``arp_notify``/``ndisc_notify``
  best effort; the result's DNS is the config's;
* DEL — IPAM DEL when ``ipam`` is set, then CNI_IFNAME is deleted; succeeds when
  repeated, when the namespace is gone and when CNI_NETNS is empty;
* CHECK — IPAM CHECK; the interface is an ipvlan in the configured mode, the MAC,
  the master, the addresses and routes;
* STATUS — IPAM STATUS when ``ipam`` is set (release v1.2 on).

Deliberate differences from the reference:

* DEL does not look for the master (the reference resolves the default route on
  DEL too, so a DEL without ``master`` fails where there is no default route, or
  with ``linkInContainer`` once the namespace is gone);
* with ``linkInContainer`` a failed creation is reported as "failed to create
  ipvlan" (the reference drops that error and fails on the rename);
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

    from cni_plugins_builtin.sublink import Maker
    from cnicore.netlink import Netlink
    from cnicore.request import Request
    from cnicore.types import Result

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).

#: Keeps no per-request state in the process (cnicore.inprocess.warm_reusable).
WARM_REUSE = True

SCHEMA = Struct("NetConf", {**NETCONF_FIELDS, "master": STRING, "mode": STRING, "mtu": INT, "linkInContainer": BOOL})


class IpvlanConf:
    """A decoded ipvlan config."""

    __slots__ = ("master", "mode", "mtu", "link_in_container", "ipam_type", "dns")

    def __init__(self, raw: dict[str, Any]) -> None:
        conf = decode_struct(raw, SCHEMA, PREFIX)
        self.master: str = conf.get("master") or ""
        self.mode: str = conf.get("mode") or ""
        self.mtu: int = conf.get("mtu") or 0
        self.link_in_container = bool(conf.get("linkInContainer"))
        self.ipam_type: str = (conf.get("ipam") or {}).get("type") or ""
        self.dns: dict[str, Any] = conf.get("dns") or {}


def _load(request: Request) -> IpvlanConf:
    """The reference's loadConf for ADD: the prevResult parsed, the master resolved."""
    from cni_plugins_builtin import sublink
    from cnicore.config import lookup
    from cnicore.errors import CNIError

    conf = IpvlanConf(request.config)
    prev = None
    if lookup(request.config, "prevResult") is not None:
        try:
            prev = request.prev_result
        except CNIError as exc:
            raise sublink.fail(f"could not parse prevResult: {exc.msg}") from None
    if not conf.master:
        if prev is None:
            conf.master = sublink.default_master(request.netns, conf.link_in_container)
        elif len(prev.interfaces) == 1 and prev.interfaces[0].name:
            conf.master = prev.interfaces[0].name
        else:
            raise sublink.fail("chained master failure. PrevResult lacks a single named interface")
    return conf


@hookimpl
def cni_plugin_info() -> PluginInfo:
    return PluginInfo(ALL, about=f"CNI ipvlan plugin (cnicore) v{__version__}")


def _maker(conf: IpvlanConf) -> Maker:
    from cni_plugins_builtin.sublink import fail
    from cnicore.netlink import IPVLAN_MODES

    mode = conf.mode or "l2"
    if mode not in IPVLAN_MODES:
        raise fail(f'unknown ipvlan mode: "{conf.mode}"')

    def make(nl: Netlink, name: str, master: int, netns_fd: int | None) -> None:
        nl.add_ipvlan(name, master, mode=mode, mtu=conf.mtu, netns_fd=netns_fd)

    return make


@hookimpl
def cni_add(request: Request) -> Result:
    from cni_plugins_builtin import sublink
    from cnicore.rollback import Rollback

    conf = _load(request)
    netns = sublink.open_netns(request.netns)
    with netns, Rollback() as undo:
        iface = sublink.create("ipvlan", _maker(conf), conf.master, conf.link_in_container, netns, request.ifname)
        undo.push(f"ipvlan {request.ifname}", netns.do, sublink.delete_link, request.ifname)
        result = None
        if not conf.ipam_type and request.prev_result is not None and request.prev_result.ips:
            result = request.prev_result
        if result is None:
            from cnicore import ipam

            result = sublink.ipam_result(request)
            undo.push("IPAM reservation", ipam.exec_del, request)
            sublink.require_ips(result)
        for ipc in result.ips:
            ipc.interface = 0
        result.interfaces = [iface]
        sublink.configure(netns, request, result)
        result.dns = sublink.conf_dns(conf.dns)
        undo.commit()
    return result


@hookimpl
def cni_del(request: Request) -> None:
    from cni_plugins_builtin import sublink

    conf = IpvlanConf(request.config)
    if conf.ipam_type:
        from cnicore.ipam import exec_del

        exec_del(request)
    sublink.remove(request)


@hookimpl
def cni_check(request: Request) -> None:
    from cni_plugins_builtin import sublink
    from cnicore.ip import prev_result_interface

    conf = IpvlanConf(request.config)
    netns = sublink.open_netns(request.netns)
    with netns:
        if conf.ipam_type:
            from cnicore.ipam import exec_check

            exec_check(request)
        intf = prev_result_interface(request, "Required prevResult missing")
        sublink.check_master(conf.master, netns, conf.link_in_container)
        netns.do(_check_interface, intf.name if intf else "", intf.mac if intf else "",
                 intf.sandbox if intf else "", conf.mode)
        netns.do(sublink.check_addresses, request)


def _check_interface(name: str, mac: str, sandbox: str, mode: str) -> None:
    from cni_plugins_builtin.sublink import container_link, fail
    from cnicore.netlink import IPVLAN_MODES, Netlink

    with Netlink() as nl:
        link = container_link(nl, name, sandbox, "ipvlan")
        expected = mode or "l2"
        if expected not in IPVLAN_MODES:
            raise fail(f'unknown ipvlan mode: "{mode}"')
        current = nl.link_info_data(link).get("mode")
        if current != expected:
            if not isinstance(current, str):
                raise fail(f'unknown ipvlan mode: "{current}"')
            raise fail(f"Container IPVlan mode {current} does not match expected value: {expected}")
        if mac and mac != link.mac:
            raise fail(f"Interface {name} Mac {mac} doesn't match container Mac: {link.mac}")


@hookimpl
def cni_status(request: Request) -> None:
    _pass_to_ipam(request)


@hookimpl
def cni_gc(request: Request) -> None:
    _pass_to_ipam(request)


def _pass_to_ipam(request: Request) -> None:
    from cni_plugins_builtin import sublink

    sublink.pass_to_ipam(IpvlanConf(request.config).ipam_type, request)
