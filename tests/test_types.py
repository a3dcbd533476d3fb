"""Result models: parsing, validation, normalisation and byte-exact emission.

Expected bytes are derived from the reference's encoders: ``MarshalIndent``
with four spaces and no trailing newline; the 1.x result is re-marshalled
through a map (every key sorted, empty ``dns`` dropped); the older families
keep struct field order and always print ``dns``.
"""

from __future__ import annotations

import json

import pytest

from cnicore import wire
from cnicore.types import (
    DNS,
    VERSIONS_020,
    VERSIONS_040,
    VERSIONS_100,
    Interface,
    IPConfig,
    IPConfig020,
    Result,
    Result020,
    Result040,
    ResultError,
    Route,
    family_of,
    is_ipv4,
    parse_result,
    result_from_json,
)


def text(block: str) -> bytes:
    """A triple-quoted expectation without its leading newline, as bytes."""
    assert block.startswith("\n")
    return block[1:].encode()


# -- 1.0.0 / 1.1.0 --------------------------------------------------------------------

RESULT_110 = {
    "cniVersion": "1.1.0",
    "interfaces": [
        {"name": "eth0", "mac": "0a:58:0a:f4:00:05", "mtu": 1450,
         "sandbox": "/var/run/netns/pod1", "socketPath": "/run/vhost/eth0.sock",
         "pciID": "0000:3b:00.2"},
        {"name": "veth1a2b"},
    ],
    "ips": [
        {"interface": 0, "address": "10.244.0.5/24", "gateway": "10.244.0.1"},
        {"interface": 0, "address": "fd00:10:244::5/64"},
    ],
    "routes": [
        {"dst": "0.0.0.0/0", "gw": "10.244.0.1", "mtu": 1400, "advmss": 1360,
         "priority": 20, "table": 0, "scope": 0},
        {"dst": "fd00:10:96::/112"},
    ],
    "dns": {"nameservers": ["10.96.0.10"], "domain": "cluster.local",
            "search": ["ns.svc.cluster.local", "svc.cluster.local"], "options": ["ndots:5"]},
}

EXPECTED_110 = text("""
{
    "cniVersion": "1.1.0",
    "dns": {
        "domain": "cluster.local",
        "nameservers": [
            "10.96.0.10"
        ],
        "options": [
            "ndots:5"
        ],
        "search": [
            "ns.svc.cluster.local",
            "svc.cluster.local"
        ]
    },
    "interfaces": [
        {
            "mac": "0a:58:0a:f4:00:05",
            "mtu": 1450,
            "name": "eth0",
            "pciID": "0000:3b:00.2",
            "sandbox": "/var/run/netns/pod1",
            "socketPath": "/run/vhost/eth0.sock"
        },
        {
            "name": "veth1a2b"
        }
    ],
    "ips": [
        {
            "address": "10.244.0.5/24",
            "gateway": "10.244.0.1",
            "interface": 0
        },
        {
            "address": "fd00:10:244::5/64",
            "interface": 0
        }
    ],
    "routes": [
        {
            "advmss": 1360,
            "dst": "0.0.0.0/0",
            "gw": "10.244.0.1",
            "mtu": 1400,
            "priority": 20,
            "scope": 0,
            "table": 0
        },
        {
            "dst": "fd00:10:96::/112"
        }
    ]
}""")


