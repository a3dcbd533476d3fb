"""vrf ADD and DEL, ours warm (native launchers served by a cnitool daemon) against
Debian's Go vrf, in the same guest (Debian's stock kernel: this machine's lacks VRF).

Run it through the guest rig (as root):
    CNICORE_VENV=.venv scripts/guest run --timeout 600 -- .venv/bin/python bench/guest_vrf.py [ROUNDS]
Each round: a fresh container with a dummy eth0 (an address and a gateway route), then
vrf ADD (creates the VRF, moves the route) and DEL (deletes it), Go's and ours
alternating. Prints the medians and ours/Go, and what the server served and refused.
A report, not a test: TCG timing varies.

Known limitation (found with this script, not fixed): inside the guest the daemon keeps
refusing requests with "server code changed since start (restarting)", so "ours warm"
is really ours cold plus restarts there; the numbers are only meaningful once that
check is made to work on the guest's 9p/overlay root.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from cnicore.testing import Sandbox, WarmServer, run_in

GO_VRF = "/usr/lib/cni/vrf"


def exec_ms(binary: str, command: str, config: dict, netns: str) -> float:
    env = dict(os.environ, CNI_COMMAND=command, CNI_CONTAINERID="bench-vrf", CNI_NETNS=netns, CNI_IFNAME="eth0",
               CNI_PATH=os.path.dirname(binary), CNI_ARGS="")
    start = time.perf_counter()
    # cwd "/": the server's worker enters the caller's directory, and refuses one under the
    # guest's 9p share (ENOENT there; found by this script's first runs)
    proc = subprocess.run([binary], input=json.dumps(config).encode(), env=env, capture_output=True, cwd="/")
    elapsed = (time.perf_counter() - start) * 1000
    if proc.returncode:
        raise SystemExit(f"{binary} {command} failed: {proc.stdout!r} {proc.stderr!r}")
    return elapsed


def main() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    samples: dict[tuple[str, str], list[float]] = {}
    with WarmServer(tempfile.mkdtemp(prefix="cnicore-guest-vrf-"), workers=2) as server:
        bin_dir = tempfile.mkdtemp(prefix="cnicore-guest-vrf-bin-")
        subprocess.run([os.path.join(os.path.dirname(sys.executable), "cnitool"), "plugins", "install", bin_dir,
                        "--native", "--socket", server.socket], check=True, stdout=subprocess.DEVNULL)
        sides = {"go": GO_VRF, "ours": os.path.join(bin_dir, "vrf")}
        with Sandbox("cnitest-guestvrf") as sandbox:
            for index in range(rounds + 1):  # the first round warms both up and is not counted
                for side, binary in sides.items():
                    ctr = sandbox.container()
                    for cmd in ("link add eth0 type dummy", "link set eth0 up", "addr add 10.66.0.5/24 dev eth0",
                                "route add 10.99.0.0/16 via 10.66.0.1 dev eth0"):
                        run_in(ctr, "ip", *cmd.split())
                    config = {"cniVersion": "1.0.0", "name": "vrfnet", "type": "vrf", "vrfname": "red",
                              "prevResult": {"cniVersion": "1.0.0",
                                             "interfaces": [{"name": "eth0", "sandbox": ctr.path}],
                                             "ips": [{"address": "10.66.0.5/24", "interface": 0}]}}
                    for verb in ("ADD", "DEL"):
                        elapsed = sandbox.host.do(exec_ms, binary, verb, config, ctr.path)
                        if index:
                            samples.setdefault((side, verb), []).append(elapsed)
                    ctr.remove()
        print(f"server: served {server.served()}, refused {server.refused()}")
    for verb in ("ADD", "DEL"):
        go, ours = (statistics.median(samples[(side, verb)]) for side in ("go", "ours"))
        print(f"vrf {verb}: Go {go:.1f} ms, ours warm {ours:.1f} ms, ours/Go {ours / go:.2f}x ({rounds} rounds)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
