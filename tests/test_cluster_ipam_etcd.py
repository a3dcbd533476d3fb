"""cluster-ipam against a real 3-member etcd cluster (Debian's etcd-server).

The cluster and the checks of etcd's state are tests/helpers/cluster_ipam.py's:
the cluster runs for the whole module inside a throwaway network namespace
(on its 127.0.0.1, free ports, data under tmp) and is stopped by PID at the
end, also on failure; every test starts with all three members healthy and
uses a network name of its own. Plugins reach etcd because they run in that
namespace: launchers are exec'd from it (the cold path a runtime takes),
simulated nodes are separate processes started in it with their own
``nodeName``, and the bridge chain uses it as its host namespace. The fault
matrix of issue 19 (stopped and partitioned members, repeated leader kills,
compaction and defrag) is tests/test_cluster_ipam_faults.py.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from cni_plugins_builtin.cluster_ipam.etcd import b64
from cni_plugins_builtin.cluster_ipam.localcluster import LocalCluster
from cni_plugins_builtin.cluster_ipam.model import Keys
from cnicore.testing import assert_netns_address, assert_result_has_ip, assert_result_has_route, run_executable
from helpers.cluster_ipam import (  # noqa: F401 - cluster and etcd_cluster are fixtures
    assert_consistent,
    assert_index_matches_keys,
    assert_no_duplicate_or_lost,
    cluster,
    collect,
    etcd_cluster,
    index_state,
    launcher,
    net_config,
    run,
    start_nodes,
    state,
)

pytestmark = pytest.mark.privileged


# -- the verbs, through the launcher -------------------------------------------------------

def test_add_repeat_check_del_through_launcher(cluster, cni_bin_dir, tmp_path):
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 10.20.0.53\nsearch cluster.local\n")
    config = net_config(cluster, ranges=[[{"subnet": "10.20.0.0/24", "rangeStart": "10.20.0.10",
                                           "rangeEnd": "10.20.0.20", "gateway": "10.20.0.1"}],
                                         [{"subnet": "fd20::/64"}]],
                        routes=[{"dst": "0.0.0.0/0"}], resolvConf=str(resolv))
    first = run(cluster, cni_bin_dir, "ADD", config).ok().json
    assert first["cniVersion"] == "1.1.0"
    v4 = [ip for ip in first["ips"] if "." in ip["address"]]
    v6 = [ip for ip in first["ips"] if ":" in ip["address"]]
    assert len(v4) == len(v6) == 1 and "interface" not in v4[0]
    host = int(v4[0]["address"].split("/")[0].rsplit(".", 1)[1])
    assert 10 <= host <= 20 and v4[0]["address"].endswith("/24") and v4[0]["gateway"] == "10.20.0.1"
    assert v6[0]["address"].endswith("/64") and v6[0]["gateway"] == "fd20::1"
    assert_result_has_route(first, "0.0.0.0/0")
    assert first["dns"] == {"nameservers": ["10.20.0.53"], "search": ["cluster.local"]}

    again = run(cluster, cni_bin_dir, "ADD", config).ok().json
    assert again["ips"] == first["ips"], "a repeated ADD returns what the attachment holds"
    run(cluster, cni_bin_dir, "CHECK", config).ok()
    other = run(cluster, cni_bin_dir, "ADD", config, ifname="net1").ok().json
    assert other["ips"][0]["address"] != first["ips"][0]["address"]

    records, ips = state(cluster, config)
    assert set(records) == {("node-a", "ctr1", "eth0"), ("node-a", "ctr1", "net1")} and len(ips) == 4
    assert_consistent(records, ips)

    run(cluster, cni_bin_dir, "DEL", config).ok()
    run(cluster, cni_bin_dir, "DEL", config).ok()  # already gone: still a success
    failed = run(cluster, cni_bin_dir, "CHECK", config)
    assert failed.code != 0 and failed.error.code == 999
    assert "Failed to find address added by container ctr1" in failed.error.msg
    records, ips = state(cluster, config)
    assert set(records) == {("node-a", "ctr1", "net1")} and len(ips) == 2


#: What a cold ADD or DEL over http:// must not load (issue 19: a cold exec's CPU is mostly
#: imports): http.client's email parser and ssl, socket.py's enum and selectors, and every
#: module that pulls in re (json, base64, urllib.parse), random, hashlib, threading, idna.
COLD_NEVER = ("http", "email", "ssl", "socket", "selectors", "urllib", "json", "base64", "re", "enum", "random",
              "hashlib", "threading", "encodings.idna", "typing", "subprocess")


def test_a_cold_add_and_del_load_only_what_they_need(cluster, cni_bin_dir, tmp_path):
    from cnicore.launchers import python_launcher_path

    real = launcher(cni_bin_dir)
    with open(real, "rb") as fh:
        if fh.read(4) == b"\x7fELF":  # a native launcher: its Python fallback is the cold path
            real = python_launcher_path(real)
    record = tmp_path / "modules.txt"
    probe = tmp_path / "cluster-ipam"  # the launcher's code, run as it runs, listing sys.modules at exit
    probe.write_text(f"#!{sys.executable} -IS\nimport atexit, sys\n"
                     f"def _dump():\n    with open({str(record)!r}, 'a') as fh:\n"
                     f"        fh.write(' '.join(sorted(sys.modules)) + '\\n')\n"
                     f"atexit.register(_dump)\nsys.argv[0] = {real!r}\n"
                     f"exec(compile(open({real!r}).read(), {real!r}, 'exec'))\n")
    probe.chmod(0o755)
    config = net_config(cluster)
    for command in ("ADD", "ADD", "DEL"):
        run_executable(str(probe), command, config, host=cluster.netns,
                       netns=cluster.container_netns.path if command == "ADD" else "",
                       container_id="cold1", ifname="eth0").ok()
    runs = [set(line.split()) for line in record.read_text().splitlines()]
    assert len(runs) == 3 and all("cni_plugins_builtin.cluster_ipam.etcd" in modules for modules in runs)
    for command, modules in zip(("ADD", "repeated ADD", "DEL"), runs):
        over = sorted(name for name in modules if any(name == f or name.startswith(f + ".") for f in COLD_NEVER))
        assert not over, f"a cold {command} imports {over}"


def test_check_fails_when_an_address_key_is_no_longer_the_attachments(cluster, cni_bin_dir):
    """An operator deleted an address key by hand and another ADD took the address:
    CHECK of the first attachment names it, and its DEL leaves the new holder alone."""
    from cni_plugins_builtin.cluster_ipam.config import load_cluster
    from cni_plugins_builtin.cluster_ipam.etcd import Etcd

    config = net_config(cluster, ranges=[[{"subnet": "10.31.0.0/24"}]])
    run(cluster, cni_bin_dir, "ADD", config, cid="first", args="IP=10.31.0.9").ok()
    settings = load_cluster(config)
    key = Keys(settings.prefix, settings.network).ip(ipaddress.ip_address("10.31.0.9"))
    cluster.run(lambda: Etcd(settings.etcd).call("kv/deleterange", {"key": b64(key)}))
    run(cluster, cni_bin_dir, "ADD", config, cid="second", args="IP=10.31.0.9").ok()
    out = run(cluster, cni_bin_dir, "CHECK", config, cid="first")
    assert out.error.code == 999 and out.error.msg == "cluster-ipam: container first no longer holds 10.31.0.9"
    run(cluster, cni_bin_dir, "DEL", config, cid="first").ok()
    records, ips = state(cluster, config)
    assert set(records) == {("node-a", "second", "eth0")}
    assert ips["10.31.0.9"][0]["containerID"] == "second"
    run(cluster, cni_bin_dir, "CHECK", config, cid="second").ok()


def test_old_spec_version_result_and_requested_ip(cluster, cni_bin_dir):
    config = net_config(cluster, ranges=[[{"subnet": "10.21.0.0/24"}]])
    config["cniVersion"] = "0.4.0"
    out = run(cluster, cni_bin_dir, "ADD", config, args="IP=10.21.0.77").ok().json
    assert out["cniVersion"] == "0.4.0"
    assert_result_has_ip(out, "10.21.0.77/24", gateway="10.21.0.1")
    taken = run(cluster, cni_bin_dir, "ADD", config, cid="ctr2", args="IP=10.21.0.77")
    assert taken.code != 0 and taken.error.code == 999
    assert "requested IP address 10.21.0.77 is not available" in taken.error.msg
    gateway = run(cluster, cni_bin_dir, "ADD", config, cid="ctr3", args="IP=10.21.0.1")
    assert gateway.error.code == 999 and "is subnet's gateway" in gateway.error.msg
    assert set(state(cluster, config)[0]) == {("node-a", "ctr1", "eth0")}


def test_bad_config_is_host_local_error_without_traceback(cluster, cni_bin_dir):
    config = net_config(cluster, ranges=[[{"subnet": "10.22.0.0/33"}]])
    out = run(cluster, cni_bin_dir, "ADD", config)
    assert out.error.code == 999 and out.error.msg == "invalid CIDR address: 10.22.0.0/33"
    config = net_config(cluster)
    config["ipam"]["etcd"]["endpoints"] = ["ftp://x"]
    out = run(cluster, cni_bin_dir, "ADD", config)
    assert out.error.code == 999 and "invalid etcd endpoint" in out.error.msg
    assert b"Traceback" not in out.stdout + out.stderr


# -- many nodes at once -------------------------------------------------------------------

def test_concurrent_adds_from_three_nodes_through_launchers(cluster, cni_bin_dir, tmp_path):
    config = net_config(cluster, ranges=[[{"subnet": "10.23.0.0/26"}]])  # 62 addresses for 24 ADDs
    plan = [(f"node-{n}", 4, f"{n}{p}") for n in "abc" for p in range(2)]
    lines = collect(start_nodes(cluster, config, tmp_path, plan, launcher(cni_bin_dir)))
    assert len(lines) == 24 and all(line["ok"] for line in lines), [line for line in lines if not line["ok"]]
    acked = [ip for line in lines for ip in line["ips"]]
    assert len(set(acked)) == 24, "no address handed out twice"
    records, ips = state(cluster, config)
    assert_consistent(records, ips)
    assert {node for node, _, _ in records} == {"node-a", "node-b", "node-c"}
    assert sorted(f"{a}/26" for a in ips) == sorted(acked)


def test_full_range_under_contention_then_freed(cluster, cni_bin_dir, tmp_path):
    config = net_config(cluster, ranges=[[{"subnet": "10.24.0.0/29"}]])  # .2-.6: 5 addresses
    plan = [(f"node-{n}", 3, f"{n}") for n in "abc"]
    lines = collect(start_nodes(cluster, config, tmp_path, plan))
    ok = [line for line in lines if line["ok"]]
    refused = [line for line in lines if not line["ok"]]
    assert len(ok) == 5 and len({line["ips"][0] for line in ok}) == 5
    assert len(refused) == 4
    for line in refused:
        assert line["code"] == 999
        assert "no IP addresses available in range set: 10.24.0.1-10.24.0.6" in line["msg"]
    records, ips = state(cluster, config)
    assert_consistent(records, ips)
    assert_index_matches_keys(cluster, config)
    assert len(records) == 5
    node, cid, _ = sorted(records)[0]
    freed = dict(config, ipam=dict(config["ipam"], nodeName=node))
    run(cluster, cni_bin_dir, "DEL", freed, cid=cid).ok()
    again = run(cluster, cni_bin_dir, "ADD", config, cid="late").ok().json
    assert again["ips"][0]["address"] == records[(node, cid, "eth0")][0].ips[0][0]


def test_range_set_of_two_ranges_is_used_up_completely(cluster, cni_bin_dir):
    config = net_config(cluster, ranges=[[{"subnet": "10.29.0.0/29", "rangeStart": "10.29.0.2",
                                           "rangeEnd": "10.29.0.3"},
                                          {"subnet": "10.29.1.0/29", "rangeStart": "10.29.1.5",
                                           "rangeEnd": "10.29.1.6", "gateway": "10.29.1.6"}]])
    got = {run(cluster, cni_bin_dir, "ADD", config, cid=f"c{i}").ok().json["ips"][0]["address"] for i in range(3)}
    assert got == {"10.29.0.2/29", "10.29.0.3/29", "10.29.1.5/29"}, "every address once, never the gateway"
    full = run(cluster, cni_bin_dir, "ADD", config, cid="c3")
    assert full.error.code == 999 and full.error.msg == (
        "failed to allocate for range 0: no IP addresses available in range set: "
        "10.29.0.2-10.29.0.3,10.29.1.5-10.29.1.6")
    assert len(state(cluster, config)[0]) == 3, "a refused ADD leaves nothing behind"


# -- failures of etcd members -------------------------------------------------------------

def _run_with_fault(cluster, tmp_path, fault, timeout=3):
    config = net_config(cluster, timeout=timeout)
    plan = [(f"node-{n}", 150, f"{n}{p}") for n in "abc" for p in range(2)]
    procs = start_nodes(cluster, config, tmp_path, plan)
    time.sleep(0.8)
    victim = fault()
    lines = collect(procs)
    cluster.restart_dead()
    return config, lines, victim


def test_leader_sigkilled_mid_run(cluster, tmp_path):
    def kill_leader():
        leader = cluster.leader()
        leader.kill(signal.SIGKILL)
        return leader

    config, lines, _ = _run_with_fault(cluster, tmp_path, kill_leader)
    assert_no_duplicate_or_lost(cluster, config, lines, timeout=3)


def test_follower_sigkilled_mid_run(cluster, tmp_path):
    def kill_follower():
        leader = cluster.leader()
        follower = next(m for m in cluster.members if m is not leader)
        follower.kill(signal.SIGKILL)
        return follower

    config, lines, _ = _run_with_fault(cluster, tmp_path, kill_follower)
    assert all(line["ok"] for line in lines), [line for line in lines if not line["ok"]][:5]
    assert_no_duplicate_or_lost(cluster, config, lines, timeout=3)


@pytest.mark.parametrize("survivor", ["leader", "follower"])
def test_quorum_lost_fails_clearly_within_timeout_and_writes_nothing(cluster, cni_bin_dir, survivor):
    """With the leader surviving alone, a write it accepted could still commit once the
    others are back: the failed ADD must not have proposed one."""
    config = net_config(cluster, timeout=2)
    run(cluster, cni_bin_dir, "ADD", config, cid="before").ok()
    leader = cluster.leader()
    kept = leader if survivor == "leader" else next(m for m in cluster.members if m is not leader)
    for member in [m for m in cluster.members if m is not kept]:
        member.kill(signal.SIGKILL)
    start = time.monotonic()
    out = run(cluster, cni_bin_dir, "ADD", config, cid="during")
    elapsed = time.monotonic() - start
    assert out.code != 0 and out.error.code == 11, out
    assert out.error.msg == "cluster-ipam: etcd cluster unavailable"
    assert elapsed < 2 + 1.5, f"ADD took {elapsed:.1f}s with timeoutSeconds 2"
    status = run(cluster, cni_bin_dir, "STATUS", config)
    assert status.error.code == 51 and "no quorum" in status.error.msg
    kept.kill(signal.SIGKILL)
    start = time.monotonic()
    status = run(cluster, cni_bin_dir, "STATUS", config)
    assert status.error.code == 50 and "no etcd endpoint answers" in status.error.msg
    assert time.monotonic() - start < 2 + 1.5

    cluster.restart_dead()
    records, ips = state(cluster, config)
    assert set(records) == {("node-a", "before", "eth0")} and len(ips) == 1, "the failed ADD wrote nothing"
    run(cluster, cni_bin_dir, "STATUS", config).ok()


def test_member_restarted_catches_up_and_serves(cluster, cni_bin_dir):
    leader = cluster.leader()
    follower = next(m for m in cluster.members if m is not leader)
    follower.kill(signal.SIGKILL)
    config = net_config(cluster, ranges=[[{"subnet": "10.25.0.0/24"}]])
    made = [run(cluster, cni_bin_dir, "ADD", config, cid=f"while-down-{i}").ok().json for i in range(3)]
    follower.start()
    cluster.wait_healthy()
    only_it = net_config(cluster, name=config["name"], endpoints=[follower.endpoint],
                         ranges=[[{"subnet": "10.25.0.0/24"}]])
    for i, result in enumerate(made):
        run(cluster, cni_bin_dir, "CHECK", only_it, cid=f"while-down-{i}").ok()
        assert run(cluster, cni_bin_dir, "ADD", only_it, cid=f"while-down-{i}").ok().json["ips"] == result["ips"]
    fresh = run(cluster, cni_bin_dir, "ADD", only_it, cid="after").ok().json
    assert fresh["ips"][0]["address"] not in {r["ips"][0]["address"] for r in made}
    assert_consistent(*state(cluster, config))


def test_failover_skips_a_dead_first_endpoint(cluster, cni_bin_dir):
    dead = "http://127.0.0.1:9"  # nothing listens on the discard port here
    config = net_config(cluster, endpoints=[dead] + cluster.endpoints, timeout=3)
    start = time.monotonic()
    run(cluster, cni_bin_dir, "ADD", config).ok()
    assert time.monotonic() - start < 2


# -- GC ---------------------------------------------------------------------------------

def test_gc_racing_adds_spares_young_and_other_nodes(cluster, cni_bin_dir, tmp_path):
    """GC with an old valid-attachments list runs again and again while ADDs land on the
    same node: the ADDs (younger than gcGraceSeconds) all survive, old stale ones go,
    another node's never."""
    grace = 4
    config = net_config(cluster, gcGraceSeconds=grace)
    for i in range(4):
        run(cluster, cni_bin_dir, "ADD", config, cid=f"stale-{i}").ok()
    other = net_config(cluster, name=config["name"], node="node-b", gcGraceSeconds=grace)
    run(cluster, cni_bin_dir, "ADD", other, cid="elsewhere").ok()
    run(cluster, cni_bin_dir, "ADD", config, cid="kept").ok()
    time.sleep(grace + 0.2)

    gc_config = dict(config, **{"cni.dev/valid-attachments": [{"containerID": "kept", "ifname": "eth0"}]})
    path = tmp_path / "race.json"
    path.write_text(json.dumps(config))
    start_at = time.time() + 1.0
    argv = [sys.executable, "-m", "cni_plugins_builtin.cluster_ipam.loadgen", "--config", str(path),
            "--node", "node-a", "--count", "25", "--prefix", "racing",
            "--netns", cluster.container_netns.path, "--start-at", str(start_at)]
    proc = cluster.run(lambda: subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    time.sleep(max(0.0, start_at - time.time()))
    gcs = []
    while proc.poll() is None or len(gcs) < 2:  # GC only while the ADDs are landing
        gcs.append(run(cluster, cni_bin_dir, "GC", gc_config))
    lines = collect([proc])
    for outcome in gcs:
        outcome.ok()
    assert all(line["ok"] for line in lines)
    assert max(line["t0"] for line in lines) - start_at < grace - 1, "the race took too long to mean much"

    records, ips = state(cluster, config)
    assert_consistent(records, ips)
    names = {(node, cid) for node, cid, _ in records}
    assert not any(cid.startswith("stale-") for _, cid in names), "old stale attachments are collected"
    assert ("node-a", "kept") in names and ("node-b", "elsewhere") in names
    assert {cid for node, cid in names if cid.startswith("racing")} == {f"racing-{i}" for i in range(25)}


# -- STATUS ---------------------------------------------------------------------------

def test_status_healthy_and_bad_resolv_conf(cluster, cni_bin_dir, tmp_path):
    config = net_config(cluster)
    run(cluster, cni_bin_dir, "STATUS", config).ok()
    config["ipam"]["resolvConf"] = str(tmp_path / "missing")
    out = run(cluster, cni_bin_dir, "STATUS", config)
    assert out.error.code == 999 and "no such file or directory" in out.error.msg


# -- the bridge plugin using it as its ipam ---------------------------------------------------

def test_bridge_chain_with_cluster_ipam_cold(cluster, cni_bin_dir, cni_sandbox, tmp_path):
    from cnicore.testing import ConflistRunner

    config = net_config(cluster, ranges=[[{"subnet": "10.26.0.0/24"}]], routes=[{"dst": "0.0.0.0/0"}])
    conflist = {"cniVersion": "1.1.0", "name": config["name"], "plugins": [
        {"type": "bridge", "bridge": "cipam0", "isGateway": True, "ipam": config["ipam"]}]}
    net = ConflistRunner(conflist, cluster.netns, [cni_bin_dir], str(tmp_path / "cache"))
    ctr = cni_sandbox.container()
    result = net.add(ctr)
    address = next(ip["address"] for ip in result["ips"])
    assert address.startswith("10.26.0.") and address.endswith("/24")
    assert_netns_address(ctr, "eth0", address)
    net.check(ctr)
    net.status()
    records, _ = state(cluster, config)
    assert len(records) == 1
    net.delete(ctr)
    assert state(cluster, config) == ({}, {})


def test_runtime_gc_through_the_bridge_chain(cluster, cni_bin_dir, cni_sandbox, tmp_path):
    """libcni's GC: DEL of the cached attachment the runtime no longer lists, then GC
    with valid-attachments down bridge to cluster-ipam, which drops a leaked record."""
    from cnicore.testing import ConflistRunner

    config = net_config(cluster, ranges=[[{"subnet": "10.30.0.0/24"}]], gcGraceSeconds=0)
    conflist = {"cniVersion": "1.1.0", "name": config["name"], "plugins": [
        {"type": "bridge", "bridge": "cipam2", "ipam": config["ipam"]}]}
    net = ConflistRunner(conflist, cluster.netns, [cni_bin_dir], str(tmp_path / "cache"))
    kept, dropped = cni_sandbox.container(), cni_sandbox.container()
    net.add(kept)
    net.add(dropped)
    run(cluster, cni_bin_dir, "ADD", config, cid="leaked").ok()  # no cache entry: only GC finds it
    kept_id = os.path.basename(kept.path)
    assert len(state(cluster, config)[0]) == 3
    cluster.netns.do(net.cni.gc_network_list, net.conf_list, [(kept_id, "eth0")])
    records, ips = state(cluster, config)
    assert set(records) == {("node-a", kept_id, "eth0")} and len(ips) == 1
    net.delete(kept)


def test_warm_server_serves_cluster_ipam_and_the_bridge_chain(cluster, cni_sandbox, tmp_path):
    """Native launchers to a warm server: cluster-ipam exec'd alone, and bridge with
    cluster-ipam as its ipam through libcni; every request served warm, none refused."""
    from cnicore.cli.install import install
    from cnicore.testing import ConflistRunner, WarmServer

    server = WarmServer(str(tmp_path / "server"), workers=2, extra_env={"CNICORE_SERVER_PRELOAD": "cluster-ipam"})
    try:
        bin_dir = tmp_path / "bin"
        report = install(str(bin_dir), kind="native", socket=server.socket)
        assert not report.skipped, report.skipped
        config = net_config(cluster, ranges=[[{"subnet": "10.32.0.0/24"}]], routes=[{"dst": "0.0.0.0/0"}])
        alone = run(cluster, str(bin_dir), "ADD", config, cid="alone").ok().json
        assert alone["ips"][0]["address"].startswith("10.32.0.")
        run(cluster, str(bin_dir), "DEL", config, cid="alone").ok()

        conflist = {"cniVersion": "1.1.0", "name": config["name"], "plugins": [
            {"type": "bridge", "bridge": "cipam3", "isGateway": True, "ipam": config["ipam"]}]}
        net = ConflistRunner(conflist, cluster.netns, [str(bin_dir)], str(tmp_path / "cache"))
        ctr = cni_sandbox.container()
        result = net.add(ctr)
        address = result["ips"][0]["address"]
        assert_netns_address(ctr, "eth0", address)
        assert_result_has_route(result, "0.0.0.0/0")
        net.check(ctr)
        assert len(state(cluster, config)[0]) == 1
        net.delete(ctr)
        assert state(cluster, config) == ({}, {})
    finally:
        server.stop()
    assert "refused" not in server.log(), server.log()
    assert server.served() >= 5, server.log()


def assert_warm_workers_serve_on(cluster, config, tmp_path, count=6):
    """``count`` ADDs and DELs through native launchers to a warm server with 2 workers:
    all served warm, and no worker retired after a request (one that imports a module
    while serving — the idna codec, loaded by C code on a first connection — exits after
    it, so every request then pays a fresh worker: ~15 ms of the server's CPU)."""
    from cnicore.cli.install import install
    from cnicore.testing import WarmServer

    server = WarmServer(str(tmp_path / f"server-{uuid.uuid4().hex[:6]}"), workers=2,
                        extra_env={"CNICORE_SERVER_PRELOAD": "cluster-ipam"})
    try:
        bin_dir = tmp_path / f"bin-{uuid.uuid4().hex[:6]}"
        report = install(str(bin_dir), kind="native", socket=server.socket)
        assert not report.skipped, report.skipped
        for i in range(count):
            run(cluster, str(bin_dir), "ADD", config, cid=f"warm{i}").ok()
        for i in range(count):
            run(cluster, str(bin_dir), "DEL", config, cid=f"warm{i}").ok()
    finally:
        server.stop()
    log = server.log()
    assert "refused" not in log and server.served() >= 2 * count, log
    assert "exits after its request" not in log, log


def test_warm_workers_keep_serving_cluster_ipam(cluster, tmp_path):
    assert_warm_workers_serve_on(cluster, net_config(cluster), tmp_path)


def test_go_bridge_execs_cluster_ipam_launcher(cluster, cni_bin_dir, cni_sandbox, tmp_path):
    go_dir = tmp_path / "go"
    go_dir.mkdir()
    os.symlink("/usr/lib/cni/bridge", go_dir / "bridge")
    from cnicore.testing import ConflistRunner

    config = net_config(cluster, ranges=[[{"subnet": "10.27.0.0/24"}]])
    config["cniVersion"] = "1.0.0"
    conflist = {"cniVersion": "1.0.0", "name": config["name"], "plugins": [
        {"type": "bridge", "bridge": "cipam1", "isGateway": True, "ipam": config["ipam"]}]}
    net = ConflistRunner(conflist, cluster.netns, [str(go_dir), cni_bin_dir], str(tmp_path / "cache"))
    ctr = cni_sandbox.container()
    result = net.add(ctr)
    address = result["ips"][0]["address"]
    assert address.startswith("10.27.0.")
    assert_netns_address(ctr, "eth0", address)
    net.delete(ctr)
    assert state(cluster, config) == ({}, {})


# -- cnitool ipam -------------------------------------------------------------------------

def test_cnitool_ipam_show_and_reap_node(cluster, cni_bin_dir, tmp_path):
    from click.testing import CliRunner

    from cnicore.cli.commands import main

    config = net_config(cluster, ranges=[[{"subnet": "10.28.0.0/28"}], [{"subnet": "fd28::/120"}]])
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    (conf_dir / "10-net.conflist").write_text(json.dumps(
        {"cniVersion": "1.1.0", "name": config["name"],
         "plugins": [{"type": "bridge", "bridge": "x0", "ipam": config["ipam"]}]}))
    for node, count in (("node-a", 2), ("node-b", 3)):
        node_conf = dict(config, ipam=dict(config["ipam"], nodeName=node))
        for i in range(count):
            run(cluster, cni_bin_dir, "ADD", node_conf, cid=f"{node}-{i}").ok()

    def cnitool(*argv):
        return cluster.run(lambda: CliRunner().invoke(main, list(argv), env={"NETCONFPATH": str(conf_dir)}))

    shown = cnitool("ipam", "show", config["name"], "--json")
    assert shown.exit_code == 0, shown.output
    report = json.loads(shown.output)
    assert [(r["size"], r["used"], r["free"]) for r in report["ranges"]] == [(13, 5, 8), (254, 5, 249)]
    assert report["ranges"][0]["byNode"] == {"node-a": 2, "node-b": 3}
    assert report["nodes"] == {"node-a": {"attachments": 2, "addresses": 4},
                               "node-b": {"attachments": 3, "addresses": 6}}
    table = cnitool("ipam", "show", config["name"])
    assert table.exit_code == 0 and "10.28.0.0/28 10.28.0.1-10.28.0.14" in table.output
    assert "node-a=2 node-b=3" in table.output

    binary = os.path.join(os.path.dirname(sys.executable), "cnitool")  # the installed command, as run
    proc = cluster.run(lambda: subprocess.run([binary, "ipam", "show", config["name"]], capture_output=True,
                                              text=True, env=dict(os.environ, NETCONFPATH=str(conf_dir))))
    assert proc.returncode == 0 and proc.stdout == table.output, proc.stderr

    refused = cnitool("ipam", "reap-node", "node-b")  # its ADDs were seconds ago: alive
    assert refused.exit_code == 1 and "node node-b was active" in refused.output, refused.output
    assert len(state(cluster, config)[0]) == 5
    reaped = cnitool("ipam", "reap-node", "node-b", "--force")
    assert reaped.exit_code == 0, reaped.output
    assert f"{config['name']}: released 3 attachment(s) of node node-b" in reaped.output
    records, ips = state(cluster, config)
    assert {node for node, _, _ in records} == {"node-a"} and len(ips) == 4

    missing = cnitool("ipam", "show", "nope")
    assert missing.exit_code == 1 and "nope" in missing.output


# -- TLS --------------------------------------------------------------------------------

def test_tls_with_client_certificates(tmp_path, cni_bin_dir):
    """A member that requires client certificates of its CA: ADD/CHECK/DEL/STATUS over
    https with cacert/cert/key; without a client certificate, a clear error."""
    from cni_plugins_builtin.cluster_ipam.localcluster import TLSFiles
    from cnicore.ns import new_netns

    if os.geteuid() != 0:
        pytest.skip("needs root for the cluster's network namespace")
    tls = TLSFiles.generate(str(tmp_path / "tls"))
    netns = new_netns(f"cnitest-etcdtls-{uuid.uuid4().hex[:10]}")
    try:
        cluster = LocalCluster(str(tmp_path / "etcd"), size=1, netns=netns, tls=tls)
        cluster.container_netns = netns  # an IPAM run only needs CNI_NETNS to differ...
        try:
            cluster.start()
            assert cluster.endpoints[0].startswith("https://127.0.0.1:")
            config = net_config(cluster, timeout=1)
            config["ipam"]["etcd"].update(cacert=tls.ca, cert=tls.client_cert, key=tls.client_key)
            ctr = new_netns(f"cnitest-etcdtlsc-{uuid.uuid4().hex[:10]}")
            cluster.container_netns = ctr  # ...from the plugin's own
            try:
                result = run(cluster, cni_bin_dir, "ADD", config).ok().json
                assert result["ips"][0]["address"].startswith("10.20.")
                run(cluster, cni_bin_dir, "CHECK", config).ok()
                run(cluster, cni_bin_dir, "STATUS", config).ok()
                # Defect 8: TLS misconfigured is answered at once, clearly, not retried as an outage.
                other = TLSFiles.generate(str(tmp_path / "other-tls"))
                misconfigured = {
                    "no client certificate": {"cert": None, "key": None},
                    "untrusted server (no cacert)": {"cacert": None},
                    "wrong CA": {"cacert": other.ca},
                    "client certificate of another CA": {"cert": other.client_cert, "key": other.client_key},
                }
                for case, change in misconfigured.items():
                    bad = json.loads(json.dumps(config))
                    bad["ipam"]["etcd"]["timeoutSeconds"] = 5
                    for name, value in change.items():
                        if value is None:
                            del bad["ipam"]["etcd"][name]
                        else:
                            bad["ipam"]["etcd"][name] = value
                    start = time.monotonic()
                    refused = run(cluster, cni_bin_dir, "ADD", bad, cid="bad")
                    elapsed = time.monotonic() - start
                    assert refused.code != 0 and refused.error.code == 999, (case, refused)
                    assert refused.error.msg.startswith("cluster-ipam: TLS with etcd failed"), (case, refused)
                    assert "TLS" in refused.error.details and cluster.endpoints[0] in refused.error.details, case
                    assert elapsed < 4, (case, elapsed)  # not the whole 5 s budget
                    assert b"Traceback" not in refused.stdout + refused.stderr
                run(cluster, cni_bin_dir, "DEL", config).ok()
                assert state(cluster, config) == ({}, {})
                assert_warm_workers_serve_on(cluster, config, tmp_path, count=3)  # over https too
            finally:
                ctr.remove()
        finally:
            cluster.stop()
    finally:
        netns.remove()


def test_loadgen_paces_adds_at_the_rate_asked(cluster, tmp_path):
    """The bench measures latency at a given load with ``--rate``: ADD n starts no
    earlier than n / rate seconds after the first."""
    config = net_config(cluster, ranges=[[{"subnet": "10.31.0.0/24"}]])
    path = tmp_path / "paced.json"
    path.write_text(json.dumps(config))
    argv = [sys.executable, "-m", "cni_plugins_builtin.cluster_ipam.loadgen", "--config", str(path),
            "--node", "node-a", "--count", "6", "--prefix", "paced", "--rate", "10",
            "--netns", cluster.container_netns.path]
    lines = collect([cluster.run(lambda: subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE))])
    starts = sorted(line["t0"] for line in lines)
    assert all(line["ok"] for line in lines) and len(starts) == 6
    for n, t0 in enumerate(starts):
        assert t0 - starts[0] >= n / 10 - 0.02


