"""The walk-throughs in docs/ work: their plugins, taken from the docs' code blocks, run.

docs/WRITING_A_MAIN_PLUGIN.md and docs/WRITING_AN_IPAM_PLUGIN.md build a
plugin file by file; every ``python`` block whose first line is a
``# package/module.py`` comment is one file. Here those files are written into
a temporary package and the plugin is run in throwaway namespaces: ADD (IPv4
and IPv6), traffic, CHECK, DEL, a failing ADD that must leave nothing behind,
and for the IPAM plugin its store and GC. So a reader copying the docs gets a
plugin that works, and a change to the toolkit that breaks them fails here.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import sys
from pathlib import Path

from cnicore.testing import run_in as sh

ROOT = Path(__file__).resolve().parent.parent
MAIN_DOC = ROOT / "docs" / "WRITING_A_MAIN_PLUGIN.md"
IPAM_DOC = ROOT / "docs" / "WRITING_AN_IPAM_PLUGIN.md"


def doc_files(doc: Path) -> dict[str, str]:
    """``relative path -> source`` of every file the doc builds."""
    files: dict[str, str] = {}
    for block in re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.S):
        first = block.splitlines()[0]
        match = re.fullmatch(r"# ([a-z_]+/[a-z_]+\.py)", first)
        if match:
            files[match.group(1)] = files.get(match.group(1), "") + block
    return files


def load_package(doc: Path, tmp_path: Path, package: str):
    files = doc_files(doc)
    root = tmp_path / "src"
    for relative, source in files.items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source)
        (target.parent / "__init__.py").touch()
    sys.path.insert(0, str(root))
    try:
        for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
            del sys.modules[name]
        return importlib.import_module(f"{package}.plugin")
    finally:
        sys.path.remove(str(root))


def test_the_docs_build_their_plugins() -> None:
    assert set(doc_files(MAIN_DOC)) == {"my_ptp/config.py", "my_ptp/plugin.py"}
    assert set(doc_files(IPAM_DOC)) == {"my_ipam/config.py", "my_ipam/plugin.py", "my_ipam/store.py"}


def test_the_main_plugin_is_small() -> None:
    """The issue's target: a ptp-like plugin on the public API in at most 150 lines of code."""
    code = [line for source in doc_files(MAIN_DOC).values() for line in source.splitlines()
            if line.strip() and not line.strip().startswith("#")]
    assert len(code) <= 150


