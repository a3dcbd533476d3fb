"""The demo: a real container network in throwaway namespaces.

Builds a private "host" namespace and two container namespaces, installs
cnicore's launchers into a temporary CNI bin dir next to Debian's Go plugins,
then attaches each container the way a runtime does — exec'ing plugins with
CNI_* variables and the config on stdin:

* ``lo``   — cnicore's ``loopback`` (through its launcher),
* ``eth0`` — the ``bridge`` plugin with ``host-local`` IPAM, cnicore's where
  installed, Go's otherwise.

It then pings container to container and container to gateway (one packet,
one second, only between the demo's own namespaces), prints what it built,
deletes every attachment and removes the namespaces. The machine's own
network is never touched.

Run: ``sudo python -m cnicore.demo`` (or ``scripts/dev demo``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnicore.ns import NetNS

SUBNET = "10.231.0.0/24"
GATEWAY = "10.231.0.1"


def network_configs(data_dir: str) -> list[dict[str, object]]:
    return [
        {"cniVersion": "1.0.0", "name": "demo-lo", "type": "loopback"},
        {"cniVersion": "1.0.0", "name": "demo-net", "type": "bridge", "bridge": "cnidemo0",
         "isGateway": True, "ipMasq": False,
         "ipam": {"type": "host-local", "subnet": SUBNET, "gateway": GATEWAY, "dataDir": data_dir,
                  "routes": [{"dst": "0.0.0.0/0"}]}},
    ]


def _ping(netns_name: str, address: str) -> bool:
    proc = subprocess.run(["ip", "netns", "exec", netns_name, "ping", "-c", "1", "-W", "1", address],
                          capture_output=True)
    return proc.returncode == 0


def main() -> int:
    from cnicore import invoke, launchers
    from cnicore.registry import discover
    from cnicore.testing import Sandbox

    if os.geteuid() != 0:
        print("the demo creates network namespaces: run it as root", file=sys.stderr)
        return 1
    workdir = tempfile.mkdtemp(prefix="cnicore-demo-")
    bin_dir = os.path.join(workdir, "bin")
    report = launchers.install(bin_dir, discover().values())
    cni_path = f"{bin_dir}:/usr/lib/cni"
    print(f"launchers in {bin_dir}: {', '.join(report.added)}")
    configs = network_configs(os.path.join(workdir, "ipam"))
    attached: list[tuple[NetNS, str, str, bytes, str]] = []
    status = 0
    with Sandbox("cnitest-demo") as sandbox:
        try:
            containers = [sandbox.container(), sandbox.container()]
            addresses = []
            for index, netns in enumerate(containers):
                container_id = f"demo-{index}"
                for config, ifname in zip(configs, ("lo", "eth0")):
                    plugin = invoke.find_in_path(str(config["type"]), cni_path.split(":"))
                    stdin = json.dumps(config).encode()
                    args = invoke.Args("ADD", container_id, netns.path, ifname, path=cni_path)
                    result = sandbox.host.do(invoke.exec_plugin_with_result, plugin, stdin, args)
                    attached.append((netns, container_id, ifname, stdin, plugin))
                    owner = "cnicore" if launchers.read_header(plugin) else "Go"
                    shown = ", ".join(ip.address for ip in getattr(result, "ips", []))
                    print(f"{os.path.basename(netns.path)} {ifname}: {config['type']} ({owner}) -> {shown}")
                    if ifname == "eth0":
                        addresses.append(result.ips[0].address.split("/")[0])  # type: ignore[union-attr]
            names = [os.path.basename(n.path) for n in containers]
            checks = [(names[0], addresses[1]), (names[1], addresses[0]), (names[0], GATEWAY),
                      (names[0], "127.0.0.1")]
            for name, address in checks:
                ok = _ping(name, address)
                print(f"ping {name} -> {address}: {'ok' if ok else 'FAILED'}")
                status |= 0 if ok else 1
        finally:
            for netns, container_id, ifname, stdin, plugin in reversed(attached):
                args = invoke.Args("DEL", container_id, netns.path, ifname, path=cni_path)
                try:
                    sandbox.host.do(invoke.exec_plugin_without_result, plugin, stdin, args)
                except Exception as exc:  # noqa: BLE001 - clean up the rest anyway
                    print(f"DEL {ifname} failed: {exc}", file=sys.stderr)
                    status = 1
            shutil.rmtree(workdir, ignore_errors=True)
    print("demo network removed" + ("" if status == 0 else " (with failures above)"))
    return status


if __name__ == "__main__":
    sys.exit(main())
