"""static: IPAM that hands out the addresses, routes and DNS it is configured with.

Verbs, as the reference static plugin (errors are plain Go errors, code 999):

* ADD — the addresses of :mod:`.config` (config, CNI_ARGS ``IP``/``GATEWAY``,
  ``args.cni.ips``, ``runtimeConfig.ips``), each with its gateway, plus
  ``ipam.routes`` and ``ipam.dns``; no ``interface`` index (an IPAM result),
  printed in the config's version;
* CHECK — the config must load, ``prevResult`` must be there, and every
  configured address found in it must carry the configured gateway
  (``static: Failed to match addr ...``); an address missing from
  ``prevResult`` is not an error, as in the reference;
* DEL — nothing to release: succeeds without reading the config;
* GC, STATUS — not implemented by the reference, so skel answers them
  (success for a 1.1.0 config).

Deliberate differences: see :mod:`.config` (routes and the accidental
``Address``/``Version`` keys).
"""

from __future__ import annotations

from cnicore import __version__
from cnicore.plugin import ALL, PluginInfo, hookimpl

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnicore.request import Request
    from cnicore.types import Result

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).

#: Keeps no per-request state in the process: a warm server's worker may serve
#: the next request after this plugin's (cnicore.inprocess.warm_reusable).
WARM_REUSE = True


@hookimpl
def cni_plugin_info() -> PluginInfo:
    return PluginInfo(ALL, about=f"CNI static plugin (cnicore) v{__version__}")


@hookimpl
def cni_add(request: Request) -> Result:
    from cnicore.types import IPConfig, Result

    from .config import load_config

    conf = load_config(request.config, request.args)
    ips = [IPConfig(str(a.cidr), str(a.gateway) if a.gateway is not None else "") for a in conf.addresses]
    return Result("1.1.0", ips=ips, routes=[route.copy() for route in conf.routes], dns=conf.dns)


@hookimpl
def cni_check(request: Request) -> None:
    import ipaddress

    from cnicore.config import NETCONF_FIELDS, PREFIX, Struct, decode_struct, lookup

    from .config import fail, load_config

    conf = load_config(request.config, request.args)
    # Then the config as types.NetConf, with the usual prefix (the reference's loadNetConf).
    decode_struct(request.config, Struct("NetConf", NETCONF_FIELDS, "types.NetConf"), PREFIX)
    if lookup(request.config, "prevResult") is None:
        raise fail("Required prevResult missing")
    result = request.prev_result
    assert result is not None
    for address in conf.addresses:
        for ipc in result.ips:
            ip = ipaddress.ip_interface(ipc.address).ip
            if not _same_ip(address.cidr.ip, ip):
                continue
            if address.gateway is not None and not (ipc.gateway and _same_ip(address.gateway,
                                                                               ipaddress.ip_address(ipc.gateway))):
                raise fail(f"static: Failed to match addr {ip} on interface {request.ifname}")
            break


def _same_ip(a: object, b: object) -> bool:
    """Go's ``IP.Equal``: an IPv4 address equals its IPv4-mapped IPv6 form."""
    from cnicore.ip import canonical

    return canonical(a) == canonical(b)  # type: ignore[arg-type]


@hookimpl
def cni_del(request: Request) -> None:
    """Nothing was allocated: nothing to release (the reference does not even read the config)."""
