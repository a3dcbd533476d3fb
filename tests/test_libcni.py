"""cnicore.libcni operations: injection, capability filtering, ordering,
the Go-compatible result cache, GC, STATUS, timeouts and cancellation.

Most tests drive small ``#!/bin/sh`` fake plugins in tmp dirs that record
their stdin and CNI_* environment and print canned results; they touch no
network and need no namespaces. The ``privileged``/``interop`` tests run
Debian's Go plugins through libcni inside a sandbox's private host netns
(``host_netns.do``), with every cache and IPAM dir under tmp_path.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import threading
import time
from pathlib import Path

import hypothesis
import hypothesis.strategies
import pytest

from cnicore.invoke import PluginCancelledError, PluginNotFoundError, PluginTimeoutError
from cnicore.libcni import (
    CacheError,
    CheckNotSupportedError,
    CNIConfig,
    LibcniError,
    MultiError,
    RuntimeConf,
    conf_from_bytes,
    conf_list_from_dict,
    load_conflist,
)
from cnicore.libcni.cache import KIND, ResultCache, encode_entry
from cnicore.types import Result, Result040

ALL_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
NET = "testnet"
CID = "ctr1"
NETNS = "/var/run/netns/fake-ctr1"


def result_json(version: str, index: int, name: str) -> dict[str, object]:
    if version in ("0.1.0", "0.2.0"):
        return {"cniVersion": version, "ip4": {"ip": f"10.0.0.{index}/24"}}
    ip: dict[str, object] = {"address": f"10.0.0.{index}/24", "gateway": "10.0.0.254", "interface": 0}
    if version.startswith("0."):
        ip["version"] = "4"
    return {"cniVersion": version, "interfaces": [{"name": f"{name}0", "sandbox": NETNS}], "ips": [ip]}


class Call:
    def __init__(self, plugin: str, env: dict[str, str], stdin: bytes) -> None:
        self.plugin = plugin
        self.env = env
        self.stdin = stdin
        self.command = env.get("CNI_COMMAND", "")

    @property
    def conf(self) -> dict[str, object]:
        return json.loads(self.stdin)

    def __repr__(self) -> str:
        return f"Call({self.plugin} {self.command})"


class Fakes:
    """Writes fake plugins into ``bin`` and reads back what they were given."""

    def __init__(self, root: Path) -> None:
        self.bin = root / "bin"
        self.log = root / "log"
        self.cache = root / "cache"
        self.bin.mkdir()
        self.log.mkdir()
        self.index = 0

    def add(self, name: str, version: str = "1.1.0", result: dict[str, object] | None = None,
            supported: tuple[str, ...] = ALL_VERSIONS, extra: str = "") -> None:
        self.index += 1
        result = result if result is not None else result_json(version, self.index, name)
        vinfo = json.dumps({"cniVersion": "1.1.0", "supportedVersions": list(supported)})
        script = f"""#!/bin/sh
