"""Real CNI clients (podman, containerd) run in throwaway environments, for the client tests and the bench.

Each client runs with its state under one temporary directory (storage, CNI
config, its own containers.conf or config.toml) and inside a :class:`PrivateHost`:
a private "host" network namespace (a :class:`cnicore.testing.Sandbox`'s),
where its bridge, veths, iptables rules and sysctls live, plus a private mount
namespace with fresh tmpfs on /run and /var/lib for what clients keep at fixed
paths (libcni's cache, host-local's default store, /run/netns, shim sockets).
Nothing of it reaches the machine. Commands enter it with ``nsenter`` (``ip
netns exec`` would remount /sys, hiding the cgroup mounts the OCI runtime
needs). The plugins a client may
exec are the ones in one bin directory: cnicore's launchers (Python launchers
for the cold path, native ones served by a :class:`cnicore.testing.WarmServer`)
or, as the reference, Go's plugins in /usr/lib/cni.

Nothing here pulls an image: a tiny image is built from Debian's static
busybox (``busybox httpd`` answers on a port) and imported.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any, Iterator

from cnicore.testing import Sandbox, WarmServer, in_netns, run_in

GO_PLUGINS = "/usr/lib/cni"
BUSYBOX = "/bin/busybox"
IMAGE = "localhost/cnitest-busybox:latest"
#: What the image's web server answers on ``/``.
GREETING = b"hello from a cnicore test container\n"
#: The launcher kinds a client test runs with: ours cold, ours warm, Go's.
KINDS = ("python", "native", "go")


def busybox_rootfs(directory: str) -> str:
    """A minimal root filesystem: static busybox, a web root; returns ``directory``."""
    for sub in ("bin", "www", "proc", "sys", "dev", "etc", "tmp"):
        os.makedirs(os.path.join(directory, sub), exist_ok=True)
    shutil.copy2(BUSYBOX, os.path.join(directory, "bin", "busybox"))
    with open(os.path.join(directory, "www", "index.html"), "wb") as fh:
        fh.write(GREETING)
    return directory


def image_tarball(work: str) -> str:
    """The busybox rootfs as a tar file (``podman import`` and ``ctr images import`` input)."""
    rootfs = busybox_rootfs(os.path.join(work, "rootfs"))
    tarball = os.path.join(work, "rootfs.tar")
    subprocess.run(["tar", "-C", rootfs, "-cf", tarball, "."], check=True, timeout=60)
    return tarball


def install_launchers(directory: str, kind: str, socket_path: str = "") -> str:
    """``cnitool plugins install`` of this environment into ``directory`` (``go``: Go's directory)."""
    if kind == "go":
        return GO_PLUGINS
    os.makedirs(directory, exist_ok=True)
    argv = [sys.executable, "-m", "cnicore.cli", "plugins", "install", f"--{kind}", directory]
    if kind == "native":
        argv += ["--socket", socket_path]
    subprocess.run(argv, check=True, capture_output=True, timeout=120)
    return directory


def http_get(netns: Any, address: str, port: int, *, timeout: float = 20.0) -> bytes:
    """GET / from ``address:port`` inside ``netns`` (a socket made there), retrying until the
    server answers or ``timeout`` passes; the response body."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None

    def once() -> bytes:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as conn:
            conn.settimeout(3.0)
            conn.connect((address, port))
            conn.sendall(f"GET / HTTP/1.0\r\nHost: {address}\r\n\r\n".encode())
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
        return data.partition(b"\r\n\r\n")[2]

    while time.monotonic() < deadline:
        try:
            body = in_netns(netns, once)
            if body:
                return bytes(body)
        except OSError as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"no answer from {address}:{port} within {timeout} s: {last}")


def unmount_under(directory: str) -> None:
    """Lazily unmount whatever a client left mounted below ``directory`` (deepest first)."""
    with open("/proc/self/mountinfo") as fh:
        points = [line.split()[4] for line in fh]
    prefix = os.path.realpath(directory) + "/"
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, timeout=30)


def kill_pid(pid: int) -> None:
    """SIGKILL one process we started (or our client started for us), if it is still there."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def pids_naming(text: str) -> list[int]:
    """Processes whose command line contains ``text`` (a temporary directory of ours: shims and
    conmons a client started for our environment and only for it)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                if text.encode() in fh.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


def iptables_save(netns: Any) -> str:
    """Both families' rules inside ``netns``."""
    return run_in(netns, "iptables-save") + run_in(netns, "ip6tables-save")


def links(netns: Any) -> list[str]:
    """Link names inside ``netns``."""
    out = run_in(netns, "ip", "-o", "link", "show")
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]


