"""Spec versions, VERSION answers, CNI errors and CNI_ARGS parsing."""

from __future__ import annotations

import ipaddress

import pytest

from cnicore import errors
from cnicore.args import ArgsError, join_pairs, load_args, parse_bool, split_pairs
from cnicore.errors import CNIError
from cnicore.version import (
    ALL,
    CURRENT,
    LEGACY,
    PluginInfo,
    config_version,
    decode_config_version,
    greater_or_equal,
    greater_than,
    incompatible_details,
    negotiate,
    parse_version,
    versions_from,
)

# -- parse_version ----------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "parsed"), [
    ("", (0, 1, 0)),
    ("0.1.0", (0, 1, 0)),
    ("1.1.0", (1, 1, 0)),
    ("0.3.1", (0, 3, 1)),
    ("1", (1, 0, 0)),
    ("1.2", (1, 2, 0)),
    ("10.20.30", (10, 20, 30)),
    ("01.002.0003", (1, 2, 3)),
    ("+1.-2.3", (1, -2, 3)),  # strconv.Atoi takes a sign
])
def test_parse_version(text: str, parsed: tuple[int, int, int]) -> None:
    assert parse_version(text) == parsed


@pytest.mark.parametrize(("text", "message"), [
    ("1.2.3.4", 'invalid version "1.2.3.4": too many parts'),
    ("1.0.0.", 'invalid version "1.0.0.": too many parts'),
    ("a.b.c", 'failed to convert major version part "a": strconv.Atoi: parsing "a": invalid syntax'),
    ("1.x", 'failed to convert minor version part "x": strconv.Atoi: parsing "x": invalid syntax'),
    ("1.0.rc1", 'failed to convert micro version part "rc1": strconv.Atoi: parsing "rc1": invalid syntax'),
    ("1..0", 'failed to convert minor version part "": strconv.Atoi: parsing "": invalid syntax'),
    (".", 'failed to convert major version part "": strconv.Atoi: parsing "": invalid syntax'),
    ("v1.0.0", 'failed to convert major version part "v1": strconv.Atoi: parsing "v1": invalid syntax'),
    (" 1.0.0", 'failed to convert major version part " 1": strconv.Atoi: parsing " 1": invalid syntax'),
    ("1_0.0.0", 'failed to convert major version part "1_0": strconv.Atoi: parsing "1_0": invalid syntax'),
    ("+-1", 'failed to convert major version part "+-1": strconv.Atoi: parsing "+-1": invalid syntax'),
    ("1.\u0663.0", 'failed to convert minor version part "\u0663": strconv.Atoi: parsing "\u0663": invalid syntax'),
    ("99999999999999999999.0.0", 'failed to convert major version part "99999999999999999999": '
                                 'strconv.Atoi: parsing "99999999999999999999": value out of range'),
])
def test_parse_version_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_version(text)
    assert str(info.value) == message


def test_parse_version_int64_bounds() -> None:
    assert parse_version("9223372036854775807") == (2**63 - 1, 0, 0)
    assert parse_version("-9223372036854775808") == (-(2**63), 0, 0)


@pytest.mark.parametrize(("a", "b", "ge", "gt"), [
    ("1.0.0", "0.4.0", True, True),
    ("0.4.0", "0.4.0", True, False),
    ("0.3.1", "0.4.0", False, False),
    ("0.10.0", "0.9.0", True, True),   # numeric, not lexical
    ("1", "0.99.99", True, True),
    ("1.0", "1.0.0", True, False),     # missing parts are zero
    ("", "0.1.0", True, False),        # no version means 0.1.0
    ("0.1.0", "", True, False),
    ("0.0.9", "", False, False),
    ("1.1.0", "1.0.1", True, True),
    ("0.4.1", "0.4.0", True, True),
])
def test_comparisons(a: str, b: str, ge: bool, gt: bool) -> None:
    assert greater_or_equal(a, b) is ge
    assert greater_than(a, b) is gt


