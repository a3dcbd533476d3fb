#!/usr/bin/env python3
"""Exec-path benchmark: cnicore launchers side by side with the Go reference plugins.

What a runtime pays per operation: one exec of the plugin binary. For each
operation the Go plugin (/usr/lib/cni) and our launcher are exec'd
alternately, N times each, from a private "host" namespace against a private
container namespace; we report the median and p90 wall time, the peak RSS
(``wait4`` rusage) and the ratio ours/Go.

Run as root from the repo: ``sudo .venv/bin/python bench/exec_bench.py``.
It installs cnicore *non-editable* into a scratch venv first, so the launchers
run compiled bytecode (PYTHONDONTWRITEBYTECODE is set on these machines and
would otherwise make every exec recompile).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GO_DIR = "/usr/lib/cni"


def build_venv(path: str) -> str:
    if not os.path.exists(os.path.join(path, "bin", "python")):
        subprocess.run([sys.executable, "-m", "venv", path], check=True)
    subprocess.run([os.path.join(path, "bin", "pip"), "install", "-q", "--disable-pip-version-check",
                    "--force-reinstall", "--no-deps", REPO], check=True)
    subprocess.run([os.path.join(path, "bin", "pip"), "install", "-q", "--disable-pip-version-check",
                    REPO], check=True)
    return os.path.join(path, "bin")


def install_launchers(venv: str) -> str:
    """cnicore installed (compiled) into ``venv``; its launchers in a fresh temp dir."""
    bin_dir = build_venv(venv)
    launcher_dir = tempfile.mkdtemp(prefix="cnicore-bench-bin-")
    subprocess.run([os.path.join(bin_dir, "cnitool"), "plugins", "install", launcher_dir], check=True,
                   stdout=subprocess.DEVNULL)
    sys.path.insert(0, os.path.join(REPO, "src"))
    return launcher_dir


def median_p90_ms(seconds: list[float]) -> tuple[float, float]:
    times = sorted(seconds)
    return statistics.median(times) * 1000, times[int(len(times) * 0.9) - 1] * 1000


def exec_once(path: str, env: dict[str, str], stdin: bytes) -> tuple[float, int]:
    """Wall seconds and exit status of one exec."""
    start = time.perf_counter()
    proc = subprocess.run([path], input=stdin, capture_output=True, env=env)
    return time.perf_counter() - start, proc.returncode


def peak_rss_kib(path: str, env: dict[str, str], stdin: bytes) -> int:
    """Peak RSS of one exec, measured by GNU time.

    Not from our own ``wait4``: a child forked from this (large) Python process
    is charged the parent's resident pages it had before exec.
    """
    with tempfile.NamedTemporaryFile("r") as out:
        subprocess.run(["/usr/bin/time", "-f", "%M", "-o", out.name, path], input=stdin,
                       capture_output=True, env=env, check=True)
        return int(out.read().strip().splitlines()[-1])


def measure(cases: list[tuple[str, str, dict[str, str], bytes]], rounds: int) -> dict[str, dict[str, float]]:
    samples: dict[str, list[float]] = {name: [] for name, *_ in cases}
    for _ in range(rounds):
        for name, path, env, stdin in cases:
            seconds, code = exec_once(path, env, stdin)
            if code != 0:
                raise SystemExit(f"{name} failed with exit {code}")
            samples[name].append(seconds)
    out = {}
    for name, path, env, stdin in cases:
        median, p90 = median_p90_ms(samples[name])
        out[name] = {"median_ms": median, "p90_ms": p90,
                     "max_rss_kib": max(peak_rss_kib(path, env, stdin) for _ in range(3))}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--venv", default=os.path.join(tempfile.gettempdir(), "cnicore-bench-venv"))
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 1
    launcher_dir = install_launchers(opts.venv)
    from cnicore.testing import Sandbox

    conf = json.dumps({"cniVersion": "1.0.0", "name": "bench", "type": "loopback"}).encode()
    results: dict[str, dict[str, float]] = {}
    with Sandbox("cnitest-bench") as sandbox:
        ctr = sandbox.container()
        base = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
        base.pop("PYTHONPATH", None)
        common = dict(base, CNI_CONTAINERID="bench", CNI_NETNS=ctr.path, CNI_IFNAME="lo",
                      CNI_PATH=f"{launcher_dir}:{GO_DIR}")
        cases = []
        for command in ("VERSION", "ADD", "DEL"):
            env = dict(common, CNI_COMMAND=command)
            cases.append((f"go {command}", os.path.join(GO_DIR, "loopback"), env, conf))
            cases.append((f"cnicore {command}", os.path.join(launcher_dir, "loopback"), env, conf))
        results = sandbox.host.do(measure, cases, opts.rounds)
    if opts.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"loopback exec, {opts.rounds} rounds, alternating Go / cnicore (compiled, launcher -IS)")
    print(f"{'operation':<10} {'Go median':>10} {'ours median':>12} {'ratio':>6} {'Go p90':>8} "
          f"{'ours p90':>9} {'Go RSS':>8} {'ours RSS':>9}")
    for command in ("VERSION", "ADD", "DEL"):
        go, ours = results[f"go {command}"], results[f"cnicore {command}"]
        print(f"{command:<10} {go['median_ms']:>8.1f}ms {ours['median_ms']:>10.1f}ms "
              f"{ours['median_ms'] / go['median_ms']:>5.1f}x {go['p90_ms']:>6.1f}ms {ours['p90_ms']:>7.1f}ms "
              f"{go['max_rss_kib'] / 1024:>6.1f}MB {ours['max_rss_kib'] / 1024:>7.1f}MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