log='{self.log}'
i=$(cat "$log/seq" 2>/dev/null || echo 0)
i=$((i+1))
echo "$i" > "$log/seq"
cat > "$log/$i.stdin"
{{ echo "PLUGIN={name}"; env | grep '^CNI_'; }} > "$log/$i.env"
if [ -f "$log/fail-{name}-$CNI_COMMAND" ]; then cat "$log/fail-{name}-$CNI_COMMAND"; exit 1; fi
{extra}
case "$CNI_COMMAND" in
ADD) cat <<'EOF_RESULT'
{json.dumps(result)}
EOF_RESULT
;;
VERSION) echo '{vinfo}' ;;
esac
"""
        path = self.bin / name
        path.write_text(script)
        path.chmod(0o755)

    def fail(self, name: str, command: str, code: int = 11, msg: str = "try later",
             details: str = "") -> None:
        err = {"cniVersion": "1.1.0", "code": code, "msg": msg}
        if details:
            err["details"] = details
        (self.log / f"fail-{name}-{command}").write_text(json.dumps(err))

    def calls(self, include_version: bool = False) -> list[Call]:
        out = []
        seq = int((self.log / "seq").read_text()) if (self.log / "seq").exists() else 0
        for i in range(1, seq + 1):
            env: dict[str, str] = {}
            for line in (self.log / f"{i}.env").read_text().splitlines():
                key, _, value = line.partition("=")
                env[key] = value
            call = Call(env.pop("PLUGIN"), env, (self.log / f"{i}.stdin").read_bytes())
            if include_version or call.command != "VERSION":
                out.append(call)
        return out

    def reset(self) -> None:
        for f in self.log.iterdir():
            if not f.name.startswith("fail-"):
                f.unlink()

    def config(self, **kw: object) -> CNIConfig:
        kw.setdefault("cache_dir", str(self.cache))
        return CNIConfig([str(self.log / "nothing-here"), str(self.bin)], **kw)  # type: ignore[arg-type]

    def cache_file(self, net: str = NET, cid: str = CID, ifname: str = "eth0") -> Path:
        return self.cache / "results" / f"{net}-{cid}-{ifname}"


@pytest.fixture
def fakes(tmp_path):
    return Fakes(tmp_path)


def three_plugin_list(version: str = "1.1.0", **extra: object) -> dict[str, object]:
    obj: dict[str, object] = {
        "cniVersion": version, "name": NET,
        "plugins": [
            {"type": "a", "name": "ignored", "cniVersion": "0.1.0", "runtimeConfig": {"keep": 1}},
            {"type": "b", "capabilities": {"portMappings": True, "bandwidth": False, "mac": True,
                                           "ips": True}, "opt": {"z": 1, "y": 2}},
            {"type": "c", "capabilities": {"bandwidth": True}},
        ]}
    obj.update(extra)
    return obj


PORTS = [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]
CAPS = {"portMappings": PORTS, "bandwidth": {"ingressRate": 1}, "ips": ["10.0.0.9/24"],
        "notDeclared": True}


def make_rt(**kw: object) -> RuntimeConf:
    defaults: dict[str, object] = {"container_id": CID, "netns": NETNS, "ifname": "eth0",
                                   "args": [("K8S_POD_NAME", "pod"), ("IgnoreUnknown", "1")],
                                   "capability_args": CAPS}
    defaults.update(kw)
    return RuntimeConf(**defaults)  # type: ignore[arg-type]


def setup_three(fakes: Fakes, version: str = "1.1.0", **extra: object):
    for name in "abc":
        fakes.add(name, version)
    return conf_list_from_dict(three_plugin_list(version, **extra))


# -- ADD ----------------------------------------------------------------------------------

def test_add_runs_plugins_in_order_with_injection(fakes):
    net = setup_three(fakes)
    result = fakes.config().add_network_list(net, make_rt())
    calls = fakes.calls()
    assert [(c.plugin, c.command) for c in calls] == [("a", "ADD"), ("b", "ADD"), ("c", "ADD")]
    a, b, c = (call.conf for call in calls)
    for conf in (a, b, c):
        assert conf["name"] == NET and conf["cniVersion"] == "1.1.0"
    assert "prevResult" not in a
    assert b["prevResult"] == result_json("1.1.0", 1, "a")
    assert c["prevResult"] == result_json("1.1.0", 2, "b")
    # runtimeConfig: only declared-and-enabled capabilities the caller gave values for.
    assert a["runtimeConfig"] == {"keep": 1}  # untouched: no capabilities to inject
    assert b["runtimeConfig"] == {"ips": ["10.0.0.9/24"], "portMappings": PORTS}
    assert c["runtimeConfig"] == {"bandwidth": {"ingressRate": 1}}
    assert isinstance(result, Result) and result.to_dict() == result_json("1.1.0", 3, "c")
    for call in calls:
        assert call.env["CNI_CONTAINERID"] == CID
        assert call.env["CNI_NETNS"] == NETNS
        assert call.env["CNI_IFNAME"] == "eth0"
        assert call.env["CNI_ARGS"] == "K8S_POD_NAME=pod;IgnoreUnknown=1"
        assert call.env["CNI_PATH"] == f"{fakes.log / 'nothing-here'}:{fakes.bin}"


def test_stdin_bytes_are_encoded_like_go(fakes):
    net = setup_three(fakes)
    fakes.config().add_network_list(net, make_rt())
    b = fakes.calls()[1]
    prev = json.dumps(result_json("1.1.0", 1, "a"), sort_keys=True, separators=(",", ":"))
    assert b.stdin == (
        b'{"capabilities":{"bandwidth":false,"ips":true,"mac":true,"portMappings":true},'
        b'"cniVersion":"1.1.0","name":"testnet","opt":{"y":2,"z":1},"prevResult":' + prev.encode() +
        b',"runtimeConfig":{"ips":["10.0.0.9/24"],'
        b'"portMappings":[{"containerPort":80,"hostPort":8080,"protocol":"tcp"}]},"type":"b"}')


def test_add_0_4_0_prev_result_key_order_as_go(fakes):
    """Go injects a 0.4.0 prevResult as a struct (field order); a second
    injection for runtimeConfig re-encodes it through a map (sorted)."""
    net = setup_three(fakes, "0.4.0")
    result = fakes.config().add_network_list(net, make_rt(capability_args={}))
    assert isinstance(result, Result040)
    b = fakes.calls()[1]
    assert b'"prevResult":{"cniVersion":"0.4.0","interfaces":[{"name":"a0","sandbox":' in b.stdin
    assert b'"ips":[{"version":"4","interface":0,"address":"10.0.0.1/24","gateway":"10.0.0.254"}]' in b.stdin
    fakes.reset()
    fakes.config().add_network_list(net, make_rt())
    b = fakes.calls()[1]
    assert b'"ips":[{"address":"10.0.0.1/24","gateway":"10.0.0.254","interface":0,"version":"4"}]' in b.stdin


def test_add_failure_names_plugin_and_keeps_code(fakes):
    net = setup_three(fakes)
    fakes.fail("b", "ADD", code=11, msg="busy", details="retry soon")
    with pytest.raises(LibcniError) as info:
        fakes.config().add_network_list(net, make_rt())
    err = info.value
    assert (err.code, err.details, err.plugin, err.operation, err.network) == (
        11, "retry soon", "b", "add", NET)
    assert str(err) == 'plugin type="b" failed (add): busy; retry soon'
    assert err.cause.msg == "busy"
    assert [c.plugin for c in fakes.calls()] == ["a", "b"]
    assert not fakes.cache_file().exists()


def test_add_failure_message_includes_plugin_name(fakes):
    fakes.add("a")
    fakes.fail("a", "ADD", code=7, msg="bad")
    net = conf_list_from_dict({"cniVersion": "1.0.0", "name": NET,
                               "plugins": [{"type": "a", "name": "first"}]})
    with pytest.raises(LibcniError, match='^plugin type="a" name="first" failed \\(add\\): bad$'):
        fakes.config().add_network_list(net, make_rt())


def test_missing_plugin(fakes):
    net = conf_list_from_dict({"cniVersion": "1.0.0", "name": NET, "plugins": [{"type": "nope"}]})
    with pytest.raises(LibcniError) as info:
        fakes.config().add_network_list(net, make_rt())
    assert isinstance(info.value.cause, PluginNotFoundError)
    assert info.value.code == 999
    assert 'failed to find plugin "nope"' in str(info.value)


@pytest.mark.parametrize("rt_change, code, text", [
    ({"container_id": ""}, 3, "missing containerID"),
    ({"container_id": "bad/id"}, 4, "invalid characters in containerID"),
    ({"ifname": ""}, 4, "interface name is empty"),
    ({"ifname": "a" * 16}, 4, "interface name is too long"),
    ({"ifname": "eth:0"}, 4, "interface name contains / or : or whitespace characters"),
])
def test_add_validates_runtime_conf_before_exec(fakes, rt_change, code, text):
    net = setup_three(fakes)
    with pytest.raises(LibcniError) as info:
        fakes.config().add_network_list(net, make_rt(**rt_change))
    assert info.value.code == code and text in str(info.value)
    assert fakes.calls() == []


def test_add_validates_network_name(fakes):
    fakes.add("a")
    net = conf_list_from_dict({"cniVersion": "1.0.0", "name": "bad name", "plugins": [{"type": "a"}]})
    with pytest.raises(LibcniError, match="invalid characters found in network name") as info:
        fakes.config().add_network_list(net, make_rt())
    assert info.value.code == 7


# -- the cache -------------------------------------------------------------------------------

def go_cache_bytes(config: bytes, result: dict[str, object], *, cid: str = CID, ifname: str = "eth0",
                   net: str = NET, netns: str = NETNS, args=(("K8S_POD_NAME", "pod"), ("IgnoreUnknown", "1")),
                   caps: dict[str, object] | None = None) -> bytes:
    """A cache file as Go's ``json.Marshal(cachedInfo)`` writes it, built from the
    struct's tags in libcni/api.go: kind, containerId, config ([]byte: base64),
    ifName, networkName, netns/cniArgs/capabilityArgs/result (omitempty).
    Maps (capabilityArgs, result) come out with sorted keys; no whitespace."""
    def compact(value: object) -> str:
        return json.dumps(value, sort_keys=True, separators=(",", ":"))

    parts = ['"kind":"cniCacheV1"', f'"containerId":{compact(cid)}',
             f'"config":"{base64.b64encode(config).decode()}"', f'"ifName":{compact(ifname)}',
             f'"networkName":{compact(net)}']
    if netns:
        parts.append(f'"netns":{compact(netns)}')
    if args:
        parts.append(f'"cniArgs":{compact([list(a) for a in args])}')
    if caps:
        parts.append(f'"capabilityArgs":{compact(caps)}')
    if result:
        parts.append(f'"result":{compact(result)}')
    return ("{" + ",".join(parts) + "}").encode()


def test_add_writes_a_go_compatible_cache_file(fakes):
    net = setup_three(fakes)
    fakes.config().add_network_list(net, make_rt())
    path = fakes.cache_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    data = path.read_bytes()
    assert data == go_cache_bytes(net.bytes, result_json("1.1.0", 3, "c"), caps=CAPS)
    obj = json.loads(data)
    # Go's cachedInfo json tags, in struct order.
    assert list(obj) == ["kind", "containerId", "config", "ifName", "networkName", "netns",
                         "cniArgs", "capabilityArgs", "result"]
    assert obj["kind"] == KIND == "cniCacheV1"
    assert base64.b64decode(obj["config"]) == net.bytes
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp files left


def test_cache_omits_empty_optional_fields():
    rt = RuntimeConf("c", "", "eth0")
    data = encode_entry("n", rt, b"{}", None)
    assert data == b'{"kind":"cniCacheV1","containerId":"c","config":"e30=","ifName":"eth0","networkName":"n"}'


def test_cached_result_config_and_attachments(fakes):
    net = setup_three(fakes)
    cni = fakes.config()
    result = cni.add_network_list(net, make_rt())
    assert cni.get_network_list_cached_result(net, make_rt()) == result
    config, rt = cni.get_network_list_cached_config(net, make_rt(args=[], capability_args={}))
    assert config == net.bytes
    assert rt is not None and rt.args == make_rt().args and rt.capability_args == CAPS
    attachments = cni.get_cached_attachments(CID)
    assert [(a.container_id, a.network, a.ifname, a.netns) for a in attachments] == [
        (CID, NET, "eth0", NETNS)]
    assert attachments[0].config == net.bytes and attachments[0].cni_args == make_rt().args
    assert cni.get_cached_attachments("ctr") == []
    assert len(cni.get_cached_attachments()) == 1
    assert cni.get_network_list_cached_result(net, make_rt(ifname="eth9")) is None
    assert cni.get_network_list_cached_config(net, make_rt(ifname="eth9")) == (None, None)


def test_cache_dir_precedence(fakes, tmp_path):
    net = setup_three(fakes)
    cni = CNIConfig([str(fakes.bin)])
    cni.add_network_list(net, make_rt(cache_dir=str(tmp_path / "rtcache")))
    assert (tmp_path / "rtcache" / "results" / f"{NET}-{CID}-eth0").exists()
    cni = fakes.config()
    cni.add_network_list(net, make_rt(cache_dir=str(tmp_path / "ignored")))
    assert fakes.cache_file().exists() and not (tmp_path / "ignored").exists()


def test_add_fails_when_cache_cannot_be_written(fakes):
    net = setup_three(fakes)
    fakes.cache.mkdir()
    (fakes.cache / "results").write_text("not a dir")
    with pytest.raises(CacheError, match=f'failed to set network "{NET}" cached result'):
        fakes.config().add_network_list(net, make_rt())


# -- DEL ------------------------------------------------------------------------------------

def test_del_runs_in_reverse_with_cached_result_and_removes_cache(fakes):
    net = setup_three(fakes)
    cni = fakes.config()
    cni.add_network_list(net, make_rt())
    fakes.reset()
    cni.del_network_list(net, make_rt())
    calls = fakes.calls()
    assert [(c.plugin, c.command) for c in calls] == [("c", "DEL"), ("b", "DEL"), ("a", "DEL")]
    for call in calls:
        assert call.conf["prevResult"] == result_json("1.1.0", 3, "c")
        assert call.env["CNI_ARGS"] == "K8S_POD_NAME=pod;IgnoreUnknown=1"
    assert calls[1].conf["runtimeConfig"] == {"ips": ["10.0.0.9/24"], "portMappings": PORTS}
    assert not fakes.cache_file().exists()
    cni.del_network_list(net, make_rt())  # a second DEL is fine


def test_del_before_0_4_0_gets_no_prev_result(fakes):
    net = setup_three(fakes, "0.3.1")
    cni = fakes.config()
    cni.add_network_list(net, make_rt())
    fakes.reset()
    cni.del_network_list(net, make_rt())
    assert all("prevResult" not in c.conf for c in fakes.calls())
    assert not fakes.cache_file().exists()


def test_failed_del_keeps_the_cache_for_a_retry(fakes):
    net = setup_three(fakes)
    cni = fakes.config()
    cni.add_network_list(net, make_rt())
    fakes.fail("b", "DEL", code=5, msg="io")
    with pytest.raises(LibcniError) as info:
        cni.del_network_list(net, make_rt())
    assert (info.value.code, info.value.operation, info.value.plugin) == (5, "delete", "b")
    assert str(info.value) == 'plugin type="b" failed (delete): io'
    assert fakes.cache_file().exists()
    (fakes.log / "fail-b-DEL").unlink()
    cni.del_network_list(net, make_rt())
    assert not fakes.cache_file().exists()


def test_del_through_a_cache_file_written_by_go(fakes):
    """An attachment added by containerd's libcni is deleted by ours."""
    net = setup_three(fakes, "1.0.0")
    go_result = {"cniVersion": "1.0.0",
                 "interfaces": [{"name": "eth0", "mac": "c2:00:00:00:00:01", "sandbox": NETNS}],
                 "ips": [{"address": "10.9.9.9/16", "gateway": "10.9.0.1", "interface": 0}],
                 "dns": {"nameservers": ["10.9.0.53"]}}
    fakes.cache_file().parent.mkdir(parents=True, mode=0o700)
    fakes.cache_file().write_bytes(go_cache_bytes(net.bytes, go_result, caps={"portMappings": PORTS}))
    cni = fakes.config()
    config, rt = cni.get_network_list_cached_config(net, RuntimeConf(CID, NETNS, "eth0"))
    assert config == net.bytes and rt is not None
    assert rt.args == [("K8S_POD_NAME", "pod"), ("IgnoreUnknown", "1")]
    assert rt.capability_args == {"portMappings": PORTS}
    cni.del_network_list(net, rt)
    calls = fakes.calls()
    assert [c.plugin for c in calls] == ["c", "b", "a"]
    assert all(c.conf["prevResult"] == go_result for c in calls)
    assert calls[1].conf["runtimeConfig"] == {"portMappings": PORTS}
    assert not fakes.cache_file().exists()


