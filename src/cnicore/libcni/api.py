"""The runtime's operations on networks: ADD, CHECK, DEL, GC, STATUS, VERSION.

:class:`CNIConfig` drives plugin executables the way the reference libcni
does, so a network behaves the same whichever runtime library runs it:

* every plugin of a list gets the list's ``name`` and ``cniVersion``, the
  ``prevResult`` (ADD: the previous plugin's result; CHECK/DEL: the cached
  result converted to the list's version) and a ``runtimeConfig`` holding
  only the capability arguments the plugin declares in ``capabilities``;
* ADD and CHECK run the plugins in order, DEL in reverse; ADD records the
  attachment in the :mod:`result cache <cnicore.libcni.cache>`, DEL removes it;
* GC first DELs cached attachments of the network that the runtime no
  longer lists as valid, then (1.1.0+) sends GC to every plugin, collecting
  every failure; STATUS (1.1.0+) stops at the first failing plugin.

A plugin's failure becomes a :class:`~cnicore.libcni.errors.LibcniError`
that keeps its code and message and names the plugin and the operation.
Every exec has the configured timeout and may be cancelled with a
``threading.Event``; the plugin (and its process group) is then killed.
"""

from __future__ import annotations

import os

from cnicore import faults, invoke
from cnicore._go import json as gojson
from cnicore.errors import ERR_INCOMPATIBLE_CNI_VERSION, ERR_IO_FAILURE, CNIError
from cnicore.libcni.cache import CACHE_DIR, ResultCache, _warn
from cnicore.libcni.conf import inject_conf
from cnicore.libcni.errors import CacheError, CheckNotSupportedError, ConfigError, LibcniError, MultiError
from cnicore.libcni.runtime import RuntimeConf, validate_container_id, validate_interface_name, validate_network_name
from cnicore.version import greater_or_equal

TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading
    from typing import Any, Iterable

    from cnicore.libcni.conf import NetworkConfigList, PluginConfig
    from cnicore.libcni.runtime import NetworkAttachment
    from cnicore.types import AnyResult
    from cnicore.version import PluginInfo

__all__ = ["CNIConfig"]


def _at_least(cni_version: str, minimum: str) -> bool:
    try:
        return greater_or_equal(cni_version, minimum)
    except ValueError as exc:
        raise ConfigError(f"invalid cniVersion: {exc}", code=ERR_INCOMPATIBLE_CNI_VERSION) from None


def _at_least_or_false(cni_version: str, minimum: str) -> bool:
    """For GC and STATUS the reference treats an unparsable version as too old."""
    try:
        return greater_or_equal(cni_version, minimum)
    except ValueError:
        return False


def _result_value(result: AnyResult) -> dict[str, Any]:
    """``prevResult`` as Go encodes it: 1.x results go through a map (sorted
    keys), older ones keep their struct's field order."""
    value = result.to_dict()
    return gojson.normalise(value) if result.implemented == "1.1.0" else value


def _wrap(exc: CNIError, operation: str, network: str, plugin: PluginConfig) -> LibcniError:
    return LibcniError(exc, operation, network, plugin.type, plugin.name)