class TestResult100:
    def test_parse_fields(self) -> None:
        r = parse_result(json.dumps(RESULT_110), "1.1.0")
        assert type(r) is Result
        assert r.cni_version == "1.1.0"
        eth0, veth = r.interfaces
        assert (eth0.name, eth0.mac, eth0.mtu, eth0.sandbox, eth0.socket_path, eth0.pci_id) == (
            "eth0", "0a:58:0a:f4:00:05", 1450, "/var/run/netns/pod1",
            "/run/vhost/eth0.sock", "0000:3b:00.2")
        assert (veth.name, veth.mac, veth.mtu, veth.sandbox) == ("veth1a2b", "", 0, "")
        v4, v6 = r.ips
        assert (v4.address, v4.gateway, v4.interface) == ("10.244.0.5/24", "10.244.0.1", 0)
        assert (v6.address, v6.gateway, v6.interface) == ("fd00:10:244::5/64", "", 0)
        default, svc = r.routes
        assert (default.dst, default.gw, default.mtu, default.advmss, default.priority,
                default.table, default.scope) == ("0.0.0.0/0", "10.244.0.1", 1400, 1360, 20, 0, 0)
        assert (svc.gw, svc.mtu, svc.table, svc.scope) == ("", 0, None, None)
        assert r.dns.domain == "cluster.local"
        assert r.dns.search == ["ns.svc.cluster.local", "svc.cluster.local"]

    def test_exact_bytes_sorted_at_every_level(self) -> None:
        r = parse_result(json.dumps(RESULT_110).encode(), "1.1.0")
        assert r.to_json() == EXPECTED_110

    def test_built_in_python_prints_the_same(self) -> None:
        r = Result("1.1.0",
                   [Interface("eth0", "0a:58:0a:f4:00:05", "/var/run/netns/pod1", 1450,
                              "/run/vhost/eth0.sock", "0000:3b:00.2"),
                    Interface("veth1a2b")],
                   [IPConfig("10.244.0.5/24", "10.244.0.1", 0), IPConfig("fd00:10:244::5/64", "", 0)],
                   [Route("0.0.0.0/0", "10.244.0.1", 1400, 1360, 20, table=0, scope=0),
                    Route("fd00:10:96::/112")],
                   DNS(["10.96.0.10"], "cluster.local",
                       ["ns.svc.cluster.local", "svc.cluster.local"], ["ndots:5"]))
        assert r.to_json() == EXPECTED_110
        assert r == parse_result(EXPECTED_110, "1.1.0")

    def test_no_trailing_newline(self) -> None:
        assert not parse_result(RESULT_110, "1.1.0").to_json().endswith(b"\n")

    def test_empty_dns_omitted(self) -> None:
        r = Result("1.0.0", ips=[IPConfig("192.0.2.7/32")])
        assert r.to_json() == text("""
{
    "cniVersion": "1.0.0",
    "ips": [
        {
            "address": "192.0.2.7/32"
        }
    ]
}""")

    def test_minimal(self) -> None:
        assert Result("1.1.0").to_json() == b'{\n    "cniVersion": "1.1.0"\n}'
        assert Result().to_json() == b"{}"

    def test_partial_dns_sorted(self) -> None:
        r = Result("1.1.0", dns=DNS(search=["b.example"], domain="a.example"))
        assert r.to_json() == text("""
{
    "cniVersion": "1.1.0",
    "dns": {
        "domain": "a.example",
        "search": [
            "b.example"
        ]
    }
}""")

    def test_route_table_and_scope_zero_emitted_none_omitted(self) -> None:
        zero = Route.from_dict({"dst": "10.0.0.0/8", "table": 0, "scope": 0})
        assert zero.to_dict() == {"dst": "10.0.0.0/8", "table": 0, "scope": 0}
        absent = Route.from_dict({"dst": "10.0.0.0/8", "mtu": 0, "advmss": 0, "priority": 0})
        assert absent.to_dict() == {"dst": "10.0.0.0/8"}
        nulls = Route.from_dict({"dst": "10.0.0.0/8", "gw": None, "table": None, "scope": None})
        assert nulls.to_dict() == {"dst": "10.0.0.0/8"}

    def test_route_attribute_values(self) -> None:
        route = Route.from_dict({"dst": "::/0", "gw": "fe80::1", "mtu": 1280, "advmss": 1220,
                                 "priority": 1024, "table": 254, "scope": 253})
        assert route.to_dict() == {"dst": "::/0", "gw": "fe80::1", "mtu": 1280, "advmss": 1220,
                                   "priority": 1024, "table": 254, "scope": 253}

    def test_interface_omitempty(self) -> None:
        iface = Interface.from_dict({"name": "", "mac": "", "mtu": 0, "sandbox": "",
                                     "socketPath": "", "pciID": ""})
        assert iface.to_dict() == {"name": ""}  # name has no omitempty

    def test_ip_interface_index_zero_kept_absent_omitted(self) -> None:
        assert IPConfig.from_dict({"address": "10.0.0.2/24", "interface": 0}).to_dict() == {
            "interface": 0, "address": "10.0.0.2/24"}
        assert IPConfig.from_dict({"address": "10.0.0.2/24"}).to_dict() == {
            "address": "10.0.0.2/24"}

    def test_version_field_ignored_in_1x(self) -> None:
        r = parse_result({"cniVersion": "1.0.0",
                          "ips": [{"version": "4", "address": "10.0.0.2/24"}]}, "1.0.0")
        assert b"version" not in r.to_json()

    def test_empty_gateway_means_none(self) -> None:
        ip = IPConfig.from_dict({"address": "10.0.0.2/24", "gateway": ""})
        assert ip.gateway == "" and "gateway" not in ip.to_dict()

    @pytest.mark.parametrize("version", VERSIONS_100)
    def test_round_trip(self, version: str) -> None:
        data = dict(RESULT_110, cniVersion=version)
        r = parse_result(data, version)
        again = parse_result(r.to_json(), version)
        assert again == r
        assert again.to_json() == r.to_json()


