"""Rollback under concurrency, through real launchers: a failing ADD undoes
only what is its own — never a bridge another ADD is joining, never the
masquerade state of the same container's other interface."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from cnicore import rtnl
from cnicore.testing import run_executable, run_in
from helpers.state import firewall_rules

pytestmark = [pytest.mark.privileged]


def _ports(netns, bridge: str) -> list[str]:
    def read() -> list[str]:
        with rtnl.RtnlSocket() as sock:
            links = sock.links()
            index = {link.name: link.index for link in links}.get(bridge)
            return sorted(link.name for link in links if index is not None and link.master == index)

    return netns.do(read)


def test_failing_adds_never_delete_a_bridge_others_are_joining(cni_bin_dir, cni_sandbox):
    """Each round starts without the bridge; a third of the ADDs fail right after
    making sure it exists (the widest window), racing the others."""
    jobs, fail_every = 24, 3
    containers = [cni_sandbox.container() for _ in range(jobs)]
    for round_ in range(3):
        bridge = f"brrace{round_}"
        conf = json.dumps({"cniVersion": "1.0.0", "name": "race", "type": "bridge", "bridge": bridge})

        def add(i: int):
            extra = {"CNICORE_FAULTS": "bridge.add.bridge=fail"} if i % fail_every == 0 else {}
            return run_executable(f"{cni_bin_dir}/bridge", "ADD", conf, host=cni_sandbox.host,
                                  netns=containers[i], container_id=f"c{round_}-{i}", ifname=f"e{round_}",
                                  extra=extra)

        with ThreadPoolExecutor(jobs) as pool:
            outcomes = list(pool.map(add, range(jobs)))
        for i, out in enumerate(outcomes):
            if i % fail_every == 0:
                assert (out.code, out.error.msg) == (1, "fault injected at bridge.add.bridge"), out
            else:
                assert out.code == 0, out
        expected = jobs - len(range(0, jobs, fail_every))
        assert len(_ports(cni_sandbox.host, bridge)) == expected
        # the failed ones left no veth behind, on either side
        for i in range(0, jobs, fail_every):
            assert f"e{round_}" not in run_in(containers[i], "ip", "-o", "link")


@pytest.mark.parametrize("backend", ["iptables", "nftables"])
def test_failing_add_on_eth1_keeps_eth0_masquerade(backend, cni_bin_dir, cni_sandbox, tmp_path):
    store = tmp_path / "store"
    conf = {"cniVersion": "1.0.0", "name": "masq", "type": "bridge", "bridge": "brm", "isGateway": True,
            "ipMasq": True, "ipMasqBackend": backend,
            "ipam": {"type": "host-local", "subnet": "10.31.0.0/24", "dataDir": str(store)}}
    ctr = cni_sandbox.container()
    env = {"host": cni_sandbox.host, "netns": ctr, "container_id": "c1"}
    bridge = f"{cni_bin_dir}/bridge"
    run_executable(bridge, "ADD", conf, ifname="eth0", **env).ok()
    with_eth0 = firewall_rules(cni_sandbox.host)
    assert any("10.31.0.2" in line for line in with_eth0[0] + with_eth0[1])

    failed = run_executable(bridge, "ADD", conf, ifname="eth1",
                            extra={"CNICORE_FAULTS": "bridge.add.masquerade=fail"}, **env)
    assert (failed.code, failed.error.code) == (1, 999)
    assert firewall_rules(cni_sandbox.host) == with_eth0  # eth0's chain and rules, exactly
    assert "eth1" not in run_in(ctr, "ip", "-o", "link")
    assert sorted(p.name for p in (store / "masq").iterdir() if p.name[0].isdigit()) == ["10.31.0.2"]

    run_executable(bridge, "DEL", conf, ifname="eth0", **env).ok()
    assert firewall_rules(cni_sandbox.host) == ([], [])


def test_gateway_add_after_an_l2_port_came_and_went(cni_bin_dir, cni_sandbox, tmp_path):
    """An unpinned bridge whose last port left has a zero MAC (our rollback can
    recreate bridges, so this state is reachable): a later gateway ADD must
    still work. Go's bridge fails there ("could not set bridge's mac")."""
    l2 = {"cniVersion": "1.0.0", "name": "zmac", "type": "bridge", "bridge": "brz"}
    l3 = dict(l2, isGateway=True, ipam={"type": "host-local", "subnet": "10.36.0.0/24", "dataDir": str(tmp_path)})
    bridge = f"{cni_bin_dir}/bridge"
    first = cni_sandbox.container()
    run_executable(bridge, "ADD", l2, host=cni_sandbox.host, netns=first, container_id="a").ok()
    run_executable(bridge, "DEL", l2, host=cni_sandbox.host, netns=first, container_id="a").ok()
    assert "00:00:00:00:00:00" in run_in(cni_sandbox.host, "ip", "-o", "link", "show", "brz")
    second = cni_sandbox.container()
    added = run_executable(bridge, "ADD", l3, host=cni_sandbox.host, netns=second, container_id="b").ok().json
    mac = added["interfaces"][0]["mac"]
    assert mac != "00:00:00:00:00:00" and mac in run_in(cni_sandbox.host, "ip", "-o", "link", "show", "brz")
    run_executable(bridge, "CHECK", dict(l3, prevResult=added), host=cni_sandbox.host, netns=second,
                   container_id="b").ok()
    run_executable(bridge, "DEL", l3, host=cni_sandbox.host, netns=second, container_id="b").ok()
