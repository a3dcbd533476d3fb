"""The warm server never makes a caller wait, and says what it did (issue 18: availability).

Every server runs in its own throwaway network namespace
(:class:`cnicore.testing.WarmServer`); callers are real native launchers,
libcni and ``cnitool`` in a sandbox "host" namespace. A server is provoked
into the states a broken runtime or a hostile local user can put it in
(stopped, parent killed, workers all busy, slow clients, FIFOs named as
launchers, SIGHUP storms, a successor at the same path), and every caller
must still answer within a few seconds, with the cold path's result when no
worker takes it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cnicore.cli.install import install
from cnicore.libcni import CNIConfig, RuntimeConf
from cnicore.libcni.conf import conf_list_from_bytes
from cnicore.registry import PluginEntry, get
from cnicore.server import _protocol as proto
from cnicore.server._native import build_id
from cnicore.testing import Sandbox, run_executable
from helpers.servers import launch, own_servers, plugin_package, wait_for

pytestmark = pytest.mark.privileged

PYTHON = sys.executable
CNITOOL = os.path.join(os.path.dirname(sys.executable), "cnitool")
PACKAGE = "cnitest_avail_plugins"
PID_TYPE = "cnitest-pid"
#: "A few seconds": the first-answer deadline, then a cold run, on a loaded 2-core machine.
PROMPT = proto.FIRST_ANSWER_TIMEOUT + 6.0

PID_SOURCE = '''
"""A test plugin that reports the pid it ran in (a launcher's own: cold; another: warm)."""
import os
import subprocess
import sys
import time

from cnicore.plugin import hookimpl

LISTENERS = """
import os, socket
count = 0
for name in os.listdir("/proc/self/fd"):
    try:
        sock = socket.socket(fileno=os.dup(int(name)))
    except OSError:
        continue
    try:
        count += sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    except OSError:
        pass
    finally:
        sock.close()
print(count)
"""


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
    options = [f"pid={os.getpid()}"]
    if request.config.get("child"):  # a child that inherits every descriptor (no close_fds)
        out = subprocess.run([sys.executable, "-c", LISTENERS], close_fds=False, capture_output=True, text=True)
        options.append(f"listeners={out.stdout.strip()}")
    return {"cniVersion": request.cni_version, "dns": {"options": options}}


@hookimpl
def cni_del(request):
    _stay(request)


@hookimpl
def cni_check(request):
    _stay(request)
'''


@pytest.fixture(scope="module")
def pid_root(tmp_path_factory: pytest.TempPathFactory):
    with plugin_package(tmp_path_factory.mktemp("pid-root"), PACKAGE, {"pid": PID_SOURCE}) as root:
        yield root


def pid_entry() -> PluginEntry:
    return PluginEntry(PID_TYPE, f"{PACKAGE}.pid", "cnicore-tests", "0")


@pytest.fixture
def own_server(tmp_path: Path, pid_root: Path):
    """Servers of this test's own, stopped (and continued first, if stopped) afterwards; the
    test plugin is in their environment (a worker hosts only plugins its parent loaded)."""
    with own_servers(tmp_path, (str(pid_root), [pid_entry()])) as start:
        yield start


def native_bins(directory: Path, socket_path: str, entries: list[PluginEntry]) -> Path:
    assert not install(str(directory), entries, kind="native", socket=socket_path).skipped
    return directory


def pid_conf(**extra) -> dict:
    return {"cniVersion": "1.0.0", "name": "pid-net", "type": PID_TYPE, **extra}


def options(stdout: bytes) -> dict[str, str]:
    return dict(option.split("=", 1) for option in json.loads(stdout)["dns"]["options"])


def pid_add(sandbox: Sandbox, bins: Path, conf: dict, container: str = "p1") -> tuple[subprocess.Popen, bytes, float]:
    """One ADD of the pid plugin through its native launcher: the process, its stdout,
    and how long it took."""
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": container, "CNI_NETNS": sandbox.container().path,
           "CNI_IFNAME": "eth0", "CNI_PATH": str(bins)}
    started = time.monotonic()
    proc = sandbox.host.do(lambda: launch(bins / PID_TYPE, env))
    out, err = proc.communicate(json.dumps(conf).encode(), timeout=60)
    assert proc.returncode == 0, (out, err)
    return proc, out, time.monotonic() - started


def served_warm(sandbox: Sandbox, bins: Path) -> bool:
    proc, out, _ = pid_add(sandbox, bins, pid_conf())
    return int(options(out)["pid"]) != proc.pid


def wait_until(check, timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


def start_busy(sandbox: Sandbox, bins: Path, marker: Path) -> tuple[subprocess.Popen, int]:
    """An ADD that holds a worker for a minute; the launcher and the worker's pid."""
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "busy", "CNI_NETNS": sandbox.container().path,
           "CNI_IFNAME": "eth0", "CNI_PATH": str(bins)}
    proc = sandbox.host.do(lambda: launch(bins / PID_TYPE, env))
    proc.stdin.write(json.dumps(pid_conf(sleep=60, marker=str(marker))).encode())
    proc.stdin.close()
    return proc, int(wait_for(marker))


def end(proc: subprocess.Popen, *pids: int) -> None:
    """Kill what a test left running (a launcher it started, a worker orphaned by it)."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.kill()
    proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


# -- finding 6: no first answer, the cold path ----------------------------------------------------

@pytest.mark.parametrize("situation", ["parent stopped, worker busy", "parent killed, worker busy",
                                       "whole server stopped"])
def test_no_first_answer_then_launcher_libcni_and_cnitool_run_cold(own_server, cni_sandbox, pid_root, tmp_path,
                                                                   situation) -> None:
    server = own_server(workers=1, extra_args=["--max-workers", "1"])
    bins = native_bins(tmp_path / "bin", server.socket, [pid_entry()])
    busy, worker = None, 0
    if situation == "whole server stopped":
        for pid in [server.pid, *server.workers()]:
            os.kill(pid, signal.SIGSTOP)
    else:
        busy, worker = start_busy(cni_sandbox, bins, tmp_path / "busy")
        os.kill(server.pid, signal.SIGSTOP if "stopped" in situation else signal.SIGKILL)
    try:
        # A native launcher: cold, in its own process.
        proc, out, took = pid_add(cni_sandbox, bins, pid_conf())
        assert int(options(out)["pid"]) == proc.pid and took < PROMPT, took
        # libcni: falls back to an exec, not a timeout error.
        conf = conf_list_from_bytes(json.dumps({"cniVersion": "1.0.0", "name": "pid-list",
                                                "plugins": [pid_conf()]}).encode())
        cni = CNIConfig([str(bins)], cache_dir=str(tmp_path / "cache"))
        started = time.monotonic()
        result = cni_sandbox.host.do(cni.add_network_list, conf,
                                     RuntimeConf("libcni1", cni_sandbox.container().path, "eth0"))
        assert time.monotonic() - started < PROMPT
        assert int(dict(o.split("=", 1) for o in result.to_dict()["dns"]["options"])["pid"]) != worker
        # cnitool: runs the command itself.
        confdir = tmp_path / "net.d"
        confdir.mkdir()
        (confdir / "10-pid.conflist").write_text(json.dumps(
            {"cniVersion": "1.0.0", "name": "pid-list", "plugins": [pid_conf()]}))
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("CNI_", "PYTHON"))},
               "NETCONFPATH": str(confdir), "CNI_PATH": str(bins), "CNI_CACHE_DIR": str(tmp_path / "cache")}
        started = time.monotonic()
        done = cni_sandbox.host.do(lambda: subprocess.run([CNITOOL, "add", "pid-list", cni_sandbox.container().path],
                                                          env=env, capture_output=True, timeout=60))
        assert done.returncode == 0, done
        assert time.monotonic() - started < PROMPT
        assert int(options(done.stdout)["pid"]) != worker
    finally:
        if busy is not None:
            end(busy, worker)


# -- finding 7: slow clients ----------------------------------------------------------------------

def test_slow_clients_hold_a_worker_no_longer_than_the_receive_deadline(own_server, cni_sandbox, pid_root,
                                                                         tmp_path) -> None:
    """Six clients that send one byte a second, on a server of six workers at most: each
    is dropped at the receive deadline from its accept (not after every byte), a launcher
    meanwhile answers within a few seconds, and afterwards requests are served warm."""
    server = own_server(workers=2, extra_args=["--max-workers", "6"])
    bins = native_bins(tmp_path / "bin", server.socket, [pid_entry()])
    message = proto.encode_request(build_id(), 0o22, 0, "/", "/nonexistent", ["x"], {"CNI_COMMAND": "VERSION"})
    held: list[float] = [0.0] * 6

    def trickle(index: int) -> None:
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(server.socket)
        started = time.monotonic()
        try:
            client.settimeout(60)
            assert client.recv(proto.FRAME.size) == proto.frame(proto.ACCEPTED)
            for byte in message[:30]:  # ~30 s at one byte a second, unless dropped
                client.send(bytes([byte]))
                client.settimeout(1.0)
                try:
                    if client.recv(64) is not None:  # a refusal frame or EOF: dropped
                        break
                except TimeoutError:
                    continue
        except OSError:
            pass
        finally:
            held[index] = time.monotonic() - started
            client.close()

    threads = [threading.Thread(target=trickle, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(server.workers()) >= 6, what="six workers busy with slow clients")
    _, _, took = pid_add(cni_sandbox, bins, pid_conf())
    assert took < PROMPT, took
    for thread in threads:
        thread.join(60)
    assert max(held) < proto.RECEIVE_TIMEOUT + 3.0, held
    assert served_warm(cni_sandbox, bins)
    assert server.log().count("refused: request not received in time") == 6, server.log()


# -- finding 8: FIFOs named as launchers ----------------------------------------------------------

def test_fifos_named_as_launchers_block_no_worker(own_server, cni_sandbox, pid_root, tmp_path) -> None:
    server = own_server(workers=2, extra_args=["--max-workers", "6"])
    bins = native_bins(tmp_path / "bin", server.socket, [pid_entry()])
    fifos = native_bins(tmp_path / "fifo", server.socket, [pid_entry()])
    fallback = fifos / ".cnicore-python" / PID_TYPE  # what a native launcher names as its launcher
    fallback.unlink()
    os.mkfifo(fallback)
    procs = [cni_sandbox.host.do(lambda: launch(fifos / PID_TYPE, {"CNI_COMMAND": "VERSION"})) for _ in range(6)]
    started = time.monotonic()
    try:
        for proc in procs:
            proc.communicate(timeout=60)
            assert proc.returncode != 0  # refused, and the cold path cannot exec a FIFO
        assert time.monotonic() - started < PROMPT
        assert server.log().count("is not a cnicore launcher") == 6, server.log()
        assert served_warm(cni_sandbox, bins)
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(15) == 0
    finally:
        for proc in procs:
            if proc.returncode is None:
                end(proc)


# -- finding 9: SIGHUP storms ---------------------------------------------------------------------

def test_a_sighup_storm_under_load_restarts_the_server_and_it_serves(own_server, cni_sandbox, pid_root,
                                                                     tmp_path) -> None:
    server = own_server(workers=2)
    bins = native_bins(tmp_path / "bin", server.socket, [pid_entry(), get("loopback")])
    stop = threading.Event()
    failures: list[object] = []
    runs = [0]

    def load() -> None:
        while not stop.is_set() and runs[0] < 400:
            answer = run_executable(str(bins / "loopback"), "VERSION", b"", host=cni_sandbox.host)
            runs[0] += 1
            if answer.code != 0:
                failures.append(answer)

    threads = [threading.Thread(target=load) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(20):
            server.proc.send_signal(signal.SIGHUP)
            time.sleep(0.03)
            assert server.proc.poll() is None, server.log()
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert not failures, failures[:3]
    wait_until(lambda: "restarting" not in server.log().rsplit("serving on", 1)[-1], what="settled")
    assert server.proc.poll() is None, server.log()
    wait_until(lambda: served_warm(cni_sandbox, bins), what="served warm after the storm")


# -- finding 10: who removes the socket file ------------------------------------------------------

def test_reload_then_stop_leaves_the_socket_file_systemd_owns(tmp_path, cni_sandbox) -> None:
    directory = tmp_path / "sd"
    directory.mkdir(mode=0o700)
    path = str(directory / "cnicore.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    wrapper = ("import os, sys; os.dup2(int(sys.argv[1]), 3); os.environ['LISTEN_PID'] = str(os.getpid()); "
               "os.environ['LISTEN_FDS'] = '1'; os.execv(sys.executable, [sys.executable, '-m', 'cnicore.cli', "
               "'daemon', '--workers', '1'])")
    log = tmp_path / "log"
    with Sandbox("cnitest-sd") as box, open(log, "wb") as out:
        proc = subprocess.Popen(["ip", "netns", "exec", os.path.basename(box.host.path), PYTHON, "-c", wrapper,
                                 str(listener.fileno())], pass_fds=[listener.fileno()],
                                stdout=subprocess.DEVNULL, stderr=out)
        try:
            wait_until(lambda: "serving on" in log.read_text(), what="serving")
            proc.send_signal(signal.SIGHUP)
            wait_until(lambda: log.read_text().count("serving on") == 2, what="restarted")
        finally:
            proc.terminate()
            proc.wait(30)
    listener.close()
    assert "stopped after serving" in log.read_text()
    assert os.path.exists(path)  # systemd's socket file is systemd's to remove, after a reload too


def test_stop_leaves_a_successors_socket_at_the_same_path(own_server, cni_sandbox, pid_root, tmp_path) -> None:
    first = own_server(str(tmp_path / "srv"))
    os.unlink(first.socket)  # an admin (or a tool) cleared the path: a successor binds it anew
    second = own_server(str(tmp_path / "srv"))
    bound = os.stat(second.socket).st_ino
    first.stop()
    assert os.path.exists(second.socket) and os.stat(second.socket).st_ino == bound
    bins = native_bins(tmp_path / "bin", second.socket, [pid_entry()])
    assert served_warm(cni_sandbox, bins)
    second.stop()
    assert not os.path.exists(second.socket)  # its own, still removed at its stop


# -- finding 13: the listener after a restart -----------------------------------------------------

def test_a_plugins_child_never_inherits_the_listener_after_a_restart(own_server, cni_sandbox, pid_root,
                                                                       tmp_path) -> None:
    server = own_server(workers=1)
    bins = native_bins(tmp_path / "bin", server.socket, [pid_entry()])
    for restart in range(2):
        proc, out, _ = pid_add(cni_sandbox, bins, pid_conf(child=True))
        seen = options(out)
        assert int(seen["pid"]) != proc.pid  # warm
        assert seen["listeners"] == "0", (restart, seen)
        server.proc.send_signal(signal.SIGHUP)
        wait_until(lambda r=restart: server.log().count("serving on") == r + 2, what="restarted")


# -- observability --------------------------------------------------------------------------------

def daemon_status(socket_path: str) -> dict:
    done = subprocess.run([CNITOOL, "daemon", "status", "--socket", socket_path, "--json"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done
    return json.loads(done.stdout)


def test_one_log_line_per_request_and_the_status_command(own_server, cni_sandbox, pid_root, tmp_path) -> None:
    server = own_server(workers=2)
    bins = native_bins(tmp_path / "bin", server.socket, [pid_entry(), get("loopback")])
    proc, out, _ = pid_add(cni_sandbox, bins, pid_conf())
    assert int(options(out)["pid"]) != proc.pid
    caps = "+dac_override,+dac_read_search"
    refused = cni_sandbox.host.do(lambda: subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", f"--inh-caps={caps}",
         f"--ambient-caps={caps}", str(bins / "loopback")], env={"CNI_COMMAND": "VERSION"}, capture_output=True,
        timeout=30))
    assert refused.returncode == 0, refused
    probes = f"request pid={os.getpid()} plugin=- command=- status"  # WarmServer's readiness checks
    lines = [line for line in server.log().splitlines() if "request pid=" in line and probes not in line]
    assert len(lines) == 2, server.log()
    assert f"request pid={proc.pid} plugin={PID_TYPE} command=ADD warm exit=0 " in lines[0]
    assert lines[0].endswith(" ms")
    assert "plugin=- command=- refused: caller is not root: uid 65534" in lines[1]  # before its request
    # The parent counts what workers report on its status pipe: wait for it to have read it.
    wait_until(lambda: daemon_status(server.socket)["refused"] == {"caller is not root": 1}, what="counted")
    status = daemon_status(server.socket)
    assert status["pid"] == server.pid and status["restarts"] == 0 and status["served"] == 1
    assert status["workers"] >= 1 and status["idle"] + status["busy"] == status["workers"]
    server.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: server.log().count("serving on") == 2, what="restarted")
    wait_until(lambda: daemon_status(server.socket)["restarts"] == 1, what="the restart counted")
    status = daemon_status(server.socket)
    assert (status["served"], status["refused"]) == (1, {"caller is not root": 1})  # carried across it


def test_status_of_no_server_is_a_clear_error(tmp_path) -> None:
    done = subprocess.run([CNITOOL, "daemon", "status", "--socket", str(tmp_path / "none.sock")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"no answer from a warm server on {tmp_path / 'none.sock'}" in done.stderr


# -- finding 13: the cold launchers and the installer ---------------------------------------------

GO_BIN = "/usr/lib/cni"


@pytest.mark.parametrize("plugin", ["loopback", "tuning"])
def test_a_caller_without_cap_sys_admin_gets_a_cni_error_from_the_cold_launcher(cni_sandbox, tmp_path,
                                                                                plugin) -> None:
    """setns needs CAP_SYS_ADMIN: without it the cold launcher answers with a CNI error
    object (the reference's code), never a bare exit 70 (it never left its namespace)."""
    bins = tmp_path / "bin"
    assert not install(str(bins), [get(plugin)], kind="python").skipped
    conf = {"cniVersion": "1.0.0", "name": "n", "type": plugin}
    if plugin == "tuning":
        conf.update(sysctl={"net.ipv4.conf.lo.send_redirects": "0"},
                    prevResult={"cniVersion": "1.0.0", "interfaces": [{"name": "lo"}], "ips": []})
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": cni_sandbox.container().path,
           "CNI_IFNAME": "lo", "CNI_PATH": GO_BIN, "PATH": os.environ.get("PATH", "")}

    def run(executable: str) -> subprocess.CompletedProcess[bytes]:
        argv = ["setpriv", "--inh-caps=-all", "--bounding-set=-sys_admin,-net_admin", executable]
        return cni_sandbox.host.do(lambda: subprocess.run(argv, input=json.dumps(conf).encode(), env=env,
                                                          capture_output=True, timeout=60))

    ours, go = run(str(bins / plugin)), run(os.path.join(GO_BIN, plugin))
    assert (ours.returncode, go.returncode) == (1, 1), (ours, go)
    assert json.loads(ours.stdout)["code"] == json.loads(go.stdout)["code"] == 999
    assert json.loads(ours.stdout)["msg"] == json.loads(go.stdout)["msg"]


def test_plugins_install_installs_the_rest_when_one_module_is_missing(tmp_path) -> None:
    site = tmp_path / "site"
    info = site / "broken_cni-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-cni\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[cnicore.plugins]\ncnitest-broken = cnitest_no_such_module\n")
    bins = tmp_path / "bin"
    done = subprocess.run([CNITOOL, "plugins", "install", "--python", str(bins)], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(site)), timeout=120)
    assert done.returncode == 1, done  # something was refused
    assert "skipped: cnitest-broken (refused, cannot load it: ModuleNotFoundError" in done.stderr
    assert {"bridge", "host-local", "loopback", "tuning"} <= set(os.listdir(bins))
    assert not (bins / "cnitest-broken").exists()
