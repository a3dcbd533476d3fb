"""The result cache, in the reference libcni's on-disk format.

After a successful ADD the runtime side records the attachment in
``<cacheDir>/results/<network>-<containerID>-<ifname>`` (dir 0700, file
0600) so that a later CHECK or DEL can hand plugins the ``prevResult`` and
GC can find attachments nobody deleted. The file is the JSON of Go's
``cachedInfo`` struct (``kind`` "cniCacheV1", ``containerId``, ``config`` as
base64 of the network's raw bytes, ``ifName``, ``networkName``, then
``netns``, ``cniArgs``, ``capabilityArgs`` and ``result`` only when
non-empty), written exactly as ``encoding/json`` would. Being byte-compatible
lets a node switch between our libcni and containerd's/CRI-O's with running
containers: either side can DEL what the other added.

Files from libcni before the v1 format hold just the result; they are read
too. Writes go through a temp file and a rename so a crash never leaves a
half-written cache that would break the next DEL.
"""

from __future__ import annotations

import binascii
import os
import sys

# JSON is read with wire.loads, as Go's decoder reads it (invalid UTF-8 and lone surrogates as
# U+FFFD; NaN and a BOM refused), and without importing json, which imports re (~10 ms a cnitool run).
from cnicore import wire
from cnicore._go import json as gojson
from cnicore.errors import ERR_DECODING_FAILURE, CNIError
from cnicore.libcni.errors import CacheError
from cnicore.libcni.runtime import NetworkAttachment

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from cnicore.libcni.runtime import RuntimeConf
    from cnicore.types import AnyResult

__all__ = ["CACHE_DIR", "KIND", "ResultCache", "encode_entry", "decode_entry"]

#: The reference's default cache directory.
CACHE_DIR = "/var/lib/cni"
#: The ``kind`` of the current cache format.
KIND = "cniCacheV1"


def encode_entry(network: str, rt: RuntimeConf, config: bytes | None,
                 result: AnyResult | None) -> bytes:
    """The cache file's bytes, field for field as Go's ``json.Marshal(cachedInfo)``."""
    entry: dict[str, Any] = {
        "kind": KIND,
        "containerId": rt.container_id,
        "config": None if config is None else b64encode(config),
        "ifName": rt.ifname,
        "networkName": network,
    }
    if rt.netns:
        entry["netns"] = rt.netns
    if rt.args:
        entry["cniArgs"] = [[k, v] for k, v in rt.args]
    if rt.capability_args:
        entry["capabilityArgs"] = gojson.normalise(rt.capability_args)
    # Go round-trips the result through a map, so its keys come out sorted.
    raw = gojson.normalise(result.to_dict()) if result is not None else None
    if raw:
        entry["result"] = raw
    return gojson.marshal(entry)


def _str_field(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{key} is not a string")
    return value


def b64encode(data: bytes) -> str:
    """``base64.b64encode(data).decode()`` without importing base64, which imports re
    (~10 ms of every ``cnitool add``); binascii is what base64 calls."""
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def b64decode(text: str) -> bytes:
    """``base64.b64decode(text, validate=True)``, the same way (a test compares them)."""
    if sys.version_info < (3, 11):  # no strict mode in binascii before 3.11
        import base64

        return base64.b64decode(text, validate=True)
    try:
        data = text.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError("string argument should contain only ASCII characters") from None
    return binascii.a2b_base64(data, strict_mode=True)


def decode_entry(data: bytes) -> dict[str, Any] | None:
    """A v1 cache file as a dict with typed fields, or ``None`` if the data is
    not a v1 entry (a legacy result file or garbage). Raises ``ValueError``
    for a v1 entry whose fields are malformed."""
    try:
        obj = wire.loads(data)
    except ValueError:
        return None
    if not isinstance(obj, dict) or obj.get("kind") != KIND:
        return None
    config = obj.get("config")
    if config is not None:
        if not isinstance(config, str):
            raise ValueError("config is not a base64 string")
        try:
            config = b64decode(config.replace("\r", "").replace("\n", ""))
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"config is not valid base64: {exc}") from None
    args = obj.get("cniArgs")
    cni_args: list[tuple[str, str]] | None = None
    if args is not None:
        if not isinstance(args, list) or not all(
                isinstance(p, list) and len(p) == 2 and all(isinstance(s, str) for s in p)
                for p in args):
            raise ValueError("cniArgs is not a list of [key, value] string pairs")
        cni_args = [(p[0], p[1]) for p in args]
    caps = obj.get("capabilityArgs")
    if caps is not None and not isinstance(caps, dict):
        raise ValueError("capabilityArgs is not an object")
    result = obj.get("result")
    if result is not None and not isinstance(result, dict):
        raise ValueError("result is not an object")
    return {"kind": KIND, "containerId": _str_field(obj, "containerId"), "config": config,
            "ifName": _str_field(obj, "ifName"), "networkName": _str_field(obj, "networkName"),
            "netns": _str_field(obj, "netns"), "cniArgs": cni_args, "capabilityArgs": caps,
            "result": result}


def _warn(msg: str) -> None:
    try:
        print(f"libcni: {msg}", file=sys.stderr)
    except (OSError, ValueError):
        pass


