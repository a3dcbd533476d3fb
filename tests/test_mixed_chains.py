"""Whole chains mixing Go's plugins and ours, run by cnicore.libcni as a runtime runs them.

podman's default chain (bridge + host-local, portmap, firewall) with the
bridge from one implementation and portmap + firewall from the other, both
ways: ADD publishes a port the private host reaches, CHECK passes, DEL
leaves no rule, chain or veth of the container. And across: a chain added
with one mix is deleted with the other, so Go's portmap and firewall remove
our rules, ours remove Go's, and either bridge removes the other's veth.

The plugins are found only in the directories named in CNI_PATH: ours (this
run's launcher kind: cold Python launchers, or native ones served by the warm
server) holding just the plugins a mix takes from us, then Go's /usr/lib/cni.
Every rule and link lives in the sandbox's namespaces.
"""

from __future__ import annotations

import os
import re
import socket
import threading
from typing import Any, Iterator

import pytest

from cnicore.libcni import LibcniError
from cnicore.registry import discover
from cnicore.testing import ConflistRunner, in_netns, run_in, spec_has_check
from helpers.clients import GO_PLUGINS, http_get, iptables_save, links

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")

#: Which plugins each mix takes from us (the rest are Go's).
MIXES = {
    "go-bridge+our-portmap-firewall": ("portmap", "firewall"),
    "our-bridge+go-portmap-firewall": ("bridge", "host-local"),
}
#: Go's 1.1.1 plugins speak up to 1.0.0.
VERSIONS = ["0.4.0", "1.0.0"]
GREETING = b"hello through a mixed chain\n"
HOST_PORT = 8080
SUBNET = "10.77.0.0/24"
GATEWAY = "10.77.0.1"
#: The runtime passes its capability arguments on every command (portmap's DEL needs them).
PUBLISHED = {"portMappings": [{"hostPort": HOST_PORT, "containerPort": 80, "protocol": "tcp"}]}


def conflist(version: str, data_dir: str) -> dict[str, Any]:
    """podman's default network, as ``podman network create`` writes it (with a private store)."""
    return {"cniVersion": version, "name": "mixnet", "plugins": [
        {"type": "bridge", "bridge": "cni-mix0", "isGateway": True, "ipMasq": True, "hairpinMode": True,
         "ipam": {"type": "host-local", "dataDir": data_dir, "routes": [{"dst": "0.0.0.0/0"}],
                  "ranges": [[{"subnet": SUBNET, "gateway": GATEWAY}]]}},
        {"type": "portmap", "capabilities": {"portMappings": True}},
        {"type": "firewall", "backend": ""},
    ]}


@pytest.fixture(scope="session")
def mix_dirs(tmp_path_factory: Any, cni_install: Any) -> dict[str, str]:
    """Per mix, a bin dir of this run's launchers for only the plugins that mix takes from us."""
    entries = discover()
    dirs = {}
    for mix, ours in MIXES.items():
        path = tmp_path_factory.mktemp("mix-bin")
        report = cni_install(str(path), [entries[name] for name in ours])
        assert not report.skipped, report.skipped
        dirs[mix] = str(path)
    return dirs


class Responder:
    """A one-line TCP server listening on 0.0.0.0:80 inside a container namespace (a thread)."""

    def __init__(self, netns: Any) -> None:
        def listen() -> socket.socket:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("0.0.0.0", 80))
            sock.listen(16)
            return sock

        self.sock: socket.socket = in_netns(netns, listen)
        self.sock.settimeout(0.2)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2.0)
                try:
                    conn.recv(4096)
                    conn.sendall(b"HTTP/1.0 200 OK\r\n\r\n" + GREETING)
                except OSError:
                    pass

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(10)
        self.sock.close()


@pytest.fixture
def responder(cni_sandbox: Any, container_netns: Any) -> Iterator[Responder]:
    for netns in (cni_sandbox.host, container_netns):
        run_in(netns, "ip", "link", "set", "lo", "up")
    server = Responder(container_netns)
    try:
        yield server
    finally:
        server.close()


def runner(mix: str, version: str, host: Any, mix_dirs: dict[str, str], tmp_path: Any) -> ConflistRunner:
    """The chain with ``mix``'s plugins; all runners of one test share the result cache and store."""
    return ConflistRunner(conflist(version, str(tmp_path / "ipam")), host,
                          [mix_dirs[mix], GO_PLUGINS], str(tmp_path / "cache"))


def container_traces(host: Any, container_id: str, ip: str) -> list[str]:
    """What of one container is left in the host namespace: rules naming it or its address, veths."""
    rules = [line for line in iptables_save(host).splitlines()
             if container_id in line or re.search(rf"(?<![\d.]){re.escape(ip)}(?![\d])", line)]
    return rules + [name for name in links(host) if name.startswith("veth")]


def add_and_reach(net: ConflistRunner, host: Any, container: Any, container_id: str) -> str:
    """ADD with a published port; the host reaches the container through it; the container's IP."""
    result = net.add(container, container_id=container_id, capability_args=PUBLISHED)
    ip = str(result["ips"][0]["address"]).split("/")[0]
    rules = iptables_save(host)
    assert f"--to-destination {ip}:80" in rules, rules
    assert re.search(rf"-A CNI-FORWARD .*-d {re.escape(ip)}/32", rules), rules
    assert http_get(host, GATEWAY, HOST_PORT) == GREETING
    assert http_get(host, "127.0.0.1", HOST_PORT) == GREETING
    return ip


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("mix", list(MIXES))
def test_mixed_chain_add_check_del(mix: str, version: str, cni_sandbox: Any, container_netns: Any,
                                   responder: Responder, mix_dirs: dict[str, str], tmp_path: Any) -> None:
    host = cni_sandbox.host
    net = runner(mix, version, host, mix_dirs, tmp_path)
    cid = f"mix-{version}"
    ip = add_and_reach(net, host, container_netns, cid)
    if spec_has_check(version) and "portmap" not in MIXES[mix]:
        # Debian's Go portmap 1.1.1 fails CHECK for every container with mappings (it looks for the
        # IPv4 chain in ip6tables; fixed in later releases): that failure, and only it.
        with pytest.raises(LibcniError, match=r'type="portmap" failed \(check\): could not check ipv6 dnat'):
            net.check(container_netns, container_id=cid, capability_args=PUBLISHED)
    elif spec_has_check(version):
        net.check(container_netns, container_id=cid, capability_args=PUBLISHED)
    net.delete(container_netns, container_id=cid, capability_args=PUBLISHED)
    assert container_traces(host, cid, ip) == []
    net.delete(container_netns, container_id=cid, capability_args=PUBLISHED)  # DEL again succeeds


@pytest.mark.parametrize("added, deleted", [tuple(MIXES), tuple(reversed(list(MIXES)))])
def test_the_other_mix_deletes(added: str, deleted: str, cni_sandbox: Any, container_netns: Any,
                               responder: Responder, mix_dirs: dict[str, str], tmp_path: Any) -> None:
    """Added with one mix, deleted with the other: each implementation cleans up after the other."""
    host = cni_sandbox.host
    cid = "mix-across"
    ip = add_and_reach(runner(added, "1.0.0", host, mix_dirs, tmp_path), host, container_netns, cid)
    runner(deleted, "1.0.0", host, mix_dirs, tmp_path).delete(container_netns, container_id=cid,
                                                            capability_args=PUBLISHED)
    assert container_traces(host, cid, ip) == []
