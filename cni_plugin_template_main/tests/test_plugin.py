"""Tests of the template-ptp plugin, with cnicore's pytest fixtures and host-local as IPAM.

cnicore registers its fixtures through the ``pytest11`` entry point, so they
need no conftest: ``cni_sandbox``/``container_netns`` (throwaway namespaces, a
private "host" one the plugins run in), ``cni_runner`` (one plugin in-process),
``cni_bin_dir`` (launchers of every installed plugin: host-local, and this one)
and ``cni_conflist`` (a whole network list run as a runtime runs it). The
machine's own network is never touched; the tests marked ``privileged`` need
root. With ``CNICORE_TEST_LAUNCHERS=native`` the launchers are native ones
served by a warm server (``cnitool daemon``) that the fixtures start.

Three levels, from fast to real:

* config decoding and VERSION: no root;
* the plugin in-process through ``cni_runner`` (host-local exec'd from
  ``cni_bin_dir``): ADD/CHECK/DEL, dual stack, rollback, DEL when things are gone;
* the installed launchers run by libcni: two containers ping each other
  through the host.
"""

from __future__ import annotations

import time
from importlib.metadata import entry_points

import pytest

from cni_plugin_template_main import plugin
from cnicore.config import NetConfError, decode
from cnicore.ns import NetNS
from cnicore.testing import (
    assert_netns_address,
    assert_netns_no_route,
    assert_netns_route,
    assert_plugin_valid,
    assert_result_has_interface,
    assert_result_has_ip,
    netns_routes,
    ping,
    run_in,
    spec_has_check,
    version_answer,
)
from cnicore.version import ALL

privileged = pytest.mark.privileged

PLUGIN_TYPE = plugin.PLUGIN_TYPE
NET = "ptpnet"
SUBNET4, GW4 = "10.20.0.0/24", "10.20.0.1"
SUBNET6, GW6 = "fd20::/64", "fd20::1"


def conf(tmp_path, version: str = "1.0.0", subnets: tuple[str, ...] = (SUBNET4,), **extra: object) -> dict:
    """This plugin's config with host-local IPAM, its store under ``tmp_path``."""
    ranges = [[{"subnet": subnet}] for subnet in subnets]
    return {"cniVersion": version, "name": NET, "type": PLUGIN_TYPE,
            "ipam": {"type": "host-local", "dataDir": str(tmp_path / "ipam"), "ranges": ranges}, **extra}


def links(netns: NetNS) -> list[str]:
    """The link names in ``netns``."""
    return [line.split(":")[1].strip().split("@")[0] for line in run_in(netns, "ip", "-o", "link").splitlines()]


def reserved(tmp_path) -> list[str]:
    """The addresses host-local has reserved on this network."""
    store = tmp_path / "ipam" / NET
    return sorted(p.name for p in store.iterdir() if p.name[0].isdigit() or ":" in p.name) if store.exists() else []