class ResultCache:
    """Reads and writes cache entries under one cache directory."""

    def __init__(self, cache_dir: str = CACHE_DIR) -> None:
        self.cache_dir = cache_dir

    @property
    def results_dir(self) -> str:
        return os.path.join(self.cache_dir, "results")

    def path(self, network: str, rt: RuntimeConf) -> str:
        """``<cacheDir>/results/<network>-<containerID>-<ifname>``."""
        if not network or not rt.container_id or not rt.ifname:
            raise CacheError(
                f'cache file path requires network name ("{network}"), container ID '
                f'("{rt.container_id}"), and interface name ("{rt.ifname}")')
        return os.path.join(self.results_dir, f"{network}-{rt.container_id}-{rt.ifname}")

    def write(self, network: str, rt: RuntimeConf, config: bytes | None,
              result: AnyResult | None) -> str:
        """Record an attachment atomically; returns the file's path."""
        path = self.path(network, rt)
        data = encode_entry(network, rt, config, result)
        directory = os.path.dirname(path)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        from cnicore.fsutil import write_atomic

        write_atomic(path, data, 0o600)  # the mode Go writes
        return path

    def _read(self, network: str, rt: RuntimeConf) -> bytes | None:
        """The file's bytes, or ``None`` when there is none to read (as the
        reference, any read error counts as "no cache")."""
        path = self.path(network, rt)
        try:
            with open(path, "rb") as fh:
                return fh.read()
        except OSError:
            return None

    def get_result(self, network: str, cni_version: str, rt: RuntimeConf) -> AnyResult | None:
        """The cached result converted to ``cni_version``; ``None`` if nothing is cached.

        Raises :class:`CacheError` for an entry that cannot be understood.
        """
        data = self._read(network, rt)
        if data is None:
            return None
        try:
            entry = decode_entry(data)
        except ValueError as exc:
            raise CacheError(f"failed to decode cached network \"{network}\": {exc}",
                             ERR_DECODING_FAILURE) from None
        from cnicore.types import ResultError, parse_result
        from cnicore.version import decode_config_version

        try:
            if entry is None:  # legacy: the file is the result itself
                raw: Any = data
                version = decode_config_version(data)
            else:
                raw = entry["result"]
                if raw is None:
                    return None
                version = raw.get("cniVersion") or "0.1.0"
                if not isinstance(version, str):
                    raise ResultError("result cniVersion must be a string")
            result = parse_result(raw, version)
        except CNIError as exc:
            raise CacheError(exc.msg, exc.code, exc.details) from None
        except ResultError as exc:
            raise CacheError(str(exc), ERR_DECODING_FAILURE) from None
        try:
            return result.convert(cni_version)
        except ResultError as exc:
            raise CacheError(f'failed to convert cached result to config version "{cni_version}": '
                             f"{exc}", ERR_DECODING_FAILURE) from None

    def get_config(self, network: str, rt: RuntimeConf) -> tuple[bytes | None, RuntimeConf | None]:
        """The cached config bytes and ``rt`` updated with the cached CNI args and
        capability args; ``(None, None)`` if nothing is cached."""
        data = self._read(network, rt)
        if data is None:
            return None, None
        try:
            entry = decode_entry(data)
        except ValueError as exc:
            raise CacheError(f'failed to unmarshal cached network "{network}" config: {exc}',
                             ERR_DECODING_FAILURE) from None
        if entry is None:
            raise CacheError(f'read cached network "{network}" config has wrong kind or is not '
                             f"a {KIND} entry", ERR_DECODING_FAILURE)
        changes: dict[str, Any] = {"capability_args": entry["capabilityArgs"] or {}}
        if entry["cniArgs"] is not None:
            changes["args"] = entry["cniArgs"]
        return entry["config"], rt.copy(**changes)

    def delete(self, network: str, rt: RuntimeConf) -> None:
        """Forget an attachment; a missing file is fine, other failures only warn
        (the attachment is gone either way, the caller must not fail for it)."""
        try:
            path = self.path(network, rt)
        except CacheError:
            return
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            _warn(f"cannot remove cache file {path}: {exc.strerror or exc}")

    def attachments(self, container_id: str = "") -> list[NetworkAttachment]:
        """Every readable v1 entry (only ``container_id``'s when given), by file name.

        Unreadable or foreign files are skipped: one bad file must not stop a
        runtime from finding the rest.
        """
        try:
            names = sorted(os.listdir(self.results_dir))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise CacheError(f"cannot list {self.results_dir}: {exc.strerror or exc}") from None
        found = []
        part = f"-{container_id}-"
        for name in names:
            if name.startswith("."):
                continue  # our own write_atomic temporaries, never entries
            if container_id:
                pos = name.find(part)
                if pos <= 0 or pos + len(part) >= len(name):
                    continue
            try:
                with open(os.path.join(self.results_dir, name), "rb") as fh:
                    entry = decode_entry(fh.read())
            except (OSError, ValueError):
                continue
            if entry is None:
                continue
            if container_id and entry["containerId"] != container_id:
                continue
            if not entry["ifName"] or not entry["networkName"]:
                continue
            found.append(NetworkAttachment(entry["containerId"], entry["networkName"],
                                           entry["ifName"], entry["config"], entry["netns"],
                                           entry["cniArgs"], entry["capabilityArgs"]))
        return found
