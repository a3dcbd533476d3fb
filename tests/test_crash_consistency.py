"""Crash consistency: SIGKILL at every step of a bridge ADD (the plugin, host-local's
reservation inside it included) and of
libcni's cache write (the runtime), then DEL and GC as a runtime would: no
veth, address, reservation, rule or cache entry may be left, and another
container on the same network is untouched. Fault points are inert unless
``CNICORE_FAULTS`` names one (:mod:`cnicore.faults`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cnicore import rtnl
from cnicore.errors import CNIError
from cnicore.testing import run_in
from helpers.state import firewall_rules

pytestmark = [pytest.mark.privileged]

#: Every fault point of bridge ADD, in the order ADD passes them.
BRIDGE_POINTS = ["bridge.add.bridge", "bridge.add.veth", "bridge.add.attached", "bridge.add.spoofcheck",
                 "host_local.reserve.scratch", "host_local.reserve.linked", "host_local.reserve.cursor",
                 "host_local.index.save", "bridge.add.ipam", "bridge.add.addresses", "bridge.add.gateway",
                 "bridge.add.masquerade", "bridge.add.done"]
#: libcni's ADD after the plugins and before its cache entry, and inside the entry's write.
LIBCNI_POINTS = ["libcni.add.before_cache", "fsutil.before_rename"]


def conflist(store: str) -> dict:
    return {"cniVersion": "1.1.0", "name": "crash", "plugins": [
        {"type": "bridge", "bridge": "brcrash", "isGateway": True, "ipMasq": True, "macspoofchk": True,
         "ipam": {"type": "host-local", "subnet": "10.34.0.0/24", "dataDir": store}}]}


def _links(netns) -> list[str]:
    def read() -> list[str]:
        with rtnl.RtnlSocket() as sock:
            return sorted(link.name for link in sock.links())

    return netns.do(read)


class World:
    """One network with a bystander container, and what a user would inspect."""

    def __init__(self, cni_conflist, sandbox, tmp_path) -> None:
        self.store, self.cache = str(tmp_path / "store"), str(tmp_path / "cache")
        self.sandbox = sandbox
        self.runner = cni_conflist(conflist(self.store), cache_dir=self.cache)
        self.bystander = sandbox.container()
        self.runner.add(self.bystander, container_id="bystander")
        self.baseline = self.observe()

    def observe(self) -> tuple:
        results = os.path.join(self.cache, "results")
        store = os.path.join(self.store, "crash")
        return (_links(self.bystander), run_in(self.bystander, "ip", "-o", "addr"),
                sorted(n for n in _links(self.sandbox.host) if n.startswith("veth")),
                firewall_rules(self.sandbox.host),
                sorted(n for n in os.listdir(store) if n[0].isdigit()),
                sorted(os.listdir(results)))

    def gc(self) -> None:
        self.runner.cni.gc_network_list(self.runner.conf_list, [("bystander", "eth0")])


@pytest.fixture
def world(cni_conflist, cni_sandbox, tmp_path):
    return World(cni_conflist, cni_sandbox, tmp_path)


@pytest.mark.parametrize("point", BRIDGE_POINTS)
def test_plugin_killed_mid_add_then_del_and_gc_leave_nothing(point, world, monkeypatch):
    ctr = world.sandbox.container()
    monkeypatch.setenv("CNICORE_FAULTS", f"{point}=kill")
    with pytest.raises(CNIError) as info:
        world.runner.add(ctr, container_id="victim")
    # Cold, the runtime sees its plugin killed; through the warm server, the launcher
    # sees its worker gone mid-ADD and asks the runtime to try again later (code 11).
    assert "signal: killed" in str(info.value) or "killed" in str(info.value).lower() \
        or (info.value.code == 11 and "warm server closed the connection" in info.value.msg), info.value
    monkeypatch.delenv("CNICORE_FAULTS")
    world.runner.delete(ctr, container_id="victim")
    world.gc()
    assert _links(ctr) == ["lo"]
    assert world.observe() == world.baseline


@pytest.mark.parametrize("point", LIBCNI_POINTS)
def test_runtime_killed_mid_cache_write_then_del_and_gc_leave_nothing(point, world, cni_bin_dir):
    """libcni runs in a child process (the runtime) that the fault kills."""
    ctr = world.sandbox.container()
    script = (
        "import sys\n"
        "from cnicore.libcni import CNIConfig, RuntimeConf, conf_list_from_bytes\n"
        f"cni = CNIConfig([{cni_bin_dir!r}], cache_dir={world.cache!r})\n"
        f"conf = conf_list_from_bytes({json.dumps(json.dumps(conflist(world.store)))}.encode())\n"
        f"cni.add_network_list(conf, RuntimeConf('victim', {ctr.path!r}, 'eth0'))\n")
    env = dict(os.environ, CNICORE_FAULTS=f"{point}=kill")
    proc = world.sandbox.host.do(subprocess.run, [sys.executable, "-c", script], env=env, capture_output=True,
                                 timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()
    if point == "fsutil.before_rename":  # the half-made entry is there until GC
        assert any(name.endswith(".tmp") for name in os.listdir(os.path.join(world.cache, "results")))
    world.runner.delete(ctr, container_id="victim")
    world.gc()
    assert _links(ctr) == ["lo"]
    assert world.observe() == world.baseline


def test_fault_points_are_inert_unless_named(world, monkeypatch):
    monkeypatch.setenv("CNICORE_FAULTS", "no.such.point=kill")
    ctr = world.sandbox.container()
    world.runner.add(ctr, container_id="fine")
    world.runner.delete(ctr, container_id="fine")
    assert world.observe() == world.baseline
