"""Churn under load, bounded for CI: 200 containers go through ADD, CHECK and
DEL, 8 at a time, while GC runs alongside. Half of them get their address from
Go's host-local and half from ours, on one store; some ADDs fail on purpose
half-way (a later plugin in the list refuses), some namespaces are deleted
before their DEL. No two live containers may ever hold the same address, and
at the end the store, the host's veths, the masquerade rules and the result
cache are empty. The figures are printed for docs/RELIABILITY.md."""

from __future__ import annotations

import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from cnicore import rtnl
from cnicore.errors import CNIError
from helpers.state import firewall_rules

pytestmark = [pytest.mark.privileged, pytest.mark.interop]

CONTAINERS, WORKERS = 200, 8
NAME, SUBNET = "soak", "10.35.0.0/24"


def _bridge(store: str) -> dict:
    return {"type": "bridge", "bridge": "brsoak", "isGateway": True, "ipMasq": True,
            "ipam": {"type": "host-local", "subnet": SUBNET, "dataDir": store}}


def _conflist(store: str, failing: bool = False, version: str = "1.0.0") -> dict:
    """Debian's Go host-local speaks up to 1.0.0; GC needs a 1.1.0 list."""
    plugins = [_bridge(store)]
    if failing:  # the chain fails after bridge and host-local did their work
        plugins.append({"type": "tuning", "sysctl": {"net.ipv4.conf.IFNAME.no_such_key": "1"}})
    return {"cniVersion": version, "name": NAME, "plugins": plugins}


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.live: dict[str, str] = {}  # address -> container
        self.pending: set[str] = set()
        self.counts = {"added": 0, "failed_on_purpose": 0, "netns_deleted_first": 0, "checked": 0,
                       "deleted": 0, "gc_runs": 0, "go_ipam": 0, "duplicates": 0}

    def bump(self, key: str) -> None:
        with self.lock:
            self.counts[key] += 1


def test_churn(cni_conflist, cni_sandbox, cni_bin_dir, tmp_path):
    store, cache = str(tmp_path / "store"), str(tmp_path / "cache")
    go_ipam = tmp_path / "go-ipam"  # Go's host-local first on CNI_PATH, our bridge after it
    go_ipam.mkdir()
    (go_ipam / "host-local").symlink_to("/usr/lib/cni/host-local")
    ours = cni_conflist(_conflist(store), cache_dir=cache)
    with_go = cni_conflist(_conflist(store), cni_path=[str(go_ipam), cni_bin_dir], cache_dir=cache)
    failing = cni_conflist(_conflist(store, failing=True), cache_dir=cache)
    collecting = cni_conflist(_conflist(store, version="1.1.0"), cache_dir=cache)
    tally = Tally()
    rng = random.Random(9)
    plans = [(f"c{i:03d}", rng.random()) for i in range(CONTAINERS)]
    stop = threading.Event()
    gc_gate = threading.Lock()

    def lifecycle(plan: tuple[str, float]) -> None:
        cid, roll = plan
        runner = failing if roll < 0.1 else with_go if int(cid[1:]) % 2 else ours
        netns = cni_sandbox.container()
        with gc_gate, tally.lock:  # a runtime never starts an ADD it would not list as valid to a running GC
            tally.pending.add(cid)
        try:
            try:
                result = runner.add(netns, container_id=cid)
            except CNIError:
                assert runner is failing, f"{cid}: unexpected ADD failure"
                tally.bump("failed_on_purpose")
                runner.delete(netns, container_id=cid)  # what a runtime does after a failed ADD
                return
            assert runner is not failing
            address = result["ips"][0]["address"].split("/")[0]
            with tally.lock:
                if address in tally.live:
                    tally.counts["duplicates"] += 1
                tally.live[address] = cid
                tally.counts["added"] += 1
                tally.counts["go_ipam"] += runner is with_go
            runner.check(netns, container_id=cid)
            tally.bump("checked")
            if roll > 0.85:
                netns.remove()
                tally.bump("netns_deleted_first")
            with tally.lock:
                del tally.live[address]
            runner.delete(netns, container_id=cid)
            tally.bump("deleted")
        finally:
            with tally.lock:
                tally.pending.discard(cid)
            netns.remove()

    def collector() -> None:
        while not stop.wait(1.0):
            with gc_gate:
                with tally.lock:
                    valid = [(cid, "eth0") for cid in tally.pending | set(tally.live.values())]
                collecting.cni.gc_network_list(collecting.conf_list, valid)
            tally.bump("gc_runs")

    started = time.monotonic()
    gc_thread = threading.Thread(target=collector)
    gc_thread.start()
    try:
        with ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(lifecycle, plans))
    finally:
        stop.set()
        gc_thread.join()
    collecting.cni.gc_network_list(collecting.conf_list, [])
    elapsed = time.monotonic() - started

    def veths() -> list[str]:
        with rtnl.RtnlSocket() as sock:
            return [link.name for link in sock.links() if link.name.startswith("veth")]

    print(f"\nsoak: {CONTAINERS} containers in {elapsed:.0f} s, {tally.counts}")
    assert tally.counts["duplicates"] == 0
    assert tally.counts["added"] + tally.counts["failed_on_purpose"] == CONTAINERS
    assert tally.counts["go_ipam"] > 50 and tally.counts["failed_on_purpose"] > 5
    assert tally.counts["netns_deleted_first"] > 5 and tally.counts["gc_runs"] >= 1
    assert [n for n in os.listdir(os.path.join(store, NAME)) if n[0].isdigit()] == []
    assert cni_sandbox.host.do(veths) == []
    assert firewall_rules(cni_sandbox.host) == ([], [])
    assert os.listdir(os.path.join(cache, "results")) == []
