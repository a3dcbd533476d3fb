"""A warm worker serving more than one request: only after plugins that declare
``WARM_REUSE``, each request seeing exactly what a fresh process would, and a
worker that cannot be put back as it was exits instead.

Every request goes through a native launcher exec'd in a throwaway namespace,
as a runtime would run it; the server runs in a namespace of its own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from cnicore.cli.install import install
from cnicore.registry import PluginEntry
from cnicore.testing import Sandbox, WarmServer
from helpers.servers import gone_within, plugin_package

pytestmark = pytest.mark.privileged

PACKAGE = "cnitest_reuse_plugins"

REUSER_SOURCE = '''
"""A test plugin that reports its process and what it sees, and can leave things behind."""
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from cnicore.plugin import hookimpl

WARM_REUSE = {reuse}
_kept = []


def _leave(what):
    if what == "thread":
        threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
    elif what == "child":
        _kept.append(subprocess.Popen(["sleep", "30"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
    elif what == "signal":
        signal.signal(signal.SIGUSR1, lambda *a: None)
    elif what == "netns-fd":
        _kept.append(os.open("/proc/thread-self/ns/net", os.O_RDONLY))
    elif what == "socket":
        _kept.append(socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM))
    elif what == "memory":
        _kept.append(bytearray(64 << 20))
    elif what == "process-state":
        os.environ["CNITEST_LEAKED"] = "1"
        os.chdir("/")
        os.umask(0o077)
        sys.argv.append("leaked")


@hookimpl
def cni_add(request):
    if request.config.get("mark"):  # tells the test the request is in flight
        open(request.config["mark"], "w").close()
    time.sleep(float(request.config.get("sleep", 0)))
    mask = os.umask(0)
    os.umask(mask)
    seen = {{"pid": os.getpid(), "net": os.readlink("/proc/thread-self/ns/net"),
            "mnt": os.readlink("/proc/self/ns/mnt"), "cwd": os.getcwd(), "umask": oct(mask),
            "env": os.environ.get("CNITEST_REUSE", ""), "leaked": os.environ.get("CNITEST_LEAKED", ""),
            "argv": " ".join(os.path.basename(a) for a in sys.argv)}}
    _leave(request.config.get("leave", ""))
    return {{"cniVersion": request.cni_version, "dns": {{"options": [f"{{k}}={{v}}" for k, v in sorted(seen.items())]}}}}
'''


@pytest.fixture(scope="module")
def launchers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The reusable test plugin and the same plugin without WARM_REUSE: their source root."""
    modules = {"reuser": REUSER_SOURCE.format(reuse="True"), "oneshot": REUSER_SOURCE.format(reuse="False")}
    with plugin_package(tmp_path_factory.mktemp("reuse-root"), PACKAGE, modules) as root:
        yield {"root": root}


ENTRIES = [PluginEntry("cnitest-reuser", f"{PACKAGE}.reuser", "cnicore-tests", "0"),
           PluginEntry("cnitest-oneshot", f"{PACKAGE}.oneshot", "cnicore-tests", "0")]


@pytest.fixture
def server(tmp_path: Path, launchers: dict[str, Path]):
    """Start a server with one idle worker (and the given daemon options), launchers for it."""
    started: list[WarmServer] = []

    def start(*args: str) -> tuple[WarmServer, Path]:
        srv = WarmServer(str(tmp_path / f"srv{len(started)}"), workers=1, extra_args=args,
                         plugins=(str(launchers["root"]), ENTRIES))
        started.append(srv)
        bin_dir = tmp_path / f"bin{len(started)}"
        assert not install(str(bin_dir), ENTRIES, kind="native", socket=srv.socket).skipped
        return srv, bin_dir

    try:
        yield start
    finally:
        for srv in started:
            srv.stop()


def add(bin_dir: Path, plugin: str, caller, container, *, cwd: str = "/", umask: int = 0o022, env_value: str = "",
        **conf: object) -> dict[str, str]:
    """An ADD exec'd by a caller in ``caller`` (a NetNS): what the plugin saw."""
    config = {"cniVersion": "1.0.0", "name": "reuse", "type": plugin, **conf}
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "ctr", "CNI_NETNS": container.path, "CNI_IFNAME": "eth0",
           "CNI_PATH": str(bin_dir), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNITEST_REUSE": env_value}

    def run() -> subprocess.CompletedProcess[bytes]:
        old = os.umask(umask)
        try:
            return subprocess.run([str(bin_dir / plugin)], input=json.dumps(config).encode(), env=env, cwd=cwd,
                                  capture_output=True, timeout=30)
        finally:
            os.umask(old)

    done = caller.do(run)
    assert done.returncode == 0, done.stdout + done.stderr
    options = json.loads(done.stdout)["dns"]["options"]
    return dict(option.split("=", 1) for option in options)


