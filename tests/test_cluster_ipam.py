"""cluster-ipam without etcd: config errors, the key model, the server's opt-in preload, no endpoint at all."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import time

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from cni_plugins_builtin.cluster_ipam.config import load_cluster, load_config
from cni_plugins_builtin.cluster_ipam.model import Attachment, Keys, prefix_end
from cnicore.errors import CNIError


def conf(**ipam):
    obj = {"type": "cluster-ipam", "etcd": {"endpoints": ["http://127.0.0.1:2379"]},
           "ranges": [[{"subnet": "10.0.0.0/24"}]]}
    obj.update(ipam)
    return {"cniVersion": "1.1.0", "name": "net", "ipam": obj}


def error_of(fn, *args):
    with pytest.raises(CNIError) as info:
        fn(*args)
    return info.value


def test_defaults():
    addresses, cluster = load_config(conf())
    assert [str(r) for r in addresses.ranges] == ["10.0.0.1-10.0.0.254"]
    assert cluster.node == os.uname().nodename and cluster.prefix == "/cni-ipam/v1"
    assert cluster.etcd.endpoints == [("http", "127.0.0.1", 2379)] and cluster.etcd.timeout == 10
    assert cluster.gc_grace == 60 and cluster.network == "net"


@pytest.mark.parametrize("ipam, message", [
    ({"etcd": None}, "cluster-ipam: ipam.etcd must be an object with endpoints"),
    ({"etcd": {"endpoints": []}}, "cluster-ipam: etcd.endpoints must be a non-empty list of URLs"),
    ({"etcd": {"endpoints": ["10.0.0.1:2379"]}}, "cluster-ipam: invalid etcd endpoint '10.0.0.1:2379': "
                                                 "expected http(s)://host:port"),
    ({"etcd": {"endpoints": ["http://h:99999"]}}, "cluster-ipam: invalid etcd endpoint 'http://h:99999'"),
    ({"etcd": {"endpoints": ["http://h"], "timeoutSeconds": "5"}},
     "cluster-ipam: etcd.timeoutSeconds must be a number >= 0.1"),
    ({"etcd": {"endpoints": ["http://h"], "cert": "/etc/hostname"}}, "cluster-ipam: etcd.cert and etcd.key go together"),
    ({"etcd": {"endpoints": ["http://h"], "cacert": "/nonexistent/ca.pem"}},
     "cluster-ipam: etcd.cacert /nonexistent/ca.pem: not readable"),
    ({"etcd": {"endpoints": ["http://h"], "cacert": "/etc/hostname"}},
     "cluster-ipam: etcd TLS files need https:// endpoints"),
    ({"nodeName": "a/b"}, "cluster-ipam: invalid nodeName 'a/b'"),
    ({"prefix": "relative"}, "cluster-ipam: invalid prefix 'relative': an absolute key path"),
    ({"gcGraceSeconds": -1}, "cluster-ipam: gcGraceSeconds must be a number >= 0"),
    ({"stateDir": "run/x"}, "cluster-ipam: invalid stateDir 'run/x': an absolute path"),
])
def test_cluster_config_errors_are_code_999(ipam, message):
    err = error_of(load_cluster, conf(**ipam))
    assert (err.code, err.msg) == (999, message)


def test_address_part_is_host_locals_with_its_errors():
    err = error_of(load_config, conf(ranges=[[{"subnet": "10.0.0.0/24", "rangeStart": "10.0.1.5"}]]))
    assert (err.code, err.msg) == (999, "invalid range set 0: RangeStart 10.0.1.5 not in network 10.0.0.0/24")
    err = error_of(load_config, conf(ranges=[]))
    assert (err.code, err.msg) == (999, "no IP ranges specified")
    addresses, _ = load_config(conf(), "IP=10.0.0.9")
    assert [str(ip) for ip in addresses.requested] == ["10.0.0.9"]


def test_keys_sort_like_addresses_and_parse_back():
    keys = Keys("/p/", "net")
    v4 = [ipaddress.ip_address(a) for a in ("10.0.0.2", "10.0.0.10", "10.0.1.1", "9.255.255.255")]
    assert sorted(v4, key=keys.ip) == sorted(v4)
    v6 = ipaddress.ip_address("a00::1")
    assert keys.ip(v6).startswith("/p/net/ips/v6/") and not keys.ip(v6).startswith(keys.ip_prefix(4))
    for ip in v4 + [v6]:
        assert keys.parse_ip(keys.ip(ip)) == ip
    assert keys.parse_ip("/p/net/ips/v4/zz") is None
    assert keys.parse_attachment(keys.attachment("node-1", "ctr", "eth0")) == ("node-1", "ctr", "eth0")
    assert prefix_end("/p/net/") == "/p/net0"


def test_attachment_record_round_trip():
    record = Attachment("ctr", "eth0", "n1", [("10.0.0.5/24", "10.0.0.1"), ("fd00::5/64", "")], 1234.5678)
    back = Attachment.decode(record.encode())
    assert (back.container_id, back.ifname, back.node, back.ips, back.created) == (
        "ctr", "eth0", "n1", record.ips, 1234.568)
    assert [str(ip) for ip in back.addresses()] == ["10.0.0.5", "fd00::5"]
    with pytest.raises(ValueError):
        Attachment.decode(b'{"ips": 3}')


def test_server_preloads_the_etcd_transport_and_never_requests():
    """The etcd transport is the standard library's (http.client, ssl): the warm server
    follows cluster-ipam's lazy imports to it whatever CNICORE_SERVER_PRELOAD says, so a
    worker pays nothing; requests and etcd3gw (~18 MB of heap) are no longer loaded at all.
    (VERSION's own import budget is in test_import_budget.py.)"""
    code = ("import sys; from cnicore.server._daemon import preload; preload(); "
            "print('cni_plugins_builtin.cluster_ipam.transport' in sys.modules, "
            "'requests' in sys.modules or 'etcd3gw' in sys.modules)")
    for preload in ("", "tuning,cluster-ipam"):
        env = dict(os.environ, CNICORE_SERVER_PRELOAD=preload)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
        assert out.stdout.strip() == "True False", out.stderr


@pytest.mark.privileged
def test_no_endpoint_answers(cni_runner, container_netns):
    """In a fresh namespace nothing listens: ADD fails with 11 within the budget, STATUS with 50."""
    from cni_plugins_builtin.cluster_ipam import plugin

    runner = cni_runner(plugin, "cluster-ipam")
    config = conf(etcd={"endpoints": ["http://127.0.0.1:2379", "http://127.0.0.1:2380"], "timeoutSeconds": 1})
    start = time.monotonic()
    out = runner.run("ADD", config, netns=container_netns)
    assert out.error.code == 11 and out.error.msg == "cluster-ipam: etcd cluster unavailable"
    assert "127.0.0.1:2379" in out.error.details
    assert time.monotonic() - start < 2
    status = runner.run("STATUS", config)
    assert status.error.code == 50 and status.error.msg == "cluster-ipam: no etcd endpoint answers"
    deleted = runner.run("DEL", config)
    assert deleted.error.code == 11


NESTING = "is a key tree of every network, so this network's keys could lie inside another's"


@pytest.mark.parametrize("prefix, name, message", [
    # network "net" under "/p" has its keys in /p/net/ips/... and /p/net/attach/...
    ("/p/net/ips/v4", "x", "cluster-ipam: invalid prefix '/p/net/ips/v4': 'ips' " + NESTING),
    ("/p/net/attach", "node-a", "cluster-ipam: invalid prefix '/p/net/attach': 'attach' " + NESTING),
    ("/p/net", "ips", "cluster-ipam: invalid network name 'ips': 'ips' " + NESTING),
    ("/p/net", "attach", "cluster-ipam: invalid network name 'attach': 'attach' " + NESTING),
])
def test_nested_key_trees_are_refused_at_config_time(prefix, name, message):
    """Issue 19, defect 5: one network's GC deleted another's address keys when its
    keys lay inside the other's. Refused whatever the other networks are."""
    config = conf(prefix=prefix)
    config["name"] = name
    err = error_of(load_cluster, config)
    assert (err.code, err.msg) == (999, message)
    for fine in ("/p", "/p/net", "/cni-ipam/v1", "/ipsx/attached"):
        assert load_cluster(conf(prefix=fine)).prefix == fine


@pytest.mark.parametrize("value", [
    b'{"containerID":"c","ifname":"eth0","node":"n","ips":[],"created":[1]}',
    b'{"containerID":"c","ifname":"eth0","node":"n","ips":[],"created":"yesterday"}',
    b'{"containerID":"c","ifname":"eth0","node":"n","ips":{},"created":1}',
    b'{"containerID":"c","ifname":"eth0","node":"n","ips":[{"address":"not-an-ip"}],"created":1}',
    b'{"containerID":"c","ifname":"eth0","node":"n","ips":[{"address":7}],"created":1}',
    b'{"containerID":["c"],"ifname":"eth0","node":"n","ips":[],"created":1}',
    b'\xff\xfe', b"[]", b"null",
])
def test_a_malformed_record_is_a_value_error(value):
    """Issue 19, defects 3 and 9: only ValueError, whatever the record holds."""
    with pytest.raises(ValueError):
        Attachment.decode(value)


def _urlsplit_endpoint(url):
    """What parse_endpoint gave before its fast path: urllib.parse's reading, or None (refused)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        port = parts.port or 2379
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        return None
    return parts.scheme, parts.hostname, port


ENDPOINT_PIECES = ["http", "https", "HTTP", "ftp", "://", ":", "/", "//", "[", "]", "::1", "@", "?", "#", "u:p",
                   "127.0.0.1", "etcd-1.Example", "h_1", "0", "2379", "65535", "65536", "99999", "+1", " ", "x", "٣"]


@given(st.lists(st.sampled_from(ENDPOINT_PIECES), max_size=8).map("".join))
@example("http://127.0.0.1:2379")
@example("https://Etcd-1.example:0/")
@example("http://h:")
def test_endpoints_read_without_urllib_as_urllib_reads_them(url):
    # parse_endpoint reads the common shape itself (urllib.parse loads re: ~10 ms of a cold
    # exec) and hands every other shape to urlsplit: the result must be urlsplit's.
    from cni_plugins_builtin.cluster_ipam.config import parse_endpoint

    try:
        ours = parse_endpoint(url)
    except CNIError:
        ours = None
    assert ours == _urlsplit_endpoint(url)