def test_loadgen_starts_no_add_after_until(cluster, tmp_path):
    """The fault tests run ADDs for as long as their fault schedule lasts with ``--until``:
    no ADD starts after it, whatever ``--count`` would allow."""
    config = net_config(cluster)
    start = time.time() + 1.0
    lines = collect(start_nodes(cluster, config, tmp_path, [("node-a", 100_000, "bounded")],
                                start_at=start, until=start + 1.0))
    assert lines and all(line["ok"] for line in lines), [line for line in lines if not line["ok"]][:3]
    assert start - 0.01 <= min(line["t0"] for line in lines) and max(line["t0"] for line in lines) < start + 1.0
    assert len(lines) < 100_000


# -- faults and hostile state (issue 19) --------------------------------------------------

class FakeEndpoint:
    """Something on 127.0.0.1 of the cluster's namespace that is not etcd: answers every
    request with ``reply`` (raw HTTP), or accepts and never answers (``reply`` None, as a
    SIGSTOPped or blackholed member behaves). Counts the connections it accepted."""

    def __init__(self, cluster, reply: bytes | None) -> None:
        import socket
        import threading

        self.reply = reply
        self.accepted = 0
        self.held: list = []
        self.sock = cluster.run(lambda: socket.create_server(("127.0.0.1", 0)))
        self.sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            if self.reply is None:
                self.held.append(conn)
                continue
            try:
                conn.settimeout(2)
                conn.recv(65536)
                conn.sendall(self.reply)
            except OSError:
                pass
            conn.close()

    def stop(self) -> None:
        self.stopping = True
        self.thread.join(5)
        for conn in self.held:
            conn.close()
        self.sock.close()


