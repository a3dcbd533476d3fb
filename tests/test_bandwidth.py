"""The built-in bandwidth meta plugin: config rules, and real namespaces in-process,
through a launcher (cold, or warm with CNICORE_TEST_LAUNCHERS=native) and side by
side with Go's /usr/lib/cni/bandwidth (same inputs, same tc state, same errors).

Safety: every plugin run, ifb device and qdisc lives in a sandbox's private host
namespace (the plugin's own); Go's bridge makes the container's veth there.
"""

from __future__ import annotations

import json
import os
import re

import pytest

from cni_plugins_builtin.bandwidth import config as bw_config
from cni_plugins_builtin.bandwidth import plugin as bandwidth
from cnicore.config import NetConfError
from cnicore.testing import run_executable
from cnicore.testing import run_in as sh
from helpers.runners import exec_run, need, one_launcher, our_run

privileged = pytest.mark.privileged
interop = pytest.mark.interop

GO_BANDWIDTH = "/usr/lib/cni/bandwidth"
GO_BRIDGE = "/usr/lib/cni/bridge"
CID = "cnitest-bw"
NET = "bwnet"
IFB = bw_config.ifb_name(NET, CID)
VERSIONS = ("0.3.1", "0.4.0", "1.0.0")  # Debian's Go bandwidth speaks up to 1.0.0
LIMITS = {"ingressRate": 8_000_000, "ingressBurst": 80_000, "egressRate": 16_000_000, "egressBurst": 160_000}


# -- config, pure ----------------------------------------------------------------------


def test_ifb_name_is_the_references():
    # bwp + sha512(network name + container ID), 15 characters (Go's MustFormatHashWithPrefix)
    assert bw_config.ifb_name("bwnet", "ctr1") == "bwpea62040b30ca"
    assert len(IFB) == 15 and IFB.startswith("bwp")


@pytest.mark.parametrize("entry, message", [
    ({"ingressRate": 100}, "if rate is set, burst must also be set"),
    ({"egressBurst": 100}, "if burst is set, rate must also be set"),
    ({"egressRate": 100, "egressBurst": 8 * 0xFFFFFFFF}, "burst cannot be more than 4GB"),
])
@pytest.mark.parametrize("where", ["config", "runtimeConfig"])
def test_validation(entry, message, where):
    raw = {"name": "n", **entry} if where == "config" else {"name": "n", "runtimeConfig": {"bandwidth": entry}}
    with pytest.raises(NetConfError) as info:
        bw_config.parse_conf(raw)
    assert (info.value.code, info.value.msg) == (999, message)


def test_config_entry_beats_runtime_config():
    """As the reference: runtimeConfig.bandwidth is used only when the config has no entry of its own."""
    _, only_runtime = bw_config.parse_conf({"name": "n", "runtimeConfig": {"bandwidth": {"egressRate": 8,
                                                                                        "egressBurst": 8}}})
    assert only_runtime is not None and only_runtime.egress
    _, both = bw_config.parse_conf({"name": "n", "ingressRate": 16, "ingressBurst": 16,
                                    "runtimeConfig": {"bandwidth": {"egressRate": 8, "egressBurst": 8}}})
    assert both is not None and both.ingress and not both.egress
    assert bw_config.parse_conf({"name": "n"})[1] is None


def test_negative_rate_is_a_type_error():
    with pytest.raises(NetConfError) as info:
        bw_config.parse_conf({"name": "n", "ingressRate": -1})
    assert info.value.msg.startswith("failed to parse network configuration: json: cannot unmarshal number -1")


def test_tbf_arithmetic_is_the_references():
    tick = bw_config.tick_in_usec("000003e8 00000040 000f4240 3b9aca00")
    assert tick == 15.625
    # tc reports these as "rate 8Mbit burst 10000b lat 25ms" for Go's qdisc
    assert bw_config.tbf_params(8_000_000, 80_000, tick) == (1_000_000, 35_000, 156_250)


# -- in namespaces --------------------------------------------------------------------


