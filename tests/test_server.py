"""The warm server (``cnitool daemon``) and native launchers, as a runtime meets them.

Every server here runs in its own throwaway network namespace
(:class:`cnicore.testing.WarmServer`), and every caller execs a real native
launcher from a sandbox "host" namespace: what lands where is read back from
the kernel. A small test plugin (written into a temporary package) reports
what its process sees — namespaces, directory, umask, environment — and can
sleep, so cancellation and crashes can be provoked mid-request.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from cnicore import launchers
from cnicore.cli import install as installer
from cnicore.cli.install import install
from cnicore.launchers import read_header
from cnicore.libcni import CNIConfig, RuntimeConf
from cnicore.libcni.conf import conf_list_from_bytes
from cnicore.registry import PluginEntry, get
from cnicore.server import _protocol as proto
from cnicore.server import client as server_client
from cnicore.server._native import build_id
from cnicore.testing import Sandbox, WarmServer, run_executable, run_in
from helpers.servers import alive, caller_fds, gone_within, launch, own_servers, plugin_package, raw_request, wait_for

pytestmark = pytest.mark.privileged

PYTHON = sys.executable
CNITOOL = os.path.join(os.path.dirname(sys.executable), "cnitool")
PACKAGE = "cnitest_server_plugins"
SPY_TYPE = "cnitest-spy"
BUILTINS = ("bridge", "host-local", "loopback", "tuning")

SPY_SOURCE = '''
"""A test plugin that reports what its process sees, and can sleep."""
import os
import time

from cnicore.plugin import hookimpl


def _stay(request):
    marker = request.config.get("marker")
    if marker:
        with open(marker + ".tmp", "w") as fh:
            fh.write(str(os.getpid()))
        os.rename(marker + ".tmp", marker)
    time.sleep(float(request.config.get("sleep", 0)))


@hookimpl
def cni_add(request):
    _stay(request)
    mask = os.umask(0)
    os.umask(mask)
    seen = {"net": os.readlink("/proc/thread-self/ns/net"), "mnt": os.readlink("/proc/self/ns/mnt"),
            "cwd": os.getcwd(), "umask": oct(mask), "env": os.environ.get("CNITEST_SPY", ""),
            "argv0": os.path.basename(__import__("sys").argv[0])}
    return {"cniVersion": request.cni_version, "dns": {"options": [f"{k}={v}" for k, v in sorted(seen.items())]}}


@hookimpl
def cni_del(request):
    _stay(request)


#: The same plugin named as an object in its module (an entry point "module:SELF").
SELF = __import__("sys").modules[__name__]


@hookimpl
def cni_check(request):
    _stay(request)
'''


def spy_entry() -> PluginEntry:
    return PluginEntry(SPY_TYPE, f"{PACKAGE}.spy", "cnicore-tests", "0")


SPY_ATTR_ENTRY = PluginEntry("cnitest-spy-attr", f"{PACKAGE}.spy:SELF", "cnicore-tests", "0")


@pytest.fixture(scope="module")
def spy_root(tmp_path_factory: pytest.TempPathFactory):
    with plugin_package(tmp_path_factory.mktemp("spy-root"), PACKAGE, {"spy": SPY_SOURCE}) as root:
        yield root


@pytest.fixture(scope="module")
def cni_server(tmp_path_factory: pytest.TempPathFactory, spy_root: Path):
    """This module's server: the library's, with the spy plugin in its environment (a worker
    hosts only plugins its parent loaded)."""
    server = WarmServer(str(tmp_path_factory.mktemp("cni-server")),
                        plugins=(str(spy_root), [spy_entry(), SPY_ATTR_ENTRY]))
    try:
        yield server
    finally:
        server.stop()
    assert not server.refused(), f"the warm server refused requests (they ran cold): {server.refused()}"


def install_both(directory: Path, socket_path: str, entries: list[PluginEntry]) -> tuple[Path, Path]:
    """Native launchers in ``directory/native``, Python ones in ``directory/python``."""
    native, python = directory / "native", directory / "python"
    assert not install(str(native), entries, kind="native", socket=socket_path).skipped
    assert not install(str(python), entries, kind="python").skipped
    return native, python


@pytest.fixture(scope="module")
def bins(tmp_path_factory, cni_server, spy_root) -> tuple[Path, Path]:
    entries = [get(t) for t in BUILTINS] + [spy_entry()]
    return install_both(tmp_path_factory.mktemp("bins"), cni_server.socket, entries)


@pytest.fixture
def own_server(tmp_path: Path, spy_root: Path):
    """A server of this test's own (it may be stopped or restarted), stopped afterwards."""
    with own_servers(tmp_path, (str(spy_root), [spy_entry(), SPY_ATTR_ENTRY])) as start:
        yield start


def spy_conf(**extra) -> dict:
    return {"cniVersion": "1.0.0", "name": "spy-net", "type": SPY_TYPE, **extra}


def seen(outcome) -> dict[str, str]:
    options = outcome.ok().json["dns"]["options"]
    return dict(option.split("=", 1) for option in options)


def start_spy(directory: Path, sandbox, command: str, marker: Path, sleep: float) -> tuple[subprocess.Popen, int]:
    """The spy plugin started by its launcher from the sandbox's host namespace, sleeping
    ``sleep`` seconds in ``command``; returns the launcher process and the plugin's pid."""
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": "spy1", "CNI_NETNS": sandbox.container().path,
           "CNI_IFNAME": "eth0", "CNI_PATH": str(directory)}
    proc = sandbox.host.do(lambda: launch(directory / SPY_TYPE, env))
    proc.stdin.write(json.dumps(spy_conf(sleep=sleep, marker=str(marker))).encode())
    proc.stdin.close()
    return proc, int(wait_for(marker))