def http_reply(status: str, body: bytes, content_type: str = "text/html") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode() + body


NOT_ETCD = {
    "502 from a proxy": http_reply("502 Bad Gateway", b"<html>bad gateway</html>"),
    "404 from another server": http_reply("404 Not Found", b"404 page not found\n", "text/plain"),
    "200 that is not JSON": http_reply("200 OK", b"<html>welcome</html>"),
    "200 JSON that is not an object": http_reply("200 OK", b"[1, 2]", "application/json"),
}


@pytest.mark.parametrize("case", sorted(NOT_ETCD))
def test_failover_past_a_first_endpoint_that_is_not_etcd(cluster, cni_bin_dir, tmp_path, case):
    """Defect 1: anything but etcd's own answer moves to the next endpoint."""
    fake = FakeEndpoint(cluster, NOT_ETCD[case])
    try:
        config = net_config(cluster, endpoints=[fake.url] + cluster.endpoints, timeout=3,
                            stateDir=str(tmp_path / "state"))
        result = run(cluster, cni_bin_dir, "ADD", config).ok().json
        assert result["ips"][0]["address"].startswith("10.20.")
        assert fake.accepted >= 1
        assert_consistent(*state(cluster, config))
    finally:
        fake.stop()


def test_a_silent_first_endpoint_costs_one_capped_try_then_is_skipped_by_later_execs(cluster, cni_bin_dir,
                                                                                      tmp_path):
    """Defect 2: a member that accepts and never answers (SIGSTOPped, blackholed) costs
    one try capped at a share of the budget — and only once: the endpoint that answered
    is remembered in stateDir, so the next cold exec goes there first."""
    from cni_plugins_builtin.cluster_ipam.config import load_cluster
    from cni_plugins_builtin.cluster_ipam.etcd import Etcd

    silent = FakeEndpoint(cluster, None)
    try:
        config = net_config(cluster, endpoints=[silent.url] + cluster.endpoints, timeout=4,
                            stateDir=str(tmp_path / "state"))
        settings = load_cluster(config)
        settings.etcd.state_dir = ""  # in-process: this process's memory only

        def one_read():
            from cni_plugins_builtin.cluster_ipam import etcd as etcd_mod

            etcd_mod._reused().pop("preferred", None)
            start = time.monotonic()
            Etcd(settings.etcd).get("/nothing")
            return time.monotonic() - start

        assert cluster.run(one_read) < 1.5  # 4 s / (4 endpoints + 1) = 0.8 s for the silent one
        first = silent.accepted
        assert first >= 1
        run(cluster, cni_bin_dir, "ADD", config, cid="a").ok()
        after_first_exec = silent.accepted
        for cid in ("b", "c"):
            run(cluster, cni_bin_dir, "ADD", config, cid=cid).ok()
        assert silent.accepted == after_first_exec, "later execs tried the silent endpoint again"
        assert os.listdir(tmp_path / "state")
    finally:
        silent.stop()