def bridge(host, netns, tmp_path, version="1.0.0", cid=CID):
    """A container on Go's bridge: its ADD result (the prevResult)."""
    need(GO_BRIDGE)
    conf = {"cniVersion": version, "name": NET, "type": "bridge", "bridge": "cnibw0", "isGateway": True,
            "ipam": {"type": "host-local", "subnet": "10.79.0.0/24", "dataDir": str(tmp_path / "ipam")}}
    return run_executable(GO_BRIDGE, "ADD", conf, host=host, netns=netns, container_id=cid).ok().json


def bw_conf(version, prev=None, **entry):
    conf = {"cniVersion": version, "name": NET, "type": "bandwidth", **entry}
    if prev is not None:
        conf["prevResult"] = prev
    return conf


def tc_state(host, veth: str) -> str:
    """qdiscs of the host namespace, the veth's ingress filters and the ifb link, names normalised."""
    text = (sh(host, "tc", "-d", "qdisc", "show") + sh(host, "tc", "-d", "filter", "show", "dev", veth, "ingress")
            + sh(host, "ip", "-d", "link", "show", "type", "ifb"))
    text = re.sub(r"link/ether \S+ brd \S+", "", text)
    return re.sub(r"^\d+: ", "", text.replace(veth, "VETH"), flags=re.M)


def host_veth(prev) -> str:
    return next(i["name"] for i in prev["interfaces"] if not i.get("sandbox") and i["name"].startswith("veth"))


def has_ifb(host, name=IFB) -> bool:
    return name in sh(host, "ip", "link", "show")


@pytest.fixture
def launcher(tmp_path_factory, cni_install):
    return one_launcher(tmp_path_factory.mktemp("bin"), cni_install, "bandwidth")


def ours(cni_runner, launcher, via, host):
    """A run function for our plugin, in-process or through the launcher."""
    return our_run(cni_runner, bandwidth, "bandwidth", launcher, via, host, CID)


def go(host):
    return exec_run(GO_BANDWIDTH, host, CID)


@privileged
@interop
@pytest.mark.parametrize("via", ["in-process", "launcher"])
@pytest.mark.parametrize("version", VERSIONS)
def test_same_tc_state_result_check_del_as_go(cni_runner, cni_sandbox, tmp_path, launcher, via, version):
    need(GO_BANDWIDTH)
    states, results = {}, {}
    for who in ("go", "ours"):
        netns = cni_sandbox.container()
        prev = bridge(cni_sandbox.host, netns, tmp_path / who, version)
        run = go(cni_sandbox.host) if who == "go" else ours(cni_runner, launcher, via, cni_sandbox.host)
        conf = bw_conf(version, prev, **LIMITS)
        out = run("ADD", conf, netns).ok().json
        states[who] = tc_state(cni_sandbox.host, host_veth(prev))
        ifb = out["interfaces"][-1]
        assert ifb["name"] == IFB and ifb["mac"] and "sandbox" not in ifb
        assert out["interfaces"][:-1] == prev["interfaces"]
        for key in ("dns", "cniVersion"):
            out.pop(key, None)
        ifb.pop("mac")
        results[who] = out
        # each implementation's CHECK accepts either's state
        if version != "0.3.1":
            for checker in (go(cni_sandbox.host), run):
                checker("CHECK", bw_conf(version, prev, **LIMITS), netns).ok()
        run("DEL", conf, netns).ok()
        assert not has_ifb(cni_sandbox.host)
        run("DEL", conf, netns).ok()  # idempotent
        sh(cni_sandbox.host, "ip", "link", "del", host_veth(prev))  # free the place for the next side
    assert states["go"] == states["ours"]
    assert "tbf 1: dev VETH root" in states["ours"] and "ingress ffff: dev VETH" in states["ours"]
    assert "mirred (Egress Redirect to device " + IFB + ") stolen" in states["ours"]
    assert results["go"]["interfaces"][-1] == results["ours"]["interfaces"][-1]


