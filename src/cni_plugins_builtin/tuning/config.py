"""The tuning plugin's configuration: decoding, precedence and validation, pure.

Field names, precedence and error texts follow the reference tuning plugin.
A link setting comes from, in increasing precedence: the config's own field,
CNI_ARGS ``MAC`` (MAC only), ``runtimeConfig.mac`` (MAC only), and
``args.cni.<field>``; ``args.cni.sysctl`` entries are merged over ``sysctl``.

Everything here is checked before plugin code changes anything: the sysctl
keys (net only, no way out of /proc/sys/net, allowlist), a duplicated key in
``sysctl``, the MAC address. Like the reference, failures are internal
errors (code 999) unless :mod:`cnicore.sysctl` or a policy says otherwise.
"""

from __future__ import annotations

import posixpath

from cnicore import wire
from cnicore.config import BOOL, INT, NETCONF_FIELDS, STRING, Map, NetConfError, Struct, decode_struct, lookup
from cnicore.ip import ethernet_mac as go_ethernet_mac

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).

#: Where ADD saves the link settings it changes, for DEL to restore (``dataDir`` overrides).
DEFAULT_DATA_DIR = "/run/cni/tuning"
#: Optional sysctl allowlist: one regular expression per line; absent means no restriction.
ALLOWLIST_PATH = "/etc/cni/tuning/allowlist.conf"
#: The only part of /proc/sys a tuning sysctl may resolve to.
NET_PREFIX = "/proc/sys/net/"
MAX_U32 = 0xFFFFFFFF


# -- JSON with duplicate detection ---------------------------------------------------

class _Object(dict):
    """A decoded JSON object that remembers the keys it saw more than once."""

    __slots__ = ("duplicates",)

    def __init__(self) -> None:
        super().__init__()
        self.duplicates: list[str] = []