@pytest.mark.parametrize("bad", [("x", "1.0.0"), ("1.0.0", "1.0.0.0")])
def test_comparisons_propagate_parse_errors(bad: tuple[str, str]) -> None:
    with pytest.raises(ValueError):
        greater_or_equal(*bad)
    with pytest.raises(ValueError):
        greater_than(*bad)


def test_constants_and_versions_from() -> None:
    assert CURRENT == "1.1.0"
    assert ALL == ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
    assert LEGACY == ("0.1.0", "0.2.0")
    assert versions_from("0.3.0") == ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
    assert versions_from("0.1.0") == ALL
    assert versions_from("1.1.0") == ("1.1.0",)


# -- config versions ------------------------------------------------------------------------------

@pytest.mark.parametrize(("data", "version"), [
    (b'{"cniVersion": "0.4.0", "name": "n"}', "0.4.0"),
    (b'{"cniVersion": "1.1.0"}', "1.1.0"),
    (b'{"name": "n"}', "0.1.0"),
    (b"{}", "0.1.0"),
    (b'{"cniVersion": ""}', "0.1.0"),
    (b'{"cniVersion": null}', "0.1.0"),
    (b'{"cniVersion": "9.9.9"}', "9.9.9"),  # not validated here
    (b"null", "0.1.0"),                     # Go decodes null into an empty struct
])
def test_decode_config_version(data: bytes, version: str) -> None:
    assert decode_config_version(data) == version


@pytest.mark.parametrize("data", [b"", b"{", b"not json", b'{"cniVersion": 1}',
                                  b'{"cniVersion": ["1.0.0"]}', b"[]", b'"1.0.0"'])
def test_decode_config_version_errors(data: bytes) -> None:
    with pytest.raises(CNIError) as info:
        decode_config_version(data)
    assert info.value.code == errors.ERR_DECODING_FAILURE == 6
    assert info.value.msg.startswith("decoding version from network config: ")


def test_config_version() -> None:
    assert config_version({}) == "0.1.0"
    assert config_version({"cniVersion": "1.0.0"}) == "1.0.0"
    with pytest.raises(CNIError) as info:
        config_version({"cniVersion": 1.0})
    assert info.value.code == 6


@pytest.mark.parametrize(("config", "supported", "details"), [
    ("9.9.9", ("0.1.0", "0.2.0"), 'config is "9.9.9", plugin supports ["0.1.0" "0.2.0"]'),
    ("0.4.0", ["1.0.0"], 'config is "0.4.0", plugin supports ["1.0.0"]'),
    ("", ALL, 'config is "", plugin supports '
              '["0.1.0" "0.2.0" "0.3.0" "0.3.1" "0.4.0" "1.0.0" "1.1.0"]'),
    ('1"0\n', ["1.0.0"], 'config is "1\\"0\\n", plugin supports ["1.0.0"]'),
    ("\u00e9", ["1.0.0"], 'config is "\u00e9", plugin supports ["1.0.0"]'),
])
def test_incompatible_details(config: str, supported: tuple[str, ...] | list[str],
                              details: str) -> None:
    assert incompatible_details(config, supported) == details


# -- negotiation of a network list's version -------------------------------------------------------

@pytest.mark.parametrize(("cni_version", "cni_versions", "chosen"), [
    ("1.0.0", None, "1.0.0"),
    ("", None, ""),
    ("", [], ""),
    ("0.4.0", [], "0.4.0"),
    ("", ["0.4.0", "1.0.0"], "1.0.0"),
    ("", ["1.0.0", "0.4.0"], "1.0.0"),
    ("0.4.0", ["1.0.0", "9.0.0"], "1.0.0"),   # newer than 1.1.0 is skipped
    ("1.1.0", ["0.3.1", "1.0.0"], "1.1.0"),   # cniVersion is one more candidate
    ("0.3.1", ["1.1.0"], "1.1.0"),
    ("1.0.0", ["2.0.0", "1.2.0"], "1.0.0"),
    ("5.0.0", ["2.0.0"], "5.0.0"),            # nothing usable: cniVersion stays
    ("5.0.0", ["0.4.0"], "0.4.0"),
    ("", ["0.10.0", "0.9.0"], "0.10.0"),      # numeric ordering
    ("", ["1.0", "0.4.0"], "1.0"),
])
def test_negotiate(cni_version: str, cni_versions: list[object] | None, chosen: str) -> None:
    assert negotiate(cni_version, cni_versions) == chosen