def test_legacy_cache_file_holding_only_a_result(fakes):
    net = setup_three(fakes, "1.0.0")
    legacy = {"cniVersion": "0.4.0", "ips": [{"version": "4", "address": "10.1.2.3/24"}], "dns": {}}
    fakes.cache_file().parent.mkdir(parents=True)
    fakes.cache_file().write_text(json.dumps(legacy))
    cni = fakes.config()
    cni.check_network_list(net, make_rt())
    assert all(c.conf["prevResult"] == {"cniVersion": "1.0.0", "ips": [{"address": "10.1.2.3/24"}]}
               for c in fakes.calls())
    assert cni.get_cached_attachments() == []  # legacy files carry no attachment data
    cni.del_network_list(net, make_rt())
    assert not fakes.cache_file().exists()


CORRUPT = {
    "garbage": b"adfadsfasdfasfdsafaf",
    "empty": b"",
    "truncated": None,  # filled in from a real entry
    "unknown version": None,
    "bad base64": b'{"kind":"cniCacheV1","containerId":"ctr1","config":"%%%","ifName":"eth0",'
                  b'"networkName":"testnet","result":{"cniVersion":"1.0.0"}}',
}


@pytest.mark.parametrize("case", list(CORRUPT))
def test_corrupt_cache_does_not_block_del(fakes, capsys, case):
    net = setup_three(fakes)
    cni = fakes.config()
    cni.add_network_list(net, make_rt())
    good = fakes.cache_file().read_bytes()
    data = CORRUPT[case]
    if case == "truncated":
        data = good[: len(good) // 2]
    elif case == "unknown version":
        data = good.replace(b'"result":{"cniVersion":"1.1.0"', b'"result":{"cniVersion":"0.4567.0"')
    fakes.cache_file().write_bytes(data)
    fakes.reset()
    with pytest.raises(CacheError, match=f'failed to get network "{NET}" cached result'):
        cni.check_network_list(net, make_rt())
    cni.del_network_list(net, make_rt())
    calls = fakes.calls()
    assert [(c.plugin, c.command) for c in calls] == [("c", "DEL"), ("b", "DEL"), ("a", "DEL")]
    assert all("prevResult" not in c.conf for c in calls)
    assert "ignoring unusable cached result" in capsys.readouterr().err
    assert not fakes.cache_file().exists()


def test_unknown_cached_version_message(fakes):
    net = setup_three(fakes)
    fakes.cache_file().parent.mkdir(parents=True)
    fakes.cache_file().write_text('{"cniVersion":"0.4567.0","ips":[]}')
    with pytest.raises(CacheError) as info:
        fakes.config().check_network_list(net, make_rt())
    assert str(info.value) == (f'failed to get network "{NET}" cached result: '
                               'unsupported CNI result version "0.4567.0"')


# -- CHECK ----------------------------------------------------------------------------------

def test_check_in_order_with_cached_result_converted_to_list_version(fakes):
    net = setup_three(fakes, "1.0.0")
    fakes.cache_file().parent.mkdir(parents=True)
    cached = {"cniVersion": "0.3.1", "ips": [{"version": "4", "address": "10.1.2.3/24"}], "dns": {}}
    fakes.cache_file().write_bytes(go_cache_bytes(net.bytes, cached))
    fakes.config().check_network_list(net, make_rt())
    calls = fakes.calls()
    assert [(c.plugin, c.command) for c in calls] == [("a", "CHECK"), ("b", "CHECK"), ("c", "CHECK")]
    assert all(c.conf["prevResult"] == {"cniVersion": "1.0.0", "ips": [{"address": "10.1.2.3/24"}]}
               for c in calls)
    assert calls[2].conf["runtimeConfig"] == {"bandwidth": {"ingressRate": 1}}


def test_check_failure_and_disable_check(fakes):
    net = setup_three(fakes)
    cni = fakes.config()
    cni.add_network_list(net, make_rt())
    fakes.reset()
    fakes.fail("a", "CHECK", code=3, msg="gone")
    with pytest.raises(LibcniError, match=r'^plugin type="a" name="ignored" failed \(check\): gone$') as info:
        cni.check_network_list(net, make_rt())
    assert info.value.code == 3 and [c.plugin for c in fakes.calls()] == ["a"]
    fakes.reset()
    for flag in (True, "true"):
        quiet = conf_list_from_dict(three_plugin_list(disableCheck=flag))
        cni.check_network_list(quiet, make_rt())
    assert fakes.calls() == []


@pytest.mark.parametrize("version", ["0.3.1", "0.2.0", ""])
def test_check_before_0_4_0_is_not_supported(fakes, version):
    obj = three_plugin_list(version, disableCheck=True)
    if not version:
        del obj["cniVersion"]
    net = setup_three(fakes)
    net = conf_list_from_dict(obj)
    with pytest.raises(CheckNotSupportedError) as info:
        fakes.config().check_network_list(net, make_rt())
    assert str(info.value) == f'configuration version "{version}" does not support the CHECK command'
    assert fakes.calls() == []


# -- single plugins ----------------------------------------------------------------------------

def test_single_plugin_add_check_del(fakes):
    fakes.add("a", "1.0.0")
    conf = conf_from_bytes(b'{"cniVersion":"1.0.0","name":"single","type":"a",'
                           b'"capabilities":{"portMappings":true}}')
    cni = fakes.config()
    result = cni.add_network(None, conf, make_rt())
    assert fakes.cache_file("single").exists()
    assert json.loads(fakes.cache_file("single").read_bytes())["config"] == base64.b64encode(conf.bytes).decode()
    cni.check_network(None, conf, make_rt())
    cni.del_network(None, conf, make_rt())
    calls = fakes.calls()
    assert [c.command for c in calls] == ["ADD", "CHECK", "DEL"]
    assert "prevResult" not in calls[0].conf
    assert calls[1].conf["prevResult"] == calls[2].conf["prevResult"] == result.to_dict()
    assert all(c.conf["runtimeConfig"] == {"portMappings": PORTS} for c in calls)
    assert not fakes.cache_file("single").exists()
    cni.add_network("other", conf, make_rt())
    assert fakes.cache_file("other").exists()
    assert fakes.calls()[-1].conf["name"] == "other"


# -- GC -------------------------------------------------------------------------------------

def test_gc_deletes_stale_attachments_then_gcs_every_plugin(fakes):
    net = setup_three(fakes)
    cni = fakes.config()
    cni.add_network_list(net, make_rt())
    cni.add_network_list(net, make_rt(container_id="ctr2", netns="/ns/2", args=[("A", "2")]))
    cni.add_network_list(net, make_rt(container_id="ctr3", ifname="eth1", netns="/ns/3"))
    other = conf_list_from_dict(dict(three_plugin_list(), name="othernet"))
    cni.add_network_list(other, make_rt(container_id="ctr2", netns="/ns/2"))
    fakes.reset()
    cni.gc_network_list(net, [(CID, "eth0")])
    calls = fakes.calls()
    assert [(c.plugin, c.command, c.env["CNI_CONTAINERID"]) for c in calls] == [
        ("c", "DEL", "ctr2"), ("b", "DEL", "ctr2"), ("a", "DEL", "ctr2"),
        ("c", "DEL", "ctr3"), ("b", "DEL", "ctr3"), ("a", "DEL", "ctr3"),
        ("a", "GC", ""), ("b", "GC", ""), ("c", "GC", "")]
    # Stale DELs use what the cache remembers of each attachment.
    assert calls[0].env["CNI_NETNS"] == "/ns/2" and calls[0].env["CNI_ARGS"] == "A=2"
    assert calls[3].env["CNI_IFNAME"] == "eth1"
    assert calls[0].conf["prevResult"]["cniVersion"] == "1.1.0"
    for gc in calls[6:]:
        conf = gc.conf
        assert conf["name"] == NET and conf["cniVersion"] == "1.1.0"
        assert conf["cni.dev/valid-attachments"] == [{"containerID": CID, "ifname": "eth0"}]
        assert conf["cni.dev/attachments"] == conf["cni.dev/valid-attachments"]
        assert "prevResult" not in conf
        assert conf.get("runtimeConfig") == ({"keep": 1} if gc.plugin == "a" else None)
        assert gc.env["CNI_IFNAME"] == gc.env["CNI_NETNS"] == ""
    assert fakes.cache_file().exists()
    assert not fakes.cache_file(cid="ctr2").exists() and not fakes.cache_file(cid="ctr3", ifname="eth1").exists()
    assert fakes.cache_file("othernet", "ctr2").exists()


def test_gc_without_valid_list_deletes_everything_cached(fakes):
    net = setup_three(fakes)
    cni = fakes.config()
    cni.add_network_list(net, make_rt())
    fakes.reset()
    cni.gc_network_list(net, None)
    calls = fakes.calls()
    assert [c.command for c in calls] == ["DEL"] * 3 + ["GC"] * 3
    assert all("cni.dev/valid-attachments" not in c.conf for c in calls[3:])
    assert not fakes.cache_file().exists()


def test_gc_collects_every_error(fakes):
    net = setup_three(fakes)
    cni = fakes.config()
    cni.add_network_list(net, make_rt(container_id="stale"))
    fakes.reset()
    fakes.fail("a", "DEL", code=5, msg="cannot del")
    fakes.fail("a", "GC", code=11, msg="busy")
    fakes.fail("c", "GC", code=999, msg="boom")
    with pytest.raises(MultiError) as info:
        cni.gc_network_list(net, [])
    errors = info.value.errors
    assert [str(e) for e in errors] == [
        'failed to delete stale attachment stale eth0: plugin type="a" name="ignored" failed (delete): cannot del',
        "failed to GC plugin a: busy", "failed to GC plugin c: boom"]
    assert [e.code for e in errors] == [5, 11, 999] and info.value.code == 5
    assert [(e.operation, e.plugin) for e in errors] == [("delete", "a"), ("gc", "a"), ("gc", "c")]
    assert str(info.value) == "\n".join(str(e) for e in errors)
    assert [c.command for c in fakes.calls()].count("GC") == 3


def test_gc_before_1_1_0_only_deletes_and_disable_gc_skips_all(fakes):
    net = setup_three(fakes, "1.0.0")
    cni = fakes.config()
    cni.add_network_list(net, make_rt())
    cni.gc_network_list(conf_list_from_dict(three_plugin_list("1.0.0", disableGC="True")), [])
    assert fakes.cache_file().exists()
    fakes.reset()
    cni.gc_network_list(net, [])
    assert [c.command for c in fakes.calls()] == ["DEL"] * 3
    assert not fakes.cache_file().exists()


# -- STATUS ---------------------------------------------------------------------------------

def test_status_stops_at_first_failure_with_its_code(fakes):
    net = setup_three(fakes)
    cni = fakes.config()
    cni.get_status_network_list(net)
    calls = fakes.calls()
    assert [(c.plugin, c.command) for c in calls] == [("a", "STATUS"), ("b", "STATUS"), ("c", "STATUS")]
    assert calls[0].conf["name"] == NET and calls[0].conf["cniVersion"] == "1.1.0"
    assert calls[0].env["CNI_CONTAINERID"] == ""
    fakes.reset()
    fakes.fail("b", "STATUS", code=50, msg="not ready", details="waiting for the daemon")
    with pytest.raises(LibcniError) as info:
        cni.get_status_network_list(net)
    assert (info.value.code, info.value.plugin, info.value.operation) == (50, "b", "status")
    assert info.value.cause.msg == "not ready" and info.value.details == "waiting for the daemon"
    assert [c.plugin for c in fakes.calls()] == ["a", "b"]


def test_status_before_1_1_0_is_a_no_op(fakes):
    net = setup_three(fakes, "1.0.0")
    fakes.config().get_status_network_list(net)
    assert fakes.calls() == []


# -- VERSION / validation -----------------------------------------------------------------------

def test_get_version_info_and_validate(fakes):
    net = setup_three(fakes)
    cni = fakes.config()
    assert cni.get_version_info("a").supported_versions == ALL_VERSIONS
    assert cni.validate_network_list(net) == ["bandwidth", "ips", "mac", "portMappings"]
    assert cni.validate_network(net.plugins[2]) == ["bandwidth"]


def test_validate_reports_every_problem(fakes):
    fakes.add("old", supported=("0.3.1", "0.4.0"))
    fakes.add("new")
    net = conf_list_from_dict({"cniVersion": "1.0.0", "name": NET, "plugins": [
        {"type": "old"}, {"type": "missing"}, {"type": "new"}]})
    with pytest.raises(MultiError) as info:
        fakes.config().validate_network_list(net)
    first, second = info.value.errors
    assert str(first) == ('plugin type="old" failed (validate): plugin old does not support config '
                          'version "1.0.0"; plugin supports 0.3.1, 0.4.0')
    assert first.code == 1
    assert 'failed to find plugin "missing"' in str(second)


# -- timeouts and cancellation ------------------------------------------------------------------

def test_timeout_kills_the_plugin(fakes):
    fakes.add("slow", extra='[ "$CNI_COMMAND" = ADD ] && { echo $$ > "$log/pid"; exec sleep 30; }')
    net = conf_list_from_dict({"cniVersion": "1.0.0", "name": NET, "plugins": [{"type": "slow"}]})
    start = time.monotonic()
    with pytest.raises(LibcniError) as info:
        fakes.config(timeout=0.5).add_network_list(net, make_rt())
    assert time.monotonic() - start < 10
    assert isinstance(info.value.cause, PluginTimeoutError)
    assert "timed out" in str(info.value) and info.value.operation == "add"
    pid = int((fakes.log / "pid").read_text())
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] in "ZX"


