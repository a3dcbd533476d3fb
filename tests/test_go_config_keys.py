"""Config keys and kinds mean what they mean to Go's ``encoding/json``, for
every plugin through one mechanism (:mod:`cnicore._go.json`): keys match
case-insensitively with Go's simple folding (not Python's casefold), and a
wrong JSON kind is refused with Go's code and text — checked side by side
with Debian's Go plugins, through real launchers."""

from __future__ import annotations

import json

import pytest

from cnicore._go import json as gojson
from cnicore.testing import Sandbox, run_executable, run_in

GO = "/usr/lib/cni"


@pytest.mark.parametrize("key, field, matches", [
    ("bridge", "bridge", True), ("Bridge", "bridge", True), ("BRIDGE", "bridge", True), ("MTU", "mtu", True),
    ("ſysctl", "sysctl", True),          # U+017F folds to s in Go
    ("macspoofch\u212a", "macspoofchk", True),  # the Kelvin sign folds to k
    ("rangeﬆart", "rangeStart", False),  # a ligature: Python's casefold matches, Go does not
    ("ſtraße", "strasse", False), ("İpam", "ipam", False), ("ıpam", "ipam", False), ("bridge ", "bridge", False),
])
def test_keys_fold_like_go(key, field, matches):
    assert (gojson.lookup({key: 1}, field) == 1) is matches


def test_last_matching_key_wins_in_document_order():
    assert gojson.lookup({"mtu": 1, "MTU": 2}, "mtu") == 2
    assert gojson.lookup({"MTU": 2, "mtu": 1}, "mtu") == 1


def test_map_keys_stay_case_sensitive():
    schema = gojson.Struct("S", {"sysctl": gojson.Map(gojson.STRING)})
    assert gojson.decode_struct({"SYSCTL": {"Net.A": "1"}}, schema) == {"sysctl": {"Net.A": "1"}}




def _run(bindir, plugin, conf, sandbox, netns, **env):
    return run_executable(f"{bindir}/{plugin}", "ADD", json.dumps(conf), host=sandbox.host, netns=netns,
                          path=bindir, **env)


WRONG_KINDS = {
    "capabilities number": {"capabilities": 1},
    "capabilities value": {"capabilities": {"portMappings": "yes"}},
    "prevResult string": {"prevResult": "x"},
    "dns number": {"dns": 1},
    "dns nameservers": {"dns": {"nameservers": [1]}},
    "ipam string": {"ipam": "x"},
    "type number": {"type": 1},
    "upper-case key, wrong kind": {"MTU": "x"},
}


@pytest.mark.privileged
@pytest.mark.interop
@pytest.mark.parametrize("plugin", ["loopback", "bridge", "tuning", "firewall"])
@pytest.mark.parametrize("variant", list(WRONG_KINDS.values()), ids=list(WRONG_KINDS))
def test_wrong_kinds_are_refused_like_go(plugin, variant, cni_bin_dir, cni_sandbox, tmp_path):
    conf = dict({"cniVersion": "1.0.0", "name": "net", "type": plugin}, **variant)
    go = _run(GO, plugin, conf, cni_sandbox, cni_sandbox.container())
    ours = _run(cni_bin_dir, plugin, conf, cni_sandbox, cni_sandbox.container())
    assert (ours.code, ours.error and ours.error.code) == (go.code, go.error and go.error.code)
    if go.code:
        assert ours.error.msg == go.error.msg
    assert b"Traceback" not in ours.stdout


def _bridge_state(sandbox: Sandbox, ctr) -> tuple[str, str, str]:
    addr = run_in(sandbox.host, "ip", "-4", "-o", "addr", "show", "dev", "br7").split()[3]
    mtu = run_in(ctr, "cat", "/sys/class/net/eth0/mtu").strip()
    masq = str(any("MASQUERADE" in line or "masquerade" in line
                   for line in (run_in(sandbox.host, "iptables-save") + run_in(sandbox.host, "nft", "list",
                                                                                  "ruleset")).splitlines()))
    return addr, mtu, masq


@pytest.mark.privileged
@pytest.mark.interop
def test_bridge_honours_keys_in_any_case_like_go(cni_bin_dir, tmp_path):
    seen = []
    for impl, bindir in (("go", GO), ("ours", cni_bin_dir)):
        with Sandbox() as sandbox:
            conf = {"cniVersion": "1.0.0", "NAME": "net", "Type": "bridge", "Bridge": "br7", "MTU": 1400,
                    "ISGATEWAY": True, "ipMASQ": True,
                    "IPAM": {"TYPE": "host-local", "Subnet": "10.23.0.0/24", "DataDir": str(tmp_path / impl)}}
            ctr = sandbox.container()
            _run(bindir, "bridge", conf, sandbox, ctr, container_id="c1").ok()
            seen.append(_bridge_state(sandbox, ctr))
    assert seen[0] == seen[1] == ("10.23.0.1/24", "1400", "True")


@pytest.mark.privileged
@pytest.mark.interop
@pytest.mark.parametrize("key", ["SYSCTL", "ſyſctl"])
def test_tuning_honours_sysctl_key_in_any_go_case(key, cni_bin_dir, cni_sandbox):
    prev = {"cniVersion": "1.0.0", "interfaces": [{"name": "lo"}], "ips": []}
    seen = []
    for bindir in (GO, cni_bin_dir):
        ctr = cni_sandbox.container()
        conf = {"cniVersion": "1.0.0", "name": "net", "type": "tuning", "prevResult": prev,
                key: {"net.ipv4.conf.lo.rp_filter": "2"}}
        _run(bindir, "tuning", conf, cni_sandbox, ctr, ifname="lo", container_id="c1").ok()
        seen.append(run_in(ctr, "cat", "/proc/sys/net/ipv4/conf/lo/rp_filter").strip())
    assert seen == ["2", "2"]


@pytest.mark.privileged
@pytest.mark.interop
def test_host_local_ignores_keys_only_python_casefold_would_match(cni_bin_dir, cni_sandbox, tmp_path):
    ips = []
    for impl, bindir in (("go", GO), ("ours", cni_bin_dir)):
        conf = {"cniVersion": "1.0.0", "name": "net", "type": "host-local",
                "ipam": {"type": "host-local", "dataDir": str(tmp_path / impl),
                         "ranges": [[{"subnet": "10.24.0.0/24", "rangeﬆart": "10.24.0.50"}]]}}
        out = run_executable(f"{bindir}/host-local", "ADD", json.dumps(conf), host=cni_sandbox.host,
                             netns=cni_sandbox.container(), path=bindir, container_id="c1").ok()
        ips.append(out.json["ips"][0]["address"])
    assert ips == ["10.24.0.2/24", "10.24.0.2/24"]
