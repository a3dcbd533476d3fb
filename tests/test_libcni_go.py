"""Our libcni and Go's reference libcni share one result cache.

A small Go program of ours (tests/go/golibcni) links Debian's build of the
reference libcni (golang-github-appc-cni-dev, installed by scripts/dev) and
runs network lists the way containerd does. The tests make one side ADD and
the other CHECK and DEL through the cache the first one wrote, and compare
the two cache files field by field.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess

import pytest

from cnicore.libcni import CNIConfig, RuntimeConf, conf_list_from_file

pytestmark = [pytest.mark.privileged, pytest.mark.interop]

GO_DIR = "/usr/lib/cni"
GOPATH = "/usr/share/gocode"
SOURCE = os.path.join(os.path.dirname(__file__), "go", "golibcni")


@pytest.fixture(scope="module")
def golibcni(tmp_path_factory) -> str:
    """Our driver built against Debian's reference libcni."""
    assert shutil.which("go"), "scripts/dev installs golang-go"
    assert os.path.isdir(os.path.join(GOPATH, "src/github.com/containernetworking/cni/libcni")), \
        "scripts/dev installs golang-github-appc-cni-dev"
    out = str(tmp_path_factory.mktemp("go") / "golibcni")
    env = dict(os.environ, GO111MODULE="off", GOPATH=GOPATH, GOFLAGS="",
               GOCACHE=str(tmp_path_factory.mktemp("gocache")))
    proc = subprocess.run(["go", "build", "-o", out, "."], cwd=SOURCE, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture
def setup(tmp_path, cni_bin_dir):
    """A bridge + host-local + tuning list on disk, a cache dir, both CNI_PATHs."""
    conflist = {"cniVersion": "1.0.0", "name": "gonet", "plugins": [
        {"type": "bridge", "bridge": "cnigo0", "isGateway": True,
         "ipam": {"type": "host-local", "subnet": "10.93.0.0/24", "dataDir": str(tmp_path / "ipam")}},
        {"type": "tuning", "mtu": 1300, "dataDir": str(tmp_path / "tuning")},
    ]}
    path = tmp_path / "gonet.conflist"
    path.write_text(json.dumps(conflist, indent=2))
    return {"file": str(path), "cache": str(tmp_path / "cache"),
            "ours": f"{cni_bin_dir}:{GO_DIR}", "go": GO_DIR}


def go_run(binary: str, host, command: str, setup: dict, netns, cid: str, cni_path: str):
    env = dict(os.environ, CNI_PATH=cni_path)
    return host.do(subprocess.run, [binary, command, setup["file"], cid, netns.path, "eth0", setup["cache"]],
                   env=env, capture_output=True, text=True, timeout=60)


def cache_file(setup: dict, cid: str) -> str:
    return os.path.join(setup["cache"], "results", f"gonet-{cid}-eth0")


def read_entry(setup: dict, cid: str) -> dict:
    with open(cache_file(setup, cid)) as fh:
        return json.load(fh)


@pytest.mark.parametrize("plugins", ["go", "ours"])
def test_go_adds_we_check_and_delete(golibcni, setup, cni_sandbox, plugins):
    ctr = cni_sandbox.container()
    added = go_run(golibcni, cni_sandbox.host, "add", setup, ctr, "ctr-go", setup[plugins])
    assert added.returncode == 0, added.stderr
    assert os.path.exists(cache_file(setup, "ctr-go"))

    ours = CNIConfig(setup[plugins].split(":"), cache_dir=setup["cache"])
    net = conf_list_from_file(setup["file"])
    rt = RuntimeConf("ctr-go", ctr.path, "eth0")
    cached = ours.get_network_list_cached_result(net, rt)
    printed = json.loads(added.stdout)
    if printed.get("dns") == {}:
        del printed["dns"]  # Debian's libcni 1.1.2 prints an empty dns for 1.x; current Go does not
    assert cached is not None and cached.to_dict() == printed
    cni_sandbox.host.do(ours.check_network_list, net, rt)  # needs the prevResult Go cached
    cni_sandbox.host.do(ours.del_network_list, net, rt)
    assert not os.path.exists(cache_file(setup, "ctr-go"))
    store = os.path.join(os.path.dirname(setup["file"]), "ipam", "gonet")
    assert not [name for name in os.listdir(store) if name[0].isdigit()]  # the address was released


@pytest.mark.parametrize("plugins", ["go", "ours"])
def test_we_add_go_checks_and_deletes(golibcni, setup, cni_sandbox, plugins):
    ctr = cni_sandbox.container()
    ours = CNIConfig(setup[plugins].split(":"), cache_dir=setup["cache"])
    net = conf_list_from_file(setup["file"])
    rt = RuntimeConf("ctr-py", ctr.path, "eth0")
    cni_sandbox.host.do(ours.add_network_list, net, rt)

    # bridge's CHECK fails without a prevResult: passing proves Go read our cache.
    checked = go_run(golibcni, cni_sandbox.host, "check", setup, ctr, "ctr-py", setup[plugins])
    assert checked.returncode == 0, checked.stderr
    deleted = go_run(golibcni, cni_sandbox.host, "del", setup, ctr, "ctr-py", setup[plugins])
    assert deleted.returncode == 0, deleted.stderr
    assert not os.path.exists(cache_file(setup, "ctr-py"))


def test_cache_files_agree_field_by_field(golibcni, setup, cni_sandbox):
    """The same list ADDed by each library for two containers: same keys, same
    config bytes, same runtime fields, results of the same shape."""
    go_ctr, py_ctr = cni_sandbox.container(), cni_sandbox.container()
    added = go_run(golibcni, cni_sandbox.host, "add", setup, go_ctr, "ctr-a", setup["go"])
    assert added.returncode == 0, added.stderr
    ours = CNIConfig(setup["go"].split(":"), cache_dir=setup["cache"])
    net = conf_list_from_file(setup["file"])
    cni_sandbox.host.do(ours.add_network_list, net, RuntimeConf("ctr-b", py_ctr.path, "eth0"))

    go_entry, py_entry = read_entry(setup, "ctr-a"), read_entry(setup, "ctr-b")
    # Debian's libcni 1.1.2 predates the "netns" field; current Go writes it, as we do.
    assert set(py_entry) - set(go_entry) <= {"netns"} and set(go_entry) <= set(py_entry)
    assert go_entry["kind"] == py_entry["kind"] == "cniCacheV1"
    assert base64.b64decode(go_entry["config"]) == base64.b64decode(py_entry["config"])
    assert base64.b64decode(py_entry["config"]) == open(setup["file"], "rb").read()
    for key in ("networkName", "ifName"):
        assert go_entry[key] == py_entry[key]
    assert go_entry["containerId"] == "ctr-a" and go_entry.get("netns", go_ctr.path) == go_ctr.path
    assert (py_entry["containerId"], py_entry["netns"]) == ("ctr-b", py_ctr.path)
    go_result, py_result = go_entry["result"], py_entry["result"]
    if go_result.get("dns") == {}:
        del go_result["dns"]
    assert set(go_result) == set(py_result)
    assert [i["name"] for i in go_result["interfaces"]][:1] == [i["name"] for i in py_result["interfaces"]][:1]
    assert go_result["ips"][0]["address"] == "10.93.0.2/24" and py_result["ips"][0]["address"] == "10.93.0.3/24"
    mode = os.stat(cache_file(setup, "ctr-a")).st_mode & 0o777
    assert os.stat(cache_file(setup, "ctr-b")).st_mode & 0o777 == mode
    for cid, ctr in (("ctr-a", go_ctr), ("ctr-b", py_ctr)):
        cni_sandbox.host.do(ours.del_network_list, net, RuntimeConf(cid, ctr.path, "eth0"))
