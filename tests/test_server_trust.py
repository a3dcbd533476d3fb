"""The warm server's trust boundary: a warm request does exactly what the caller's own
exec would do, with the caller's privileges, and nothing of one request reaches the next.

Every caller execs a real native launcher (or ``cnitool``) from a sandbox "host"
namespace; the server runs in a throwaway namespace of its own, with one idle
worker where a test needs two requests on the same worker. What a request did
is read back from the kernel, the store on disk and the server's log; the cold
answer (the Python launchers, no server) is the reference.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cnicore.cli.install import install
from cnicore.registry import PluginEntry, get
from cnicore.server import _protocol as proto
from cnicore.server._native import build_id
from cnicore.testing import WarmServer, run_in
from helpers.servers import caller_fds, plugin_package, raw_request

pytestmark = pytest.mark.privileged

CNITOOL = os.path.join(os.path.dirname(sys.executable), "cnitool")
BUILTINS = ("bridge", "host-local", "loopback")
PACKAGE = "cnitest_trust_plugins"
STATE_TYPE = "cnitest-state"

STATE_SOURCE = '''
"""Reports the process state a request starts with; can leave some behind (WARM_REUSE)."""
import os
import resource
import signal

from cnicore.plugin import hookimpl

WARM_REUSE = True


@hookimpl
def cni_add(request):
    blocked = sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, []))
    seen = {"pid": os.getpid(), "blocked": blocked, "nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE))}
    leave = request.config.get("leave", "")
    if leave == "sigmask":
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGIO, signal.SIGALRM])
    elif leave == "rlimit":
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    elif leave == "import":  # a module the server did not load (by name: no preload can see it)
        __import__("importlib").import_module("colorsys")
    return {"cniVersion": request.cni_version, "dns": {"domain": __import__("json").dumps(seen)}}
'''

#: An IPAM plugin a caller brings on its CNI_PATH: it answers with a fixed address, and when
#: imported it marks where it runs and takes over every later request of its process.
HOSTILE_SOURCE = '''
"""A caller's own IPAM plugin, {label}."""
import os

from cnicore import skel
from cnicore.plugin import hookimpl

WARM_REUSE = True

with open({marker!r}, "a") as fh:
    fh.write(f"{{os.getpid()}} {{os.getppid()}}\\n")

_real_run = skel.run


def _intercept(host, env, stdin):
    code, out, err = _real_run(host, env, stdin)
    if env.get("CNI_CONTAINERID", "").startswith("victim"):  # another caller's request
        out = out.replace(b'"10.', b'"66.')
    return code, out, err


skel.run = _intercept


@hookimpl
def cni_add(request):
    return {{"cniVersion": request.cni_version, "ips": [{{"address": {address!r}}}]}}


@hookimpl
def cni_del(request):
    return None