def test_cancel_kills_the_plugin(fakes):
    fakes.add("slow", extra='[ "$CNI_COMMAND" = DEL ] && exec sleep 30')
    net = conf_list_from_dict({"cniVersion": "1.0.0", "name": NET, "plugins": [{"type": "slow"}]})
    cancel = threading.Event()
    timer = threading.Timer(0.3, cancel.set)
    timer.start()
    start = time.monotonic()
    try:
        with pytest.raises(LibcniError) as info:
            fakes.config().del_network_list(net, make_rt(), cancel=cancel)
    finally:
        timer.cancel()
    assert time.monotonic() - start < 10
    assert isinstance(info.value.cause, PluginCancelledError)
    assert info.value.operation == "delete"


def test_already_cancelled_runs_nothing(fakes):
    net = setup_three(fakes)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(LibcniError) as info:
        fakes.config().add_network_list(net, make_rt(), cancel=cancel)
    assert isinstance(info.value.cause, PluginCancelledError)
    assert fakes.calls() == []


def test_result_cache_path_needs_all_parts(tmp_path):
    with pytest.raises(CacheError, match='cache file path requires network name \\("n"\\), '
                                         'container ID \\(""\\), and interface name \\("eth0"\\)'):
        ResultCache(str(tmp_path)).path("n", RuntimeConf("", "", "eth0"))


