"""A throwaway etcd cluster on 127.0.0.1, for tests and benchmarks of cluster-ipam.

Debian's ``etcd`` (package ``etcd-server``) runs as ``size`` member processes
with data directories under ``base_dir`` and free ports chosen at start. With
``netns`` the members run inside that network namespace (its ``lo`` is set up
first), so the cluster is reachable only from there: that is how the test
suite lets plugins running in a sandbox "host" namespace reach it without
touching the machine's own network. With ``tls`` (:class:`TLSFiles`) clients
must speak TLS with a certificate of the test CA. Members are stopped by
PID, never by name.

Each member runs with a group ID of its own (still as root, so its files are
no concern): inside the cluster's namespace nftables can tell the member's
own packets by it, which is how :meth:`LocalCluster.partition` cuts one
member off from its peers and clients (and only there: a cluster without a
namespace of its own refuses, the machine's network is never touched).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.request

from cnicore.netlink import Netlink

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, TypeVar

    from cnicore.ns import NetNS

    _T = TypeVar("_T")

ETCD = "/usr/bin/etcd"
#: Member ``n`` runs with group ID ``GID_BASE + n`` (a number no account uses).
GID_BASE = 2_000_000_000
#: The nftables table of :meth:`LocalCluster.partition`, in the cluster's namespace.
PARTITION_TABLE = "cnicore_partition"


class TLSFiles:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate."""

    def __init__(self, directory: str) -> None:
        self.ca = os.path.join(directory, "ca.pem")
        self.ca_key = os.path.join(directory, "ca-key.pem")
        self.server_cert = os.path.join(directory, "server.pem")
        self.server_key = os.path.join(directory, "server-key.pem")
        self.client_cert = os.path.join(directory, "client.pem")
        self.client_key = os.path.join(directory, "client-key.pem")

    @classmethod
    def generate(cls, directory: str) -> TLSFiles:
        """Make them with the ``openssl`` command (EC P-256, valid two days)."""
        os.makedirs(directory, exist_ok=True)
        files = cls(directory)
        key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

        def openssl(*argv: str) -> None:
            subprocess.run(["openssl", *argv], check=True, capture_output=True)

        openssl("req", "-x509", *key, "-keyout", files.ca_key, "-out", files.ca, "-days", "2",
                "-subj", "/CN=cnicore test CA")
        for cert, private, name, usage in (
                (files.server_cert, files.server_key, "server", "serverAuth,clientAuth"),
                (files.client_cert, files.client_key, "client", "clientAuth")):
            csr = cert + ".csr"
            ext = cert + ".ext"
            with open(ext, "w") as fh:
                fh.write(f"subjectAltName=IP:127.0.0.1\nextendedKeyUsage={usage}\n")
            openssl("req", *key, "-keyout", private, "-out", csr, "-subj", f"/CN={name}")
            openssl("x509", "-req", "-in", csr, "-CA", files.ca, "-CAkey", files.ca_key, "-CAcreateserial",
                    "-out", cert, "-days", "2", "-extfile", ext)
        return files


class Member:
    """One etcd process: its name, ports, data directory and (while running) PID."""

    def __init__(self, cluster: LocalCluster, index: int, client_port: int, peer_port: int) -> None:
        self.cluster = cluster
        self.index = index
        self.name = f"n{index}"
        self.client_port = client_port
        self.peer_port = peer_port
        self.gid = GID_BASE + index
        self.data_dir = os.path.join(cluster.base_dir, f"data{index}")
        self.log_path = os.path.join(cluster.base_dir, f"{self.name}.log")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        scheme = "https" if self.cluster.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def argv(self) -> list[str]:
        return [self.cluster.etcd, "--name", self.name, "--data-dir", self.data_dir,
                "--listen-client-urls", self.endpoint, "--advertise-client-urls", self.endpoint,
                "--listen-peer-urls", self.peer_url, "--initial-advertise-peer-urls", self.peer_url,
                "--initial-cluster", self.cluster.initial_cluster(),
                "--initial-cluster-token", self.cluster.token, "--initial-cluster-state", "new",
                "--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn"] + self.tls_flags()

    def tls_flags(self) -> list[str]:
        tls = self.cluster.tls
        if tls is None:
            return []
        return ["--cert-file", tls.server_cert, "--key-file", tls.server_key,
                "--trusted-ca-file", tls.ca, "--client-cert-auth"]

    def start(self) -> None:
        """Start the process (again, after :meth:`kill`: same data directory)."""
        if self.running:
            return
        log = open(self.log_path, "ab")

        def spawn() -> subprocess.Popen[bytes]:
            return subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    start_new_session=True, group=self.gid, extra_groups=[])

        try:
            self.proc = self.cluster.run(spawn)
        finally:
            log.close()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the process by its PID and, unless it was a stop/cont signal, reap it."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, sig)
        if sig not in (signal.SIGSTOP, signal.SIGCONT):
            self.proc.wait(timeout=30)