@contextlib.contextmanager
def plugin_dir(kind: str, work: str, prefix: str | None = None) -> Iterator[str]:
    """The CNI bin directory for ``kind``; for ``native`` a warm server runs while it is in use."""
    if kind != "native":
        yield install_launchers(os.path.join(work, "bin"), kind)
        return
    server = WarmServer(os.path.join(work, "server"), workers=2, prefix=f"{prefix}-srv" if prefix else None)
    try:
        yield install_launchers(os.path.join(work, "bin"), kind, server.socket)
    finally:
        server.stop()
    assert not server.refused(), f"the warm server refused requests (they ran cold): {server.refused()}"
    assert server.served() > 0, f"the client's execs never reached the warm server: {server.log()}"


class PrivateHost:
    """The client's "machine": a holder process inside the sandbox's host network namespace and a
    private mount namespace with fresh tmpfs on /run and /var/lib. Every client command enters
    both (``argv``), so what clients keep at fixed paths — libcni's result cache and host-local's
    store in /var/lib/cni, /run/netns, containerd's shim sockets in /run/containerd, xtables'
    lock — lives and dies with it; the machine's own directories are never written.

    ``close()`` ends the holder by PID; the namespace goes when the last process in it has.
    """

    SETUP = ("mount -t tmpfs -o mode=0755,size=64m cnitest-run /run && mkdir -p /run/netns /run/lock && "
             "mount -t tmpfs -o mode=0755,size=64m cnitest-varlib /var/lib && echo ready && exec sleep 3600")

    def __init__(self, sandbox: Sandbox, timeout: float = 30.0) -> None:
        self.sandbox = sandbox
        self.proc = subprocess.Popen(
            ["nsenter", f"--net={sandbox.host.path}", "unshare", "--mount", "--propagation", "private",
             "sh", "-c", self.SETUP], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready or self.proc.stdout.readline().strip() != b"ready":
            self.close()
            raise AssertionError("the private host's mount namespace could not be set up")

    @property
    def netns(self) -> Any:
        return self.sandbox.host

    def argv(self, *argv: str) -> list[str]:
        """``argv`` run inside the private host's network and mount namespaces."""
        return ["nsenter", "-t", str(self.proc.pid), "-m", "-n", *argv]

    def run(self, *argv: str, timeout: float = 60.0) -> str:
        """Run a command inside the private host; its stdout (a non-zero exit fails the test)."""
        proc = subprocess.run(self.argv(*argv), capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              timeout=timeout)
        assert proc.returncode == 0, (argv, proc.stdout, proc.stderr)
        return proc.stdout

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


# -- podman -------------------------------------------------------------------------------------

class Podman:
    """podman (Debian's 4.3, CNI backend) confined to ``work`` and the sandbox's host namespace."""

    def __init__(self, work: str, host: PrivateHost, cni_bin: str) -> None:
        self.work = work
        self.host = host
        self.net_dir = os.path.join(work, "net.d")
        # Run state on the private host's /run tmpfs: podman wants a runroot under 50 characters.
        self.runroot = "/run/cnitest-podman"
        for sub in ("root", "tmp", "net.d"):
            os.makedirs(os.path.join(work, sub), exist_ok=True)
        self.conf = os.path.join(work, "containers.conf")
        with open(self.conf, "w") as fh:
            fh.write(self._containers_conf(cni_bin))
        self.storage_conf = os.path.join(work, "storage.conf")
        with open(self.storage_conf, "w") as fh:
            fh.write("[storage]\ndriver = \"vfs\"\n"
                     f"graphroot = {json.dumps(os.path.join(work, 'root'))}\n"
                     f"runroot = {json.dumps(self.runroot)}\n")
        self.conmon_pids: set[int] = set()

    def _containers_conf(self, cni_bin: str) -> str:
        root = os.path.join(self.work, "root")
        return "\n".join([
            "[network]",
            'network_backend = "cni"',
            f"cni_plugin_dirs = [{json.dumps(cni_bin)}]",
            f"network_config_dir = {json.dumps(self.net_dir)}",
            "[engine]",
            'cgroup_manager = "cgroupfs"',
            # crun refuses this machine's hybrid cgroup layout; runc works.
            'runtime = "runc"',
            'events_logger = "file"',
            f"events_logfile_path = {json.dumps(os.path.join(self.work, 'events.log'))}",
            f"tmp_dir = {json.dumps(os.path.join(self.work, 'tmp'))}",
            f"static_dir = {json.dumps(os.path.join(root, 'libpod'))}",
            f"volume_path = {json.dumps(os.path.join(root, 'volumes'))}",
            "",
        ])

    def argv(self, *args: str) -> list[str]:
        return self.host.argv("podman", "--root", os.path.join(self.work, "root"),
                              "--runroot", self.runroot,
                              "--tmpdir", os.path.join(self.work, "tmp"), "--storage-driver", "vfs", *args)

    def env(self) -> dict[str, str]:
        env = dict(os.environ, CONTAINERS_CONF=self.conf, CONTAINERS_REGISTRIES_CONF=os.devnull,
                   CONTAINERS_STORAGE_CONF=self.storage_conf, TMPDIR=os.path.join(self.work, "tmp"))
        env.pop("CONTAINERS_POLICY_JSON", None)
        return env

    def run(self, *args: str, timeout: float = 60.0, check: bool = True) -> str:
        proc = subprocess.run(self.argv(*args), env=self.env(), capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} exited {proc.returncode}: {proc.stderr}{proc.stdout}")
        return proc.stdout

    def import_image(self, tarball: str) -> None:
        self.run("import", "--change", 'CMD ["/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/www"]',
                 tarball, IMAGE)

    @staticmethod
    def publish_args(name: str, host_port: int, network: str = "") -> list[str]:
        """``podman run -d -p HOST:80`` of the image (on ``network`` or podman's default network)."""
        args = ["run", "-d", "--name", name, "-p", f"{host_port}:80",
                # runc may only lower this machine's limits, not set podman's defaults
                "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
        if network:
            args += ["--network", network]
        return [*args, IMAGE]

    def track(self, container: str) -> None:
        """Remember a container's conmon, so that :meth:`close` can end it by PID."""
        with contextlib.suppress(AssertionError, ValueError):
            self.conmon_pids.add(int(self.run("inspect", "--format", "{{.State.ConmonPid}}", container).strip()))

    def run_published(self, name: str, host_port: int, network: str = "") -> str:
        """:meth:`publish_args` run; the container ID."""
        cid = self.run(*self.publish_args(name, host_port, network)).strip()
        self.track(cid)
        return cid

    def inspect(self, name: str) -> Any:
        return json.loads(self.run("inspect", name))[0]

    def close(self) -> None:
        """Remove every container, end conmon by PID, unmount, as podman left them."""
        with contextlib.suppress(Exception):
            self.run("rm", "-a", "-f", "-t", "0", timeout=60, check=False)
        for pid in self.conmon_pids | set(pids_naming(self.work)):
            kill_pid(pid)
        unmount_under(self.work)


@contextlib.contextmanager
def podman_at(cni_bin: str, work: str, prefix: str | None = None) -> Iterator[Podman]:
    """A :class:`Podman` in its own sandbox and private host, its plugins in ``cni_bin``, state
    under ``work`` (the caller removes it), the busybox image imported; containers, conmon and
    namespaces gone on exit."""
    with Sandbox(prefix) as sandbox:
        run_in(sandbox.host, "ip", "link", "set", "lo", "up")
        host = PrivateHost(sandbox)
        try:
            podman = Podman(os.path.join(work, "podman"), host, cni_bin)
            try:
                podman.import_image(image_tarball(work))
                yield podman
            finally:
                podman.close()
        finally:
            host.close()


@contextlib.contextmanager
def podman_env(kind: str, prefix: str | None = None) -> Iterator[Podman]:
    """:func:`podman_at` with ``kind``'s plugins (a warm server for ``native``) in a temporary
    directory removed on exit."""
    work = tempfile.mkdtemp(prefix=f"cnitest-podman-{kind}-")
    try:
        with plugin_dir(kind, work, prefix) as cni_bin, podman_at(cni_bin, work, prefix) as podman:
            yield podman
    finally:
        unmount_under(work)
        shutil.rmtree(work, ignore_errors=True)


# -- containerd (CRI) ---------------------------------------------------------------------------

PAUSE_IMAGE = "localhost/cnitest-pause:latest"
#: The "pause" image serves the greeting on port 80, so a published port can be reached.
SANDBOX_CMD = ["/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/www"]
CRI_PROTO = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "cri_subset.proto")


def docker_archive(work: str, name: str, cmd: list[str]) -> str:
    """A ``docker save`` style archive of the busybox rootfs named ``name`` (what ``ctr images
    import`` reads); its path. Built here: nothing is pulled."""
    import hashlib
    import io
    import tarfile

    layer = image_tarball(work)
    with open(layer, "rb") as fh:
        diff_id = "sha256:" + hashlib.sha256(fh.read()).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Cmd": cmd, "Env": ["PATH=/bin"]},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [name], "Layers": ["layer.tar"]}]).encode()
    archive = os.path.join(work, "image-archive.tar")
    with tarfile.open(archive, "w") as tar:
        tar.add(layer, arcname="layer.tar")
        for member, data in ((config_name, config), ("manifest.json", manifest)):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return archive


def cri_stubs(work: str) -> Any:
    """The CRI client modules generated from tests/cri_subset.proto with grpcio-tools: a namespace
    with ``pb`` (messages) and ``grpc`` (the ``RuntimeServiceStub``)."""
    import importlib
    import types

    from grpc_tools import protoc

    out = os.path.join(work, "cri_stubs")
    os.makedirs(out, exist_ok=True)
    proto_dir, proto = os.path.split(CRI_PROTO)
    status = protoc.main(["protoc", f"-I{proto_dir}", f"--python_out={out}", f"--grpc_python_out={out}", proto])
    assert status == 0, f"protoc failed on {CRI_PROTO}"
    sys.path.insert(0, out)
    try:
        for module in ("cri_subset_pb2", "cri_subset_pb2_grpc"):
            sys.modules.pop(module, None)
        return types.SimpleNamespace(pb=importlib.import_module("cri_subset_pb2"),
                                     grpc=importlib.import_module("cri_subset_pb2_grpc"))
    finally:
        sys.path.remove(out)


class Containerd:
    """containerd (Debian's 1.6) with its CRI plugin, all state under ``work``, running inside the
    sandbox's host namespace; the CNI config and plugins are ``net_dir`` and ``cni_bin`` only."""

    def __init__(self, work: str, host: PrivateHost, cni_bin: str) -> None:
        self.work = work
        self.host = host
        self.net_dir = os.path.join(work, "net.d")
        self.socket = os.path.join(work, "containerd.sock")
        os.makedirs(self.net_dir, exist_ok=True)
        self.config = os.path.join(work, "config.toml")
        with open(self.config, "w") as fh:
            fh.write(self._config(cni_bin))
        self.log_path = os.path.join(work, "containerd.log")
        self.proc: subprocess.Popen[bytes] | None = None

    def _config(self, cni_bin: str) -> str:
        def q(path: str) -> str:
            return json.dumps(os.path.join(self.work, path))
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        return "\n".join([
            "version = 2",
            f"root = {q('root')}",
            f"state = {q('state')}",
            "disabled_plugins = [\"io.containerd.snapshotter.v1.btrfs\", \"io.containerd.snapshotter.v1.zfs\",",
            "  \"io.containerd.snapshotter.v1.aufs\", \"io.containerd.snapshotter.v1.devmapper\",",
            "  \"io.containerd.tracing.processor.v1.otlp\"]",
            "[grpc]", f"  address = {json.dumps(self.socket)}",
            "[ttrpc]", f"  address = {json.dumps(self.socket + '.ttrpc')}",
            "[debug]", "  address = \"\"", "  level = \"info\"",
            "[metrics]", "  address = \"\"",
            '[plugins."io.containerd.internal.v1.opt"]', f"  path = {q('opt')}",
            f"[{cri}]",
            f"  sandbox_image = {json.dumps(PAUSE_IMAGE)}",
            "  stream_server_address = \"127.0.0.1\"", "  stream_server_port = \"0\"",
            "  enable_selinux = false",
            # no CAP_SYS_RESOURCE here: keep the sandbox's oom_score_adj at containerd's own
            "  restrict_oom_score_adj = true",
            # the pod's network namespace under our state dir, not /var/run/netns
            "  netns_mounts_under_state_dir = true",
            f"[{cri}.containerd]",
            "  snapshotter = \"native\"",
            "  default_runtime_name = \"runc\"",
            f"[{cri}.containerd.runtimes.runc]",
            "  runtime_type = \"io.containerd.runc.v2\"",
            f"[{cri}.containerd.runtimes.runc.options]",
            "  SystemdCgroup = false",
            f"  Root = {q('runc')}",
            f"[{cri}.cni]",
            f"  bin_dir = {json.dumps(cni_bin)}",
            f"  conf_dir = {json.dumps(self.net_dir)}",
            "  max_conf_num = 1",
            "",
        ])

    def start(self, timeout: float = 30.0) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.host.argv("containerd", "--config", self.config),
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"containerd exited {self.proc.returncode}: {self.log()}")
            if os.path.exists(self.socket):
                return
            time.sleep(0.1)
        raise AssertionError(f"containerd not ready after {timeout} s: {self.log()}")

    def log(self) -> str:
        with open(self.log_path, errors="replace") as fh:
            return fh.read()[-6000:]

    def ctr(self, *args: str, timeout: float = 60.0) -> str:
        proc = subprocess.run(["ctr", "--address", self.socket, "--namespace", "k8s.io", *args],
                              capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout)
        if proc.returncode != 0:
            raise AssertionError(f"ctr {' '.join(args)} exited {proc.returncode}: {proc.stderr}{proc.stdout}")
        return proc.stdout

    def task_pid(self, container_id: str) -> int:
        """The PID of a container's (a pod sandbox's) first process, from ``ctr tasks ls``."""
        for line in self.ctr("tasks", "ls").splitlines()[1:]:
            fields = line.split()
            if fields and fields[0] == container_id:
                return int(fields[1])
        raise AssertionError(f"no task {container_id}")

    def close(self) -> None:
        """Stop containerd by PID, then the shims it left (found by our socket path), unmount."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in pids_naming(self.work):
            kill_pid(pid)
        unmount_under(self.work)


@contextlib.contextmanager
def containerd_env(kind: str, conflist: dict[str, Any], prefix: str | None = None) -> Iterator[Containerd]:
    """A running :class:`Containerd` with ``kind``'s plugins, ``conflist`` as its only network
    (written before it starts) and the pause image imported."""
    work = tempfile.mkdtemp(prefix=f"cnitest-containerd-{kind}-")
    try:
        with Sandbox(prefix) as sandbox, plugin_dir(kind, work, prefix) as cni_bin:
            run_in(sandbox.host, "ip", "link", "set", "lo", "up")
            host = PrivateHost(sandbox)
            try:
                containerd = Containerd(os.path.join(work, "containerd"), host, cni_bin)
                with open(os.path.join(containerd.net_dir, "10-cnitest.conflist"), "w") as fh:
                    json.dump(conflist, fh)
                try:
                    containerd.start()
                    archive = docker_archive(work, PAUSE_IMAGE, SANDBOX_CMD)
                    containerd.ctr("images", "import", "--snapshotter", "native", archive)
                    yield containerd
                finally:
                    containerd.close()
            finally:
                host.close()
    finally:
        unmount_under(work)
        shutil.rmtree(work, ignore_errors=True)
