"""The cluster-ipam config: host-local's shape plus where the pool lives.

The address part (``ranges`` with ``rangeStart``/``rangeEnd``/``gateway``,
the legacy single-range keys, ``routes``, ``resolvConf``, requested
addresses from CNI_ARGS ``IP``, ``args.cni.ips`` and ``runtimeConfig.ips``,
``runtimeConfig.ipRanges``) is decoded and validated by host-local's own
:func:`~cni_plugins_builtin.host_local.config.load_config`, with its errors
(code 999). The cluster part, in the ``ipam`` object::

    "etcd": {"endpoints": ["https://10.0.0.1:2379", ...],   required
             "cacert": "...", "cert": "...", "key": "...",   TLS, optional
             "timeoutSeconds": 10},                           the whole verb's budget
    "nodeName": "node-a",         default: this host's name
    "prefix": "/cni-ipam/v1",     key prefix in etcd
    "stateDir": "/run/cni/cluster-ipam",   where the endpoint that answered last is remembered
    "gcGraceSeconds": 60          GC never touches attachments younger than this

Errors in it are code 999 too, as every host-local config error is.
DEL and GC read only the cluster part (:func:`load_cluster`): a release must
not fail because the ranges were edited since the ADD.
"""

from __future__ import annotations

import os

from cni_plugins_builtin.cluster_ipam.model import DEFAULT_PREFIX
from cnicore.errors import ERR_INTERNAL, CNIError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from cni_plugins_builtin.host_local.config import IPAMConfig

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).

DEFAULT_TIMEOUT = 10.0
DEFAULT_GC_GRACE = 60.0
DEFAULT_STATE_DIR = "/run/cni/cluster-ipam"
#: The key trees of a network (see :mod:`.model`): a prefix or network name holding one
#: of these as a path element could place one network's keys inside another's.
RESERVED_ELEMENTS = ("ips", "attach", "alive", "idx")
PLUGIN = "cluster-ipam"


def fail(msg: str) -> CNIError:
    """A cluster-ipam failure, code 999 like host-local's."""
    return CNIError(ERR_INTERNAL, f"{PLUGIN}: {msg}")


class EtcdSettings:
    """Endpoints as ``(scheme, host, port)``, TLS files and the time budget."""

    __slots__ = ("urls", "endpoints", "cacert", "cert", "key", "timeout", "state_dir")

    def __init__(self, urls: list[str], cacert: str = "", cert: str = "", key: str = "",
                 timeout: float = DEFAULT_TIMEOUT, state_dir: str = "") -> None:
        self.urls = urls
        self.endpoints = [parse_endpoint(url) for url in urls]
        self.cacert = cacert
        self.cert = cert
        self.key = key
        self.timeout = timeout
        self.state_dir = state_dir


class ClusterSettings:
    """Where this network's pool lives and who we are in it."""

    __slots__ = ("network", "etcd", "node", "prefix", "gc_grace")

    def __init__(self, network: str, etcd: EtcdSettings, node: str, prefix: str = DEFAULT_PREFIX,
                 gc_grace: float = DEFAULT_GC_GRACE) -> None:
        self.network = network
        self.etcd = etcd
        self.node = node
        self.prefix = prefix
        self.gc_grace = gc_grace


#: Characters of a host name or IPv4 address in the common endpoint shape (see :func:`_plain_endpoint`).
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_")