def put_raw(cluster, config, key, value):
    from cni_plugins_builtin.cluster_ipam.config import load_cluster
    from cni_plugins_builtin.cluster_ipam.etcd import Etcd

    settings = load_cluster(config)
    cluster.run(lambda: Etcd(settings.etcd).call("kv/put", {"key": b64(key), "value": b64(value)}))


MALFORMED = {
    "created is a list": b'{"containerID":"%s","ifname":"eth0","node":"node-a","ips":[],"created":[1]}',
    "created is text": b'{"containerID":"%s","ifname":"eth0","node":"node-a","ips":[],"created":"x"}',
    "address not an IP": b'{"containerID":"%s","ifname":"eth0","node":"node-a",'
                         b'"ips":[{"address":"not-an-ip"}],"created":1}',
    "not JSON": b"%s garbage",
    "ips not a list": b'{"containerID":"%s","ifname":"eth0","node":"node-a","ips":{},"created":1}',
}


def test_gc_releases_past_malformed_records(cluster, cni_bin_dir):
    """Defect 3: one malformed record must not stop GC for the whole node."""
    config = net_config(cluster, ranges=[[{"subnet": "10.33.0.0/24"}]], gcGraceSeconds=0)
    keys = Keys("/cni-ipam/v1", config["name"])
    run(cluster, cni_bin_dir, "ADD", config, cid="aaa-valid").ok()
    run(cluster, cni_bin_dir, "ADD", config, cid="zzz-stale").ok()
    for i, case in enumerate(sorted(MALFORMED)):
        cid = f"bad{i}"
        put_raw(cluster, config, keys.attachment("node-a", cid, "eth0"), MALFORMED[case].replace(b"%s", cid.encode()))
    gc = dict(config, **{"cni.dev/valid-attachments": [{"containerID": "aaa-valid", "ifname": "eth0"}]})
    out = run(cluster, cni_bin_dir, "GC", gc)
    assert out.code == 0, out
    records, ips = state(cluster, config)
    assert set(records) == {("node-a", "aaa-valid", "eth0")}
    assert_consistent(records, ips)


