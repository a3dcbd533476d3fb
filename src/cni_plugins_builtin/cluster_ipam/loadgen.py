"""One simulated node's ADDs, for the cluster tests and the benchmark.

``python -m cni_plugins_builtin.cluster_ipam.loadgen --config FILE --node N
--count K --prefix P --netns PATH [--launcher PATH] [--threads T]`` runs K ADDs with
container IDs ``P-0``.. ``P-(K-1)`` and prints one JSON line per ADD as soon
as it is answered: ``{"cid", "ok", "ips", "code", "msg", "ms", "t0"}`` (``t0``: wall-clock start) (``ok``:
the ADD was acknowledged to the runtime). With ``--launcher`` each ADD execs
the launcher, as a runtime does (the cold path); without it the plugin runs
in this process through ``skel.run``, as a warm server's worker would. The
config's ``ipam.nodeName`` is set to ``--node``. ``--threads`` splits the
ADDs over that many concurrent clients; ``--start-at`` lines several
processes up once their imports are done; ``--rate R`` paces each
client to R ADDs per second (ADD n starts at ``start-at + n / R``, or as
soon as the one before is answered if that is later), so latency can be
measured at a given load rather than at saturation; ``--until T`` starts no
ADD after wall-clock time T (the run then lasts as long as a test's fault
schedule, however fast the machine, with ``--count`` only a bound). A last line ``{"cpu": seconds}``
gives the CPU time this process and its launchers used.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable


def _one(add: Callable[[dict[str, str]], tuple[int, bytes]], cid: str, netns: str, lock: threading.Lock) -> None:
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": cid, "CNI_IFNAME": "eth0",
           "CNI_NETNS": netns, "CNI_PATH": "/nonexistent"}
    wall, start = time.time(), time.perf_counter()
    code, out = add(env)
    ms = (time.perf_counter() - start) * 1000
    line: dict[str, Any] = {"cid": cid, "ok": code == 0, "ms": round(ms, 2), "t0": wall}
    try:
        answer = json.loads(out) if out else {}
    except ValueError:
        answer = {"msg": out.decode("utf-8", "replace")[:300]}
    if code == 0:
        line["ips"] = [ip["address"] for ip in answer.get("ips", [])]
    else:
        line["code"], line["msg"] = answer.get("code"), answer.get("msg", "") + " " + answer.get("details", "")
    with lock:
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--node", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--launcher", default="")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--netns", required=True, help="CNI_NETNS (not this process's own namespace)")
    parser.add_argument("--start-at", type=float, default=0.0, help="wall-clock time to start ADDing at")
    parser.add_argument("--rate", type=float, default=0.0, help="ADDs per second per client (0: back to back)")
    parser.add_argument("--until", type=float, default=0.0, help="wall-clock time after which no ADD starts")
    args = parser.parse_args(argv)
    with open(args.config, "rb") as fh:
        config = json.load(fh)
    config["ipam"]["nodeName"] = args.node
    stdin = json.dumps(config).encode()

    if args.launcher:
        def add(env: dict[str, str]) -> tuple[int, bytes]:
            proc = subprocess.run([args.launcher], input=stdin, env=dict(os.environ, **env), capture_output=True)
            return proc.returncode, proc.stdout
    else:
        # In-process mode only: a run through launchers must not pay for them (its CPU is reported).
        import cni_plugins_builtin.cluster_ipam.transport  # noqa: F401 - loaded once up front, as a warm server would
        from cni_plugins_builtin.cluster_ipam import allocate, plugin  # noqa: F401
        from cnicore import skel
        from cnicore.host import PluginHost

        host = PluginHost(plugin, "cluster-ipam")

        def add(env: dict[str, str]) -> tuple[int, bytes]:
            code, out, _ = skel.run(host, dict(os.environ, **env), stdin)
            return code, out

    lock = threading.Lock()
    cids = [f"{args.prefix}-{i}" for i in range(args.count)]

    time.sleep(max(0.0, args.start_at - time.time()))
    began = time.monotonic()

    def worker(part: list[str]) -> None:
        for n, cid in enumerate(part):
            if args.rate > 0:
                time.sleep(max(0.0, began + n / args.rate - time.monotonic()))
            if args.until and time.time() >= args.until:
                return
            _one(add, cid, args.netns, lock)

    threads = [threading.Thread(target=worker, args=(cids[i::args.threads],)) for i in range(args.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    used = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    sys.stdout.write(json.dumps({"cpu": round(sum(u.ru_utime + u.ru_stime for u in used), 3)}) + "\n")


if __name__ == "__main__":
    main()
