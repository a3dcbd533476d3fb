"""The built-in tuning meta plugin: config rules, and real namespaces in-process,
through a launcher and against Go's bridge and tuning plugins.

Safety: every plugin run and every sysctl/link read or write happens inside a
sandbox namespace (``NetNS.do``); the allowlist file is always a tmp file
(``config.ALLOWLIST_PATH`` monkeypatched, in-process runs only) and the
backup directory a tmp ``dataDir``. Keys the plugin must refuse name files
that do not exist, so even a bug could not change the machine.
"""

from __future__ import annotations

import json
import os

import pytest

from cni_plugins_builtin.tuning import config as tuning_config
from cni_plugins_builtin.tuning import plugin as tuning
from cni_plugins_builtin.tuning.config import parse_conf
from cnicore._go.json import NetConfError
from cnicore._go.mac import parse_mac
from cnicore.errors import CNIError
from cnicore.host import PluginHost
from cnicore.plugin import hookimpl
from cnicore.request import Request
from cnicore.rtnl import RtnlSocket
from cnicore.testing import run_executable

privileged = pytest.mark.privileged
interop = pytest.mark.interop

GO_TUNING = "/usr/lib/cni/tuning"
GO_BRIDGE = "/usr/lib/cni/bridge"
REAL_ALLOWLIST = "/etc/cni/tuning/allowlist.conf"
CID = "cnitest-tuning"
VERSIONS = ("0.3.1", "0.4.0", "1.0.0", "1.1.0")
NEW_MAC = "c2:11:22:33:44:55"
GLOBAL_KEY = "net.ipv4.conf.all.log_martians"
IFNAME_KEY = "net.ipv4.conf.IFNAME.arp_ignore"


@pytest.fixture(autouse=True)
def _no_real_allowlist():
    """The machine's allowlist must never exist because of these tests."""
    assert not os.path.exists(REAL_ALLOWLIST)
    yield
    assert not os.path.exists(REAL_ALLOWLIST)


# -- helpers -----------------------------------------------------------------------------


def make_eth0(netns, name: str = "eth0") -> str:
    """A veth pair inside ``netns`` (both ends there); returns the MAC of ``name``."""

    def create() -> str:
        with RtnlSocket() as rtnl:
            rtnl.add_veth(name, name + "p")
            rtnl.set_up(rtnl.link(name), True)
            return rtnl.link(name).mac

    return netns.do(create)


def link_state(netns, name: str = "eth0") -> dict[str, object]:
    def read() -> dict[str, object]:
        with RtnlSocket() as rtnl:
            link = rtnl.link(name)
            return {"mac": link.mac, "mtu": link.mtu, "promisc": link.promisc, "allmulti": link.allmulti,
                    "txqlen": link.txqlen}

    return netns.do(read)


def set_link(netns, name: str = "eth0", **settings) -> None:
    def change() -> None:
        with RtnlSocket() as rtnl:
            rtnl.set_link(rtnl.link(name), **settings)

    netns.do(change)


def sysctl_file(key: str, ifname: str = "eth0") -> str:
    return "/proc/sys/" + key.replace(".", "/").replace("IFNAME", ifname)


def read_sysctl(netns, key: str, ifname: str = "eth0") -> str:
    def read() -> str:
        with open(sysctl_file(key, ifname)) as fh:
            return fh.read().strip()

    return netns.do(read)


def write_sysctl(netns, key: str, value: str, ifname: str = "eth0") -> None:
    def write() -> None:
        with open(sysctl_file(key, ifname), "w") as fh:
            fh.write(value)

    netns.do(write)


def other(value: str, choices: tuple[str, ...] = ("1", "0")) -> str:
    """A value for a sysctl that differs from ``value``."""
    return choices[0] if value != choices[0] else choices[1]


def prev_result(version: str, netns, mac: str, ifname: str = "eth0") -> dict[str, object]:
    ip: dict[str, object] = {"interface": 0, "address": "10.9.0.2/24", "gateway": "10.9.0.1"}
    if version.startswith("0."):
        ip = {"version": "4", **ip}
    return {"cniVersion": version, "interfaces": [{"name": ifname, "mac": mac, "sandbox": netns.path}],
            "ips": [ip], "routes": [{"dst": "0.0.0.0/0", "gw": "10.9.0.1"}], "dns": {}}


def conf(version: str, data_dir, prev: dict | None = None, **extra: object) -> dict[str, object]:
    out: dict[str, object] = {"cniVersion": version, "name": "tune-net", "type": "tuning",
                              "dataDir": str(data_dir)}
    if prev is not None:
        out["prevResult"] = prev
    out.update(extra)
    return out


def with_raw_sysctl(config: dict[str, object], raw_sysctl: str) -> str:
    """The config as JSON text with a hand-written ``sysctl`` object (to repeat a key)."""
    text = json.dumps(config)
    return text[:-1] + f', "sysctl": {raw_sysctl}}}'


def backup_file(data_dir, ifname: str = "eth0", cid: str = CID) -> str:
    return os.path.join(str(data_dir), f"{cid}_{ifname}.json")


def runner(cni_runner, policies=()):
    return cni_runner(PluginHost(tuning, "tuning", policies)) if policies else cni_runner(tuning, "tuning")


# -- config, pure ------------------------------------------------------------------------


