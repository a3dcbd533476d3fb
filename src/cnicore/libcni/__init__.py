"""libcni: the runtime side of CNI — load network configs, run their plugins,
cache results — compatible with the reference Go library.

Modules, one job each:

* :mod:`~cnicore.libcni.conf` — parse and find network configurations (pure
  where possible);
* :mod:`~cnicore.libcni.runtime` — :class:`RuntimeConf` and attachments;
* :mod:`~cnicore.libcni.cache` — the Go-compatible result cache;
* :mod:`~cnicore.libcni.api` — :class:`CNIConfig`, the operations;
* :mod:`~cnicore.libcni.errors` — what can go wrong.

Names are re-exported here but imported only on first use, so loading a
config does not pull in the exec machinery.

Example::

    from cnicore.libcni import CNIConfig, RuntimeConf, load_conflist

    net = load_conflist("/etc/cni/net.d", "mynet")
    cni = CNIConfig(["/opt/cni/bin"])
    rt = RuntimeConf("ctr1", "/var/run/netns/ctr1", "eth0")
    result = cni.add_network_list(net, rt)
    cni.del_network_list(net, rt)
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnicore.libcni.api import CNIConfig
    from cnicore.libcni.cache import CACHE_DIR, ResultCache
    from cnicore.libcni.conf import (
        DEFAULT_CONF_DIR,
        NetworkConfigList,
        PluginConfig,
        conf_files,
        conf_from_bytes,
        conf_from_file,
        conf_list_from_bytes,
        conf_list_from_conf,
        conf_list_from_dict,
        conf_list_from_file,
        default_conf_dir,
        inject_conf,
        load_conf,
        load_conflist,
        plugin_conf_from_bytes,
        plugin_confs_from_dir,
    )
    from cnicore.libcni.errors import (
        CacheError,
        CheckNotSupportedError,
        ConfigError,
        LibcniError,
        MultiError,
        NoConfigsFoundError,
        NotFoundError,
    )
    from cnicore.libcni.runtime import NetworkAttachment, RuntimeConf

_EXPORTS = {
    "api": ["CNIConfig"],
    "cache": ["CACHE_DIR", "ResultCache"],
    "conf": ["DEFAULT_CONF_DIR", "NetworkConfigList", "PluginConfig", "conf_files",
             "conf_from_bytes", "conf_from_file", "conf_list_from_bytes", "conf_list_from_conf",
             "conf_list_from_dict", "conf_list_from_file", "default_conf_dir", "inject_conf",
             "load_conf", "load_conflist", "plugin_conf_from_bytes", "plugin_confs_from_dir"],
    "errors": ["CacheError", "CheckNotSupportedError", "ConfigError", "LibcniError",
               "MultiError", "NoConfigsFoundError", "NotFoundError"],
    "runtime": ["NetworkAttachment", "RuntimeConf"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> object:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