# -- 0.3.0 / 0.3.1 / 0.4.0 --------------------------------------------------------------

RESULT_040 = {
    "cniVersion": "0.4.0",
    "interfaces": [{"name": "eth0", "mac": "0a:58:0a:f4:00:05", "sandbox": "/var/run/netns/pod1"}],
    "ips": [
        {"version": "4", "interface": 0, "address": "10.244.0.5/24", "gateway": "10.244.0.1"},
        {"version": "6", "address": "fd00::5/64"},
    ],
    "routes": [{"dst": "0.0.0.0/0", "gw": "10.244.0.1"}, {"dst": "::/0", "table": 0}],
}

EXPECTED_040 = text("""
{
    "cniVersion": "0.4.0",
    "interfaces": [
        {
            "name": "eth0",
            "mac": "0a:58:0a:f4:00:05",
            "sandbox": "/var/run/netns/pod1"
        }
    ],
    "ips": [
        {
            "version": "4",
            "interface": 0,
            "address": "10.244.0.5/24",
            "gateway": "10.244.0.1"
        },
        {
            "version": "6",
            "address": "fd00::5/64"
        }
    ],
    "routes": [
        {
            "dst": "0.0.0.0/0",
            "gw": "10.244.0.1"
        },
        {
            "dst": "::/0",
            "table": 0
        }
    ],
    "dns": {}
}""")