def test_defaults():
    c = parse_conf(b'{"cniVersion": "1.0.0", "name": "n", "type": "tuning"}')
    assert (c.data_dir, c.sysctl, c.mac, c.promisc, c.mtu, c.allmulti, c.txqlen) == \
        (tuning_config.DEFAULT_DATA_DIR, {}, "", False, 0, None, None)
    assert tuning_config.DEFAULT_DATA_DIR == "/run/cni/tuning"
    assert not c.changes_link


def test_precedence_of_overrides():
    base = {"name": "n", "mac": "02:00:00:00:00:01", "mtu": 1400, "promisc": True, "allmulti": False,
            "txQLen": 10, "sysctl": {"net.a": "1", "net.b": "2"}}
    assert parse_conf(base, "MAC=02:00:00:00:00:02").mac == "02:00:00:00:00:02"
    with_rt = dict(base, runtimeConfig={"mac": "02:00:00:00:00:03"})
    assert parse_conf(with_rt, "MAC=02:00:00:00:00:02").mac == "02:00:00:00:00:03"
    with_args = dict(with_rt, args={"cni": {"mac": "02:00:00:00:00:04", "mtu": 1300, "promisc": False,
                                            "allmulti": True, "txQLen": 20, "sysctl": {"net.b": "3", "net.c": "4"}}})
    c = parse_conf(with_args, "MAC=02:00:00:00:00:02")
    assert (c.mac, c.mtu, c.promisc, c.allmulti, c.txqlen) == ("02:00:00:00:00:04", 1300, False, True, 20)
    assert c.sysctl == {"net.a": "1", "net.b": "3", "net.c": "4"}
    # args.cni.sysctl alone (the reference would panic on its nil map)
    assert parse_conf({"name": "n", "args": {"cni": {"sysctl": {"net.x": "1"}}}}).sysctl == {"net.x": "1"}


@pytest.mark.parametrize("config, message", [
    # Go's encoding/json texts (checked against Debian's tuning v1.1.1; it has no txQLen)
    ({"mtu": "1500"}, "failed to load netconf: json: cannot unmarshal string into Go struct field "
                      "TuningConf.mtu of type int"),
    ({"promisc": 1}, "failed to load netconf: json: cannot unmarshal number into Go struct field "
                     "TuningConf.promisc of type bool"),
    ({"txQLen": True}, "failed to load netconf: json: cannot unmarshal bool into Go struct field "
                       "TuningConf.txQLen of type int"),
    ({"sysctl": {"net.a": 1}}, "failed to load netconf: json: cannot unmarshal number into Go struct field "
                               "TuningConf.sysctl of type string"),
    ({"sysctl": ["net.a"]}, "failed to load netconf: json: cannot unmarshal array into Go struct field "
                            "TuningConf.sysctl of type map[string]string"),
    ({"args": {"cni": {"mtu": 1.5}}}, "failed to load netconf: json: cannot unmarshal number 1.5 into Go struct "
                                      "field IPAMArgs.args.cni.mtu of type int"),
    ({"runtimeConfig": {"mac": 7}}, "failed to load netconf: json: cannot unmarshal number into Go struct field "
                                    ".runtimeConfig.mac of type string"),
    ({"args": 5}, "failed to load netconf: json: cannot unmarshal number into Go struct field TuningConf.args of "
                  'type struct { A *main.IPAMArgs "json:\\"cni\\"" }'),
    ({"args": {"cni": 5}}, "failed to load netconf: json: cannot unmarshal number into Go struct field .args.cni "
                           "of type main.IPAMArgs"),
    ({"mtu": 99999999999999999999}, "failed to load netconf: json: cannot unmarshal number 99999999999999999999 "
                                    "into Go struct field TuningConf.mtu of type int"),
    ({"MTU": "x", "Sysctl": 5}, "failed to load netconf: json: cannot unmarshal string into Go struct field "
                                "TuningConf.mtu of type int"),
    ({"mtu": -1}, "failed to load netconf: mtu -1 is out of range"),
    ({"txQLen": 2**32}, "failed to load netconf: txQLen 4294967296 is out of range"),
])
def test_bad_types_are_internal_errors(config, message):
    with pytest.raises(NetConfError) as info:
        parse_conf(dict({"name": "n"}, **config))
    assert (info.value.code, info.value.msg) == (999, message)


def test_cni_args():
    assert parse_conf({"name": "n"}, "IgnoreUnknown=1;K8S_POD_NAME=x;MAC=02:00:00:00:00:09").mac == "02:00:00:00:00:09"
    with pytest.raises(CNIError) as info:
        parse_conf({"name": "n"}, "FOO=bar")
    assert (info.value.code, info.value.msg) == (999, 'ARGS: unknown args ["FOO=bar"]')


def test_duplicate_sysctl_keys():
    text = '{"name": "n", "sysctl": {"net.a": "1", "net.b": "1", "net.a": "2"}}'
    with pytest.raises(NetConfError) as info:
        parse_conf(text)
    assert (info.value.code, info.value.msg) == (999, "duplicated sysctl keys are not allowed")
    with pytest.raises(NetConfError):
        parse_conf('{"name": "n", "args": {"cni": {"sysctl": {"net.a": "1", "net.a": "1"}}}}')
    # Duplicates elsewhere are JSON's usual last-wins, and DEL does not check.
    assert parse_conf('{"name": "n", "mtu": 1, "mtu": 2}').mtu == 2
    assert parse_conf(text, check_duplicates=False).sysctl == {"net.a": "2", "net.b": "1"}


