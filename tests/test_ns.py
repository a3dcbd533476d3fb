"""Tests for cnicore.ns against real network namespaces (root only, no mocks).

Safety: nothing here changes the host's network. Every namespace is created
under a per-run unique prefix and deleted in fixtures/finally blocks, and a
module teardown deletes any leftover with our prefix (via ``ip netns delete``,
independent of the code under test). Inside namespaces the only change made is
bringing ``lo`` up, which is a no-op even if it somehow ran on the host.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator

import pytest

from cnicore.ns import (
    NETNS_RUN_DIR,
    NetNS,
    NetNSError,
    NetNSNotFoundError,
    NotANetNSError,
    current_netns,
    get_netns,
    is_same_as_current,
    list_netns,
    new_netns,
    with_netns_path,
)

pytestmark = pytest.mark.privileged

if os.geteuid() != 0:  # pragma: no cover - CI runs as root
    pytest.skip("network namespace tests need root", allow_module_level=True)

PREFIX = f"cnitest-ns-{uuid.uuid4().hex[:8]}-"
HOST_NS_LINK = os.readlink("/proc/thread-self/ns/net")


def unique_name() -> str:
    return PREFIX + uuid.uuid4().hex[:12]


def thread_ns_link() -> str:
    return os.readlink("/proc/thread-self/ns/net")


def thread_ns_inode() -> tuple[int, int]:
    st = os.stat("/proc/thread-self/ns/net")
    return st.st_dev, st.st_ino


def ip(*args: str) -> str:
    return subprocess.run(
        ["ip", *args], check=True, capture_output=True, text=True, timeout=30
    ).stdout


def ip_netns_names() -> list[str]:
    # "name (id: 0)" or just "name"
    return [line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()]


def our_leftovers() -> list[str]:
    try:
        return [n for n in os.listdir(NETNS_RUN_DIR) if n.startswith(PREFIX)]
    except FileNotFoundError:
        return []


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def proc_net_dev_ifaces() -> list[str]:
    with open("/proc/thread-self/net/dev") as f:
        return sorted(line.split(":")[0].strip() for line in f.readlines()[2:])


@pytest.fixture(scope="module", autouse=True)
def _final_sweep() -> Iterator[None]:
    """Last line of defence: delete anything with our prefix, whatever happened."""
    try:
        yield
    finally:
        for name in our_leftovers():
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=30)


@pytest.fixture(autouse=True)
def _host_ns_unchanged() -> Iterator[None]:
    """Every test leaves the main thread in the host netns and leaks no namespace."""
    yield
    assert thread_ns_link() == HOST_NS_LINK
    leftovers = our_leftovers()
    for name in leftovers:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=30)
    assert leftovers == []


@pytest.fixture
def make_ns() -> Iterator[Callable[..., NetNS]]:
    """Factory for namespaces that are always removed at teardown."""
    created: list[NetNS] = []

    def make(name: str | None = None) -> NetNS:
        ns = new_netns(unique_name() if name is None else name)
        created.append(ns)
        return ns

    try:
        yield make
    finally:
        for ns in created:
            try:
                ns.remove()
            except Exception:
                subprocess.run(
                    ["ip", "netns", "delete", os.path.basename(ns.path)],
                    capture_output=True,
                    timeout=30,
                )


@pytest.fixture
def netns(make_ns: Callable[..., NetNS]) -> NetNS:
    return make_ns()


# ---------------------------------------------------------------- persistence


def test_new_netns_is_persisted_like_ip_netns_add() -> None:
    name = unique_name()
    ns = new_netns(name)
    try:
        assert ns.path == os.path.join(NETNS_RUN_DIR, name)
        assert os.path.isfile(ns.path)
        assert name in ip_netns_names()
        assert name in list_netns()
        assert ns.inode() != thread_ns_inode()

        # Another process enters it by name and sees a pristine namespace.
        links = ip("netns", "exec", name, "ip", "-o", "link").splitlines()
        assert [line.split(":")[1].strip() for line in links] == ["lo"]
        # ... and it is the very namespace we hold.
        st = os.stat(ns.path)
        out = ip("netns", "exec", name, "readlink", "/proc/self/ns/net").strip()
        assert out == f"net:[{st.st_ino}]"

        with get_netns(ns.path) as again:
            assert again == ns
            assert again.inode() == ns.inode()
            assert again.fd() != ns.fd()
    finally:
        ns.remove()

    assert not os.path.exists(ns.path)
    assert name not in ip_netns_names()
    assert name not in list_netns()
    assert name not in open("/proc/mounts").read()
    with pytest.raises(NetNSError):
        ns.fd()  # remove() closed it
    ns.remove()  # idempotent


def test_new_netns_random_name() -> None:
    ns = new_netns()
    try:
        name = os.path.basename(ns.path)
        assert name.startswith("cni-")
        uuid.UUID(name[len("cni-") :])
        assert name in ip_netns_names()
    finally:
        ns.remove()
    assert not os.path.exists(ns.path)


def test_namespace_outlives_its_path(netns: NetNS) -> None:
    """The open fd keeps the namespace usable even after `ip netns delete`."""
    inode = netns.inode()
    ip("netns", "delete", os.path.basename(netns.path))
    assert not os.path.exists(netns.path)
    assert netns.do(thread_ns_inode) == inode
    netns.remove()  # file already gone: still fine


# ----------------------------------------------------------------- isolation


def test_do_runs_inside_the_namespace(netns: NetNS) -> None:
    caller_link = thread_ns_link()
    caller_tid = threading.get_native_id()
    target_ino = netns.inode()[1]

    def inside() -> tuple[str, tuple[int, int], int, list[str], list[tuple[int, str]], bool]:
        return (
            thread_ns_link(),
            thread_ns_inode(),
            threading.get_native_id(),
            proc_net_dev_ifaces(),
            socket.if_nameindex(),
            is_same_as_current(netns.path),
        )

    link, inode, tid, ifaces, ifindex, same = netns.do(inside)
    assert link != caller_link
    assert link == f"net:[{target_ino}]"
    assert inode == netns.inode()
    assert tid == caller_tid  # the caller's own thread, switched in and back
    assert same is True
    assert ifaces == ["lo"]
    assert ifindex == [(1, "lo")]

    # The caller still sees the host's interfaces, and never moved.
    assert thread_ns_link() == caller_link
    host_ifaces = proc_net_dev_ifaces()
    assert {n for _, n in socket.if_nameindex()} == set(host_ifaces)
    if len(host_ifaces) > 1:  # e.g. eth0 on the host, only lo in the namespace
        assert host_ifaces != ifaces
    assert not is_same_as_current(netns.path)


def test_do_work_is_real_and_confined(netns: NetNS) -> None:
    """Network state changed inside do() is visible in the ns, not to the caller."""
    name = os.path.basename(netns.path)
    expected = netns.inode()

    def loopback_roundtrip() -> int:
        """0 if a TCP connect to a 127.0.0.1 listener works, else the errno."""
        with socket.create_server(("127.0.0.1", 0)) as server:
            try:
                socket.create_connection(server.getsockname(), 5).close()
                return 0
            except OSError as exc:
                return exc.errno or -1

    # lo is down in a fresh namespace: loopback traffic is unroutable there,
    # while it works for the caller.
    assert netns.do(loopback_roundtrip) == errno.ENETUNREACH
    assert loopback_roundtrip() == 0
    assert "UP" not in ip("netns", "exec", name, "ip", "-o", "link", "show", "lo").split(">")[0]

    def lo_up() -> None:
        # Guard: only touch anything once we have proven where we are.
        assert thread_ns_inode() == expected
        assert thread_ns_link() != HOST_NS_LINK
        # The child process inherits this thread's namespace.
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=30)

    netns.do(lo_up)
    assert netns.do(loopback_roundtrip) == 0
    flags = ip("netns", "exec", name, "ip", "-o", "link", "show", "lo").split("<")[1].split(">")[0]
    assert "UP" in flags.split(",")

    # A listener inside the namespace is unreachable from the caller's 127.0.0.1.
    listener = netns.do(socket.create_server, ("127.0.0.1", 0))
    try:
        port = listener.getsockname()[1]
        conn = netns.do(socket.create_connection, ("127.0.0.1", port), 5)
        conn.close()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), 1).close()
    finally:
        listener.close()


class _Boom(RuntimeError):
    pass


def test_do_propagates_exceptions_and_values(netns: NetNS) -> None:
    caller_link = thread_ns_link()

    def boom(msg: str, *, extra: int) -> None:
        raise _Boom(f"{msg} {extra} {thread_ns_link()}")

    with pytest.raises(_Boom) as info:
        netns.do(boom, "bang", extra=7)
    assert str(info.value) == f"bang 7 net:[{netns.inode()[1]}]"
    assert thread_ns_link() == caller_link

    with pytest.raises(KeyError):
        netns.do(dict().__getitem__, "missing")
    with pytest.raises(SystemExit):
        netns.do(lambda: (_ for _ in ()).throw(SystemExit(3)))
    assert thread_ns_link() == caller_link

    assert netns.do(lambda: None) is None
    sentinel = object()
    assert netns.do(lambda x: x, sentinel) is sentinel
    assert netns.do(lambda a, b=0: (a, b), 1, b=2) == (1, 2)
    assert with_netns_path(netns.path, thread_ns_link) == f"net:[{netns.inode()[1]}]"
    assert thread_ns_link() == caller_link


def test_do_switches_the_calling_thread_and_back(netns: NetNS) -> None:
    """No thread per call (it cost ~0.4 ms), no fd left open, and the thread is
    back home after a return and after an exception alike."""
    before, fds = threading.active_count(), fd_count()
    caller_link = thread_ns_link()
    seen = {netns.do(lambda: (threading.get_native_id(), thread_ns_link())) for _ in range(5)}
    assert seen == {(threading.get_native_id(), f"net:[{netns.inode()[1]}]")}
    with pytest.raises(KeyboardInterrupt):
        netns.do(lambda: (_ for _ in ()).throw(KeyboardInterrupt()))
    assert thread_ns_link() == caller_link
    assert threading.active_count() == before and fd_count() == fds


def test_nested_do_and_current_netns_inside(make_ns: Callable[..., NetNS]) -> None:
    a, b = make_ns(), make_ns()

    def in_a() -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
        with current_netns() as cur:
            here = cur.inode()
        inner = b.do(thread_ns_inode)
        return here, inner, thread_ns_inode()

    here, inner, after = a.do(in_a)
    assert here == a.inode()
    assert inner == b.inode()
    assert after == a.inode()  # the do() into b did not move the thread in a


# --------------------------------------------------------------- concurrency


def test_concurrent_create_do_remove() -> None:
    fds_before = fd_count()
    errors: list[BaseException] = []
    paths: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker() -> None:
        try:
            start.wait(timeout=30)
            ns = new_netns(unique_name())
            with lock:
                paths.append(ns.path)
            try:
                mine = ns.inode()
                my_thread = thread_ns_link()
                for _ in range(20):
                    assert ns.do(thread_ns_inode) == mine
                    assert thread_ns_link() == my_thread
            finally:
                ns.remove()
        except BaseException as exc:  # noqa: BLE001
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert len(paths) == len(set(paths)) == 8
    assert not any(os.path.exists(p) for p in paths)
    assert our_leftovers() == []
    assert fd_count() == fds_before


def test_concurrent_do_on_shared_netns(netns: NetNS) -> None:
    fds_before = fd_count()
    target = netns.inode()
    results: list[tuple[int, int]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(16)

    def worker(i: int) -> None:
        try:
            start.wait(timeout=30)
            own = thread_ns_link()
            for j in range(10):
                got = netns.do(lambda: (thread_ns_inode(), i * 100 + j))
                assert got[1] == i * 100 + j
                with lock:
                    results.append(got[0])
            assert thread_ns_link() == own == HOST_NS_LINK
        except BaseException as exc:  # noqa: BLE001
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert len(results) == 160
    assert set(results) == {target}
    assert fd_count() == fds_before


# -------------------------------------------------------------------- errors


def test_get_netns_missing_path(tmp_path) -> None:
    with pytest.raises(NetNSNotFoundError):
        get_netns(str(tmp_path / "nope"))
    with pytest.raises(NetNSNotFoundError):
        get_netns(os.path.join(NETNS_RUN_DIR, unique_name()))
    assert issubclass(NetNSNotFoundError, NetNSError)


def test_get_netns_not_a_netns(tmp_path) -> None:
    regular = tmp_path / "file"
    regular.write_text("")
    with pytest.raises(NotANetNSError):
        get_netns(str(regular))
    with pytest.raises(NotANetNSError):
        get_netns(str(tmp_path))  # a directory
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(NotANetNSError):
        get_netns(str(tmp_path / "fifo"))  # must not block
    # On nsfs, but the wrong kind of namespace.
    for kind in ("mnt", "uts", "ipc", "pid", "user"):
        with pytest.raises(NotANetNSError):
            get_netns(f"/proc/self/ns/{kind}")
    assert issubclass(NotANetNSError, NetNSError)
    with get_netns("/proc/self/ns/net") as ok:
        assert ok.inode() == thread_ns_inode()


def test_new_netns_existing_name(netns: NetNS) -> None:
    name = os.path.basename(netns.path)
    inode = netns.inode()
    with pytest.raises(NetNSError, match="exists"):
        new_netns(name)
    # The existing namespace was not touched.
    with get_netns(netns.path) as again:
        assert again.inode() == inode
    assert name in ip_netns_names()


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "/abs", "nul\0byte"])
def test_new_netns_invalid_name(bad: str) -> None:
    with pytest.raises((ValueError, NetNSError)):
        new_netns(bad)
    assert not os.path.exists(os.path.join(NETNS_RUN_DIR, "a"))
    assert our_leftovers() == []


def test_new_netns_too_long_name_cleans_up() -> None:
    with pytest.raises(NetNSError):
        new_netns(PREFIX + "x" * 300)
    assert our_leftovers() == []


def test_use_after_close(netns: NetNS) -> None:
    with get_netns(netns.path) as other:
        pass
    with pytest.raises(NetNSError, match="closed"):
        other.fd()
    with pytest.raises(NetNSError, match="closed"):
        other.do(thread_ns_link)
    other.close()  # idempotent
    assert "closed" in repr(other)
    assert other.inode() == netns.inode()  # falls back to the path
    assert netns.path in repr(netns)


def test_remove_refuses_paths_outside_run_dir() -> None:
    cur = current_netns()
    try:
        with pytest.raises(NetNSError):
            cur.remove()
        assert cur.fd() >= 0  # not closed either
    finally:
        cur.close()


# ---------------------------------------------------------- current / same


def test_current_netns_and_is_same_as_current(netns: NetNS) -> None:
    with current_netns() as cur:
        assert f"/task/{threading.get_native_id()}/ns/net" in cur.path
        assert cur.path.startswith(f"/proc/{os.getpid()}/")
        assert cur.inode() == thread_ns_inode()
        with get_netns(f"/proc/{os.getpid()}/ns/net") as proc_ns:
            assert cur == proc_ns
        try:  # only compared, never entered; may be forbidden in a sandbox
            init_ns = get_netns("/proc/1/ns/net")
        except NetNSError:
            pass
        else:
            with init_ns:
                assert (cur == init_ns) == (os.readlink("/proc/1/ns/net") == HOST_NS_LINK)
        assert cur != netns
        assert is_same_as_current(cur.path)
        assert len({cur, get_netns("/proc/self/ns/net")}) == 1

    assert is_same_as_current("/proc/self/ns/net")
    assert is_same_as_current("/proc/thread-self/ns/net")
    assert not is_same_as_current(netns.path)
    assert not is_same_as_current("/nonexistent/cnitest")
    assert netns.do(is_same_as_current, netns.path)
    assert netns.do(is_same_as_current, "/proc/thread-self/ns/net")
    host = os.readlink("/proc/thread-self/ns/net")
    assert netns.do(os.readlink, "/proc/thread-self/ns/net") != host


def test_current_netns_from_another_thread_is_usable_after_it_exits(netns: NetNS) -> None:
    """current_netns() taken inside do() keeps that namespace (its fd) after do() returns."""
    inner = netns.do(current_netns)
    try:
        assert inner == netns
        assert inner.do(thread_ns_inode) == netns.inode()
    finally:
        inner.close()


def test_list_netns(make_ns: Callable[..., NetNS]) -> None:
    a, b = make_ns(), make_ns()
    names = list_netns()
    assert os.path.basename(a.path) in names
    assert os.path.basename(b.path) in names
    assert names == sorted(names)
    a.remove()
    assert os.path.basename(a.path) not in list_netns()


IPROUTE_PROBE = r'''
import json, sys
from cnicore.testing import Sandbox
with Sandbox("cnitest-ipr") as sandbox:
    ctr = sandbox.container()
    with ctr.iproute() as ipr:
        ipr.link("add", ifname="cnitestv0", kind="veth", peer="cnitestv1")
        inside = sorted(link.get_attr("IFLA_IFNAME") for link in ipr.get_links())
    with sandbox.host.iproute() as ipr:
        host = sorted(link.get_attr("IFLA_IFNAME") for link in ipr.get_links())
from pyroute2 import IPRoute
with IPRoute() as ipr:
    outer = sorted(link.get_attr("IFLA_IFNAME") for link in ipr.get_links())
print(json.dumps({"inside": inside, "host": host, "outer": outer}))
'''


def test_iproute_is_bound_to_its_namespace_for_its_whole_life() -> None:
    """The idiom for plugin authors (pyroute2 inside a container namespace).

    Run in a process that itself lives in a throwaway namespace, so that even
    a broken idiom could only add links there, never to the machine."""
    outer = f"cnitest-iprouter-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", outer], check=True)
    try:
        done = subprocess.run(["ip", "netns", "exec", outer, sys.executable, "-c", IPROUTE_PROBE],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        seen = json.loads(done.stdout)
        assert seen == {"inside": ["cnitestv0", "cnitestv1", "lo"], "host": ["lo"], "outer": ["lo"]}
    finally:
        subprocess.run(["ip", "netns", "delete", outer], check=False)
