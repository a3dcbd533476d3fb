"""Tests for cnicore.skel.run, table-driven like the reference's skel_test.go.

Part 1 drives the pure function with a small in-test fake plugin: no
namespace, no process, no network. Part 2 runs Debian's Go ``loopback``
(/usr/lib/cni/loopback, built from the CNI library v1.1.x) and our loopback
side by side on the same bad inputs and compares exit status, error code and,
where the texts can agree, the message.

Safety: the only namespace used is one created here with ``new_netns`` and
removed in the fixture's finally block; the only change made in it is that a
successful loopback ADD sets its ``lo`` up.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from cni_plugins_builtin import loopback as loopback_module
from cnicore import errors, skel, wire
from cnicore.errors import CNIError
from cnicore.host import PluginHost
from cnicore.request import Request
from cnicore.types import Interface, IPConfig, Result
from cnicore.version import ALL, CURRENT, PluginInfo, incompatible_details

# -- the fake plugin and helpers -------------------------------------------------

ABOUT = "test framework v42"
NETNS = "/some/netns/path"
BASE_ENV = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "some-container-id",
    "CNI_NETNS": NETNS,
    "CNI_IFNAME": "eth0",
    "CNI_ARGS": "some;extra;args",
    "CNI_PATH": "/some/cni/path",
}
VARS = ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH")


def default_result() -> Result:
    return Result("1.1.0", interfaces=[Interface("eth0", "aa:bb:cc:dd:ee:ff", NETNS)],
                  ips=[IPConfig("10.1.2.3/24", gateway="10.1.2.1", interface=0)])


class FakePlugin:
    """Records every call; returns ``result`` for ADD or raises ``raises``."""

    def __init__(self, versions: tuple[str, ...] = ALL, about: str = ABOUT,
                 result: object = "default", raises: BaseException | None = None) -> None:
        self._info = PluginInfo(versions, about=about)
        self.result = default_result() if result == "default" else result
        self.raises = raises
        self.calls: list[tuple[str, Request]] = []

    def info(self) -> PluginInfo:
        return self._info

    def call(self, verb: str, request: Request) -> object:
        self.calls.append((verb, request))
        if self.raises is not None:
            raise self.raises
        return self.result if verb == "ADD" else None

    @property
    def verbs(self) -> list[str]:
        return [verb for verb, _ in self.calls]


def env_for(command: str, **changes: str | None) -> dict[str, str]:
    """BASE_ENV for ``command``; a change to None removes the variable."""
    env = dict(BASE_ENV, CNI_COMMAND=command)
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def conf(version: str | None = "1.1.0", name: object = "skel-test", **extra: object) -> bytes:
    obj: dict[str, object] = {}
    if version is not None:
        obj["cniVersion"] = version
    if name is not None:
        obj["name"] = name
    obj.update(extra)
    return json.dumps(obj).encode()


#: A CNI_NETNS that is never the plugin's own (no namespace needed).
def not_own(path: str) -> bool:
    return False


def run(plugin: Any, env: Mapping[str, str], stdin: Any = None,
        netns_check: Callable[[str], bool] = not_own) -> tuple[int, bytes, bytes]:
    data = conf() if stdin is None else stdin
    return skel.run(plugin, env, data, netns_check=netns_check)


def failing_stdin() -> bytes:
    raise AssertionError("stdin must not be read")


def error_of(code: int, out: bytes) -> dict[str, Any]:
    assert code == 1, out
    obj = json.loads(out)
    assert isinstance(obj, dict) and isinstance(obj.get("code"), int), obj
    return obj


def assert_error(result: tuple[int, bytes, bytes], code: int, msg: str | None = None,
                 details: str | None = "") -> dict[str, Any]:
    """``details=None`` skips the details check; ``""`` means no details key."""
    status, out, _ = result
    obj = error_of(status, out)
    assert obj["code"] == code, obj
    if msg is not None:
        assert obj["msg"] == msg, obj
    if details is not None:
        assert obj.get("details", "") == details, obj
    return obj


def assert_ok(result: tuple[int, bytes, bytes]) -> None:
    status, out, err = result
    assert status == 0, (out, err)


def missing(*names: str) -> str:
    return f"required env variables [{','.join(names)}] missing"


# -- required variables ---------------------------------------------------------

#: Per command, which of the variables are required (the reference's tables).
REQUIRED = {
    "ADD": {"CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"},
    "CHECK": {"CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"},
    "DEL": {"CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"},
    "GC": {"CNI_PATH"},
    "STATUS": {"CNI_PATH"},
    "VERSION": set(),
}


@pytest.mark.parametrize("how", ["unset", "empty"])
@pytest.mark.parametrize("command,var,required", [
    (command, var, var in REQUIRED[command])
    for command in REQUIRED for var in VARS[1:] + ("CNI_NETNS_OVERRIDE",)
])
def test_required_env_vars(command: str, var: str, required: bool, how: str) -> None:
    plugin = FakePlugin()
    env = env_for(command, **{var: None if how == "unset" else ""})
    result = run(plugin, env)
    if required:
        assert_error(result, errors.ERR_INVALID_ENVIRONMENT_VARIABLES, missing(var))
        assert plugin.calls == []
    else:
        assert_ok(result)
        assert plugin.verbs == ([] if command == "VERSION" else [command])


@pytest.mark.parametrize("command,remove,expected", [
    ("ADD", ("CNI_NETNS", "CNI_IFNAME", "CNI_PATH"), missing("CNI_NETNS", "CNI_IFNAME", "CNI_PATH")),
    ("CHECK", ("CNI_NETNS", "CNI_IFNAME", "CNI_PATH"), missing("CNI_NETNS", "CNI_IFNAME", "CNI_PATH")),
    ("ADD", VARS[1:], missing("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH")),
    ("CHECK", VARS[1:], missing("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH")),
    ("DEL", VARS[1:], missing("CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH")),
    ("DEL", ("CNI_PATH", "CNI_CONTAINERID"), missing("CNI_CONTAINERID", "CNI_PATH")),
    ("GC", VARS[1:], missing("CNI_PATH")),
    ("STATUS", VARS[1:], missing("CNI_PATH")),
])
def test_missing_vars_reported_together_in_reference_order(command: str, remove: tuple[str, ...],
                                                           expected: str) -> None:
    plugin = FakePlugin()
    # Reverse insertion order: the message order comes from the table, not the mapping.
    env = dict(reversed(list(env_for(command, **dict.fromkeys(remove)).items())))
    result = skel.run(plugin, env, failing_stdin, netns_check=not_own)
    assert_error(result, errors.ERR_INVALID_ENVIRONMENT_VARIABLES, expected)
    assert plugin.calls == []


def test_invalid_value_is_reported_before_missing_ones() -> None:
    # The reference validates a present value while reading it and returns at once.
    # (Its v1.1.x lib reported missing variables first; see the interop notes.)
    env = env_for("ADD", CNI_CONTAINERID="bad%id", CNI_PATH=None)
    assert_error(run(FakePlugin(), env), 4, "invalid characters in containerID", "bad%id")
    env = env_for("ADD", CNI_CONTAINERID=None, CNI_IFNAME="a/b")
    assert_error(run(FakePlugin(), env), 4, "interface name contains / or : or whitespace characters")


@pytest.mark.parametrize("command", ["GC", "STATUS", "VERSION"])
def test_values_are_validated_only_for_commands_that_require_them(command: str) -> None:
    env = env_for(command, CNI_CONTAINERID="bad%id", CNI_IFNAME="a/b:c d")
    plugin = FakePlugin()
    assert_ok(run(plugin, env))
    assert plugin.verbs == ([] if command == "VERSION" else [command])


# -- container ID, network name, interface name ---------------------------------

VALID_NAMES = ["a", "Z", "0", "some-container-id", "a_b.c-d", "A1.2_3-4", "x" * 300, "a..", "0-"]
INVALID_NAMES = ["-a", "_a", ".a", "a b", "a/b", "a%b", "a:b", "a\n", "a\nb", " a", "é", "aé",
                 "a\tb", "a*", "a\u0661"]


@pytest.mark.parametrize("command", ["ADD", "CHECK", "DEL"])
@pytest.mark.parametrize("container_id", VALID_NAMES)
def test_container_id_valid(command: str, container_id: str) -> None:
    plugin = FakePlugin()
    assert_ok(run(plugin, env_for(command, CNI_CONTAINERID=container_id)))
    assert plugin.calls[0][1].container_id == container_id


@pytest.mark.parametrize("command", ["ADD", "CHECK", "DEL"])
@pytest.mark.parametrize("container_id", INVALID_NAMES)
def test_container_id_invalid(command: str, container_id: str) -> None:
    plugin = FakePlugin()
    result = skel.run(plugin, env_for(command, CNI_CONTAINERID=container_id), failing_stdin)
    assert_error(result, errors.ERR_INVALID_ENVIRONMENT_VARIABLES, "invalid characters in containerID",
                 container_id)
    assert plugin.calls == []


def test_validate_container_id_empty_is_unknown_container() -> None:
    with pytest.raises(CNIError) as info:
        skel.validate_container_id("")
    assert info.value == CNIError(errors.ERR_UNKNOWN_CONTAINER, "missing containerID")


@pytest.mark.parametrize("name", VALID_NAMES)
def test_network_name_valid(name: str) -> None:
    plugin = FakePlugin()
    assert_ok(run(plugin, env_for("ADD"), conf(name=name)))
    assert plugin.calls[0][1].config["name"] == name


@pytest.mark.parametrize("name", INVALID_NAMES)
def test_network_name_invalid(name: str) -> None:
    plugin = FakePlugin()
    assert_error(run(plugin, env_for("ADD"), conf(name=name)), errors.ERR_INVALID_NETWORK_CONFIG,
                 "invalid characters found in network name", name)
    assert plugin.calls == []


@pytest.mark.parametrize("stdin", [
    conf(name=None), conf(name=""), b'{"cniVersion":"1.1.0","name":null}', b"{}", b"null",
    b'{"name":"skel-test","name":""}',
], ids=["absent", "empty", "null", "empty-object", "json-null", "last-duplicate-wins"])
def test_missing_network_name(stdin: bytes) -> None:
    assert_error(run(FakePlugin(), env_for("ADD"), stdin), errors.ERR_INVALID_NETWORK_CONFIG,
                 "missing network name")


IFNAME_ERRORS = {
    "long": ("interface name is too long", "interface name should be less than 16 characters"),
    "dots": ("interface name is . or ..", ""),
    "chars": ("interface name contains / or : or whitespace characters", ""),
}


@pytest.mark.parametrize("ifname,kind", [
    ("1234567890123456", "long"),
    ("x" * 40, "long"),
    ("é" * 8, "long"),                 # 8 characters but 16 bytes: Go counts bytes
    ("123456789012345/", "long"),      # length is checked first
    (".", "dots"),
    ("..", "dots"),
    ("/", "chars"),
    ("a/b", "chars"),
    ("a:b", "chars"),
    (":", "chars"),
    ("a b", "chars"),
    (" ", "chars"),
    ("a\tb", "chars"),
    ("eth0\n", "chars"),
    ("a\rb", "chars"),
    ("a\vb", "chars"),
    ("a\fb", "chars"),
    ("a\x85b", "chars"),
    ("a\xa0b", "chars"),
    ("a\u2003b", "chars"),
    ("a\u3000b", "chars"),
])
@pytest.mark.parametrize("command", ["ADD", "CHECK", "DEL"])
def test_ifname_invalid(command: str, ifname: str, kind: str) -> None:
    plugin = FakePlugin()
    msg, details = IFNAME_ERRORS[kind]
    result = skel.run(plugin, env_for(command, CNI_IFNAME=ifname), failing_stdin)
    assert_error(result, errors.ERR_INVALID_ENVIRONMENT_VARIABLES, msg, details)
    assert plugin.calls == []


@pytest.mark.parametrize("ifname", [
    "123456789012345",      # 15 bytes: the maximum
    "é" * 7 + "a",          # 15 bytes
    "e", "eth0", "...", ".a", "a.", "eth0.100", "veth-1_2", "a\x1cb", "a\x1fb",  # U+001C..1F: not Go spaces
    "a\u200bb",             # zero width space is not White_Space
])
def test_ifname_valid(ifname: str) -> None:
    plugin = FakePlugin()
    assert_ok(run(plugin, env_for("ADD", CNI_IFNAME=ifname)))
    assert plugin.calls[0][1].ifname == ifname


def test_validate_ifname_empty() -> None:
    # Through the environment an empty value is "missing"; the validator itself says "empty".
    with pytest.raises(CNIError) as info:
        skel.validate_ifname("")
    assert info.value == CNIError(errors.ERR_INVALID_ENVIRONMENT_VARIABLES, "interface name is empty")
    assert_error(run(FakePlugin(), env_for("ADD", CNI_IFNAME="")), 4, missing("CNI_IFNAME"))


def test_ifname_length_counts_raw_bytes_of_surrogate_escaped_env() -> None:
    # os.environ hands undecodable bytes over as surrogate escapes: count the original bytes.
    ifname = os.fsdecode(b"\xff" * 15)
    assert_ok(run(FakePlugin(), env_for("ADD", CNI_IFNAME=ifname)))
    ifname = os.fsdecode(b"\xff" * 16)
    assert_error(run(FakePlugin(), env_for("ADD", CNI_IFNAME=ifname)), 4, "interface name is too long",
                 None)


# -- stdin -----------------------------------------------------------------------

@pytest.mark.parametrize("stdin", [
    b"", b" ", b"{", b"not json", b"[]", b'["skel-test"]', b"5", b'"skel-test"', b"true",
    b'{"name":"skel-test"} x', b'{"name":"skel-test",}', b"{'name':'skel-test'}",
    b'{"name":"skel-test","x":NaN}', b'{"name":"skel-test","x":Infinity}', b'{"name":"skel-test","x":-Infinity}',
    b'\xef\xbb\xbf{"name":"skel-test"}', '{"name":"skel-test"}'.encode("utf-16"),
    b'\xff{"name":"skel-test"}', b'{"name":5}', b'{"name":["a"]}', b'{"name":{}}', b'{"name":true}',
], ids=["empty", "space", "truncated", "garbage", "array", "array-of-name", "number", "string", "true",
        "trailing-data", "trailing-comma", "single-quotes", "nan", "infinity", "minus-infinity", "bom",
        "utf16", "invalid-utf8-outside-string", "name-number", "name-array", "name-object", "name-bool"])
@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK", "GC", "STATUS", "NOPE"])
def test_stdin_not_a_config_is_decoding_failure(command: str, stdin: bytes) -> None:
    plugin = FakePlugin()
    obj = assert_error(run(plugin, env_for(command), stdin), errors.ERR_DECODING_FAILURE)
    assert obj["msg"].startswith("error unmarshall network config: ")
    assert plugin.calls == []


def test_stdin_invalid_utf8_inside_strings_is_accepted_like_go() -> None:
    plugin = FakePlugin()
    stdin = b'{"cniVersion":"1.1.0","name":"skel-test","x":"\xff"}'
    assert_ok(run(plugin, env_for("ADD"), stdin))
    request = plugin.calls[0][1]
    assert request.config["x"] == "\ufffd"
    assert request.stdin is stdin


def test_stdin_read_failure_is_io_error() -> None:
    def bad_reader() -> bytes:
        raise OSError("banana")

    plugin = FakePlugin()
    result = skel.run(plugin, env_for("ADD"), bad_reader, netns_check=not_own)
    assert_error(result, errors.ERR_IO_FAILURE, "error reading from stdin: banana")
    assert plugin.calls == []


def test_stdin_callable_is_read_once() -> None:
    reads = []

    def reader() -> bytes:
        reads.append(1)
        return conf()

    plugin = FakePlugin()
    assert_ok(skel.run(plugin, env_for("ADD"), reader, netns_check=not_own))
    assert reads == [1]
    assert plugin.calls[0][1].stdin == conf()


# -- versions ----------------------------------------------------------------------

@pytest.mark.parametrize("command", ["ADD", "DEL"])
@pytest.mark.parametrize("version,expected", [
    ("9.9.9", "9.9.9"), ("0.5.0", "0.5.0"), ("1.0", "1.0"), ("abc", "abc"),
    ("1.0.0.0", "1.0.0.0"), (None, "0.1.0"), ("", "0.1.0"),
])
def test_unsupported_config_version(command: str, version: str | None, expected: str) -> None:
    # ADD and DEL only look the version up; even a malformed one is "incompatible".
    supported = ("0.3.1", "1.0.0")
    plugin = FakePlugin(supported)
    obj = assert_error(run(plugin, env_for(command), conf(version)), errors.ERR_INCOMPATIBLE_CNI_VERSION,
                       "incompatible CNI versions",
                       f'config is "{expected}", plugin supports ["0.3.1" "1.0.0"]')
    assert obj["details"] == incompatible_details(expected, supported)
    assert plugin.calls == []


def test_missing_cni_version_is_0_1_0() -> None:
    plugin = FakePlugin(("0.1.0",))
    stdin = b'{ "name": "skel-test", "some": "config" }'
    assert_ok(run(plugin, env_for("ADD"), stdin))
    request = plugin.calls[0][1]
    assert request.cni_version == "0.1.0"
    assert request.stdin == stdin


@pytest.mark.parametrize("version", [5, 1.0, ["1.0.0"], {"v": 1}, True])
@pytest.mark.parametrize("command", ["ADD", "CHECK", "GC"])
def test_cni_version_not_a_string(command: str, version: object) -> None:
    obj = assert_error(run(FakePlugin(), env_for(command), conf(version)), errors.ERR_DECODING_FAILURE)
    assert obj["msg"].startswith("decoding version from network config: ")


@pytest.mark.parametrize("command,version,supported,code,msg", [
    ("CHECK", "0.3.1", ALL, 1, "config version does not allow CHECK"),
    ("CHECK", "0.3.0", ALL, 1, "config version does not allow CHECK"),
    ("CHECK", "0.2.0", ALL, 1, "config version does not allow CHECK"),
    ("CHECK", None, ALL, 1, "config version does not allow CHECK"),
    ("CHECK", "0.4.0", ("0.1.0", "0.2.0", "0.3.0"), 1, "plugin version does not allow CHECK"),
    ("CHECK", "9.9.9", ALL, 1, "plugin version does not allow CHECK"),
    ("CHECK", "0.5.0", ALL, 1, "incompatible CNI versions"),  # >= 0.4.0, a newer plugin version, not listed
    ("CHECK", "adsfsadf", ("0.1.0", "0.2.0", "0.3.0"), 6,
     'failed to convert major version part "adsfsadf": strconv.Atoi: parsing "adsfsadf": invalid syntax'),
    ("CHECK", "1.0.0.0", ALL, 6, 'invalid version "1.0.0.0": too many parts'),
    ("CHECK", "1..0", ALL, 6, 'failed to convert minor version part "": strconv.Atoi: parsing "": invalid syntax'),
    ("CHECK", "0.4.0", ("0.1.0", "0.2.0", "adsfasdf"), 6,
     'failed to convert major version part "adsfasdf": strconv.Atoi: parsing "adsfasdf": invalid syntax'),
    ("GC", "1.0.0", ALL, 1, "config version does not allow GC"),
    ("GC", "0.3.0", ALL, 1, "config version does not allow GC"),
    ("GC", None, ALL, 1, "config version does not allow GC"),
    ("GC", "1.1.0", ("0.1.0", "0.2.0", "0.3.0"), 1, "plugin version does not allow GC"),
    ("GC", "adsfsadf", ("1.1.0",), 6, None),
    ("GC", "1.1.0", ("0.1.0", "0.2.0", "adsfasdf"), 6, None),
    ("STATUS", "1.0.0", ALL, 1, "config version does not allow STATUS"),
    ("STATUS", "0.4.0", ALL, 1, "config version does not allow STATUS"),
    ("STATUS", "1.1.0", ("0.1.0", "1.0.0"), 1, "plugin version does not allow STATUS"),
    ("STATUS", "x.1.0", ALL, 6, None),
])
def test_minimum_versions(command: str, version: str | None, supported: tuple[str, ...], code: int,
                          msg: str | None) -> None:
    plugin = FakePlugin(supported)
    assert_error(run(plugin, env_for(command), conf(version)), code, msg, None)
    assert plugin.calls == []


@pytest.mark.parametrize("command,version", [
    ("CHECK", "0.4.0"), ("CHECK", "1.0.0"), ("CHECK", "1.1.0"), ("GC", "1.1.0"), ("STATUS", "1.1.0"),
])
def test_minimum_versions_met(command: str, version: str) -> None:
    plugin = FakePlugin()
    status, out, err = run(plugin, env_for(command), conf(version))
    assert (status, out, err) == (0, b"", b"")
    assert plugin.verbs == [command]


# -- commands --------------------------------------------------------------------

@pytest.mark.parametrize("command", ["NOPE", "add", "Add", "version", "ADD ", "DELETE", "GARBAGE"])
def test_unknown_command(command: str) -> None:
    plugin = FakePlugin()
    assert_error(run(plugin, env_for(command)), errors.ERR_INVALID_ENVIRONMENT_VARIABLES,
                 f"unknown CNI_COMMAND: {command}")
    assert plugin.calls == []


def test_unknown_command_needs_no_other_vars_but_a_valid_config() -> None:
    # The reference reads and validates stdin before it looks at the command.
    assert_error(run(FakePlugin(), {"CNI_COMMAND": "NOPE"}), 4, "unknown CNI_COMMAND: NOPE")
    assert_error(run(FakePlugin(), {"CNI_COMMAND": "NOPE"}, b"{"), errors.ERR_DECODING_FAILURE, None)
    assert_error(run(FakePlugin(), {"CNI_COMMAND": "NOPE"}, b"{}"), 7, "missing network name")


@pytest.mark.parametrize("env", [
    {}, {"CNI_COMMAND": ""}, env_for(""), env_for("", CNI_IFNAME="a/b", CNI_CONTAINERID="%"),
], ids=["nothing", "empty", "all-others-set", "others-invalid"])
def test_empty_command_prints_about(env: dict[str, str]) -> None:
    plugin = FakePlugin(("9.8.7", "10.0.0"), about="AWESOME PLUGIN")
    status, out, err = skel.run(plugin, env, failing_stdin, netns_check=not_own)
    assert (status, out) == (0, b"")
    assert err == b"AWESOME PLUGIN\nCNI protocol versions supported: 9.8.7, 10.0.0\n"
    assert plugin.calls == []


def test_empty_command_without_about_text_uses_a_default() -> None:
    # Deliberate difference: the reference fails (code 4) when the plugin has no about string.
    status, out, err = skel.run(FakePlugin(("1.0.0",), about=""), {}, failing_stdin)
    assert (status, out, err) == (0, b"", b"CNI plugin\nCNI protocol versions supported: 1.0.0\n")


@pytest.mark.parametrize("env", [
    {"CNI_COMMAND": "VERSION"},
    env_for("VERSION"),
    env_for("VERSION", CNI_CONTAINERID="bad%", CNI_IFNAME="a/b", CNI_PATH=""),
], ids=["only-command", "all-set", "others-invalid"])
def test_version_exact_bytes_without_reading_stdin(env: dict[str, str]) -> None:
    plugin = FakePlugin(("9.8.7", "10.0.0"))
    result = skel.run(plugin, env, failing_stdin, netns_check=not_own)
    assert result == (0, b'{"cniVersion":"1.1.0","supportedVersions":["9.8.7","10.0.0"]}\n', b"")
    assert plugin.calls == []


def test_version_of_a_hosted_plugin() -> None:
    result = skel.run(PluginHost(loopback_module, "loopback"), {"CNI_COMMAND": "VERSION"}, failing_stdin)
    expected = json.dumps({"cniVersion": CURRENT, "supportedVersions": list(ALL)}, separators=(",", ":"))
    assert result == (0, expected.encode() + b"\n", b"")


@pytest.mark.parametrize("command", ["ADD", "CHECK", "DEL", "GC", "STATUS"])
def test_dispatch_calls_exactly_that_verb(command: str) -> None:
    plugin = FakePlugin()
    status, out, err = run(plugin, env_for(command))
    assert status == 0 and err == b""
    assert plugin.verbs == [command]
    if command != "ADD":
        assert out == b""


# -- what reaches the plugin -------------------------------------------------------

def test_request_fields() -> None:
    plugin = FakePlugin()
    stdin = b'{ "name":"skel-test", "some": "config", "cniVersion": "0.4.0" }'
    env = env_for("ADD", CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAME=p", CNI_NETNS_OVERRIDE="0", OTHER="x")
    assert_ok(run(plugin, env, stdin))
    [(verb, request)] = plugin.calls
    assert verb == "ADD" and request.command == "ADD"
    assert request.container_id == "some-container-id"
    assert request.netns == NETNS
    assert request.ifname == "eth0"
    assert request.args == "IgnoreUnknown=1;K8S_POD_NAME=p"
    assert request.path == "/some/cni/path"
    assert request.netns_override == "0"
    assert request.stdin == stdin and isinstance(request.stdin, bytes)
    assert request.config == {"name": "skel-test", "some": "config", "cniVersion": "0.4.0"}
    assert request.cni_version == "0.4.0"
    assert request.env["OTHER"] == "x"


def test_request_fields_for_gc_without_optional_vars() -> None:
    plugin = FakePlugin()
    assert_ok(run(plugin, {"CNI_COMMAND": "GC", "CNI_PATH": "/p"}, conf("1.1.0")))
    [(_, request)] = plugin.calls
    assert (request.container_id, request.netns, request.ifname, request.args, request.path) == \
        ("", "", "", "", "/p")
    assert request.cni_version == "1.1.0"


# -- plugin failures ----------------------------------------------------------------

@pytest.mark.parametrize("exc,msg", [
    (RuntimeError("potato"), "potato"),
    (ValueError("bad value"), "bad value"),
    (KeyError("k"), "'k'"),
    (ZeroDivisionError(), "ZeroDivisionError"),
    (OSError(2, "No such file or directory"), "[Errno 2] No such file or directory"),
])
def test_unexpected_exception_is_internal_error(exc: Exception, msg: str) -> None:
    plugin = FakePlugin(raises=exc)
    status, out, err = run(plugin, env_for("ADD"))
    obj = assert_error((status, out, err), errors.ERR_INTERNAL, msg)
    assert b"Traceback" not in out
    assert err.startswith(b"Traceback (most recent call last):")
    assert type(exc).__name__.encode() in err
    assert obj["cniVersion"] == "1.1.0"


@pytest.mark.parametrize("exc", [
    CNIError(1234, "insufficient something"),
    CNIError(errors.ERR_TRY_AGAIN_LATER, "busy", "retry in 5s"),
    CNIError(errors.ERR_INVALID_NETWORK_CONFIG, "bad <ipam> & stuff", "line 1"),
])
@pytest.mark.parametrize("command", ["ADD", "CHECK", "DEL", "GC", "STATUS"])
def test_cni_error_passes_through(command: str, exc: CNIError) -> None:
    status, out, err = run(FakePlugin(raises=exc), env_for(command))
    assert err == b""
    assert_error((status, out, err), exc.code, exc.msg, exc.details)


# -- ADD results ---------------------------------------------------------------------

@pytest.mark.parametrize("version", ALL)
def test_add_result_is_converted_to_config_version(version: str) -> None:
    status, out, err = run(FakePlugin(), env_for("ADD"), conf(version))
    assert (status, err) == (0, b"")
    assert out == default_result().convert(version).to_json()
    obj = json.loads(out)
    assert obj["cniVersion"] == version
    if version in ("0.1.0", "0.2.0"):
        assert obj["ip4"] == {"ip": "10.1.2.3/24", "gateway": "10.1.2.1"}
    elif version in ("0.3.0", "0.3.1", "0.4.0"):
        assert obj["ips"] == [{"version": "4", "interface": 0, "address": "10.1.2.3/24",
                               "gateway": "10.1.2.1"}]
    else:
        assert obj["ips"] == [{"address": "10.1.2.3/24", "gateway": "10.1.2.1", "interface": 0}]


def test_add_result_exact_bytes() -> None:
    status, out, _ = run(FakePlugin(), env_for("ADD"), conf("1.0.0"))
    assert status == 0
    assert out == (b'{\n    "cniVersion": "1.0.0",\n    "interfaces": [\n        {\n'
                   b'            "mac": "aa:bb:cc:dd:ee:ff",\n            "name": "eth0",\n'
                   b'            "sandbox": "/some/netns/path"\n        }\n    ],\n    "ips": [\n'
                   b'        {\n            "address": "10.1.2.3/24",\n            "gateway": "10.1.2.1",\n'
                   b'            "interface": 0\n        }\n    ]\n}')


def test_add_dict_result_is_accepted_and_converted() -> None:
    result = {"cniVersion": "1.0.0", "ips": [{"address": "10.1.2.3/24"}]}
    status, out, _ = run(FakePlugin(result=result), env_for("ADD"), conf("0.3.1"))
    assert status == 0
    assert json.loads(out)["ips"] == [{"version": "4", "address": "10.1.2.3/24"}]


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0"])
def test_add_result_without_ips_cannot_be_0_2_0(version: str) -> None:
    status, out, _ = run(FakePlugin(result=Result("1.1.0")), env_for("ADD"), conf(version))
    obj = assert_error((status, out, b""), errors.ERR_INTERNAL, "cannot convert: no valid IP addresses")
    assert obj["cniVersion"] == version


@pytest.mark.parametrize("result", [None, "not a result", 42])
def test_add_without_a_result_is_internal_error(result: object) -> None:
    assert_error(run(FakePlugin(result=result), env_for("ADD")), errors.ERR_INTERNAL, None)


# -- the error object -------------------------------------------------------------------

def test_error_layout_exact_bytes() -> None:
    # The config is not known yet when its name is missing: the error speaks CURRENT.
    _, out, _ = run(FakePlugin(), env_for("ADD"), conf("0.4.0", name=None))
    assert out == b'{\n    "cniVersion": "1.1.0",\n    "code": 7,\n    "msg": "missing network name"\n}'
    _, out, _ = run(FakePlugin(("1.0.0",)), env_for("ADD"), conf("0.4.0"))
    assert out == (b'{\n    "cniVersion": "0.4.0",\n    "code": 1,\n    "msg": "incompatible CNI versions",\n'
                   b'    "details": "config is \\"0.4.0\\", plugin supports [\\"1.0.0\\"]"\n}')


@pytest.mark.parametrize("env,stdin,version", [
    (env_for("ADD", CNI_PATH=None), conf("0.3.1"), CURRENT),      # before stdin is read
    (env_for("ADD"), b"{", CURRENT),                              # stdin not decodable
    (env_for("ADD"), conf("9.9.9"), CURRENT),                     # unknown version
    (env_for("ADD"), conf(None), CURRENT),                        # absent: 0.1.0, not supported here
    (env_for("CHECK"), conf("0.3.1"), "0.3.1"),
    (env_for("ADD", CNI_NETNS="/proc/self/ns/net"), conf("0.2.0"), "0.2.0"),
])
def test_error_cni_version_is_the_configs_when_known(env: dict[str, str], stdin: bytes, version: str) -> None:
    status, out, _ = skel.run(FakePlugin(ALL[1:]), env, stdin)
    assert status == 1
    obj = json.loads(out)
    assert list(obj)[:3] == ["cniVersion", "code", "msg"]
    assert obj["cniVersion"] == version
    assert not out.endswith(b"\n")
    assert out == wire.dumps_indent(obj)


def test_error_uses_go_html_escapes() -> None:
    exc = CNIError(errors.ERR_INTERNAL, "a<b>&c", "\u2028")
    _, out, _ = run(FakePlugin(raises=exc), env_for("ADD"))
    assert b'"msg": "a\\u003cb\\u003e\\u0026c"' in out
    assert b'"details": "\\u2028"' in out


# -- the plugin's own netns ---------------------------------------------------------------

NETNS_SAME = "plugin's netns and netns from CNI_NETNS should not be the same"


@pytest.mark.parametrize("command,override,rejected", [
    ("ADD", None, True),
    ("DEL", None, True),
    ("ADD", "", True),
    ("ADD", "0", True),
    ("ADD", "false", True),
    ("ADD", "yes", True),
    ("ADD", "1", False),
    ("ADD", "true", False),
    ("ADD", "TRUE", False),
    ("ADD", "True", False),
    ("DEL", "1", False),
    ("DEL", "tRuE", False),
    ("CHECK", None, False),   # the reference checks ADD and DEL only
])
def test_netns_same_as_plugins(command: str, override: str | None, rejected: bool) -> None:
    checked: list[str] = []

    def own(path: str) -> bool:
        checked.append(path)
        return True

    plugin = FakePlugin()
    env = env_for(command, CNI_NETNS_OVERRIDE=override)
    result = run(plugin, env, netns_check=own)
    if rejected:
        assert_error(result, errors.ERR_INVALID_NETNS, NETNS_SAME)
        assert plugin.calls == []      # checked before the verb runs (deliberate)
        assert checked == [NETNS]
    else:
        assert_ok(result)
        assert plugin.verbs == [command]


def test_netns_check_skipped_for_del_without_netns() -> None:
    def own(path: str) -> bool:
        raise AssertionError("no CNI_NETNS: nothing to check")

    plugin = FakePlugin()
    assert_ok(run(plugin, env_for("DEL", CNI_NETNS=None), netns_check=own))
    assert plugin.verbs == ["DEL"]


def test_netns_check_after_version_check() -> None:
    def own(path: str) -> bool:
        return True

    assert_error(run(FakePlugin(("1.0.0",)), env_for("ADD"), conf("0.4.0"), netns_check=own), 1,
                 "incompatible CNI versions", None)


def test_default_netns_check_with_own_namespace_path() -> None:
    plugin = FakePlugin()
    for path in ("/proc/self/ns/net", "/proc/thread-self/ns/net"):
        result = skel.run(plugin, env_for("ADD", CNI_NETNS=path), conf())
        assert_error(result, errors.ERR_INVALID_NETNS, NETNS_SAME)
    assert plugin.calls == []
    assert skel.netns_is_own("/proc/thread-self/ns/net")
    assert not skel.netns_is_own("/nonexistent/netns")
    assert not skel.netns_is_own("")


@pytest.fixture(scope="module")
def netns_path() -> Iterator[str]:
    if os.geteuid() != 0:  # pragma: no cover - CI runs as root
        pytest.skip("needs root to create a network namespace")
    from cnicore.ns import new_netns

    netns = new_netns()
    try:
        yield netns.path
    finally:
        netns.remove()


@pytest.mark.privileged
def test_default_netns_check_with_another_namespace(netns_path: str) -> None:
    assert not skel.netns_is_own(netns_path)
    plugin = FakePlugin()
    assert_ok(skel.run(plugin, env_for("ADD", CNI_NETNS=netns_path), conf()))
    assert plugin.calls[0][1].netns == netns_path


# =====================================================================================
# Part 2: the same bad inputs against Debian's Go loopback
#
# Known, legitimate differences (not compared):
# * the Go binary's lib (v1.1.x) supports up to 1.0.0 and has no GC/STATUS and no
#   "CNI_NETNS is the plugin's own netns" check, so 1.1.0 configs, GC, STATUS and
#   code 8 are ours only; "incompatible CNI versions" details list each side's versions;
# * v1.1.x reported missing variables before validating present ones and validated
#   the container ID / interface name for every command, so only single faults (and
#   unknown commands with an otherwise complete environment) are compared;
# * JSON syntax and type error *texts* come from Go's encoding/json, ours from
#   Python's json: only the code and the message prefix match;
# * our error objects carry "cniVersion" (spec-required), ignored when comparing;
# * the about text differs (the protocol-versions line has the same format).
# =====================================================================================

GO_LOOPBACK = "/usr/lib/cni/loopback"
NS = "@NETNS"  # replaced by the real namespace path

needs_go = pytest.mark.skipif(not os.access(GO_LOOPBACK, os.X_OK), reason=f"{GO_LOOPBACK} not installed")


def go_env(command: str, **changes: str | None) -> dict[str, str]:
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": "ctr-1", "CNI_NETNS": NS, "CNI_IFNAME": "eth0",
           "CNI_PATH": "/usr/lib/cni"}
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


GOOD = b'{"cniVersion":"1.0.0","name":"net","type":"loopback"}'


def lo_conf(version: str | None = "1.0.0", name: object = "net") -> bytes:
    return conf(version, name, type="loopback")


def case(env: dict[str, str], stdin: bytes, mode: str, id: str) -> Any:
    """``mode``: ok (both succeed) | same (code, msg and details equal) | json (code and the
    JSON-error prefix) | prefix:<text> | versions (msg equal, details name each side's supported versions)."""
    return pytest.param(env, stdin, mode, id=id)


GO_CASES = [
    # missing variables, alone and together
    case({"CNI_COMMAND": "ADD"}, GOOD, "same", "add-only-command"),
    case(go_env("ADD", CNI_NETNS=None), GOOD, "same", "add-no-netns"),
    case(go_env("ADD", CNI_CONTAINERID=None), GOOD, "same", "add-no-containerid"),
    case(go_env("ADD", CNI_IFNAME=None, CNI_PATH=None), GOOD, "same", "add-no-ifname-path"),
    case(go_env("ADD", CNI_CONTAINERID="", CNI_PATH=""), GOOD, "same", "add-empty-values"),
    case({"CNI_COMMAND": "CHECK"}, GOOD, "same", "check-only-command"),
    case(go_env("CHECK", CNI_NETNS=None, CNI_IFNAME=None, CNI_PATH=None), GOOD, "same", "check-three-missing"),
    case({"CNI_COMMAND": "DEL"}, GOOD, "same", "del-only-command"),
    case(go_env("DEL", CNI_PATH=None), GOOD, "same", "del-no-path"),
    case(go_env("DEL", CNI_NETNS=None), GOOD, "ok", "del-netns-optional"),
    # container ID
    case(go_env("ADD", CNI_CONTAINERID="a%b"), GOOD, "same", "cid-percent"),
    case(go_env("ADD", CNI_CONTAINERID="-abc"), GOOD, "same", "cid-leading-dash"),
    case(go_env("ADD", CNI_CONTAINERID=".abc"), GOOD, "same", "cid-leading-dot"),
    case(go_env("ADD", CNI_CONTAINERID="a b"), GOOD, "same", "cid-space"),
    case(go_env("ADD", CNI_CONTAINERID="ctr/1"), GOOD, "same", "cid-slash"),
    case(go_env("ADD", CNI_CONTAINERID="ctr-1\n"), GOOD, "same", "cid-trailing-newline"),
    case(go_env("DEL", CNI_CONTAINERID="é"), GOOD, "same", "del-cid-non-ascii"),
    case(go_env("CHECK", CNI_CONTAINERID="a:b"), GOOD, "same", "check-cid-colon"),
    # interface name
    case(go_env("ADD", CNI_IFNAME="1234567890123456"), GOOD, "same", "ifname-16"),
    case(go_env("ADD", CNI_IFNAME="é" * 8), GOOD, "same", "ifname-16-bytes"),
    case(go_env("ADD", CNI_IFNAME="."), GOOD, "same", "ifname-dot"),
    case(go_env("ADD", CNI_IFNAME=".."), GOOD, "same", "ifname-dotdot"),
    case(go_env("ADD", CNI_IFNAME="a/b"), GOOD, "same", "ifname-slash"),
    case(go_env("ADD", CNI_IFNAME="a:b"), GOOD, "same", "ifname-colon"),
    case(go_env("ADD", CNI_IFNAME="a b"), GOOD, "same", "ifname-space"),
    case(go_env("ADD", CNI_IFNAME="a\tb"), GOOD, "same", "ifname-tab"),
    case(go_env("ADD", CNI_IFNAME="eth0\n"), GOOD, "same", "ifname-newline"),
    case(go_env("ADD", CNI_IFNAME="a\xa0b"), GOOD, "same", "ifname-nbsp"),
    case(go_env("ADD", CNI_IFNAME="a\u3000b"), GOOD, "same", "ifname-ideographic-space"),
    case(go_env("DEL", CNI_IFNAME="a/b"), GOOD, "same", "del-ifname-slash"),
    case(go_env("CHECK", CNI_IFNAME="1234567890123456"), GOOD, "same", "check-ifname-16"),
    case(go_env("ADD", CNI_IFNAME="123456789012345"), GOOD, "ok", "ifname-15"),
    case(go_env("ADD", CNI_IFNAME="a\x1cb"), GOOD, "ok", "ifname-x1c-not-space"),
    # stdin that is not a config
    case(go_env("ADD"), b"", "json", "stdin-empty"),
    case(go_env("ADD"), b"{", "json", "stdin-truncated"),
    case(go_env("ADD"), b"not json", "json", "stdin-garbage"),
    case(go_env("ADD"), b"[]", "json", "stdin-array"),
    case(go_env("ADD"), b"5", "json", "stdin-number"),
    case(go_env("ADD"), b'"net"', "json", "stdin-string"),
    case(go_env("ADD"), GOOD + b" x", "json", "stdin-trailing-data"),
    case(go_env("ADD"), b'{"name":"net",}', "json", "stdin-trailing-comma"),
    case(go_env("ADD"), b'{"name":"net","x":NaN}', "json", "stdin-nan"),
    case(go_env("ADD"), b"\xef\xbb\xbf" + GOOD, "json", "stdin-bom"),
    case(go_env("ADD"), GOOD.decode().encode("utf-16"), "json", "stdin-utf16"),
    case(go_env("ADD"), b'{"name":5}', "json", "name-number"),
    case(go_env("DEL"), b"{", "json", "del-stdin-truncated"),
    case(go_env("CHECK"), b"[]", "json", "check-stdin-array"),
    case(go_env("ADD"), b"null", "same", "stdin-null"),
    case(go_env("ADD"), b'{"cniVersion":"9.9.9","name":"net","x":"\xff"}', "versions", "stdin-invalid-utf8-in-string"),
    # network name
    case(go_env("ADD"), lo_conf(name=None), "same", "name-missing"),
    case(go_env("ADD"), lo_conf(name=""), "same", "name-empty"),
    case(go_env("ADD"), b'{"cniVersion":"1.0.0","name":null}', "same", "name-null"),
    case(go_env("ADD"), lo_conf(name="a%b"), "same", "name-percent"),
    case(go_env("ADD"), lo_conf(name="-net"), "same", "name-leading-dash"),
    case(go_env("ADD"), lo_conf(name="net\n"), "same", "name-trailing-newline"),
    case(go_env("ADD"), lo_conf(name="a b"), "same", "name-space"),
    case(go_env("DEL"), lo_conf(name="ńet"), "same", "del-name-non-ascii"),
    # versions
    case(go_env("ADD"), lo_conf("9.9.9"), "versions", "add-9.9.9"),
    case(go_env("ADD"), lo_conf("0.5.0"), "versions", "add-0.5.0"),
    case(go_env("ADD"), lo_conf("1.0"), "versions", "add-1.0"),
    case(go_env("ADD"), lo_conf("abc"), "versions", "add-malformed"),
    case(go_env("DEL"), lo_conf("9.9.9"), "versions", "del-9.9.9"),
    case(go_env("DEL"), lo_conf("0.5.0"), "versions", "del-0.5.0"),
    case(go_env("CHECK"), lo_conf("0.5.0"), "versions", "check-0.5.0"),
    case(go_env("CHECK"), lo_conf("9.9.9"), "same", "check-9.9.9"),
    case(go_env("CHECK"), lo_conf("0.3.1"), "same", "check-0.3.1"),
    case(go_env("CHECK"), lo_conf("0.3.0"), "same", "check-0.3.0"),
    case(go_env("CHECK"), lo_conf("0.2.0"), "same", "check-0.2.0"),
    case(go_env("CHECK"), lo_conf(None), "same", "check-no-version"),
    case(go_env("CHECK"), lo_conf("abc"), "same", "check-malformed"),
    case(go_env("CHECK"), lo_conf("1.0.0.0"), "same", "check-too-many-parts"),
    case(go_env("CHECK"), lo_conf("1..0"), "same", "check-empty-part"),
    case(go_env("CHECK"), lo_conf("0x1.0.0"), "same", "check-hex-part"),
    case(go_env("CHECK"), lo_conf("\u0661.0.0"), "same", "check-non-ascii-digit"),
    case(go_env("ADD"), b'{"cniVersion":5,"name":"net"}', "prefix:decoding version from network config: ",
         "version-number"),
    case(go_env("ADD"), lo_conf(None), "ok", "add-no-version-is-0.1.0"),
    case(go_env("ADD"), lo_conf("0.3.1"), "ok", "add-0.3.1"),
    # commands
    case(go_env("NOPE"), GOOD, "same", "unknown-command"),
    case(go_env("add"), GOOD, "same", "unknown-lowercase-add"),
    case(go_env("Version"), GOOD, "same", "unknown-mixed-case-version"),
    case(go_env("NOPE"), b"{", "json", "unknown-command-bad-json"),
]


class Outcome:
    def __init__(self, status: int, stdout: bytes, stderr: bytes) -> None:
        self.status, self.stdout, self.stderr = status, stdout, stderr

    def __repr__(self) -> str:
        return f"Outcome({self.status}, {self.stdout!r}, {self.stderr!r})"


def run_go(env: Mapping[str, str], stdin: bytes) -> Outcome:
    proc = subprocess.run([GO_LOOPBACK], env=dict(env), input=stdin, capture_output=True,
                          timeout=30, cwd="/")
    return Outcome(proc.returncode, proc.stdout, proc.stderr)


def run_ours(env: Mapping[str, str], stdin: Any) -> Outcome:
    return Outcome(*skel.run(PluginHost(loopback_module, "loopback"), dict(env), stdin))


@pytest.fixture(scope="module")
def go_versions() -> tuple[str, ...]:
    out = run_go({"CNI_COMMAND": "VERSION"}, b"")
    return tuple(json.loads(out.stdout)["supportedVersions"])


def with_netns(env: dict[str, str], path: str) -> dict[str, str]:
    return {k: (path if v == NS else v) for k, v in env.items()}


@pytest.mark.interop
@pytest.mark.privileged
@needs_go
@pytest.mark.parametrize("env,stdin,mode", GO_CASES)
def test_same_answer_as_go_loopback(env: dict[str, str], stdin: bytes, mode: str, netns_path: str,
                                    go_versions: tuple[str, ...]) -> None:
    env = with_netns(env, netns_path)
    go, ours = run_go(env, stdin), run_ours(env, stdin)
    assert ours.status == go.status, (go, ours)
    if mode == "ok":
        assert go.status == 0 and go.stderr == b"" and ours.stderr == b"", (go, ours)
        if go.stdout or ours.stdout:  # ADD: both print a result
            assert "code" not in json.loads(go.stdout) and "code" not in json.loads(ours.stdout)
        return
    assert go.status == 1, go
    g, o = json.loads(go.stdout), json.loads(ours.stdout)
    # Same layout: MarshalIndent with 4 spaces, no trailing newline; ours adds cniVersion first.
    assert go.stdout == wire.dumps_indent(g)
    assert ours.stdout == wire.dumps_indent(o)
    assert o.pop("cniVersion") in ALL
    assert list(o) == list(g), (g, o)
    assert o["code"] == g["code"], (g, o)
    if mode == "same":
        assert o == g
    elif mode == "json":
        assert g["code"] == o["code"] == errors.ERR_DECODING_FAILURE
        assert g["msg"].startswith("error unmarshall network config: ")
        assert o["msg"].startswith("error unmarshall network config: ")
    elif mode.startswith("prefix:"):
        prefix = mode.split(":", 1)[1]
        assert g["msg"].startswith(prefix) and o["msg"].startswith(prefix), (g, o)
    elif mode == "versions":
        config_version = json.loads(stdin.decode("utf-8", "replace")).get("cniVersion") or "0.1.0"
        assert g["msg"] == o["msg"] == "incompatible CNI versions"
        assert g["details"] == incompatible_details(config_version, go_versions)
        assert o["details"] == incompatible_details(config_version, ALL)
    else:  # pragma: no cover
        raise AssertionError(mode)



@pytest.mark.interop
@pytest.mark.privileged
@needs_go
@pytest.mark.parametrize("env", [{}, go_env(""), {"CNI_COMMAND": "", "CNI_IFNAME": "a/b"}],
                         ids=["nothing", "empty-command", "empty-command-bad-ifname"])
def test_empty_command_like_go_loopback(env: dict[str, str], netns_path: str,
                                        go_versions: tuple[str, ...]) -> None:
    env = with_netns(env, netns_path)
    go, ours = run_go(env, b""), run_ours(env, failing_stdin)
    assert (go.status, go.stdout) == (ours.status, ours.stdout) == (0, b"")
    go_lines, our_lines = go.stderr.decode().split("\n"), ours.stderr.decode().split("\n")
    assert len(go_lines) == len(our_lines) == 3 and go_lines[2] == our_lines[2] == ""
    assert go_lines[0].startswith("CNI loopback plugin") and our_lines[0].startswith("CNI loopback plugin")
    assert go_lines[1] == "CNI protocol versions supported: " + ", ".join(go_versions)
    assert our_lines[1] == "CNI protocol versions supported: " + ", ".join(ALL)



@pytest.mark.interop
@pytest.mark.privileged
@needs_go
@pytest.mark.parametrize("env", [{"CNI_COMMAND": "VERSION"}, go_env("VERSION", CNI_IFNAME="a/b")],
                         ids=["only-command", "others-set"])
def test_version_like_go_loopback(env: dict[str, str], netns_path: str) -> None:
    env = with_netns(env, netns_path)
    # Go must not read stdin either: give it a pipe whose write end stays open.
    read_fd, write_fd = os.pipe()
    try:
        proc = subprocess.run([GO_LOOPBACK], env=env, stdin=read_fd, capture_output=True, timeout=30, cwd="/")
    finally:
        os.close(read_fd)
        os.close(write_fd)
    ours = run_ours(env, failing_stdin)
    assert proc.returncode == ours.status == 0
    assert proc.stderr == ours.stderr == b""
    go_info = json.loads(proc.stdout)
    # Byte for byte the same encoding (compact JSON plus a newline), different lists.
    assert proc.stdout == PluginInfo(go_info["supportedVersions"], go_info["cniVersion"]).encode()
    assert ours.stdout == PluginInfo(ALL).encode()
    assert go_info["supportedVersions"] == [v for v in ALL if v != "1.1.0"]
