"""The demo: a real container network in throwaway namespaces.

Starts the warm server (``cnitool daemon``, in a throwaway namespace of its
own), builds a private "host" namespace and two container namespaces,
installs cnicore's native launchers for that server into a temporary CNI bin
dir (Debian's Go plugins behind them on CNI_PATH), then attaches each
container the way containerd does — through :mod:`cnicore.libcni`, which
runs every plugin of a network list with CNI_* variables and the config on
stdin (our plugins on the warm server, the Go ones by exec), chains the
results and caches them:

* ``demo-lo``  — ``loopback``;
* ``demo-net`` — ``bridge`` with ``host-local`` IPAM (served in-process by the
  bridge), then ``tuning`` setting the MTU and a sysctl in the container.

It then pings container to container, container to gateway and loopback
(one packet, one second, only between the demo's own namespaces), prints
what it built, deletes every attachment, stops the server and removes the
namespaces. The machine's own network is never touched. Without a C
compiler it installs Python launchers and runs everything cold instead.

Run: ``sudo python -m cnicore.cli.demo`` (or ``scripts/dev demo``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

from cnicore.cli.install import install
from cnicore.invoke import find_in_path
from cnicore.launchers import read_header
from cnicore.libcni import CNIConfig, RuntimeConf, conf_list_from_dict
from cnicore.registry import discover
from cnicore.server._native import compiler
from cnicore.testing import Sandbox, WarmServer

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnicore.libcni import NetworkConfigList
    from cnicore.ns import NetNS

SUBNET = "10.231.0.0/24"
GATEWAY = "10.231.0.1"


def network_lists(work: str) -> list[dict[str, object]]:
    return [
        {"cniVersion": "1.0.0", "name": "demo-lo", "plugins": [{"type": "loopback"}]},
        {"cniVersion": "1.0.0", "name": "demo-net", "plugins": [
            {"type": "bridge", "bridge": "cnidemo0", "isGateway": True, "ipMasq": True,
             "ipam": {"type": "host-local", "subnet": SUBNET, "gateway": GATEWAY,
                      "dataDir": os.path.join(work, "ipam"), "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "tuning", "mtu": 1400, "dataDir": os.path.join(work, "tuning"),
             "sysctl": {"net.ipv4.conf.IFNAME.arp_notify": "1"}},
        ]},
    ]


def _ping(netns: NetNS, address: str) -> bool:
    name = os.path.basename(netns.path)
    proc = subprocess.run(["ip", "netns", "exec", name, "ping", "-c", "1", "-W", "1", address],
                          capture_output=True)
    return proc.returncode == 0


def _who(path: str) -> str:
    return "cnicore" if read_header(path) else "Go"


def main() -> int:
    if os.geteuid() != 0:
        print("the demo creates network namespaces: run it as root", file=sys.stderr)
        return 1
    work = tempfile.mkdtemp(prefix="cnicore-demo-")
    try:
        if compiler() is None:
            print("no C compiler: Python launchers, every plugin runs cold")
            return _demo(work, None)
        with WarmServer(os.path.join(work, "server"), prefix="cnitest-demo-srv") as server:
            print(f"warm server: cnitool daemon (pid {server.pid}) on {server.socket}")
            status = _demo(work, server.socket)
        print(f"warm server stopped after serving {server.served()} requests")
        return status
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _demo(work: str, socket: str | None) -> int:
    bin_dir = os.path.join(work, "bin")
    kind = "native" if socket else "python"
    report = install(bin_dir, discover().values(), kind=kind, socket=socket or "")
    paths = [bin_dir, "/usr/lib/cni"]
    print(f"{kind} launchers in {bin_dir}: {', '.join(report.added)}")
    cni = CNIConfig(paths, cache_dir=os.path.join(work, "cache"))
    nets = [conf_list_from_dict(obj) for obj in network_lists(work)]
    for net in nets:
        kinds = ", ".join(f"{p.type} ({_who(find_in_path(p.type, paths))})" for p in net.plugins)
        print(f"network {net.name}: {kinds}")
    attached: list[tuple[NetworkConfigList, RuntimeConf]] = []
    status = 0
    with Sandbox("cnitest-demo") as sandbox:
        try:
            containers = [sandbox.container(), sandbox.container()]
            addresses = []
            for index, netns in enumerate(containers):
                for net, ifname in zip(nets, ("lo", "eth0")):
                    rt = RuntimeConf(f"demo-{index}", netns.path, ifname)
                    result = sandbox.host.do(cni.add_network_list, net, rt)
                    attached.append((net, rt))
                    shown = ", ".join(ip.address for ip in getattr(result, "ips", []))
                    print(f"{os.path.basename(netns.path)} {ifname}: {net.name} -> {shown}")
                    if ifname == "eth0":
                        addresses.append(result.ips[0].address.split("/")[0])  # type: ignore[union-attr]
            checks = [(containers[0], addresses[1]), (containers[1], addresses[0]),
                      (containers[0], GATEWAY), (containers[0], "127.0.0.1")]
            for netns, address in checks:
                ok = _ping(netns, address)
                print(f"ping {os.path.basename(netns.path)} -> {address}: {'ok' if ok else 'FAILED'}")
                status |= 0 if ok else 1
            for net, rt in attached:
                sandbox.host.do(_check, cni, net, rt)
        finally:
            for net, rt in reversed(attached):
                try:
                    sandbox.host.do(cni.del_network_list, net, rt)
                except Exception as exc:  # noqa: BLE001 - clean up the rest anyway
                    print(f"DEL {net.name} {rt.ifname} failed: {exc}", file=sys.stderr)
                    status = 1
    print("demo network removed" + ("" if status == 0 else " (with failures above)"))
    return status


def _check(cni: CNIConfig, net: NetworkConfigList, rt: RuntimeConf) -> None:
    cni.check_network_list(net, rt)


if __name__ == "__main__":
    sys.exit(main())
