"""template-ipam: an IPAM CNI plugin that hands out addresses from its own store.

A main plugin (``bridge``, ``ptp``, ...) delegates to it through ``ipam.type``::

    {"cniVersion": "1.1.0", "name": "mynet", "type": "bridge", "bridge": "cni0", "isGateway": true,
     "ipam": {"type": "template-ipam", "dataDir": "/var/lib/cni/template-ipam",
              "subnets": ["10.30.0.0/24", "fd30::/64"], "routes": [{"dst": "0.0.0.0/0"}]}}

* ADD reserves one address in each subnet for the attachment (container ID
  and CNI_IFNAME): the lowest free one after the gateway (the subnet's first
  address). An attachment that already holds an address in a subnet gets it
  again. All-or-nothing: when one subnet is full, nothing is reserved.
* CHECK fails unless the attachment holds an address in every subnet.
* DEL releases the attachment's addresses (nothing reserved is fine).
* STATUS fails (code 50) when a subnet has no free address left.
* GC releases every reservation whose attachment is not in
  ``cni.dev/valid-attachments``.

The store (:mod:`cni_plugin_template_ipam.store`) is a directory of files
under ``dataDir`` (default ``/var/lib/cni/template-ipam``), one directory per
network, locked with flock. Spec versions 0.1.0 to 1.1.0 (GC and STATUS from
1.1.0). Written on cnicore's public API only.
"""

from __future__ import annotations

import ipaddress

from cnicore.config import decode, lookup
from cnicore.errors import ERR_INTERNAL, ERR_INVALID_NETWORK_CONFIG, ERR_PLUGIN_NOT_AVAILABLE, CNIError
from cnicore.ip import IPNetwork
from cnicore.plugin import ALL, PluginInfo, hookimpl
from cnicore.request import Request
from cnicore.rollback import Rollback
from cnicore.types import IPConfig, Result, Route

from .store import Owner, Store, gateway_of, inside, next_free

#: The CNI ``type`` this plugin is registered under (its entry-point name).
PLUGIN_TYPE = "template-ipam"
#: Where reservations live unless the config's ``ipam.dataDir`` says otherwise.
DEFAULT_DATA_DIR = "/var/lib/cni/" + PLUGIN_TYPE
#: A promise to the warm server: nothing of a request stays in the process (the store
#: is opened and closed within each request), so a worker may serve the next one.
WARM_REUSE = True


class RouteConf:
    dst: str = ""
    gw: str = ""


class IPAMConf:
    """The ``ipam`` section, decoded by ``cnicore.config.decode`` with Go's rules and error
    texts. A plain class: a ``@dataclass`` works too, but importing ``dataclasses`` costs
    every cold exec ~20 ms. List defaults are copied for each decoded config."""

    type: str = ""
    data_dir: str = ""  # JSON "dataDir"
    subnets: list[str] = []
    routes: list[RouteConf] = []


class Config:
    """A validated config: where the store is, the subnets, the routes to hand out."""

    def __init__(self, request: Request) -> None:
        ipam = decode(lookup(request.config, "ipam") or {}, IPAMConf, netconf=False,
                      prefix="failed to load IPAM config: ")
        self.data_dir = ipam.data_dir or DEFAULT_DATA_DIR
        self.network = str(request.config.get("name", ""))
        self.subnets = [_network(text, "subnet") for text in ipam.subnets]
        if not self.subnets:
            raise config_error('"ipam" needs at least one subnet in "subnets"')
        self.routes = [Route(str(_network(r.dst, "route dst")), r.gw) for r in ipam.routes]

    def store(self, *, shared: bool = False) -> Store:
        return Store(self.data_dir, self.network, shared=shared)


def _network(text: str, what: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise config_error(f"invalid {what} {text!r}: expected a CIDR such as \"10.30.0.0/24\"") from None


def config_error(msg: str) -> CNIError:
    return CNIError(ERR_INVALID_NETWORK_CONFIG, f"{PLUGIN_TYPE}: {msg}")


def owner_of(request: Request) -> Owner:
    return (request.container_id, request.ifname)


@hookimpl
def cni_plugin_info() -> PluginInfo:
    return PluginInfo(ALL, about=f"CNI {PLUGIN_TYPE} plugin: addresses from its own store")


@hookimpl
def cni_add(request: Request) -> Result:
    config, owner = Config(request), owner_of(request)
    result = Result("1.1.0", routes=config.routes)
    with config.store() as store, Rollback() as undo:
        taken = store.reservations()
        for subnet in config.subnets:
            address = next((a for a, o in taken.items() if o == owner and inside(a, subnet)), None)
            if address is None:
                address = next_free(subnet, taken)
                if address is None:
                    raise CNIError(ERR_INTERNAL, f"{PLUGIN_TYPE}: no IP addresses available in subnet {subnet}")
                store.reserve(address, owner)
                undo.push(f"reservation of {address}", store.release, address)
                taken[address] = owner
            result.ips.append(IPConfig(f"{address}/{subnet.prefixlen}", str(gateway_of(subnet))))
        undo.commit()
    return result


@hookimpl
def cni_check(request: Request) -> None:
    config, owner = Config(request), owner_of(request)
    with config.store(shared=True) as store:
        mine = [address for address, o in store.reservations().items() if o == owner]
    for subnet in config.subnets:
        if not any(inside(address, subnet) for address in mine):
            raise CNIError(ERR_INTERNAL, f"{PLUGIN_TYPE}: no address reserved for container {owner[0]} "
                                         f"interface {owner[1]} in subnet {subnet}")


@hookimpl
def cni_del(request: Request) -> None:
    config, owner = Config(request), owner_of(request)
    with config.store() as store:
        for address, o in store.reservations().items():
            if o == owner:
                store.release(address)


@hookimpl
def cni_status(request: Request) -> None:
    config = Config(request)
    with config.store(shared=True) as store:
        taken = store.reservations()
    for subnet in config.subnets:
        if next_free(subnet, taken) is None:
            raise CNIError(ERR_PLUGIN_NOT_AVAILABLE, f"{PLUGIN_TYPE}: no free address left in subnet {subnet}")


@hookimpl
def cni_gc(request: Request) -> None:
    config = Config(request)
    valid = {(str(lookup(a, "containerID", "")), str(lookup(a, "ifname", "")))
             for a in lookup(request.config, "cni.dev/valid-attachments") or [] if isinstance(a, dict)}
    with config.store() as store:
        for address, owner in store.reservations().items():
            if owner not in valid:
                store.release(address)
