"""Conversion between every ordered pair of the seven result versions.

The same dual-stack result is written in each source version; what survives a
conversion follows the reference's converters:

* 1.x -> 0.3/0.4 drops ``mtu``/``socketPath``/``pciID`` and recomputes ``version``;
* 0.3/0.4 -> 1.x drops ``version``;
* anything -> 0.1/0.2 keeps the first IPv4 and the first IPv6 address and sorts
  routes into ``ip4``/``ip6`` by destination family, keeping only dst and gw;
* 0.1/0.2 -> newer turns ``ip4`` then ``ip6`` into ``ips`` and concatenates routes.
"""

from __future__ import annotations

import copy
import itertools

import pytest

from cnicore.types import (
    VERSIONS_020,
    VERSIONS_040,
    VERSIONS_100,
    IPConfig,
    Result,
    Result020,
    Result040,
    ResultError,
    Route,
    parse_result,
)
from cnicore.types._base import convert

ALL = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
CLASS = {**{v: Result020 for v in VERSIONS_020}, **{v: Result040 for v in VERSIONS_040},
         **{v: Result for v in VERSIONS_100}}

DNS = {"nameservers": ["10.96.0.10", "fd00:96::a"], "domain": "cluster.local",
       "search": ["default.svc.cluster.local"], "options": ["ndots:5", "edns0"]}

# -- the rich result, as each family writes it --------------------------------------------

RICH_1X = {
    "interfaces": [
        {"name": "eth0", "mac": "0a:58:0a:00:00:02", "mtu": 1450,
         "sandbox": "/var/run/netns/cni-1234", "socketPath": "/run/vhost-user/eth0.sock",
         "pciID": "0000:3b:00.1"},
        {"name": "net1", "mac": "0a:58:0a:01:00:02", "mtu": 9000,
         "sandbox": "/var/run/netns/cni-1234"},
    ],
    "ips": [
        {"interface": 0, "address": "10.0.0.2/24", "gateway": "10.0.0.1"},
        {"interface": 0, "address": "2001:db8::2/64", "gateway": "2001:db8::1"},
        {"interface": 1, "address": "10.1.0.2/16", "gateway": "10.1.0.1"},
        {"interface": 1, "address": "2001:db8:1::2/64"},
        {"address": "192.168.50.9/32"},
    ],
    "routes": [
        {"dst": "0.0.0.0/0", "gw": "10.0.0.1", "mtu": 1400, "advmss": 1360,
         "priority": 100, "table": 0, "scope": 0},
        {"dst": "::/0", "gw": "2001:db8::1", "priority": 5, "scope": 253},
        {"dst": "192.168.0.0/16", "gw": "10.1.0.1", "table": 100},
        {"dst": "2001:db8:99::/48"},
    ],
    "dns": DNS,
}

# 1.x minus what 0.3/0.4 cannot carry: the same thing as 0.3/0.4 writes it, minus ``version``.
RICH_1X_STRIPPED = {
    **RICH_1X,
    "interfaces": [
        {"name": "eth0", "mac": "0a:58:0a:00:00:02", "sandbox": "/var/run/netns/cni-1234"},
        {"name": "net1", "mac": "0a:58:0a:01:00:02", "sandbox": "/var/run/netns/cni-1234"},
    ],
}

RICH_040 = {
    **RICH_1X_STRIPPED,
    "ips": [dict(ip, version=v) for ip, v in zip(RICH_1X["ips"], "46464")],
}

RICH_020 = {
    "ip4": {"ip": "10.0.0.2/24", "gateway": "10.0.0.1",
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.0.1"},
                       {"dst": "192.168.0.0/16", "gw": "10.1.0.1"}]},
    "ip6": {"ip": "2001:db8::2/64", "gateway": "2001:db8::1",
            "routes": [{"dst": "::/0", "gw": "2001:db8::1"}, {"dst": "2001:db8:99::/48"}]},
    "dns": DNS,
}

# 0.1/0.2 taken up to 0.3/0.4: ip4 then ip6, ip4's routes then ip6's, no interfaces.
FROM_020_AS_040 = {
    "ips": [{"version": "4", "address": "10.0.0.2/24", "gateway": "10.0.0.1"},
            {"version": "6", "address": "2001:db8::2/64", "gateway": "2001:db8::1"}],
    "routes": RICH_020["ip4"]["routes"] + RICH_020["ip6"]["routes"],  # type: ignore[index]
    "dns": DNS,
}
FROM_020_AS_1X = {
    **FROM_020_AS_040,
    "ips": [{"address": "10.0.0.2/24", "gateway": "10.0.0.1"},
            {"address": "2001:db8::2/64", "gateway": "2001:db8::1"}],
}

SOURCE = {"020": RICH_020, "040": RICH_040, "1x": RICH_1X}

