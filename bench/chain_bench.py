#!/usr/bin/env python3
"""Chain benchmark: a bridge + host-local + tuning network, Go plugins vs cnicore's.

One round attaches a fresh container namespace the way a runtime does —
bridge ADD (which runs host-local for IPAM), then tuning ADD with bridge's
result as prevResult — and detaches it again (tuning DEL, bridge DEL). The
Go chain and ours alternate round by round in one run, each on its own
bridge and IPAM store, from a private host namespace. Reported: median and
p90 of the ADD chain and of the DEL chain, and the ratio ours/Go.

Run as root from the repo: ``sudo .venv/bin/python bench/chain_bench.py``.
cnicore is installed non-editable into a scratch venv first so its
launchers run compiled bytecode.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from exec_bench import GO_DIR, install_launchers, median_p90_ms  # noqa: E402


def chain(kind: str, data_dir: str) -> list[dict[str, object]]:
    subnet = "10.241.0.0/16" if kind == "go" else "10.242.0.0/16"
    return [
        {"cniVersion": "1.0.0", "name": f"bench-{kind}", "type": "bridge", "bridge": f"br-{kind}",
         "isGateway": True, "ipMasq": False,
         "ipam": {"type": "host-local", "subnet": subnet, "dataDir": data_dir}},
        {"cniVersion": "1.0.0", "name": f"bench-{kind}", "type": "tuning",
         "sysctl": {"net.ipv4.conf.IFNAME.arp_ignore": "1"}, "mtu": 1400},
    ]


def run_chain(invoke: object, paths: list[str], confs: list[dict[str, object]], command: str,
              container: str, netns: str) -> None:
    prev = None
    order = confs if command == "ADD" else list(reversed(confs))
    for conf in order:
        conf = dict(conf)
        if prev is not None:
            conf["prevResult"] = prev
        plugin = invoke.find_in_path(str(conf["type"]), paths)  # type: ignore[attr-defined]
        args = invoke.Args(command, container, netns, "eth0", path=":".join(paths))  # type: ignore[attr-defined]
        data = json.dumps(conf).encode()
        if command == "ADD":
            result = invoke.exec_plugin_with_result(plugin, data, args)  # type: ignore[attr-defined]
            prev = json.loads(result.to_json())
        else:
            invoke.exec_plugin_without_result(plugin, data, args)  # type: ignore[attr-defined]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--venv", default=os.path.join(tempfile.gettempdir(), "cnicore-bench-venv"))
    opts = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 1
    launcher_dir = install_launchers(opts.venv)
    from cnicore import invoke
    from cnicore.testing import Sandbox

    work = tempfile.mkdtemp(prefix="cnicore-bench-")
    setups = {"go": ([GO_DIR], chain("go", os.path.join(work, "go"))),
              "cnicore": ([launcher_dir, GO_DIR], chain("cnicore", os.path.join(work, "ours")))}
    samples: dict[str, list[float]] = {f"{k} {c}": [] for k in setups for c in ("ADD", "DEL")}
    with Sandbox("cnitest-bench") as sandbox:
        def rounds() -> None:
            for index in range(opts.rounds):
                for kind, (paths, confs) in setups.items():
                    ctr = sandbox.container()
                    for command in ("ADD", "DEL"):
                        start = time.perf_counter()
                        run_chain(invoke, paths, confs, command, f"bench-{index}", ctr.path)
                        samples[f"{kind} {command}"].append(time.perf_counter() - start)
                    ctr.remove()

        sandbox.host.do(rounds)
    print(f"bridge + host-local + tuning chain, {opts.rounds} rounds, alternating Go / cnicore")
    print(f"{'chain':<6} {'Go median':>10} {'ours median':>12} {'ratio':>6} {'Go p90':>8} {'ours p90':>9}")
    for command in ("ADD", "DEL"):
        gm, gp = median_p90_ms(samples[f"go {command}"])
        om, op = median_p90_ms(samples[f"cnicore {command}"])
        print(f"{command:<6} {gm:>8.1f}ms {om:>10.1f}ms {om / gm:>5.1f}x {gp:>6.1f}ms {op:>7.1f}ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
