"""Tests of the template-ipam plugin: pure (no root) and delegated to by a main plugin.

An IPAM plugin touches no namespace, so most tests run the plugin through
``cnicore.skel.run`` (exactly what a launcher runs) without root, its store
under ``tmp_path``. The tests marked ``privileged`` use cnicore's pytest
fixtures (no conftest needed): ``cni_conflist`` runs a network list whose
main plugin, cnicore's ``bridge``, delegates to this plugin's launcher from
``cni_bin_dir``, in throwaway namespaces; with ``CNICORE_TEST_LAUNCHERS=native``
the launchers are native ones served by a warm server (``cnitool daemon``).
"""

from __future__ import annotations

import ipaddress
import json
import os
import threading
from importlib.metadata import entry_points

import pytest

from cni_plugin_template_ipam import plugin
from cni_plugin_template_ipam.store import Store, next_free
from cnicore import skel
from cnicore.host import PluginHost
from cnicore.testing import (
    assert_netns_address,
    assert_plugin_valid,
    assert_result_has_ip,
    assert_result_has_route,
    cni_env,
    spec_has_check,
    version_answer,
)
from cnicore.version import ALL

privileged = pytest.mark.privileged

PLUGIN_TYPE = plugin.PLUGIN_TYPE
NET = "ipamnet"
HOST = PluginHost(plugin, PLUGIN_TYPE)


def conf(tmp_path, subnets=("10.30.0.0/24",), version: str = "1.1.0", **ipam: object) -> dict:
    return {"cniVersion": version, "name": NET, "type": "bridge",
            "ipam": {"type": PLUGIN_TYPE, "dataDir": str(tmp_path / "ipam"), "subnets": list(subnets), **ipam}}


def run(command: str, config: dict, container_id: str = "ctr1", ifname: str = "eth0") -> tuple[int, dict | None]:
    """One request as a launcher serves it: (exit status, printed JSON)."""
    env = cni_env(command, container_id=container_id, netns="/var/run/netns/unused", ifname=ifname)
    status, out, _err = skel.run(HOST, dict(os.environ, **env), json.dumps(config).encode())
    return status, json.loads(out) if out else None


def add(config: dict, container_id: str = "ctr1", ifname: str = "eth0") -> dict:
    status, out = run("ADD", config, container_id, ifname)
    assert status == 0 and out is not None, out
    return out


def reserved(tmp_path) -> dict[str, str]:
    """address -> "container ID/ifname", as the store holds them."""
    with Store(str(tmp_path / "ipam"), NET, shared=True) as store:
        return {str(a): "/".join(o) for a, o in store.reservations().items()}


# -- the allocator ---------------------------------------------------------------------


def test_next_free() -> None:
    subnet = ipaddress.ip_network("10.30.0.0/29")
    assert str(next_free(subnet, set())) == "10.30.0.2"  # .1 is the gateway
    taken = {ipaddress.ip_address(f"10.30.0.{n}") for n in (2, 3, 5)}
    assert str(next_free(subnet, taken)) == "10.30.0.4"
    taken |= {ipaddress.ip_address(f"10.30.0.{n}") for n in (4, 6)}
    assert next_free(subnet, taken) is None  # .7 is the broadcast address
    assert str(next_free(ipaddress.ip_network("fd30::/126"), set())) == "fd30::2"


def test_version_answer_and_hooks() -> None:
    assert version_answer(plugin, PLUGIN_TYPE)["supportedVersions"] == list(ALL)
    assert_plugin_valid(plugin, PLUGIN_TYPE)
    (entry,) = [ep for ep in entry_points(group="cnicore.plugins") if ep.name == PLUGIN_TYPE]
    assert entry.value == "cni_plugin_template_ipam.plugin"


# -- the verbs, through skel.run ---------------------------------------------------------


@pytest.mark.parametrize("version", ["0.2.0", "0.4.0", "1.0.0", "1.1.0"])
def test_add_check_del(tmp_path, version: str) -> None:
    config = conf(tmp_path, ("10.30.0.0/24", "fd30::/64"), version, routes=[{"dst": "0.0.0.0/0"}])
    result = add(config)
    assert result["cniVersion"] == version
    assert_result_has_ip(result, "10.30.0.2/24", gateway="10.30.0.1")
    assert_result_has_ip(result, "fd30::2/64", gateway="fd30::1")
    assert_result_has_route(result, "0.0.0.0/0")
    assert reserved(tmp_path) == {"10.30.0.2": "ctr1/eth0", "fd30::2": "ctr1/eth0"}

    assert add(config) == result  # the same attachment gets the same addresses
    assert_result_has_ip(add(config, "ctr2"), "10.30.0.3/24")
    if spec_has_check(version):
        assert run("CHECK", config) == (0, None)

    assert run("DEL", config) == (0, None)
    assert reserved(tmp_path) == {"10.30.0.3": "ctr2/eth0", "fd30::3": "ctr2/eth0"}
    assert run("DEL", config) == (0, None)  # DEL is idempotent
    if spec_has_check(version):
        status, error = run("CHECK", config)
        assert status == 1 and error is not None and "no address reserved for container ctr1" in error["msg"]