# What a (source family, target family) conversion yields, as a decoded dict.
EXPECTED = {
    ("1x", "1x"): RICH_1X, ("1x", "040"): RICH_040, ("1x", "020"): RICH_020,
    ("040", "1x"): RICH_1X_STRIPPED, ("040", "040"): RICH_040, ("040", "020"): RICH_020,
    ("020", "1x"): FROM_020_AS_1X, ("020", "040"): FROM_020_AS_040, ("020", "020"): RICH_020,
}


def fam(version: str) -> str:
    return "020" if version in VERSIONS_020 else "040" if version in VERSIONS_040 else "1x"


def build(version: str, data: dict[str, object] | None = None) -> Result | Result040 | Result020:
    """The rich result (or ``data``) parsed as ``version``."""
    body = copy.deepcopy(SOURCE[fam(version)] if data is None else data)
    return parse_result(dict(body, cniVersion=version), version)


PAIRS = list(itertools.product(ALL, ALL))


def test_pair_count() -> None:
    assert len(PAIRS) == 49


@pytest.mark.parametrize(("src", "dst"), PAIRS)
class TestEveryPair:
    def test_version_class_and_content(self, src: str, dst: str) -> None:
        result = build(src)
        out = convert(result, dst)
        assert type(out) is CLASS[dst]
        assert out.cni_version == dst
        assert out.to_dict() == dict(copy.deepcopy(EXPECTED[fam(src), fam(dst)]), cniVersion=dst)

    def test_same_version_is_same_object_else_new(self, src: str, dst: str) -> None:
        result = build(src)
        out = convert(result, dst)
        assert (out is result) == (src == dst)

    def test_source_left_untouched(self, src: str, dst: str) -> None:
        result = build(src)
        before = result.to_json()
        out = convert(result, dst)
        if out is not result:  # the copy is independent of the source
            if isinstance(out, Result020):
                assert out.ip4 is not None
                out.ip4.routes.clear()
                out.ip4.gateway = ""
            else:
                out.ips[0].gateway = ""
                out.routes[0].gw = ""
                out.routes.clear()
            out.dns.nameservers.clear()
        assert result.to_json() == before
        assert result.cni_version == src

    def test_output_reparses_as_target(self, src: str, dst: str) -> None:
        out = convert(build(src), dst)
        again = parse_result(out.to_json(), dst)
        assert again == out

    def test_method_matches_function(self, src: str, dst: str) -> None:
        assert build(src).convert(dst) == convert(build(src), dst)


# -- the down-conversion rules to 0.1.0 / 0.2.0 ---------------------------------------------------

NO_IPS = {
    "interfaces": [{"name": "eth0", "sandbox": "/var/run/netns/x"}],
    "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.0.1"}],
    "dns": {"nameservers": ["10.0.0.53"]},
}


@pytest.mark.parametrize("src", VERSIONS_040 + VERSIONS_100)
@pytest.mark.parametrize("dst", VERSIONS_020)
def test_no_ip_cannot_go_to_020(src: str, dst: str) -> None:
    with pytest.raises(ResultError) as info:
        convert(build(src, NO_IPS), dst)
    assert str(info.value) == "cannot convert: no valid IP addresses"


@pytest.mark.parametrize("src", VERSIONS_040 + VERSIONS_100)
def test_ipv6_only_drops_ipv4_routes(src: str) -> None:
    data = {"ips": [{"address": "fd00::10/64", "gateway": "fd00::1",
                     **({"version": "6"} if fam(src) == "040" else {})},
                    {"address": "fd00:1::10/64", **({"version": "6"} if fam(src) == "040" else {})}],
            "routes": [{"dst": "10.0.0.0/8", "gw": "10.0.0.1"},
                       {"dst": "fd00:2::/48", "gw": "fd00::1", "mtu": 1280, "table": 5}]}
    out = convert(build(src, data), "0.2.0")
    assert isinstance(out, Result020)
    assert out.ip4 is None
    assert out.to_dict() == {
        "cniVersion": "0.2.0",
        "ip6": {"ip": "fd00::10/64", "gateway": "fd00::1",
                "routes": [{"dst": "fd00:2::/48", "gw": "fd00::1"}]},
        "dns": {},
    }


def test_020_picks_by_version_field_of_040() -> None:
    # The reference trusts the 0.3/0.4 ``version`` field, not the address.
    result = Result040("0.4.0", ips=[IPConfig("10.0.0.1/8", version=""),
                                     IPConfig("10.0.0.2/8", version="4")])
    out = convert(result, "0.1.0")
    assert isinstance(out, Result020) and out.ip4 is not None
    assert out.ip4.ip == "10.0.0.2/8"
    with pytest.raises(ResultError, match="no valid IP addresses"):
        convert(Result040("0.4.0", ips=[IPConfig("10.0.0.1/8")]), "0.2.0")


def test_ipv4_mapped_route_counts_as_ipv4() -> None:
    result = Result("1.0.0", ips=[IPConfig("10.0.0.2/24")],
                    routes=[Route("::ffff:10.9.0.0/112")])
    out = convert(parse_result(result.to_json(), "1.0.0"), "0.2.0")
    assert isinstance(out, Result020) and out.ip4 is not None
    assert [r.dst for r in out.ip4.routes] == ["10.9.0.0/16"]


