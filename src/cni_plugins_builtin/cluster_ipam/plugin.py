"""cluster-ipam: one address pool for many nodes, kept in etcd.

Verbs (result shapes and config errors are host-local's, code 999):

* ADD — one address per range set plus the attachment record, claimed in
  one etcd transaction (:mod:`.allocate`); a repeated ADD for the same
  container and interface returns the addresses it already holds (so a
  runtime retrying after a lost answer neither leaks nor gets two). The
  result carries the addresses with gateways, the configured routes and the
  DNS of ``resolvConf``.
* DEL — guarded release of the attachment and its addresses; succeeds when
  already gone.
* CHECK — fails unless the attachment exists on this node and still holds
  each of its addresses.
* GC (1.1.0) — releases this node's attachments not in
  ``cni.dev/valid-attachments``, except those younger than
  ``gcGraceSeconds``; other nodes' attachments are never touched (see
  ``cnitool ipam reap-node`` for a node that is gone).
* STATUS (1.1.0) — the config must load and ``resolvConf`` be readable;
  then code 50 when no etcd endpoint answers, 51 when members answer but the
  cluster cannot serve a linearizable read (no leader, no quorum).

When etcd cannot complete a verb within ``etcd.timeoutSeconds`` (all
endpoints tried, round after round), the verb fails with code 11 (try again
later) naming the endpoints' last errors; nothing half-done is left: every
write is one transaction. This module imports only what VERSION needs;
``WARM_IMPORTS`` names what the verbs load, which the warm server imports
once when its operator asks (``CNICORE_SERVER_PRELOAD=cluster-ipam``).
"""

from __future__ import annotations

import time

from cnicore import __version__
from cnicore.errors import (
    ERR_INTERNAL,
    ERR_LIMITED_CONNECTIVITY,
    ERR_PLUGIN_NOT_AVAILABLE,
    ERR_TRY_AGAIN_LATER,
    CNIError,
)
from cnicore.plugin import ALL, PluginInfo, hookimpl

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, TypeVar

    from cni_plugins_builtin.cluster_ipam.config import ClusterSettings
    from cni_plugins_builtin.cluster_ipam.etcd import Etcd
    from cni_plugins_builtin.cluster_ipam.model import Keys
    from cnicore.request import Request
    from cnicore.types import Result

    _T = TypeVar("_T")

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).

#: Keeps no per-request state in the process, only etcd connections, per network
#: namespace: a warm server's worker may serve the next request after this plugin's
#: (cnicore.inprocess.warm_reusable) and reuse them.
WARM_REUSE = True


#: Imported once by the warm server (``cnitool daemon`` with ``CNICORE_SERVER_PRELOAD=cluster-ipam``),
#: so its workers pay nothing for them.
WARM_IMPORTS = ("cni_plugins_builtin.cluster_ipam.transport", "cni_plugins_builtin.cluster_ipam.config",
                "cni_plugins_builtin.cluster_ipam.model", "cni_plugins_builtin.cluster_ipam.etcd",
                "cni_plugins_builtin.cluster_ipam.allocate", "cni_plugins_builtin.cluster_ipam.release",
                "cni_plugins_builtin.cluster_ipam.health", "cni_plugins_builtin.host_local.config",
                "cni_plugins_builtin.host_local.dns", "cni_plugins_builtin.host_local.plugin")


@hookimpl
def cni_plugin_info() -> PluginInfo:
    return PluginInfo(ALL, about=f"CNI cluster-ipam plugin (cnicore) v{__version__}")


def connect(cluster: ClusterSettings) -> tuple[Etcd, Keys]:
    """A client whose calls all end within the verb's budget, and the network's keys.

    The transport is imported first: the budget is for talking to etcd, not for
    an interpreter starved of CPU loading modules."""
    import cni_plugins_builtin.cluster_ipam.transport  # noqa: F401
    from cni_plugins_builtin.cluster_ipam.etcd import Etcd
    from cni_plugins_builtin.cluster_ipam.model import Keys

    return (Etcd(cluster.etcd, deadline=time.monotonic() + cluster.etcd.timeout),
            Keys(cluster.prefix, cluster.network))