class TestResult040:
    def test_exact_bytes_struct_order_and_empty_dns(self) -> None:
        r = parse_result(json.dumps(RESULT_040), "0.4.0")
        assert type(r) is Result040
        assert r.to_json() == EXPECTED_040

    def test_dns_in_struct_order(self) -> None:
        r = Result040("0.3.1", dns=DNS(["8.8.8.8"], "example.org", ["example.org"], ["rotate"]))
        assert r.to_json() == text("""
{
    "cniVersion": "0.3.1",
    "dns": {
        "nameservers": [
            "8.8.8.8"
        ],
        "domain": "example.org",
        "search": [
            "example.org"
        ],
        "options": [
            "rotate"
        ]
    }
}""")

    def test_minimal(self) -> None:
        assert Result040("0.3.0").to_json() == b'{\n    "cniVersion": "0.3.0",\n    "dns": {}\n}'

    def test_version_always_printed(self) -> None:
        r = Result040("0.4.0", ips=[IPConfig("10.0.0.1/8")])
        assert r.to_dict()["ips"] == [{"version": "", "address": "10.0.0.1/8"}]

    def test_1x_interface_fields_ignored(self) -> None:
        r = parse_result({"cniVersion": "0.4.0",
                          "interfaces": [{"name": "eth0", "mtu": 9000, "socketPath": "/s",
                                          "pciID": "0000:00:01.0"}]}, "0.4.0")
        assert r.interfaces[0].mtu == 0
        assert r.to_dict()["interfaces"] == [{"name": "eth0"}]

    def test_route_extras_printed_in_struct_order(self) -> None:
        r = Result040("0.4.0", routes=[Route("10.0.0.0/8", "10.0.0.1", 1500, 1460, 5, 7, 0)])
        assert r.to_json() == text("""
{
    "cniVersion": "0.4.0",
    "routes": [
        {
            "dst": "10.0.0.0/8",
            "gw": "10.0.0.1",
            "mtu": 1500,
            "advmss": 1460,
            "priority": 5,
            "table": 7,
            "scope": 0
        }
    ],
    "dns": {}
}""")

    @pytest.mark.parametrize("version", VERSIONS_040)
    def test_every_version_parses(self, version: str) -> None:
        r = parse_result(dict(RESULT_040, cniVersion=version), version)
        assert type(r) is Result040 and r.cni_version == version
        assert parse_result(r.to_json(), version) == r

    def test_family_member_accepted_under_another_member(self) -> None:
        # like the reference's creator: the object must be in the family, not equal
        r = parse_result(dict(RESULT_040, cniVersion="0.3.1"), "0.4.0")
        assert r.cni_version == "0.3.1"


# -- 0.1.0 / 0.2.0 -----------------------------------------------------------------------

RESULT_020 = {
    "cniVersion": "0.2.0",
    "ip4": {"ip": "10.1.0.9/16", "gateway": "10.1.0.1",
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "172.16.0.0/12", "gw": "10.1.0.254"}]},
    "ip6": {"ip": "2001:db8:a::9/64", "routes": [{"dst": "::/0", "gw": "2001:db8:a::1"}]},
    "dns": {"nameservers": ["10.1.0.1"]},
}

EXPECTED_020 = text("""
{
    "cniVersion": "0.2.0",
    "ip4": {
        "ip": "10.1.0.9/16",
        "gateway": "10.1.0.1",
        "routes": [
            {
                "dst": "0.0.0.0/0"
            },
            {
                "dst": "172.16.0.0/12",
                "gw": "10.1.0.254"
            }
        ]
    },
    "ip6": {
        "ip": "2001:db8:a::9/64",
        "routes": [
            {
                "dst": "::/0",
                "gw": "2001:db8:a::1"
            }
        ]
    },
    "dns": {
        "nameservers": [
            "10.1.0.1"
        ]
    }
}""")


