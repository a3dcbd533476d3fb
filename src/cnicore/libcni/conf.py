"""Network configuration: parsing bytes and files, and finding a network in a dir.

Behaviour follows the reference's ``libcni/conf.go`` so a conf dir means the
same to us as to containerd or CRI-O:

* ``.conflist`` files are tried in sorted order and the first whose ``name``
  matches wins; a broken file met on the way is an error (the reference does
  not skip it either, and silently picking another file would hide it).
* A list's plugins are its inline ``plugins`` followed by
  ``<dir>/<name>/*.conf`` (sorted), unless ``loadOnlyInlinedPlugins`` is true.
* Only when no list matches are the deprecated single-plugin ``.conf`` /
  ``.json`` files tried, each wrapped into a one-plugin list.
* ``cniVersions`` picks the newest version we implement; ``disableCheck``,
  ``disableGC`` and ``loadOnlyInlinedPlugins`` accept JSON booleans or the
  strings "true"/"false" in any case.

Everything except the ``*_file`` / ``load_*`` / ``conf_files`` helpers is pure.
Every error is a :class:`~cnicore.libcni.errors.ConfigError` naming the file.
"""

from __future__ import annotations

import os

# JSON is read with wire.loads, as Go's decoder reads it (invalid UTF-8 and lone surrogates as
# U+FFFD; NaN and a BOM refused), and without importing json, which imports re (~10 ms a cnitool run).
from cnicore import version as _version
from cnicore import wire
from cnicore._go import json as gojson
from cnicore.errors import ERR_IO_FAILURE
from cnicore.libcni.errors import ConfigError, NoConfigsFoundError, NotFoundError
from cnicore.wire import json_kind

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterable, Mapping

__all__ = [
    "DEFAULT_CONF_DIR", "default_conf_dir", "PluginConfig", "NetworkConfigList",
    "plugin_conf_from_bytes", "conf_from_bytes", "conf_from_file", "plugin_confs_from_dir",
    "conf_list_from_bytes", "conf_list_from_dict", "conf_list_from_file", "conf_files",
    "load_conf", "load_conflist", "inject_conf", "conf_list_from_conf",
]

DEFAULT_CONF_DIR = "/etc/cni/net.d"


def default_conf_dir() -> str:
    """``$NETCONFPATH`` or ``/etc/cni/net.d``, where runtimes and cnitool look."""
    return os.environ.get("NETCONFPATH") or DEFAULT_CONF_DIR


# -- models -----------------------------------------------------------------------

class PluginConfig:
    """One plugin's configuration: the decoded object and the exact bytes.

    The bytes are what the plugin is given (after injection) and what the
    result cache records, so they are kept rather than re-encoded from
    ``network``.
    """

    __slots__ = ("network", "bytes")

    def __init__(self, network: dict[str, Any], raw: bytes) -> None:
        self.network = network
        self.bytes = raw

    @property
    def type(self) -> str:
        return self.network.get("type") or ""

    @property
    def name(self) -> str:
        return self.network.get("name") or ""

    @property
    def cni_version(self) -> str:
        return self.network.get("cniVersion") or ""

    @property
    def capabilities(self) -> dict[str, bool]:
        """The ``capabilities`` object, ``{}`` when absent."""
        return dict(self.network.get("capabilities") or {})

    def enabled_capabilities(self) -> list[str]:
        """The capabilities declared ``true``, sorted."""
        return sorted(k for k, v in self.capabilities.items() if v)

    def __repr__(self) -> str:
        return f"PluginConfig(type={self.type!r}, name={self.name!r}, cniVersion={self.cni_version!r})"


class NetworkConfigList:
    """A network: its name, negotiated version, flags and ordered plugins.

    ``bytes`` are the list's raw bytes (what the cache stores as ``config``);
    ``path`` is the file it came from, if any.
    """

    __slots__ = ("name", "cni_version", "disable_check", "disable_gc",
                 "load_only_inlined_plugins", "plugins", "bytes", "path")

    def __init__(self, name: str, cni_version: str = "", plugins: Iterable[PluginConfig] = (),
                 raw: bytes = b"", disable_check: bool = False, disable_gc: bool = False,
                 load_only_inlined_plugins: bool = False, path: str = "") -> None:
        self.name = name
        self.cni_version = cni_version
        self.plugins = list(plugins)
        self.bytes = raw
        self.disable_check = disable_check
        self.disable_gc = disable_gc
        self.load_only_inlined_plugins = load_only_inlined_plugins
        self.path = path

    def __repr__(self) -> str:
        return (f"NetworkConfigList(name={self.name!r}, cniVersion={self.cni_version!r}, "
                f"plugins={[p.type for p in self.plugins]!r})")


# -- single plugin configs ------------------------------------------------------------