# -- real Go plugins in a sandbox -------------------------------------------------------------------

GO_DIR = "/usr/lib/cni"


def need_go(*names: str) -> None:
    for name in names:
        if not os.access(os.path.join(GO_DIR, name), os.X_OK):
            pytest.skip(f"{GO_DIR}/{name} not installed")


def go_list(tmp_path: Path, with_tuning: bool) -> dict[str, object]:
    plugins: list[dict[str, object]] = [
        {"type": "bridge", "bridge": "cnilib0", "isGateway": True,
         "ipam": {"type": "host-local", "subnet": "10.233.0.0/24",
                  "dataDir": str(tmp_path / "ipam")}}]
    if with_tuning:
        plugins.append({"type": "tuning", "capabilities": {"mac": True},
                        "dataDir": str(tmp_path / "tuning")})
    return {"cniVersion": "1.0.0", "name": "libcni-go", "plugins": plugins}


def link_json(netns, ifname: str) -> list[dict[str, object]]:
    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "-j", "link", "show", "dev", ifname], capture_output=True, text=True)

    proc = netns.do(run)
    return json.loads(proc.stdout) if proc.returncode == 0 else []


def ipam_reservations(tmp_path: Path) -> list[str]:
    root = tmp_path / "ipam" / "libcni-go"
    return sorted(p.name for p in root.iterdir() if p.name[0].isdigit()) if root.exists() else []


