#!/usr/bin/env python3
"""cluster-ipam benchmark: ADD/s and latency at 16 concurrent clients on 3 nodes, and a leader kill.

A 3-member etcd cluster (Debian's etcd-server) runs on 127.0.0.1 of a
private network namespace; 16 client processes, spread over 3 simulated
nodes (different ``nodeName``), ADD as fast as they are answered from one
/16 pool. Phases:

* ``in-process`` — each client runs the plugin in its own process through
  ``skel.run`` in a loop (imports paid once, connections kept): the floor;
* ``server`` — each ADD execs a native launcher served by the warm server
  (``cnitool daemon``, 8 idle workers, ``CNICORE_SERVER_PRELOAD=cluster-ipam``),
  as a runtime with the server does;
* ``server at 100/s`` — as ``server``, the 16 clients paced to 100 ADD/s in all:
  the latency at the target load;
* ``cold`` — each ADD execs the Python launcher, as a runtime without the
  warm server does (interpreter start + imports per ADD);
* ``server, 90 % random`` / ``server, 90 % contiguous`` — as ``server``, in a
  pool filled beforehand to 90 % (address keys written directly), spread at
  random or from the start of the range: allocation must not cost more as
  the pool fills (issue 19);
* ``raw limit`` — the same 16 clients sending only one ADD's etcd work (a
  linearizable read + a guarded two-key transaction over ``http.client``,
  as cluster-ipam does) in a loop: what this cluster serves Python clients
  at most, measured in the same run; the warm phases report their share of it;
* ``leader-kill`` — as ``server``, with the leader SIGKILLed one second in;
  then checked: no address acknowledged twice, every acknowledged allocation
  present in etcd (0 lost), no orphaned address key.

Reported per phase: ADDs, failures, ADD/s (acknowledged ADDs over the span
from the first start to the last answer), p50/p99/max latency.
Targets: >= 100 ADD/s (through the server, back to back) and p99 <= 50 ms (through the
server at 100 ADD/s, no faults); issue 19: the server phases at >= 0.5 of the raw limit at
empty, 90 % random and 90 % contiguous occupancy; during the kill
0 duplicates, 0 lost, worst ADD <= timeoutSeconds + 1 s.

Run as root from the repo: ``sudo .venv/bin/python bench/cluster_ipam_bench.py [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid

from measure import cpu_ticks

CLIENTS = 16
#: The aggregate rate of the paced phase: the throughput target, offered evenly by the
#: 16 clients, so its p99 is the latency at that load (back to back, 16 clients always
#: queue: latency is then 16 / throughput, Little's law).
PACED_RATE = 100.0
NODES = ("node-a", "node-b", "node-c")
TIMEOUT = 3
SUBNET = "10.128.0.0/16"
#: Occupancies of the server phases after the empty one: (name, layout).
FILLED = (("server, 90% random", "random"), ("server, 90% contiguous", "contiguous"))


def config(endpoints: list[str], name: str, subnet: str = SUBNET) -> dict[str, object]:
    return {"cniVersion": "1.1.0", "name": name,
            "ipam": {"type": "cluster-ipam", "etcd": {"endpoints": endpoints, "timeoutSeconds": TIMEOUT},
                     "ranges": [[{"subnet": subnet}]]}}


def fill(cluster: object, conf: dict[str, object], layout: str, share: float = 0.9) -> int:
    """Write address keys for ``share`` of the pool (``random`` or ``contiguous`` from its
    start), 120 to a transaction, as if ADDs had taken them, then build the allocation
    index from them (outside the timed phase, as the first ADD would); how many."""
    import ipaddress
    import random

    from cni_plugins_builtin.cluster_ipam.config import load_cluster
    from cni_plugins_builtin.cluster_ipam.etcd import Etcd, b64
    from cni_plugins_builtin.cluster_ipam.model import Keys

    settings = load_cluster(conf)
    keys = Keys(settings.prefix, settings.network)
    net = ipaddress.ip_network(conf["ipam"]["ranges"][0][0]["subnet"])  # type: ignore[index]
    hosts = list(range(int(net.network_address) + 2, int(net.broadcast_address)))  # .1 is the gateway
    count = int(len(hosts) * share)
    chosen = hosts[:count] if layout == "contiguous" else random.Random(19).sample(hosts, count)
    value = b64('{"containerID":"filler","ifname":"eth0","node":"filler"}')

    def write() -> None:
        from cni_plugins_builtin.cluster_ipam.index import build

        etcd = Etcd(settings.etcd)
        for start in range(0, len(chosen), 120):
            ops = [{"request_put": {"key": b64(keys.ip(ipaddress.ip_address(v))), "value": value}}
                   for v in chosen[start:start + 120]]
            etcd.call("kv/txn", {"compare": [], "success": ops, "failure": []})
        build(Etcd(settings.etcd, deadline=time.monotonic() + 120), keys)  # the allocation index, as a first ADD would

    cluster.run(write)  # type: ignore[attr-defined]
    return count


def raw_limit(cluster: object, workdir: str, per_client: int, meter: CPUMeter) -> dict[str, object]:
    """One ADD's etcd work, back to back from 16 processes over ``http.client``: ops/s, and
    the CPU it costs per op (the clients', reaped children of this process, and etcd's):
    the profile the server phases are held against."""
    from etcd_clients_bench import WORKER

    script = os.path.join(workdir, "raw_worker.py")
    with open(script, "w") as fh:
        fh.write(WORKER)
    url = cluster.endpoints[0]  # type: ignore[attr-defined]
    children_before, etcd_before = os.times(), meter.sample()[0]
    procs = [cluster.run(lambda i=i: subprocess.Popen(  # type: ignore[attr-defined]
        [sys.executable, "-I", script, "http.client", url, str(per_client), f"raw{i}-{uuid.uuid4().hex[:6]}", workdir],
        stdout=subprocess.PIPE, text=True)) for i in range(CLIENTS)]
    results = [json.loads(proc.communicate(timeout=600)[0]) for proc in procs]
    children_after, etcd_after = os.times(), meter.sample()[0]
    clients_cpu = (children_after.children_user + children_after.children_system
                   - children_before.children_user - children_before.children_system)
    lats = sorted(x for r in results for x in r["lat"])
    busiest = max(sum(r["lat"]) for r in results)
    return {"phase": "raw limit", "adds": len(lats), "failed": 0, "adds_per_s": round(len(lats) / busiest, 1),
            "p50_ms": round(lats[len(lats) // 2] * 1000, 1), "p99_ms": round(lats[int(len(lats) * 0.99)] * 1000, 1),
            "max_ms": round(lats[-1] * 1000, 1),
            "cpu_ms_per_add": {"clients": round(clients_cpu / len(lats) * 1000, 1), "server": 0,
                               "etcd": round((etcd_after - etcd_before) / len(lats) * 1000, 1)},
            "errors": []}


def run_clients(cluster: object, conf: dict[str, object], per_client: int, launcher: str, netns_path: str,
                workdir: str, fault: object = None, rate: float = 0.0) -> list[dict[str, object]]:
    path = os.path.join(workdir, f"{conf['name']}.json")
    with open(path, "w") as fh:
        json.dump(conf, fh)
    procs = []
    start_at = time.time() + (4.0 if launcher else 3.0)  # every client imported and waiting
    for i in range(CLIENTS):
        argv = [sys.executable, "-m", "cni_plugins_builtin.cluster_ipam.loadgen", "--config", path,
                "--node", NODES[i % len(NODES)], "--count", str(per_client), "--prefix", f"c{i}",
                "--netns", netns_path,
                # Paced clients start staggered, so the load is even rather than 16 at once.
                "--start-at", str(start_at + (i / rate if rate else 0.0))]
        if launcher:
            argv += ["--launcher", launcher]
        if rate:
            argv += ["--rate", str(rate / CLIENTS)]
        procs.append(cluster.run(lambda argv=argv: subprocess.Popen(  # type: ignore[attr-defined]
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)))
    if fault is not None:
        time.sleep(max(0.0, start_at - time.time()) + 1.0)
        fault()  # type: ignore[operator]
    lines = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(err.decode()[-2000:])
        lines += [json.loads(line) for line in out.decode().splitlines()]
    return lines


def cpu_seconds(pid: int, children: bool = False) -> float:
    """utime + stime of a process (and of its reaped children) from /proc."""
    return cpu_ticks(pid, children) / os.sysconf("SC_CLK_TCK")


class CPUMeter:
    """CPU spent per component during one phase: etcd members, the warm server, the clients."""

    def __init__(self, cluster: object, server: object) -> None:
        self.cluster = cluster
        self.server = server

    def sample(self) -> tuple[float, float]:
        """etcd's CPU, and the server's: its parent, its reaped workers and (since workers
        serve many requests) the ones still alive."""
        etcd = sum(cpu_seconds(m.proc.pid) for m in self.cluster.members if m.running)  # type: ignore[attr-defined]
        server = cpu_seconds(self.server.pid, children=True)  # type: ignore[attr-defined]
        for worker in self.server.workers():  # type: ignore[attr-defined]
            try:
                server += cpu_seconds(worker)
            except OSError:  # exited meanwhile: its time is in the parent's children's now
                pass
        return etcd, server


def summarize(phase: str, lines: list[dict[str, object]], before: tuple[float, float] = (0.0, 0.0),
              after: tuple[float, float] = (0.0, 0.0)) -> dict[str, object]:
    clients_cpu = sum(float(line["cpu"]) for line in lines if "cpu" in line)  # type: ignore[arg-type]
    lines = [line for line in lines if "cid" in line]
    acked = [line for line in lines if line["ok"]]
    ms = sorted(float(line["ms"]) for line in lines)  # type: ignore[arg-type]
    first = min(float(line["t0"]) for line in lines)  # type: ignore[arg-type]
    last = max(float(line["t0"]) + float(line["ms"]) / 1000 for line in lines)  # type: ignore[arg-type]

    def pct(p: float) -> float:
        return round(ms[min(len(ms) - 1, int(p * len(ms)))], 1)

    return {"phase": phase, "adds": len(lines), "failed": len(lines) - len(acked),
            "adds_per_s": round(len(acked) / (last - first), 1), "p50_ms": pct(0.5), "p99_ms": pct(0.99),
            "max_ms": round(ms[-1], 1),
            "cpu_ms_per_add": {"clients": round(clients_cpu / len(lines) * 1000, 1),
                               "server": round((after[1] - before[1]) / len(lines) * 1000, 1),
                               "etcd": round((after[0] - before[0]) / len(lines) * 1000, 1)},
            "errors": sorted({str(line.get("msg", "")).strip()[:160] for line in lines if not line["ok"]})[:3]}


def verify(cluster: object, conf: dict[str, object], lines: list[dict[str, object]]) -> dict[str, int]:
    """Duplicates among acknowledged addresses, acknowledged ADDs missing in etcd, orphan keys."""
    from cni_plugins_builtin.cluster_ipam.config import load_cluster
    from cni_plugins_builtin.cluster_ipam.etcd import Etcd
    from cni_plugins_builtin.cluster_ipam.model import Attachment, Keys
    from cni_plugins_builtin.cluster_ipam.release import attachments

    settings = load_cluster(conf)
    keys = Keys(settings.prefix, settings.network)

    def read() -> tuple[dict[str, list[str]], set[str]]:
        etcd = Etcd(settings.etcd)
        records = {}
        for item in attachments(etcd, keys.attachments):
            record = Attachment.decode(item.value)
            records[record.container_id] = [a for a, _ in record.ips]
        ips = {str(keys.parse_ip(item.key)) for item in attachments(etcd, keys.ips)}
        return records, ips

    records, ips = cluster.run(read)  # type: ignore[attr-defined]
    acked = [line for line in lines if line["ok"]]
    addresses = [ip for line in acked for ip in line["ips"]]  # type: ignore[attr-defined]
    claimed = {a.split("/")[0] for held in records.values() for a in held}
    return {"duplicates": len(addresses) - len(set(addresses)),
            "lost": sum(1 for line in acked if records.get(line["cid"]) != line["ips"]),  # type: ignore[arg-type]
            "orphans": len(ips - claimed)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-client", type=int, default=60, help="ADDs per client, warm phases")
    parser.add_argument("--cold-per-client", type=int, default=8, help="ADDs per client, cold phase")
    parser.add_argument("--subnet", default=SUBNET, help="the pool (the occupancy phases fill 90 %% of it)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root (private network namespaces)", file=sys.stderr)
        return 2

    from cni_plugins_builtin.cluster_ipam.localcluster import LocalCluster
    from cnicore.cli.install import install
    from cnicore.ns import new_netns
    from cnicore.testing import WarmServer

    load = os.getloadavg()[0]
    results = []
    with tempfile.TemporaryDirectory(prefix="cipam-bench-") as workdir:
        install(os.path.join(workdir, "bin"))
        launcher = os.path.join(workdir, "bin", "cluster-ipam")
        server = WarmServer(os.path.join(workdir, "server"), workers=8, prefix="cnibench-srv",
                            extra_env={"CNICORE_SERVER_PRELOAD": "cluster-ipam"})
        install(os.path.join(workdir, "native"), kind="native", socket=server.socket)
        native = os.path.join(workdir, "native", "cluster-ipam")
        netns = new_netns(f"cnibench-etcd-{uuid.uuid4().hex[:8]}")
        ctr = new_netns(f"cnibench-ctr-{uuid.uuid4().hex[:8]}")
        cluster = LocalCluster(os.path.join(workdir, "etcd"), netns=netns)
        try:
            cluster.start()
            meter = CPUMeter(cluster, server)
            # The filled pools are written before the first timed phase: etcd digests ~120,000 new
            # keys for a while after, which would otherwise land on whichever phase comes next.
            filled_confs = []
            for filled, layout in FILLED:
                name = filled.replace(" ", "-").replace(",", "").replace("%", "")
                conf = config(cluster.endpoints, name, args.subnet)
                fill(cluster, conf, layout)
                filled_confs.append((filled, conf))
            time.sleep(5)
            paced = f"server at {PACED_RATE:g}/s"
            for phase, path, count, rate in (("in-process", "", args.per_client, 0.0),
                                             ("server", native, args.per_client, 0.0),
                                             (paced, native, args.per_client // 2, PACED_RATE),
                                             ("cold", launcher, args.cold_per_client, 0.0)):
                conf = config(cluster.endpoints, phase.replace(" ", "-").replace("/", ""), args.subnet)
                before = meter.sample()
                lines = run_clients(cluster, conf, count, path, ctr.path, workdir, rate=rate)
                results.append(summarize(phase, lines, before, meter.sample()))
                if phase == "server":  # the same work in fuller pools, then the limit, in this run
                    for filled, conf in filled_confs:
                        before = meter.sample()
                        lines = run_clients(cluster, conf, count, path, ctr.path, workdir)
                        results.append(summarize(filled, lines, before, meter.sample()))
                    results.append(raw_limit(cluster, workdir, args.per_client * 2, meter))
            killed = config(cluster.endpoints, "leader-kill", args.subnet)
            victim: list[object] = []

            def kill_leader() -> None:
                leader = cluster.leader()
                victim.append(leader.name)
                leader.kill(signal.SIGKILL)

            lines = run_clients(cluster, killed, args.per_client, native, ctr.path, workdir, kill_leader)
            cluster.restart_dead()
            row = summarize("leader-kill", lines)
            row.update(verify(cluster, killed, [line for line in lines if "cid" in line]))
            row["killed"] = victim[0]
            results.append(row)
        finally:
            cluster.stop()
            server.stop()
            ctr.remove()
            netns.remove()
        if server.refused():
            print(f"warning: the server refused requests (they ran cold):\n{server.refused()}", file=sys.stderr)

    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"cluster-ipam, {CLIENTS} clients on {len(NODES)} nodes, 3-member etcd on 127.0.0.1, "
          f"{os.cpu_count()} CPUs")
    print(f"load average before: {load:.1f} (other work on the machine skews every figure)")
    print(f"{'phase':<24} {'ADDs':>5} {'failed':>6} {'ADD/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}  "
          "CPU ms/ADD clients+server+etcd  checks")
    raw = next((float(r["adds_per_s"]) for r in results if r["phase"] == "raw limit"), 0.0)  # type: ignore[arg-type]
    for r in results:
        checks = ""
        if str(r["phase"]).startswith("server") and raw and "/s" not in str(r["phase"]):
            checks = f"{float(r['adds_per_s']) / raw:.2f} of the raw limit"  # type: ignore[arg-type]
        if "duplicates" in r:
            checks = f"duplicates={r['duplicates']} lost={r['lost']} orphans={r['orphans']} (killed {r['killed']})"
        cpu = r["cpu_ms_per_add"]
        share = f"{cpu['clients']}+{cpu['server']}+{cpu['etcd']}" if cpu["etcd"] else "-"  # type: ignore[index]
        print(f"{r['phase']:<24} {r['adds']:>5} {r['failed']:>6} {r['adds_per_s']:>7} {r['p50_ms']:>7} "
              f"{r['p99_ms']:>7} {r['max_ms']:>7}  {share:<31}  {checks}")
        for error in r["errors"]:  # type: ignore[attr-defined]
            print(f"{'':<24} failed: {error}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
