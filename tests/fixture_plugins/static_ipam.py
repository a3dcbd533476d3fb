"""A tiny IPAM plugin for tests: ADD returns the addresses listed in ``ipam.addresses``."""

from __future__ import annotations

from cnicore.errors import ERR_INVALID_NETWORK_CONFIG, CNIError
from cnicore.plugin import hookimpl


@hookimpl
def cni_add(request):
    from cnicore.types import DNS, IPConfig, Result, Route

    ipam = request.config.get("ipam") or {}
    addresses = ipam.get("addresses")
    if not addresses:
        raise CNIError(ERR_INVALID_NETWORK_CONFIG, "static-ipam: no addresses configured",
                       "ipam.addresses must list at least one address")
    return Result("1.1.0",
                  ips=[IPConfig(a["address"], gateway=a.get("gateway", "")) for a in addresses],
                  routes=[Route(r["dst"], r.get("gw", "")) for r in ipam.get("routes", [])],
                  dns=DNS(nameservers=list(ipam.get("nameservers", []))))


@hookimpl
def cni_check(request):
    return None


@hookimpl
def cni_del(request):
    return None