@pytest.mark.privileged
@pytest.mark.interop
def test_go_plugins_add_check_del(host_netns, container_netns, tmp_path):
    need_go("bridge", "host-local")
    with_tuning = os.access(f"{GO_DIR}/tuning", os.X_OK)
    (tmp_path / "net.d").mkdir()
    (tmp_path / "net.d" / "10-go.conflist").write_text(json.dumps(go_list(tmp_path, with_tuning)))
    net = load_conflist(str(tmp_path / "net.d"), "libcni-go")
    cni = CNIConfig([GO_DIR], cache_dir=str(tmp_path / "cache"), timeout=30)
    mac = "c2:11:22:33:44:66"
    rt = RuntimeConf("libcni-ctr", container_netns.path, "eth0", [("IgnoreUnknown", "1")],
                     {"mac": mac, "portMappings": PORTS})
    assert cni.validate_network_list(net) == (["mac"] if with_tuning else [])
    result = host_netns.do(cni.add_network_list, net, rt)
    assert isinstance(result, Result) and result.cni_version == "1.0.0"
    assert result.ips[0].address.startswith("10.233.0.")
    eth0 = link_json(container_netns, "eth0")
    assert eth0, "eth0 missing in the container"
    if with_tuning:
        assert eth0[0]["address"] == mac  # runtimeConfig.mac reached tuning
    assert ipam_reservations(tmp_path) == [result.ips[0].address.split("/")[0]]
    cache = tmp_path / "cache" / "results" / "libcni-go-libcni-ctr-eth0"
    assert json.loads(cache.read_bytes())["result"]["ips"][0]["address"] == result.ips[0].address
    host_netns.do(cni.check_network_list, net, rt)
    host_netns.do(cni.del_network_list, net, rt)
    assert link_json(container_netns, "eth0") == []
    assert ipam_reservations(tmp_path) == []
    assert not cache.exists()