def _plain_endpoint(url: str) -> tuple[str, str, int] | None:
    """``http(s)://name-or-ipv4[:digits][/]`` read without ``urllib.parse`` (which loads
    ``re``: ~10 ms of a cold exec), giving exactly what ``urlsplit`` gives for it;
    None for any other shape (IPv6, user info, a query...), which ``urlsplit`` reads."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("http", "https"):
        return None
    if rest.endswith("/"):
        rest = rest[:-1]
    host, colon, port = rest.partition(":")
    if not host or not _HOST_CHARS.issuperset(host):
        return None
    if not colon:
        return scheme, host.lower(), 2379
    if not (port.isascii() and port.isdigit() and len(port) <= 5 and int(port) <= 65535):
        return None
    return scheme, host.lower(), int(port) or 2379


def parse_endpoint(url: str) -> tuple[str, str, int]:
    """``http(s)://host:port`` (``[v6]:port``; the port defaults to 2379)."""
    plain = _plain_endpoint(url)
    if plain is not None:
        return plain
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        port = parts.port or 2379
    except ValueError:
        raise fail(f"invalid etcd endpoint {url!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise fail(f"invalid etcd endpoint {url!r}: expected http(s)://host:port")
    return parts.scheme, parts.hostname, port


def _text(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise fail(f"{where}{key} must be a string")
    return value


def _seconds(obj: dict[str, Any], key: str, where: str, default: float, minimum: float) -> float:
    value = obj.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise fail(f"{where}{key} must be a number >= {minimum:g}")
    return float(value)


def _readable(path: str, what: str) -> None:
    if path and not os.access(path, os.R_OK):
        raise fail(f"etcd.{what} {path}: not readable")


def _node_name(ipam: dict[str, Any]) -> str:
    node = _text(ipam, "nodeName", "") or os.uname().nodename
    if "/" in node or not node.isprintable() or len(node) > 253:
        raise fail(f"invalid nodeName {node!r}")
    return node


def load_cluster(config: dict[str, Any]) -> ClusterSettings:
    """The cluster part of the config (see the module docstring)."""
    ipam = config.get("ipam")
    if not isinstance(ipam, dict):
        raise CNIError(ERR_INTERNAL, "IPAM config missing 'ipam' key")
    etcd = ipam.get("etcd")
    if not isinstance(etcd, dict):
        raise fail("ipam.etcd must be an object with endpoints")
    urls = etcd.get("endpoints")
    if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
        raise fail("etcd.endpoints must be a non-empty list of URLs")
    cacert, cert, key = (_text(etcd, name, "etcd.") for name in ("cacert", "cert", "key"))
    if bool(cert) != bool(key):
        raise fail("etcd.cert and etcd.key go together")
    for path, what in ((cacert, "cacert"), (cert, "cert"), (key, "key")):
        _readable(path, what)
    state_dir = _text(ipam, "stateDir", "") or DEFAULT_STATE_DIR
    if not state_dir.startswith("/"):
        raise fail(f"invalid stateDir {state_dir!r}: an absolute path")
    settings = EtcdSettings(list(urls), cacert, cert, key,
                            _seconds(etcd, "timeoutSeconds", "etcd.", DEFAULT_TIMEOUT, 0.1), state_dir)
    if (cacert or cert) and any(scheme != "https" for scheme, _, _ in settings.endpoints):
        raise fail("etcd TLS files need https:// endpoints")
    prefix = _text(ipam, "prefix", "") or DEFAULT_PREFIX
    if not prefix.startswith("/") or "//" in prefix or not prefix.isprintable():
        raise fail(f"invalid prefix {prefix!r}: an absolute key path")
    network = str(config.get("name", ""))
    _refuse_nesting(prefix, network)
    return ClusterSettings(network, settings, _node_name(ipam), prefix.rstrip("/") or "/",
                           _seconds(ipam, "gcGraceSeconds", "", DEFAULT_GC_GRACE, 0))


def _refuse_nesting(prefix: str, network: str) -> None:
    """A network's keys are ``<prefix>/<network>/ips/...`` and ``.../attach/...``;
    another network can only lie inside them if its prefix or name holds ``ips``
    or ``attach`` as a path element — then one network's scans and GC would
    read (and delete) the other's keys. Refused, whatever the other networks are."""
    for what, value, elements in (("prefix", prefix, prefix.split("/")), ("network name", network, [network])):
        for element in elements:
            if element in RESERVED_ELEMENTS:
                raise fail(f"invalid {what} {value!r}: {element!r} is a key tree of every network, "
                           "so this network's keys could lie inside another's")


def load_config(config: dict[str, Any], cni_args: str = "") -> tuple[IPAMConfig, ClusterSettings]:
    """Both parts, for ADD, CHECK and STATUS (host-local's errors first)."""
    from cni_plugins_builtin.host_local.config import load_config as load_addresses

    return load_addresses(config, cni_args), load_cluster(config)
