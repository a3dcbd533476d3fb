"""The hostile-input case table, one row per attack (see test_hostile_input.py).

A case is a plugin, a command, CNI_* overrides and the stdin a runtime might be
tricked into passing. Stdin is built per implementation (``{store}`` and
``{tuning}`` are that side's directories). ``field`` must appear in our error
(message or details): the answer names what is wrong. ``better`` states a
deliberate difference from Go's answer (we refuse, Go goes ahead or fails
later); without it our exit status and error code must equal Go's.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple


class Case(NamedTuple):
    id: str
    plugin: str
    stdin: Any  # a dict (merged over the plugin's base config, None deletes a key) or raw bytes
    env: dict[str, str] = {}
    field: str = ""
    command: str = "ADD"
    better: str = ""


PREV = {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": "/x"}],
        "ips": [{"address": "10.40.0.9/24", "interface": 0}]}
BASE: dict[str, dict[str, Any]] = {
    "bridge": {"cniVersion": "1.0.0", "name": "hnet", "type": "bridge", "bridge": "brh", "isGateway": True,
               "ipMasq": True, "ipam": {"type": "host-local", "subnet": "10.40.0.0/24", "dataDir": "{store}"}},
    "host-local": {"cniVersion": "1.0.0", "name": "hnet", "type": "host-local",
                   "ipam": {"type": "host-local", "subnet": "10.40.0.0/24", "dataDir": "{store}"}},
    "tuning": {"cniVersion": "1.0.0", "name": "hnet", "type": "tuning", "dataDir": "{tuning}",
               "sysctl": {"net.ipv4.conf.IFNAME.rp_filter": "2"}, "prevResult": PREV},
    "loopback": {"cniVersion": "1.0.0", "name": "hnet", "type": "loopback"},
    "portmap": {"cniVersion": "1.0.0", "name": "hnet", "type": "portmap", "prevResult": PREV,
                "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}},
}


def stdin_bytes(case: Case, store: str, tuning: str) -> bytes:
    if isinstance(case.stdin, bytes):
        return case.stdin.replace(b"{store}", store.encode())
    conf = json.loads(json.dumps(BASE[case.plugin]))
    _merge(conf, case.stdin)
    text = json.dumps(conf, ensure_ascii=False)
    return text.replace("{store}", store).replace("{tuning}", tuning).encode("utf-8", "surrogateescape")


def _merge(into: dict[str, Any], change: dict[str, Any]) -> None:
    for key, value in change.items():
        if value is None:
            into.pop(key, None)
        elif isinstance(value, dict) and isinstance(into.get(key), dict) and not value.get("__replace__"):
            _merge(into[key], value)
        else:
            into[key] = {k: v for k, v in value.items() if k != "__replace__"} if isinstance(value, dict) else value


def ipam(**fields: Any) -> dict[str, Any]:
    return {"ipam": fields}


CASES: list[Case] = []


def add(*cases: Case) -> None:
    CASES.extend(cases)


# -- every CNI_* variable -----------------------------------------------------------
for plugin in ("bridge", "loopback"):
    add(
        Case(f"{plugin}-command-unknown", plugin, {}, {"CNI_COMMAND": "FOO"}, "CNI_COMMAND"),
        Case(f"{plugin}-command-lowercase", plugin, {}, {"CNI_COMMAND": "add"}, "CNI_COMMAND"),
        Case(f"{plugin}-containerid-missing", plugin, {}, {"CNI_CONTAINERID": None}, "CNI_CONTAINERID"),
        Case(f"{plugin}-netns-missing", plugin, {}, {"CNI_NETNS": None}, "CNI_NETNS"),
        Case(f"{plugin}-ifname-missing", plugin, {}, {"CNI_IFNAME": None}, "CNI_IFNAME"),
        Case(f"{plugin}-path-missing", plugin, {}, {"CNI_PATH": None}, "CNI_PATH"),
    )
for value, label in (("../x", "dotdot"), ("a/b", "slash"), (".x", "leading-dot"), (" x", "space"),
                     ("x\n", "newline"), ("x\udcff", "non-utf8"), ("x;y", "semicolon"), ("-x", "leading-dash")):
    add(Case(f"containerid-{label}", "bridge", {}, {"CNI_CONTAINERID": value}, "containerID"))
for value, label in (("../x", "dotdot"), ("a/b", "slash"), (".", "dot"), ("..", "dotdot-only"),
                     ("abcdefghijklmnop", "16-bytes"), ("eth0" * 8, "32-bytes"), (" eth0", "space"),
                     ("eth\t0", "tab"), ("eth:0", "colon"), ("é" * 8, "16-utf8-bytes"),
                     ("eth\u00a00", "nbsp"), ("\udcff" * 16, "16-non-utf8-bytes")):
    add(Case(f"ifname-{label}", "bridge", {}, {"CNI_IFNAME": value}, "interface name"))
add(
    Case("netns-missing-path", "bridge", {}, {"CNI_NETNS": "/nonexistent/ns"}, "/nonexistent/ns"),
    Case("netns-relative", "bridge", {}, {"CNI_NETNS": "../../proc/1/ns/net"}, "../../proc/1/ns/net"),
    Case("netns-a-file", "bridge", {}, {"CNI_NETNS": "/etc/hostname"}, "/etc/hostname"),
    Case("netns-a-directory", "bridge", {}, {"CNI_NETNS": "/proc"}, "/proc"),
    Case("netns-of-plugin-itself", "bridge", {}, {"CNI_NETNS": "/proc/self/ns/net"}, "netns",
         better="refused before anything is made; Go makes the bridge and veth in its own netns first"),
    Case("path-empty-dirs", "bridge", {}, {"CNI_PATH": "/nonexistent:/also-not"}, "host-local"),
    Case("path-relative", "bridge", {}, {"CNI_PATH": "relative/dir"}, "host-local"),
)

# -- CNI_ARGS -----------------------------------------------------------------------
for args, label, field in (
        ("K8S_POD_NAME=x", "unknown", "K8S_POD_NAME"),
        ("IgnoreUnknown=0;K8S_POD_NAME=x", "unknown-ignore-false", "K8S_POD_NAME"),
        ("foo", "no-equals", "foo"),
        ("=x", "empty-key", "=x"),
        ("IgnoreUnknown=maybe", "bad-bool", "IgnoreUnknown"),
        ("MAC=zz:zz:zz:zz:zz:zz", "bad-mac", "MAC"),
        ("MAC=00:11:22:33:44", "short-mac", "MAC"),
        ("a=b=c", "two-equals", "a=b=c"),
        ("IgnoreUnknown=1;foo", "ignore-but-malformed", "foo"),
        (";", "only-separator", "invalid pair"),
        # accepted by Go and by us (the run is then undone by DEL and checked for leftovers)
        ("IgnoreUnknown=1;K8S_POD_NAME=x", "unknown-ignored", ""),
        ("IgnoreUnknown=true;a=1;a=2", "duplicated-unknown-ignored", ""),
        ("MAC=02:00:00:00:00:01;MAC=02:00:00:00:00:02", "duplicated-mac", "")):
    add(Case(f"args-{label}", "bridge", {}, {"CNI_ARGS": args}, field))
add(Case("netns-override-garbage", "bridge", {}, {"CNI_NETNS_OVERRIDE": "maybe"}),
    Case("command-del-with-garbage-netns", "bridge", {}, {"CNI_NETNS": "/nonexistent/ns"}, command="DEL"))
for args, label, field in (
        ("IP=10.40.0.300", "host-local-bad-ip", "10.40.0.300"),
        ("IP=10.41.0.5", "host-local-ip-outside", "10.41.0.5"),
        ("IP=10.40.0.5;IP=zz", "host-local-duplicated-bad-last", "zz"),
        ("IP=", "host-local-empty-ip", ""),
        ("IP=10.40.0.0", "host-local-network-address", "10.40.0.0"),
        ("IP=10.40.0.255", "host-local-broadcast", "10.40.0.255")):
    add(Case(f"args-{label}", "host-local", {}, {"CNI_ARGS": args}, field))

# -- names that try to escape --------------------------------------------------------
for value, label in (("../x", "dotdot"), ("a/b", "slash"), (".x", "leading-dot"), (" x", "space"),
                     ("x" * 300, "300-chars-valid"), ("", "empty"), ("x\u2028", "separator")):
    for plugin in ("bridge", "host-local", "tuning", "loopback"):
        if label == "300-chars-valid" and plugin != "host-local":
            continue
        field = "file name too long" if len(value) > 255 else "network name" if value else "name"
        add(Case(f"{plugin}-name-{label}", plugin, {"name": value}, field=field))
add(Case("name-non-utf8-bytes", "host-local", b'{"cniVersion":"1.0.0","name":"h\xffnet","type":"host-local",'
                                              b'"ipam":{"type":"host-local","subnet":"10.40.0.0/24",'
                                              b'"dataDir":"{store}"}}', field="network name"))
for value, label in (("../x", "dotdot"), ("a/b", "slash"), ("abcdefghijklmnopq", "17-bytes"), ("br 0", "space"),
                     (".", "dot"), ("br\udcff0", "non-utf8"), ("eth0:1", "colon")):
    add(Case(f"bridge-bridge-name-{label}", "bridge", {"bridge": value}, field="bridge"))

# -- plugin and IPAM type with path separators ----------------------------------------
for value, label in (("../host-local", "dotdot"), ("/usr/lib/cni/host-local", "absolute"),
                     ("host-local/../host-local", "inner-dotdot"), ("./host-local", "dot-slash"),
                     ("", "empty"), ("no-such-ipam", "unknown")):
    add(Case(f"bridge-ipam-type-{label}", "bridge", ipam(type=value, subnet="10.40.0.0/24", dataDir="{store}"),
             field=value or "ipam"))

# -- sysctl keys that try to leave /proc/sys/net -------------------------------------------
for key, label in (("kernel.hostname", "kernel"), ("net/../kernel/hostname", "slash-dotdot"),
                   ("net.ipv4.conf.IFNAME/../../../kernel.hostname", "ifname-dotdot"),
                   ("../../kernel/x", "leading-dotdot"), ("net..ipv4", "empty-component"),
                   ("net.ipv4.conf.IFNAME.", "trailing-dot"), ("", "empty"), ("net", "net-only"),
                   ("/proc/sys/kernel/hostname", "absolute"), ("net.ipv4.conf.all/../../../../kernel.x", "all-dotdot"),
                   ("net.core.nonexistent", "missing-key"), ("vm.overcommit_memory", "vm")):
    add(Case(f"tuning-sysctl-{label}", "tuning", {"sysctl": {"__replace__": True, key: "1"}},
             env={"CNI_IFNAME": "lo"}, field="sysctl"))

# -- invalid CIDRs, ranges, gateways, routes --------------------------------------------
for fields, label, field in (
        ({"subnet": "10.40.0.0/33"}, "subnet-prefix-33", "10.40.0.0/33"),
        ({"subnet": "10.40.0.0"}, "subnet-no-prefix", "10.40.0.0"),
        ({"subnet": "abc"}, "subnet-garbage", "abc"),
        ({"subnet": ""}, "subnet-empty", ""),
        ({"subnet": " 10.40.0.0/24"}, "subnet-space", "10.40.0.0/24"),
        ({"subnet": "fd00::/129"}, "subnet-v6-129", "fd00::/129"),
        ({"subnet": "10.40.0.0/32"}, "subnet-too-small", "10.40.0.0/32"),
        ({"subnet": "10.40.0.0/24", "rangeStart": "10.41.0.1"}, "range-start-outside", "10.41.0.1"),
        ({"subnet": "10.40.0.0/24", "rangeEnd": "10.41.0.1"}, "range-end-outside", "10.41.0.1"),
        ({"subnet": "10.40.0.0/24", "rangeStart": "10.40.0.50", "rangeEnd": "10.40.0.10"}, "range-reversed", "10.40.0"),
        ({"subnet": "10.40.0.0/24", "rangeStart": "x"}, "range-start-garbage", "x"),
        ({"subnet": "10.40.0.0/24", "gateway": "10.41.0.1"}, "gateway-outside", "10.41.0.1"),
        ({"subnet": "10.40.0.0/24", "gateway": "nope"}, "gateway-garbage", "nope"),
        ({"subnet": None, "ranges": [[]]}, "ranges-empty-set", "range"),
        ({"subnet": None, "ranges": []}, "ranges-none", "range"),
        ({"subnet": None, "ranges": [[{"subnet": "10.40.0.0/24"}], [{"subnet": "10.40.0.0/25"}]]}, "ranges-overlap",
         "overlap"),
        ({"subnet": None, "ranges": [[{"subnet": "10.40.0.0/24"}, {"subnet": "fd00::/64"}]]}, "ranges-mixed-family",
         "mixed address families"),
        ({"routes": [{"dst": "x"}]}, "route-dst-garbage", "x"),
        ({"routes": [{"dst": "0.0.0.0/0", "gw": "x"}]}, "route-gw-garbage", "x"),
        ({"routes": [{"gw": "10.40.0.1"}]}, "route-dst-missing", "CIDR"),
        ({"routes": [{"dst": "10.0.0.0/33"}]}, "route-dst-prefix-33", "10.0.0.0/33")):
    better = ('a route without dst is refused; Go v1.1.1 answers with a route to "<nil>"'
              if label == "route-dst-missing" else "")
    add(Case(f"host-local-{label}", "host-local", ipam(**fields), field=field, better=better))

# -- MTUs, VLAN ids, MACs -------------------------------------------------------------
for value, label in ((-1, "negative"), (70000, "huge"), ("1500", "string"), (1.5, "fraction"), (2**64, "beyond-int64"),
                     (100, "small")):
    add(Case(f"bridge-mtu-{label}", "bridge", {"mtu": value}, field="mtu",
             better="refused before anything is made; Go hands -1 to the kernel" if value == -1 else ""))
    add(Case(f"tuning-mtu-{label}", "tuning", {"mtu": value, "sysctl": None}, env={"CNI_IFNAME": "lo"}, field="mtu"))
for value, label in ((-1, "negative"), (4095, "4095"), (5000, "5000"), ("1", "string"), (True, "bool")):
    add(Case(f"bridge-vlan-{label}", "bridge", {"vlan": value}, field="vlan"))
for trunk, label in (([{"id": 0}], "id-0"), ([{"minID": 9, "maxID": 3}], "reversed"), ([{"maxID": 3}], "max-only"),
                     ("x", "string"), ([5], "number-entry")):
    add(Case(f"bridge-vlantrunk-{label}", "bridge", {"vlanTrunk": trunk},
             field={"string": "vlanTrunk", "number-entry": "vlanTrunk", "max-only": "minID"}.get(label, "trunk"),
             better="Debian's Go bridge (v1.1.1) predates vlanTrunk and ignores it"))
for value, label in (("zz:zz:zz:zz:zz:zz", "garbage"), ("00:11:22:33:44", "short"), ("00:11:22:33:44:55:66", "long"),
                     ("", "empty-and-bad-arg")):
    add(Case(f"tuning-mac-{label}", "tuning", {"mac": value, "sysctl": None},
             env={"CNI_ARGS": "MAC=bad"} if not value else {}, field="MAC" if not value else value))
add(Case("bridge-runtimeconfig-mac-garbage", "bridge", {"runtimeConfig": {"mac": "zz"}}, field="zz"),
    Case("bridge-args-cni-mac-garbage", "bridge", {"args": {"cni": {"mac": "01:02"}}}, field="01:02"))

# -- wrong JSON types everywhere ----------------------------------------------------------
for plugin, change, label, field in (
        ("bridge", {"name": 1}, "name-number", "name"),
        ("bridge", {"cniVersion": 1}, "cniversion-number", "cniVersion"),
        ("bridge", {"isGateway": "yes"}, "isgateway-string", "isGateway"),
        ("bridge", {"ipMasq": 1}, "ipmasq-number", "ipMasq"),
        ("bridge", {"hairpinMode": "x"}, "hairpin-string", "hairpinMode"),
        ("bridge", {"ipam": 1}, "ipam-number", "ipam"),
        ("bridge", {"dns": []}, "dns-array", "dns"),
        ("bridge", {"capabilities": 1}, "capabilities-number", "capabilities"),
        ("bridge", {"prevResult": "x"}, "prevresult-string", "prevResult"),
        ("bridge", {"args": []}, "args-array", "args"),
        ("host-local", ipam(subnet=1), "subnet-number", "subnet"),
        ("host-local", ipam(ranges="x"), "ranges-string", "ranges"),
        ("host-local", ipam(routes={}), "routes-object", "routes"),
        ("host-local", ipam(dataDir=[]), "datadir-array", "dataDir"),
        ("host-local", {"ipam": "x"}, "ipam-string", "ipam"),
        ("tuning", {"sysctl": []}, "sysctl-array", "sysctl"),
        ("tuning", {"sysctl": {"net.ipv4.conf.IFNAME.rp_filter": 2}}, "sysctl-value-number", "sysctl"),
        ("tuning", {"promisc": "yes"}, "promisc-string", "promisc"),
        ("tuning", {"prevResult": 1}, "prevresult-number", "prevResult"),
        ("tuning", {"runtimeConfig": []}, "runtimeconfig-array", "runtimeConfig"),
        ("loopback", {"capabilities": []}, "capabilities-array", "capabilities"),
        ("portmap", {"snat": "yes"}, "snat-string", "snat"),
        ("portmap", {"markMasqBit": "13"}, "markmasqbit-string", "markMasqBit"),
        ("portmap", {"conditionsV4": "-s 10.0.0.0/8"}, "conditions-string", "conditionsV4"),
        ("portmap", {"runtimeConfig": {"portMappings": {}}}, "portmappings-object", "portMappings"),
        ("portmap", {"runtimeConfig": {"portMappings": [{"hostPort": "80", "containerPort": 80}]}},
         "hostport-string", "hostPort"),
        ("portmap", {"prevResult": 1}, "prevresult-number", "prevResult"),
        ("loopback", {"dns": {"nameservers": "x"}}, "dns-nameservers-string", "nameservers")):
    add(Case(f"{plugin}-type-{label}", plugin, change, field=field))

# -- portmap: values that end up in iptables rules --------------------------------------------
add(Case("portmap-mark-bit-40", "portmap", {"markMasqBit": 40}, field="MasqMarkBit"),
    Case("portmap-host-port-0", "portmap", {"runtimeConfig": {"portMappings": [
        {"hostPort": 0, "containerPort": 80, "protocol": "tcp"}]}}, field="host port"),
    Case("portmap-host-port-70000", "portmap", {"runtimeConfig": {"portMappings": [
        {"hostPort": 70000, "containerPort": 80, "protocol": "tcp"}]}}, field="70000"),
    Case("portmap-protocol-line-break", "portmap", {"runtimeConfig": {"portMappings": [
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp\n-A OUTPUT -j DROP"}]}}, field="tcp"),
    Case("portmap-condition-line-break", "portmap", {"conditionsV4": ["-s", "10.0.0.0/8\n-A OUTPUT -j DROP"]},
         field="10.0.0.0/8"),
    Case("portmap-external-chain-missing", "portmap", {"externalSetMarkChain": "CNITEST-NO-SUCH-CHAIN"},
         field="CNITEST-NO-SUCH-CHAIN"))

# -- key case -------------------------------------------------------------------------
add(Case("bridge-case-name-escape", "bridge", {"name": None, "NAME": "../x"}, field="network name"),
    Case("bridge-case-later-key-wins", "bridge", {"Name": "../x"}, field="network name"),
    Case("bridge-case-ipam-type", "bridge", {"ipam": None, "IPAM": {"TYPE": "../x", "subnet": "10.40.0.0/24"}},
         field="../x"),
    Case("host-local-case-subnet", "host-local", ipam(SUBNET="bad"), field="bad"),
    Case("tuning-case-sysctl", "tuning", {"sysctl": None, "SysCtl": {"kernel.hostname": "x"}}, env={"CNI_IFNAME": "lo"},
         field="kernel"),
    Case("bridge-case-mtu-kind", "bridge", {"MTU": "x"}, field="mtu"))

# -- stdin: encoding, truncation, size, depth, version -----------------------------------------
add(Case("stdin-empty", "bridge", b"", field="unmarshal"),
    Case("stdin-whitespace", "bridge", b" \n\t", field="unmarshal"),
    Case("stdin-null", "bridge", b"null", field="name"),
    Case("stdin-array", "bridge", b"[]", field="unmarshal"),
    Case("stdin-number", "bridge", b"1", field="unmarshal"),
    Case("stdin-truncated", "bridge", b'{"cniVersion":"1.0.0","name":"hnet","type":"bridge"', field="unmarshal"),
    Case("stdin-truncated-string", "bridge", b'{"cniVersion":"1.0.0","name":"hn', field="unmarshal"),
    Case("stdin-utf8-bom", "bridge", b'\xef\xbb\xbf{"name":"hnet"}', field="unmarshal"),
    Case("stdin-utf16", "bridge", '{"name":"hnet"}'.encode("utf-16"), field="unmarshal"),
    Case("stdin-invalid-utf8-in-key", "host-local", b'{"cniVersion":"1.0.0","name":"hnet","\xff":1,"type":"host-local"}',
         field="ipam"),
    Case("stdin-nested-10001", "bridge", b'{"name":"hnet","x":' + b"[" * 10001 + b"]" * 10001 + b"}",
         field="exceeded max depth"),
    Case("stdin-huge-invalid", "bridge", b"[" * (30 << 20), field="unmarshal"),
    Case("stdin-huge-garbage-tail", "bridge", b'{"name":"hnet"}' + b" " * (20 << 20) + b"x", field="unmarshal"),
    Case("stdin-nan", "bridge", b'{"name":"hnet","x":NaN}', field="unmarshal"),
    Case("stdin-nul-byte", "bridge", b'{"name":"hn\x00et"}', field="unmarshal"),
    Case("stdin-single-quotes", "bridge", b"{'name':'hnet'}", field="unmarshal"),
    Case("stdin-comment", "bridge", b'{"name":"hnet"} // c', field="unmarshal"),
    Case("stdin-two-docs", "bridge", b'{"name":"hnet"}{"name":"x"}', field="unmarshal"))
for version, label in (("9.9.9", "future"), ("1.0", "two-part"), ("abc", "garbage"), ("0.4.0-rc1", "suffix"),
                       ("1.0.0 ", "trailing-space")):
    add(Case(f"cniversion-{label}", "bridge", {"cniVersion": version}, field=version.strip()))
add(Case("cniversion-check-too-old", "bridge", {"cniVersion": "0.3.1", "prevResult": PREV}, command="CHECK",
         field="CHECK"),
    Case("cniversion-gc-too-old", "bridge", {"cniVersion": "1.0.0"}, command="GC", field="GC",
         better="Debian's Go bridge (v1.1.1) predates GC and answers with a different code"))