@pytest.mark.privileged
@pytest.mark.interop
def test_go_plugins_del_with_corrupt_cache(host_netns, container_netns, tmp_path, capsys):
    need_go("bridge", "host-local")
    net = conf_list_from_dict(go_list(tmp_path, False))
    cni = CNIConfig([GO_DIR], cache_dir=str(tmp_path / "cache"), timeout=30)
    rt = RuntimeConf("libcni-ctr2", container_netns.path, "eth0")
    host_netns.do(cni.add_network_list, net, rt)
    assert len(ipam_reservations(tmp_path)) == 1
    cache = tmp_path / "cache" / "results" / "libcni-go-libcni-ctr2-eth0"
    cache.write_bytes(b"\x00corrupt{")
    with pytest.raises(CacheError):
        host_netns.do(cni.check_network_list, net, rt)
    host_netns.do(cni.del_network_list, net, rt)
    assert "ignoring unusable cached result" in capsys.readouterr().err
    assert link_json(container_netns, "eth0") == []
    assert ipam_reservations(tmp_path) == []
    assert not cache.exists()


@pytest.mark.privileged
@pytest.mark.interop
def test_go_plugins_gc_deletes_stale_attachment(cni_sandbox, tmp_path):
    """v1.1.1 plugins predate GC, so a 1.0.0 list only gets the stale DELs."""
    need_go("bridge", "host-local")
    net = conf_list_from_dict(go_list(tmp_path, False))
    cni = CNIConfig([GO_DIR], cache_dir=str(tmp_path / "cache"), timeout=30)
    keep, stale = cni_sandbox.container(), cni_sandbox.container()
    rt_keep = RuntimeConf("keep", keep.path, "eth0")
    rt_stale = RuntimeConf("stale", stale.path, "eth0")
    for rt in (rt_keep, rt_stale):
        cni_sandbox.host.do(cni.add_network_list, net, rt)
    assert len(ipam_reservations(tmp_path)) == 2
    cni_sandbox.host.do(cni.gc_network_list, net, [("keep", "eth0")])
    assert link_json(stale, "eth0") == [] and link_json(keep, "eth0")
    assert len(ipam_reservations(tmp_path)) == 1
    assert [a.container_id for a in cni.get_cached_attachments()] == ["keep"]
    cni_sandbox.host.do(cni.del_network_list, net, rt_keep)
    assert ipam_reservations(tmp_path) == []


@hypothesis.given(hypothesis.strategies.binary(max_size=300))
def test_cache_base64_encoding_is_base64s(data: bytes) -> None:
    from cnicore.libcni.cache import b64encode

    assert b64encode(data) == base64.b64encode(data).decode()


@hypothesis.given(hypothesis.strategies.one_of(
    hypothesis.strategies.text(alphabet="ABCDabcd0189+/=\\n é%", max_size=40),
    hypothesis.strategies.binary(max_size=60).map(lambda b: base64.b64encode(b).decode())))
def test_cache_base64_decoding_is_base64s_strict_mode(text: str) -> None:
    """Go rejects what is not canonical base64; the cache reader must refuse exactly what
    ``base64.b64decode(validate=True)`` refuses, with its message."""
    from cnicore.libcni.cache import b64decode

    def outcome(decode):
        try:
            return decode(text)
        except ValueError as exc:  # binascii.Error is a ValueError
            return str(exc)

    assert outcome(b64decode) == outcome(lambda t: base64.b64decode(t, validate=True))