@privileged
@interop
@pytest.mark.parametrize("first, second", [("go", "ours"), ("ours", "go")])
def test_del_removes_the_others_ifb(cni_runner, cni_sandbox, tmp_path, launcher, first, second):
    need(GO_BANDWIDTH)
    netns = cni_sandbox.container()
    prev = bridge(cni_sandbox.host, netns, tmp_path)
    sides = {"go": go(cni_sandbox.host), "ours": ours(cni_runner, launcher, "launcher", cni_sandbox.host)}
    conf = bw_conf("1.0.0", prev, **LIMITS)
    sides[first]("ADD", conf, netns).ok()
    assert has_ifb(cni_sandbox.host)
    sides[second]("CHECK", conf, netns).ok()
    sides[second]("DEL", conf, netns).ok()
    assert not has_ifb(cni_sandbox.host)


@privileged
def test_runtime_config_and_one_direction(cni_runner, cni_sandbox, tmp_path):
    netns = cni_sandbox.container()
    prev = bridge(cni_sandbox.host, netns, tmp_path)
    run = cni_runner(bandwidth, "bandwidth")
    conf = bw_conf("1.0.0", prev, runtimeConfig={"bandwidth": {"ingressRate": 8_000_000, "ingressBurst": 80_000}})
    out = run.add(conf, netns, container_id=CID)
    assert out["interfaces"] == prev["interfaces"]  # no egress: no ifb
    assert not has_ifb(cni_sandbox.host)
    qdiscs = sh(cni_sandbox.host, "tc", "qdisc", "show", "dev", host_veth(prev))
    assert "tbf 1: root" in qdiscs and "rate 8Mbit" in qdiscs and "ingress" not in qdiscs
    run.check(conf, netns, container_id=CID)
    # drift: another rate fails CHECK with the reference's text
    drift = bw_conf("1.0.0", prev, runtimeConfig={"bandwidth": {"ingressRate": 16_000_000, "ingressBurst": 80_000}})
    egress = bw_conf("1.0.0", prev, egressRate=8_000_000, egressBurst=80_000)
    for conf, message in ((drift, "Rate doesn't match"), (egress, "get ifb device: Link not found")):
        assert run.run("CHECK", conf, netns=netns, container_id=CID).error.msg == message
        if os.access(GO_BANDWIDTH, os.X_OK):
            assert go(cni_sandbox.host)("CHECK", conf, netns).error.msg == message


@privileged
def test_version_1_1_and_no_limits(cni_runner, cni_sandbox, tmp_path):
    netns = cni_sandbox.container()
    prev = bridge(cni_sandbox.host, netns, tmp_path)
    run = cni_runner(bandwidth, "bandwidth")
    out = run.add(bw_conf("1.1.0", dict(prev, cniVersion="1.1.0"), **LIMITS), netns, container_id=CID)
    assert out["cniVersion"] == "1.1.0" and out["interfaces"][-1]["name"] == IFB
    run.check(bw_conf("1.1.0", out, **LIMITS), netns, container_id=CID)
    run.delete(bw_conf("1.1.0", out, **LIMITS), netns, container_id=CID)
    assert not has_ifb(cni_sandbox.host)
    # no limits: prevResult passes through, nothing is made
    out = run.add(bw_conf("1.0.0", prev), netns, container_id="other")
    assert out["interfaces"] == prev["interfaces"]
    run.check(bw_conf("1.0.0", prev), netns, container_id="other")  # 1.1.1 crashes here; later releases pass


@privileged
def test_del_with_the_netns_gone(cni_runner, cni_sandbox, tmp_path):
    netns = cni_sandbox.container()
    prev = bridge(cni_sandbox.host, netns, tmp_path)
    run = cni_runner(bandwidth, "bandwidth")
    run.add(bw_conf("1.0.0", prev, **LIMITS), netns, container_id=CID)
    path = netns.path
    netns.remove()
    assert not os.path.exists(path)
    assert has_ifb(cni_sandbox.host)
    run.delete(bw_conf("1.0.0", prev, **LIMITS), path, container_id=CID)
    assert not has_ifb(cni_sandbox.host)
    run.delete(bw_conf("1.0.0", prev, **LIMITS), path, container_id=CID)


