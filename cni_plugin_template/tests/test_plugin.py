"""Tests of the template-routes plugin, with cnicore's pytest fixtures.

cnicore registers its fixtures through the ``pytest11`` entry point, so they
need no conftest: ``cni_sandbox``/``container_netns`` (throwaway namespaces, a
private "host" one the plugins run in), ``cni_runner`` (one plugin in-process),
``cni_bin_dir`` (launchers of every installed plugin) and ``cni_conflist`` (a
whole network list run as a runtime runs it). The machine's own network is
never touched; the tests marked ``privileged`` need root.

Three levels, from fast to real:

* pure functions (config parsing, gateway choice) and VERSION: no root;
* the plugin in-process through ``cni_runner``, after a hand-made interface
  or after cnicore's bridge plugin (host-local IPAM, its store under tmp_path);
* the installed launcher, chained after bridge in a conflist by libcni.

It imports only cnicore's public API (``cnicore.testing``, ``errors``,
``types``, ``ns``) and pyroute2, which also sets up and reads the kernel.
"""

from __future__ import annotations

import ipaddress
import os
from importlib.metadata import entry_points
from socket import AF_INET, AF_INET6

import pytest

from cni_plugin_template import plugin
from cnicore.errors import ERR_INVALID_NETWORK_CONFIG, CNIError
from cnicore.ns import NetNS
from cnicore.testing import (
    SPEC_VERSIONS,
    assert_netns_no_route,
    assert_netns_route,
    assert_plugin_valid,
    assert_result_has_ip,
    assert_result_has_route,
    run_executable,
    spec_has_chaining,
    spec_has_check,
    version_answer,
)
from cnicore.types import Result

privileged = pytest.mark.privileged

PLUGIN_TYPE = plugin.PLUGIN_TYPE
NET = "routesnet"
SUBNET, GW = "10.10.0.0/24", "10.10.0.1"


def conf(version: str = "1.0.0", routes: list[dict[str, str]] | None = None, **extra: object) -> dict:
    """This plugin's config as a runtime sends it (name and cniVersion injected)."""
    return {"cniVersion": version, "name": NET, "type": PLUGIN_TYPE, "routes": routes or [], **extra}


# -- pure functions ------------------------------------------------------------------


def test_parse_routes_normalises() -> None:
    routes = plugin.parse_routes({"routes": [{"dst": "10.99.1.2/16", "gw": "10.10.0.1"},
                                             {"dst": "FD99::/64"}]})
    assert [(r.dst, r.gw, r.family) for r in routes] == [("10.99.0.0/16", "10.10.0.1", 4),
                                                         ("fd99::/64", "", 6)]
    assert plugin.parse_routes({}) == []


@pytest.mark.parametrize(("routes", "message"), [
    ("10.0.0.0/8", "routes must be a list"),
    (["10.0.0.0/8"], "routes[0] must be an object"),
    ([{"dst": "10.0.0.1"}], "dst must be a CIDR"),
    ([{"dst": "10.0.0.0/33"}], "invalid dst"),
    ([{"dst": "10.0.0.0/8", "gw": "fd00::1"}], "not of the same IP family"),
    ([{"dst": "10.0.0.0/8", "gw": "nope"}], "invalid gw"),
    ([{"dst": "10.0.0.0/8", "via": "10.1.1.1"}], "unknown field 'via'"),
    ([{"dst": "10.0.0.0/8"}, {"dst": "10.0.0.0/8"}], "configured twice"),
])
def test_parse_routes_rejects(routes: object, message: str) -> None:
    with pytest.raises(CNIError) as info:
        plugin.parse_routes({"routes": routes})
    assert info.value.code == ERR_INVALID_NETWORK_CONFIG
    assert message in info.value.msg


def test_route_without_gw_takes_the_interface_gateway() -> None:
    prev = Result.from_dict({"cniVersion": "1.0.0",
                             "interfaces": [{"name": "cni0"}, {"name": "eth0", "sandbox": "/x"}],
                             "ips": [{"address": "10.10.0.2/24", "gateway": GW, "interface": 1},
                                     {"address": "10.20.0.2/24", "gateway": "10.20.0.1", "interface": 0}]})
    routes = plugin.parse_routes({"routes": [{"dst": "10.99.0.0/16"}, {"dst": "10.98.0.0/16", "gw": "10.10.0.9"},
                                             {"dst": "fd99::/64"}]})
    resolved = plugin.resolve(routes, prev, "eth0")
    assert [(r.dst, r.gw) for r in resolved] == [("10.99.0.0/16", GW), ("10.98.0.0/16", "10.10.0.9"),
                                                 ("fd99::/64", "")]