class CNIConfig:
    """Runs network operations with plugins found in ``path``.

    ``cache_dir`` is where results are cached; when empty, the runtime
    conf's ``cache_dir`` is used, then :data:`~cnicore.libcni.cache.CACHE_DIR`
    (the reference's order). ``timeout`` (seconds, ``None`` for none) applies
    to every plugin exec.
    """

    def __init__(self, path: Iterable[str] | str, cache_dir: str = "",
                 timeout: float | None = invoke.DEFAULT_TIMEOUT, in_process: bool = False) -> None:
        """``in_process``: a cnicore launcher of this interpreter is served in this
        process instead of exec'd (:func:`cnicore.invoke.serve_or_exec`; no timeout
        then) — for single-threaded one-shot callers such as ``cnitool``."""
        self.path = invoke.split_path(path) if isinstance(path, str) else list(path)
        self.cache_dir = cache_dir
        self.timeout = timeout
        self.in_process = in_process

    def __repr__(self) -> str:
        return f"CNIConfig(path={self.path!r}, cache_dir={self.cache_dir!r}, timeout={self.timeout!r})"

    # -- plumbing -------------------------------------------------------------------

    def _cache(self, rt: RuntimeConf | None = None) -> ResultCache:
        return ResultCache(self.cache_dir or (rt.cache_dir if rt is not None else "") or CACHE_DIR)

    def _args(self, command: str, rt: RuntimeConf) -> invoke.Args:
        return invoke.Args(command, rt.container_id, rt.netns, rt.ifname, rt.args,
                           path=os.pathsep.join(self.path))

    def _build(self, name: str, cni_version: str, plugin: PluginConfig,
               prev: AnyResult | None, rt: RuntimeConf | None) -> bytes:
        """The stdin for one plugin (the reference's ``buildOneConfig``)."""
        inject: dict[str, Any] = {"name": name, "cniVersion": cni_version}
        if prev is not None:
            inject["prevResult"] = _result_value(prev)
        conf = inject_conf(plugin, inject)
        if rt is not None:
            runtime_config = {cap: rt.capability_args[cap]
                              for cap, enabled in conf.capabilities.items()
                              if enabled and cap in rt.capability_args}
            if runtime_config:
                conf = inject_conf(conf, {"runtimeConfig": gojson.normalise(runtime_config)})
        return conf.bytes

    def _exec(self, command: str, plugin: PluginConfig, stdin: bytes, rt: RuntimeConf,
              cancel: threading.Event | None, path: str = "") -> AnyResult | None:
        path = path or invoke.find_in_path(plugin.type, self.path)
        args = self._args(command, rt)
        if command == "ADD":
            return invoke.exec_plugin_with_result(path, stdin, args, self.timeout, cancel=cancel,
                                                  in_process=self.in_process)
        invoke.exec_plugin_without_result(path, stdin, args, self.timeout, cancel=cancel,
                                          in_process=self.in_process)
        return None

    def _add_one(self, name: str, cni_version: str, plugin: PluginConfig, prev: AnyResult | None,
                 rt: RuntimeConf, cancel: threading.Event | None) -> AnyResult:
        path = invoke.find_in_path(plugin.type, self.path)
        validate_container_id(rt.container_id)
        validate_network_name(name)
        validate_interface_name(rt.ifname)
        stdin = self._build(name, cni_version, plugin, prev, rt)
        result = self._exec("ADD", plugin, stdin, rt, cancel, path)
        assert result is not None
        return result

    def _cache_add(self, result: AnyResult | None, config: bytes, name: str, rt: RuntimeConf) -> None:
        try:
            self._cache(rt).write(name, rt, config, result)
        except (OSError, CacheError) as exc:
            text = exc.msg if isinstance(exc, CacheError) else (exc.strerror or str(exc))
            raise CacheError(f'failed to set network "{name}" cached result: {text}',
                             ERR_IO_FAILURE) from exc

    def _cached_for_check(self, name: str, cni_version: str, rt: RuntimeConf) -> AnyResult | None:
        try:
            return self._cache(rt).get_result(name, cni_version, rt)
        except CacheError as exc:
            raise CacheError(f'failed to get network "{name}" cached result: {exc.msg}',
                             exc.code, exc.details) from None

    def _cached_for_del(self, name: str, cni_version: str, rt: RuntimeConf) -> AnyResult | None:
        """The cached result for DEL; an unusable cache must not block DEL, so
        it only warns and the plugins get no prevResult."""
        if not _at_least(cni_version, "0.4.0"):
            return None
        try:
            return self._cache(rt).get_result(name, cni_version, rt)
        except CacheError as exc:
            _warn(f'ignoring unusable cached result of network "{name}" '
                  f'({rt.container_id} {rt.ifname}) for DEL: {exc}')
            return None

    # -- lists ------------------------------------------------------------------------

    def add_network_list(self, conf_list: NetworkConfigList, rt: RuntimeConf, *,
                         cancel: threading.Event | None = None) -> AnyResult | None:
        """ADD every plugin in order, each seeing the previous one's result;
        cache and return the last result."""
        result: AnyResult | None = None
        for plugin in conf_list.plugins:
            try:
                result = self._add_one(conf_list.name, conf_list.cni_version, plugin, result,
                                       rt, cancel)
            except CNIError as exc:
                raise _wrap(exc, "add", conf_list.name, plugin) from exc
        faults.point("libcni.add.before_cache")
        try:
            self._cache_add(result, conf_list.bytes, conf_list.name, rt)
        except CacheError:
            # Without its cache entry the attachment could be found by neither
            # DEL's prevResult nor GC: take it down again (the reference keeps it).
            self._undo_add(conf_list, rt, result, cancel)
            raise
        return result

    def _undo_add(self, conf_list: NetworkConfigList, rt: RuntimeConf, result: AnyResult | None,
                  cancel: threading.Event | None) -> None:
        for plugin in reversed(conf_list.plugins):
            try:
                stdin = self._build(conf_list.name, conf_list.cni_version, plugin, result, rt)
                self._exec("DEL", plugin, stdin, rt, cancel)
            except CNIError as exc:
                _warn(f'could not undo ADD of network "{conf_list.name}" ({rt.container_id} {rt.ifname}) '
                      f"after the cache write failed: {exc}")

    def check_network_list(self, conf_list: NetworkConfigList, rt: RuntimeConf, *,
                           cancel: threading.Event | None = None) -> None:
        """CHECK every plugin in order against the cached result.

        Configurations older than 0.4.0 have no CHECK
        (:class:`CheckNotSupportedError`); ``disableCheck`` makes this a no-op.
        """
        if not _at_least(conf_list.cni_version, "0.4.0"):
            raise CheckNotSupportedError(conf_list.cni_version)
        if conf_list.disable_check:
            return
        cached = self._cached_for_check(conf_list.name, conf_list.cni_version, rt)
        for plugin in conf_list.plugins:
            try:
                stdin = self._build(conf_list.name, conf_list.cni_version, plugin, cached, rt)
                self._exec("CHECK", plugin, stdin, rt, cancel)
            except CNIError as exc:
                raise _wrap(exc, "check", conf_list.name, plugin) from exc

    def del_network_list(self, conf_list: NetworkConfigList, rt: RuntimeConf, *,
                         cancel: threading.Event | None = None) -> None:
        """DEL every plugin in reverse order with the cached result, then forget it.

        The cache entry is removed only when every plugin succeeded, so a
        failed DEL can be retried (or found by GC) with the same prevResult.
        """
        cached = self._cached_for_del(conf_list.name, conf_list.cni_version, rt)
        for plugin in reversed(conf_list.plugins):
            try:
                stdin = self._build(conf_list.name, conf_list.cni_version, plugin, cached, rt)
                self._exec("DEL", plugin, stdin, rt, cancel)
            except CNIError as exc:
                raise _wrap(exc, "delete", conf_list.name, plugin) from exc
        self._cache(rt).delete(conf_list.name, rt)

    def gc_network_list(self, conf_list: NetworkConfigList,
                        valid_attachments: Iterable[tuple[str, str]] | None = None, *,
                        cancel: threading.Event | None = None) -> None:
        """Clean up what the runtime no longer knows about.

        First DEL every cached attachment of this network whose
        ``(container_id, ifname)`` is not in ``valid_attachments`` (``None``
        means none is valid, as in the reference), then, for 1.1.0+, send GC
        with ``cni.dev/valid-attachments`` to every plugin. All failures are
        collected into one :class:`MultiError`. ``disableGC`` skips it all.
        """
        if conf_list.disable_gc:
            return
        from cnicore.fsutil import remove_dead_temporaries

        remove_dead_temporaries(self._cache().results_dir)  # half-written entries of killed runtimes
        valid = None if valid_attachments is None else [(str(c), str(i)) for c, i in valid_attachments]
        try:
            cached = self._cache().attachments()
        except CacheError:
            cached = []  # the reference gives up silently as well
        keep = set(valid or ())
        errors: list[CNIError] = []
        for attachment in cached:
            if attachment.network != conf_list.name:
                continue
            if (attachment.container_id, attachment.ifname) in keep:
                continue
            try:
                self.del_network_list(conf_list, attachment.runtime_conf(), cancel=cancel)
            except CNIError as exc:
                errors.append(LibcniError(
                    exc, "delete", conf_list.name, getattr(exc, "plugin", ""),
                    getattr(exc, "plugin_name", ""),
                    prefix=f"failed to delete stale attachment {attachment.container_id} "
                           f"{attachment.ifname}"))
        if _at_least_or_false(conf_list.cni_version, "1.1.0"):
            inject: dict[str, Any] = {"name": conf_list.name, "cniVersion": conf_list.cni_version}
            if valid is not None:
                listed = [{"containerID": c, "ifname": i} for c, i in valid]
                inject["cni.dev/valid-attachments"] = listed
                # The spec once called it this; older plugins read that key.
                inject["cni.dev/attachments"] = listed
            for plugin in conf_list.plugins:
                try:
                    stdin = inject_conf(plugin, inject).bytes
                    self._exec("GC", plugin, stdin, RuntimeConf(), cancel)
                except CNIError as exc:
                    errors.append(LibcniError(exc, "gc", conf_list.name, plugin.type, plugin.name,
                                              prefix=f"failed to GC plugin {plugin.type}"))
        if errors:
            raise MultiError(errors)

    def get_status_network_list(self, conf_list: NetworkConfigList, *,
                                cancel: threading.Event | None = None) -> None:
        """Ask every plugin (1.1.0+) whether it is ready for ADDs; the first
        failure is raised with the plugin's own code (e.g. 50, "plugin not
        available"), so the runtime can tell which state the network is in."""
        if not _at_least_or_false(conf_list.cni_version, "1.1.0"):
            return
        inject = {"name": conf_list.name, "cniVersion": conf_list.cni_version}
        for plugin in conf_list.plugins:
            try:
                stdin = inject_conf(plugin, inject).bytes
                self._exec("STATUS", plugin, stdin, RuntimeConf(), cancel)
            except CNIError as exc:
                raise _wrap(exc, "status", conf_list.name, plugin) from exc

    def validate_network_list(self, conf_list: NetworkConfigList, *,
                              cancel: threading.Event | None = None) -> list[str]:
        """Check every plugin exists and supports the list's version; return
        the capabilities the list declares (sorted). All problems are
        reported together."""
        errors: list[CNIError] = []
        caps: set[str] = set()
        for plugin in conf_list.plugins:
            try:
                self._validate_plugin(plugin.type, conf_list.cni_version, cancel)
            except CNIError as exc:
                errors.append(_wrap(exc, "validate", conf_list.name, plugin))
            caps.update(plugin.enabled_capabilities())
        if errors:
            raise MultiError(errors)
        return sorted(caps)

    def get_network_list_cached_result(self, conf_list: NetworkConfigList,
                                       rt: RuntimeConf) -> AnyResult | None:
        """The result cached by the last ADD of this list for ``rt`` (or ``None``)."""
        return self._cache(rt).get_result(conf_list.name, conf_list.cni_version, rt)

    def get_network_list_cached_config(self, conf_list: NetworkConfigList, rt: RuntimeConf
                                       ) -> tuple[bytes | None, RuntimeConf | None]:
        """The config bytes cached by the last ADD and ``rt`` with its cached
        CNI args and capability args (``(None, None)`` if nothing is cached)."""
        return self._cache(rt).get_config(conf_list.name, rt)

    def get_cached_attachments(self, container_id: str = "") -> list[NetworkAttachment]:
        """Every cached attachment, or only ``container_id``'s."""
        return self._cache().attachments(container_id)

    # -- single plugins ---------------------------------------------------------------

    # A single plugin config is run as a one-plugin list named ``name`` whose
    # bytes are the plugin's own (what the reference caches for it).

    @staticmethod
    def _single(name: str | None, conf: PluginConfig) -> NetworkConfigList:
        from cnicore.libcni.conf import NetworkConfigList

        return NetworkConfigList(name or conf.name, conf.cni_version, [conf], raw=conf.bytes)

    def add_network(self, name: str | None, conf: PluginConfig, rt: RuntimeConf, *,
                    cancel: threading.Event | None = None) -> AnyResult:
        """ADD one plugin config as network ``name`` (default: its own ``name``)."""
        result = self.add_network_list(self._single(name, conf), rt, cancel=cancel)
        assert result is not None
        return result

    def check_network(self, name: str | None, conf: PluginConfig, rt: RuntimeConf, *,
                      cancel: threading.Event | None = None) -> None:
        """CHECK one plugin config against its cached result."""
        self.check_network_list(self._single(name, conf), rt, cancel=cancel)

    def del_network(self, name: str | None, conf: PluginConfig, rt: RuntimeConf, *,
                    cancel: threading.Event | None = None) -> None:
        """DEL one plugin config with its cached result, then forget it."""
        self.del_network_list(self._single(name, conf), rt, cancel=cancel)

    def validate_network(self, conf: PluginConfig, *,
                         cancel: threading.Event | None = None) -> list[str]:
        """Like :meth:`validate_network_list` for one plugin config."""
        try:
            self._validate_plugin(conf.type, conf.cni_version, cancel)
        except CNIError as exc:
            raise _wrap(exc, "validate", conf.name, conf) from exc
        return conf.enabled_capabilities()

    # -- plugins ----------------------------------------------------------------------

    def _validate_plugin(self, plugin_type: str, cni_version: str,
                         cancel: threading.Event | None) -> None:
        expected = cni_version or "0.1.0"
        info = self.get_version_info(plugin_type, cancel=cancel)
        if not info.supports(expected):
            raise CNIError(ERR_INCOMPATIBLE_CNI_VERSION,
                           f'plugin {plugin_type} does not support config version "{expected}"',
                           f"plugin supports {', '.join(info.supported_versions)}")

    def get_version_info(self, plugin_type: str, *,
                         cancel: threading.Event | None = None) -> PluginInfo:
        """Which spec versions the plugin ``plugin_type`` supports (VERSION)."""
        path = invoke.find_in_path(plugin_type, self.path)
        return invoke.get_version_info(path, self.timeout, cancel=cancel)
