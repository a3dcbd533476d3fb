#!/usr/bin/env python3
"""Warm-server benchmark: native launchers and libcni's warm path, side by side with Go.

One run, everything interleaved round by round, from a private host
namespace (the server runs in a throwaway namespace of its own):

* VERSION exec: Go's loopback, our native launcher with the server, our
  Python launcher (the cold path);
* the bridge + host-local + tuning chain exec by exec (ADD, then DEL): Go's
  plugins, our native launchers with the server, our Python launchers;
* the same chain through a runtime library: Go's libcni (a driver of ours
  timing the library call itself, its process start excluded) with Go's
  plugins, and our libcni in this process with the server;
* the server's footprint: RSS of the parent and of an idle worker (its
  private pages), and its CPU time over an idle interval.

Medians and p90 in milliseconds, and ratios ours/Go. Run as root from the
repo: ``sudo .venv/bin/python bench/server_bench.py [--rounds 30] [--json FILE]``.
cnicore is installed non-editable into a scratch venv first (compiled
bytecode; PYTHONDONTWRITEBYTECODE is set on these machines).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from exec_bench import GO_DIR, build_venv, median_p90_ms  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOPATH = "/usr/share/gocode"


def chain(kind: str, work: str) -> dict[str, object]:
    subnet = {"go": "10.243.0.0/16", "warm": "10.244.0.0/16", "cold": "10.245.0.0/16",
              "golib": "10.246.0.0/16", "ourlib": "10.247.0.0/16"}[kind]
    return {"cniVersion": "1.0.0", "name": f"bench-{kind}", "plugins": [
        {"type": "bridge", "bridge": f"br-{kind}", "isGateway": True, "ipMasq": False,
         "ipam": {"type": "host-local", "subnet": subnet, "dataDir": os.path.join(work, "ipam", kind)}},
        {"type": "tuning", "sysctl": {"net.ipv4.conf.IFNAME.arp_ignore": "1"}, "mtu": 1400}]}


def build_golibcni(work: str) -> str | None:
    out = os.path.join(work, "golibcni")
    env = dict(os.environ, GO111MODULE="off", GOPATH=GOPATH, GOFLAGS="", GOCACHE=os.path.join(work, "gocache"))
    done = subprocess.run(["go", "build", "-o", out, "."], cwd=os.path.join(REPO, "tests", "go", "golibcni"),
                          env=env, capture_output=True, text=True)
    return out if done.returncode == 0 else None


def exec_chain(paths: list[str], conflist: dict[str, object], command: str, container: str, netns: str) -> None:
    """The chain as a runtime execs it, plugin by plugin (prevResult threaded through)."""
    from cnicore import invoke

    prev = None
    plugins = conflist["plugins"]
    assert isinstance(plugins, list)
    for plugin in plugins if command == "ADD" else reversed(plugins):
        conf = dict(plugin, name=conflist["name"], cniVersion=conflist["cniVersion"])
        if prev is not None:
            conf["prevResult"] = prev
        path = os.path.join(paths[0], str(conf["type"]))
        args = invoke.Args(command, container, netns, "eth0", path=":".join(paths))
        data = json.dumps(conf).encode()
        env = args.as_env({k: v for k, v in os.environ.items() if not k.startswith("CNI_")})
        proc = subprocess.run([path], input=data, env=env, capture_output=True)
        if proc.returncode != 0:
            raise SystemExit(f"{path} {command} failed: {proc.stdout!r} {proc.stderr!r}")
        if command == "ADD":
            prev = json.loads(proc.stdout)


def exec_version(path: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CNI_", "PYTHON"))}
    env["CNI_COMMAND"] = "VERSION"
    proc = subprocess.run([path], env=env, capture_output=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise SystemExit(f"{path} VERSION failed: {proc.stdout!r}")


def footprint(pid: int, workers: list[int]) -> dict[str, float]:
    def status_kib(p: int, key: str) -> int:
        with open(f"/proc/{p}/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        return 0

    def private_kib(p: int) -> int:
        with open(f"/proc/{p}/smaps_rollup") as fh:
            return sum(int(line.split()[1]) for line in fh if line.startswith(("Private_Clean", "Private_Dirty")))

    def cpu_ticks() -> int:
        total = 0
        for p in [pid, *workers]:
            with open(f"/proc/{p}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        return total

    before = cpu_ticks()
    time.sleep(5)
    idle_ticks = cpu_ticks() - before
    return {"parent_rss_mb": status_kib(pid, "VmRSS") / 1024,
            "idle_worker_private_mb": max(private_kib(w) for w in workers) / 1024 if workers else 0.0,
            "idle_cpu_ticks_in_5s": idle_ticks}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--venv", default=os.path.join(tempfile.gettempdir(), "cnicore-bench-venv"))
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    opts = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 1
    venv_bin = build_venv(opts.venv)
    sys.path.insert(0, os.path.join(REPO, "src"))
    from cnicore.libcni import CNIConfig, RuntimeConf, conf_list_from_dict
    from cnicore.testing import Sandbox, WarmServer

    work = tempfile.mkdtemp(prefix="cnicore-bench-server-")
    python = os.path.join(venv_bin, "python3")
    samples: dict[str, list[float]] = {}

    def sample(name: str, seconds: float) -> None:
        samples.setdefault(name, []).append(seconds)

    try:
        golibcni = build_golibcni(work)
        server = WarmServer(os.path.join(work, "server"), workers=opts.workers, python=python,
                            prefix="cnitest-bench-srv")
        try:
            # The scratch venv's own launchers (compiled), written by its own cnitool.
            warm_dir, cold_dir = os.path.join(work, "warm"), os.path.join(work, "cold")
            for directory, flags in ((warm_dir, ["--native", "--socket", server.socket]), (cold_dir, ["--python"])):
                subprocess.run([os.path.join(venv_bin, "cnitool"), "plugins", "install", directory, *flags],
                               check=True, stdout=subprocess.DEVNULL)
            setups = {"go": [GO_DIR], "warm": [warm_dir, GO_DIR], "cold": [cold_dir, GO_DIR]}
            with Sandbox("cnitest-bench") as sandbox:
                conflists = {kind: chain(kind, work) for kind in (*setups, "golib", "ourlib")}
                ourlib = CNIConfig([warm_dir, GO_DIR], cache_dir=os.path.join(work, "cache-ours"))
                conf_ourlib = conf_list_from_dict(conflists["ourlib"])
                golib_file = os.path.join(work, "golib.conflist")
                with open(golib_file, "w") as fh:
                    json.dump(conflists["golib"], fh)

                def rounds() -> None:
                    for index in range(opts.rounds):
                        for kind, paths in setups.items():
                            start = time.perf_counter()
                            exec_version(os.path.join(paths[0], "loopback"))
                            sample(f"VERSION {kind}", time.perf_counter() - start)
                        for kind, paths in setups.items():
                            ctr = sandbox.container()
                            for command in ("ADD", "DEL"):
                                start = time.perf_counter()
                                exec_chain(paths, conflists[kind], command, f"b{index}", ctr.path)
                                sample(f"chain {command} {kind}", time.perf_counter() - start)
                            ctr.remove()
                        ctr = sandbox.container()
                        rt = RuntimeConf(f"b{index}", ctr.path, "eth0")
                        for command, call in (("ADD", ourlib.add_network_list), ("DEL", ourlib.del_network_list)):
                            start = time.perf_counter()
                            call(conf_ourlib, rt)
                            sample(f"libcni {command} ours", time.perf_counter() - start)
                        ctr.remove()
                        if golibcni:
                            ctr = sandbox.container()
                            for command in ("add", "del"):
                                env = dict(os.environ, CNI_PATH=GO_DIR, GOLIBCNI_TIMING="1")
                                done = subprocess.run([golibcni, command, golib_file, f"b{index}", ctr.path, "eth0",
                                                       os.path.join(work, "cache-go")], env=env,
                                                      capture_output=True, text=True)
                                if done.returncode != 0:
                                    raise SystemExit(f"golibcni {command}: {done.stderr}")
                                elapsed = int(done.stderr.split("elapsed_ns")[-1].split()[0]) / 1e9
                                sample(f"libcni {command.upper()} go", elapsed)
                            ctr.remove()

                sandbox.host.do(rounds)
            time.sleep(0.5)  # let the replacements of the last workers settle
            foot = footprint(server.pid, server.workers())
        finally:
            server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    figures: dict[str, dict[str, float]] = {}
    for name, values in sorted(samples.items()):
        median, p90 = median_p90_ms(values)
        figures[name] = {"median_ms": round(median, 2), "p90_ms": round(p90, 2)}
    rows = [("VERSION exec", "VERSION go", "VERSION warm", "VERSION cold"),
            ("chain ADD, exec by exec", "chain ADD go", "chain ADD warm", "chain ADD cold"),
            ("chain DEL, exec by exec", "chain DEL go", "chain DEL warm", "chain DEL cold"),
            ("chain ADD through libcni", "libcni ADD go", "libcni ADD ours", ""),
            ("chain DEL through libcni", "libcni DEL go", "libcni DEL ours", "")]
    print(f"warm server benchmark, {opts.rounds} rounds interleaved, {opts.workers} idle workers")
    print("| | Go | cnicore warm | ratio | cnicore cold | ratio |")
    print("|---|---|---|---|---|---|")
    for label, go, warm, cold in rows:
        if go not in figures:
            continue
        g, w = figures[go]["median_ms"], figures[warm]["median_ms"]
        cold_cells = f"{figures[cold]['median_ms']:.1f} ms | {figures[cold]['median_ms'] / g:.2f}x" if cold else "- | -"
        print(f"| {label} | {g:.1f} ms | {w:.1f} ms | {w / g:.2f}x | {cold_cells} |")
    print(f"server: parent RSS {foot['parent_rss_mb']:.1f} MB, idle worker private "
          f"{foot['idle_worker_private_mb']:.1f} MB, CPU ticks while idle for 5 s: {foot['idle_cpu_ticks_in_5s']}")
    if opts.json:
        with open(opts.json, "w") as fh:
            json.dump({"rounds": opts.rounds, "figures": figures, "server": foot}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
