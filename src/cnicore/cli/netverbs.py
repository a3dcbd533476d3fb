"""The reference cnitool's network commands (add, check, del, gc, status), without click.

Why a module of its own: ``cnitool add`` is on a runtime's or an operator's
hot path, and importing click costs ~35 ms — more than Go's whole cnitool
run. :mod:`cnicore.cli.cnitool` calls :func:`run_verb` straight from ``argv``
for the usual forms; :mod:`cnicore.cli.commands` (click) calls the same
function for every other form, so both behave identically.
"""

from __future__ import annotations

import os
import sys

# JSON is read with wire.loads, as Go's decoder reads it (invalid UTF-8 and lone surrogates as
# U+FFFD; NaN and a BOM refused), and without importing json, which imports re (~10 ms a cnitool run).
from cnicore import wire
from cnicore.libcni import CNIConfig, RuntimeConf, load_conflist


def sha512_hex(data: bytes) -> str:
    """``hashlib.sha512(data).hexdigest()`` without importing hashlib, which loads
    OpenSSL (~4 ms of a cnitool run); CPython's own SHA-512 gives the same digest."""
    try:
        import _sha512
    except ImportError:  # an interpreter built without it
        import hashlib  # lazy: the fallback only

        return hashlib.sha512(data).hexdigest()
    return _sha512.sha512(data).hexdigest()


def _capability_args(text: str) -> dict[str, object]:
    """CAP_ARGS decoded as Go decodes it into a ``map[string]interface{}``:
    an object, or ``null`` for none."""
    try:
        value = wire.loads(text)
    except ValueError as exc:
        raise ValueError(f"invalid CAP_ARGS: not valid JSON: {exc}") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"invalid CAP_ARGS: must be a JSON object, not {wire.json_kind(value)}")
    return value


def _cni_args(text: str) -> list[tuple[str, str]]:
    """CNI_ARGS ``K=V;K=V`` split exactly as the Go cnitool's ``parseArgs``."""
    pairs = []
    for pair in text.split(";"):
        parts = pair.split("=")
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise ValueError(f"invalid CNI_ARGS pair {wire.go_quote(pair)}")
        pairs.append((parts[0], parts[1]))
    return pairs


def _getwd() -> str:
    """Go's ``os.Getwd``: ``$PWD`` when it is absolute and names the current
    directory (so a shell's logical path such as /var/run/netns survives a
    symlink), else the physical path."""
    pwd = os.environ.get("PWD", "")
    if pwd.startswith("/"):
        try:
            here, there = os.stat("."), os.stat(pwd)
            if (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino):
                return pwd
        except OSError:
            pass
    return os.getcwd()


def _abs_netns(netns: str) -> str:
    """Go's ``filepath.Abs``: joined to :func:`_getwd` and cleaned (POSIX
    ``normpath`` keeps a leading ``//``, Go's ``Clean`` does not). The container
    ID is a hash of this string, so it must be spelled as Go spells it."""
    path = os.path.normpath(netns if os.path.isabs(netns) else os.path.join(_getwd(), netns))
    return "/" + path.lstrip("/") if path.startswith("//") else path


def runtime(network: str, netns: str, ifname: str | None) -> tuple[object, object]:
    """The network list and runtime config, exactly as the Go cnitool builds them
    (``ifname``: the ``-i`` flag after the command, else before it)."""
    conf_list = load_conflist(None, network)
    capability_args = _capability_args(os.environ["CAP_ARGS"]) if os.environ.get("CAP_ARGS") else {}
    cni_args = _cni_args(os.environ["CNI_ARGS"]) if os.environ.get("CNI_ARGS") else []
    ifname = ifname or os.environ.get("CNI_IFNAME") or "eth0"
    netns = _abs_netns(netns)
    container_id = "cnitool-" + sha512_hex(netns.encode())[:20]
    return conf_list, RuntimeConf(container_id, netns, ifname, cni_args, capability_args)


def cni(in_process: bool = False) -> object:
    """libcni as the Go tool configures it. ``in_process``: our own launchers are
    served in this process rather than exec'd (two interpreter starts saved per
    chain; see :mod:`cnicore.inprocess`), unless ``CNICORE_CNITOOL_EXEC=1``."""
    # CNI_CACHE_DIR is our addition (the Go tool always uses /var/lib/cni).
    return CNIConfig([p for p in os.environ.get("CNI_PATH", "").split(os.pathsep) if p],
                     cache_dir=os.environ.get("CNI_CACHE_DIR", ""),
                     in_process=in_process and os.environ.get("CNICORE_CNITOOL_EXEC") != "1")


def _add(cni: object, conf_list: object, rt: object) -> None:
    result = cni.add_network_list(conf_list, rt)  # type: ignore[attr-defined]
    if result is not None:
        sys.stdout.buffer.write(result.to_json())
        sys.stdout.flush()


def _check(cni: object, conf_list: object, rt: object) -> None:
    cni.check_network_list(conf_list, rt)  # type: ignore[attr-defined]


def _del(cni: object, conf_list: object, rt: object) -> None:
    cni.del_network_list(conf_list, rt)  # type: ignore[attr-defined]


def _gc(cni: object, conf_list: object, rt: object) -> None:
    cni.gc_network_list(conf_list, None)  # type: ignore[attr-defined]


def _status(cni: object, conf_list: object, rt: object) -> None:
    cni.get_status_network_list(conf_list)  # type: ignore[attr-defined]


_RUN = {"add": _add, "check": _check, "del": _del, "gc": _gc, "status": _status}


def run_verb(verb: str, network: str, netns: str, ifname: str | None) -> None:
    """Run one network command as the Go tool does: on any error its message on
    stderr (printed by ``click.echo``, imported only then) and exit status 1."""
    try:
        conf_list, rt = runtime(network, netns, ifname)
        _RUN[verb](cni(in_process=True), conf_list, rt)
    except Exception as exc:  # noqa: BLE001 - like the Go tool: message on stderr, exit 1
        import click  # lazy: only on error (~35 ms)

        click.echo(str(exc), err=True)
        sys.exit(1)
