"""The real 3-member etcd cluster of the cluster-ipam tests and what they check with it.

A test module uses the cluster by importing the fixtures::

    from helpers.cluster_ipam import cluster, etcd_cluster  # noqa: F401 - fixtures

Each module that does gets a cluster of its own, started before its first test and
stopped after its last: the fault tests (tests/test_cluster_ipam_faults.py) stop,
partition and kill members, and nothing they leave behind can reach the others.

The cluster runs inside a throwaway network namespace (on its 127.0.0.1, free
ports, data under tmp) and is stopped by PID at the end, also on failure; every
test starts with all three members healthy and no partition, and uses a network
name of its own. Plugins reach etcd because they run in that namespace:
launchers are exec'd from it (the cold path a runtime takes), simulated nodes
are separate processes started in it with their own ``nodeName``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from cni_plugins_builtin.cluster_ipam.localcluster import LocalCluster
from cni_plugins_builtin.cluster_ipam.model import Attachment, Keys
from cnicore.testing import run_executable


@pytest.fixture(scope="module")
def etcd_cluster(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("needs root for the cluster's network namespace")
    if not os.path.exists("/usr/bin/etcd"):
        pytest.fail("etcd is not installed: scripts/dev installs Debian's etcd-server")
    from cnicore.ns import new_netns

    netns = new_netns(f"cnitest-etcd-{uuid.uuid4().hex[:10]}")
    try:
        container = new_netns(f"cnitest-etcdctr-{uuid.uuid4().hex[:10]}")  # CNI_NETNS of IPAM-only runs
        try:
            cluster = LocalCluster(str(tmp_path_factory.mktemp("etcd")), netns=netns)
            cluster.container_netns = container
            try:
                cluster.start()
                yield cluster
            finally:
                cluster.stop()
        finally:
            container.remove()
    finally:
        netns.remove()


@pytest.fixture
def cluster(etcd_cluster):
    """The session's cluster with every member running, reachable and accepting writes
    (before the test, and after it too: a partition or a stopped member never outlives it)."""
    etcd_cluster.heal()
    etcd_cluster.restart_dead()
    yield etcd_cluster
    etcd_cluster.heal()
    etcd_cluster.restart_dead()


def net_config(cluster, name=None, *, ranges=None, timeout=5, node="node-a", endpoints=None, **ipam):
    ipam_obj = {"type": "cluster-ipam", "nodeName": node, "stateDir": os.path.join(cluster.base_dir, "cni-state"),
                "etcd": {"endpoints": endpoints or cluster.endpoints, "timeoutSeconds": timeout},
                "ranges": ranges or [[{"subnet": "10.20.0.0/16"}]]}
    ipam_obj.update(ipam)
    return {"cniVersion": "1.1.0", "name": name or f"n{uuid.uuid4().hex[:8]}", "ipam": ipam_obj}


def launcher(cni_bin_dir):
    return os.path.join(cni_bin_dir, "cluster-ipam")


def run(cluster, cni_bin_dir, command, config, cid="ctr1", ifname="eth0", **kw):
    """One exec of the cluster-ipam launcher, from the cluster's namespace."""
    kw.setdefault("netns", cluster.container_netns.path if command in ("ADD", "CHECK") else "")
    return run_executable(launcher(cni_bin_dir), command, config, host=cluster.netns,
                          container_id=cid, ifname=ifname, **kw)


def state(cluster, config):
    """``(attachments by (node, cid, ifname), address keys by ip string)`` as etcd holds them now."""
    from cni_plugins_builtin.cluster_ipam.config import load_cluster
    from cni_plugins_builtin.cluster_ipam.etcd import Etcd
    from cni_plugins_builtin.cluster_ipam.release import attachments

    settings = load_cluster(config)
    keys = Keys(settings.prefix, settings.network)

    def read():
        etcd = Etcd(settings.etcd)
        records = {}
        for item in attachments(etcd, keys.attachments):
            records[keys.parse_attachment(item.key)] = (Attachment.decode(item.value), item.create_revision)
        ips = {}
        for item in attachments(etcd, keys.ips):
            ips[str(keys.parse_ip(item.key))] = (json.loads(item.value), item.create_revision)
        return records, ips

    return cluster.run(read)


def assert_consistent(records, ips):
    """Every address key belongs to exactly one record, written in the same txn, and back."""
    claimed = {}
    for (node, cid, ifname), (record, revision) in records.items():
        for ip in record.addresses():
            assert str(ip) not in claimed, f"{ip} claimed twice"
            claimed[str(ip)] = (cid, ifname, revision)
    assert set(claimed) == set(ips), f"orphans: {set(ips) - set(claimed)}, missing: {set(claimed) - set(ips)}"
    for ip, (value, revision) in ips.items():
        assert (value["containerID"], value["ifname"], revision) == claimed[ip]