def error_cases(prev):
    return {
        "rate without burst": bw_conf("1.0.0", prev, ingressRate=100),
        "burst without rate": bw_conf("1.0.0", prev, egressBurst=100),
        "burst too big": bw_conf("1.0.0", prev, egressRate=100, egressBurst=8 * 0xFFFFFFFF),
        "runtime rate without burst": bw_conf("1.0.0", prev, runtimeConfig={"bandwidth": {"egressRate": 5}}),
        "no prevResult": bw_conf("1.0.0", None, **LIMITS),
        "no interfaces": bw_conf("1.0.0", dict(prev, interfaces=[]), **LIMITS),
        "host veth not listed": bw_conf("1.0.0", dict(prev, interfaces=prev["interfaces"][2:]), **LIMITS),
    }


@privileged
@interop
@pytest.mark.parametrize("case", list(error_cases({"interfaces": [1, 2, 3]})))
def test_errors_like_go(cni_runner, cni_sandbox, tmp_path, case):
    need(GO_BANDWIDTH)
    netns = cni_sandbox.container()
    prev = bridge(cni_sandbox.host, netns, tmp_path)
    conf = error_cases(prev)[case]
    theirs = go(cni_sandbox.host)("ADD", conf, netns)
    mine = cni_runner(bandwidth, "bandwidth").run("ADD", conf, netns=netns, container_id=CID)
    assert theirs.code != 0 and mine.code != 0, (theirs, mine)
    assert (mine.error.code, mine.error.msg) == (theirs.error.code, theirs.error.msg)
    assert b"Traceback" not in mine.stderr
    assert not has_ifb(cni_sandbox.host)


def test_version_answer(cni_runner):
    out = cni_runner(bandwidth, "bandwidth").run("VERSION", b"")
    assert json.loads(out.stdout)["supportedVersions"] == ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]


@privileged
@interop
@pytest.mark.parametrize("extra", [
    {"ingressRate": -1}, {"ingressRate": "x"}, {"ingressRate": 1.5}, {"IngressRate": 5},
    {"runtimeConfig": {"bandwidth": {"egressRate": "1"}}}, {"runtimeConfig": {"bandwidth": 5}},
    {"runtimeConfig": 5},
], ids=json.dumps)
def test_config_errors_like_go(cni_runner, cni_sandbox, extra):
    """Go's encoding/json texts (type, field path, key folding), then the reference's validation."""
    need(GO_BANDWIDTH)
    netns = cni_sandbox.container()
    conf = {"cniVersion": "1.0.0", "name": NET, "type": "bandwidth", **extra}
    theirs = go(cni_sandbox.host)("ADD", conf, netns)
    for command in ("ADD", "DEL"):
        mine = cni_runner(bandwidth, "bandwidth").run(command, conf, netns=netns, container_id=CID)
        assert (mine.error.code, mine.error.msg) == (theirs.error.code, theirs.error.msg)


@pytest.mark.parametrize("command", ["GC", "STATUS"])
def test_gc_and_status_succeed(cni_runner, command):
    """The reference has neither; later releases' skel answers both with success."""
    out = cni_runner(bandwidth, "bandwidth").run(command, bw_conf("1.1.0"))
    assert (out.code, out.stdout) == (0, b"")


# -- traffic --------------------------------------------------------------------------


def transfer_seconds(sender, receiver, address: str, size: int = 400_000, timeout: float = 30.0) -> float:
    """Seconds for ``size`` bytes over TCP from ``sender`` to ``address`` in ``receiver``,
    until the receiver has them all (bounded by ``timeout``)."""
    import socket
    import threading
    import time

    server = receiver.do(socket.create_server, (address, 0))
    server.settimeout(timeout)
    done: list[tuple[int, float]] = []

    def receive() -> None:
        conn, _ = server.accept()
        conn.settimeout(timeout)
        total = 0
        with conn:
            while total < size:
                chunk = conn.recv(1 << 16)
                if not chunk:
                    break
                total += len(chunk)
        done.append((total, time.perf_counter()))

    thread = threading.Thread(target=receive)
    thread.start()
    try:
        client = sender.do(socket.create_connection, (address, server.getsockname()[1]), timeout)
        start = time.perf_counter()
        with client:
            client.sendall(b"x" * size)
        thread.join(timeout + 5)
    finally:
        server.close()
    assert done and done[0][0] == size, done
    return done[0][1] - start