def _check_plugin_fields(obj: dict[str, Any]) -> str:
    """The first field with a type the reference's ``PluginConf`` would reject, or ""."""
    for key in ("cniVersion", "name", "type"):
        if obj.get(key) is not None and not isinstance(obj[key], str):
            return f"{key} must be a string, not {json_kind(obj[key])}"
    caps = obj.get("capabilities")
    if caps is not None:
        if not isinstance(caps, dict):
            return f"capabilities must be an object, not {json_kind(caps)}"
        for cap, enabled in caps.items():
            if enabled is not None and not isinstance(enabled, bool):
                return f"capability {cap!r} must be a boolean, not {json_kind(enabled)}"
    for key in ("ipam", "dns", "prevResult"):
        if obj.get(key) is not None and not isinstance(obj[key], dict):
            return f"{key} must be an object, not {json_kind(obj[key])}"
    ipam = obj.get("ipam") or {}
    if ipam.get("type") is not None and not isinstance(ipam["type"], str):
        return f"ipam type must be a string, not {json_kind(ipam['type'])}"
    return ""


def plugin_conf_from_bytes(data: bytes | str, path: str = "") -> PluginConfig:
    """Parse one plugin's configuration (it must name a ``type``)."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    try:
        obj = wire.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"error parsing configuration: {exc}", path) from None
    if obj is None:  # Go decodes null into an empty struct
        obj = {}
    if not isinstance(obj, dict):
        raise ConfigError(f"error parsing configuration: not a JSON object but {json_kind(obj)}", path)
    problem = _check_plugin_fields(obj)
    if problem:
        raise ConfigError(f"error parsing configuration: {problem}", path)
    if not obj.get("type"):
        raise ConfigError("error parsing configuration: missing 'type'", path)
    return PluginConfig(obj, raw)


#: The reference's deprecated name for :func:`plugin_conf_from_bytes`.
conf_from_bytes = plugin_conf_from_bytes


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise ConfigError(f"error reading {path}: {exc.strerror or exc}", code=ERR_IO_FAILURE) from None


def conf_from_file(path: str) -> PluginConfig:
    """Parse a single-plugin ``.conf`` / ``.json`` file."""
    return plugin_conf_from_bytes(_read(path), path)


def _is_plain_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and os.sep not in name and \
        not (os.altsep and os.altsep in name)


def plugin_confs_from_dir(conf_dir: str, network_name: str) -> list[PluginConfig]:
    """The plugins in ``<conf_dir>/<network_name>/*.conf``, sorted by file name.

    A network name that is not a plain file name (``..``, ``a/b``) has no such
    directory: looking there would read configs from outside ``conf_dir``.
    """
    if not _is_plain_name(network_name):
        return []
    plugin_dir = os.path.join(conf_dir, network_name)
    try:
        files = conf_files(plugin_dir, [".conf"])
    except ConfigError as exc:
        raise ConfigError(f"failed to read plugin config files in {plugin_dir}: {exc.msg}",
                          code=exc.code) from None
    return [plugin_conf_from_bytes(_read(f), f) for f in files]


# -- lists ----------------------------------------------------------------------------

def _read_bool(obj: dict[str, Any], key: str, path: str) -> bool:
    if key not in obj:
        return False
    value = obj[key]
    if isinstance(value, bool):
        return value
    if not isinstance(value, str):
        raise ConfigError(f"error parsing configuration list: invalid type {json_kind(value)} for {key}", path)
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    raise ConfigError(f'error parsing configuration list: invalid value "{lowered}" for {key}', path)


def conf_list_from_bytes(data: bytes | str, path: str = "") -> NetworkConfigList:
    """Parse a ``.conflist``'s bytes: name, version negotiation, flags, inline plugins.

    A list without a ``plugins`` key is accepted here (its plugins may live
    in ``<dir>/<name>/``); :func:`conf_list_from_file` insists on at least one.
    """
    raw = data.encode() if isinstance(data, str) else bytes(data)
    where = "error parsing configuration list"
    try:
        obj = wire.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}", path) from None
    if obj is None:
        obj = {}
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}: not a JSON object but {json_kind(obj)}", path)
    if "name" not in obj:
        raise ConfigError(f"{where}: no name", path)
    name = obj["name"]
    if not isinstance(name, str):
        raise ConfigError(f"{where}: invalid name type {json_kind(name)}", path)
    cni_version = ""
    if "cniVersion" in obj:
        cni_version = obj["cniVersion"]
        if not isinstance(cni_version, str):
            raise ConfigError(f"{where}: invalid cniVersion type {json_kind(cni_version)}", path)
    if "cniVersions" in obj:
        versions = obj["cniVersions"]
        if not isinstance(versions, list):
            raise ConfigError(f"{where}: invalid type for cniVersions: {json_kind(versions)}", path)
        try:
            cni_version = _version.negotiate(cni_version, versions)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}", path) from None
    disable_check = _read_bool(obj, "disableCheck", path)
    disable_gc = _read_bool(obj, "disableGC", path)
    inlined_only = _read_bool(obj, "loadOnlyInlinedPlugins", path)
    conf_list = NetworkConfigList(name, cni_version, (), raw, disable_check, disable_gc,
                                  inlined_only, path)
    if "plugins" not in obj:
        if inlined_only:
            raise ConfigError(f"{where}: `loadOnlyInlinedPlugins` is true, and no 'plugins' key", path)
        return conf_list
    plugins = obj["plugins"]
    if not isinstance(plugins, list):
        raise ConfigError(f"{where}: invalid 'plugins' type {json_kind(plugins)}", path)
    if not plugins:
        raise ConfigError(f"{where}: no plugins in list", path)
    for index, plugin in enumerate(plugins):
        try:
            conf_list.plugins.append(plugin_conf_from_bytes(gojson.marshal(gojson.normalise(plugin))))
        except ConfigError as exc:
            raise ConfigError(f"failed to parse plugin config {index}: {exc.msg}", path) from None
    return conf_list


def conf_list_from_dict(obj: Mapping[str, Any]) -> NetworkConfigList:
    """A list from a Python mapping, encoded the way libcni would re-encode it."""
    return conf_list_from_bytes(gojson.marshal(gojson.normalise(dict(obj))))


def conf_list_from_file(path: str) -> NetworkConfigList:
    """Parse a ``.conflist`` file and add the plugins from ``<dir>/<name>/*.conf``."""
    conf_list = conf_list_from_bytes(_read(path), path)
    if not conf_list.load_only_inlined_plugins:
        conf_list.plugins.extend(plugin_confs_from_dir(os.path.dirname(path), conf_list.name))
    if not conf_list.plugins:
        raise ConfigError("no plugin configs found", path)
    return conf_list


def conf_files(dir: str, extensions: Iterable[str]) -> list[str]:
    """The files in ``dir`` whose extension (from the last dot, as Go's
    ``filepath.Ext``) is one of ``extensions``, sorted by name.

    A missing directory simply has no files; directories are skipped.
    """
    wanted = set(extensions)
    try:
        with os.scandir(dir) as entries:
            names = []
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    continue
                dot = entry.name.rfind(".")
                if dot >= 0 and entry.name[dot:] in wanted:
                    names.append(entry.name)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ConfigError(f"cannot read config dir {dir}: {exc.strerror or exc}",
                          code=ERR_IO_FAILURE) from None
    return [os.path.join(dir, name) for name in sorted(names)]


def load_conf(dir: str | None, name: str) -> PluginConfig:
    """The deprecated single-plugin file (``.conf``/``.json``) named ``name``."""
    dir = default_conf_dir() if dir is None else dir
    files = conf_files(dir, [".conf", ".json"])
    if not files:
        raise NoConfigsFoundError(dir, name)
    for path in files:
        conf = conf_from_file(path)
        if conf.name == name:
            return conf
    raise NotFoundError(dir, name)


def load_conflist(dir: str | None, name: str) -> NetworkConfigList:
    """The network ``name`` from ``dir`` (default :func:`default_conf_dir`).

    See the module docstring for the search order.
    """
    dir = default_conf_dir() if dir is None else dir
    files = conf_files(dir, [".conflist"])
    for path in files:
        conf_list = conf_list_from_file(path)
        if conf_list.name == name:
            return conf_list
    try:
        single = load_conf(dir, name)
    except NoConfigsFoundError:
        if files:
            raise NotFoundError(dir, name) from None
        raise
    return conf_list_from_conf(single)


# -- derived configs ------------------------------------------------------------------

def inject_conf(original: PluginConfig, new_values: Mapping[str, Any]) -> PluginConfig:
    """``original`` with top-level keys set, re-encoded as libcni does.

    The original's objects come out key-sorted (Go re-encodes through a map);
    injected values are encoded as given, so callers decide their key order.
    """
    try:
        config = wire.loads(original.bytes)
    except ValueError as exc:
        raise ConfigError(f"unmarshal existing network bytes: {exc}") from None
    if not isinstance(config, dict):
        raise ConfigError("unmarshal existing network bytes: not a JSON object")
    config = gojson.normalise(config)
    for key, value in new_values.items():
        if key == "":
            raise ConfigError("keys cannot be empty")
        if value is None:
            raise ConfigError(f"key '{key}' value must not be nil")
        config[key] = value
    return plugin_conf_from_bytes(gojson.marshal({k: config[k] for k in sorted(config)}))


def conf_list_from_conf(original: PluginConfig) -> NetworkConfigList:
    """Wrap a single-plugin config into a one-plugin list (the deprecated format)."""
    try:
        raw = wire.loads(original.bytes)
    except ValueError as exc:
        raise ConfigError(f"error parsing configuration: {exc}") from None
    wrapped = {"cniVersion": original.cni_version, "name": original.name, "plugins": [raw]}
    conf_list = conf_list_from_bytes(gojson.marshal(gojson.normalise(wrapped)))
    return conf_list