def wait_for(condition, deadline: float = 20.0) -> None:
    """Until ``condition()`` holds, at most ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < end, "condition not met in time"
        time.sleep(0.1)


# -- no root ------------------------------------------------------------------------


def test_version_answer() -> None:
    assert version_answer(plugin, PLUGIN_TYPE)["supportedVersions"] == list(ALL)


def test_hooks_match_cnicore_hookspecs() -> None:
    assert_plugin_valid(plugin, PLUGIN_TYPE)


def test_registered_under_its_type() -> None:
    (entry,) = [ep for ep in entry_points(group="cnicore.plugins") if ep.name == PLUGIN_TYPE]
    assert entry.value == "cni_plugin_template_main.plugin"


def test_config_is_decoded_with_go_rules() -> None:
    decoded = decode({"MTU": 1400, "dns": {"nameservers": ["10.0.0.53"]}}, plugin.NetConf)
    assert decoded.mtu == 1400 and decoded.dns.nameservers == ["10.0.0.53"]  # keys fold as in Go
    assert decode({}, plugin.NetConf).dns.search == []  # Go's zero values
    with pytest.raises(NetConfError) as info:
        decode({"mtu": "big"}, plugin.NetConf)
    assert info.value.msg == ("failed to load netconf: json: cannot unmarshal string into Go struct field "
                              "NetConf.mtu of type int")


# -- in-process, host-local exec'd from cni_bin_dir ---------------------------------------


@privileged
@pytest.mark.parametrize("version", ["0.3.1", "1.0.0", "1.1.0"])
def test_add_check_del(cni_runner, cni_bin_dir, cni_sandbox, tmp_path, version: str) -> None:
    runner = cni_runner(plugin, PLUGIN_TYPE, path=cni_bin_dir)
    ctr = cni_sandbox.container()
    config = conf(tmp_path, version, mtu=1400)

    result = runner.add(config, ctr)

    assert result["cniVersion"] == version
    assert_result_has_ip(result, "10.20.0.2/24", gateway=GW4, ifname="eth0")
    assert_result_has_interface(result, "eth0", sandbox=ctr.path)
    assert_netns_address(ctr, "eth0", "10.20.0.2/24")
    assert_netns_route(ctr, f"{GW4}/32", gw="", dev="eth0")  # the gateway on-link ...
    assert_netns_route(ctr, SUBNET4, gw=GW4, dev="eth0")  # ... and the subnet through it
    host = cni_sandbox.host
    (veth,) = [name for name in links(host) if name.startswith("veth")]
    assert_netns_address(host, veth, f"{GW4}/32")
    assert_netns_route(host, "10.20.0.2/32", gw="", dev=veth)
    assert "mtu 1400" in run_in(ctr, "ip", "link", "show", "eth0")
    assert run_in(host, "sysctl", "-n", "net.ipv4.ip_forward").strip() == "1"
    if spec_has_check(version):
        runner.check(dict(config, prevResult=result), ctr)

    runner.delete(config, ctr)
    assert links(ctr) == ["lo"] and links(host) == ["lo"] and reserved(tmp_path) == []
    runner.delete(config, ctr)  # DEL is idempotent


@privileged
def test_dual_stack(cni_runner, cni_bin_dir, cni_sandbox, tmp_path) -> None:
    runner = cni_runner(plugin, PLUGIN_TYPE, path=cni_bin_dir)
    ctr, host = cni_sandbox.container(), cni_sandbox.host
    config = conf(tmp_path, subnets=(SUBNET4, SUBNET6), dns={"nameservers": ["10.20.0.53"], "domain": None})

    result = runner.add(config, ctr)

    assert result["dns"] == {"nameservers": ["10.20.0.53"]}  # the config's DNS goes into the result
    assert_result_has_ip(result, "10.20.0.2/24", gateway=GW4, ifname="eth0")
    assert_result_has_ip(result, "fd20::2/64", gateway=GW6, ifname="eth0")
    assert_netns_address(ctr, "eth0", "fd20::2/64")
    assert_netns_route(ctr, f"{GW6}/128", dev="eth0")
    assert_netns_route(ctr, SUBNET6, gw=GW6, dev="eth0")
    (veth,) = [name for name in links(host) if name.startswith("veth")]
    assert_netns_address(host, veth, f"{GW6}/128")
    assert_netns_route(host, "fd20::2/128", dev=veth)
    assert run_in(host, "sysctl", "-n", "net.ipv6.conf.all.forwarding").strip() == "1"
    runner.check(dict(config, prevResult=result), ctr)
    ping(ctr, GW4, timeout=20)
    ping(ctr, GW6, timeout=20)  # waits out the host end's IPv6 DAD

    runner.delete(config, ctr)
    assert links(host) == ["lo"] and reserved(tmp_path) == []


@privileged
def test_check_notices_a_missing_route(cni_runner, cni_bin_dir, container_netns, tmp_path) -> None:
    runner = cni_runner(plugin, PLUGIN_TYPE, path=cni_bin_dir)
    config = conf(tmp_path)
    config["ipam"]["routes"] = [{"dst": "10.99.0.0/16"}]
    result = runner.add(config, container_netns)
    run_in(container_netns, "ip", "route", "del", "10.99.0.0/16")

    outcome = runner.run("CHECK", dict(config, prevResult=result), netns=container_netns)

    # Go's wording: the route printed as Go prints the struct (Dst:{IP:10.99.0.0 Mask:ffff0000} ...)
    assert outcome.error.code == 999
    assert "Expected Route" in outcome.error.msg and "10.99.0.0 Mask:ffff0000" in outcome.error.msg
    runner.delete(config, container_netns)


@privileged
def test_failed_add_leaves_nothing(cni_runner, cni_bin_dir, cni_sandbox, tmp_path) -> None:
    """The IPAM route's gateway is unreachable: ADD fails after the veth was made
    and the address reserved; both are undone."""
    runner = cni_runner(plugin, PLUGIN_TYPE, path=cni_bin_dir)
    ctr, host = cni_sandbox.container(), cni_sandbox.host
    config = conf(tmp_path)
    config["ipam"]["routes"] = [{"dst": "10.99.0.0/16", "gw": "172.31.0.1"}]

    outcome = runner.run("ADD", config, netns=ctr)

    assert outcome.error.code == 999 and "failed to add route '10.99.0.0/16 via 172.31.0.1" in outcome.error.msg
    assert links(ctr) == ["lo"] and links(host) == ["lo"] and reserved(tmp_path) == []
    assert_netns_no_route(host, "10.20.0.2/32")
    del config["ipam"]["routes"]
    runner.add(config, ctr)  # and the same container can be added again
    runner.delete(config, ctr)


@privileged
def test_del_when_things_are_gone(cni_runner, cni_bin_dir, cni_sandbox, tmp_path) -> None:
    runner = cni_runner(plugin, PLUGIN_TYPE, path=cni_bin_dir)
    config = conf(tmp_path)
    gone = cni_sandbox.container()
    runner.add(config, gone)
    path = gone.path
    gone.remove()  # the container's namespace (and the veth with it) is gone before DEL
    runner.delete(config, path)
    assert reserved(tmp_path) == []
    wait_for(lambda: links(cni_sandbox.host) == ["lo"])  # the kernel destroys a namespace in the background
    runner.delete(config, path)
    runner.delete(config, "")  # no namespace at all
    runner.delete(config, cni_sandbox.container())  # a namespace without the veth


@privileged
def test_add_needs_a_netns_that_exists(cni_runner, cni_bin_dir, tmp_path) -> None:
    runner = cni_runner(plugin, PLUGIN_TYPE, path=cni_bin_dir)
    outcome = runner.run("ADD", conf(tmp_path), netns="/var/run/netns/no-such-namespace")
    assert outcome.error.code == 999 and 'failed to open netns "/var/run/netns/no-such-namespace"' in outcome.error.msg
    assert reserved(tmp_path) == []


# -- the launchers, as a runtime runs them --------------------------------------------------


@privileged
def test_two_containers_reach_each_other_through_the_host(cni_conflist, cni_sandbox, tmp_path) -> None:
    net = cni_conflist({"cniVersion": "1.0.0", "name": NET, "plugins": [
        {k: v for k, v in conf(tmp_path, subnets=(SUBNET4, SUBNET6)).items() if k not in ("cniVersion", "name")}]})
    first, second = cni_sandbox.container(), cni_sandbox.container()

    one, two = net.add(first), net.add(second)

    assert_result_has_ip(one, "10.20.0.2/24")
    assert_result_has_ip(two, "10.20.0.3/24")
    assert_result_has_ip(two, "fd20::3/64")
    ping(first, "10.20.0.3", timeout=20)
    ping(second, "10.20.0.2", timeout=20)
    ping(first, "fd20::3", timeout=20)
    net.check(first)
    net.check(second)
    net.delete(first)
    net.delete(first)  # twice
    assert len([r for r in netns_routes(cni_sandbox.host) if r.dst.startswith("10.20.0.")]) == 1
    net.delete(second)
    assert links(cni_sandbox.host) == ["lo"] and reserved(tmp_path) == []
