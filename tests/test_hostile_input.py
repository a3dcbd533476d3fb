"""Hostile and malformed input, run through real launchers (``python -IS``)
and side by side through Debian's Go plugins: every case in
:mod:`hostile_cases` must give Go's exit status and error code (or a stated
better answer), an error naming the bad field, no traceback on stdout, and no
change on disk or in any namespace."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from cnicore import rtnl
from cnicore.testing import Sandbox
from helpers.state import files_under, firewall_rules
from hostile_cases import CASES, Case, stdin_bytes

pytestmark = [pytest.mark.privileged, pytest.mark.interop]

GO = "/usr/lib/cni"


class Side:
    """One implementation's world: a host and a container namespace, its store."""

    def __init__(self, bindir: str, root: str) -> None:
        self.bindir = bindir
        self.sandbox = Sandbox()
        self.ctr = self.sandbox.container()
        self.store, self.tuning = os.path.join(root, "store"), os.path.join(root, "tuning")
        self.root = root

    def run(self, case: Case, command: str | None = None) -> tuple[int, bytes, bytes]:
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "CNI_COMMAND": command or case.command,
               "CNI_CONTAINERID": "hostile", "CNI_NETNS": self.ctr.path, "CNI_IFNAME": "eth0",
               "CNI_PATH": self.bindir}
        for key, value in case.env.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        if command == "DEL":
            env["CNI_COMMAND"] = "DEL"
        stdin = stdin_bytes(case, self.store, self.tuning)
        proc = self.sandbox.host.do(subprocess.run, [os.path.join(self.bindir, case.plugin)], input=stdin, env=env,
                                    capture_output=True, timeout=120)
        return proc.returncode, proc.stdout, proc.stderr

    def state(self) -> tuple:
        """Everything a user would look at; the store's ``lock`` files (made
        on first use, by Go too) do not count."""
        def kernel() -> tuple:
            with rtnl.RtnlSocket() as sock:
                links = sorted((link.name, link.master, link.is_up, link.mtu) for link in sock.links())
                addrs = sorted(str(a) for link in sock.links() for family in (2, 10)
                               for a in sock.addresses(link.name, family))
                return links, addrs

        def sysctls() -> tuple:
            out = []
            for key in ("net/ipv4/ip_forward", "net/ipv4/conf/lo/rp_filter", "net/ipv4/conf/all/rp_filter"):
                with open("/proc/sys/" + key) as fh:
                    out.append(fh.read())
            return tuple(out)

        files = {path: data for path, data in files_under(self.root).items()
                 if os.path.basename(path) != "lock"}
        return (self.sandbox.host.do(kernel), self.ctr.do(kernel), self.ctr.do(sysctls),
                firewall_rules(self.sandbox.host), files)

    def leftovers(self) -> tuple:
        """What a DEL must not leave: links in the container, veths on the host,
        firewall rules, reservations."""
        def links() -> list[str]:
            with rtnl.RtnlSocket() as sock:
                return sorted(link.name for link in sock.links())

        reservations = [path for path in files_under(self.store) if os.path.basename(path)[0].isdigit()] \
            if os.path.isdir(self.store) else []
        return (self.ctr.do(links), [n for n in self.sandbox.host.do(links) if n.startswith("veth")],
                firewall_rules(self.sandbox.host), reservations)

    def close(self) -> None:
        self.sandbox.cleanup()


@pytest.fixture(scope="module")
def sides(cni_bin_dir, tmp_path_factory):
    made = []
    try:
        for name, bindir in (("ours", cni_bin_dir), ("go", GO)):
            made.append(Side(bindir, str(tmp_path_factory.mktemp(f"hostile-{name}"))))
        yield made
    finally:
        for side in made:
            side.close()


def _error(stdout: bytes) -> dict:
    obj = json.loads(stdout)
    assert isinstance(obj, dict) and isinstance(obj.get("code"), int), stdout[:500]
    return obj


@pytest.fixture
def clean_sides(sides):
    """The sides, put back after the case whatever happened: one case's
    failure must not become the next case's."""
    yield sides
    for side in sides:
        for plugin in ("bridge", "host-local"):
            side.run(Case("cleanup", plugin, {}), "DEL")
        side.ctr.do(_delete_all_but_lo)
        for path in (side.store, side.tuning):
            shutil.rmtree(path, ignore_errors=True)


def _delete_all_but_lo() -> None:
    with rtnl.RtnlSocket() as sock:
        for link in sock.links():
            if link.name != "lo":
                sock.delete_link(link)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile_input(case: Case, clean_sides) -> None:
    ours, go = clean_sides
    before = ours.state()
    status, out, err = ours.run(case)
    go_status, go_out, _ = go.run(case)
    if status == 0:  # accepted (as Go must have): undo it and prove nothing stays
        assert go_status == 0 and not case.better, (case, out[:300], go_out[:300])
        assert ours.run(case, "DEL")[0] == 0
        assert ours.leftovers() == (["lo"], [], ([], []), [])
        return
    assert b"Traceback" not in out
    error = _error(out)
    text = f"{error.get('msg', '')} {error.get('details', '')}"
    assert case.field.lower() in text.lower(), (case.field, error)
    assert ours.state() == before, f"{case.id} changed something: {error}"
    if case.better:
        return
    go_code = _error(go_out)["code"] if go_status else None
    assert (status, error["code"]) == (go_status, go_code), (error, go_out[:300])


def test_the_table_is_big_enough() -> None:
    assert len(CASES) >= 120