def _object_pairs(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object()
    for key, value in pairs:
        if key in obj:
            obj.duplicates.append(key)
        obj[key] = value
    return obj


def decode(stdin: bytes | str | dict[str, Any]) -> dict[str, Any]:
    """The config object, decoded so that duplicated keys can be found afterwards."""
    if isinstance(stdin, dict):
        return stdin
    if isinstance(stdin, bytes):
        stdin = stdin.decode("utf-8", "replace")
    try:
        obj = wire.loads(stdin, object_pairs_hook=_object_pairs)
    except ValueError as exc:
        raise NetConfError(f"failed to load netconf: {exc}") from None
    if not isinstance(obj, dict):
        raise NetConfError("failed to load netconf: expected a JSON object")
    return obj


def check_duplicate_sysctls(obj: dict[str, Any]) -> None:
    """Go's validateSysctlConflictingKeys: a key twice in ``sysctl`` is refused (we
    also refuse it in ``args.cni.sysctl``, which the reference merges unchecked)."""
    sysctls = [lookup(obj, "sysctl"), lookup(lookup(lookup(obj, "args"), "cni"), "sysctl")]
    for value in sysctls:
        if getattr(value, "duplicates", None):
            raise NetConfError("duplicated sysctl keys are not allowed")


_SYSCTL = Map(STRING)
#: The reference's ``TuningConf`` (what ``encoding/json`` decodes the config into).
SCHEMA = Struct("TuningConf", {
    **NETCONF_FIELDS,
    "dataDir": STRING, "sysctl": _SYSCTL, "mac": STRING, "promisc": BOOL, "mtu": INT, "txQLen": INT,
    "allmulti": BOOL,
    "runtimeConfig": Struct("", {"mac": STRING}, 'struct { Mac string "json:\\"mac,omitempty\\"" }'),
    "args": Struct("", {"cni": Struct("IPAMArgs", {"sysctl": _SYSCTL, "mac": STRING, "promisc": BOOL, "mtu": INT,
                                                   "allmulti": BOOL, "txQLen": INT}, "main.IPAMArgs")},
                   'struct { A *main.IPAMArgs "json:\\"cni\\"" }'),
})


# -- typed fields ----------------------------------------------------------------------





def _u32(value: int | None, what: str) -> int | None:
    if value is not None and not 0 <= value <= MAX_U32:
        raise NetConfError(f"failed to load netconf: {what} {value} is out of range")
    return value


class TuningConf:
    """A decoded tuning config with every override applied."""

    __slots__ = ("name", "data_dir", "sysctl", "mac", "promisc", "mtu", "txqlen", "allmulti")

    def __init__(self, raw: dict[str, Any], cni_args: str = "") -> None:
        obj = decode_struct(raw, SCHEMA, "failed to load netconf: ")  # kinds are Go's from here on
        self.name: str = obj.get("name") or ""
        self.data_dir: str = obj.get("dataDir") or DEFAULT_DATA_DIR
        self.sysctl: dict[str, str] = dict(obj.get("sysctl") or {})
        self.mac: str = obj.get("mac") or ""
        self.promisc: bool = bool(obj.get("promisc"))
        self.mtu: int = obj.get("mtu") or 0
        self.txqlen: int | None = obj.get("txQLen")
        self.allmulti: bool | None = obj.get("allmulti")
        if cni_args:
            from cnicore.config import load_args

            self.mac = load_args(cni_args, {"MAC": str}).get("MAC", "") or self.mac
        self.mac = (obj.get("runtimeConfig") or {}).get("mac") or self.mac
        args = (obj.get("args") or {}).get("cni") or {}
        self.sysctl.update(args.get("sysctl") or {})
        if args.get("mac") is not None:
            self.mac = args["mac"]
        if args.get("promisc") is not None:
            self.promisc = args["promisc"]
        if args.get("mtu") is not None:
            self.mtu = args["mtu"]
        if args.get("allmulti") is not None:
            self.allmulti = args["allmulti"]
        if args.get("txQLen") is not None:
            self.txqlen = args["txQLen"]
        _u32(self.mtu, "mtu")
        _u32(self.txqlen, "txQLen")

    @property
    def changes_link(self) -> bool:
        """True if ADD changes link settings (and so saves a backup first)."""
        return bool(self.mac or self.mtu or self.promisc or self.allmulti is not None or self.txqlen is not None)


def parse_conf(stdin: bytes | str | dict[str, Any], cni_args: str = "", *,
               check_duplicates: bool = True) -> TuningConf:
    """Decode and validate a tuning config (ADD and CHECK check duplicates, DEL does not)."""
    obj = decode(stdin)
    if check_duplicates:
        check_duplicate_sysctls(obj)
    return TuningConf(obj, cni_args)


# -- MAC addresses ---------------------------------------------------------------------

def ethernet_mac(text: str) -> str:
    """The canonical form of a MAC the plugin can set, or the reference's error."""
    try:
        return go_ethernet_mac(text)
    except ValueError as exc:
        raise NetConfError(f"invalid args {text} for MAC addr: {exc}") from None


# -- sysctl keys -------------------------------------------------------------------------

def validate_ifname(ifname: str) -> None:
    """Go's validateArgs (skel already refuses such names; kept for direct callers)."""
    if "/" in ifname:
        raise NetConfError(f"Interface name ({ifname}) contains an invalid character /")


def sysctl_path(key: str, ifname: str) -> str:
    """The file under /proc/sys/net/ a key resolves to, or an error before anything is written.

    First the reference's own rule (dots become ``/``, the first ``IFNAME`` the
    interface name, the cleaned path must start with /proc/sys/net/, with its
    error text), then :func:`cnicore.sysctl.key_to_path`, which also refuses
    keys the reference would let through (``/`` in a key, empty components).
    """
    from cnicore.sysctl import key_to_path

    slashed = key.replace(".", "/").replace("IFNAME", ifname, 1)
    if not posixpath.normpath(posixpath.join("/proc/sys", slashed)).startswith(NET_PREFIX):
        raise NetConfError(f"invalid net sysctl key: {wire.go_quote(slashed)}")
    path = key_to_path(key, ifname)
    if ".." in path.split("/") or not posixpath.normpath(path).startswith(NET_PREFIX):
        raise NetConfError(f"invalid net sysctl key: {wire.go_quote(slashed)}")
    return path


# -- allowlist -----------------------------------------------------------------------------

def read_allowlist(path: str | None = None) -> list[str] | None:
    """The allowlist's patterns, or None when the file does not exist (no restriction)."""
    path = ALLOWLIST_PATH if path is None else path
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise NetConfError(f"open {path}: {exc.strerror}") from None
    return [line.strip() for line in text.split("\n") if line.strip()]


def check_allowlist(sysctls: dict[str, str], path: str | None = None) -> None:
    """Every key must match (``re.search``, as Go's MatchString) one allowlist pattern."""
    patterns = read_allowlist(path)
    if patterns is None:
        return
    import re  # only with an allowlist: it costs ~5 ms per exec

    for key in sysctls:
        for pattern in patterns:
            try:
                if re.search(pattern, key):
                    break
            except re.error as exc:
                raise NetConfError(f"error parsing regexp: {exc}: `{pattern}`") from None
        else:
            raise NetConfError(f"Sysctl {key} is not allowed. Only the following sysctls are allowed: "
                              f"[{' '.join(patterns)}]")


# -- the backup of link settings -------------------------------------------------------------

def backup_path(data_dir: str, container_id: str, ifname: str) -> str:
    """``<dataDir>/<containerID>_<ifname>.json``, as the reference names it."""
    return posixpath.join(data_dir, f"{container_id}_{ifname}.json")


def encode_backup(mac: str = "", promisc: bool | None = None, mtu: int = 0, allmulti: bool | None = None,
                  txqlen: int | None = None) -> bytes:
    """The reference's backup file (``MarshalIndent`` with one space, empty fields left out)."""
    obj: dict[str, Any] = {}
    if mac:
        obj["mac"] = mac
    if promisc is not None:
        obj["promisc"] = promisc
    if mtu:
        obj["mtu"] = mtu
    if allmulti is not None:
        obj["allmulti"] = allmulti
    if txqlen is not None:
        obj["txQLen"] = txqlen
    return wire.dumps_text(obj, 1).encode()


def decode_backup(data: bytes) -> dict[str, Any] | None:
    """The settings of a backup file; None if it cannot be used (the reference then
    leaves it alone)."""
    try:
        obj = wire.loads(data)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    kinds = {"mac": str, "promisc": bool, "mtu": int, "allmulti": bool, "txQLen": int}
    out: dict[str, Any] = {}
    for key, kind in kinds.items():
        value = obj.get(key)
        if value is None:
            continue
        if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
            return None
        out[key] = value
    return out