def test_a_full_subnet_reserves_nothing(tmp_path) -> None:
    config = conf(tmp_path, ("10.30.0.0/24", "10.31.0.0/30"))
    add(config, "first")  # takes 10.31.0.2, the /30's only address
    status, error = run("ADD", config, "second")
    assert status == 1 and error == {"cniVersion": "1.1.0", "code": 999,
                                     "msg": "template-ipam: no IP addresses available in subnet 10.31.0.0/30"}
    assert reserved(tmp_path) == {"10.30.0.2": "first/eth0", "10.31.0.2": "first/eth0"}  # 10.30.0.3 undone
    status, error = run("STATUS", config)
    assert status == 1 and error is not None and error["code"] == 50 and "10.31.0.0/30" in error["msg"]
    run("DEL", config, "first")
    assert run("STATUS", config) == (0, None)


def test_gc_releases_what_is_not_valid(tmp_path) -> None:
    config = conf(tmp_path)
    for cid in ("keep", "drop"):
        add(config, cid)
    add(config, "keep", "net1")
    gc = dict(config, **{"cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"},
                                                         {"containerID": "keep", "ifname": "net1"}]})
    assert run("GC", gc) == (0, None)
    assert reserved(tmp_path) == {"10.30.0.2": "keep/eth0", "10.30.0.4": "keep/net1"}


def test_concurrent_adds_never_share_an_address(tmp_path) -> None:
    """Each request takes the store's flock, as separate processes or warm workers do."""
    config = conf(tmp_path)
    results: list[dict] = []
    barrier = threading.Barrier(16)

    def one(index: int) -> None:
        barrier.wait(timeout=30)
        results.append(add(config, f"ctr-{index}"))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    addresses = {r["ips"][0]["address"] for r in results}
    assert len(results) == 16 and len(addresses) == 16 and len(reserved(tmp_path)) == 16


@pytest.mark.parametrize(("ipam", "code", "message"), [
    ({"subnets": []}, 7, 'needs at least one subnet in "subnets"'),
    ({"subnets": ["10.30.0.0/33"]}, 7, "invalid subnet '10.30.0.0/33'"),
    ({"routes": [{"dst": "nowhere"}]}, 7, "invalid route dst 'nowhere'"),
    ({"subnets": "10.30.0.0/24"}, 999, "failed to load IPAM config: json: cannot unmarshal string into Go struct "
                                       "field IPAMConf.subnets of type []string"),
])
def test_config_errors(tmp_path, ipam: dict, code: int, message: str) -> None:
    config = conf(tmp_path)
    config["ipam"].update(ipam)
    status, error = run("ADD", config)
    assert status == 1 and error is not None and error["code"] == code and message in error["msg"], error


# -- delegated to by a main plugin, through the launchers ----------------------------------


@privileged
def test_under_bridge_through_the_launchers(cni_conflist, cni_sandbox, tmp_path) -> None:
    bridge = conf(tmp_path, ("10.30.0.0/24", "fd30::/64"))
    bridge.update(bridge="br-ipam", isGateway=True)
    net = cni_conflist({"cniVersion": "1.1.0", "name": NET,
                        "plugins": [{k: v for k, v in bridge.items() if k not in ("cniVersion", "name")}]})
    first, second = cni_sandbox.container(), cni_sandbox.container()

    one, two = net.add(first), net.add(second)

    assert_result_has_ip(one, "10.30.0.2/24", gateway="10.30.0.1", ifname="eth0")
    assert_result_has_ip(two, "fd30::3/64", gateway="fd30::1", ifname="eth0")
    assert_netns_address(second, "eth0", "10.30.0.3/24")
    assert reserved(tmp_path) == {"10.30.0.2": f"{os.path.basename(first.path)}/eth0",
                                  "fd30::2": f"{os.path.basename(first.path)}/eth0",
                                  "10.30.0.3": f"{os.path.basename(second.path)}/eth0",
                                  "fd30::3": f"{os.path.basename(second.path)}/eth0"}
    net.check(first)
    net.status()
    net.delete(first)
    net.delete(first)
    net.delete(second)
    assert reserved(tmp_path) == {}