class TestResult020:
    def test_exact_bytes(self) -> None:
        r = parse_result(json.dumps(RESULT_020), "0.2.0")
        assert type(r) is Result020
        assert r.to_json() == EXPECTED_020

    def test_fields(self) -> None:
        r = parse_result(RESULT_020, "0.2.0")
        assert isinstance(r, Result020)
        assert r.ip4 is not None and r.ip6 is not None
        assert (r.ip4.ip, r.ip4.gateway) == ("10.1.0.9/16", "10.1.0.1")
        assert [rt.to_dict() for rt in r.ip4.routes] == RESULT_020["ip4"]["routes"]
        assert (r.ip6.ip, r.ip6.gateway) == ("2001:db8:a::9/64", "")

    def test_only_ip4_and_empty_dns(self) -> None:
        r = Result020("0.1.0", ip4=IPConfig020("192.0.2.1/24"))
        assert r.to_json() == text("""
{
    "cniVersion": "0.1.0",
    "ip4": {
        "ip": "192.0.2.1/24"
    },
    "dns": {}
}""")

    def test_null_ip6_is_absent(self) -> None:
        r = parse_result({"cniVersion": "0.2.0", "ip4": {"ip": "10.0.0.1/8"}, "ip6": None}, "0.2.0")
        assert isinstance(r, Result020) and r.ip6 is None
        assert "ip6" not in r.to_dict()

    def test_missing_version_means_010(self) -> None:
        r = parse_result({"ip4": {"ip": "10.0.0.1/8"}}, "0.1.0")
        assert r.cni_version == "0.1.0"
        r = parse_result({"cniVersion": "", "ip4": {"ip": "10.0.0.1/8"}}, "")
        assert r.cni_version == "0.1.0"

    def test_route_attributes_survive_in_020(self) -> None:
        r = parse_result({"cniVersion": "0.2.0",
                          "ip4": {"ip": "10.0.0.1/8", "routes": [{"dst": "10.0.0.0/8", "mtu": 1400}]}},
                         "0.2.0")
        assert isinstance(r, Result020) and r.ip4 is not None
        assert r.ip4.routes[0].mtu == 1400

    @pytest.mark.parametrize("version", VERSIONS_020)
    def test_round_trip(self, version: str) -> None:
        r = parse_result(dict(RESULT_020, cniVersion=version), version)
        assert r.cni_version == version
        assert parse_result(r.to_json(), version) == r


# -- normalisation and validation -------------------------------------------------------------