@pytest.mark.parametrize(("cni_version", "cni_versions", "message"), [
    ("", ["1.0.0", "abc"], 'invalid cniVersions entry abc at index 1: failed to convert major '
                           'version part "abc": strconv.Atoi: parsing "abc": invalid syntax'),
    ("", ["1.0.0.0"], 'invalid cniVersions entry 1.0.0.0 at index 0: invalid version "1.0.0.0": '
                      'too many parts'),
    ("", [1], "invalid type for cniVersions index 0: int"),
    ("", ["1.0.0", None], "invalid type for cniVersions index 1: NoneType"),
    ("", "1.0.0", "invalid type for cniVersions: str"),
    ("x.y", ["1.0.0"], 'invalid cniVersion x.y: failed to convert major version part "x": '
                       'strconv.Atoi: parsing "x": invalid syntax'),
])
def test_negotiate_errors(cni_version: str, cni_versions: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        negotiate(cni_version, cni_versions)  # type: ignore[arg-type]
    assert str(info.value) == message


# -- VERSION answers ---------------------------------------------------------------------------------

class TestPluginInfo:
    def test_encode_exact_bytes(self) -> None:
        assert PluginInfo().encode() == (
            b'{"cniVersion":"1.1.0","supportedVersions":'
            b'["0.1.0","0.2.0","0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}\n')
        assert PluginInfo(["0.3.1", "0.4.0"], cni_version="0.4.0").encode() == (
            b'{"cniVersion":"0.4.0","supportedVersions":["0.3.1","0.4.0"]}\n')

    def test_encode_escapes_like_go(self) -> None:
        assert PluginInfo(["<1>&"]).encode() == (
            b'{"cniVersion":"1.1.0","supportedVersions":["\\u003c1\\u003e\\u0026"]}\n')
        assert PluginInfo(["\u00e9"]).encode() == (
            '{"cniVersion":"1.1.0","supportedVersions":["\u00e9"]}\n'.encode())

    def test_defaults(self) -> None:
        info = PluginInfo()
        assert info.cni_version == CURRENT and info.supported_versions == ALL
        assert info.supports("0.3.1") and not info.supports("0.5.0") and not info.supports("")

    def test_needs_a_version(self) -> None:
        with pytest.raises(ValueError):
            PluginInfo([])

    def test_round_trip(self) -> None:
        info = PluginInfo(["0.4.0", "1.0.0"], cni_version="1.0.0")
        assert PluginInfo.decode(info.encode()) == info

    def test_decode(self) -> None:
        info = PluginInfo.decode(b'{"cniVersion": "0.3.1", "supportedVersions": ["0.1.0", "0.3.1"]}')
        assert info.cni_version == "0.3.1"
        assert info.supported_versions == ("0.1.0", "0.3.1")

    @pytest.mark.parametrize("data", [b'{"cniVersion": "0.2.0"}',
                                      b'{"cniVersion": "0.2.0", "supportedVersions": []}',
                                      b'{"cniVersion": "0.2.0", "supportedVersions": null}'])
    def test_decode_legacy_020(self, data: bytes) -> None:
        info = PluginInfo.decode(data)
        assert info.supported_versions == ("0.1.0", "0.2.0")
        assert info.cni_version == CURRENT  # the reference answers with its own version

    @pytest.mark.parametrize(("data", "message"), [
        (b'{"supportedVersions": ["1.0.0"]}', "decoding version info: missing field cniVersion"),
        (b'{"cniVersion": "", "supportedVersions": ["1.0.0"]}',
         "decoding version info: missing field cniVersion"),
        (b'{"cniVersion": "0.3.0"}', "decoding version info: missing field supportedVersions"),
        (b'{"cniVersion": "1.0.0", "supportedVersions": []}',
         "decoding version info: missing field supportedVersions"),
        (b'{"cniVersion": 1, "supportedVersions": ["1.0.0"]}', "decoding version info: "),
        (b'{"cniVersion": "1.0.0", "supportedVersions": "1.0.0"}', "decoding version info: "),
        (b'{"cniVersion": "0.2.0", "supportedVersions": ""}', "decoding version info: "),
        (b'{"cniVersion": "1.0.0", "supportedVersions": [1]}', "decoding version info: "),
        (b"[]", "decoding version info: "),
        (b"{", "decoding version info: "),
    ])
    def test_decode_errors(self, data: bytes, message: str) -> None:
        with pytest.raises(ValueError) as info:
            PluginInfo.decode(data)
        assert str(info.value).startswith(message)


# -- CNIError ----------------------------------------------------------------------------------------

class TestCNIError:
    def test_str(self) -> None:
        assert str(CNIError(7, "bad config")) == "bad config"
        assert str(CNIError(7, "bad config", "field x")) == "bad config; field x"

    def test_to_dict(self) -> None:
        assert CNIError(11, "busy").to_dict() == {"code": 11, "msg": "busy"}
        assert CNIError(11, "busy", "retry").to_dict("1.0.0") == {
            "cniVersion": "1.0.0", "code": 11, "msg": "busy", "details": "retry"}
        assert list(CNIError(1, "m", "d").to_dict("0.4.0")) == ["cniVersion", "code", "msg", "details"]

    def test_from_dict(self) -> None:
        err = CNIError.from_dict({"cniVersion": "1.0.0", "code": 4, "msg": "m", "details": "d",
                                  "extra": True})
        assert err == CNIError(4, "m", "d")
        assert CNIError.from_dict({}) == CNIError(0, "")
        assert CNIError.from_dict({"code": 999, "msg": 5}).msg == "5"

    @pytest.mark.parametrize("obj", [[], "x", None, {"code": -1}, {"code": "7"}, {"code": True},
                                     {"code": 1.5}])
    def test_from_dict_errors(self, obj: object) -> None:
        with pytest.raises(ValueError):
            CNIError.from_dict(obj)

    def test_round_trip_and_equality(self) -> None:
        err = CNIError(errors.ERR_INVALID_NETNS, "no netns", "/proc/1/ns/net")
        assert CNIError.from_dict(err.to_dict("1.1.0")) == err
        assert err != CNIError(8, "no netns")
        assert (err == "x") is False
        assert hash(err)

    def test_codes(self) -> None:
        assert (errors.ERR_UNKNOWN, errors.ERR_INCOMPATIBLE_CNI_VERSION, errors.ERR_UNSUPPORTED_FIELD,
                errors.ERR_UNKNOWN_CONTAINER, errors.ERR_INVALID_ENVIRONMENT_VARIABLES,
                errors.ERR_IO_FAILURE, errors.ERR_DECODING_FAILURE, errors.ERR_INVALID_NETWORK_CONFIG,
                errors.ERR_INVALID_NETNS, errors.ERR_TRY_AGAIN_LATER, errors.ERR_PLUGIN_NOT_AVAILABLE,
                errors.ERR_LIMITED_CONNECTIVITY, errors.ERR_INTERNAL) == (
                    0, 1, 2, 3, 4, 5, 6, 7, 8, 11, 50, 51, 999)
        assert set(errors.CODE_NAMES) == {0, 1, 2, 3, 4, 5, 6, 7, 8, 11, 50, 51, 999}

    def test_is_an_exception(self) -> None:
        with pytest.raises(CNIError) as info:
            raise CNIError(5, "io", "disk")
        assert info.value.args == ("io; disk",)


# -- CNI_ARGS ------------------------------------------------------------------------------------------

class TestArgs:
    @pytest.mark.parametrize(("text", "pairs"), [
        ("", []),
        ("A=1", [("A", "1")]),
        ("A=1;B=2", [("A", "1"), ("B", "2")]),
        ("K8S_POD_NAME=web-0;K8S_POD_NAMESPACE=", [("K8S_POD_NAME", "web-0"),
                                                    ("K8S_POD_NAMESPACE", "")]),
        ("=v", [("", "v")]),
        ("A=1;A=2", [("A", "1"), ("A", "2")]),
    ])
    def test_split_and_join(self, text: str, pairs: list[tuple[str, str]]) -> None:
        assert split_pairs(text) == pairs
        assert join_pairs(pairs) == text

    @pytest.mark.parametrize(("text", "bad"), [
        ("A", '"A"'), ("A=1=2", '"A=1=2"'), ("A=1;", '""'), (";A=1", '""'),
        ("A=1;;B=2", '""'), ("A=1;B", '"B"'), ('Q"x', '"Q\\"x"'),
    ])
    def test_invalid_pair(self, text: str, bad: str) -> None:
        with pytest.raises(ArgsError) as info:
            split_pairs(text)
        assert str(info.value) == f"ARGS: invalid pair {bad}"
        assert info.value.code == errors.ERR_INTERNAL == 999  # what the reference plugins report
        with pytest.raises(ArgsError):
            load_args(text, {"A": str})

    @pytest.mark.parametrize(("text", "value"), [
        ("1", True), ("true", True), ("TRUE", True), ("True", True),
        ("0", False), ("false", False), ("FaLsE", False),
    ])
    def test_parse_bool(self, text: str, value: bool) -> None:
        assert parse_bool(text) is value

    @pytest.mark.parametrize("text", ["", "yes", "no", "2", "t", " true", "MAYBE"])
    def test_parse_bool_errors(self, text: str) -> None:
        with pytest.raises(ValueError) as info:
            parse_bool(text)
        assert str(info.value) == f"boolean unmarshal error: invalid input {text.lower()}"

    def test_load_known_fields(self) -> None:
        fields = {"IP": ipaddress.ip_address, "K8S_POD_NAME": str}
        assert load_args("IP=10.0.0.7;K8S_POD_NAME=web-0", fields) == {
            "IP": ipaddress.ip_address("10.0.0.7"), "K8S_POD_NAME": "web-0"}
        assert load_args("", fields) == {}
        assert load_args("K8S_POD_NAME=a;K8S_POD_NAME=b", fields) == {"K8S_POD_NAME": "b"}

    def test_unknown_args_error(self) -> None:
        with pytest.raises(ArgsError) as info:
            load_args("A=1;FOO=bar;B=2", {"A": str})
        assert str(info.value) == 'ARGS: unknown args ["FOO=bar" "B=2"]'
        assert info.value.code == 999
        with pytest.raises(ArgsError, match="unknown args"):
            load_args("IgnoreUnknown=0;FOO=bar", {})
        with pytest.raises(ArgsError, match="unknown args"):
            load_args("ignoreunknown=1;FOO=bar", {})  # the key is case-sensitive

    @pytest.mark.parametrize("flag", ["1", "true", "TRUE", "True"])
    def test_ignore_unknown(self, flag: str) -> None:
        assert load_args(f"IgnoreUnknown={flag};FOO=bar;A=x", {"A": str}) == {
            "IgnoreUnknown": True, "A": "x"}
        # the flag counts wherever it appears in the list
        assert load_args(f"FOO=bar;IgnoreUnknown={flag}", {}) == {"IgnoreUnknown": True}

    def test_value_error(self) -> None:
        with pytest.raises(ArgsError) as info:
            load_args("IgnoreUnknown=MAYBE", {})
        assert str(info.value) == ('ARGS: error parsing value of pair "IgnoreUnknown=MAYBE": '
                                   'boolean unmarshal error: invalid input maybe')
        with pytest.raises(ArgsError) as info:
            load_args("IP=10.0.0.300", {"IP": ipaddress.ip_address})
        assert str(info.value).startswith('ARGS: error parsing value of pair "IP=10.0.0.300": ')
        assert info.value.code == 999

    def test_plugin_may_override_ignore_unknown_converter(self) -> None:
        assert load_args("IgnoreUnknown=on;X=1", {"IgnoreUnknown": lambda s: s == "on"}) == {
            "IgnoreUnknown": True}