@privileged
def test_limits_shape_real_traffic(cni_runner, cni_sandbox, tmp_path):
    """4 Mbit/s each way: 400 kB take most of a second (unshaped: milliseconds)."""
    netns = cni_sandbox.container()
    prev = bridge(cni_sandbox.host, netns, tmp_path)
    container_ip = prev["ips"][0]["address"].split("/")[0]
    host_ip = prev["ips"][0]["gateway"]
    free_in = transfer_seconds(cni_sandbox.host, netns, container_ip)
    free_out = transfer_seconds(netns, cni_sandbox.host, host_ip)
    cni_runner(bandwidth, "bandwidth").add(
        bw_conf("1.0.0", prev, ingressRate=4_000_000, ingressBurst=80_000, egressRate=4_000_000,
                egressBurst=80_000), netns, container_id=CID)
    shaped_in = transfer_seconds(cni_sandbox.host, netns, container_ip)
    shaped_out = transfer_seconds(netns, cni_sandbox.host, host_ip)
    # (400 kB - 10 kB burst) at 500 kB/s is 0.78 s at least
    assert shaped_in > 0.6 and shaped_in > 3 * free_in, (free_in, shaped_in)
    assert shaped_out > 0.6 and shaped_out > 3 * free_out, (free_out, shaped_out)


@privileged
@interop
@pytest.mark.parametrize("who", ["go", "ours"])
def test_failed_add_and_the_ifb(cni_runner, cni_sandbox, tmp_path, who):
    """The host veth already has an ingress qdisc: ADD fails after making the veth's tbf
    and the ifb; ours removes both again, Go's leaves them. An ifb already there (a stale
    one) is never removed."""
    need(GO_BANDWIDTH)
    host = cni_sandbox.host
    run = go(host) if who == "go" else ours(cni_runner, None, "in-process", host)
    netns = cni_sandbox.container()
    prev = bridge(host, netns, tmp_path)
    sh(host, "tc", "qdisc", "add", "dev", host_veth(prev), "ingress")
    out = run("ADD", bw_conf("1.0.0", prev, **LIMITS), netns)
    assert (out.error.code, out.error.msg) == (999, "create ingress qdisc: file exists")
    assert has_ifb(host) == (who == "go")
    qdiscs = sh(host, "tc", "qdisc", "show", "dev", host_veth(prev))
    assert ("tbf" in qdiscs) == (who == "go") and "ingress" in qdiscs  # the test's own ingress qdisc stays
    sh(host, "tc", "qdisc", "del", "dev", host_veth(prev), "ingress")
    if who == "go":
        sh(host, "tc", "qdisc", "del", "dev", host_veth(prev), "root")
        sh(host, "ip", "link", "del", IFB)
    sh(host, "ip", "link", "add", IFB, "type", "ifb")
    out = run("ADD", bw_conf("1.0.0", prev, egressRate=8_000_000, egressBurst=80_000), netns)
    assert (out.error.code, out.error.msg) == (999, "adding link: file exists")
    assert has_ifb(host)


@privileged
@interop
def test_no_limits_and_no_prev_result(cni_runner, cni_sandbox):
    """Go 1.1.1 panics here (exit 2, a Go stack on stderr); ours answers a CNI error."""
    need(GO_BANDWIDTH)
    netns = cni_sandbox.container()
    conf = bw_conf("1.0.0")
    theirs = go(cni_sandbox.host)("ADD", conf, netns)
    assert (theirs.code, theirs.stdout) == (2, b"")
    mine = cni_runner(bandwidth, "bandwidth").run("ADD", conf, netns=netns, container_id=CID)
    assert (mine.code, mine.error.code, mine.error.msg) == (1, 999, "must be called as chained plugin")