# -- the same answers, warm and cold --------------------------------------------------

PARITY_CASES = [
    ("version", {"CNI_COMMAND": "VERSION"}, b""),
    ("about text", {}, b""),
    ("missing env", {"CNI_COMMAND": "ADD"}, b"{}"),
    ("bad container id", {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "a b", "CNI_NETNS": "/x",
                          "CNI_IFNAME": "eth0", "CNI_PATH": "/x"}, b"{}"),
    ("unknown command", {"CNI_COMMAND": "FROB", "CNI_PATH": "/x"}, b'{"cniVersion":"1.0.0","name":"n"}'),
    ("not json", {"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "c", "CNI_IFNAME": "eth0", "CNI_PATH": "/x"},
     b"{nope"),
    ("truncated", {"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "c", "CNI_IFNAME": "eth0", "CNI_PATH": "/x"},
     b'{"cniVersion":"1.0.0","name":"n'),
    ("lone surrogate in name", {"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "c", "CNI_IFNAME": "eth0",
                                "CNI_PATH": "/x"}, b'{"cniVersion":"1.0.0","name":"a\\ud800"}'),
    ("deep", {"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "c", "CNI_IFNAME": "eth0", "CNI_PATH": "/x"},
     b'{"cniVersion":"1.0.0","name":"n","x":' + b"[" * 1500 + b"]" * 1500 + b"}"),
    ("no name", {"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "c", "CNI_IFNAME": "eth0", "CNI_PATH": "/x"},
     b'{"cniVersion":"1.0.0"}'),
    ("bad name", {"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "c", "CNI_IFNAME": "eth0", "CNI_PATH": "/x"},
     b'{"cniVersion":"1.0.0","name":"a/b"}'),
    ("unsupported version", {"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "c", "CNI_IFNAME": "eth0",
                             "CNI_PATH": "/x"}, b'{"cniVersion":"9.9.9","name":"n"}'),
    ("check too old", {"CNI_COMMAND": "CHECK", "CNI_CONTAINERID": "c", "CNI_NETNS": "/x", "CNI_IFNAME": "eth0",
                       "CNI_PATH": "/x"}, b'{"cniVersion":"0.3.1","name":"n"}'),
    ("gc", {"CNI_COMMAND": "GC", "CNI_PATH": "/x"}, b'{"cniVersion":"1.1.0","name":"n"}'),
    ("status", {"CNI_COMMAND": "STATUS", "CNI_PATH": "/x"}, b'{"cniVersion":"1.1.0","name":"n"}'),
    ("missing netns", {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c", "CNI_NETNS": "/nonexistent/ns",
                       "CNI_IFNAME": "eth0", "CNI_PATH": "/x"}, b'{"cniVersion":"1.0.0","name":"n"}'),
    ("del without netns", {"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "c", "CNI_IFNAME": "eth0", "CNI_PATH": "/x"},
     b'{"cniVersion":"1.0.0","name":"n"}'),
    ("netns is a file", {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c", "CNI_NETNS": "/etc/hostname",
                         "CNI_IFNAME": "eth0", "CNI_PATH": "/x"}, b'{"cniVersion":"1.0.0","name":"n"}'),
    ("netns is a directory", {"CNI_COMMAND": "CHECK", "CNI_CONTAINERID": "c", "CNI_NETNS": "/proc",
                              "CNI_IFNAME": "eth0", "CNI_PATH": "/x"}, b'{"cniVersion":"1.0.0","name":"n"}'),
    ("netns is the mount ns", {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c", "CNI_NETNS": "/proc/self/ns/mnt",
                               "CNI_IFNAME": "eth0", "CNI_PATH": "/x"}, b'{"cniVersion":"1.0.0","name":"n"}'),
]


@pytest.mark.parametrize("plugin", BUILTINS)
@pytest.mark.parametrize("case", PARITY_CASES, ids=[c[0] for c in PARITY_CASES])
def test_warm_and_cold_answer_byte_for_byte_alike(bins, host_netns, plugin, case) -> None:
    native, python = bins
    _, env, stdin = case

    def both() -> tuple[tuple[int, bytes, bytes], tuple[int, bytes, bytes]]:
        results = []
        for directory in (native, python):
            p = host_netns.do(lambda d=directory: launch(d / plugin, env))
            out, err = p.communicate(stdin, timeout=30)
            results.append((p.returncode, out, err))
        return results[0], results[1]

    warm, cold = both()
    assert warm == cold
    assert b"Traceback" not in warm[1]


@pytest.mark.parametrize("version", ["0.3.1", "0.4.0", "1.0.0", "1.1.0"])
def test_loopback_add_check_del_warm_equals_cold(bins, cni_sandbox, version) -> None:
    native, python = bins
    conf = {"cniVersion": version, "name": "lo-net", "type": "loopback"}
    outcomes = {}
    for label, directory in (("warm", native), ("cold", python)):
        ctr = cni_sandbox.container()
        add = run_executable(str(directory / "loopback"), "ADD", conf, host=cni_sandbox.host, netns=ctr)
        check = run_executable(str(directory / "loopback"), "CHECK", conf, host=cni_sandbox.host, netns=ctr) \
            if version != "0.3.1" else None
        delete = run_executable(str(directory / "loopback"), "DEL", conf, host=cni_sandbox.host, netns=ctr)
        outcomes[label] = [(o.code, o.stdout.replace(ctr.path.encode(), b"CTR"), o.stderr)
                           for o in (add, check, delete) if o is not None]
        assert add.code == 0, add
    assert outcomes["warm"] == outcomes["cold"]


# -- where the work happens ---------------------------------------------------------------

def test_worker_takes_the_callers_namespaces_directory_umask_and_environment(bins, cni_sandbox, tmp_path) -> None:
    native, python = bins
    ctr = cni_sandbox.container()
    workdir = tmp_path / "work dir"
    workdir.mkdir()
    results = {}
    for label, directory in (("warm", native), ("cold", python)):
        def run(d: Path = directory) -> tuple[int, bytes, bytes]:
            p = launch(d / SPY_TYPE, {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": ctr.path,
                                      "CNI_IFNAME": "eth0", "CNI_PATH": str(d), "CNITEST_SPY": "yes"},
                       cwd=str(workdir), preexec_fn=lambda: os.umask(0o027))
            out, err = p.communicate(json.dumps(spy_conf()).encode(), timeout=30)
            return p.returncode, out, err

        code, out, err = cni_sandbox.host.do(run)
        assert code == 0, (out, err)
        results[label] = json.loads(out)
    assert results["warm"] == results["cold"]
    view = dict(o.split("=", 1) for o in results["warm"]["dns"]["options"])
    assert view["net"] == cni_sandbox.host.do(lambda: os.readlink("/proc/thread-self/ns/net"))
    assert view["mnt"] == os.readlink("/proc/self/ns/mnt")
    assert (view["cwd"], view["umask"], view["env"], view["argv0"]) == (str(workdir), "0o27", "yes", SPY_TYPE)


def test_an_entry_point_naming_an_object_is_served_warm(cni_server, spy_root, cni_sandbox, tmp_path) -> None:
    entry = SPY_ATTR_ENTRY
    native, python = install_both(tmp_path, cni_server.socket, [entry])
    answers = [run_executable(str(d / "cnitest-spy-attr"), "ADD", spy_conf(type="cnitest-spy-attr"),
                              host=cni_sandbox.host, netns=cni_sandbox.container()) for d in (native, python)]
    assert [seen(a)["argv0"] for a in answers] == ["cnitest-spy-attr", "cnitest-spy-attr"]


def test_bridge_lands_in_the_callers_namespaces_never_the_servers(bins, cni_server, cni_sandbox, tmp_path) -> None:
    """The caller has a private mount namespace where the container's netns is mounted
    at a path nobody else sees; the bridge must appear in the caller's network namespace."""
    native, _ = bins
    ctr = cni_sandbox.container()
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    conf = {"cniVersion": "1.0.0", "name": "warm-net", "type": "bridge", "bridge": "cniwarm0", "isGateway": True,
            "ipam": {"type": "host-local", "subnet": "10.91.0.0/24", "dataDir": str(tmp_path / "ipam")}}
    script = textwrap.dedent(f"""
        set -e
        mount -t tmpfs cnitest {hidden}
        touch {hidden}/ns
        mount --bind {ctr.path} {hidden}/ns
        exec {native / 'bridge'}
    """)
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "warm1", "CNI_NETNS": f"{hidden}/ns", "CNI_IFNAME": "eth0",
           "CNI_PATH": str(native)}

    def add() -> tuple[int, bytes, bytes]:
        q = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                           input=json.dumps(conf).encode(), capture_output=True, timeout=30,
                           env={**{k: v for k, v in os.environ.items() if not k.startswith("CNI_")}, **env})
        return q.returncode, q.stdout, q.stderr

    code, out, err = cni_sandbox.host.do(add)
    assert code == 0, (out, err, cni_server.log())
    assert not os.path.exists(f"{hidden}/ns")  # the path existed only in the caller's mount namespace
    result = json.loads(out)
    assert result["ips"][0]["address"] == "10.91.0.2/24"
    assert "cniwarm0" in run_in(cni_sandbox.host, "ip", "-o", "link", "show")
    assert "10.91.0.2/24" in run_in(ctr, "ip", "-o", "addr", "show", "eth0")
    assert "cniwarm0" not in run_in(cni_server.netns, "ip", "-o", "link", "show")
    # DEL cold from the plain path cleans it up (the same store, the same rules).
    delete = run_executable(str(native / "bridge"), "DEL", conf, host=cni_sandbox.host, netns=ctr,
                            container_id="warm1")
    assert delete.code == 0, delete
    assert "eth0" not in run_in(ctr, "ip", "-o", "link", "show")


# -- cancellation and crashes ---------------------------------------------------------------

def test_killed_launcher_kills_the_worker_and_closes_the_runtimes_pipe(bins, cni_sandbox, tmp_path) -> None:
    native, _ = bins
    proc, worker = start_spy(native, cni_sandbox, "ADD", tmp_path / "pid", sleep=60)
    assert worker != proc.pid and alive(worker)
    proc.kill()
    started = time.monotonic()
    assert proc.stdout.read() == b""  # EOF: nobody holds the runtime's stdout any more
    assert time.monotonic() - started < 5
    proc.wait()
    assert gone_within(worker)


def test_sigterm_to_the_launcher_cancels_the_worker(bins, cni_sandbox, tmp_path) -> None:
    native, _ = bins
    proc, worker = start_spy(native, cni_sandbox, "DEL", tmp_path / "pid", sleep=60)
    proc.terminate()
    assert proc.wait(10) == -signal.SIGTERM
    assert proc.stdout.read() == b""
    assert gone_within(worker)


def test_deadline_kills_the_worker_and_add_asks_to_try_again(own_server, cni_sandbox, spy_root, tmp_path) -> None:
    server = own_server(timeout=1.0)
    native, _ = install_both(tmp_path, server.socket, [spy_entry()])
    marker = tmp_path / "pid"
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "d1", "CNI_NETNS": cni_sandbox.container().path,
           "CNI_IFNAME": "eth0", "CNI_PATH": str(native)}
    started = time.monotonic()
    proc = cni_sandbox.host.do(lambda: launch(native / SPY_TYPE, env))
    out, _ = proc.communicate(json.dumps(spy_conf(sleep=60, marker=str(marker))).encode(), timeout=30)
    assert time.monotonic() - started < 10
    assert proc.returncode == 1
    assert json.loads(out) == {"cniVersion": "1.0.0", "code": 11,
                               "msg": "the warm server closed the connection during ADD; try again later"}
    assert gone_within(int(marker.read_text()))
    assert "deadline passed" in server.log()


def test_worker_killed_mid_request_add_gets_code_11_del_reruns_cold(bins, cni_sandbox, tmp_path) -> None:
    native, _ = bins
    for command, marker in (("ADD", tmp_path / "add"), ("DEL", tmp_path / "del")):
        proc, worker = start_spy(native, cni_sandbox, command, marker, sleep=1)
        marker.unlink()
        os.kill(worker, signal.SIGKILL)
        out = proc.stdout.read()
        assert proc.wait(30) == (1 if command == "ADD" else 0), out
        if command == "ADD":
            assert json.loads(out)["code"] == 11
            assert not marker.exists()  # nothing reran the ADD
        else:
            assert int(marker.read_text()) == proc.pid  # the launcher ran it again, cold, in its own process


def test_worker_killed_mid_cnitool_command_add_fails_del_reruns_in_the_process(bins, cni_sandbox, tmp_path) -> None:
    """A whole cnitool command served by a worker that dies: an add is never rerun (part of
    it may be done) and fails with a message; a del runs again from the cnitool process."""
    native, _ = bins
    confdir = tmp_path / "net.d"
    confdir.mkdir()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("CNI_", "PYTHON"))},
           "NETCONFPATH": str(confdir), "CNI_PATH": str(native), "CNI_CACHE_DIR": str(tmp_path / "cache")}
    ctr = cni_sandbox.container()
    for verb, marker in (("add", tmp_path / "add"), ("del", tmp_path / "del")):
        (confdir / "10-spy.conflist").write_text(json.dumps(
            {"cniVersion": "1.0.0", "name": "spied", "plugins": [spy_conf(sleep=1, marker=str(marker))]}))
        proc = cni_sandbox.host.do(lambda v=verb: subprocess.Popen([CNITOOL, v, "spied", ctr.path], env=env,
                                                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        worker = int(wait_for(marker))
        assert worker != proc.pid  # served by a worker
        marker.unlink()
        os.kill(worker, signal.SIGKILL)
        out, err = proc.communicate(timeout=60)
        if verb == "add":
            assert proc.returncode == 1 and b"closed the connection during add" in err, (out, err)
            assert not marker.exists()  # nothing reran the add
        else:
            assert proc.returncode == 0, (out, err)
            # The del ran again, as cnitool runs it itself (its plugin sent to the server on its own).
            assert int(marker.read_text()) != worker


def _as_a_foreground_command() -> None:
    """In the child before exec: SIGINT at its default action and not blocked."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def test_ctrl_c_on_a_served_cnitool_command_aborts_it_and_its_worker(bins, cni_sandbox, tmp_path) -> None:
    native, _ = bins
    confdir = tmp_path / "net.d"
    confdir.mkdir()
    marker = tmp_path / "pid"
    (confdir / "10-spy.conflist").write_text(json.dumps(
        {"cniVersion": "1.0.0", "name": "spied", "plugins": [spy_conf(sleep=30, marker=str(marker))]}))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("CNI_", "PYTHON"))},
           "NETCONFPATH": str(confdir), "CNI_PATH": str(native), "CNI_CACHE_DIR": str(tmp_path / "cache")}
    ctr = cni_sandbox.container()
    # As a shell starts a foreground command: SIGINT at its default. A test run started in the
    # background by a non-interactive shell ignores SIGINT, and a child inherits that (exec keeps
    # SIG_IGN): cnitool would then rightly ignore the Ctrl-C and finish after the plugin's sleep.
    proc = cni_sandbox.host.do(lambda: subprocess.Popen([CNITOOL, "add", "spied", ctr.path], env=env,
                                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                        preexec_fn=_as_a_foreground_command))
    worker = int(wait_for(marker))
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert (proc.returncode, err) == (1, b"\nAborted!\n"), out  # as click prints it, no traceback
    assert gone_within(worker)  # nothing keeps running the add


def test_server_stopped_mid_request_finishes_it_then_launchers_run_cold(own_server, cni_sandbox, spy_root,
                                                                        tmp_path) -> None:
    server = own_server()
    native, _ = install_both(tmp_path, server.socket, [spy_entry()])
    proc, worker = start_spy(native, cni_sandbox, "ADD", tmp_path / "pid", sleep=1.5)
    server.proc.send_signal(signal.SIGTERM)
    out = proc.stdout.read()
    assert proc.wait(30) == 0, out
    assert json.loads(out)["cniVersion"] == "1.0.0"
    assert server.proc.wait(30) == 0
    assert not alive(worker)
    assert not os.path.exists(server.socket)
    again = run_executable(str(native / SPY_TYPE), "ADD", spy_conf(), host=cni_sandbox.host,
                           netns=cni_sandbox.container())
    assert again.code == 0 and seen(again)["argv0"] == SPY_TYPE


def test_server_restart_keeps_the_socket_and_serves_again(own_server, cni_sandbox, tmp_path) -> None:
    server = own_server()
    native, _ = install_both(tmp_path, server.socket, [get("loopback")])
    before = os.stat(server.socket).st_ino
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while server.log().count("serving on") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.log().count("serving on") == 2 and server.proc.poll() is None
    assert os.stat(server.socket).st_ino == before
    answer = run_executable(str(native / "loopback"), "VERSION", b"", host=cni_sandbox.host)
    assert answer.code == 0 and json.loads(answer.stdout)["cniVersion"] == "1.1.0"
    server.stop()
    assert server.served() == 1


# -- who may connect, and with what ------------------------------------------------------------

def test_socket_is_private_to_root(cni_server) -> None:
    st_dir, st_sock = os.stat(os.path.dirname(cni_server.socket)), os.lstat(cni_server.socket)
    assert stat.S_IMODE(st_dir.st_mode) == 0o700 and st_dir.st_uid == 0
    assert stat.S_ISSOCK(st_sock.st_mode) and stat.S_IMODE(st_sock.st_mode) == 0o600 and st_sock.st_uid == 0
    assert "LISTEN" not in run_in(cni_server.netns, "ss", "-Htln")  # no TCP


def test_server_refuses_a_loose_socket_directory(tmp_path) -> None:
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    os.chmod(loose, 0o755)
    proc = subprocess.run([CNITOOL, "daemon", "--socket", str(loose / "s.sock")], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 1
    assert "must be a directory owned by root with mode 0700" in proc.stderr
    assert not (loose / "s.sock").exists()


def test_non_root_caller_is_refused_and_falls_back(own_server, cni_sandbox, tmp_path) -> None:
    """A caller whose uid is not 0 never gets a worker, and its exec still works cold.

    The caller keeps CAP_DAC_OVERRIDE (ambient) so it can reach this machine's
    interpreter (under /root) and the 0600 socket: the refusal must come from the
    server's SO_PEERCRED check itself, not from file modes."""
    server = own_server()
    native, _ = install_both(tmp_path, server.socket, [get("loopback")])
    caps = "+dac_override,+dac_read_search"
    argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", f"--inh-caps={caps}",
            f"--ambient-caps={caps}", str(native / "loopback")]
    done = cni_sandbox.host.do(lambda: subprocess.run(argv, env={"CNI_COMMAND": "VERSION"}, capture_output=True,
                                                      timeout=30))
    assert done.returncode == 0, done
    assert json.loads(done.stdout)["supportedVersions"][-1] == "1.1.0"
    server.stop()
    assert "refused: caller is not root: uid 65534" in server.log()
    assert server.served() == 0


def test_stale_socket_file_is_ignored_by_launchers_and_replaced_by_the_server(cni_sandbox, tmp_path) -> None:
    directory = tmp_path / "srv"
    directory.mkdir(mode=0o700)
    path = directory / "cnicore.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens: what a crashed server leaves
    native, _ = install_both(tmp_path / "b", str(path), [get("loopback")])
    started = time.monotonic()
    answer = run_executable(str(native / "loopback"), "VERSION", b"", host=cni_sandbox.host)
    assert answer.code == 0 and time.monotonic() - started < 5
    live = WarmServer(str(directory))
    try:
        assert "removed stale socket" in live.log()
        second = subprocess.run(["ip", "netns", "exec", os.path.basename(live.netns.path), CNITOOL, "daemon",
                                 "--socket", str(path)], capture_output=True, text=True, timeout=30)
        assert second.returncode == 1 and f"another server is listening on {path}" in second.stderr
        assert run_executable(str(native / "loopback"), "VERSION", b"", host=cni_sandbox.host).code == 0
    finally:
        live.stop()
    assert live.served() == 1


@pytest.fixture(scope="module")
def raw_server(tmp_path_factory):
    """A server these tests provoke refusals from (the session's must refuse nothing)."""
    with WarmServer(str(tmp_path_factory.mktemp("raw-server"))) as server:
        yield server


@pytest.mark.parametrize("case", ["directory as stdout", "file as mount ns", "net ns as mount ns",
                                  "too few descriptors", "old protocol", "other build", "bad magic",
                                  "cnitool of another environment"])
def test_server_checks_every_descriptor_and_the_build(raw_server, bins, tmp_path, case) -> None:
    _, python = bins
    launcher = str(python / "loopback")
    devnull = os.open(os.devnull, os.O_RDWR)
    directory = os.open(str(tmp_path), os.O_RDONLY)
    mnt = os.open("/proc/self/ns/mnt", os.O_RDONLY)
    net = os.open("/proc/self/ns/net", os.O_RDONLY)
    fds = [devnull, devnull, devnull, mnt, net]
    build = build_id()
    message = proto.encode_request(build, 0o22, 0, "/", launcher, ["loopback"], {"CNI_COMMAND": "VERSION"})
    expected = {"directory as stdout": proto.REFUSE_FDS, "file as mount ns": proto.REFUSE_FDS,
                "net ns as mount ns": proto.REFUSE_FDS, "too few descriptors": proto.REFUSE_FDS,
                "old protocol": proto.REFUSE_VERSION, "other build": proto.REFUSE_BUILD,
                "bad magic": proto.REFUSE_MALFORMED, "cnitool of another environment": proto.REFUSE_LAUNCHER}[case]
    if case == "directory as stdout":
        fds[1] = directory
    elif case == "file as mount ns":
        fds[3] = devnull
    elif case == "net ns as mount ns":
        fds[3] = net
    elif case == "too few descriptors":
        fds = fds[:4]
    elif case == "old protocol":
        message = message[:4] + struct.pack("=I", 0) + message[8:]
    elif case == "other build":
        message = proto.encode_request("0" * 24, 0o22, 0, "/", launcher, ["loopback"], {"CNI_COMMAND": "VERSION"})
    elif case == "bad magic":
        message = b"HTTP" + message[4:]
    elif case == "cnitool of another environment":  # the server runs a command with its own code only
        message = proto.encode_request(build, 0o22, proto.FLAG_CNITOOL, "/", "/usr/bin/python3",
                                       ["cnitool", "status", "n", "/x"], {})
    try:
        assert raw_request(raw_server.socket, message, fds) == [(proto.REFUSED, expected)]
    finally:
        for fd in {devnull, directory, mnt, net}:
            os.close(fd)


def test_a_well_formed_raw_request_is_served(cni_server, bins) -> None:
    """The Python encoder and the server agree (the C launcher is covered by every other test)."""
    _, python = bins
    out_r, out_w = os.pipe()
    message = proto.encode_request(build_id(), 0o22, 0, "/", str(python / "loopback"), ["loopback"],
                                   {"CNI_COMMAND": "VERSION"})
    with caller_fds() as fds:
        fds[1] = out_w
        try:
            assert raw_request(cni_server.socket, message, fds) == [(proto.STARTED, 0), (proto.EXITED, 0)]
        finally:
            os.close(out_w)
    with os.fdopen(out_r, "rb") as fh:
        assert json.loads(fh.read())["cniVersion"] == "1.1.0"


# -- upgrades -------------------------------------------------------------------------------

UPGRADE_PROJECT = '''
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "cnitest-upgrade-plugin"
version = "{version}"

[project.entry-points."cnicore.plugins"]
cnitest-upgrade = "cnitest_upgrade_plugin"
'''
UPGRADE_MODULE = '''
from cnicore.plugin import hookimpl
from cnicore.version import PluginInfo


@hookimpl
def cni_plugin_info():
    return PluginInfo({versions!r}, about="upgrade test {version}")
'''


def pip_install(project: Path, version: str, versions: list[str]) -> None:
    (project / "pyproject.toml").write_text(UPGRADE_PROJECT.format(version=version))
    (project / "cnitest_upgrade_plugin.py").write_text(UPGRADE_MODULE.format(version=version, versions=versions))
    subprocess.run([PYTHON, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", str(project)], check=True, timeout=300, capture_output=True)


def test_plugin_upgraded_while_the_server_runs(own_server, cni_sandbox, tmp_path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    try:
        pip_install(project, "1.0", ["0.4.0", "1.0.0"])
        server = own_server()
        entry = PluginEntry("cnitest-upgrade", "cnitest_upgrade_plugin", "cnitest-upgrade-plugin", "1.0")
        native, _ = install_both(tmp_path / "b", server.socket, [entry])

        def versions() -> list[str]:
            answer = run_executable(str(native / "cnitest-upgrade"), "VERSION", b"", host=cni_sandbox.host)
            assert answer.code == 0, answer
            return json.loads(answer.stdout)["supportedVersions"]

        assert versions() == ["0.4.0", "1.0.0"]
        pip_install(project, "2.0", ["0.4.0", "1.0.0", "1.1.0"])
        assert versions() == ["0.4.0", "1.0.0", "1.1.0"]  # the very next exec runs the new code
        deadline = time.monotonic() + 30
        while server.log().count("serving on") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "restarting" in server.log()
        assert versions() == ["0.4.0", "1.0.0", "1.1.0"]  # now warm again, with the new code
        served_before_stop = server.log().count("refused")
        server.stop()
        # At most the first exec after the upgrade ran cold (none if the server had already
        # restarted by itself: it watches the served files and restarts once writes settle).
        assert served_before_stop <= 1
    finally:
        subprocess.run([PYTHON, "-m", "pip", "uninstall", "-q", "-y", "cnitest-upgrade-plugin"],
                       capture_output=True, timeout=120)


# -- load -----------------------------------------------------------------------------------

def test_fifty_concurrent_execs(own_server, cni_sandbox, tmp_path) -> None:
    server = own_server(workers=2)
    native, _ = install_both(tmp_path, server.socket, [get("loopback")])
    containers = [cni_sandbox.container() for _ in range(50)]
    conf = json.dumps({"cniVersion": "1.0.0", "name": "lo-net", "type": "loopback"}).encode()
    outcomes: list[tuple[int, bytes, bytes]] = [(-1, b"", b"")] * 50

    def one(i: int) -> None:
        env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": f"c{i}", "CNI_NETNS": containers[i].path,
               "CNI_IFNAME": "lo", "CNI_PATH": str(native)}
        proc = cni_sandbox.host.do(lambda: launch(native / "loopback", env))
        out, err = proc.communicate(conf, timeout=60)
        outcomes[i] = (proc.returncode, out, err)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert all(code == 0 for code, _, _ in outcomes), [o for o in outcomes if o[0] != 0][:3]
    assert all(json.loads(out)["ips"][0]["address"] == "127.0.0.1/8" for _, out, _ in outcomes)
    for ctr in containers:
        assert "UP" in run_in(ctr, "ip", "-o", "link", "show", "lo")
    server.stop()
    assert server.served() == 50
    assert "refused" not in server.log()


# -- the runtime side: libcni and cnitool ---------------------------------------------------------

def chain(tmp_path: Path) -> dict:
    return {"cniVersion": "1.0.0", "name": "warm-chain", "plugins": [
        {"type": "bridge", "bridge": "cniwarm1", "isGateway": True, "ipMasq": True,
         "ipam": {"type": "host-local", "subnet": "10.92.0.0/24", "dataDir": str(tmp_path / "ipam")}},
        {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.send_redirects": "0"}}]}


def test_libcni_sends_requests_to_the_server_without_exec(own_server, cni_sandbox, tmp_path) -> None:
    server = own_server()
    native, _ = install_both(tmp_path / "b", server.socket, [get(t) for t in BUILTINS])
    for plugin in BUILTINS:  # an exec would now fail: only the launcher headers are left to go by
        (native / plugin).write_bytes(Path("/bin/false").read_bytes())
    conf = conf_list_from_bytes(json.dumps(chain(tmp_path)).encode())
    cni = CNIConfig([str(native)], cache_dir=str(tmp_path / "cache"))
    ctr = cni_sandbox.container()
    rt = RuntimeConf("warmlibcni", ctr.path, "eth0")
    result = cni_sandbox.host.do(cni.add_network_list, conf, rt)
    assert result.to_dict()["ips"][0]["address"] == "10.92.0.2/24"
    cni_sandbox.host.do(cni.check_network_list, conf, rt)
    cni_sandbox.host.do(cni.del_network_list, conf, rt)
    assert "eth0" not in run_in(ctr, "ip", "-o", "link", "show")
    server.stop()
    assert server.served() == 6  # bridge and tuning, for ADD, CHECK and DEL


def test_cnitool_network_commands_are_served_whole_by_the_server(own_server, cni_sandbox, tmp_path) -> None:
    """``cnitool add|del`` go to the server as one request each (the chain's plugins run
    in its worker); the cnitool process itself never loads libcni; output, errors and
    exit statuses are the ones the command gives when it runs itself."""
    server = own_server()
    native, _ = install_both(tmp_path / "b", server.socket, [get(t) for t in BUILTINS])
    confdir = tmp_path / "net.d"
    confdir.mkdir()
    (confdir / "10-warm.conflist").write_text(json.dumps(chain(tmp_path)))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("CNI_", "PYTHON"))},
           "NETCONFPATH": str(confdir), "CNI_PATH": str(native), "CNI_CACHE_DIR": str(tmp_path / "cache")}

    def cnitool(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return cni_sandbox.host.do(lambda: subprocess.run([CNITOOL, *args], env=dict(env, **extra),
                                                          capture_output=True, text=True, timeout=60))

    warm_ctr, local_ctr = cni_sandbox.container(), cni_sandbox.container()
    added = cnitool("add", "warm-chain", warm_ctr.path, PYTHONPROFILEIMPORTTIME="1")
    assert added.returncode == 0, added.stderr
    assert "cnicore.libcni" not in added.stderr and "cnicore.cli.netverbs" not in added.stderr
    here = cnitool("add", "warm-chain", local_ctr.path, CNICORE_CNITOOL_EXEC="1")
    assert here.returncode == 0, here.stderr

    def shape(out: str) -> list[str]:
        return sorted(json.loads(out))

    assert shape(added.stdout) == shape(here.stdout)  # the same result (other addresses)
    assert json.loads(added.stdout)["interfaces"][0]["name"] == "cniwarm1"
    for args in (("del", "warm-chain", warm_ctr.path), ("check", "no-such-net", warm_ctr.path),
                 ("del", "warm-chain", local_ctr.path)):
        warm, local = cnitool(*args), cnitool(*args, CNICORE_CNITOOL_EXEC="1")
        assert (warm.returncode, warm.stdout, warm.stderr) == (local.returncode, local.stdout, local.stderr)
    server.stop()
    assert "refused" not in server.log()


def test_systemd_socket_activation(tmp_path, cni_sandbox) -> None:
    """The server takes the listening socket systemd passes (LISTEN_FDS, fd 3)."""
    directory = tmp_path / "sd"
    directory.mkdir(mode=0o700)
    path = str(directory / "cnicore.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    native, _ = install_both(tmp_path / "b", path, [get("loopback")])
    # A connection queued before the server starts is served once it does (or cold, when the
    # server took longer than the clients' first-answer deadline to start).
    early = cni_sandbox.host.do(lambda: launch(native / "loopback", {"CNI_COMMAND": "VERSION"}))
    wrapper = ("import os, sys; os.dup2(int(sys.argv[1]), 3); os.environ['LISTEN_PID'] = str(os.getpid()); "
               "os.environ['LISTEN_FDS'] = '1'; os.execv(sys.executable, [sys.executable, '-m', 'cnicore.cli', "
               "'daemon', '--workers', '1'])")
    with Sandbox("cnitest-sd") as box:
        proc = subprocess.Popen(["ip", "netns", "exec", os.path.basename(box.host.path), PYTHON, "-c", wrapper,
                                 str(listener.fileno())], pass_fds=[listener.fileno()],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            out, err = early.communicate(timeout=30)
            assert early.returncode == 0 and json.loads(out)["cniVersion"] == "1.1.0"
            deadline = time.monotonic() + 30
            while server_client.status(path) is None and time.monotonic() < deadline:  # until a worker answers
                time.sleep(0.1)
            later = run_executable(str(native / "loopback"), "VERSION", b"", host=cni_sandbox.host)
            assert later.code == 0 and json.loads(later.stdout)["cniVersion"] == "1.1.0"
        finally:
            proc.terminate()
            log = proc.communicate(timeout=30)[1].decode()
    listener.close()
    assert "serving on an inherited socket" in log
    assert "stopped after serving 1 requests" in log or "stopped after serving 2 requests" in log, log
    assert os.path.exists(path)  # systemd's socket file is systemd's to remove


def test_native_launcher_without_a_compiler_is_a_clear_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CC", raising=False)
    with pytest.raises(installer.LauncherError, match="no C compiler"):
        install(str(tmp_path / "bin"), [get("loopback")], kind="native", socket="/run/x.sock")
    assert not (tmp_path / "bin" / "loopback").exists()


def test_cnitool_installs_native_launchers_by_default(tmp_path) -> None:
    done = subprocess.run([CNITOOL, "plugins", "install", str(tmp_path), "--socket", "/run/cnitest/s.sock"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with open(tmp_path / "loopback", "rb") as fh:
        assert fh.read(4) == b"\x7fELF"
    header = read_header(str(tmp_path / "loopback"))
    assert header is not None and header.native and header.socket == "/run/cnitest/s.sock"
    manifest = json.loads((tmp_path / installer.MANIFEST).read_text())["launchers"]["loopback"]
    assert manifest["kind"] == "native" and set(manifest) == {"sha256", "fallback_sha256", "python", "kind", "socket"}
    assert manifest["socket"] == "/run/cnitest/s.sock"  # where cnitool sends whole commands
    # No server: the native launcher runs the plugin cold, and says the same.
    version = subprocess.run([str(tmp_path / "loopback")], env={"CNI_COMMAND": "VERSION"}, capture_output=True,
                             timeout=30)
    assert version.returncode == 0 and json.loads(version.stdout)["cniVersion"] == "1.1.0"
    again = subprocess.run([CNITOOL, "plugins", "install", str(tmp_path), "--python", "--json"],
                           capture_output=True, text=True, timeout=120)
    assert json.loads(again.stdout)["updated"] == sorted(json.loads(again.stdout)["updated"])
    assert not (tmp_path / launchers.PYTHON_DIR / "loopback").exists()
    with open(tmp_path / "loopback", "rb") as fh:
        assert fh.read(2) == b"#!"


# -- what the parent imports before it forks --------------------------------------------------

def test_lazy_imports_are_found_inside_functions_only() -> None:
    from cnicore.server._preload import lazy_imports

    source = textwrap.dedent('''
        import os
        from json import loads

        def verb():
            import ipaddress
            from .store import Store
            from .. import sibling
            from cnicore.types import Result

        class Plugin:
            def hook(self):
                import hashlib
    ''')
    found = lazy_imports(source, "pkg.plugin")
    assert {"ipaddress", "pkg.plugin.store", "pkg.plugin.store.Store", "pkg", "pkg.sibling", "cnicore.types",
            "cnicore.types.Result", "hashlib"} == found
    assert not {"os", "json"} & found


def test_preload_follows_a_plugins_lazy_imports_but_not_its_third_party_ones(tmp_path) -> None:
    """What a worker's request would import from disk is imported by the parent first."""
    pkg = tmp_path / "cnitest_lazy_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "plugin.py").write_text("def cni_add(request):\n    from . import helper\n    import colorsys\n"
                                   "    import pyroute2\n")
    (pkg / "helper.py").write_text("def f():\n    import fractions\n")
    probe = textwrap.dedent(f'''
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        import cnitest_lazy_pkg.plugin
        from cnicore.server._preload import follow_lazy_imports
        follow_lazy_imports(("cnitest_lazy_pkg",))
        print(sorted(m for m in ("cnitest_lazy_pkg.helper", "colorsys", "fractions", "pyroute2") if m in sys.modules))
    ''')
    done = subprocess.run([PYTHON, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['cnitest_lazy_pkg.helper', 'colorsys', 'fractions']"


def test_build_id_is_hashlibs_sha256() -> None:
    """The build id is computed without hashlib (OpenSSL costs a libcni caller ~4 ms):
    it must be exactly hashlib's SHA-256 of the launcher source and the protocol."""
    import hashlib

    from cnicore.server import _native

    digest = hashlib.sha256()
    for path in (_native.SOURCE, _native._PROTOCOL):
        with open(path, "rb") as fh:
            digest.update(fh.read())
    assert build_id() == digest.hexdigest()[:24]