def test_foreign_keys_inside_the_address_range_do_not_break_the_scan(cluster, cni_bin_dir):
    """Defect 4: a page full of foreign keys (more ``.bak`` keys after the one free
    address, written by hand, than one read returns) among the address keys; the
    free address is found."""
    from cni_plugins_builtin.cluster_ipam.allocate import SCAN_PAGE
    from cni_plugins_builtin.cluster_ipam.config import load_cluster
    from cni_plugins_builtin.cluster_ipam.etcd import Etcd

    config = net_config(cluster, ranges=[[{"subnet": "10.34.0.0/24", "rangeStart": "10.34.0.10",
                                           "rangeEnd": "10.34.0.209"}]])
    settings = load_cluster(config)
    keys = Keys(settings.prefix, settings.network)
    free = ipaddress.ip_address("10.34.0.107")

    def fill():
        etcd = Etcd(settings.etcd)
        taken = [keys.ip(ipaddress.ip_address(f"10.34.0.{host}")) for host in range(10, 210) if host != 107]
        foreign = [f"{keys.ip(free)}.bak{n:05d}" for n in range(SCAN_PAGE + 100)]
        everything = taken + foreign
        for start in range(0, len(everything), 100):
            ops = [{"request_put": {"key": b64(key), "value": b64("{}")}} for key in everything[start:start + 100]]
            etcd.call("kv/txn", {"compare": [], "success": ops, "failure": []})

    cluster.run(fill)
    out = run(cluster, cni_bin_dir, "ADD", config).ok().json
    assert out["ips"][0]["address"] == "10.34.0.107/24"
    full = run(cluster, cni_bin_dir, "ADD", config, cid="second")
    assert full.error.code == 999 and "no IP addresses available" in full.error.msg