def start_nodes(cluster, config, tmp_path, plan, launcher_path="", *, start_at=0.0, until=0.0):
    """Start one loadgen process per ``(node, count, prefix)`` in ``plan`` inside the cluster's netns
    (``start_at``/``until``: wall-clock times of the first ADD and after which none starts)."""
    path = tmp_path / f"conf-{uuid.uuid4().hex[:6]}.json"
    path.write_text(json.dumps(config))
    procs = []
    for node, count, prefix in plan:
        argv = [sys.executable, "-m", "cni_plugins_builtin.cluster_ipam.loadgen", "--config", str(path),
                "--node", node, "--count", str(count), "--prefix", prefix,
                "--netns", cluster.container_netns.path]
        if launcher_path:
            argv += ["--launcher", launcher_path]
        if start_at:
            argv += ["--start-at", str(start_at)]
        if until:
            argv += ["--until", str(until)]
        procs.append(cluster.run(lambda argv=argv: subprocess.Popen(argv, stdout=subprocess.PIPE,
                                                                    stderr=subprocess.PIPE)))
    return procs


def collect(procs, timeout=120):
    """Every ADD's line from the loadgen processes (each must exit 0); kills what is left."""
    lines = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=timeout)
            assert proc.returncode == 0, err.decode()[-2000:]
            lines += [json.loads(line) for line in out.decode().splitlines() if '"cid"' in line]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return lines


def index_state(cluster, config):
    """``(bitmaps, summaries)`` the index holds and ``(bitmaps, summaries)`` the address keys call for,
    as ``{key: int}`` without zeros (an all-clear bitmap and an absent one say the same)."""
    from cni_plugins_builtin.cluster_ipam import index as idx
    from cni_plugins_builtin.cluster_ipam.config import load_cluster
    from cni_plugins_builtin.cluster_ipam.etcd import Etcd
    from cni_plugins_builtin.cluster_ipam.release import attachments

    settings = load_cluster(config)
    keys = Keys(settings.prefix, settings.network)
    index = idx.Index(keys)

    def read():
        etcd = Etcd(settings.etcd)
        held = {item.key: int.from_bytes(item.value, "big") for item in attachments(etcd, index.root, page=2000)}
        want = {}
        for item in attachments(etcd, keys.ips, page=2000):
            ip = keys.parse_ip(item.key)
            if ip is not None:
                chunk = index.chunk_key(ip.version, int(ip) >> idx.CHUNK_SHIFT)
                want[chunk] = want.get(chunk, 0) | 1 << (int(ip) & 63)
        for chunk_key, bits in list(want.items()):
            if bits == idx.FULL:
                chunk = int(chunk_key.rsplit("/", 1)[1], 16)
                version = int(chunk_key.split("/idx/v")[1][0])
                skey = index.summary_key(version, chunk >> (idx.SUMMARY_SHIFT - idx.CHUNK_SHIFT))
                want[skey] = want.get(skey, 0) | 1 << (chunk & (idx.CHUNKS_PER_SUMMARY - 1))
        marker = etcd.get(index.marker_key)
        return {k: v for k, v in held.items() if v}, want, marker is not None

    return cluster.run(read)


def assert_index_matches_keys(cluster, config):
    held, want, built = index_state(cluster, config)
    assert built, "the index marker is missing"
    assert held == want, f"index differs from the address keys: {sorted(set(held.items()) ^ set(want.items()))[:6]}"


def assert_no_duplicate_or_lost(cluster, config, lines, timeout, min_acked=0.9):
    """What issue 19 asks of every fault case, from the loadgen lines and etcd's state after it:
    at least ``min_acked`` of the ADDs acknowledged and every other one failed with code 11
    (try again later); no address acknowledged twice; every acknowledged allocation in etcd as
    acknowledged; no orphan address key (every key held by exactly one record of the same
    transaction); the allocation index equal to the keys; every ADD answered within
    ``timeout`` + 1 s."""
    acked = [line for line in lines if line["ok"]]
    failed = [line for line in lines if not line["ok"]]
    assert len(acked) >= min_acked * len(lines), failed[:5]
    assert all(line["code"] == 11 for line in failed), [line for line in failed if line["code"] != 11][:5]
    ips = [ip for line in acked for ip in line["ips"]]
    assert len(ips) == len(set(ips)), "an address was acknowledged twice"
    records, held = state(cluster, config)
    assert_consistent(records, held)
    by_cid = {cid: rec for (_, cid, _), (rec, _) in records.items()}
    for line in acked:
        assert line["cid"] in by_cid, f"acknowledged ADD lost: {line}"
        assert [a for a, _ in by_cid[line["cid"]].ips] == line["ips"], f"acknowledged ADD changed: {line}"
    slowest = max(lines, key=lambda line: line["ms"])
    assert slowest["ms"] <= (timeout + 1) * 1000, f"an ADD took longer than timeoutSeconds + 1 s: {slowest}"
    assert_index_matches_keys(cluster, config)