def test_version_answer() -> None:
    """A chained plugin supports every version that has prevResult."""
    answer = version_answer(plugin, PLUGIN_TYPE)
    assert answer["supportedVersions"] == [v for v in SPEC_VERSIONS if spec_has_chaining(v)]


def test_hooks_match_cnicore_hookspecs() -> None:
    """pluggy checks every hook name and argument against cnicore.hookspecs."""
    assert_plugin_valid(plugin, PLUGIN_TYPE)


def test_registered_under_its_type() -> None:
    """The entry point a launcher is generated from (needs `pip install .`)."""
    (entry,) = [ep for ep in entry_points(group="cnicore.plugins") if ep.name == PLUGIN_TYPE]
    assert entry.value == "cni_plugin_template.plugin"


# -- in-process, after a hand-made interface -------------------------------------------


def make_eth0(netns: NetNS, cidr: str = "10.10.0.2/24") -> None:
    """``eth0`` in the container: one end of a veth pair whose peer stays there too."""
    address, prefix = cidr.split("/")
    with netns.iproute() as ipr:
        ipr.link("add", ifname="eth0", kind="veth", peer="eth0peer")
        for name in ("eth0", "eth0peer"):
            ipr.link("set", index=ipr.link_lookup(ifname=name)[0], state="up")
        ipr.addr("add", index=ipr.link_lookup(ifname="eth0")[0], address=address, prefixlen=int(prefix))


def prev_result(netns: NetNS, version: str = "1.0.0") -> dict:
    return {"cniVersion": version, "interfaces": [{"name": "eth0", "sandbox": netns.path}],
            "ips": [{"address": "10.10.0.2/24", "gateway": GW, "interface": 0}]}


def kernel_routes(netns: NetNS, family: int = AF_INET) -> set[tuple[str, str]]:
    """(dst, gw) of the main-table routes through eth0, read inside the container."""
    with netns.iproute() as ipr:
        index = ipr.link_lookup(ifname="eth0")[0]
        return {(str(ipaddress.ip_network(f"{r.get_attr('RTA_DST')}/{r['dst_len']}")), r.get_attr("RTA_GATEWAY") or "")
                for r in ipr.get_routes(family=family, table=254)
                if r.get_attr("RTA_OIF") == index and r.get_attr("RTA_DST") is not None}


@privileged
@pytest.mark.parametrize("version", ["0.3.1", "0.4.0", "1.0.0", "1.1.0"])
def test_add_check_del(cni_runner, container_netns, version: str) -> None:
    runner = cni_runner(plugin, PLUGIN_TYPE)
    make_eth0(container_netns)
    routes = [{"dst": "10.99.0.0/16"}, {"dst": "192.0.2.0/24", "gw": "10.10.0.254"}, {"dst": "198.51.100.0/24"}]
    config = conf(version, routes, prevResult=prev_result(container_netns, version))

    result = runner.add(config, container_netns)

    assert result["cniVersion"] == version
    assert_result_has_ip(result, "10.10.0.2/24", ifname="eth0")
    assert_result_has_route(result, "10.99.0.0/16", GW)
    assert_result_has_route(result, "192.0.2.0/24", "10.10.0.254")
    assert kernel_routes(container_netns) >= {("10.99.0.0/16", GW), ("192.0.2.0/24", "10.10.0.254"),
                                              ("198.51.100.0/24", GW)}
    if spec_has_check(version):
        runner.check(dict(config, prevResult=result), container_netns)

    runner.delete(dict(config, prevResult=result), container_netns)
    assert not {dst for dst, _gw in kernel_routes(container_netns)} & {"10.99.0.0/16", "192.0.2.0/24",
                                                                         "198.51.100.0/24"}
    runner.delete(config, container_netns)  # DEL is idempotent


@privileged
def test_on_link_route_without_any_gateway(cni_runner, container_netns) -> None:
    runner = cni_runner(plugin, PLUGIN_TYPE)
    make_eth0(container_netns)
    prev = {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": container_netns.path}],
            "ips": [{"address": "10.10.0.2/24", "interface": 0}]}
    result = runner.add(conf(routes=[{"dst": "10.99.0.0/16"}], prevResult=prev), container_netns)
    assert_result_has_route(result, "10.99.0.0/16", "")
    assert_netns_route(container_netns, "10.99.0.0/16", gw="", dev="eth0")