@pytest.mark.parametrize("text, raw", [
    ("00:00:5e:00:53:01", "00005e005301"), ("00-00-5E-00-53-01", "00005e005301"),
    ("0000.5e00.5301", "00005e005301"), ("02:00:5e:10:00:00:00:01", "02005e1000000001"),
])
def test_parse_mac_like_go(text, raw):
    assert parse_mac(text).hex() == raw


@pytest.mark.parametrize("text", ["", "not-a-mac", "00:00:5e:00:53", "00:00:5e:00:53:0g", "00:00-5e:00:53:01",
                                  "000:00:5e:00:53:01", "0000.5e00.530"])
def test_bad_mac(text):
    with pytest.raises(ValueError, match=f"^address {text}: invalid MAC address$"):
        parse_mac(text)
    with pytest.raises(NetConfError, match="^invalid args .* for MAC addr: address"):
        tuning_config.ethernet_mac(text)


def test_ethernet_mac_is_canonical_and_six_bytes():
    assert tuning_config.ethernet_mac("C2-11-22-33-44-55") == NEW_MAC
    with pytest.raises(NetConfError, match="8-byte address"):
        tuning_config.ethernet_mac("02:00:5e:10:00:00:00:01")


@pytest.mark.parametrize("key, ifname, path", [
    ("net.ipv4.conf.all.forwarding", "eth0", "/proc/sys/net/ipv4/conf/all/forwarding"),
    ("net.ipv4.conf.IFNAME.arp_ignore", "eth0", "/proc/sys/net/ipv4/conf/eth0/arp_ignore"),
    ("net.ipv4.conf.IFNAME.arp_ignore", "eth0.100", "/proc/sys/net/ipv4/conf/eth0.100/arp_ignore"),
    ("net.ipv6.conf.IFNAME.accept_ra", "...", "/proc/sys/net/ipv6/conf/.../accept_ra"),
])
def test_sysctl_path(key, ifname, path):
    assert tuning_config.sysctl_path(key, ifname) == path


@pytest.mark.parametrize("key, ifname, code, message", [
    ("kernel.core_pattern", "eth0", 999, 'invalid net sysctl key: "kernel/core_pattern"'),
    ("net", "eth0", 999, 'invalid net sysctl key: "net"'),
    ("kernel/x", "eth0", 999, 'invalid net sysctl key: "kernel/x"'),
    ("net.ipv4.conf.IFNAME.x", "../../../kernel", 999, 'invalid net sysctl key: "net/ipv4/conf/../../../kernel/x"'),
    # The reference turns these dots into "/" too, lets them through and fails to
    # open the file (999); we refuse any "/" before anything, with its code.
    ("net/../kernel.x", "eth0", 999, None),
    ("net.ipv4.conf.all/../../../kernel.x", "eth0", 999, None),
    ("net/ipv4/../ipv4/conf/all/forwarding", "eth0", 999, None),  # the reference would allow this one
    ("net.ipv4..conf.all.forwarding", "eth0", 999, None),
    ("net.ipv4.conf.IFNAME.x", "a/b", 999, None),
])
def test_sysctl_escapes_are_refused(key, ifname, code, message):
    with pytest.raises(CNIError) as info:
        tuning_config.sysctl_path(key, ifname)
    assert info.value.code == code
    if message:
        assert info.value.msg == message


def test_allowlist(tmp_path):
    path = tmp_path / "allowlist.conf"
    assert tuning_config.read_allowlist(str(path)) is None
    tuning_config.check_allowlist({"net.anything": "1"}, str(path))  # no file: no restriction
    path.write_text("\n  ^net\\.ipv4\\.conf\\.all\\.[a-z_]*$  \n\nnet\\.core\\.\n")
    tuning_config.check_allowlist({"net.ipv4.conf.all.log_martians": "1", "x.net.core.somaxconn": "1"}, str(path))
    with pytest.raises(NetConfError) as info:
        tuning_config.check_allowlist({"net.ipv4.conf.eth0.log_martians": "1"}, str(path))
    assert info.value.msg == ("Sysctl net.ipv4.conf.eth0.log_martians is not allowed. Only the following sysctls "
                              "are allowed: [^net\\.ipv4\\.conf\\.all\\.[a-z_]*$ net\\.core\\.]")
    path.write_text("net.(\n")
    with pytest.raises(NetConfError, match="^error parsing regexp"):
        tuning_config.check_allowlist({"net.a": "1"}, str(path))


def test_backup_format_is_gos():
    assert tuning_config.encode_backup(mac="aa:bb:cc:dd:ee:ff", promisc=False, mtu=1500, allmulti=True,
                                       txqlen=1000) == (b'{\n "mac": "aa:bb:cc:dd:ee:ff",\n "promisc": false,\n'
                                                        b' "mtu": 1500,\n "allmulti": true,\n "txQLen": 1000\n}')
    assert tuning_config.encode_backup(mtu=9000) == b'{\n "mtu": 9000\n}'
    assert tuning_config.decode_backup(b'{"mtu": 9000, "promisc": true}') == {"mtu": 9000, "promisc": True}
    assert tuning_config.decode_backup(b'{"mtu": "9000"}') is None
    assert tuning_config.decode_backup(b"garbage") is None


