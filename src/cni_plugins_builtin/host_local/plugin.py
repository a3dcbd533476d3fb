"""host-local: hands out addresses from configured ranges, remembered in files.

Verbs (errors are the reference's, code 999, unless noted):

* ADD — one address per range set, round-robin (:mod:`.allocator`), or the
  requested ones (CNI_ARGS ``IP``, ``args.cni.ips``, ``runtimeConfig.ips``);
  the result carries the addresses with their gateways (no ``interface``
  index, as for any IPAM result), the configured routes and the DNS read
  from ``resolvConf``, printed in the config's version.
* DEL — releases the attachment's addresses (container ID + ifname, or
  legacy records with the bare ID); succeeds for unknown attachments.
* CHECK — fails unless the attachment holds an address.
* GC (1.1.0; the reference has none) — releases every address whose holder
  is not in ``cni.dev/valid-attachments`` (missing or ``null`` means no
  attachment is valid, as libcni sends it). Legacy bare-ID records survive
  if any valid attachment has that container ID. Creates nothing.
* STATUS (1.1.0) — the config must load (ADD's errors) and ``resolvConf`` be
  readable; then the data directory must be writable, or could be created
  writable: otherwise code 50 (plugin not available). Creates nothing.

The store is shared with the Go plugin, see :mod:`.store`; the deliberate
differences are listed in :mod:`.config`, :mod:`.allocator` and :mod:`.store`.
This module imports only what VERSION needs; the rest loads per verb.
"""

from __future__ import annotations

import os

from cnicore import __version__
from cnicore.errors import ERR_INVALID_NETWORK_CONFIG, ERR_PLUGIN_NOT_AVAILABLE, CNIError
from cnicore.plugin import ALL, PluginInfo, hookimpl

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from cni_plugins_builtin.host_local.store import Record
    from cnicore.request import Request
    from cnicore.types import Result

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).

#: Keeps no per-request state in the process: a warm server's worker may serve
#: the next request after this plugin's (cnicore.inprocess.warm_reusable).
WARM_REUSE = True

VALID_ATTACHMENTS = "cni.dev/valid-attachments"


@hookimpl
def cni_plugin_info() -> PluginInfo:
    return PluginInfo(ALL, about=f"CNI host-local plugin (cnicore) v{__version__}")


@hookimpl
def cni_add(request: Request) -> Result:
    from cni_plugins_builtin.host_local.allocator import allocate
    from cni_plugins_builtin.host_local.config import load_config
    from cni_plugins_builtin.host_local.dns import parse_resolv_conf
    from cni_plugins_builtin.host_local.store import DiskStore
    from cnicore.types import IPConfig, Result

    conf = load_config(request.config, request.args)
    result = Result("1.1.0")
    if conf.resolv_conf:
        result.dns = parse_resolv_conf(conf.resolv_conf)
    with DiskStore(conf.data_dir, conf.name) as store:
        allocated = allocate(store, conf, request.container_id, request.ifname)
    result.ips = [IPConfig(f"{ip}/{rng.network.prefixlen}", str(rng.gateway)) for ip, rng in allocated]
    result.routes = [route.copy() for route in conf.routes]
    return result


@hookimpl
def cni_del(request: Request) -> None:
    from cni_plugins_builtin.host_local.config import load_config
    from cni_plugins_builtin.host_local.store import DiskStore

    conf = load_config(request.config, request.args)
    with DiskStore(conf.data_dir, conf.name) as store:
        store.release_by_id(request.container_id, request.ifname)


@hookimpl
def cni_check(request: Request) -> None:
    from cni_plugins_builtin.host_local.config import fail, load_config
    from cni_plugins_builtin.host_local.store import DiskStore

    conf = load_config(request.config, request.args)
    with DiskStore(conf.data_dir, conf.name) as store:
        found = store.find_by_id(request.container_id, request.ifname)
    if not found:
        raise fail(f"host-local: Failed to find address added by container {request.container_id}")


def valid_attachments(config: dict[str, Any]) -> set[tuple[str, str]]:
    """``cni.dev/valid-attachments`` as ``{(containerID, ifname)}``; code 7 if malformed."""
    from cnicore.config import lookup

    raw = lookup(config, VALID_ATTACHMENTS)
    if raw is None:
        return set()
    if not isinstance(raw, list):
        raise CNIError(ERR_INVALID_NETWORK_CONFIG, f"invalid {VALID_ATTACHMENTS}", "expected a list")
    out = set()
    for item in raw:
        cid = lookup(item, "containerID")
        ifname = lookup(item, "ifname")
        if not isinstance(cid, str) or not isinstance(ifname, str):
            raise CNIError(ERR_INVALID_NETWORK_CONFIG, f"invalid {VALID_ATTACHMENTS}",
                           f"each entry needs string containerID and ifname, got {item!r}")
        out.add((cid, ifname))
    return out


def stale(records: list[Record], valid: set[tuple[str, str]]) -> list[Record]:
    """The records no valid attachment holds."""
    ids = {cid for cid, _ in valid}
    return [r for r in records
            if not (r.container_id in ids if r.ifname is None else (r.container_id, r.ifname) in valid)]


@hookimpl
def cni_gc(request: Request) -> None:
    from cni_plugins_builtin.host_local.config import store_location
    from cni_plugins_builtin.host_local.store import DiskStore

    data_dir, name = store_location(request.config)
    valid = valid_attachments(request.config)
    try:
        store = DiskStore(data_dir, name, create=False)
    except FileNotFoundError:
        return  # nothing was ever allocated here
    with store:
        store.release_where(lambda s: stale(s.records(), valid))


def check_writable(path: str) -> None:
    """``path`` is a writable directory, or its nearest existing ancestor is one
    (so ADD could create it); else code 50."""
    probe = os.path.abspath(path)
    while not os.path.lexists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise CNIError(ERR_PLUGIN_NOT_AVAILABLE, f"host-local data directory {path} is not usable",
                       f"{probe} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise CNIError(ERR_PLUGIN_NOT_AVAILABLE, f"host-local data directory {path} is not usable",
                       f"{probe} is not writable")


@hookimpl
def cni_status(request: Request) -> None:
    from cni_plugins_builtin.host_local.config import load_config
    from cni_plugins_builtin.host_local.dns import parse_resolv_conf
    from cni_plugins_builtin.host_local.store import clean_join

    conf = load_config(request.config, request.args)
    if conf.resolv_conf:
        parse_resolv_conf(conf.resolv_conf)
    check_writable(clean_join(conf.data_dir, conf.name))
