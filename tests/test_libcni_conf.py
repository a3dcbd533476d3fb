"""Config loading for cnicore.libcni: file discovery, parsing, version
negotiation and errors, following the reference's libcni/conf.go.
Pure tests on temporary directories; nothing is executed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cnicore.errors import ERR_INVALID_NETWORK_CONFIG, CNIError
from cnicore.libcni import conf as C
from cnicore.libcni.errors import ConfigError, NoConfigsFoundError, NotFoundError


def write(path: Path, obj: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


def conflist(name: str, *types: str, **extra: object) -> dict[str, object]:
    obj: dict[str, object] = {"cniVersion": "1.0.0", "name": name,
                              "plugins": [{"type": t} for t in types]}
    obj.update(extra)
    return obj


# -- conf_files ------------------------------------------------------------------

def test_conf_files_filters_by_last_extension_sorted_and_skips_dirs(tmp_path):
    for name in ("b.conflist", "a.conflist", "c.conf", "d.json", "e.conflist.bak", ".conflist",
                 "noext"):
        (tmp_path / name).write_text("{}")
    (tmp_path / "dir.conflist").mkdir()
    assert C.conf_files(str(tmp_path), [".conflist"]) == [
        str(tmp_path / n) for n in (".conflist", "a.conflist", "b.conflist")]
    assert C.conf_files(str(tmp_path), [".conf", ".json"]) == [
        str(tmp_path / "c.conf"), str(tmp_path / "d.json")]


def test_conf_files_of_missing_dir_is_empty(tmp_path):
    assert C.conf_files(str(tmp_path / "nope"), [".conf"]) == []


def test_conf_files_of_a_file_is_an_io_error(tmp_path):
    f = write(tmp_path / "x", "{}")
    with pytest.raises(ConfigError, match="cannot read config dir"):
        C.conf_files(str(f), [".conf"])


# -- finding a network ---------------------------------------------------------------

def test_first_sorted_name_match_wins(tmp_path):
    write(tmp_path / "20-b.conflist", conflist("net", "second"))
    write(tmp_path / "10-a.conflist", conflist("net", "first"))
    write(tmp_path / "05-other.conflist", conflist("other", "x"))
    found = C.load_conflist(str(tmp_path), "net")
    assert [p.type for p in found.plugins] == ["first"]
    assert found.path == str(tmp_path / "10-a.conflist")
    assert found.bytes == (tmp_path / "10-a.conflist").read_bytes()


def test_default_dir_comes_from_netconfpath(tmp_path, monkeypatch):
    write(tmp_path / "a.conflist", conflist("net", "bridge"))
    monkeypatch.setenv("NETCONFPATH", str(tmp_path))
    assert C.default_conf_dir() == str(tmp_path)
    assert C.load_conflist(None, "net").name == "net"
    monkeypatch.delenv("NETCONFPATH")
    assert C.default_conf_dir() == "/etc/cni/net.d"


def test_no_configs_at_all(tmp_path):
    with pytest.raises(NoConfigsFoundError) as info:
        C.load_conflist(str(tmp_path), "net")
    assert str(info.value) == f"no net configurations found in {tmp_path}"
    assert info.value.code == ERR_INVALID_NETWORK_CONFIG
    with pytest.raises(NoConfigsFoundError):
        C.load_conflist(str(tmp_path / "missing"), "net")


def test_lists_but_no_match_is_not_found(tmp_path):
    write(tmp_path / "a.conflist", conflist("other", "bridge"))
    with pytest.raises(NotFoundError) as info:
        C.load_conflist(str(tmp_path), "net")
    assert type(info.value) is NotFoundError
    assert str(info.value) == f'no net configuration with name "net" in {tmp_path}'


def test_single_conf_files_but_no_match_is_not_found(tmp_path):
    write(tmp_path / "a.conf", {"cniVersion": "0.4.0", "name": "other", "type": "bridge"})
    with pytest.raises(NotFoundError) as info:
        C.load_conflist(str(tmp_path), "net")
    assert type(info.value) is NotFoundError


@pytest.mark.parametrize("ext", [".conf", ".json"])
def test_deprecated_single_conf_is_wrapped_into_a_list(tmp_path, ext):
    write(tmp_path / "a.conflist", conflist("other", "x"))
    write(tmp_path / f"10-net{ext}", {"cniVersion": "0.4.0", "name": "net", "type": "bridge",
                                      "bridge": "br0", "capabilities": {"mac": True}})
    found = C.load_conflist(str(tmp_path), "net")
    assert (found.name, found.cni_version) == ("net", "0.4.0")
    assert len(found.plugins) == 1
    plugin = found.plugins[0]
    assert plugin.type == "bridge" and plugin.network["bridge"] == "br0"
    assert plugin.enabled_capabilities() == ["mac"]
    assert json.loads(found.bytes) == {"cniVersion": "0.4.0", "name": "net",
                                       "plugins": [json.loads((tmp_path / f"10-net{ext}").read_text())]}


def test_conf_list_from_conf_keeps_the_raw_plugin():
    single = C.conf_from_bytes(b'{"name":"n","type":"t","cniVersion":"1.0.0","x":{"b":1,"a":2}}')
    wrapped = C.conf_list_from_conf(single)
    assert wrapped.bytes == (b'{"cniVersion":"1.0.0","name":"n","plugins":[{"cniVersion":"1.0.0",'
                             b'"name":"n","type":"t","x":{"a":2,"b":1}}]}')
    assert wrapped.plugins[0].network["x"] == {"a": 2, "b": 1}


def test_invalid_conflist_met_first_is_an_error_naming_the_file(tmp_path):
    bad = write(tmp_path / "01-bad.conflist", "{not json")
    write(tmp_path / "02-good.conflist", conflist("net", "bridge"))
    with pytest.raises(ConfigError) as info:
        C.load_conflist(str(tmp_path), "net")
    assert str(info.value).startswith(f"{bad}: error parsing configuration list: ")
    assert info.value.path == str(bad)


def test_invalid_single_conf_is_an_error_naming_the_file(tmp_path):
    bad = write(tmp_path / "a.conf", {"name": "net"})
    with pytest.raises(ConfigError, match="missing 'type'") as info:
        C.load_conflist(str(tmp_path), "net")
    assert str(info.value) == f"{bad}: error parsing configuration: missing 'type'"


# -- plugins from <dir>/<name>/ ---------------------------------------------------------

def test_plugins_from_network_dir_follow_the_inline_ones(tmp_path):
    write(tmp_path / "net.conflist", conflist("net", "inline"))
    write(tmp_path / "net" / "20-b.conf", {"type": "second"})
    write(tmp_path / "net" / "10-a.conf", {"type": "first"})
    write(tmp_path / "net" / "ignored.json", {"type": "nope"})
    found = C.load_conflist(str(tmp_path), "net")
    assert [p.type for p in found.plugins] == ["inline", "first", "second"]
    assert found.plugins[1].bytes == (tmp_path / "net" / "10-a.conf").read_bytes()


def test_list_without_plugins_key_uses_only_the_dir(tmp_path):
    write(tmp_path / "net.conflist", {"cniVersion": "1.0.0", "name": "net"})
    write(tmp_path / "net" / "a.conf", {"type": "fromdir"})
    assert [p.type for p in C.load_conflist(str(tmp_path), "net").plugins] == ["fromdir"]


def test_load_only_inlined_plugins_ignores_the_dir(tmp_path):
    write(tmp_path / "net.conflist", conflist("net", "inline", loadOnlyInlinedPlugins="TRUE"))
    write(tmp_path / "net" / "a.conf", {"type": "fromdir"})
    found = C.load_conflist(str(tmp_path), "net")
    assert found.load_only_inlined_plugins is True
    assert [p.type for p in found.plugins] == ["inline"]


def test_load_only_inlined_without_plugins_key_is_an_error(tmp_path):
    path = write(tmp_path / "net.conflist", {"name": "net", "loadOnlyInlinedPlugins": True})
    with pytest.raises(ConfigError, match="`loadOnlyInlinedPlugins` is true, and no 'plugins' key"):
        C.conf_list_from_file(str(path))


def test_no_plugins_anywhere_is_an_error_naming_the_file(tmp_path):
    path = write(tmp_path / "net.conflist", {"cniVersion": "1.0.0", "name": "net"})
    with pytest.raises(ConfigError) as info:
        C.conf_list_from_file(str(path))
    assert str(info.value) == f"{path}: no plugin configs found"
    # From bytes alone a list without plugins is fine: the dir may add them.
    assert C.conf_list_from_bytes(path.read_bytes()).plugins == []


def test_bad_plugin_file_in_network_dir_is_named(tmp_path):
    write(tmp_path / "net.conflist", conflist("net", "inline"))
    bad = write(tmp_path / "net" / "a.conf", {"name": "x"})
    with pytest.raises(ConfigError) as info:
        C.load_conflist(str(tmp_path), "net")
    assert str(info.value) == f"{bad}: error parsing configuration: missing 'type'"


@pytest.mark.parametrize("name", ["..", ".", "a/b", ""])
def test_network_names_that_are_not_file_names_have_no_plugin_dir(tmp_path, name):
    write(tmp_path / "x" / "a.conf", {"type": "outside"})
    assert C.plugin_confs_from_dir(str(tmp_path / "x" / "sub"), name) == []


# -- versions ---------------------------------------------------------------------------

@pytest.mark.parametrize("cni_version, versions, expected", [
    ("", ["0.3.1", "1.0.0", "9.9.9"], "1.0.0"),
    ("0.4.0", ["0.3.1"], "0.4.0"),
    ("1.0.0", ["1.1.0", "0.4.0"], "1.1.0"),
    ("0.3.1", ["2.0.0"], "0.3.1"),
    ("5.0.0", ["1.0.0"], "1.0.0"),
    ("0.4.0", [], "0.4.0"),
])
def test_cni_versions_negotiation(cni_version, versions, expected):
    obj: dict[str, object] = {"name": "n", "cniVersions": versions, "plugins": [{"type": "t"}]}
    if cni_version:
        obj["cniVersion"] = cni_version
    assert C.conf_list_from_bytes(json.dumps(obj)).cni_version == expected


def test_missing_cni_version_stays_empty():
    assert C.conf_list_from_bytes('{"name":"n","plugins":[{"type":"t"}]}').cni_version == ""


@pytest.mark.parametrize("versions, message", [
    ("1.0.0", "invalid type for cniVersions: string"),
    (None, "invalid type for cniVersions: null"),
    (["1.0.0", 1], "invalid type for cniVersions index 1: int"),
    (["1.x.0"], "invalid cniVersions entry 1.x.0 at index 0"),
])
def test_bad_cni_versions(versions, message):
    with pytest.raises(ConfigError, match=message):
        C.conf_list_from_bytes(json.dumps({"name": "n", "cniVersions": versions,
                                           "plugins": [{"type": "t"}]}))


# -- flags ------------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    (True, True), (False, False), ("true", True), ("TRUE", True), ("False", False)])
def test_boolean_flags_accept_bools_and_strings(value, expected):
    found = C.conf_list_from_dict(conflist("n", "t", disableCheck=value, disableGC=value))
    assert (found.disable_check, found.disable_gc) == (expected, expected)


def test_boolean_flags_default_to_false():
    found = C.conf_list_from_dict(conflist("n", "t"))
    assert not (found.disable_check or found.disable_gc or found.load_only_inlined_plugins)


@pytest.mark.parametrize("key", ["disableCheck", "disableGC", "loadOnlyInlinedPlugins"])
@pytest.mark.parametrize("value, message", [
    ("yes", 'invalid value "yes" for '), (1, "invalid type number for "),
    (None, "invalid type null for ")])
def test_bad_boolean_flags(key, value, message):
    with pytest.raises(ConfigError, match=message + key):
        C.conf_list_from_dict(conflist("n", "t", **{key: value}))


# -- parse errors ---------------------------------------------------------------------------

@pytest.mark.parametrize("data, message", [
    ("{", "error parsing configuration list: "),
    ("[]", "error parsing configuration list: not a JSON object but array"),
    ("null", "error parsing configuration list: no name"),
    ('{"plugins":[]}', "error parsing configuration list: no name"),
    ('{"name":1}', "error parsing configuration list: invalid name type number"),
    ('{"name":"n","cniVersion":1}', "error parsing configuration list: invalid cniVersion type number"),
    ('{"name":"n","plugins":{}}', "error parsing configuration list: invalid 'plugins' type object"),
    ('{"name":"n","plugins":null}', "error parsing configuration list: invalid 'plugins' type null"),
    ('{"name":"n","plugins":[]}', "error parsing configuration list: no plugins in list"),
    ('{"name":"n","plugins":[{"type":"a"},{}]}',
     "failed to parse plugin config 1: error parsing configuration: missing 'type'"),
    ('{"name":"n","plugins":["x"]}',
     "failed to parse plugin config 0: error parsing configuration: not a JSON object but string"),
    ('{"name":"n","plugins":[{"type":"a","capabilities":{"x":1}}]}',
     "failed to parse plugin config 0: error parsing configuration: capability 'x' must be a boolean"),
    ('{"name":"n","plugins":[{"type":"a","capabilities":[]}]}',
     "failed to parse plugin config 0: error parsing configuration: capabilities must be an object, not array"),
    ('{"name":"n","plugins":[{"type":5}]}', "failed to parse plugin config 0: error parsing configuration: type must be a string, not number"),
    ('{"name":"n","plugins":[{"type":"a","ipam":{"type":1}}]}', "failed to parse plugin config 0: error parsing configuration: ipam type must be a string"),
    ('{"name":"n","plugins":[{"type":"a","prevResult":[]}]}', "failed to parse plugin config 0: error parsing configuration: prevResult must be an object"),
])
def test_conflist_parse_errors(tmp_path, data, message):
    with pytest.raises(ConfigError) as info:
        C.conf_list_from_bytes(data)
    assert str(info.value).startswith(message), str(info.value)
    assert isinstance(info.value, CNIError) and info.value.code == ERR_INVALID_NETWORK_CONFIG
    path = write(tmp_path / "x.conflist", data)
    with pytest.raises(ConfigError) as info:
        C.conf_list_from_file(str(path))
    assert str(info.value).startswith(f"{path}: {message}")


def test_unreadable_file_is_an_io_error(tmp_path):
    with pytest.raises(ConfigError, match="error reading .*missing.conflist") as info:
        C.conf_list_from_file(str(tmp_path / "missing.conflist"))
    assert info.value.code == 5


def test_inline_plugins_are_reencoded_like_go():
    found = C.conf_list_from_bytes('{"name":"n","plugins":[{"type":"t","z":1.0,"a":{"y":"<&>","b":[2.5]}}]}')
    assert found.plugins[0].bytes == b'{"a":{"b":[2.5],"y":"\\u003c\\u0026\\u003e"},"type":"t","z":1}'


# -- inject_conf ---------------------------------------------------------------------------

def test_inject_conf_sorts_and_sets_values():
    orig = C.conf_from_bytes(b'{"type":"t","name":"old","b":{"y":1,"x":2}}')
    out = C.inject_conf(orig, {"name": "new", "cniVersion": "1.0.0",
                               "prevResult": {"z": 1, "a": 2}})
    assert out.bytes == (b'{"b":{"x":2,"y":1},"cniVersion":"1.0.0","name":"new",'
                         b'"prevResult":{"z":1,"a":2},"type":"t"}')
    assert out.name == "new" and orig.name == "old"


def test_inject_conf_rejects_empty_keys_and_none():
    orig = C.conf_from_bytes(b'{"type":"t"}')
    with pytest.raises(ConfigError, match="keys cannot be empty"):
        C.inject_conf(orig, {"": 1})
    with pytest.raises(ConfigError, match="key 'x' value must not be nil"):
        C.inject_conf(orig, {"x": None})


def test_plugin_config_accessors():
    plugin = C.conf_from_bytes(b'{"type":"t","capabilities":{"b":true,"a":true,"c":false}}')
    assert (plugin.type, plugin.name, plugin.cni_version) == ("t", "", "")
    assert plugin.enabled_capabilities() == ["a", "b"]
    assert plugin.capabilities == {"b": True, "a": True, "c": False}