'''


# -- fixtures ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def state_root(tmp_path_factory: pytest.TempPathFactory):
    with plugin_package(tmp_path_factory.mktemp("trust-root"), PACKAGE, {"state": STATE_SOURCE}) as root:
        yield root


STATE_ENTRY = PluginEntry(STATE_TYPE, f"{PACKAGE}.state", "cnicore-tests", "0")


@pytest.fixture
def server(tmp_path: Path, state_root: Path):
    """``start()``: a server of one worker at most (so consecutive requests share it while
    it can be put back) and native and Python launchers for the builtins and the state
    plugin; stopped afterwards."""
    started: list[WarmServer] = []

    def start() -> tuple[WarmServer, Path, Path]:
        srv = WarmServer(str(tmp_path / f"srv{len(started)}"), workers=1, extra_args=["--max-workers", "1"],
                         plugins=(str(state_root), [STATE_ENTRY]),
                         extra_env={"PYTHONUNBUFFERED": ""})  # buffered stdio, as a service has
        started.append(srv)
        entries = [get(t) for t in BUILTINS] + [STATE_ENTRY]
        native, python = tmp_path / f"native{len(started)}", tmp_path / f"python{len(started)}"
        assert not install(str(native), entries, kind="native", socket=srv.socket).skipped
        assert not install(str(python), entries, kind="python").skipped
        return srv, native, python

    try:
        yield start
    finally:
        for srv in started:
            srv.stop()


def base_env(**env: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CNI_", "PYTHON"))}
    return {**clean, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **env}


def cni_env(command: str, netns, bin_dir: Path, container_id: str = "ctr", **extra: str) -> dict[str, str]:
    return base_env(CNI_COMMAND=command, CNI_CONTAINERID=container_id, CNI_NETNS=getattr(netns, "path", netns),
                    CNI_IFNAME="eth0", CNI_PATH=str(bin_dir), **extra)


def execute(host, argv: list[str], env: dict[str, str], stdin: bytes = b"",
            cwd: str | None = None) -> tuple[int, bytes, bytes]:
    """Run ``argv`` from inside ``host`` (a NetNS), as a runtime would."""
    done = host.do(lambda: subprocess.run(argv, input=stdin, env=env, capture_output=True, timeout=60, cwd=cwd))
    return done.returncode, done.stdout, done.stderr


def bridge_conf(tmp_path: Path, name: str = "trust-net", bridge: str = "cnitrust0", subnet: str = "10.93.0.0/24",
                **extra: object) -> dict:
    return {"cniVersion": "1.0.0", "name": name, "type": "bridge", "bridge": bridge, "isGateway": True,
            "ipam": {"type": "host-local", "subnet": subnet, "dataDir": str(tmp_path / "ipam")}, **extra}


# -- 1. only a caller that could do the work itself -------------------------------------------------

#: Ways a uid-0 caller can lack the privileges the work needs.
UNPRIVILEGED_ROOTS = {
    "capabilities dropped": ["setpriv", "--inh-caps=-net_admin,-sys_admin", "--bounding-set=-net_admin,-sys_admin"],
    "root of its own user namespace": ["unshare", "--user", "--map-root-user"],
}


@pytest.mark.parametrize("how", list(UNPRIVILEGED_ROOTS))
def test_a_root_caller_without_the_privileges_gets_what_it_gets_cold(server, cni_sandbox, tmp_path, how) -> None:
    """Cold, such a caller cannot enter the container's namespace (EPERM, as a CNI error);
    warm it must get the same answer, and the server must do nothing in its namespaces."""
    srv, native, python = server()
    prefix = UNPRIVILEGED_ROOTS[how]
    conf = json.dumps(bridge_conf(tmp_path)).encode()
    answers = {}
    for label, bin_dir in (("warm", native), ("cold", python)):
        ctr = cni_sandbox.container()
        answers[label] = execute(cni_sandbox.host, [*prefix, str(bin_dir / "bridge")],
                                 cni_env("ADD", ctr, bin_dir), conf)
        answers[label] = (answers[label][0], answers[label][1].replace(ctr.path.encode(), b"CTR"),
                          answers[label][2])
        assert "eth0" not in run_in(ctr, "ip", "-o", "link", "show")
    assert answers["warm"] == answers["cold"]
    code, out, _ = answers["warm"]
    assert code != 0 and "operation not permitted" in json.loads(out)["msg"].lower(), out  # EPERM, as a CNI error
    assert "cnitrust0" not in run_in(cni_sandbox.host, "ip", "-o", "link", "show")
    assert not os.path.exists(tmp_path / "ipam" / "trust-net")  # nothing reserved either
    srv.stop()
    assert srv.served() == 0
    reason = {"capabilities dropped": "lacks capabilities",
              "root of its own user namespace": "in another user namespace"}[how]
    assert reason in srv.log()


def test_a_namespace_owned_by_another_user_namespace_is_not_entered_warm(server, cni_sandbox, tmp_path) -> None:
    """A network namespace made in a child user namespace: the worker does not enter it with the
    server's capabilities; the request runs cold (and does there what the caller may do)."""
    srv, native, python = server()
    holder = cni_sandbox.host.do(lambda: subprocess.Popen(
        ["unshare", "--user", "--map-root-user", "--net", "sleep", "60"], stdin=subprocess.DEVNULL))
    try:
        netns = f"/proc/{holder.pid}/ns/net"
        host_netns = cni_sandbox.host.do(lambda: os.readlink("/proc/thread-self/ns/net"))
        deadline = time.monotonic() + 20
        while os.readlink(netns) == host_netns:  # unshare has not made its namespaces yet
            assert time.monotonic() < deadline, "unshare never made its namespaces"
            time.sleep(0.02)
        conf = json.dumps({"cniVersion": "1.0.0", "name": "lo-net", "type": "loopback"}).encode()
        warm = execute(cni_sandbox.host, [str(native / "loopback")], cni_env("ADD", netns, native), conf)
        cold = execute(cni_sandbox.host, [str(python / "loopback")], cni_env("ADD", netns, python), conf)
        assert warm == cold
    finally:
        holder.kill()
        holder.wait()
    srv.stop()
    assert "another user namespace" in srv.log()


# -- 2. only the server's own code runs in a worker ---------------------------------------------------

def write_ipam_plugin(root: Path, package: str, label: str, address: str, marker: Path) -> PluginEntry:
    (root / package).mkdir(parents=True)
    (root / package / "__init__.py").write_text("")
    (root / package / "plugin.py").write_text(HOSTILE_SOURCE.format(label=label, marker=str(marker),
                                                                    address=address))
    return PluginEntry("cnitest-own-ipam", f"{package}.plugin", "cnicore-tests", "0")


def caller_ipam_dir(tmp_path: Path, name: str, package: str, address: str, marker: Path) -> Path:
    """A directory of the caller's with a Python launcher (of this interpreter) for its own
    IPAM plugin ``package``."""
    from cnicore import skel

    root = tmp_path / f"{name}-root"
    entry = write_ipam_plugin(root, package, name, address, marker)
    sys.path.insert(0, str(root))
    real_run = skel.run  # the installer imports the plugin to check it, and this one patches skel
    try:
        bin_dir = tmp_path / f"{name}-bin"
        assert not install(str(bin_dir), [entry], kind="python").skipped
    finally:
        skel.run = real_run
        sys.path.remove(str(root))
        for module in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
            del sys.modules[module]
    marker.unlink(missing_ok=True)  # the installer's own check ran it
    return bin_dir


def own_ipam_conf(tmp_path: Path, name: str) -> dict:
    return {"cniVersion": "1.0.0", "name": name, "type": "bridge", "bridge": "cnitrust1",
            "ipam": {"type": "cnitest-own-ipam"}}


def test_a_callers_own_ipam_module_is_exec_d_never_imported_in_the_worker(server, cni_sandbox, tmp_path) -> None:
    """The caller's IPAM plugin runs as its exec would (a process of its own); it is never
    imported in the worker, so it cannot take over the next caller's request there."""
    srv, native, _ = server()
    marker = tmp_path / "imported"
    own = caller_ipam_dir(tmp_path, "hostile", "cnitest_hostile_ipam", "10.94.0.5/24", marker)
    ctr = cni_sandbox.container()
    code, out, err = execute(cni_sandbox.host, [str(native / "bridge")],
                             cni_env("ADD", ctr, f"{native}:{own}"), json.dumps(own_ipam_conf(tmp_path, "own")).encode())
    assert code == 0, (out, err, srv.log())
    assert json.loads(out)["ips"][0]["address"] == "10.94.0.5/24"
    runs = [line.split() for line in marker.read_text().splitlines()]
    assert len(runs) == 1, (runs, srv.log())
    pid, parent = map(int, runs[0])
    assert parent != srv.pid  # not a worker (a child of the server's parent): a process of its own
    # The next caller, on the same (only) worker, gets its own answer untouched.
    other = cni_sandbox.container()
    code, out, err = execute(cni_sandbox.host, [str(native / "bridge")], cni_env("ADD", other, native, "victim"),
                             json.dumps(bridge_conf(tmp_path, bridge="cnitrust1")).encode())
    assert code == 0, (out, err)
    assert json.loads(out)["ips"][0]["address"] == "10.93.0.2/24"
    srv.stop()
    assert srv.served() == 2


def test_a_served_cnitool_command_execs_a_callers_own_plugin(server, cni_sandbox, tmp_path) -> None:
    """``cnitool add`` runs whole in a worker; a plugin of the caller's in its chain is exec'd
    there, never imported, and the next caller on that worker gets its own answer."""
    srv, native, _ = server()
    marker = tmp_path / "imported"
    own = caller_ipam_dir(tmp_path, "hostile", "cnitest_hostile_main", "10.94.1.5/24", marker)
    confdir = tmp_path / "net.d"
    confdir.mkdir()
    (confdir / "10-own.conflist").write_text(json.dumps(
        {"cniVersion": "1.0.0", "name": "own-chain", "plugins": [{"type": "cnitest-own-ipam"}]}))
    env = base_env(NETCONFPATH=str(confdir), CNI_PATH=f"{native}:{own}", CNI_CACHE_DIR=str(tmp_path / "cache"))
    ctr = cni_sandbox.container()
    code, out, err = execute(cni_sandbox.host, [CNITOOL, "add", "own-chain", ctr.path], env)
    assert code == 0, (out, err, srv.log())
    assert json.loads(out)["ips"][0]["address"] == "10.94.1.5/24"
    (_, parent), = [tuple(map(int, line.split())) for line in marker.read_text().splitlines()]
    assert parent != srv.pid
    other = cni_sandbox.container()
    code, out, err = execute(cni_sandbox.host, [str(native / "bridge")], cni_env("ADD", other, native, "victim"),
                             json.dumps(bridge_conf(tmp_path)).encode())
    assert code == 0, (out, err)
    assert json.loads(out)["ips"][0]["address"] == "10.93.0.2/24"
    srv.stop()
    assert srv.served() == 2


def test_two_plugin_dirs_with_one_module_name_each_run_their_own_code(server, cni_sandbox, tmp_path) -> None:
    """Caller A's and caller B's IPAM plugins share a module name with different code: each
    gets its own, as cold (no cache by module name across callers)."""
    srv, native, _ = server()
    marker = tmp_path / "imported"
    dir_a = caller_ipam_dir(tmp_path / "a", "a", "cnitest_same_ipam", "10.95.0.10/24", marker)
    dir_b = caller_ipam_dir(tmp_path / "b", "b", "cnitest_same_ipam", "10.95.0.20/24", marker)
    seen = []
    for name, own in (("a", dir_a), ("b", dir_b), ("a", dir_a), ("b", dir_b)):
        ctr = cni_sandbox.container()
        code, out, err = execute(cni_sandbox.host, [str(native / "bridge")],
                                 cni_env("ADD", ctr, f"{native}:{own}", f"c-{name}"),
                                 json.dumps(own_ipam_conf(tmp_path, f"net-{name}")).encode())
        assert code == 0, (out, err)
        seen.append(json.loads(out)["ips"][0]["address"])
    assert seen == ["10.95.0.10/24", "10.95.0.20/24", "10.95.0.10/24", "10.95.0.20/24"]


FAKE_TOOL = """#!/bin/sh
echo "$0 $*" >> {marker}
exit 0
"""


def test_ip_masq_never_runs_an_iptables_from_the_callers_path(server, cni_sandbox, tmp_path) -> None:
    """bridge with ipMasq runs the system's iptables, warm and cold, whatever PATH the caller has."""
    srv, native, python = server()
    fake_dir = tmp_path / "fake-tools"
    fake_dir.mkdir()
    marker = tmp_path / "fake-ran"
    for tool in ("iptables", "ip6tables", "nft", "iptables-legacy", "iptables-nft"):
        (fake_dir / tool).write_text(FAKE_TOOL.format(marker=marker))
        (fake_dir / tool).chmod(0o755)
    results = {}
    for label, bin_dir, subnet in (("warm", native, "10.96.0.0/24"), ("cold", python, "10.96.1.0/24")):
        ctr = cni_sandbox.container()
        conf = bridge_conf(tmp_path, name=f"masq-{label}", bridge=f"cnimasq{label}", subnet=subnet, ipMasq=True)
        env = cni_env("ADD", ctr, bin_dir, f"m-{label}", PATH=f"{fake_dir}:/usr/sbin:/usr/bin:/sbin:/bin")
        code, out, err = execute(cni_sandbox.host, [str(bin_dir / "bridge")], env, json.dumps(conf).encode())
        assert code == 0, (label, out, err)
        results[label] = json.loads(out)["ips"][0]["address"]
        rules = run_in(cni_sandbox.host, "iptables-save", "-t", "nat")
        assert subnet.rsplit(".", 1)[0] in rules  # the masquerade rule is in the kernel
    assert not marker.exists(), marker.read_text()
    assert results == {"warm": "10.96.0.2/24", "cold": "10.96.1.2/24"}
    srv.stop()
    assert srv.served() == 1


# -- 3. nothing of one request survives into the next --------------------------------------------------

def test_output_a_broken_pipe_left_buffered_never_reaches_the_next_caller(server, cni_sandbox, tmp_path) -> None:
    """A served ``cnitool add`` whose stdout is a pipe nobody reads: its result stays in the
    worker's buffers; the next request on that worker must answer with its own bytes only."""
    srv, native, python = server()
    confdir = tmp_path / "net.d"
    confdir.mkdir()
    (confdir / "10-trust.conflist").write_text(json.dumps(
        {"cniVersion": "1.0.0", "name": "trust-chain", "plugins": [bridge_conf(tmp_path, name="trust-chain")]}))
    env = base_env(NETCONFPATH=str(confdir), CNI_PATH=str(native), CNI_CACHE_DIR=str(tmp_path / "cache"))
    ctr = cni_sandbox.container()

    def add_into_a_closed_pipe() -> int:
        read, write = os.pipe()
        os.close(read)
        try:
            return subprocess.run([CNITOOL, "add", "trust-chain", ctr.path], env=env, stdout=write,
                                  stderr=subprocess.DEVNULL, timeout=60).returncode
        finally:
            os.close(write)

    cni_sandbox.host.do(add_into_a_closed_pipe)
    assert "eth0" in run_in(ctr, "ip", "-o", "link", "show")  # the command ran (warm)
    cold = execute(cni_sandbox.host, [str(python / "loopback")], base_env(CNI_COMMAND="VERSION"))
    for _ in range(2):
        assert execute(cni_sandbox.host, [str(native / "loopback")], base_env(CNI_COMMAND="VERSION")) == cold
    srv.stop()
    assert srv.served() == 3, srv.log()


def state(bin_dir: Path, host, ctr, **conf: object) -> dict:
    config = {"cniVersion": "1.0.0", "name": "state", "type": STATE_TYPE, **conf}
    code, out, err = execute(host, [str(bin_dir / STATE_TYPE)], cni_env("ADD", ctr, bin_dir),
                             json.dumps(config).encode())
    assert code == 0, (out, err)
    return json.loads(json.loads(out)["dns"]["domain"])


@pytest.mark.parametrize("leave", ["sigmask", "rlimit", "import"])
def test_signal_mask_resource_limits_and_imports_do_not_carry_over(server, cni_sandbox, leave) -> None:
    """A plugin that blocks SIGIO/SIGALRM (cancellation, deadlines), lowers RLIMIT_NOFILE or
    imports a module the server did not load: the next request starts as a fresh process
    would, in another worker."""
    srv, native, python = server()
    ctr = cni_sandbox.container()
    cold = state(python, cni_sandbox.host, ctr)
    first = state(native, cni_sandbox.host, ctr, leave=leave)
    second = state(native, cni_sandbox.host, ctr)
    assert {k: v for k, v in first.items() if k != "pid"} == {k: v for k, v in cold.items() if k != "pid"}
    assert {k: v for k, v in second.items() if k != "pid"} == {k: v for k, v in cold.items() if k != "pid"}
    assert second["pid"] != first["pid"]  # that worker could not be put back: it exited
    again = state(native, cni_sandbox.host, ctr)
    assert again["pid"] == second["pid"]  # while a worker left as it was serves again


@pytest.mark.parametrize("case", ["nameless environment entry", "NUL in the directory", "NUL in the environment"])
def test_a_malformed_request_is_refused_and_the_worker_stays(server, case) -> None:
    srv, _, python = server()
    launcher = str(python / "loopback")
    env = {"CNI_COMMAND": "VERSION"}
    cwd = "/"
    if case == "nameless environment entry":
        env[""] = "x"
    elif case == "NUL in the directory":
        cwd = "/tmp\0/x"
    else:
        env["CNITEST"] = "a\0b"
    deadline = time.monotonic() + 20
    while len(worker := srv.workers()) != 1:  # the one worker (--max-workers 1), once forked
        assert time.monotonic() < deadline, srv.log()
        time.sleep(0.02)
    bad = proto.encode_request(build_id(), 0o22, 0, cwd, launcher, ["loopback"], env)
    good = proto.encode_request(build_id(), 0o22, 0, "/", launcher, ["loopback"], {"CNI_COMMAND": "VERSION"})
    with caller_fds() as fds:  # stdio /dev/null, our namespaces
        assert raw_request(srv.socket, bad, fds) == [(proto.REFUSED, proto.REFUSE_MALFORMED)]
        assert raw_request(srv.socket, good, fds) == [(proto.STARTED, 0), (proto.EXITED, 0)]
    assert srv.workers() == worker  # it served both
    srv.stop()
    assert "Error" not in srv.log() and srv.served() == 1


# -- 4. caches keyed by what a path names, and the caller's root honoured ----------------------------------

def store_conf(data_dir: Path) -> dict:
    return {"cniVersion": "1.0.0", "name": "store-net",
            "ipam": {"type": "host-local", "subnet": "10.97.0.0/24", "dataDir": str(data_dir)}}


def host_local_add(bin_dir: Path, host, ctr, data_dir: Path, container_id: str) -> str:
    code, out, err = execute(host, [str(bin_dir / "host-local")], cni_env("ADD", ctr, bin_dir, container_id),
                             json.dumps(store_conf(data_dir)).encode())
    assert code == 0, (out, err)
    return str(json.loads(out)["ips"][0]["address"])


def test_a_store_directory_replaced_at_the_same_path_is_read_afresh(server, cni_sandbox, tmp_path) -> None:
    """host-local keeps a warm copy of a store's listing. Another directory at the same path
    (another mount, root or a rename), even with the same mtime, is another store."""
    srv, native, python = server()
    ctr = cni_sandbox.container()
    data, other = tmp_path / "data", tmp_path / "other"
    assert host_local_add(native, cni_sandbox.host, ctr, data, "first") == "10.97.0.2/24"  # warm copy: .2 taken
    for cid in ("x", "y"):  # another store, where only .3 stays taken
        host_local_add(python, cni_sandbox.host, ctr, other, cid)
    code, out, err = execute(cni_sandbox.host, [str(python / "host-local")], cni_env("DEL", ctr, python, "x"),
                             json.dumps(store_conf(other)).encode())
    assert code == 0, (out, err)
    store, replacement = data / "store-net", other / "store-net"
    mtime = os.stat(store).st_mtime_ns
    os.rename(store, data / "old-store-net")
    os.rename(replacement, store)
    (store / "last_reserved_ip.0").unlink()  # its allocator starts from the range's start
    os.utime(store, ns=(mtime, mtime))
    assert host_local_add(native, cni_sandbox.host, ctr, data, "second") == "10.97.0.2/24"  # as cold
    assert sorted(p.name for p in store.iterdir() if p.name.startswith("10.")) == ["10.97.0.2", "10.97.0.3"]
    srv.stop()
    assert srv.served() == 2


def test_a_chrooted_callers_store_is_the_one_its_cold_runs_use(server, cni_sandbox, tmp_path) -> None:
    """A runtime that runs plugins under chroot: its requests resolve paths from that root, warm
    as cold, so one address never goes to two containers."""
    srv, native, python = server()
    ctr = cni_sandbox.container()
    data, root = tmp_path / "ipam", tmp_path / "root"
    data.mkdir()
    root.mkdir()
    conf = {"cniVersion": "1.0.0", "name": "chroot-net",
            "ipam": {"type": "host-local", "subnet": "10.98.0.0/24", "dataDir": str(data)}}
    (tmp_path / "conf.json").write_text(json.dumps(conf))
    script = textwrap.dedent(f"""
        set -e
        mount --rbind / {root}
        mount -t tmpfs cnitest-chroot-store {root}{data}
        for n in 1 2 3; do
            CNI_CONTAINERID=cold$n chroot {root} {python / 'host-local'} < {tmp_path / 'conf.json'}
            CNI_CONTAINERID=warm$n chroot {root} {native / 'host-local'} < {tmp_path / 'conf.json'}
        done
    """)
    env = cni_env("ADD", ctr, native)
    code, out, err = execute(cni_sandbox.host, ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                             env)
    assert code == 0, (out, err, srv.log())
    assert _results(out) == [f"10.98.0.{n}/24" for n in range(2, 8)]
    assert not any(data.iterdir())  # the chroot's store, not the mount namespace root's
    # The worker left that root: a caller without chroot has its own store, from its root.
    code, out, err = execute(cni_sandbox.host, [str(native / "host-local")], cni_env("ADD", ctr, native, "plain"),
                             json.dumps(conf).encode())
    assert code == 0, (out, err)
    assert json.loads(out)["ips"][0]["address"] == "10.98.0.2/24"
    assert (data / "chroot-net" / "10.98.0.2").exists()
    srv.stop()
    assert srv.served() == 4 and not srv.refused()


def _results(out: bytes) -> list[str]:
    """The addresses of the JSON results printed one after another in ``out``."""
    decoder, text, found, at = json.JSONDecoder(), out.decode(), [], 0
    while text[at:].strip():
        while text[at].isspace():
            at += 1
        obj, at = decoder.raw_decode(text, at)
        found.append(obj["ips"][0]["address"])
    return found


# -- 5. a caller with its own PID namespace and /proc ----------------------------------------------------------

def test_a_caller_with_its_own_pid_namespace_and_proc_is_served(server, cni_sandbox, tmp_path) -> None:
    srv, native, python = server()
    conf = json.dumps(bridge_conf(tmp_path, subnet="10.99.0.0/24")).encode()
    prefix = ["unshare", "--pid", "--fork", "--mount", "--mount-proc"]
    answers = {}
    for label, bin_dir in (("warm", native), ("cold", python)):
        ctr = cni_sandbox.container()
        code, out, err = execute(cni_sandbox.host, [*prefix, str(bin_dir / "bridge")],
                                 cni_env("ADD", ctr, bin_dir, f"pidns-{label}"), conf)
        assert code == 0, (label, out, err, srv.log())
        answers[label] = json.loads(out)["ips"][0]["address"]
        assert "eth0" in run_in(ctr, "ip", "-o", "link", "show")
    assert answers == {"warm": "10.99.0.2/24", "cold": "10.99.0.3/24"}
    srv.stop()
    assert srv.served() == 1 and not srv.refused()


def test_a_caller_in_the_servers_own_mount_namespace_is_served_from_its_root(server, cni_sandbox,
                                                                             tmp_path) -> None:
    """No mount namespace to enter: the worker takes the caller's root and puts its own back
    by descriptor (no setns does it), alternating with callers it must enter."""
    srv, native, _ = server()
    ctr = cni_sandbox.container()
    data = tmp_path / "ipam"
    conf = json.dumps(store_conf(data)).encode()
    inside = ["nsenter", f"--mount=/proc/{srv.pid}/ns/mnt"]
    seen = []
    for n, prefix in enumerate((inside, [], inside, [])):
        code, out, err = execute(cni_sandbox.host, [*prefix, str(native / "host-local")],
                                 cni_env("ADD", ctr, native, f"c{n}"), conf)
        assert code == 0, (out, err, srv.log())
        seen.append(json.loads(out)["ips"][0]["address"])
    assert seen == [f"10.97.0.{n}/24" for n in range(2, 6)]
    srv.stop()
    assert srv.served() == 4 and not srv.refused()