class LocalCluster:
    """``size`` etcd members on 127.0.0.1 (inside ``netns`` when given)."""

    def __init__(self, base_dir: str, size: int = 3, netns: NetNS | None = None, etcd: str = ETCD,
                 tls: TLSFiles | None = None) -> None:
        self.base_dir = base_dir
        self.netns = netns
        self.tls = tls
        self.etcd = etcd
        self.token = f"cnicore-{os.getpid()}-{time.monotonic_ns()}"
        ports = self.run(lambda: free_ports(2 * size))
        self.members = [Member(self, i + 1, ports[2 * i], ports[2 * i + 1]) for i in range(size)]
        self.partitioned: list[Member] = []

    def run(self, fn: Callable[[], _T]) -> _T:
        """``fn()`` in the cluster's namespace."""
        return self.netns.do(fn) if self.netns is not None else fn()

    def initial_cluster(self) -> str:
        return ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    def start(self, timeout: float = 30.0) -> None:
        """Start every member and wait until the cluster accepts writes."""
        os.makedirs(self.base_dir, exist_ok=True)
        if self.netns is not None:
            self.netns.do(_lo_up)
        for member in self.members:
            member.start()
        self.wait_healthy(timeout)

    def stop(self) -> None:
        """Kill every member this object started (by PID) and reap it; heal any partition."""
        self.heal()
        for member in self.members:
            if member.proc is not None and member.proc.poll() is None:
                try:
                    os.kill(member.proc.pid, signal.SIGCONT)  # a stopped process must die too
                except ProcessLookupError:
                    pass
            member.kill(signal.SIGKILL)

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- partitions -------------------------------------------------------------------

    def partition(self, member: Member) -> None:
        """Cut ``member`` off: every packet it sends, every packet to or from its client and
        peer ports, and every packet of a connection it has sent on since (the connections
        it dialed itself: their other ends still send) is dropped — by nftables, in the
        cluster's namespace only. Until :meth:`heal`."""
        if self.netns is None:
            raise RuntimeError("partition needs the cluster in a network namespace of its own")
        if member not in self.partitioned:
            self.partitioned.append(member)
        self._nft(self._partition_rules())

    def heal(self) -> None:
        """Undo every :meth:`partition` (no-op when there is none)."""
        if self.partitioned:
            self.partitioned = []
            self._nft(f"delete table inet {PARTITION_TABLE}\n")

    def _partition_rules(self) -> str:
        rules = []
        for member in self.partitioned:
            mark = f"0x{1 << (16 + member.index):08x}"  # one conntrack mark bit per member
            ports = f"{{ {member.client_port}, {member.peer_port} }}"
            rules += [f"meta skgid {member.gid} ct mark set ct mark | {mark} drop",
                      f"tcp sport {ports} drop", f"tcp dport {ports} drop", f"ct mark & {mark} == {mark} drop"]
        body = "\n    ".join(rules)
        # On lo every packet passes the output hook once: one chain sees both directions.
        return (f"table inet {PARTITION_TABLE}\ndelete table inet {PARTITION_TABLE}\n"
                f"table inet {PARTITION_TABLE} {{\n  chain output {{\n"
                f"    type filter hook output priority 0; policy accept;\n    {body}\n  }}\n}}\n")

    def _nft(self, script: str) -> None:
        proc = self.run(lambda: subprocess.run(["nft", "-f", "-"], input=script.encode(), capture_output=True))
        if proc.returncode != 0:
            raise RuntimeError(f"nft failed: {proc.stderr.decode(errors='replace').strip()}\n{script}")

    # -- maintenance ------------------------------------------------------------------

    def compact(self, member: Member, timeout: float = 5.0) -> int | None:
        """Compact the key history up to ``member``'s current revision, physically (the
        answer waits until the backend dropped it); that revision, or None if it failed
        (no answer, or nothing new to compact)."""
        status = self.status(member, timeout)
        revision = int(status.get("header", {}).get("revision", 0)) if status else 0
        if not revision:
            return None
        done = self.run(lambda: _post(member.endpoint + "/v3/kv/compaction",
                                      {"revision": revision, "physical": True}, timeout, self.tls))
        return revision if done is not None else None

    def defragment(self, member: Member, timeout: float = 5.0) -> bool:
        """Defragment ``member``'s backend (it serves nothing meanwhile); whether it answered done."""
        return self.run(lambda: _post(member.endpoint + "/v3/maintenance/defragment", {}, timeout,
                                      self.tls)) is not None

    # -- observing ------------------------------------------------------------------

    def status(self, member: Member, timeout: float = 1.0) -> dict[str, Any] | None:
        """``/v3/maintenance/status`` of one member, or None if it does not answer."""
        return self.run(lambda: _post(member.endpoint + "/v3/maintenance/status", {}, timeout, self.tls))

    def leader(self, timeout: float = 15.0) -> Member:
        """The member that is the leader now (waits for an election)."""
        deadline = time.monotonic() + timeout
        while True:
            for member in self.members:
                if not member.running:
                    continue
                st = self.status(member)
                if st and st.get("leader") and st.get("leader") == st.get("header", {}).get("member_id"):
                    return member
            if time.monotonic() > deadline:
                raise TimeoutError("no etcd leader")
            time.sleep(0.05)

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Wait until a write succeeds through every running member."""
        deadline = time.monotonic() + timeout
        pending = [m for m in self.members if m.running]
        while pending:
            member = pending[0]
            ok = self.run(lambda: _post(member.endpoint + "/v3/kv/put",
                                        {"key": "X2hlYWx0aA==", "value": ""}, 2.0, self.tls))  # "_health"
            if ok is not None:
                pending.pop(0)
                continue
            if time.monotonic() > deadline:
                logs = "\n".join(_tail(m.log_path) for m in self.members)
                raise TimeoutError(f"etcd member {member.name} not healthy; logs:\n{logs}")
            time.sleep(0.1)

    def restart_dead(self, timeout: float = 30.0) -> None:
        """Bring every member back (continue stopped ones, start killed ones) and wait."""
        for member in self.members:
            if member.running:
                os.kill(member.proc.pid, signal.SIGCONT)  # type: ignore[union-attr]
            else:
                member.start()
        self.wait_healthy(timeout)


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free on 127.0.0.1 right now (bound, then released)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def _lo_up() -> None:
    with Netlink() as rtnl:
        rtnl.set_up(rtnl.link("lo"), True)


def _post(url: str, body: dict[str, Any], timeout: float, tls: TLSFiles | None = None) -> dict[str, Any] | None:
    """One JSON POST with the standard library; None on any failure."""
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    handlers: list[Any] = [urllib.request.ProxyHandler({})]  # never via a proxy
    if tls is not None:
        context = ssl.create_default_context(cafile=tls.ca)
        context.load_cert_chain(tls.client_cert, tls.client_key)
        handlers.append(urllib.request.HTTPSHandler(context=context))
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(req, timeout=timeout) as resp:
            data: dict[str, Any] = json.loads(resp.read())
            return data
    except Exception:  # noqa: BLE001 - "does not answer" is the answer
        return None


def _tail(path: str, size: int = 2000) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - size))
            return f"--- {path}\n" + fh.read().decode("utf-8", "replace")
    except OSError:
        return f"--- {path}: unreadable"