CORRUPTED = {
    "address not an IP": b'{"containerID":"ctr1","ifname":"eth0","node":"node-a",'
                         b'"ips":[{"address":"not-an-ip","gateway":""}],"created":1}',
    "address outside the ranges": b'{"containerID":"ctr1","ifname":"eth0","node":"node-a",'
                                  b'"ips":[{"address":"192.0.2.9/24","gateway":""}],"created":1}',
    "another container's record": b'{"containerID":"other","ifname":"eth0","node":"node-a",'
                                  b'"ips":[{"address":"10.35.0.9/24","gateway":"10.35.0.1"}],"created":1}',
    "no addresses": b'{"containerID":"ctr1","ifname":"eth0","node":"node-a","ips":[],"created":1}',
    "created is a list": b'{"containerID":"ctr1","ifname":"eth0","node":"node-a",'
                         b'"ips":[{"address":"10.35.0.9/24","gateway":"10.35.0.1"}],"created":[]}',
    "not JSON": b"not json",
}


@pytest.mark.parametrize("case", sorted(CORRUPTED))
def test_a_repeated_add_refuses_a_corrupted_record(cluster, cni_bin_dir, case):
    """Defect 9: the stored record is checked before it is returned as an ADD's result."""
    config = net_config(cluster, ranges=[[{"subnet": "10.35.0.0/24"}]])
    run(cluster, cni_bin_dir, "ADD", config, args="IP=10.35.0.9").ok()
    keys = Keys("/cni-ipam/v1", config["name"])
    put_raw(cluster, config, keys.attachment("node-a", "ctr1", "eth0"), CORRUPTED[case])
    out = run(cluster, cni_bin_dir, "ADD", config)
    assert out.code != 0 and out.error.code == 999, out
    assert "the stored attachment" in out.error.msg and "is not valid" in out.error.msg
    assert b"Traceback" not in out.stdout + out.stderr