def test_validation_happens_before_the_namespace_is_entered(tmp_path):
    """Bad input fails without touching CNI_NETNS (which does not exist here)."""
    prev = {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0"}]}

    def add(ifname: str = "eth0", **extra: object) -> CNIError:
        config = conf("1.0.0", tmp_path, prev, **extra)
        request = Request("ADD", container_id=CID, netns="/var/run/netns/cnitest-none", ifname=ifname,
                          stdin=json.dumps(config).encode(), config=config, cni_version="1.0.0")
        with pytest.raises(CNIError) as info:
            tuning.cni_add(request)
        return info.value

    assert add(ifname="../../x").msg == "Interface name (../../x) contains an invalid character /"
    assert add(mac="zz").msg == "invalid args zz for MAC addr: address zz: invalid MAC address"
    assert add(sysctl={GLOBAL_KEY: "1", "vm.swappiness": "1"}).msg == 'invalid net sysctl key: "vm/swappiness"'
    assert not list(tmp_path.iterdir())


# -- in real namespaces -----------------------------------------------------------------------


@privileged
@pytest.mark.parametrize("version", VERSIONS)
def test_every_option_add_check_del(cni_runner, host_netns, container_netns, tmp_path, version):
    mac = make_eth0(container_netns)
    before = link_state(container_netns)
    g_orig, i_orig = read_sysctl(container_netns, GLOBAL_KEY), read_sysctl(container_netns, IFNAME_KEY)
    host_orig = read_sysctl(host_netns, GLOBAL_KEY)
    g_new, i_new = other(g_orig), other(i_orig, ("2", "1"))
    prev = prev_result(version, container_netns, mac)
    config = conf(version, tmp_path, prev, sysctl={GLOBAL_KEY: g_new, IFNAME_KEY: i_new}, mac=NEW_MAC,
                  mtu=1400, promisc=True, allmulti=not before["allmulti"], txQLen=77)
    run = runner(cni_runner)

    out = run.run("ADD", config, netns=container_netns, container_id=CID).ok().json
    assert out["cniVersion"] == version
    assert out["interfaces"] == [{"name": "eth0", "mac": NEW_MAC, "sandbox": container_netns.path}]
    assert out["ips"] == prev["ips"] and out["routes"] == prev["routes"]
    assert link_state(container_netns) == {"mac": NEW_MAC, "mtu": 1400, "promisc": True,
                                           "allmulti": not before["allmulti"], "txqlen": 77}
    assert read_sysctl(container_netns, GLOBAL_KEY) == g_new
    assert read_sysctl(container_netns, IFNAME_KEY) == i_new
    assert read_sysctl(host_netns, GLOBAL_KEY) == host_orig  # written in the container only
    with open(backup_file(tmp_path)) as fh:
        assert json.load(fh) == {"mac": mac, "promisc": False, "mtu": 1500, "allmulti": before["allmulti"],
                                 "txQLen": before["txqlen"]}

    check_conf = dict(config, prevResult=out)
    if version != "0.3.1":
        run.check(check_conf, container_netns, container_id=CID)
    run.delete(config, container_netns, container_id=CID)
    assert link_state(container_netns) == before
    assert not os.path.exists(backup_file(tmp_path))
    # Sysctls are not restored on DEL (they belong to the namespace, as in the reference).
    assert read_sysctl(container_netns, GLOBAL_KEY) == g_new
    if version != "0.3.1":
        drift = run.run("CHECK", check_conf, netns=container_netns, container_id=CID)
        assert drift.code == 1 and drift.error.code == 999
        assert drift.error.msg == f"Error: Tuning configured Ethernet of eth0 is {NEW_MAC}, current value is {mac}"


@privileged
@pytest.mark.parametrize("version", ["0.1.0", "0.2.0"])
def test_legacy_versions_pass_prev_result_through(cni_runner, container_netns, tmp_path, version):
    make_eth0(container_netns)
    prev = {"cniVersion": version, "ip4": {"ip": "10.9.0.2/24", "gateway": "10.9.0.1"}, "dns": {}}
    out = runner(cni_runner).add(conf(version, tmp_path, prev, mtu=1300), container_netns, container_id=CID)
    assert out == prev
    assert link_state(container_netns)["mtu"] == 1300


@privileged
def test_args_overrides_in_namespace(cni_runner, container_netns, tmp_path):
    mac = make_eth0(container_netns)
    orig = read_sysctl(container_netns, GLOBAL_KEY)
    prev = prev_result("1.0.0", container_netns, mac)
    config = conf("1.0.0", tmp_path, prev, mtu=1400, promisc=True, mac="02:00:00:00:00:01",
                  sysctl={GLOBAL_KEY: orig},
                  runtimeConfig={"mac": "02:00:00:00:00:02"},
                  args={"cni": {"mtu": 1300, "promisc": False, "txQLen": 5, "allmulti": True,
                                "mac": "02:00:00:00:00:03", "sysctl": {GLOBAL_KEY: other(orig)}}})
    out = runner(cni_runner).add(config, container_netns, container_id=CID, args="MAC=02:00:00:00:00:04")
    assert out["interfaces"][0]["mac"] == "02:00:00:00:00:03"
    assert link_state(container_netns) == {"mac": "02:00:00:00:00:03", "mtu": 1300, "promisc": False,
                                           "allmulti": True, "txqlen": 5}
    assert read_sysctl(container_netns, GLOBAL_KEY) == other(orig)
    runner(cni_runner).check(dict(config, prevResult=out), container_netns, container_id=CID,
                             args="MAC=02:00:00:00:00:04")


@privileged
def test_runtime_config_mac_beats_cni_args(cni_runner, container_netns, tmp_path):
    mac = make_eth0(container_netns)
    config = conf("1.0.0", tmp_path, prev_result("1.0.0", container_netns, mac),
                  runtimeConfig={"mac": "02:00:00:00:00:02"})
    out = runner(cni_runner).add(config, container_netns, container_id=CID, args="MAC=02:00:00:00:00:04")
    assert out["interfaces"][0]["mac"] == link_state(container_netns)["mac"] == "02:00:00:00:00:02"


@privileged
def test_mac_is_reported_canonically(cni_runner, container_netns, tmp_path):
    mac = make_eth0(container_netns)
    config = conf("1.0.0", tmp_path, prev_result("1.0.0", container_netns, mac), mac="C2-11-22-33-44-55")
    out = runner(cni_runner).add(config, container_netns, container_id=CID)
    assert out["interfaces"][0]["mac"] == NEW_MAC == link_state(container_netns)["mac"]
    runner(cni_runner).check(dict(config, prevResult=out), container_netns, container_id=CID)


@privileged
def test_only_the_named_interface_gets_the_new_mac_in_the_result(cni_runner, container_netns, tmp_path):
    mac = make_eth0(container_netns)
    prev = prev_result("1.0.0", container_netns, mac)
    prev["interfaces"].insert(0, {"name": "cni0", "mac": "0a:00:00:00:00:01"})
    prev["ips"][0]["interface"] = 1
    out = runner(cni_runner).add(conf("1.0.0", tmp_path, prev, mac=NEW_MAC), container_netns, container_id=CID)
    assert [i["mac"] for i in out["interfaces"]] == ["0a:00:00:00:00:01", NEW_MAC]
    assert out["ips"] == prev["ips"]


@privileged
def test_prev_result_required(cni_runner, container_netns, tmp_path):
    make_eth0(container_netns)
    run = runner(cni_runner)
    for command in ("ADD", "CHECK"):
        out = run.run(command, conf("1.0.0", tmp_path, mtu=1300), netns=container_netns, container_id=CID)
        assert (out.code, out.error.code, out.error.msg) == (1, 999, "Required prevResult missing")
    assert link_state(container_netns)["mtu"] == 1500


@privileged
@pytest.mark.parametrize("bad_key", [
    "kernel.cnitest_does_not_exist",
    "net/../kernel/cnitest_does_not_exist",
    "net.ipv4.conf.all/../../../kernel.cnitest_does_not_exist",
    "net/ipv4/../ipv4/conf/all/log_martians",
    "net.ipv4..conf.all.log_martians",
])
def test_escape_attempts_rejected_before_anything_is_written(cni_runner, container_netns, tmp_path, bad_key):
    mac = make_eth0(container_netns)
    before = link_state(container_netns)
    orig = read_sysctl(container_netns, GLOBAL_KEY)
    config = conf("1.0.0", tmp_path, prev_result("1.0.0", container_netns, mac), mac=NEW_MAC, mtu=1300,
                  sysctl={GLOBAL_KEY: other(orig), bad_key: "1"})
    out = runner(cni_runner).run("ADD", config, netns=container_netns, container_id=CID)
    assert out.code == 1 and out.error.code in (7, 999)
    assert "sysctl key" in out.error.msg
    assert read_sysctl(container_netns, GLOBAL_KEY) == orig
    assert link_state(container_netns) == before
    assert not list(tmp_path.iterdir())


@privileged
def test_duplicate_keys_rejected_in_namespace(cni_runner, container_netns, tmp_path):
    mac = make_eth0(container_netns)
    orig = read_sysctl(container_netns, GLOBAL_KEY)
    config = conf("1.0.0", tmp_path, prev_result("1.0.0", container_netns, mac), mtu=1300)
    text = with_raw_sysctl(config, f'{{"{GLOBAL_KEY}": "{other(orig)}", "{GLOBAL_KEY}": "{orig}"}}')
    for command in ("ADD", "CHECK"):
        out = runner(cni_runner).run(command, text, netns=container_netns, container_id=CID)
        assert (out.code, out.error.code, out.error.msg) == (1, 999, "duplicated sysctl keys are not allowed")
    assert read_sysctl(container_netns, GLOBAL_KEY) == orig
    assert link_state(container_netns)["mtu"] == 1500


@privileged
def test_allowlist_allows_and_denies(cni_runner, container_netns, tmp_path, monkeypatch):
    mac = make_eth0(container_netns)
    allowlist = tmp_path / "allowlist.conf"
    monkeypatch.setattr(tuning_config, "ALLOWLIST_PATH", str(allowlist))
    data = tmp_path / "data"
    orig_g, orig_i = read_sysctl(container_netns, GLOBAL_KEY), read_sysctl(container_netns, IFNAME_KEY)
    prev = prev_result("1.0.0", container_netns, mac)
    config = conf("1.0.0", data, prev, sysctl={GLOBAL_KEY: other(orig_g), IFNAME_KEY: other(orig_i, ("2", "1"))})

    allowlist.write_text("^net\\.ipv4\\.conf\\.all\\.[a-z_]*$\n")
    denied = runner(cni_runner).run("ADD", config, netns=container_netns, container_id=CID)
    assert (denied.code, denied.error.code) == (1, 999)
    assert denied.error.msg == (f"Sysctl {IFNAME_KEY} is not allowed. Only the following sysctls are allowed: "
                                "[^net\\.ipv4\\.conf\\.all\\.[a-z_]*$]")
    assert read_sysctl(container_netns, GLOBAL_KEY) == orig_g  # nothing written, not even the allowed key

    allowlist.write_text("^net\\.ipv4\\.conf\\.all\\.[a-z_]*$\n^net\\.ipv4\\.conf\\.IFNAME\\.arp_ignore$\n")
    runner(cni_runner).add(config, container_netns, container_id=CID)
    assert read_sysctl(container_netns, GLOBAL_KEY) == other(orig_g)
    assert read_sysctl(container_netns, IFNAME_KEY) == other(orig_i, ("2", "1"))


class VetoPolicy:
    """A site policy: no arp_ignore changes; records what it was asked."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str, str]] = []

    @hookimpl
    def cni_sysctl_check(self, key, value, path, request):
        self.seen.append((key, value, path, request.command if request else ""))
        if key.endswith("arp_ignore"):
            raise CNIError(7, f"sysctl {key} is vetoed by site policy")


@privileged
def test_custom_sysctl_policy_veto(cni_runner, container_netns, tmp_path):
    mac = make_eth0(container_netns)
    orig_g = read_sysctl(container_netns, GLOBAL_KEY)
    policy = VetoPolicy()
    config = conf("1.0.0", tmp_path, prev_result("1.0.0", container_netns, mac), mtu=1300,
                  sysctl={GLOBAL_KEY: other(orig_g), IFNAME_KEY: "2"})
    out = runner(cni_runner, [policy]).run("ADD", config, netns=container_netns, container_id=CID)
    assert (out.code, out.error.code, out.error.msg) == (1, 7, f"sysctl {IFNAME_KEY} is vetoed by site policy")
    assert read_sysctl(container_netns, GLOBAL_KEY) == orig_g
    assert link_state(container_netns)["mtu"] == 1500
    assert policy.seen == [(GLOBAL_KEY, other(orig_g), sysctl_file(GLOBAL_KEY), "ADD"),
                           (IFNAME_KEY, "2", "/proc/sys/net/ipv4/conf/eth0/arp_ignore", "ADD")]

    policy.seen.clear()
    del config["sysctl"][IFNAME_KEY]
    runner(cni_runner, [policy]).add(config, container_netns, container_id=CID)
    assert read_sysctl(container_netns, GLOBAL_KEY) == other(orig_g)
    assert {entry[0] for entry in policy.seen} == {GLOBAL_KEY}


@privileged
def test_late_failure_restores_everything(cni_runner, container_netns, tmp_path):
    """The MTU step fails (too large for a veth) after sysctls, backup, MAC and promisc."""
    mac = make_eth0(container_netns)
    before = link_state(container_netns)
    orig = read_sysctl(container_netns, GLOBAL_KEY)
    config = conf("1.0.0", tmp_path, prev_result("1.0.0", container_netns, mac),
                  sysctl={GLOBAL_KEY: other(orig)}, mac=NEW_MAC, promisc=True, mtu=100000, txQLen=5)
    out = runner(cni_runner).run("ADD", config, netns=container_netns, container_id=CID)
    assert (out.code, out.error.code) == (1, 999)
    assert out.error.msg.startswith('failed to set MTU of "eth0" to 100000: ')
    assert link_state(container_netns) == before
    assert read_sysctl(container_netns, GLOBAL_KEY) == orig
    assert not os.path.exists(backup_file(tmp_path))


@privileged
def test_failing_sysctl_write_restores_earlier_ones(cni_runner, container_netns, tmp_path):
    mac = make_eth0(container_netns)
    orig = read_sysctl(container_netns, GLOBAL_KEY)
    config = conf("1.0.0", tmp_path, prev_result("1.0.0", container_netns, mac),
                  sysctl={GLOBAL_KEY: other(orig), "net.ipv4.conf.IFNAME.cnitest_no_such_file": "1"})
    out = runner(cni_runner).run("ADD", config, netns=container_netns, container_id=CID)
    assert (out.code, out.error.code) == (1, 999)
    assert out.error.msg.startswith("failed to set sysctl net.ipv4.conf.IFNAME.cnitest_no_such_file=1")
    assert read_sysctl(container_netns, GLOBAL_KEY) == orig


@privileged
def test_missing_interface(cni_runner, container_netns, tmp_path):
    prev = prev_result("1.0.0", container_netns, "0a:00:00:00:00:01")
    out = runner(cni_runner).run("ADD", conf("1.0.0", tmp_path, prev, mtu=1300), netns=container_netns,
                                 container_id=CID)
    assert (out.code, out.error.code, out.error.msg) == (1, 999, 'failed to get "eth0": Link not found')
    assert not list(tmp_path.iterdir())
    out = runner(cni_runner).run("CHECK", conf("1.0.0", tmp_path, prev), netns=container_netns, container_id=CID)
    assert (out.code, out.error.msg) == (1, "Cannot find container link eth0")


@privileged
@pytest.mark.parametrize("what", ["sysctl", "mac", "promisc", "mtu", "allmulti", "txqlen"])
def test_check_detects_drift(cni_runner, container_netns, tmp_path, what):
    mac = make_eth0(container_netns)
    orig = read_sysctl(container_netns, GLOBAL_KEY)
    allmulti = not link_state(container_netns)["allmulti"]
    config = conf("1.0.0", tmp_path, prev_result("1.0.0", container_netns, mac), sysctl={GLOBAL_KEY: other(orig)},
                  mac=NEW_MAC, promisc=True, mtu=1400, allmulti=allmulti, txQLen=50)
    run = runner(cni_runner)
    config["prevResult"] = run.add(config, container_netns, container_id=CID)
    run.check(config, container_netns, container_id=CID)
    expected = {
        "sysctl": f"Error: Tuning configured value of {sysctl_file(GLOBAL_KEY)} is {other(orig)}, current value is {orig}",
        "mac": f"Error: Tuning configured Ethernet of eth0 is {NEW_MAC}, current value is 02:00:00:00:00:09",
        "promisc": "Error: Tuning link eth0 configured promisc is true, current value is 0",
        "mtu": "Error: Tuning configured MTU of eth0 is 1400, current value is 1450",
        "allmulti": (f"Error: Tuning configured all-multicast mode of eth0 is {str(allmulti).lower()}, "
                     f"current value is {str(not allmulti).lower()}"),
        "txqlen": "Error: Tuning configured Transmit Queue Length of eth0 is 50, current value is 51",
    }[what]
    if what == "sysctl":
        write_sysctl(container_netns, GLOBAL_KEY, orig)
    else:
        drift = {"mac": "02:00:00:00:00:09", "promisc": False, "mtu": 1450, "allmulti": not allmulti, "txqlen": 51}
        set_link(container_netns, **{what: drift[what]})
    out = run.run("CHECK", config, netns=container_netns, container_id=CID)
    assert (out.code, out.error.code, out.error.msg) == (1, 999, expected)


@privileged
def test_check_promisc_off_is_checked_too(cni_runner, container_netns, tmp_path):
    mac = make_eth0(container_netns)
    set_link(container_netns, promisc=True)
    config = conf("1.0.0", tmp_path, prev_result("1.0.0", container_netns, mac))
    out = runner(cni_runner).run("CHECK", config, netns=container_netns, container_id=CID)
    assert out.error.msg == "Error: Tuning link eth0 configured promisc is false, current value is 1"


@privileged
def test_del_is_tolerant(cni_runner, cni_sandbox, tmp_path):
    run = runner(cni_runner)
    netns = cni_sandbox.container()
    mac = make_eth0(netns)
    config = conf("1.0.0", tmp_path, prev_result("1.0.0", netns, mac), mtu=1300)
    run.delete(config, netns, container_id=CID)  # nothing saved: nothing to do
    run.delete(config, "", container_id=CID)
    run.delete(config, "/var/run/netns/cnitest-gone", container_id=CID)

    # The interface is gone: the backup is dropped.
    run.add(config, netns, container_id=CID)
    assert os.path.exists(backup_file(tmp_path))
    netns.do(lambda: RtnlSocket().delete_link("eth0"))
    run.delete(config, netns, container_id=CID)
    assert not os.path.exists(backup_file(tmp_path))

    # The namespace is gone, or not given: likewise.
    for gone in ("/var/run/netns/cnitest-gone", ""):
        other_ns = cni_sandbox.container()
        make_eth0(other_ns)
        run.add(dict(config, prevResult=prev_result("1.0.0", other_ns, mac)), other_ns, container_id=CID)
        assert os.path.exists(backup_file(tmp_path))
        run.delete(config, gone, container_id=CID)
        assert not os.path.exists(backup_file(tmp_path))

    # An unusable backup is left alone, like the reference does, and DEL still succeeds.
    with open(backup_file(tmp_path), "w") as fh:
        fh.write("garbage")
    run.delete(config, netns, container_id=CID)
    assert os.path.exists(backup_file(tmp_path))


@privileged
def test_version_answer(cni_runner):
    out = runner(cni_runner).run("VERSION", b"")
    assert out.code == 0
    assert json.loads(out.stdout)["supportedVersions"] == ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0",
                                                           "1.1.0"]


# -- interop -----------------------------------------------------------------------------------


def need(path: str) -> None:
    if not os.access(path, os.X_OK):
        pytest.skip(f"{path} not installed")


@pytest.fixture
def launcher(tmp_path_factory, cni_install):
    from cnicore import registry

    directory = tmp_path_factory.mktemp("bin")
    cni_install(str(directory), entries=[registry.get("tuning")])
    path = directory / "tuning"
    assert os.access(path, os.X_OK)
    return str(path)


def go_bridge_conf(version: str, data_dir) -> dict[str, object]:
    return {"cniVersion": version, "name": "tune-net", "type": "bridge", "bridge": "cnitune0", "isGateway": True,
            "ipam": {"type": "host-local", "subnet": "10.78.0.0/24", "dataDir": str(data_dir / "ipam")}}


@privileged
@interop
@pytest.mark.parametrize("via", ["in-process", "launcher"])
@pytest.mark.parametrize("version", ["0.4.0", "1.0.0"])
def test_our_tuning_after_go_bridge(cni_runner, host_netns, container_netns, tmp_path, launcher, via, version):
    need(GO_BRIDGE)
    bridge_conf = go_bridge_conf(version, tmp_path)
    bridged = run_executable(GO_BRIDGE, "ADD", bridge_conf, host=host_netns, netns=container_netns,
                             container_id=CID).ok().json
    eth0 = next(i for i in bridged["interfaces"] if i.get("sandbox"))
    assert eth0["name"] == "eth0"
    before = link_state(container_netns)
    orig = read_sysctl(container_netns, IFNAME_KEY)
    host_orig = read_sysctl(host_netns, "net.ipv4.conf.all.log_martians")
    config = conf(version, tmp_path / "tuning", bridged, mac=NEW_MAC, mtu=1400, promisc=True, allmulti=True,
                  txQLen=42, sysctl={IFNAME_KEY: other(orig, ("2", "1")), GLOBAL_KEY: "1"})

    def tuning_run(command: str, cfg: dict):
        if via == "launcher":
            return run_executable(launcher, command, cfg, host=host_netns, netns=container_netns, container_id=CID)
        return runner(cni_runner).run(command, cfg, netns=container_netns, container_id=CID)

    out = tuning_run("ADD", config).ok().json
    expected = json.loads(json.dumps(bridged))
    next(i for i in expected["interfaces"] if i.get("sandbox"))["mac"] = NEW_MAC
    if version == "1.0.0":
        expected.pop("dns", None)  # Debian's older libcni prints an empty "dns" for 1.x
        out.pop("dns", None)
    assert out == expected
    assert link_state(container_netns) == {"mac": NEW_MAC, "mtu": 1400, "promisc": True, "allmulti": True,
                                           "txqlen": 42}
    assert read_sysctl(container_netns, IFNAME_KEY) == other(orig, ("2", "1"))
    assert read_sysctl(container_netns, GLOBAL_KEY) == "1"
    assert read_sysctl(host_netns, "net.ipv4.conf.all.log_martians") == host_orig

    tuning_run("CHECK", dict(config, prevResult=out)).ok()
    tuning_run("DEL", config).ok()
    assert link_state(container_netns) == before
    run_executable(GO_BRIDGE, "DEL", bridge_conf, host=host_netns, netns=container_netns, container_id=CID).ok()


def error_cases(netns, data_dir, mac: str) -> dict[str, dict[str, object]]:
    prev = prev_result("1.0.0", netns, mac)
    return {
        "missing prevResult": conf("1.0.0", data_dir, mtu=1300),
        "non-net sysctl key": conf("1.0.0", data_dir, prev, sysctl={"kernel.cnitest_does_not_exist": "1"}),
        "bad mac": conf("1.0.0", data_dir, prev, mac="not-a-mac"),
        "bad mtu type": conf("1.0.0", data_dir, prev, mtu="big"),
    }


@privileged
@interop
@pytest.mark.parametrize("case", ["missing prevResult", "non-net sysctl key", "bad mac", "bad mtu type"])
def test_errors_like_go_tuning(cni_runner, cni_sandbox, tmp_path, launcher, case):
    need(GO_TUNING)
    results = {}
    for who in ("go", "ours", "launcher"):
        netns = cni_sandbox.container()
        mac = make_eth0(netns)
        before = link_state(netns)
        config = error_cases(netns, tmp_path / who, mac)[case]
        if who == "ours":
            out = runner(cni_runner).run("ADD", config, netns=netns, container_id=CID)
        else:
            out = run_executable(GO_TUNING if who == "go" else launcher, "ADD", config, host=cni_sandbox.host,
                                 netns=netns, container_id=CID)
        assert out.code == 1, out
        assert link_state(netns) == before
        results[who] = out.error
    assert results["go"].code == results["ours"].code == results["launcher"].code == 999
    assert results["ours"] == results["launcher"]
    if case in ("missing prevResult", "bad mac"):
        assert results["ours"].msg == results["go"].msg
    elif case == "non-net sysctl key":  # v1.1.1 quotes the dotted key, newer ones the slashed one, as we do
        assert results["go"].msg.startswith('invalid net sysctl key: "kernel')
        assert results["ours"].msg == 'invalid net sysctl key: "kernel/cnitest_does_not_exist"'
    else:
        assert results["go"].msg.startswith("failed to load netconf: ")
        assert results["ours"].msg.startswith("failed to load netconf: ")
    # Go saves its backup before it finds the MAC invalid; we validate first.
    assert not (tmp_path / "ours").exists() and not (tmp_path / "launcher").exists()


@privileged
@interop
def test_backup_files_are_interchangeable_with_go(cni_runner, cni_sandbox, tmp_path):
    """Our ADD's backup is restored by Go's DEL, and Go's by ours."""
    need(GO_TUNING)
    for adder, deleter in (("ours", "go"), ("go", "ours")):
        netns = cni_sandbox.container()
        mac = make_eth0(netns)
        before = link_state(netns)
        config = conf("1.0.0", tmp_path / adder, prev_result("1.0.0", netns, mac), mac=NEW_MAC, mtu=1400,
                      promisc=True, allmulti=not before["allmulti"])
        for command, who in (("ADD", adder), ("DEL", deleter)):
            if who == "ours":
                runner(cni_runner).run(command, config, netns=netns, container_id=CID).ok()
            else:
                run_executable(GO_TUNING, command, config, host=cni_sandbox.host, netns=netns,
                               container_id=CID).ok()
            if command == "ADD":
                assert link_state(netns) == dict(before, mac=NEW_MAC, mtu=1400, promisc=True,
                                                 allmulti=not before["allmulti"])
        assert link_state(netns) == before
        assert not os.path.exists(backup_file(tmp_path / adder))
