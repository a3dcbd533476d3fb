"""containerd 1.6's CRI (Debian 12's) on cnicore's plugins alone, cold and warm, and on Go's.

containerd runs with all its state in a temporary directory, inside a private
host (tests/helpers/clients.py), its CRI plugin naming a temporary CNI config
dir holding one network — bridge + host-local + portmap, as containerd's
documented example — and one bin dir: cnicore's Python launchers (cold),
cnicore's native launchers served by a warm server, or Go's plugins. The CRI
itself adds loopback (go-cni's loopback network, from the same bin dir).

crictl is not packaged in Debian 12, so the test speaks CRI over containerd's
gRPC socket with stubs generated at test time from tests/cri_subset.proto (the
CRI's own messages and field numbers, only those used). A pod sandbox with a
port mapping gets an address, its loopback is up, the host port reaches the
sandbox (its "pause" image serves a page), and after StopPodSandbox and
RemovePodSandbox the pod's rules and veth are gone.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

import pytest

from helpers.clients import GREETING, KINDS, containerd_env, cri_stubs, http_get, iptables_save, links

grpc = pytest.importorskip("grpc")
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")

SUBNET_PREFIX = "10.66.0."
GATEWAY = "10.66.0.1"
HOST_PORT = 8080


def conflist(data_dir: str) -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": "cri-net", "plugins": [
        {"type": "bridge", "bridge": "cni-cri0", "isGateway": True, "ipMasq": True,
         "ipam": {"type": "host-local", "dataDir": data_dir, "routes": [{"dst": "0.0.0.0/0"}],
                  "ranges": [[{"subnet": SUBNET_PREFIX + "0/24", "gateway": GATEWAY}]]}},
        {"type": "portmap", "capabilities": {"portMappings": True}},
    ]}


def pod_rules(rules: str, pod_id: str, ip: str) -> list[str]:
    return [line for line in rules.splitlines()
            if pod_id in line or re.search(rf"(?<![\d.]){re.escape(ip)}(?![\d])", line)]


def wait_ready(runtime: Any, pb: Any, timeout: float = 30.0) -> None:
    """Until the CRI answers Version (it serves as soon as the socket exists, but be sure)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = runtime.Version(pb.VersionRequest(version="v1"), timeout=5)
            assert answer.runtime_name == "containerd" and answer.runtime_api_version == "v1", answer
            return
        except grpc.RpcError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.mark.parametrize("kind", KINDS)
def test_cri_pod_sandbox_with_port_mapping(kind: str, cni_netns_prefix: str, tmp_path: Any) -> None:
    with containerd_env(kind, conflist(str(tmp_path / "ipam")), cni_netns_prefix) as ctd:
        stubs = cri_stubs(ctd.work)
        pb = stubs.pb
        host = ctd.host.netns
        with grpc.insecure_channel("unix://" + ctd.socket) as channel:
            runtime = stubs.grpc.RuntimeServiceStub(channel)
            wait_ready(runtime, pb)
            config = pb.PodSandboxConfig(
                metadata=pb.PodSandboxMetadata(name="web", uid="cnitest-uid-1", namespace="default"),
                hostname="web", log_directory=os.path.join(ctd.work, "pod-logs"),
                port_mappings=[pb.PortMapping(protocol=pb.TCP, container_port=80, host_port=HOST_PORT)])
            pod = runtime.RunPodSandbox(pb.RunPodSandboxRequest(config=config), timeout=60).pod_sandbox_id
            status = runtime.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=pod), timeout=30).status
            assert status.state == pb.SANDBOX_READY
            ip = status.network.ip
            assert ip.startswith(SUBNET_PREFIX), status

            # Inside the pod: eth0 with that address, loopback up (go-cni's loopback network).
            task = str(ctd.task_pid(pod))
            pod_links = ctd.host.run("nsenter", "-t", task, "-n", "ip", "-o", "addr", "show")
            assert re.search(rf"\beth0\s+inet {re.escape(ip)}/24", pod_links), pod_links
            assert re.search(r"\blo\s+inet 127\.0\.0\.1/8", pod_links), pod_links

            rules = iptables_save(host)
            mine = pod_rules(rules, pod, ip)
            assert any(f"--to-destination {ip}:80" in r for r in mine), rules
            assert http_get(host, GATEWAY, HOST_PORT) == GREETING
            assert http_get(host, "127.0.0.1", HOST_PORT) == GREETING
            assert any(name.startswith("veth") for name in links(host))

            runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=60)
            assert pod_rules(iptables_save(host), pod, ip) == []
            runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod), timeout=60)
            assert pod_rules(iptables_save(host), pod, ip) == []
            assert not any(name.startswith("veth") for name in links(host))
            assert "cni-cri0" in links(host)