def guarded(fn: Callable[..., _T], *args: Any) -> _T:
    """Run ``fn``; etcd trouble becomes code 11 (transient) or 999 (a refused request)."""
    from cni_plugins_builtin.cluster_ipam.etcd import EtcdRequestError, EtcdTLSError, EtcdUnavailable

    try:
        return fn(*args)
    except EtcdUnavailable as exc:
        raise CNIError(ERR_TRY_AGAIN_LATER, "cluster-ipam: etcd cluster unavailable", str(exc)) from None
    except EtcdTLSError as exc:
        raise CNIError(ERR_INTERNAL, "cluster-ipam: TLS with etcd failed on every endpoint "
                       "(check etcd.cacert, etcd.cert and etcd.key)", str(exc)) from None
    except EtcdRequestError as exc:
        raise CNIError(ERR_INTERNAL, "cluster-ipam: etcd refused the request", str(exc)) from None


@hookimpl
def cni_add(request: Request) -> Result:
    from cni_plugins_builtin.cluster_ipam.allocate import allocate
    from cni_plugins_builtin.cluster_ipam.config import load_config
    from cnicore.types import IPConfig, Result

    conf, cluster = load_config(request.config, request.args)
    result = Result("1.1.0")
    if conf.resolv_conf:
        from cni_plugins_builtin.host_local.dns import parse_resolv_conf

        result.dns = parse_resolv_conf(conf.resolv_conf)
    etcd, _ = connect(cluster)
    record = guarded(allocate, etcd, conf, cluster, request.container_id, request.ifname)
    result.ips = [IPConfig(address, gateway) for address, gateway in record.ips]
    result.routes = [route.copy() for route in conf.routes]
    return result


@hookimpl
def cni_del(request: Request) -> None:
    from cni_plugins_builtin.cluster_ipam.config import load_cluster
    from cni_plugins_builtin.cluster_ipam.release import release

    cluster = load_cluster(request.config)
    etcd, keys = connect(cluster)
    guarded(release, etcd, keys, cluster.node, request.container_id, request.ifname)


@hookimpl
def cni_check(request: Request) -> None:
    from cni_plugins_builtin.cluster_ipam.config import fail, load_config
    from cni_plugins_builtin.cluster_ipam.release import still_held

    _, cluster = load_config(request.config, request.args)
    etcd, keys = connect(cluster)
    item = guarded(etcd.get, keys.attachment(cluster.node, request.container_id, request.ifname))
    if item is None:
        raise fail(f"Failed to find address added by container {request.container_id}")
    lost = guarded(still_held, etcd, keys, item)
    if lost:
        raise fail(f"container {request.container_id} no longer holds {', '.join(lost)}")


@hookimpl
def cni_gc(request: Request) -> None:
    from cni_plugins_builtin.cluster_ipam.config import load_cluster
    from cni_plugins_builtin.cluster_ipam.release import gc
    from cni_plugins_builtin.host_local.plugin import valid_attachments

    cluster = load_cluster(request.config)
    valid = valid_attachments(request.config)
    etcd, keys = connect(cluster)
    guarded(gc, etcd, keys, cluster.node, valid, cluster.gc_grace)


@hookimpl
def cni_status(request: Request) -> None:
    from cni_plugins_builtin.cluster_ipam.config import load_config
    from cni_plugins_builtin.cluster_ipam.health import probe
    from cni_plugins_builtin.host_local.dns import parse_resolv_conf

    conf, cluster = load_config(request.config, request.args)
    if conf.resolv_conf:
        parse_resolv_conf(conf.resolv_conf)
    problem = probe(cluster)
    if problem is not None:
        answered, why = problem
        if not answered:
            raise CNIError(ERR_PLUGIN_NOT_AVAILABLE, "cluster-ipam: no etcd endpoint answers", why)
        raise CNIError(ERR_LIMITED_CONNECTIVITY, "cluster-ipam: etcd cluster has no quorum", why)
