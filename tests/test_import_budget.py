"""The exec path's import budget, in one place.

A cold exec (a launcher, ``python -IS``, no server) pays for every module it
imports, on every container. What each exec-path entry may not import is
listed once here, and checked where the code runs: a fresh isolated
interpreter, never this test process (which has imported everything).
This is the only import-budget test: a module on the exec path says so in a
comment ("Exec path: ...") and imports inside functions what only some verbs
need; everything else (``cnicore.cli``, ``testing``, ``registry``, the server's
parent) imports at its top as usual.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cnicore.cli.install import install
from cnicore.registry import get

#: Never on any exec path.
ALWAYS = ("pluggy", "pyroute2", "click", "importlib.metadata", "cnicore.hookspecs", "cnicore.registry",
          "cnicore.libcni", "cnicore.server._daemon", "site")
#: Entry -> what it may not import either (beyond ALWAYS). An entry is a module to
#: import, or ``launcher:TYPE`` for a VERSION exec through that type's launcher.
#: What no module a launcher imports may pull in (each costs a cold exec 1-40 ms).
LEAN = ("json", "re", "typing", "subprocess", "signal", "enum", "tempfile", "importlib", "dataclasses")
#: What cluster-ipam's verbs may not import (the end-to-end check, a cold ADD and DEL against
#: etcd, is in tests/test_cluster_ipam_etcd.py).
CLUSTER_IPAM_VERBS = ("http", "email", "ssl", "socket", "selectors", "urllib", "base64", "hashlib", "random",
                      "threading", "encodings.idna")
BUDGET: dict[str, tuple[str, ...]] = {
    "cnicore.wire": LEAN,
    "cnicore.skel": LEAN + ("cnicore.types", "cnicore._go.json"),
    "cnicore.types": LEAN,
    "cnicore._go.json": LEAN + ("cnicore.types",),
    "cnicore.invoke": LEAN + ("cnicore.types", "ipaddress"),
    "cnicore.ipam": LEAN + ("ipaddress", "cnicore.netlink", "cnicore.types", "cnicore.invoke"),
    # The public toolkit: a plugin imports these in its verbs; each loads only what it needs.
    "cnicore.ip": LEAN + ("ipaddress", "cnicore.netlink", "cnicore.types", "cnicore.sysctl", "cnicore._go.ip"),
    "cnicore.netlink": LEAN + ("ipaddress", "cnicore.types"),
    "cnicore.config": LEAN + ("ipaddress", "cnicore.types", "cnicore.netlink"),
    "cnicore.utils": LEAN + ("hashlib", "ipaddress"),
    "cnicore.firewall": LEAN + ("ipaddress", "hashlib", "shlex", "cnicore.firewall.masquerade"),
    "cnicore.rollback": LEAN,
    "cnicore.sysctl": LEAN + ("cnicore.types",),
    "cnicore.launch": LEAN + ("cnicore._go.json",),
    "cnicore.launchers": LEAN,
    "cnicore.inprocess": LEAN,
    "cnicore.ns": LEAN + ("ctypes", "uuid"),
    "cnicore.fsutil": LEAN + ("shutil",),
    "cni_plugins_builtin.loopback": LEAN + ("cnicore.types", "cnicore.netlink"),
    "cni_plugins_builtin.bridge.plugin": LEAN,
    "cni_plugins_builtin.tuning.plugin": LEAN,
    "cni_plugins_builtin.firewall.plugin": LEAN,
    "cni_plugins_builtin.bandwidth.plugin": LEAN,
    "cni_plugins_builtin.host_local.plugin": LEAN + ("ipaddress", "cnicore.types",
                                                    "cni_plugins_builtin.host_local.config",
                                                    "cni_plugins_builtin.host_local.store"),
    "cni_plugins_builtin.host_local.index": LEAN,
    "cnicore.firewall.masquerade": LEAN + ("ipaddress", "hashlib", "shlex"),
    "cnicore.firewall.spoofcheck": LEAN + ("ipaddress", "hashlib", "shlex"),
    "cnicore.firewall.tools": LEAN + ("ipaddress", "hashlib", "shlex"),
    "cnicore.conntrack": LEAN + ("ipaddress", "cnicore.types"),
    "cni_plugins_builtin.portmap.plugin": LEAN,
    # The plugins of issues 16 and 17: VERSION through their launchers stays as lean.
    "cni_plugins_builtin.ptp.plugin": LEAN,
    "cni_plugins_builtin.static.plugin": LEAN,
    "cni_plugins_builtin.sbr.plugin": LEAN,
    "cni_plugins_builtin.dhcp.plugin": LEAN,
    "cni_plugins_builtin.host_device.plugin": LEAN,
    "cni_plugins_builtin.tap.plugin": LEAN,
    "cni_plugins_builtin.vrf.plugin": LEAN,
    "cni_plugins_builtin.dummy.plugin": LEAN,
    "launcher:ptp": LEAN + ("cnicore.netlink", "cnicore.ns"),
    "launcher:static": LEAN + ("cnicore.netlink", "cnicore.ns"),
    "launcher:sbr": LEAN + ("cnicore.netlink", "cnicore.ns"),
    "launcher:dhcp": LEAN + ("cnicore.netlink", "cnicore.ns"),
    "launcher:host-device": LEAN + ("cnicore.netlink", "cnicore.ns"),
    "launcher:tap": LEAN + ("cnicore.netlink", "cnicore.ns"),
    "launcher:vrf": LEAN + ("cnicore.netlink", "cnicore.ns"),
    "launcher:dummy": LEAN + ("cnicore.netlink", "cnicore.ns"),
    "launcher:loopback": LEAN + ("cnicore.netlink", "cnicore.types", "cnicore.ns", "cnicore.ipam", "cnicore.sysctl"),
    "launcher:bridge": LEAN + ("cnicore.netlink", "cnicore.ns"),
    "launcher:host-local": LEAN + ("cnicore.netlink",),
    "launcher:tuning": LEAN + ("cnicore.netlink",),
    "launcher:firewall": LEAN + ("cnicore.netlink", "cnicore.ns"),
    "launcher:bandwidth": LEAN + ("cnicore.netlink", "cnicore.ns"),
    "launcher:portmap": LEAN + ("cnicore.netlink",),
    "cni_plugins_builtin.macvlan.plugin": LEAN,
    "cni_plugins_builtin.ipvlan.plugin": LEAN,
    "cni_plugins_builtin.vlan.plugin": LEAN,
    "launcher:macvlan": LEAN + ("cnicore.netlink", "cnicore.ns"),
    "launcher:ipvlan": LEAN + ("cnicore.netlink", "cnicore.ns"),
    "launcher:vlan": LEAN + ("cnicore.netlink", "cnicore.ns"),
    # cluster-ipam's verbs need http.client + ssl: never for VERSION.
    "cni_plugins_builtin.cluster_ipam.plugin": LEAN + ("ipaddress", "http.client", "ssl", "etcd3gw", "requests",
                                                      "urllib3", "cnicore.types", "cni_plugins_builtin.host_local",
                                                      "cni_plugins_builtin.cluster_ipam.etcd"),
    "launcher:cluster-ipam": LEAN + ("http.client", "ssl", "etcd3gw", "requests", "urllib3", "cnicore.netlink"),
    # ... and its verbs' modules (issue 19: a cold ADD's CPU was mostly imports) load none of the
    # standard library's heavier clients: the transport is a small HTTP/1.1 client on _socket.
    **{f"cni_plugins_builtin.cluster_ipam.{name}": LEAN + CLUSTER_IPAM_VERBS
       for name in ("transport", "etcd", "allocate", "release", "config", "chance")},
}
#: cnitool's network verbs are not a plugin's exec path (ALWAYS does not apply), but they
#: must start fast too: click only for the other commands and for errors.
#: Nor what the standard library's json, base64, socket and hashlib would pull in (re and
#: enum above all: ~15 ms of a ~25 ms Go cnitool run).
CNITOOL_LEAN = ("click", "pluggy", "json", "re", "enum", "socket", "selectors", "base64", "hashlib")
CNITOOL_BUDGET: dict[str, tuple[str, ...]] = {
    "cnicore.cli": CNITOOL_LEAN,
    "cnicore.cli.cnitool": CNITOOL_LEAN,
    "cnicore.cli.netverbs": CNITOOL_LEAN,
    "cnicore.libcni": CNITOOL_LEAN,
    "cnicore.libcni.api": CNITOOL_LEAN,
    "cnicore.server.client": CNITOOL_LEAN,
}


@pytest.fixture(scope="module")
def launcher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("budget-bin")
    install(str(directory), [get(t) for t in ("bridge", "host-local", "loopback", "tuning", "cluster-ipam",
                                           "firewall", "bandwidth", "portmap", "macvlan", "ipvlan", "vlan",
                                           "ptp", "static", "sbr", "dhcp", "host-device", "tap", "vrf", "dummy")])
    return directory


def modules_after(entry: str, launcher_dir: Path, tmp_path: Path) -> set[str]:
    """``sys.modules`` at exit of a fresh ``-IS`` interpreter that ran ``entry``."""
    record = tmp_path / "modules.json"
    # The probe imports json itself, at exit, after taking the list.
    dump = (f"def _dump():\n    names = sorted(sys.modules)\n    import json\n"
            f"    open({str(record)!r}, 'w').write(json.dumps(names))\natexit.register(_dump)")
    if entry.startswith("launcher:"):
        launcher = str(launcher_dir / entry.split(":", 1)[1])
        probe = (f"import atexit, sys\n{dump}\n"
                 f"sys.argv = [{launcher!r}]\n"
                 f"exec(compile(open({launcher!r}).read(), {launcher!r}, 'exec'))\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CNI_", "PYTHON"))}
        env["CNI_COMMAND"] = "VERSION"
    else:
        probe = (f"import atexit, sys\nsys.path[:0] = {sys.path!r}\n"
                 f"{dump}\nimport {entry}\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    done = subprocess.run([sys.executable, "-IS", "-c", probe], env=env, capture_output=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr.decode()
    return set(json.loads(record.read_text()))


@pytest.mark.parametrize("entry", sorted(BUDGET) + sorted(CNITOOL_BUDGET))
def test_exec_path_stays_within_its_import_budget(entry: str, launcher_dir: Path, tmp_path: Path) -> None:
    modules = modules_after(entry, launcher_dir, tmp_path)
    module = entry.split(":", 1)[1] if entry.startswith("launcher:") else entry
    if not entry.startswith("launcher:"):
        assert module in modules  # the probe really ran it
    forbidden = CNITOOL_BUDGET[entry] if entry in CNITOOL_BUDGET else ALWAYS + BUDGET[entry]
    over = sorted(name for name in modules if any(name == f or name.startswith(f + ".") for f in forbidden))
    assert not over, f"{entry} imports {over}"