def write_conflists(tmp_path, *configs):
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir(exist_ok=True)
    for i, config in enumerate(configs):
        (conf_dir / f"{10 + i}-{config['name']}.conflist").write_text(json.dumps(
            {"cniVersion": "1.1.0", "name": config["name"],
             "plugins": [{"type": "bridge", "bridge": "x0", "ipam": config["ipam"]}]}))
    return conf_dir


def cnitool_in(cluster, conf_dir, *argv):
    from click.testing import CliRunner

    from cnicore.cli.commands import main

    return cluster.run(lambda: CliRunner().invoke(main, list(argv), env={"NETCONFPATH": str(conf_dir)}))


@pytest.mark.parametrize("activity", ["an ADD", "a GC"])
def test_reap_node_refuses_a_live_node_unless_forced(cluster, cni_bin_dir, tmp_path, activity):
    """Defect 6: a node seen recently (an attachment created, or its GC's liveness key)
    is not reaped: its containers may still use their addresses."""
    config = net_config(cluster, ranges=[[{"subnet": "10.36.0.0/24"}]], node="node-live")
    conf_dir = write_conflists(tmp_path, config)
    if activity == "an ADD":
        run(cluster, cni_bin_dir, "ADD", config, cid="c1").ok()
    else:
        put_raw(cluster, config, Keys("/cni-ipam/v1", config["name"]).attachment("node-live", "old", "eth0"),
                b'{"containerID":"old","ifname":"eth0","node":"node-live","ips":[],"created":1}')
        out = run(cluster, cni_bin_dir, "GC", dict(config, **{"cni.dev/valid-attachments": [
            {"containerID": "old", "ifname": "eth0"}]}))
        assert out.code == 0, out
    def revisions():
        records, ips = state(cluster, config)
        return {who: revision for who, (_, revision) in records.items()}, ips

    before = revisions()
    assert before[0]
    refused = cnitool_in(cluster, conf_dir, "ipam", "reap-node", "node-live")
    assert refused.exit_code == 1 and "node node-live was active" in refused.output, refused.output
    assert revisions() == before
    idle = cnitool_in(cluster, conf_dir, "ipam", "reap-node", "node-live", "--idle-seconds", "0")
    assert idle.exit_code == 0, idle.output
    assert revisions() == ({}, {})


def test_orphan_address_keys_are_reported_swept_by_show_and_by_gc(cluster, cni_bin_dir, tmp_path):
    """Defect 7: an attachment key deleted by hand leaves its address key; `ipam show`
    reports it (not as used) and `--sweep` deletes it; the node's GC sweeps its own."""
    from cni_plugins_builtin.cluster_ipam.config import load_cluster
    from cni_plugins_builtin.cluster_ipam.etcd import Etcd

    config = net_config(cluster, ranges=[[{"subnet": "10.37.0.0/28"}]])
    other = dict(config, ipam=dict(config["ipam"], nodeName="node-b"))
    conf_dir = write_conflists(tmp_path, config)
    for cid, ip in (("keep", "10.37.0.2"), ("lost-a", "10.37.0.3")):
        run(cluster, cni_bin_dir, "ADD", config, cid=cid, args=f"IP={ip}").ok()
    run(cluster, cni_bin_dir, "ADD", other, cid="lost-b", args="IP=10.37.0.4").ok()
    settings = load_cluster(config)
    keys = Keys(settings.prefix, settings.network)
    for node, cid in (("node-a", "lost-a"), ("node-b", "lost-b")):
        key = keys.attachment(node, cid, "eth0")
        cluster.run(lambda key=key: Etcd(settings.etcd).call("kv/deleterange", {"key": b64(key)}))
    shown = cnitool_in(cluster, conf_dir, "ipam", "show", config["name"], "--json")
    report = json.loads(shown.output)
    assert report["orphans"] == ["10.37.0.3", "10.37.0.4"] and report["ranges"][0]["used"] == 1
    gc = dict(config, **{"cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"}]})
    assert run(cluster, cni_bin_dir, "GC", gc).code == 0
    assert sorted(state(cluster, config)[1]) == ["10.37.0.2", "10.37.0.4"]  # node-a's own orphan only
    swept = cnitool_in(cluster, conf_dir, "ipam", "show", config["name"], "--sweep")
    assert swept.exit_code == 0 and "orphan address keys, deleted: 10.37.0.4" in swept.output, swept.output
    records, ips = state(cluster, config)
    assert sorted(ips) == ["10.37.0.2"]
    assert_consistent(records, ips)
    assert_index_matches_keys(cluster, config)


def test_reap_node_continues_past_an_unreachable_network_and_reports(cluster, cni_bin_dir, tmp_path):
    """Defect 10: without --network every network is tried; each outcome is printed."""
    reachable = net_config(cluster, ranges=[[{"subnet": "10.38.0.0/24"}]], node="node-gone")
    unreachable = net_config(cluster, ranges=[[{"subnet": "10.39.0.0/24"}]], node="node-gone",
                             endpoints=["http://127.0.0.1:9"], timeout=0.5)
    run(cluster, cni_bin_dir, "ADD", reachable, cid="c1").ok()
    conf_dir = write_conflists(tmp_path, unreachable, reachable)  # the unreachable one first
    out = cnitool_in(cluster, conf_dir, "ipam", "reap-node", "node-gone", "--force")
    assert out.exit_code == 1, out.output
    assert f"{unreachable['name']}: not reaped: etcd cluster unavailable" in out.output
    assert f"{reachable['name']}: released 1 attachment(s) of node node-gone" in out.output
    assert "1 of 2 network(s) not reaped" in out.output
    assert state(cluster, reachable) == ({}, {})


def fill_legacy(etcd, keys, values, value=b"{}"):
    """Address keys as a release before the index wrote them (no bitmaps, no marker)."""
    for start in range(0, len(values), 120):
        ops = [{"request_put": {"key": b64(keys.ip(ipaddress.ip_address(v))), "value": b64(value)}}
               for v in values[start:start + 120]]
        etcd.call("kv/txn", {"compare": [], "success": ops, "failure": []})