@privileged
@pytest.mark.parametrize(("through", "with_prev_result"), [("runner", True), ("runner", False), ("launcher", True)])
def test_del_leaves_no_route(cni_runner, cni_sandbox, request, through: str, with_prev_result: bool) -> None:
    """DEL removes every route ADD made: on-link ones (``scope link``), via a gateway, IPv4 and IPv6,
    with or without prevResult; in-process and through the installed launcher (cold, or warm with
    ``CNICORE_TEST_LAUNCHERS=native``)."""
    container = cni_sandbox.container()
    make_eth0(container)
    if through == "launcher":
        executable = os.path.join(request.getfixturevalue("cni_bin_dir"), PLUGIN_TYPE)

        def run(command: str, config: dict) -> dict | None:
            return run_executable(executable, command, config, host=cni_sandbox.host, netns=container).ok().json
    else:
        runner = cni_runner(plugin, PLUGIN_TYPE)

        def run(command: str, config: dict) -> dict | None:
            return runner.run(command, config, netns=container).ok().json

    prev = {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": container.path}],
            "ips": [{"address": "10.10.0.2/24", "interface": 0}]}  # no gateway: the routes are on-link
    routes = [{"dst": "10.99.0.0/16"}, {"dst": "192.0.2.0/24", "gw": "10.10.0.254"}, {"dst": "fd99::/64"}]
    config = conf(routes=routes, prevResult=prev)
    result = run("ADD", config)
    assert_netns_route(container, "10.99.0.0/16", gw="", dev="eth0")
    assert_netns_route(container, "fd99::/64", gw="", dev="eth0")

    run("DEL", dict(config, prevResult=result) if with_prev_result else conf(routes=routes))

    for dst in ("10.99.0.0/16", "192.0.2.0/24", "fd99::/64"):
        assert_netns_no_route(container, dst)
    run("DEL", config)  # and again: nothing left is fine


@privileged
def test_del_leaves_other_routes_alone(cni_runner, container_netns) -> None:
    """A route to the same destination through another interface, or via another gateway than the
    configured one, is not this plugin's: DEL leaves it."""
    runner = cni_runner(plugin, PLUGIN_TYPE)
    make_eth0(container_netns)
    with container_netns.iproute() as ipr:
        peer = ipr.link_lookup(ifname="eth0peer")[0]
        ipr.route("add", dst="10.99.0.0/16", oif=peer, scope="link")
        ipr.route("add", dst="192.0.2.0/24", gateway="10.10.0.253", oif=ipr.link_lookup(ifname="eth0")[0])
    runner.delete(conf(routes=[{"dst": "10.99.0.0/16"}, {"dst": "192.0.2.0/24", "gw": "10.10.0.254"}]),
                  container_netns)
    assert_netns_route(container_netns, "10.99.0.0/16", gw="", dev="eth0peer")
    assert_netns_route(container_netns, "192.0.2.0/24", gw="10.10.0.253", dev="eth0")


@privileged
def test_add_is_all_or_nothing(cni_runner, container_netns) -> None:
    runner = cni_runner(plugin, PLUGIN_TYPE)
    make_eth0(container_netns)
    # The second gateway is not on any connected network: the kernel refuses it.
    config = conf(routes=[{"dst": "10.99.0.0/16"}, {"dst": "10.98.0.0/16", "gw": "172.31.0.1"}],
                  prevResult=prev_result(container_netns))
    outcome = runner.run("ADD", config, netns=container_netns)
    assert outcome.code != 0
    assert "failed to add route 10.98.0.0/16 via 172.31.0.1" in outcome.error.msg
    assert_netns_no_route(container_netns, "10.99.0.0/16")


@privileged
def test_add_needs_prev_result_and_the_interface(cni_runner, container_netns) -> None:
    runner = cni_runner(plugin, PLUGIN_TYPE)
    outcome = runner.run("ADD", conf(routes=[{"dst": "10.99.0.0/16"}]), netns=container_netns)
    assert outcome.error.code == ERR_INVALID_NETWORK_CONFIG and "prevResult missing" in outcome.error.msg
    outcome = runner.run("ADD", conf(routes=[{"dst": "10.99.0.0/16"}], prevResult=prev_result(container_netns)),
                         netns=container_netns)
    assert outcome.code != 0 and "interface 'eth0' not found" in outcome.error.msg