def _ptp_config(tmp_path: Path, **extra) -> dict:
    return {"cniVersion": "1.0.0", "name": "ptpnet", "type": "my-ptp", "mtu": 1400, **extra,
            "ipam": {"type": "host-local", "dataDir": str(tmp_path / "ipam"),
                     "ranges": [[{"subnet": "10.70.0.0/24"}], [{"subnet": "fd70::/64"}]],
                     "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}}


def _links(netns) -> list[str]:
    return [link["ifname"] for link in json.loads(sh(netns, "ip", "-j", "link", "show"))]


def test_main_walkthrough(cni_runner, cni_bin_dir, cni_sandbox, tmp_path) -> None:
    plugin = load_package(MAIN_DOC, tmp_path, "my_ptp")
    runner = cni_runner(plugin, "my-ptp", path=cni_bin_dir)
    config = _ptp_config(tmp_path, ipMasq=True)
    one, two = cni_sandbox.container(), cni_sandbox.container()
    before = _links(cni_sandbox.host)
    first = runner.add(config, one, container_id="ctr-1")
    runner.add(config, two, container_id="ctr-2")
    assert [ip["address"] for ip in first["ips"]] == ["10.70.0.2/24", "fd70::2/64"]
    assert [i["name"] for i in first["interfaces"]][1] == "eth0" and first["interfaces"][1]["sandbox"] == one.path
    # container -> host (its gateway) and container -> container, through the host, both families
    for target in ("10.70.0.1", "10.70.0.3", "fd70::1", "fd70::3"):
        sh(one, "ping", "-c", "1", "-W", "5", target)
    assert json.loads(sh(one, "ip", "-j", "link", "show", "eth0"))[0]["mtu"] == 1400
    assert "CNI-" in sh(cni_sandbox.host, "iptables", "-t", "nat", "-S")
    runner.check(dict(config, prevResult=first), one, container_id="ctr-1")
    # CHECK notices a route that went away
    sh(one, "ip", "route", "del", "default")
    failed = runner.run("CHECK", dict(config, prevResult=first), netns=one, container_id="ctr-1")
    assert failed.error.code == 999 and "Expected Route" in failed.error.msg
    runner.delete(config, one, container_id="ctr-1")
    runner.delete(config, two, container_id="ctr-2")
    runner.delete(config, two, container_id="ctr-2")  # DEL is idempotent
    assert _links(cni_sandbox.host) == before and "CNI-" not in sh(cni_sandbox.host, "iptables", "-t", "nat", "-S")
    assert not [f for f in os.listdir(tmp_path / "ipam" / "ptpnet") if f[0].isdigit() or ":" in f]


def test_main_walkthrough_cold_through_its_launcher(cni_sandbox, tmp_path) -> None:
    """Where a runtime runs it: a Python launcher in a fresh ``python -IS`` (cnitool plugins
    install), with host-local's launcher beside it, which the plugin runs in-process."""
    from cnicore.cli.install import install
    from cnicore.registry import PluginEntry, get
    from cnicore.testing import run_executable

    load_package(MAIN_DOC, tmp_path, "my_ptp")
    bindir = tmp_path / "bin"
    sys.path.insert(0, str(tmp_path / "src"))
    try:
        report = install(str(bindir), [PluginEntry("my-ptp", "my_ptp.plugin", "my-ptp", "0"), get("host-local")],
                         kind="python")
    finally:
        sys.path.remove(str(tmp_path / "src"))
    assert report.added == ["host-local", "my-ptp"]
    container = cni_sandbox.container()
    config = _ptp_config(tmp_path)
    launcher = str(bindir / "my-ptp")
    added = run_executable(launcher, "ADD", config, host=cni_sandbox.host, netns=container,
                           path=str(bindir)).ok().json
    assert [ip["address"] for ip in added["ips"]] == ["10.70.0.2/24", "fd70::2/64"]
    sh(container, "ping", "-c", "1", "-W", "5", "fd70::1")
    run_executable(launcher, "CHECK", dict(config, prevResult=added), host=cni_sandbox.host, netns=container,
                   path=str(bindir)).ok()
    run_executable(launcher, "DEL", config, host=cni_sandbox.host, netns=container, path=str(bindir)).ok()
    assert "eth0" not in _links(container)


def test_main_walkthrough_failed_add_leaves_nothing(cni_runner, cni_bin_dir, cni_sandbox, tmp_path) -> None:
    plugin = load_package(MAIN_DOC, tmp_path, "my_ptp")
    runner = cni_runner(plugin, "my-ptp", path=cni_bin_dir)
    container = cni_sandbox.container()
    sh(container, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "other0")  # the name is taken
    before = _links(cni_sandbox.host)
    failed = runner.run("ADD", _ptp_config(tmp_path), netns=container, container_id="ctr-x")
    assert failed.error.code == 999 and "already exists" in failed.error.msg
    assert _links(cni_sandbox.host) == before
    assert not [f for f in os.listdir(tmp_path / "ipam" / "ptpnet") if f[0].isdigit() or ":" in f]


def _ipam_config(tmp_path: Path, version: str = "1.1.0", **ipam) -> dict:
    return {"cniVersion": version, "name": "ipamnet", "type": "my-ipam",
            "ipam": {"type": "my-ipam", "subnet": "10.80.0.0/29", "dataDir": str(tmp_path / "store"),
                     "routes": [{"dst": "0.0.0.0/0"}], **ipam}}


def _reserved(tmp_path: Path) -> dict[str, str]:
    directory = tmp_path / "store" / "ipamnet"
    return {name: (directory / name).read_text() for name in os.listdir(directory) if name[0].isdigit()}


def test_ipam_walkthrough(cni_runner, container_netns, tmp_path) -> None:
    plugin = load_package(IPAM_DOC, tmp_path, "my_ipam")
    runner = cni_runner(plugin, "my-ipam")
    config = _ipam_config(tmp_path)
    first = runner.add(config, container_netns, container_id="c1")
    assert first["ips"] == [{"address": "10.80.0.2/29", "gateway": "10.80.0.1"}]
    assert first["routes"] == [{"dst": "0.0.0.0/0"}]
    assert runner.add(config, container_netns, container_id="c1") == first  # a repeated ADD: the same address
    runner.add(config, container_netns, container_id="c2")
    runner.add(config, container_netns, container_id="c3", ifname="net1")
    assert _reserved(tmp_path) == {"10.80.0.2": "c1\neth0", "10.80.0.3": "c2\neth0", "10.80.0.4": "c3\nnet1"}
    runner.check(config, container_netns, container_id="c2")
    missing = runner.run("CHECK", config, netns=container_netns, container_id="c9")
    assert missing.error.code == 999 and "no address reserved for c9/eth0" in missing.error.msg
    gc = dict(config, **{"cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"},
                                                         {"containerID": "c3", "ifname": "net1"}]})
    runner.run("GC", gc).ok()
    assert _reserved(tmp_path) == {"10.80.0.2": "c1\neth0", "10.80.0.4": "c3\nnet1"}
    runner.delete(config, container_netns, container_id="c1")
    runner.delete(config, container_netns, container_id="c1")  # idempotent
    assert _reserved(tmp_path) == {"10.80.0.4": "c3\nnet1"}
    runner.run("STATUS", config).ok()


def test_ipam_walkthrough_exhaustion_and_config_errors(cni_runner, container_netns, tmp_path) -> None:
    plugin = load_package(IPAM_DOC, tmp_path, "my_ipam")
    runner = cni_runner(plugin, "my-ipam")
    small = _ipam_config(tmp_path, subnet="10.81.0.0/30")  # .1 the gateway, .2 the only address
    runner.add(small, container_netns, container_id="c1")
    full = runner.run("ADD", small, netns=container_netns, container_id="c2")
    assert full.error.code == 999 and full.error.msg == "no IP addresses available in range set: 10.81.0.0/30"
    wrong_kind = runner.run("ADD", _ipam_config(tmp_path, subnet=24), netns=container_netns, container_id="c3")
    assert wrong_kind.error.msg == ("failed to load netconf: json: cannot unmarshal number into Go struct field "
                                    "IPAMConf.ipam.subnet of type string")
    bad_cidr = runner.run("ADD", _ipam_config(tmp_path, subnet="10.0.0.0/33"), netns=container_netns)
    assert bad_cidr.error.msg == "invalid CIDR address: 10.0.0.0/33"