def ns_link(pid: int, kind: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{kind}")


def test_a_reusable_plugins_worker_serves_callers_in_other_namespaces_as_a_fresh_process_would(
        server, cni_sandbox, tmp_path: Path) -> None:
    srv, bin_dir = server()
    with Sandbox("cnitest-reuse2") as other:
        callers = [(cni_sandbox.host, cni_sandbox.container()), (other.host, other.container())]
        seen = []
        for index in range(6):
            caller, container = callers[index % 2]
            workdir = tmp_path / f"cwd{index}"
            workdir.mkdir()
            seen.append(add(bin_dir, "cnitest-reuser", caller, container, cwd=str(workdir),
                            umask=0o022 if index % 2 else 0o027, env_value=f"v{index}",
                            leave="process-state"))
            assert seen[-1]["cwd"] == str(workdir)
            assert seen[-1]["umask"] == ("0o22" if index % 2 else "0o27")
            assert seen[-1]["env"] == f"v{index}"
            assert seen[-1]["leaked"] == ""  # what the previous request set in the process is gone
            assert seen[-1]["argv"] == "cnitest-reuser"
            assert seen[-1]["net"] == caller.do(os.readlink, "/proc/thread-self/ns/net")
        # Served by the idle worker, and spares forked when a request came before it was back.
        assert len({s["pid"] for s in seen}) <= 3
        assert {s["net"] for s in seen[0::2]} != {s["net"] for s in seen[1::2]}
        # Idle again, the workers are back in the server's own namespaces (a worker goes home
        # after its caller has the answer; a spare may have exited as surplus meanwhile).
        home = (ns_link(srv.pid, "net"), ns_link(srv.pid, "mnt"))

        def where(worker: int) -> tuple[str, str] | None:
            try:
                return ns_link(worker, "net"), ns_link(worker, "mnt")
            except FileNotFoundError:
                return None

        deadline = time.monotonic() + 10
        workers = {int(s["pid"]) for s in seen} | set(srv.workers())
        while any(where(w) not in (home, None) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        places = {w: where(w) for w in workers}
        assert all(place in (home, None) for place in places.values()), places
        assert any(place == home for place in places.values()), places  # the pool keeps one idle


def test_a_plugin_without_warm_reuse_has_a_fresh_worker_for_every_request(server, cni_sandbox) -> None:
    srv, bin_dir = server()
    container = cni_sandbox.container()
    pids = [add(bin_dir, "cnitest-oneshot", cni_sandbox.host, container)["pid"] for _ in range(3)]
    assert len(set(pids)) == 3
    assert all(gone_within(int(pid)) for pid in pids)


def still_alive_after(pid: int, seconds: float) -> bool:
    return not gone_within(pid, seconds)


@pytest.mark.parametrize("leave", ["thread", "child", "signal", "netns-fd", "memory"])
def test_a_worker_that_cannot_be_put_back_exits(server, cni_sandbox, leave: str) -> None:
    srv, bin_dir = server("--max-workers", "1")  # one worker: no spare to leave as surplus
    container = cni_sandbox.container()
    kept = add(bin_dir, "cnitest-reuser", cni_sandbox.host, container)["pid"]
    assert still_alive_after(int(kept), 1.0), srv.log()  # a request that left nothing: the worker stays
    left = add(bin_dir, "cnitest-reuser", cni_sandbox.host, container, leave=leave)["pid"]
    assert gone_within(int(left))


def test_descriptors_a_plugin_keeps_are_allowed_up_to_a_bound(server, cni_sandbox) -> None:
    from cnicore.server._worker import FD_GROWTH_LIMIT

    srv, bin_dir = server("--max-workers", "1")  # one worker: no spare to leave as surplus
    container = cni_sandbox.container()
    first = add(bin_dir, "cnitest-reuser", cni_sandbox.host, container, leave="socket")["pid"]
    assert still_alive_after(int(first), 1.0), srv.log()  # a kept socket (a connection pool) does not end the worker ...
    pids = [add(bin_dir, "cnitest-reuser", cni_sandbox.host, container, leave="socket")["pid"]
            for _ in range(2 * FD_GROWTH_LIMIT + 4)]
    assert max(pids.count(pid) for pid in pids) <= FD_GROWTH_LIMIT + 1  # ... an ever-growing number does
    assert any(gone_within(int(pid), 0.5) for pid in set(pids))


def test_a_workers_descriptors_and_memory_stay_flat_over_many_bridge_requests(server, cni_sandbox,
                                                                              tmp_path: Path) -> None:
    from cnicore.registry import get

    srv, bin_dir = server("--max-workers", "1")  # one worker: no spare to leave as surplus
    assert not install(str(bin_dir), [get("bridge"), get("host-local")], kind="native", socket=srv.socket).skipped
    conf = {"cniVersion": "1.0.0", "name": "flat", "type": "bridge", "bridge": "cnire0",
            "ipam": {"type": "host-local", "subnet": "10.77.0.0/24", "dataDir": str(tmp_path / "ipam")}}
    env = {"CNI_IFNAME": "eth0", "CNI_PATH": str(bin_dir), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}

    def run(command: str, index: int, container) -> None:
        done = cni_sandbox.host.do(subprocess.run, [str(bin_dir / "bridge")], input=json.dumps(conf).encode(),
                                   env=dict(env, CNI_COMMAND=command, CNI_CONTAINERID=f"c{index}",
                                            CNI_NETNS=container.path),
                                   capture_output=True, timeout=30)
        assert done.returncode == 0, done.stdout + done.stderr

    def sample() -> dict[int, tuple[int, int]]:
        """Each worker's open descriptors and resident memory."""
        found = {}
        for pid in srv.workers():
            with open(f"/proc/{pid}/statm") as fh:
                rss = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            found[pid] = (len(os.listdir(f"/proc/{pid}/fd")), rss)
        return found

    samples = []
    for index in range(30):
        container = cni_sandbox.container()
        run("ADD", index, container)
        run("DEL", index, container)
        container.remove()
        time.sleep(0.05)
        samples.append(sample())
        assert len(samples[-1]) <= 1, samples[-1]  # --max-workers 1: the one worker
    lasting = set(samples[5]) & set(samples[-1])
    assert lasting  # workers that served requests 5 to 30
    for pid in lasting:
        assert samples[5][pid][0] == samples[-1][pid][0]  # no descriptor leaks
        assert samples[-1][pid][1] - samples[5][pid][1] < 8 << 20  # memory: well under a megabyte a request


def test_a_worker_serves_at_most_max_requests(server, cni_sandbox) -> None:
    srv, bin_dir = server("--max-requests", "3", "--max-workers", "1")
    container = cni_sandbox.container()
    pids = [add(bin_dir, "cnitest-reuser", cni_sandbox.host, container)["pid"] for _ in range(7)]
    assert max(pids.count(pid) for pid in pids) == 3
    assert len(set(pids)) >= 3


def test_the_pool_shrinks_back_after_a_burst(server, cni_sandbox) -> None:
    srv, bin_dir = server("--idle-exit", "1")
    container = cni_sandbox.container()
    seen: list[str] = []
    threads = [threading.Thread(target=lambda: seen.append(
        add(bin_dir, "cnitest-reuser", cni_sandbox.host, container, sleep=1.0)["pid"])) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(seen)) == 6  # the burst was served at once, by six workers
    def settled() -> bool:  # one idle worker, and none of the burst's (each left after --idle-exit)
        workers = srv.workers()
        return len(workers) == 1 and not set(seen) & {str(pid) for pid in workers}

    deadline = time.monotonic() + 10
    while not settled() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert settled(), (seen, srv.workers())


def test_surplus_workers_exit_soon_after_a_burst(server, cni_sandbox) -> None:
    """With the default --idle-exit (30 s), the workers a burst left idle beyond the pool's
    target exit within a few seconds: their copied pages go back to the machine."""
    from cnicore.server._worker import SURPLUS_CHECK_SECONDS

    srv, bin_dir = server()
    container = cni_sandbox.container()
    threads = [threading.Thread(target=add, args=(bin_dir, "cnitest-reuser", cni_sandbox.host, container),
                                kwargs={"sleep": 1.0}) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(srv.workers()) >= 6
    deadline = time.monotonic() + 3 * (SURPLUS_CHECK_SECONDS + 1.6) + 2
    while len(srv.workers()) != 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(srv.workers()) == 1
    add(bin_dir, "cnitest-reuser", cni_sandbox.host, container)  # and the pool still serves


def test_after_a_restart_no_worker_of_the_old_server_takes_a_request(server, cni_sandbox, tmp_path: Path) -> None:
    """A SIGHUP while a request is in flight: that request finishes in its worker, which then
    exits; no worker of the old image (busy or idle) takes a request after the restart."""
    srv, bin_dir = server()
    container = cni_sandbox.container()
    before = add(bin_dir, "cnitest-reuser", cni_sandbox.host, container)["pid"]
    mark = tmp_path / "in-flight"
    busy: list[str] = []
    slow = threading.Thread(target=lambda: busy.append(
        add(bin_dir, "cnitest-reuser", cni_sandbox.host, container, sleep=2.0, mark=str(mark))["pid"]))
    slow.start()
    deadline = time.monotonic() + 30
    while not mark.exists():  # the plugin runs: the request is in a worker of the old image
        assert time.monotonic() < deadline and slow.is_alive(), "the slow request never started"
        time.sleep(0.02)
    old_workers = {str(pid) for pid in srv.workers()} | {before}
    os.kill(srv.pid, signal.SIGHUP)
    slow.join()
    assert len(busy) == 1 and busy[0] in old_workers  # the request in flight finished in its worker ...
    assert gone_within(int(busy[0]))  # ... which then exited rather than wait for more
    srv.wait_ready()
    after = {add(bin_dir, "cnitest-reuser", cni_sandbox.host, container)["pid"] for _ in range(3)}
    assert not after & old_workers
