"""The warm server on a kernel without ``SO_PEERPIDFD`` (before 6.5; Debian 12's 6.1, the
guest's): the peer's pidfd is opened by its ``SO_PEERCRED`` pid, and the same trust
checks hold. Found in the guest, where every request used to be refused ("no pidfd of the
peer") and run cold. Real native launchers and a real ``cnitool daemon`` in a throwaway
namespace; what was served or refused is read from the server's log."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from cnicore.cli.install import install
from cnicore.registry import get
from cnicore.server._peer import SO_PEERPIDFD
from cnicore.testing import WarmServer, run_in

pytestmark = pytest.mark.privileged



def test_this_kernel_gives_no_peer_pidfd() -> None:
    """The premise of the tests below: they run the pidfd_open path only on such a kernel."""
    left, right = socket.socketpair()
    with left, right, pytest.raises(OSError) as raised:
        left.getsockopt(socket.SOL_SOCKET, SO_PEERPIDFD)
    assert raised.value.errno == errno.ENOPROTOOPT


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server of one worker for this module (a start costs 10-15 s under TCG), with
    native and Python launchers for dummy and host-local."""
    root = tmp_path_factory.mktemp("warm61")
    with WarmServer(str(root / "srv"), workers=1) as srv:
        native, python = root / "native", root / "python"
        entries = [get("dummy"), get("host-local")]
        assert not install(str(native), entries, kind="native", socket=srv.socket).skipped
        assert not install(str(python), entries, kind="python").skipped
        yield srv, native, python


def _requests(srv: WarmServer) -> list[str]:
    return [line for line in srv.log().splitlines() if " request pid=" in line]


def _logged_after(srv: WarmServer, before: int) -> list[str]:
    """The request lines logged after the first ``before`` (the worker logs a request once
    it has answered: waited for, bounded)."""
    deadline = time.monotonic() + 20
    while len(_requests(srv)) <= before and time.monotonic() < deadline:
        time.sleep(0.1)
    return _requests(srv)[before:]


def _dummy_add(host, ctr, bin_dir: Path, tmp_path: Path, prefix: tuple[str, ...] = ()) -> tuple[int, dict]:
    conf = {"cniVersion": "1.0.0", "name": "warm61", "type": "dummy",
            "ipam": {"type": "host-local", "subnet": "10.61.0.0/24", "dataDir": str(tmp_path / "ipam")}}
    env = {"PATH": os.environ["PATH"], "CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c61", "CNI_NETNS": ctr.path,
           "CNI_IFNAME": "eth0", "CNI_PATH": str(bin_dir)}
    done = host.do(lambda: subprocess.run([*prefix, str(bin_dir / "dummy")], input=json.dumps(conf).encode(),
                                          env=env, capture_output=True, timeout=120))
    return done.returncode, json.loads(done.stdout or b"{}")


@pytest.mark.kernel("dummy")
def test_a_privileged_caller_is_served_warm(server, cni_sandbox, tmp_path) -> None:
    srv, native, _ = server
    before = len(_requests(srv))
    ctr = cni_sandbox.container()
    code, result = _dummy_add(cni_sandbox.host, ctr, native, tmp_path)
    assert code == 0, result
    assert result["ips"][0]["address"] == "10.61.0.2/24"
    assert "10.61.0.2/24" in run_in(ctr, "ip", "-o", "addr", "show", "eth0")
    lines = _logged_after(srv, before)
    assert len(lines) == 1 and "plugin=dummy command=ADD" in lines[0] and "refused" not in lines[0], lines


@pytest.mark.kernel("dummy")
def test_a_root_that_dropped_its_capabilities_is_refused_and_gets_eperm_as_cold(server, cni_sandbox,
                                                                                  tmp_path) -> None:
    srv, native, python = server
    drop = ("setpriv", "--inh-caps=-net_admin,-sys_admin", "--bounding-set=-net_admin,-sys_admin")
    before = len(_requests(srv))
    answers = {}
    for label, bin_dir in (("warm", native), ("cold", python)):
        ctr = cni_sandbox.container()
        code, result = _dummy_add(cni_sandbox.host, ctr, bin_dir, tmp_path, drop)
        answers[label] = (code, result.get("code"), result.get("msg", "").replace(ctr.path, "CTR"))
        assert "eth0" not in run_in(ctr, "ip", "-o", "link", "show")
    assert answers["warm"] == answers["cold"]
    assert answers["warm"][0] != 0 and "operation not permitted" in answers["warm"][2].lower()
    lines = _logged_after(srv, before)
    assert len(lines) == 1 and "refused" in lines[0] and "lacks capabilities" in lines[0], lines
