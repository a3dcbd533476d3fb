"""Real CNI clients (podman, containerd) run in throwaway environments, for the client tests and the bench.

Each client runs with every piece of state under one temporary directory
(storage, run state, CNI config, its own containers.conf or config.toml) and
inside a private "host" network namespace (a :class:`cnicore.testing.Sandbox`):
its bridge, veths, iptables rules and sysctls live there, never on the machine.
Only ``nsenter --net`` is used to enter it (``ip netns exec`` would remount
/sys, hiding the cgroup mounts the OCI runtime needs). The plugins a client may
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
    server = WarmServer(os.path.join(work, "server"), workers=2, prefix=prefix)
    try:
        yield install_launchers(os.path.join(work, "bin"), kind, server.socket)
    finally:
        server.stop()
    assert not server.refused(), f"the warm server refused requests (they ran cold): {server.refused()}"
    assert server.served() > 0, f"the client's execs never reached the warm server: {server.log()}"


# -- podman -------------------------------------------------------------------------------------

class Podman:
    """podman (Debian's 4.3, CNI backend) confined to ``work`` and the sandbox's host namespace."""

    def __init__(self, work: str, sandbox: Sandbox, cni_bin: str) -> None:
        self.work = work
        self.sandbox = sandbox
        self.net_dir = os.path.join(work, "net.d")
        for sub in ("root", "runroot", "tmp", "net.d"):
            os.makedirs(os.path.join(work, sub), exist_ok=True)
        self.conf = os.path.join(work, "containers.conf")
        with open(self.conf, "w") as fh:
            fh.write(self._containers_conf(cni_bin))
        self.storage_conf = os.path.join(work, "storage.conf")
        with open(self.storage_conf, "w") as fh:
            fh.write("[storage]\ndriver = \"vfs\"\n"
                     f"graphroot = {json.dumps(os.path.join(work, 'root'))}\n"
                     f"runroot = {json.dumps(os.path.join(work, 'runroot'))}\n")
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
        return ["nsenter", f"--net={self.sandbox.host.path}", "podman",
                "--root", os.path.join(self.work, "root"), "--runroot", os.path.join(self.work, "runroot"),
                "--tmpdir", os.path.join(self.work, "tmp"), "--storage-driver", "vfs", *args]

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

    def run_published(self, name: str, host_port: int, network: str = "") -> str:
        """``podman run -d -p HOST:80`` (on ``network`` or the default); the container ID."""
        args = ["run", "-d", "--name", name, "-p", f"{host_port}:80",
                # runc may only lower this machine's limits, not set podman's defaults
                "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
        if network:
            args += ["--network", network]
        cid = self.run(*args, IMAGE).strip()
        with contextlib.suppress(AssertionError, ValueError):
            self.conmon_pids.add(int(self.run("inspect", "--format", "{{.State.ConmonPid}}", cid).strip()))
        return cid

    def inspect(self, name: str) -> Any:
        return json.loads(self.run("inspect", name))[0]

    def close(self) -> None:
        """Remove every container, end conmon by PID, unmount, as podman left them."""
        with contextlib.suppress(Exception):
            self.run("rm", "-a", "-f", "-t", "0", timeout=60, check=False)
        for pid in self.conmon_pids:
            kill_pid(pid)
        unmount_under(self.work)


@contextlib.contextmanager
def podman_env(kind: str, prefix: str | None = None) -> Iterator[Podman]:
    """A :class:`Podman` with ``kind``'s plugins and the busybox image; everything removed on exit."""
    work = tempfile.mkdtemp(prefix=f"cnitest-podman-{kind}-")
    try:
        with Sandbox(prefix) as sandbox, plugin_dir(kind, work, prefix) as cni_bin:
            run_in(sandbox.host, "ip", "link", "set", "lo", "up")
            podman = Podman(os.path.join(work, "podman"), sandbox, cni_bin)
            try:
                podman.import_image(image_tarball(work))
                yield podman
            finally:
                podman.close()
    finally:
        unmount_under(work)
        shutil.rmtree(work, ignore_errors=True)
