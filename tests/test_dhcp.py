"""The built-in dhcp IPAM plugin and its daemon against a real DHCP server.

dnsmasq (Debian's dnsmasq-base) serves 10.77.0.0/24 with 2-minute leases (its
minimum) on a bridge in the sandbox's host namespace; containers hang off the
bridge by veth. Our daemon (``python -m cni_plugins_builtin.dhcp daemon``) runs
in the host namespace with its socket under tmp_path and ``-renewinterval`` so a
renewal comes within seconds instead of at T1 (60 s): the RENEW/ACK exchange is
checked in dnsmasq's log and lease file. Go's daemon (/usr/lib/cni/dhcp daemon)
runs there too. Both speak the reference's wire (Go's net/rpc, gob), so every
plugin talks to every daemon: Go's plugin to ours, ours to Go's (dnsmasq then
sends T1 = 4 s, so Go's daemon renews within seconds), side by side with Go's
pair; what Go's binaries send is captured here and decoded by our codec. Every
process started here is stopped by its PID, also on failure; the stand-in
servers are threads of this process on sockets under tmp_path.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from cni_plugins_builtin.dhcp import rpc
from cni_plugins_builtin.dhcp.gob import Decoder, Encoder
from cni_plugins_builtin.dhcp.messages import CMD_ARGS, REQUEST, cmd_args, result_from_gob
from cnicore.netlink import Netlink
from cnicore.testing import DEFAULT_PATH, ping, run_executable

pytestmark = [pytest.mark.privileged, pytest.mark.interop]

GO_DHCP = "/usr/lib/cni/dhcp"
DEADLINE = 60.0


def wait_for(what: str, predicate, timeout: float = DEADLINE):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


class Process:
    """A process started inside a namespace, stopped by PID."""

    def __init__(self, netns, argv: list[str], log: str) -> None:
        self.log = log
        with open(log, "ab") as out:
            self.proc = netns.do(subprocess.Popen, argv, stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


@contextlib.contextmanager
def dhcp_server(cni_sandbox, tmp_path, *options: str):
    """br0 (10.77.0.1/24) in the host namespace and dnsmasq serving it; yields (leases file, log file)."""

    def bridge() -> None:
        with Netlink() as nl:
            nl.add_bridge("br0")
            nl.add_address(nl.link("br0"), "10.77.0.1/24")
            nl.set_up(nl.link("br0"))

    cni_sandbox.host.do(bridge)
    leases, log = tmp_path / "dnsmasq.leases", tmp_path / "dnsmasq.log"
    dnsmasq = Process(cni_sandbox.host, [
        "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0", "--interface=br0",
        "--bind-interfaces", "--dhcp-authoritative", "--dhcp-range=10.77.0.50,10.77.0.150,255.255.255.0,2m",
        f"--dhcp-leasefile={leases}", f"--pid-file={tmp_path / 'dnsmasq.pid'}", "--log-dhcp",
        f"--log-facility={log}", *options], str(tmp_path / "dnsmasq.out"))
    try:
        wait_for("dnsmasq", lambda: log.exists() and "DHCP, IP range" in log.read_text(), 20)
        yield leases, log
    finally:
        dnsmasq.stop()


@pytest.fixture
def lan(cni_sandbox, tmp_path):
    with dhcp_server(cni_sandbox, tmp_path) as served:
        yield served


@pytest.fixture
def fast_lan(cni_sandbox, tmp_path):
    """dnsmasq answering T1 = 4 s (T2 = 100 s): a daemon without -renewinterval (Go's) renews soon."""
    with dhcp_server(cni_sandbox, tmp_path, "--dhcp-option=option:T1,4", "--dhcp-option=option:T2,100") as served:
        yield served


def start_daemon(netns, tmp_path, socket_path: str, go: bool = False) -> Process:
    argv = ([GO_DHCP, "daemon", "-socketpath", socket_path] if go else
            [sys.executable, "-m", "cni_plugins_builtin.dhcp", "daemon", "-socketpath", socket_path,
             "-renewinterval", "3"])
    daemon = Process(netns, argv, str(tmp_path / ("go-daemon.log" if go else "daemon.log")))
    wait_for("the daemon's socket", lambda: os.path.exists(socket_path) or daemon.proc.poll() is not None, 20)
    assert daemon.proc.poll() is None, open(daemon.log).read()
    return daemon


def container(sandbox, tag: str):
    netns = sandbox.container()
    host_fd = sandbox.host.fd()

    def make() -> None:
        with Netlink() as nl:
            nl.add_veth("eth0", f"{tag}eth0", peer_netns_fd=host_fd)

    def attach() -> None:
        with Netlink() as nl:
            nl.set_link(nl.link(f"{tag}eth0"), master=nl.link("br0").index, up=True)

    netns.do(make)
    sandbox.host.do(attach)
    return netns


def conf(socket_path: str, **ipam: object) -> dict:
    return {"cniVersion": "1.0.0", "name": "dhcpnet", "type": "macvlan",
            "ipam": {"type": "dhcp", "daemonSocketPath": socket_path, **ipam}}


def status(socket_path: str) -> dict:
    """Our daemon's leases, as it keeps them beside its socket (written on every change)."""
    try:
        with open(socket_path + ".leases.json") as fh:
            return json.load(fh)
    except FileNotFoundError:
        return {}


def configure(netns, cidr: str) -> None:
    """What the main plugin does with the result: the address on eth0."""

    def add() -> None:
        with Netlink() as nl:
            nl.add_address(nl.link("eth0"), cidr)

    netns.do(add)


def lease_line(leases, address: str) -> list[str]:
    """dnsmasq's lease of ``address``: expiry, MAC, address, hostname, client id (MAC left out)."""
    for line in leases.read_text().splitlines():
        fields = line.split()
        if fields[2] == address:
            return [fields[0], *fields[2:]]
    raise AssertionError(f"no lease of {address}: {leases.read_text()}")


def acks(log, address: str) -> int:
    return len(re.findall(rf"DHCPACK\(br0\) {re.escape(address)} ", log.read_text()))


def test_lease_renewed_kept_across_a_restart_and_released(lan, cni_bin_dir: str, cni_sandbox, tmp_path) -> None:
    leases, log = lan
    sock = str(tmp_path / "run" / "dhcp.sock")
    netns = container(cni_sandbox, "d")
    config = conf(sock, provide=[{"option": "host-name", "value": "cnitest-host"}])
    daemon = start_daemon(cni_sandbox.host, tmp_path, sock)
    try:
        started = time.monotonic()
        result = run_executable(f"{cni_bin_dir}/dhcp", "ADD", config, host=cni_sandbox.host, netns=netns,
                                container_id="dhcp-c1").ok().json
        acquired = time.monotonic() - started
        cidr = result["ips"][0]["address"]
        address = cidr.split("/")[0]
        assert re.fullmatch(r"10\.77\.0\.\d+/24", cidr) and result["ips"][0]["gateway"] == "10.77.0.1"
        assert {"dst": "0.0.0.0/0", "gw": "10.77.0.1"} in result["routes"]
        assert address in leases.read_text() and "cnitest-host" in leases.read_text()
        # T1 and T2 from dnsmasq's ACK of a 2-minute lease: 60 s and 105 s.
        lease = status(sock)["dhcp-c1/dhcpnet/eth0"]
        assert 59 <= lease["renew_at"] - lease["bound"] <= 61 and 104 <= lease["rebind_at"] - lease["bound"] <= 106
        expiry = lease["expires"]
        configure(netns, cidr)
        ping(netns, "10.77.0.1")
        # A renewal: a unicast REQUEST from the address, answered by an ACK that dnsmasq logs.
        t0 = time.monotonic()
        wait_for("a renewal", lambda: status(sock)["dhcp-c1/dhcpnet/eth0"]["renewals"] >= 1)
        renewed = time.monotonic() - t0
        assert status(sock)["dhcp-c1/dhcpnet/eth0"]["expires"] > expiry
        assert acks(log, address) >= 2
        assert re.search(rf"DHCPREQUEST\(br0\) {re.escape(address)} ", log.read_text())

        # A restart keeps the lease: the same address, renewed again by the new daemon.
        held = lease_line(leases, address)
        assert held[1:] == [address, "cnitest-host", "00:" + "dhcp-c1/dhcpnet/eth0".encode().hex(":")]
        daemon.stop()
        assert not os.path.exists(sock)
        before = acks(log, address)
        daemon = start_daemon(cni_sandbox.host, tmp_path, sock)
        again = run_executable(f"{cni_bin_dir}/dhcp", "ADD", config, host=cni_sandbox.host, netns=netns,
                               container_id="dhcp-c1").ok().json
        assert again["ips"] == result["ips"]
        wait_for("a renewal after the restart", lambda: acks(log, address) > before)
        wait_for("the renewed lease", lambda: int(lease_line(leases, address)[0]) > int(held[0]), 10)
        assert lease_line(leases, address)[1:] == held[1:]  # the same client, MAC and address
        run_executable(f"{cni_bin_dir}/dhcp", "CHECK", config, host=cni_sandbox.host, netns=netns,
                       container_id="dhcp-c1").ok()

        # DEL releases it: dnsmasq forgets the lease.
        run_executable(f"{cni_bin_dir}/dhcp", "DEL", config, host=cni_sandbox.host, netns=netns,
                       container_id="dhcp-c1").ok()
        wait_for("the release", lambda: address not in leases.read_text(), 20)
        assert "DHCPRELEASE(br0) " + address in log.read_text()
        assert status(sock) == {}
        print(f"acquire {acquired:.2f}s, first renewal after {renewed:.2f}s")
    finally:
        daemon.stop()


def test_side_by_side_with_go_on_the_same_server(lan, cni_bin_dir: str, cni_sandbox, tmp_path) -> None:
    leases, _log = lan
    ours_sock, go_sock = str(tmp_path / "ours.sock"), str(tmp_path / "go.sock")
    ours_ns, go_ns = container(cni_sandbox, "o"), container(cni_sandbox, "g")
    ours_daemon = start_daemon(cni_sandbox.host, tmp_path, ours_sock)
    go_daemon = start_daemon(cni_sandbox.host, tmp_path, go_sock, go=True)
    try:
        results = {}
        for binary, netns, sock, tag in ((f"{cni_bin_dir}/dhcp", ours_ns, ours_sock, "ours"),
                                         (GO_DHCP, go_ns, go_sock, "go")):
            results[tag] = run_executable(binary, "ADD", conf(sock), host=cni_sandbox.host, netns=netns,
                                          container_id=f"dhcp-{tag}").ok().json
        ours, go = results["ours"], results["go"]
        assert ours["ips"][0]["address"] != go["ips"][0]["address"]
        for result in (ours, go):
            result["ips"][0]["address"] = "X/24"
        for result in (ours, go):
            result.pop("dns", None)
        assert ours == go
        for binary, netns, sock, tag in ((f"{cni_bin_dir}/dhcp", ours_ns, ours_sock, "ours"),
                                         (GO_DHCP, go_ns, go_sock, "go")):
            run_executable(binary, "DEL", conf(sock), host=cni_sandbox.host, netns=netns,
                           container_id=f"dhcp-{tag}").ok()
        # Options: priority on the routes, a requested option, and the reference's errors.
        cases = [({"priority": 7, "request": [{"option": "121"}, {"option": "routers"}]}, True),
                 ({"request": [{"skipDefault": True, "option": "subnet-mask"}]}, True),
                 ({"provide": [{"option": "foo", "value": "x"}]}, False),
                 ({"provide": [{"option": "300", "value": "x"}]}, False),
                 ({"request": [{"option": "host name"}]}, False),
                 ({"provide": [{"option": "host-name", "value": "x" * 256}]}, False)]
        for index, (ipam, ok) in enumerate(cases):
            outcomes = {}
            for binary, netns, sock, tag in ((f"{cni_bin_dir}/dhcp", ours_ns, ours_sock, "ours"),
                                             (GO_DHCP, go_ns, go_sock, "go")):
                outcomes[tag] = run_executable(binary, "ADD", conf(sock, **ipam), host=cni_sandbox.host,
                                               netns=netns, container_id=f"dhcp-{tag}-{index}")
                if outcomes[tag].code == 0:
                    run_executable(binary, "DEL", conf(sock, **ipam), host=cni_sandbox.host, netns=netns,
                                   container_id=f"dhcp-{tag}-{index}").ok()
            ours_out, go_out = outcomes["ours"], outcomes["go"]
            assert (ours_out.code == 0) == (go_out.code == 0) == ok, (ipam, ours_out, go_out)
            if ok:
                ours_json, go_json = ours_out.json, go_out.json
                if "priority" in ipam:  # a later release's option (v1.6.0): Debian's 1.1.1 ignores it
                    assert all(route["priority"] == 7 for route in ours_json["routes"])
                    for route in ours_json["routes"]:
                        del route["priority"]
                for result in (ours_json, go_json):
                    result.pop("dns", None)
                    result["ips"][0]["address"] = "X/24"
                assert ours_json == go_json, ipam
            else:
                assert ours_out.json["msg"] == go_out.json["msg"], ipam
        # Crossed (Go's plugin, our daemon; ours, Go's): the daemon's error reaches the plugin as Go's does.
        bad = {"provide": [{"option": "foo", "value": "x"}]}
        expected = run_executable(GO_DHCP, "ADD", conf(go_sock, **bad), host=cni_sandbox.host, netns=go_ns,
                                  container_id="dhcp-x").json
        for binary, sock, netns in ((GO_DHCP, ours_sock, go_ns), (f"{cni_bin_dir}/dhcp", go_sock, ours_ns)):
            crossed = run_executable(binary, "ADD", conf(sock, **bad), host=cni_sandbox.host, netns=netns,
                                     container_id="dhcp-x", timeout=30)
            assert crossed.code != 0, (binary, crossed)
            assert (crossed.json["code"], crossed.json["msg"]) == (expected["code"], expected["msg"]), binary
    finally:
        ours_daemon.stop()
        go_daemon.stop()


def test_no_daemon_is_an_error_like_go(cni_bin_dir: str, cni_sandbox, tmp_path) -> None:
    netns = cni_sandbox.container()
    sock = str(tmp_path / "none.sock")
    go = run_executable(GO_DHCP, "ADD", conf(sock), host=cni_sandbox.host, netns=netns)
    ours = run_executable(f"{cni_bin_dir}/dhcp", "ADD", conf(sock), host=cni_sandbox.host, netns=netns)
    assert go.code == ours.code != 0
    assert ours.json["code"] == go.json["code"] and ours.json["msg"] == go.json["msg"]


def test_bridge_with_dhcp_ipam_like_go(lan, cni_conflist, cni_bin_dir: str, cni_sandbox, tmp_path) -> None:
    """The real flow: bridge asks dhcp, the daemon leases an address in the container, bridge
    puts it on eth0, the container reaches the server and the lease is renewed. Bridge's DEL
    removes eth0 before it calls IPAM DEL (the reference's order too), so no DHCPRELEASE can
    leave: the daemon forgets the lease and dnsmasq keeps it until it expires — with Go's
    bridge and Go's daemon alike."""
    leases, log = lan
    kept = {}
    for side, path in (("ours", [cni_bin_dir]), ("go", ["/usr/lib/cni"])):
        sock = str(tmp_path / f"{side}.sock")
        daemon = start_daemon(cni_sandbox.host, tmp_path, sock, go=side == "go")
        try:
            runner = cni_conflist({"cniVersion": "1.0.0", "name": "dhcpnet", "plugins": [
                {"type": "bridge", "bridge": "br0", "ipam": {"type": "dhcp", "daemonSocketPath": sock}}]},
                cni_path=path, cache_dir=str(tmp_path / f"cache-{side}"))
            netns = cni_sandbox.container()
            result = runner.add(netns)
            address = result["ips"][0]["address"].split("/")[0]
            assert address in leases.read_text()
            ping(netns, "10.77.0.1")
            if side == "ours":
                wait_for("a renewal", lambda: acks(log, address) >= 2)
            runner.delete(netns)
            if side == "ours":
                assert status(sock) == {}
            kept[side] = address in leases.read_text() and f"DHCPRELEASE(br0) {address}" not in log.read_text()
        finally:
            daemon.stop()
    assert kept == {"ours": True, "go": True}


def test_del_with_the_namespace_gone(lan, cni_bin_dir: str, cni_sandbox, tmp_path) -> None:
    """The container vanished before DEL: both plugins succeed (nothing left to release from)."""
    ours_sock, go_sock = str(tmp_path / "ours.sock"), str(tmp_path / "go.sock")
    ours_daemon = start_daemon(cni_sandbox.host, tmp_path, ours_sock)
    go_daemon = start_daemon(cni_sandbox.host, tmp_path, go_sock, go=True)
    try:
        for binary, sock, tag in ((f"{cni_bin_dir}/dhcp", ours_sock, "o"), (GO_DHCP, go_sock, "g")):
            netns = container(cni_sandbox, tag)
            run_executable(binary, "ADD", conf(sock), host=cni_sandbox.host, netns=netns,
                           container_id=f"gone-{tag}").ok()
            path = netns.path
            netns.remove()
            outcome = run_executable(binary, "DEL", conf(sock), host=cni_sandbox.host, netns=path,
                                     container_id=f"gone-{tag}", timeout=60)
            assert outcome.code == 0, (binary, outcome)
        assert status(ours_sock) == {}
    finally:
        ours_daemon.stop()
        go_daemon.stop()


def test_go_plugin_with_our_daemon(lan, cni_sandbox, tmp_path) -> None:
    """Go's plugin (net/rpc over HTTP, gob) against our daemon: ADD, the lease renewed,
    CHECK, DEL releases it."""
    leases, log = lan
    sock = str(tmp_path / "ours.sock")
    netns = container(cni_sandbox, "p")
    daemon = start_daemon(cni_sandbox.host, tmp_path, sock)
    try:
        config, cid = conf(sock), "go-ours"
        result = run_executable(GO_DHCP, "ADD", config, host=cni_sandbox.host, netns=netns,
                                container_id=cid).ok().json
        result.pop("dns", None)
        cidr = result["ips"][0]["address"]
        address = cidr.split("/")[0]
        assert re.fullmatch(r"10\.77\.0\.\d+/24", cidr)
        assert result == {"cniVersion": "1.0.0", "ips": [{"address": cidr, "gateway": "10.77.0.1"}],
                          "routes": [{"dst": "0.0.0.0/0", "gw": "10.77.0.1"}]}
        assert address in leases.read_text() and status(sock)[f"{cid}/dhcpnet/eth0"]["address"] == address
        configure(netns, cidr)
        ping(netns, "10.77.0.1")
        wait_for("a renewal", lambda: status(sock)[f"{cid}/dhcpnet/eth0"]["renewals"] >= 1)
        assert acks(log, address) >= 2
        run_executable(GO_DHCP, "CHECK", config, host=cni_sandbox.host, netns=netns, container_id=cid).ok()
        run_executable(GO_DHCP, "DEL", config, host=cni_sandbox.host, netns=netns, container_id=cid).ok()
        wait_for("the release", lambda: address not in leases.read_text(), 20)
        assert f"DHCPRELEASE(br0) {address}" in log.read_text()
        assert status(sock) == {}
    finally:
        daemon.stop()


def test_our_plugin_with_go_daemon(fast_lan, cni_bin_dir: str, cni_sandbox, tmp_path) -> None:
    """Our plugin against Go's daemon: ADD, the lease renewed by Go's daemon (at the
    server's T1 of 4 s), CHECK, DEL sends the release."""
    leases, log = fast_lan
    sock = str(tmp_path / "go.sock")
    netns = container(cni_sandbox, "q")
    daemon = start_daemon(cni_sandbox.host, tmp_path, sock, go=True)
    try:
        config, cid = conf(sock), "ours-go"
        result = run_executable(f"{cni_bin_dir}/dhcp", "ADD", config, host=cni_sandbox.host, netns=netns,
                                container_id=cid).ok().json
        cidr = result["ips"][0]["address"]
        address = cidr.split("/")[0]
        assert re.fullmatch(r"10\.77\.0\.\d+/24", cidr)
        assert result == {"cniVersion": "1.0.0", "ips": [{"address": cidr, "gateway": "10.77.0.1"}],
                          "routes": [{"dst": "0.0.0.0/0", "gw": "10.77.0.1"}]}
        assert address in leases.read_text()
        configure(netns, cidr)
        ping(netns, "10.77.0.1")
        before = acks(log, address)
        wait_for("Go's daemon to renew the lease", lambda: acks(log, address) > before)
        run_executable(f"{cni_bin_dir}/dhcp", "CHECK", config, host=cni_sandbox.host, netns=netns,
                       container_id=cid).ok()
        run_executable(f"{cni_bin_dir}/dhcp", "DEL", config, host=cni_sandbox.host, netns=netns,
                       container_id=cid).ok()
        # 1.1.1's CHECK acquires a second lease and DEL stops only that one, so the first
        # keeps renewing: the release shows in the log, the lease may come back.
        wait_for("the release", lambda: f"DHCPRELEASE(br0) {address}" in log.read_text(), 20)
    finally:
        daemon.stop()


class StandIn:
    """A daemon's socket served by a thread of this process, for what no daemon does on
    purpose: ``answer(conn, rfile)`` per connection; ``calls`` keeps what the clients sent."""

    def __init__(self, path: str, answer) -> None:
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(4)
        self.listener.settimeout(0.5)
        self.answer = answer
        self.calls: list[dict] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(20)
                with conn.makefile("rb") as rfile, contextlib.suppress(OSError, EOFError):
                    self.answer(self, conn, rfile)

    def record_call(self, rfile) -> None:
        """Read one call as it comes, keep its bytes and what our decoder makes of them."""
        raw = bytearray()

        def read(n: int) -> bytes:
            data = rfile.read(n)
            raw.extend(data)
            return data

        decoder = Decoder()
        header, args = decoder.read(read), decoder.read(read)
        self.calls.append({"raw": bytes(raw), "decoder": decoder, "header": header, "args": args})

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(10)
        self.listener.close()


def read_head(rfile) -> bytes:
    head = b""
    while not head.endswith(b"\n\n"):
        byte = rfile.read(1)
        assert byte, head
        head += byte
    return head


def refuse(standin, conn, rfile) -> None:
    read_head(rfile)
    conn.sendall(b"HTTP/1.0 404 Not Found\n\n")


def answer_json(standin, conn, rfile) -> None:
    """What cnicore's daemon answered before it spoke net/rpc."""
    read_head(rfile)
    conn.sendall(b'{"error": "Expecting value: line 1 column 1 (char 0)"}\n')


def hang_up(standin, conn, rfile) -> None:
    read_head(rfile)


def drop_the_call(standin, conn, rfile) -> None:
    assert read_head(rfile) == b"CONNECT /_goRPC_ HTTP/1.0\n\n"
    conn.sendall(b"HTTP/1.0 200 Connected to Go RPC\n\n")
    standin.record_call(rfile)


def test_what_go_plugin_sends_and_errors_like_go(cni_bin_dir: str, cni_sandbox, tmp_path) -> None:
    """Go's plugin's call, captured: our codec decodes it to the request's values and
    encodes them back to Go's very bytes; ours sends the same values. A daemon that
    refuses the handshake, answers something else, hangs up, or drops the call gives
    both plugins the same error."""
    netns = cni_sandbox.container()
    messages = {}
    for answer in (refuse, answer_json, hang_up, drop_the_call):
        path = str(tmp_path / f"{answer.__name__}.sock")
        stdin = json.dumps(conf(path)).encode()
        standin = StandIn(path, answer)
        try:
            outcomes = [run_executable(binary, "ADD", stdin,
                                       host=cni_sandbox.host, netns=netns, container_id="cap",
                                       args="IgnoreUnknown=1", timeout=30)
                        for binary in (GO_DHCP, f"{cni_bin_dir}/dhcp")]
        finally:
            standin.close()
        go, ours = outcomes
        assert go.code == ours.code != 0, (answer.__name__, go, ours)
        assert (ours.json["code"], ours.json["msg"]) == (go.json["code"], go.json["msg"]), answer.__name__
        messages[answer.__name__] = go.json["msg"]
        if answer is drop_the_call:
            go_call, ours_call = standin.calls
            assert go_call["header"] == ours_call["header"] == (65, {"ServiceMethod": "DHCP.Allocate"})
            expected = cmd_args("cap", netns.path, "eth0", "IgnoreUnknown=1", "", stdin)
            assert go_call["args"][1] == dict(expected, Path=f"{os.path.dirname(GO_DHCP)}:{DEFAULT_PATH}")
            assert ours_call["args"][1] == dict(expected, Path=f"{cni_bin_dir}:{DEFAULT_PATH}")
            decoder = go_call["decoder"]
            encoder = Encoder()
            again = b"".join(encoder.encode(value, decoder.go_type(type_id))
                             for type_id, value in (go_call["header"], go_call["args"]))
            assert again == go_call["raw"]
    assert messages == {
        "refuse": f"error dialing DHCP daemon: dial-http unix {tmp_path}/refuse.sock: unexpected HTTP response: "
                  "404 Not Found",
        "answer_json": f"error dialing DHCP daemon: dial-http unix {tmp_path}/answer_json.sock: malformed HTTP "
                       'status code "\\"Expecting"',
        "hang_up": f"error dialing DHCP daemon: dial-http unix {tmp_path}/hang_up.sock: unexpected EOF",
        "drop_the_call": "error calling DHCP.Allocate: unexpected EOF"}


@pytest.mark.parametrize("side", ["go", "ours"])
def test_what_each_daemon_answers(side: str, lan, cni_sandbox, tmp_path) -> None:
    """Go's daemon's answers, captured: our codec decodes the Result (the lease dnsmasq
    gave) and encodes it back to Go's very bytes; Release's empty reply and an unknown
    method's error as net/rpc sends them. Ours answers the same."""
    leases, _log = lan
    sock = str(tmp_path / f"{side}.sock")
    netns = container(cni_sandbox, "c")
    daemon = start_daemon(cni_sandbox.host, tmp_path, sock, go=side == "go")
    try:
        config = json.dumps(conf(sock)).encode()
        args = cmd_args(f"cap-{side}", netns.path, "eth0", "", "/usr/lib/cni", config)
        conn, rfile = rpc.dial(sock, 60)
        raw = bytearray()

        def read(n: int) -> bytes:
            data = rfile.read(n)
            raw.extend(data)
            return data

        try:
            encoder, decoder = Encoder(), Decoder()
            conn.sendall(encoder.encode({"ServiceMethod": "DHCP.Allocate", "Seq": 0}, REQUEST)
                         + encoder.encode(args, CMD_ARGS))
            header, reply = decoder.read(read), decoder.read(read)
            conn.sendall(encoder.encode({"ServiceMethod": "DHCP.Nope", "Seq": 1}, REQUEST)
                         + encoder.encode(args, CMD_ARGS))
            error_header, error_body = decoder.read(read), decoder.read(read)
        finally:
            rfile.close()
            conn.close()
        assert header[1] == {"ServiceMethod": "DHCP.Allocate"}
        result = result_from_gob(reply[1], "1.0.0")
        cidr = result["ips"][0]["address"]
        assert result == {"cniVersion": "1.0.0", "ips": [{"address": cidr, "gateway": "10.77.0.1"}],
                          "routes": [{"dst": "0.0.0.0/0", "gw": "10.77.0.1"}]}
        assert re.fullmatch(r"10\.77\.0\.\d+/24", cidr) and cidr.split("/")[0] in leases.read_text()
        assert error_header[1] == {"ServiceMethod": "DHCP.Nope", "Seq": 1,
                                   "Error": "rpc: can't find method DHCP.Nope"}
        assert error_body[1] == {} and decoder.wire[error_body[0]] == ("struct", "", ())
        again = Encoder()
        assert b"".join(again.encode(value, decoder.go_type(type_id))
                        for type_id, value in (header, reply, error_header, error_body)) == bytes(raw)
        assert rpc.call(sock, "DHCP.Release", args, CMD_ARGS, 60) == {}
        if side == "ours":
            assert status(sock) == {}
        # Not net/rpc's handshake: HTTP's answer, as Go's server gives it.
        with socket.socket(socket.AF_UNIX) as plain:
            plain.connect(sock)
            plain.sendall(b"GET /_goRPC_ HTTP/1.0\r\n\r\n")
            assert plain.makefile("rb").readline().split(b" ", 1)[1].startswith(b"405 ")
    finally:
        daemon.stop()
