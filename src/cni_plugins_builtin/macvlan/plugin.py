"""macvlan: a macvlan on the master link, moved into the container.

Behaves like the reference macvlan plugin (config keys, result, CHECK, DEL and
error texts; Debian's v1.1.1 texts where later releases changed their case):

* ADD — the master (config, else the default route's interface) must exist and
  bound ``mtu``; the macvlan is made on it in ``mode`` with ``mac`` (config,
  CNI_ARGS ``MAC``, ``runtimeConfig.mac``) and ``bcqueuelen`` under a temporary
  ``veth`` + 8 hex name straight into the container, then renamed to CNI_IFNAME.
  With ``ipam``: the IPAM addresses and routes on it (after ``arp_notify`` and
  ``ndisc_notify``, best effort); without: only set up (an L2 interface, no IPs).
  The result's DNS is the config's. ``linkInContainer``: the master is looked up,
  and the macvlan made, in the container's namespace (release v1.5 on).
* DEL — IPAM DEL, then CNI_IFNAME in the container is deleted; succeeds when
  repeated, when the namespace is gone and when CNI_NETNS is empty.
* CHECK — IPAM CHECK; the prevResult's interface is a macvlan in the configured
  mode with its MAC, the master exists, the addresses and routes are there.
* STATUS — IPAM STATUS (release v1.2 on).

Deliberate differences from the reference:

* DEL only decodes the config (as releases after v1.1.1 do): a master or default
  route that is gone does not fail it (v1.1.1 looked them up);
* GC (spec 1.1; the reference has none) passes GC on to the IPAM plugin;
* ADD undoes all it did on a failure (link and IPAM reservation), as the
  reference means to;
* "failed to open netns" names the path (the reference prints ``%!q(<nil>)``).
"""

from __future__ import annotations

from cnicore import __version__
from cnicore.plugin import ALL, PluginInfo, hookimpl

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cni_plugins_builtin.sublink import Maker
    from cnicore.netlink import Netlink
    from cnicore.request import Request
    from cnicore.types import Result

    from .config import MacvlanConf

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).

#: Keeps no per-request state in the process (cnicore.inprocess.warm_reusable).
WARM_REUSE = True


@hookimpl
def cni_plugin_info() -> PluginInfo:
    return PluginInfo(ALL, about=f"CNI macvlan plugin (cnicore) v{__version__}")


def _maker(conf: MacvlanConf) -> Maker:
    """The macvlan's creation, after the reference's mode and MAC checks."""
    from cni_plugins_builtin.sublink import fail
    from cnicore.netlink import MACVLAN_MODES

    mode = conf.mode or "bridge"
    if mode not in MACVLAN_MODES or mode == "source":
        raise fail(f'unknown macvlan mode: "{conf.mode}"')
    mac = ""
    if conf.mac:
        from cnicore.ip import mac_string, parse_mac

        try:
            raw = parse_mac(conf.mac)
        except ValueError as exc:
            raise fail(f"invalid args {conf.mac} for MAC addr: {exc}") from None
        if len(raw) != 6:
            raise fail("failed to create macvlan: invalid argument")
        mac = mac_string(raw)

    def make(nl: Netlink, name: str, master: int, netns_fd: int | None) -> None:
        nl.add_macvlan(name, master, mode=mode, mtu=conf.mtu, mac=mac, bcqueuelen=conf.bcqueuelen,
                       netns_fd=netns_fd)

    return make


@hookimpl
def cni_add(request: Request) -> Result:
    from cni_plugins_builtin import sublink
    from cnicore.rollback import Rollback
    from cnicore.types import Result as Current

    from .config import load

    conf = load(request)
    netns = sublink.open_netns(request.netns)
    with netns, Rollback() as undo:
        make = _maker(conf)
        iface = sublink.create("macvlan", make, conf.master, conf.link_in_container, netns, request.ifname)
        undo.push(f"macvlan {request.ifname}", netns.do, sublink.delete_link, request.ifname)
        if conf.ipam_type:
            from cnicore import ipam

            result = sublink.ipam_result(request)
            undo.push("IPAM reservation", ipam.exec_del, request)
            sublink.require_ips(result)
            for ipc in result.ips:
                ipc.interface = 0
            result.interfaces = [iface]
            sublink.configure(netns, request, result)
        else:
            result = Current("1.1.0", interfaces=[iface])
            netns.do(_set_up, request.ifname)
        result.dns = sublink.conf_dns(conf.dns)
        undo.commit()
    return result


def _set_up(ifname: str) -> None:
    from cni_plugins_builtin.sublink import fail
    from cnicore.netlink import Netlink
    from cnicore.utils import errno_text

    with Netlink() as nl:
        try:
            nl.set_up(ifname)
        except OSError as exc:
            raise fail(f'failed to set "{ifname}" UP: {errno_text(exc)}') from None


@hookimpl
def cni_del(request: Request) -> None:
    from cni_plugins_builtin import sublink

    from .config import MacvlanConf

    try:
        conf = MacvlanConf(request.config)
    except Exception as exc:  # noqa: BLE001 - the reference's DEL words its decode error so
        from cnicore.errors import CNIError

        if isinstance(exc, CNIError) and exc.msg.startswith("failed to load netconf: "):
            raise sublink.fail("failed to load netConf: " + exc.msg[len("failed to load netconf: "):]) from None
        raise
    if conf.ipam_type:
        from cnicore.ipam import exec_del

        exec_del(request)
    sublink.remove(request)


@hookimpl
def cni_check(request: Request) -> None:
    from cni_plugins_builtin import sublink
    from cnicore.ip import prev_result_interface

    from .config import load

    conf = load(request)
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
    from cnicore.netlink import MACVLAN_MODES, Netlink

    with Netlink() as nl:
        link = container_link(nl, name, sandbox, "macvlan")
        expected = mode or "bridge"
        if expected not in MACVLAN_MODES or expected == "source":
            raise fail(f'unknown macvlan mode: "{mode}"')
        current = nl.link_info_data(link).get("mode")
        if current != expected:
            if not isinstance(current, str) or current == "source":
                raise fail(f'unknown macvlan mode: "{current}"')
            raise fail(f"Container macvlan mode {current} does not match expected value: {expected}")
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

    from .config import MacvlanConf

    sublink.pass_to_ipam(MacvlanConf(request.config).ipam_type, request)
