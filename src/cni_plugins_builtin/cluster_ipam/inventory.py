"""What operators ask of a pool: usage per range and per node, and reaping a dead node.

Used by ``cnitool ipam show`` and ``cnitool ipam reap-node``. A network's
cluster-ipam config is found in its network list: the ``ipam`` object of the
first plugin that delegates to ``cluster-ipam``. Reads here are
linearizable and paged, so they are exact at one moment and never load more
than a page at once.
"""

from __future__ import annotations

import json

from cni_plugins_builtin.cluster_ipam.etcd import Etcd
from cni_plugins_builtin.cluster_ipam.model import Attachment, Keys
from cni_plugins_builtin.cluster_ipam.release import attachments, collect, last_seen, orphans, sweep
from cnicore.libcni import conf_files, conf_from_file, conf_list_from_conf, conf_list_from_file

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from cni_plugins_builtin.cluster_ipam.config import ClusterSettings
    from cni_plugins_builtin.host_local.config import IPAMConfig
    from cnicore.libcni import NetworkConfigList

TYPE = "cluster-ipam"


class NotClusterIPAM(Exception):
    """The network does not use cluster-ipam."""


def ipam_config(conf_list: NetworkConfigList) -> dict[str, Any]:
    """The config cluster-ipam would see: the network's name and version and the
    ``ipam`` object of the plugin that uses it."""
    for plugin in conf_list.plugins:
        ipam = plugin.network.get("ipam")
        if isinstance(ipam, dict) and ipam.get("type") == TYPE:
            return {"cniVersion": conf_list.cni_version or plugin.cni_version, "name": conf_list.name,
                    "ipam": ipam}
    raise NotClusterIPAM(f"network {conf_list.name!r} has no plugin with ipam type {TYPE}")


def networks(conf_dir: str) -> list[NetworkConfigList]:
    """Every network list in ``conf_dir`` that uses cluster-ipam."""
    found = []
    for path in conf_files(conf_dir, [".conflist", ".conf", ".json"]):
        conf_list = conf_list_from_file(path) if path.endswith(".conflist") else conf_list_from_conf(
            conf_from_file(path))
        try:
            ipam_config(conf_list)
        except NotClusterIPAM:
            continue
        found.append(conf_list)
    return found


def usage(conf: IPAMConfig, cluster: ClusterSettings, sweep_orphans: bool = False) -> dict[str, Any]:
    """``{"network", "ranges": [{"range", "size", "used", "free", "byNode": {node: used}}], "nodes":
    {node: {"attachments", "addresses"}}, "outside": addresses held outside
    every configured range, "orphans": address keys no attachment holds (not
    counted as used), "swept": those deleted (with ``sweep_orphans``)}``."""
    keys = Keys(cluster.prefix, cluster.network)
    etcd = Etcd(cluster.etcd)
    lost = orphans(etcd, keys)
    swept = sweep(etcd, lost) if sweep_orphans else []
    lost_keys = {item.key for item in lost}
    owner: dict[Any, str] = {}
    for item in attachments(etcd, keys.ips, page=1000):
        ip = keys.parse_ip(item.key)
        if ip is not None and item.key not in lost_keys:
            owner[ip] = _node_of(item.value)
    addresses = set(owner)
    ranges = []
    inside = set()
    for rangeset in conf.ranges:
        for rng in rangeset.ranges:
            size = int(rng.end) - int(rng.start) + 1 - (1 if rng.contains(rng.gateway) else 0)
            used = {ip for ip in addresses if rng.contains(ip)}
            inside |= used
            by_node: dict[str, int] = {}
            for ip in used:
                by_node[owner[ip]] = by_node.get(owner[ip], 0) + 1
            ranges.append({"range": f"{rng.network} {rng}", "size": size, "used": len(used),
                           "free": size - len(used), "byNode": dict(sorted(by_node.items()))})
    nodes: dict[str, dict[str, int]] = {}
    for item in attachments(etcd, keys.attachments, page=1000):
        who = keys.parse_attachment(item.key)
        if who is None:
            continue
        entry = nodes.setdefault(who[0], {"attachments": 0, "addresses": 0})
        entry["attachments"] += 1
        try:
            entry["addresses"] += len(Attachment.decode(item.value).ips)
        except ValueError:
            pass
    return {"network": cluster.network, "ranges": ranges, "nodes": dict(sorted(nodes.items())),
            "outside": len(addresses - inside),
            "orphans": sorted(str(keys.parse_ip(item.key)) for item in lost), "swept": len(swept)}


def _node_of(value: bytes) -> str:
    try:
        node = json.loads(value).get("node")
    except (ValueError, AttributeError):
        node = None
    return str(node) if node else "?"


class NodeLive(Exception):
    """The node was seen alive recently: reaping it would hand out addresses its
    containers may still use."""


#: A node seen within this many seconds is not reaped without ``force``.
DEFAULT_IDLE = 600.0


def reap_node(cluster: ClusterSettings, node: str, force: bool = False, idle: float = DEFAULT_IDLE,
              now: float | None = None) -> list[str]:
    """Release every attachment ``node`` holds in this network (the keys released),
    then its orphan address keys; refused (:class:`NodeLive`) for a node whose GC
    or ADD was seen within ``idle`` seconds, unless ``force``."""
    import time

    keys = Keys(cluster.prefix, cluster.network)
    etcd = Etcd(cluster.etcd)
    if not force:
        seen = last_seen(etcd, keys, node)
        ago = (time.time() if now is None else now) - seen
        if seen and ago < idle:
            raise NodeLive(f"node {node} was active {ago:.0f} s ago in network {cluster.network} (a GC or an "
                           f"ADD); it may still run containers: not reaped (--force if it is gone for good)")
    released = collect(etcd, keys, node, set(), grace=0.0)
    sweep(etcd, orphans(etcd, keys, node))
    etcd.call("kv/deleterange", {"key": _b64(keys.alive(node))})
    return released


def _b64(text: str) -> str:
    from cni_plugins_builtin.cluster_ipam.etcd import b64

    return b64(text)
