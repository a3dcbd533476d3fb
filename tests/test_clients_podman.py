"""podman 4.3 (Debian 12's, CNI backend) on cnicore's plugins alone, cold and warm, and on Go's.

``cni_plugin_dirs`` names only one directory: cnicore's Python launchers (the
cold path), cnicore's native launchers served by a warm server, or Go's
plugins as the reference run. podman runs with all its state in a temporary
directory and inside a private host namespace (tests/helpers/clients.py):
``podman network create`` writes its conflist (bridge + portmap + firewall +
tuning), ``podman run -d -p HOST:80`` publishes a busybox web server, the
private host reaches it through the host port (DNAT, also via 127.0.0.1 as
portmap's localhost rules allow), and after ``podman rm -f`` the container's
rules and veth are gone.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from cnicore.testing import run_in
from helpers.clients import GREETING, IMAGE, KINDS, Podman, http_get, iptables_save, links, podman_env

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")


def _container_ip(podman: Podman, name: str, network: str) -> str:
    return str(podman.inspect(name)["NetworkSettings"]["Networks"][network]["IPAddress"])


def _veths(netns: object) -> set[str]:
    return {name for name in links(netns) if name.startswith("veth")}


def _rules_for(rules: str, cid: str, ip: str) -> list[str]:
    """Rules that belong to one container: its ID in a comment, or its address."""
    return [line for line in rules.splitlines()
            if cid in line or re.search(rf"(?<![\d.]){re.escape(ip)}(?![\d])", line)]


@pytest.mark.parametrize("kind", KINDS)
def test_podman_network_run_publish_rm(kind: str, cni_netns_prefix: str) -> None:
    with podman_env(kind, cni_netns_prefix) as podman:
        host = podman.host.netns

        podman.run("network", "create", "cnitestnet")
        with open(os.path.join(podman.net_dir, "cnitestnet.conflist")) as fh:
            written = fh.read()
        conflist = json.loads(written)
        assert [p["type"] for p in conflist["plugins"]] == ["bridge", "portmap", "firewall", "tuning"]
        bridge = conflist["plugins"][0]["bridge"]

        # One container on the created network, one on podman's default network.
        before = _veths(host)
        made = {}
        for name, network, port in (("web", "cnitestnet", 8080), ("web0", "podman", 8081)):
            cid = podman.run_published(name, port, "" if network == "podman" else network)
            made[name] = (cid, _container_ip(podman, name, network), network, port)
        assert bridge in links(host) and "cni-podman0" in links(host)
        assert len(_veths(host) - before) == 2

        rules = iptables_save(host)
        for name, (cid, ip, network, port) in made.items():
            mine = _rules_for(rules, cid, ip)
            assert any("DNAT" in r and f"{ip}:80" in r for r in mine), (name, mine)
            assert any(r.startswith("-A CNI-FORWARD") for r in mine), (name, mine)  # firewall
            gateway = ip.rsplit(".", 1)[0] + ".1"
            assert http_get(host, gateway, port) == GREETING
            assert http_get(host, "127.0.0.1", port) == GREETING

        cid, ip, _, _ = made["web"]
        podman.run("rm", "-f", "-t", "0", "web")
        rules = iptables_save(host)
        assert _rules_for(rules, cid, ip) == []
        assert len(_veths(host) - before) == 1
        cid0, ip0, _, _ = made["web0"]
        assert _rules_for(rules, cid0, ip0), "the other container's rules went too"

        podman.run("rm", "-f", "-t", "0", "web0")
        assert _rules_for(iptables_save(host), cid0, ip0) == []
        assert _veths(host) == before


def _run_on(podman: Podman, name: str, network: str) -> str:
    """``podman run -d`` of the image (its web server on port 80) on ``network``; the container ID."""
    cid = podman.run("run", "-d", "--name", name, "--network", network,
                     "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", IMAGE).strip()
    podman.track(cid)
    return cid


def _ping_from(podman: Podman, container: str, address: str, *, deadline_s: float = 60.0) -> str:
    """``busybox ping -c 1 -W 2 address`` from inside ``container``, retried until a reply
    comes back, within ``deadline_s`` (busybox wget segfaults in this image)."""
    import time

    deadline = time.monotonic() + deadline_s
    while True:
        proc = subprocess.run(podman.argv("exec", container, "/bin/busybox", "ping", "-c", "1", "-W", "2", address),
                              env=podman.env(), capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
        if proc.returncode == 0 and " 0% packet loss" in proc.stdout:
            return proc.stdout
        assert time.monotonic() < deadline, (proc.stdout, proc.stderr)
        time.sleep(0.5)


@pytest.mark.parametrize("kind", KINDS)
def test_podman_macvlan_network(kind: str, cni_netns_prefix: str) -> None:
    """``podman network create -d macvlan -o parent=mvp0`` over a veth end of the private host:
    podman writes a macvlan conflist, each container gets an address of the subnet on a macvlan
    of mvp0, each reaches the other over it (ping, bounded), and ``podman rm -f`` (DEL)
    releases the addresses."""
    with podman_env(kind, cni_netns_prefix) as podman:
        host = podman.host.netns
        run_in(host, "ip", "link", "add", "mvp0", "type", "veth", "peer", "name", "mvp0peer")
        run_in(host, "ip", "link", "set", "mvp0", "up")
        run_in(host, "ip", "link", "set", "mvp0peer", "up")
        podman.run("network", "create", "-d", "macvlan", "-o", "parent=mvp0", "--subnet", "10.91.0.0/24",
                   "mvnet")
        with open(os.path.join(podman.net_dir, "mvnet.conflist")) as fh:
            conflist = json.load(fh)
        macvlan = conflist["plugins"][0]
        assert (macvlan["type"], macvlan["master"], macvlan["ipam"]["type"]) == ("macvlan", "mvp0", "host-local")

        for name in ("a", "b"):
            _run_on(podman, name, "mvnet")
        addresses = {name: _container_ip(podman, name, "mvnet") for name in ("a", "b")}
        assert all(ip.startswith("10.91.0.") for ip in addresses.values()), addresses
        assert len(set(addresses.values())) == 2
        _ping_from(podman, "a", addresses["b"])
        _ping_from(podman, "b", addresses["a"])
        assert not [name for name in links(host) if name.startswith("veth")]  # nothing left on the host side

        podman.run("rm", "-f", "-t", "0", "a", "b")
        store = podman.host.run("ls", "/var/lib/cni/networks/mvnet")
        assert not [line for line in store.split() if line.startswith("10.91.")], store