@privileged
def test_check_notices_a_removed_route(cni_runner, container_netns) -> None:
    runner = cni_runner(plugin, PLUGIN_TYPE)
    make_eth0(container_netns)
    config = conf(routes=[{"dst": "10.99.0.0/16"}], prevResult=prev_result(container_netns))
    result = runner.add(config, container_netns)

    with container_netns.iproute() as ipr:
        ipr.route("del", dst="10.99.0.0/16", oif=ipr.link_lookup(ifname="eth0")[0])
    outcome = runner.run("CHECK", dict(config, prevResult=result), netns=container_netns)
    assert outcome.code != 0 and "is missing in the container" in outcome.error.msg
    outcome = runner.run("CHECK", config, netns=container_netns)  # prevResult without our route
    assert outcome.code != 0 and "missing from prevResult" in outcome.error.msg


@privileged
def test_del_when_things_are_gone(cni_runner, cni_sandbox) -> None:
    runner = cni_runner(plugin, PLUGIN_TYPE)
    config = conf(routes=[{"dst": "10.99.0.0/16"}])
    container = cni_sandbox.container()
    runner.delete(config, container)  # no eth0
    runner.delete(config, "")  # no namespace at all
    gone = cni_sandbox.container()
    path = gone.path
    gone.remove()
    runner.delete(config, path)  # the namespace was removed


# -- chained after cnicore's bridge (host-local IPAM) ------------------------------------


def bridge_conf(version: str, ipam_dir) -> dict:
    return {"cniVersion": version, "name": NET, "type": "bridge", "bridge": "cni0", "isGateway": True,
            "ipam": {"type": "host-local", "dataDir": str(ipam_dir), "ranges": [[{"subnet": SUBNET}]]}}


@privileged
@pytest.mark.parametrize("version", ["0.4.0", "1.0.0"])
def test_in_process_after_bridge(cni_runner, cni_bin_dir, container_netns, tmp_path, version: str) -> None:
    """bridge ADD first, then this plugin with bridge's result as prevResult."""
    bridge = cni_runner("bridge", path=cni_bin_dir)  # host-local is exec'd (in-process) from cni_bin_dir
    routes = cni_runner(plugin, PLUGIN_TYPE, path=cni_bin_dir)
    first = bridge_conf(version, tmp_path / "ipam")
    second = conf(version, [{"dst": "10.99.0.0/16"}, {"dst": "192.0.2.0/24", "gw": "10.10.0.254"}])

    bridged = bridge.add(first, container_netns)
    result = routes.add(dict(second, prevResult=bridged), container_netns)

    assert_result_has_ip(result, "10.10.0.2/24", gateway=GW, ifname="eth0")
    assert_result_has_route(result, "10.99.0.0/16", GW)
    assert_result_has_route(result, "192.0.2.0/24", "10.10.0.254")
    assert kernel_routes(container_netns) >= {("10.99.0.0/16", GW), ("192.0.2.0/24", "10.10.0.254")}

    routes.check(dict(second, prevResult=result), container_netns)
    bridge.check(dict(first, prevResult=result), container_netns)
    routes.delete(dict(second, prevResult=result), container_netns)
    bridge.delete(dict(first, prevResult=result), container_netns)
    assert_netns_no_route(container_netns, "10.99.0.0/16")


@privileged
def test_conflist_through_launchers(cni_conflist, container_netns, tmp_path) -> None:
    """The installed launchers, run by libcni as a runtime would: bridge (dual stack), then this plugin."""
    first = bridge_conf("1.0.0", tmp_path / "ipam")
    first["ipam"]["ranges"].append([{"subnet": "fd10::/64"}])
    net = cni_conflist({"cniVersion": "1.0.0", "name": NET, "plugins": [
        first, {"type": PLUGIN_TYPE, "routes": [{"dst": "10.99.0.0/16"}, {"dst": "fd99::/64"}]}]})

    result = net.add(container_netns)

    assert_result_has_ip(result, "10.10.0.2/24", ifname="eth0")
    assert_result_has_ip(result, "fd10::2/64", ifname="eth0")
    assert_result_has_route(result, "10.99.0.0/16", GW)
    assert_result_has_route(result, "fd99::/64", "fd10::1")
    assert ("10.99.0.0/16", GW) in kernel_routes(container_netns, AF_INET)
    assert ("fd99::/64", "fd10::1") in kernel_routes(container_netns, AF_INET6)

    net.check(container_netns)
    net.delete(container_netns)
    assert_netns_no_route(container_netns, "10.99.0.0/16")
    assert net.cached_result(container_netns) is None