def test_1x_to_040_recomputes_version_and_drops_interface_fields() -> None:
    out = convert(build("1.1.0"), "0.4.0")
    assert isinstance(out, Result040)
    assert [ip.version for ip in out.ips] == ["4", "6", "4", "6", "4"]
    assert all((i.mtu, i.socket_path, i.pci_id) == (0, "", "") for i in out.interfaces)
    assert b"mtu\": 1450" not in out.to_json() and b"pciID" not in out.to_json()


def test_040_to_1x_drops_version() -> None:
    out = convert(build("0.3.1"), "1.0.0")
    assert all("version" not in ip for ip in out.to_dict()["ips"])
    assert b'"version"' not in out.to_json()


# -- special versions -----------------------------------------------------------------------------

@pytest.mark.parametrize("src", ALL)
def test_empty_target_means_010(src: str) -> None:
    result = build(src)
    out = convert(result, "")
    assert out.cni_version == "0.1.0" and type(out) is Result020
    assert (out is result) == (src == "0.1.0")


@pytest.mark.parametrize("src", ALL)
@pytest.mark.parametrize("dst", ["0.5.0", "1.2.0", "2.0.0", "1.0", "0.4", "v1.0.0", "latest"])
def test_unknown_target(src: str, dst: str) -> None:
    with pytest.raises(ResultError) as info:
        convert(build(src), dst)
    assert str(info.value) == f"no converter for CNI result version {src} to {dst}"


def test_source_version_outside_its_family() -> None:
    with pytest.raises(ResultError, match="no converter for CNI result version 0.4.0 to 1.1.0"):
        convert(Result("0.4.0"), "1.1.0")
    with pytest.raises(ResultError, match="no converter"):
        convert(Result020("1.0.0", ip4=None), "0.2.0")


@pytest.mark.parametrize(("cls", "implemented"), [(Result, "1.1.0"), (Result040, "0.4.0"),
                                                  (Result020, "0.2.0")])
def test_missing_source_version_is_family_newest(cls: type, implemented: str) -> None:
    result = cls()
    if cls is Result020:
        result.ip4 = build("0.2.0").ip4  # type: ignore[attr-defined]
    assert convert(result, implemented) is result
    assert result.cni_version == implemented
    other = cls()
    if cls is Result020:
        other.ip4 = build("0.2.0").ip4  # type: ignore[attr-defined]
    assert convert(other, "0.3.0").cni_version == "0.3.0"


# -- round trips ----------------------------------------------------------------------------------

def test_round_trip_110_040_110_loses_only_interface_extras() -> None:
    original = build("1.1.0")
    back = convert(convert(original, "0.4.0"), "1.1.0")
    assert back.to_dict() == dict(copy.deepcopy(RICH_1X_STRIPPED), cniVersion="1.1.0")
    # route attributes (mtu/advmss/priority/table/scope) survive the trip
    assert [r.to_dict() for r in back.routes] == RICH_1X["routes"]


@pytest.mark.parametrize(("start", "via"), [
    ("0.4.0", "1.0.0"), ("0.3.0", "1.1.0"), ("0.3.1", "0.4.0"), ("1.0.0", "1.1.0"),
    ("1.1.0", "1.0.0"), ("0.1.0", "0.2.0"), ("0.2.0", "0.4.0"), ("0.2.0", "1.1.0"),
    ("0.1.0", "1.0.0"),
])
def test_lossless_round_trips(start: str, via: str) -> None:
    original = build(start)
    assert convert(convert(original, via), start) == original


def test_round_trip_through_020_keeps_first_of_each_family() -> None:
    back = convert(convert(build("1.1.0"), "0.2.0"), "1.1.0")
    assert back.to_dict() == dict(copy.deepcopy(FROM_020_AS_1X), cniVersion="1.1.0")


def test_chain_through_every_version() -> None:
    result = build("0.3.0")
    for version in ("0.3.1", "0.4.0", "1.0.0", "1.1.0", "1.0.0", "0.4.0", "0.3.0"):
        result = convert(result, version)
    assert result == build("0.3.0")


def test_every_family_registers_its_own_converters() -> None:
    """Each family module registers the conversions it knows (Go's per-package init):
    together they cover every ordered pair, and each pair is served by the newer side."""
    from cnicore.types import _base, _v020, _v040, _v100

    assert set(_base._CONVERTERS) == set(itertools.product(ALL, ALL))
    owner = {_v020: VERSIONS_020, _v040: VERSIONS_040, _v100: VERSIONS_100}
    for (src, dst), fn in _base._CONVERTERS.items():
        module = next(m for m in owner if fn.__module__ == m.__name__)
        newest = max(src, dst, key=ALL.index)
        assert newest in owner[module], (src, dst, fn)