@pytest.mark.parametrize("layout", ["empty", "90% random", "90% contiguous", "full"])
def test_add_requests_do_not_grow_with_occupancy_and_a_full_pool_is_one_read(cluster, layout):
    """Issue 19: an ADD in a /18 costs the same etcd requests at any occupancy — the
    first read (attachment key, index marker, the set's summaries and edge bitmaps,
    the guess's bitmap) and the transaction, at most one more read of a bitmap when
    the guess's is full — and a full pool is answered "no IP addresses available"
    from that first read alone (before the index: an exact scan, ~20 reads). The
    pool is filled as a release before the index left it (address keys only): the
    first ADD builds the index, which then equals the keys."""
    import random as random_mod

    from cni_plugins_builtin.cluster_ipam import allocate
    from cni_plugins_builtin.cluster_ipam.config import load_config
    from cni_plugins_builtin.cluster_ipam.etcd import Etcd
    from cnicore.errors import CNIError

    net = ipaddress.ip_network("10.40.0.0/18")
    config = net_config(cluster, ranges=[[{"subnet": str(net)}]], timeout=30)
    conf, settings = load_config(config)
    keys = Keys(settings.prefix, settings.network)
    hosts = list(range(int(net.network_address) + 2, int(net.broadcast_address)))
    fill = {"empty": [], "90% random": random_mod.Random(7).sample(hosts, int(len(hosts) * 0.9)),
            "90% contiguous": hosts[:int(len(hosts) * 0.9)], "full": hosts}[layout]

    class Counting(Etcd):
        calls = 0

        def call(self, path, body):
            Counting.calls += 1
            return super().call(path, body)

    def fill_and_add():
        etcd = Etcd(settings.etcd)
        fill_legacy(etcd, keys, fill)
        counts, refusals = [], []
        for i in range(11):
            Counting.calls = 0
            try:
                record = allocate.allocate(Counting(settings.etcd), conf, settings, f"c{i}", "eth0")
                assert record.addresses()[0] in net
            except CNIError as exc:
                refusals.append(exc.msg)
            counts.append(Counting.calls)
        return counts, refusals

    counts, refusals = cluster.run(fill_and_add)
    steady = counts[1:]  # the first ADD built the index from the keys
    if layout == "full":
        assert len(refusals) == 11 and all("no IP addresses available in range set" in r for r in refusals)
        assert steady == [1] * 10, steady
    else:
        assert not refusals, refusals
        assert max(steady) <= 3 and sum(steady) <= 1.5 * 2 * len(steady), steady
    if layout == "empty":
        assert steady == [2] * 10, steady
    assert_index_matches_keys(cluster, config)


def test_concurrent_adds_on_a_pool_without_index_build_it_once_and_never_duplicate(cluster, tmp_path):
    """A pool written before the index (address keys and records, no bitmaps): ADDs
    from three nodes at once each find no index; one builds it under the build key
    while the others wait, and nothing is handed out twice; the index then equals
    the keys."""
    from cni_plugins_builtin.cluster_ipam.config import load_cluster
    from cni_plugins_builtin.cluster_ipam.etcd import Etcd
    from cni_plugins_builtin.cluster_ipam.index import Index
    from cni_plugins_builtin.cluster_ipam.model import prefix_end

    config = net_config(cluster, ranges=[[{"subnet": "10.41.0.0/22"}]], timeout=10)  # 1,021 addresses
    first = collect(start_nodes(cluster, config, tmp_path, [("node-a", 300, "old")]))
    assert all(line["ok"] for line in first)
    settings = load_cluster(config)
    index = Index(Keys(settings.prefix, settings.network))

    def drop_index():
        etcd = Etcd(settings.etcd)
        etcd.call("kv/deleterange", {"key": b64(index.root), "range_end": b64(prefix_end(index.root))})
        etcd.call("kv/deleterange", {"key": b64(index.marker_key)})

    cluster.run(drop_index)
    assert not index_state(cluster, config)[2]
    plan = [(f"node-{n}", 60, f"{n}{p}") for n in "abc" for p in range(2)]
    lines = collect(start_nodes(cluster, config, tmp_path, plan))
    ok = [line for line in lines if line["ok"]]
    assert len(ok) == len(lines) == 360, [line for line in lines if not line["ok"]][:3]
    acked = [ip for line in first + ok for ip in line["ips"]]
    assert len(acked) == len(set(acked)) == 660
    records, ips = state(cluster, config)
    assert_consistent(records, ips)
    assert_index_matches_keys(cluster, config)
    full = collect(start_nodes(cluster, config, tmp_path, [("node-a", 200, f"more{n}") for n in range(2)]))
    assert sum(line["ok"] for line in full) == 1021 - 660
    assert all("no IP addresses available" in line["msg"] for line in full if not line["ok"])
    assert_index_matches_keys(cluster, config)


def test_an_address_key_the_index_does_not_know_is_mended_by_the_add_that_meets_it(cluster, cni_bin_dir):
    """An address key written after the index was built by a writer that does not keep it
    (a release before the index, in a mixed cluster): the ADD whose transaction meets it
    sets its bit; the pool still fills to the last address and is then answered as full."""
    from cni_plugins_builtin.cluster_ipam.config import load_cluster
    from cni_plugins_builtin.cluster_ipam.etcd import Etcd

    config = net_config(cluster, ranges=[[{"subnet": "10.42.0.0/28"}]])  # .2-.14: 13 addresses
    run(cluster, cni_bin_dir, "ADD", config, cid="first", args="IP=10.42.0.2").ok()
    settings = load_cluster(config)
    keys = Keys(settings.prefix, settings.network)
    cluster.run(lambda: fill_legacy(Etcd(settings.etcd), keys, [f"10.42.0.{h}" for h in range(3, 14)],
                                    value=b'{"containerID":"old","ifname":"eth0","node":"node-old"}'))
    out = run(cluster, cni_bin_dir, "ADD", config, cid="second").ok().json
    assert out["ips"][0]["address"] == "10.42.0.14/28"
    full = run(cluster, cni_bin_dir, "ADD", config, cid="third")
    assert full.error.code == 999 and "no IP addresses available" in full.error.msg, full
    assert_index_matches_keys(cluster, config)


def test_a_build_left_by_a_dead_builder_is_taken_over_and_a_live_one_waited_for(cluster, cni_bin_dir):
    """A node that died building the index leaves its build key and some bitmaps (here:
    wrong ones): the next ADD waits while the build key is fresh (code 11 at the end of
    its budget, nothing written), takes the build over once it is stale, and the index
    it builds equals the keys."""
    from cni_plugins_builtin.cluster_ipam import index as idx
    from cni_plugins_builtin.cluster_ipam.config import load_cluster
    from cni_plugins_builtin.cluster_ipam.etcd import Etcd

    config = net_config(cluster, ranges=[[{"subnet": "10.43.0.0/24"}]], timeout=1)
    settings = load_cluster(config)
    keys = Keys(settings.prefix, settings.network)
    index = idx.Index(keys)
    cluster.run(lambda: fill_legacy(Etcd(settings.etcd), keys, [f"10.43.0.{h}" for h in range(2, 200)]))
    garbage = index.chunk_key(4, int(ipaddress.ip_address("10.43.0.200")) >> idx.CHUNK_SHIFT)
    put_raw(cluster, config, garbage, b"\xff" * 8)
    put_raw(cluster, config, index.build_key, json.dumps({"at": time.time()}).encode())
    waited = run(cluster, cni_bin_dir, "ADD", config, cid="early")
    assert waited.error.code == 11 and "being built by another node" in waited.error.details, waited
    assert "10.43.0.200" not in state(cluster, config)[1]
    put_raw(cluster, config, index.build_key, json.dumps({"at": time.time() - idx.BUILD_STALE_SECONDS - 1}).encode())
    out = run(cluster, cni_bin_dir, "ADD", config, cid="late").ok().json
    assert int(out["ips"][0]["address"].split(".")[3].split("/")[0]) >= 200
    assert_index_matches_keys(cluster, config)