class TestAddresses:
    @pytest.mark.parametrize(("given", "printed"), [
        ("2001:DB8::1/64", "2001:db8::1/64"),
        ("2001:0db8:0000:0000:0000:0000:0000:0001/64", "2001:db8::1/64"),
        ("2001:db8:0:0:1:0:0:1/48", "2001:db8::1:0:0:1/48"),
        ("2001:db8:0:1:0:0:0:1/64", "2001:db8:0:1::1/64"),
        ("FE80::A:B/10", "fe80::a:b/10"),
        ("10.0.0.5/8", "10.0.0.5/8"),           # host bits are kept, as IPNet.String does
        ("10.0.0.5/024", "10.0.0.5/24"),         # ParseCIDR reads the length with dtoi
        ("::ffff:10.0.0.1/120", "10.0.0.1/24"),  # IPv4-mapped prints as IPv4
        ("::/0", "::/0"),
    ])
    def test_cidr_normalised(self, given: str, printed: str) -> None:
        assert IPConfig.from_dict({"address": given}).address == printed
        assert Route.from_dict({"dst": given}).dst == printed
        assert IPConfig020.from_dict({"ip": given}).ip == printed

    @pytest.mark.parametrize(("given", "printed"), [
        ("2001:DB8::0:1", "2001:db8::1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("192.0.2.1", "192.0.2.1"),
    ])
    def test_ip_normalised(self, given: str, printed: str) -> None:
        assert IPConfig.from_dict({"address": "10.0.0.2/8", "gateway": given}).gateway == printed
        assert Route.from_dict({"dst": "10.0.0.0/8", "gw": given}).gw == printed

    @pytest.mark.parametrize("cidr", [
        "10.0.0.1", "10.0.0.300/24", "10.0.0.1/33", "::1/129", "10.0.0.1/", "/24",
        "10.0.0.1/255.255.255.0", "10.0.0.1/-1", "10.0.0.1/+8", "fe80::1%eth0/64",
        "010.0.0.1/8", "not an address", "", 10, None, ["10.0.0.1/8"],
    ])
    def test_bad_cidr(self, cidr: object) -> None:
        with pytest.raises(ResultError, match="invalid CIDR address"):
            IPConfig.from_dict({"address": cidr})
        with pytest.raises(ResultError, match="invalid CIDR address"):
            Route.from_dict({"dst": cidr})

    @pytest.mark.parametrize("gateway", ["10.0.0", "10.0.0.1/8", "fe80::1%eth0", "gw", 1, True])
    def test_bad_gateway(self, gateway: object) -> None:
        with pytest.raises(ResultError, match="gateway"):
            IPConfig.from_dict({"address": "10.0.0.2/8", "gateway": gateway})
        with pytest.raises(ResultError, match="route gw"):
            Route.from_dict({"dst": "10.0.0.0/8", "gw": gateway})
        with pytest.raises(ResultError, match="gateway"):
            IPConfig020.from_dict({"ip": "10.0.0.2/8", "gateway": gateway})

    def test_bad_cidr_in_whole_result(self) -> None:
        for version, data in (("1.1.0", {"cniVersion": "1.1.0", "ips": [{"address": "1.2.3.4"}]}),
                              ("0.4.0", {"cniVersion": "0.4.0", "routes": [{"dst": "x/1"}]}),
                              ("0.2.0", {"cniVersion": "0.2.0", "ip6": {"ip": "::1/200"}})):
            with pytest.raises(ResultError):
                parse_result(data, version)

    def test_is_ipv4(self) -> None:
        assert is_ipv4("10.0.0.1/8") and is_ipv4("10.0.0.1") and is_ipv4("::ffff:10.0.0.1")
        assert not is_ipv4("::/0") and not is_ipv4("2001:db8::1")


class TestInvalid:
    @pytest.mark.parametrize("data", [[], '"x"', 3, None, True, b"[1]"])
    @pytest.mark.parametrize("version", ["0.1.0", "0.4.0", "1.1.0"])
    def test_non_object(self, data: object, version: str) -> None:
        with pytest.raises(ResultError, match="expected a JSON object"):
            parse_result(data, version)  # type: ignore[arg-type]

    @pytest.mark.parametrize(("version", "given"), [
        ("1.1.0", "0.4.0"), ("1.0.0", "0.2.0"), ("1.1.0", ""), ("1.1.0", "1.2.0"),
        ("0.4.0", "1.0.0"), ("0.3.0", "0.2.0"), ("0.4.0", ""),
        ("0.2.0", "0.3.0"), ("0.1.0", "1.1.0"),
    ])
    def test_wrong_version_for_family(self, version: str, given: str) -> None:
        data = {"cniVersion": given} if given else {}
        with pytest.raises(ResultError, match="result type supports"):
            parse_result(data, version)

    def test_wrong_version_message(self) -> None:
        with pytest.raises(ResultError) as info:
            parse_result(b'{"cniVersion": "0.4.0"}', "1.0.0")
        assert str(info.value) == 'result type supports [1.0.0 1.1.0] but unmarshalled CNIVersion is "0.4.0"'
        with pytest.raises(ResultError) as info:
            parse_result(b'{"cniVersion": "1.0.0"}', "0.3.1")
        assert str(info.value) == ('result type supports [0.3.0 0.3.1 0.4.0] but unmarshalled '
                                   'CNIVersion is "1.0.0"')
        with pytest.raises(ResultError) as info:
            parse_result(b'{"cniVersion": "0.4.0"}', "0.2.0")
        assert str(info.value) == 'result type supports [ 0.1.0 0.2.0] but unmarshalled CNIVersion is "0.4.0"'

    @pytest.mark.parametrize("version", ["1.1.0", "0.4.0", "0.2.0"])
    def test_non_string_version(self, version: str) -> None:
        with pytest.raises(ResultError, match="cniVersion must be a string"):
            parse_result({"cniVersion": 1.0}, version)

    def test_invalid_json(self) -> None:
        with pytest.raises(ResultError, match="invalid result JSON"):
            parse_result(b"{", "1.0.0")
        with pytest.raises(ResultError, match="invalid result JSON"):
            result_from_json("nope")

    @pytest.mark.parametrize("data", [
        {"interfaces": {}}, {"ips": "10.0.0.1/8"}, {"routes": [1]}, {"dns": []},
        {"interfaces": [{"name": 3}]}, {"interfaces": [{"name": "a", "mtu": "1500"}]},
        {"interfaces": [{"name": "a", "mtu": 1500.0}]}, {"interfaces": [{"name": "a", "mtu": True}]},
        {"ips": [{"address": "10.0.0.1/8", "interface": "0"}]}, {"ips": [{}]},
        {"routes": [{"gw": "10.0.0.1"}]}, {"routes": [{"dst": "0.0.0.0/0", "table": "main"}]},
        {"dns": {"nameservers": "8.8.8.8"}}, {"dns": {"domain": ["a"]}},
        {"dns": {"search": [1]}},
    ])
    def test_bad_fields_1x(self, data: dict[str, object]) -> None:
        with pytest.raises(ResultError):
            parse_result(dict(data, cniVersion="1.1.0"), "1.1.0")

    def test_bad_fields_020(self) -> None:
        with pytest.raises(ResultError, match="missing ip"):
            parse_result({"cniVersion": "0.2.0", "ip4": {"gateway": "10.0.0.1"}}, "0.2.0")
        with pytest.raises(ResultError):
            parse_result({"cniVersion": "0.2.0", "ip4": "10.0.0.1/8"}, "0.2.0")
        with pytest.raises(ResultError):
            parse_result({"cniVersion": "0.2.0", "ip4": {"ip": "10.0.0.1/8", "routes": {}}}, "0.2.0")

    def test_unknown_keys_ignored(self) -> None:
        r = parse_result({"cniVersion": "1.0.0", "extra": {"x": 1},
                          "ips": [{"address": "10.0.0.2/8", "foo": "bar"}]}, "1.0.0")
        assert r.to_dict() == {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/8"}]}


# -- entry points -------------------------------------------------------------------------------

class TestEntryPoints:
    @pytest.mark.parametrize(("version", "cls"), [
        ("", Result020), ("0.1.0", Result020), ("0.2.0", Result020),
        ("0.3.0", Result040), ("0.3.1", Result040), ("0.4.0", Result040),
        ("1.0.0", Result), ("1.1.0", Result),
    ])
    def test_family_of(self, version: str, cls: type) -> None:
        assert family_of(version) is cls

    @pytest.mark.parametrize("version", ["0.5.0", "1.2.0", "2.0.0", "1.0", "v1.0.0", "x"])
    def test_family_of_unknown(self, version: str) -> None:
        with pytest.raises(ResultError) as info:
            family_of(version)
        assert str(info.value) == f'unsupported CNI result version "{version}"'
        with pytest.raises(ResultError, match="unsupported CNI result version"):
            parse_result(b"{}", version)

    def test_parse_result_accepts_bytes_str_and_dict(self) -> None:
        as_bytes = parse_result(json.dumps(RESULT_110).encode(), "1.1.0")
        as_str = parse_result(json.dumps(RESULT_110), "1.1.0")
        as_dict = parse_result(RESULT_110, "1.1.0")
        assert as_bytes == as_str == as_dict

    @pytest.mark.parametrize(("data", "cls", "version"), [
        (RESULT_110, Result, "1.1.0"),
        (dict(RESULT_110, cniVersion="1.0.0"), Result, "1.0.0"),
        (RESULT_040, Result040, "0.4.0"),
        (dict(RESULT_040, cniVersion="0.3.0"), Result040, "0.3.0"),
        (RESULT_020, Result020, "0.2.0"),
        ({"ip4": {"ip": "10.0.0.1/8"}}, Result020, "0.1.0"),
        ({"cniVersion": "", "ip4": {"ip": "10.0.0.1/8"}}, Result020, "0.1.0"),
    ])
    def test_result_from_json(self, data: dict[str, object], cls: type, version: str) -> None:
        for form in (data, json.dumps(data), json.dumps(data).encode()):
            r = result_from_json(form)
            assert type(r) is cls and r.cni_version == version

    def test_result_from_json_errors(self) -> None:
        with pytest.raises(ResultError, match="unsupported CNI result version"):
            result_from_json({"cniVersion": "7.0.0"})
        with pytest.raises(ResultError, match="must be a string"):
            result_from_json({"cniVersion": 1})
        with pytest.raises(ResultError, match="expected a JSON object"):
            result_from_json(b"[]")

    def test_equality_is_by_family_and_content(self) -> None:
        a = parse_result(RESULT_110, "1.1.0")
        b = parse_result(RESULT_110, "1.1.0")
        assert a == b and a is not b
        b.ips[0].gateway = "10.244.0.254"
        assert a != b
        assert Result("1.0.0") != Result040("1.0.0")


# -- Go-compatible JSON text ----------------------------------------------------------------------

class TestWire:
    def test_html_escaping_in_result(self) -> None:
        r = Result("1.1.0", dns=DNS(domain="a<b>&c", options=["x\u2028y\u2029z"]))
        assert r.to_json() == text(r"""
{
    "cniVersion": "1.1.0",
    "dns": {
        "domain": "a\u003cb\u003e\u0026c",
        "options": [
            "x\u2028y\u2029z"
        ]
    }
}""")

    def test_html_escaping_in_keys_and_old_families(self) -> None:
        assert wire.dumps_compact({"<k>": "&"}) == b'{"\\u003ck\\u003e":"\\u0026"}'
        r = Result040("0.4.0", interfaces=[Interface("a&b")])
        assert b'"name": "a\\u0026b"' in r.to_json()

    def test_utf8_not_escaped(self) -> None:
        r = Result("1.1.0", dns=DNS(domain="b\u00fccher.example", search=["\U0001f600"]))
        out = r.to_json()
        assert "b\u00fccher.example".encode() in out
        assert "\U0001f600".encode() in out
        assert json.loads(out)["dns"]["domain"] == "b\u00fccher.example"

    def test_control_characters(self) -> None:
        assert wire.dumps_compact(["\n\t\x01\x1f\"\\"]) == b'["\\n\\t\\u0001\\u001f\\"\\\\"]'

    def test_indent_layout(self) -> None:
        assert wire.dumps_indent({"b": [], "a": {}, "c": [1, {"d": None}]}) == text("""
{
    "b": [],
    "a": {},
    "c": [
        1,
        {
            "d": null
        }
    ]
}""")
        assert wire.dumps_indent({"b": 1, "a": 2}, sort_keys=True) == b'{\n    "a": 2,\n    "b": 1\n}'

    def test_compact(self) -> None:
        assert wire.dumps_compact({"b": 1, "a": [True, None]}) == b'{"b":1,"a":[true,null]}'
        assert wire.dumps_compact({"b": 1, "a": 2}, sort_keys=True) == b'{"a":2,"b":1}'

    @pytest.mark.parametrize(("given", "quoted"), [
        ("plain", '"plain"'),
        ("", '""'),
        ('say "hi"\\', '"say \\"hi\\"\\\\"'),
        ("\a\b\f\n\r\t\v", '"\\a\\b\\f\\n\\r\\t\\v"'),
        ("\x00\x1b\x7f", '"\\x00\\x1b\\x7f"'),
        ("caf\u00e9 \u2713", '"caf\u00e9 \u2713"'),
        ("\u00a0\u200b\u2028", '"\\u00a0\\u200b\\u2028"'),
        ("\U000e0001", '"\\U000e0001"'),
    ])
    def test_go_quote(self, given: str, quoted: str) -> None:
        assert wire.go_quote(given) == quoted

    def test_go_quote_list(self) -> None:
        assert wire.go_quote_list(["0.1.0", "0.2.0"]) == '["0.1.0" "0.2.0"]'
        assert wire.go_quote_list([]) == "[]"
