"""tuning: change sysctls and link settings (MAC, MTU, promisc, allmulti, txQLen)
of an interface another plugin created, and restore the link settings on DEL.

Behaves like the reference tuning plugin (config, precedence, backup file,
result, CHECK, error texts), with these deliberate differences:

* everything is validated before anything is changed: every sysctl key (net
  only, no ``/`` or ``..`` escape, allowlist, the ``cni_sysctl_check``
  policies) and the MAC address; the reference checks each key or the MAC
  just before using it, after earlier changes were made;
* ADD is all-or-nothing: if a step fails, the sysctls already written, the
  link settings already changed and the backup file are restored;
* a MAC is compared and reported in its canonical form (``c2:11:...``), so
  ``C2-11-...`` passes CHECK; CHECK prints the configured allmulti/txQLen
  values (the reference prints pointer addresses);
* DEL removes the backup file when the namespace or the link is gone, since
  nothing is left to restore (the reference keeps it forever);
* ``args.cni.sysctl`` without a ``sysctl`` object works (the reference panics).

Imports: only the public toolkit (:mod:`cnicore.ip`, :mod:`cnicore.netlink`) — no pyroute2
on the exec path.
"""

from __future__ import annotations

import os

from cnicore import __version__
from cnicore.errors import ERR_INTERNAL, CNIError
from cnicore.plugin import ALL, PluginInfo, hookimpl

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from cnicore.netlink import Link, Netlink
    from cnicore.request import Request
    from cnicore.types import AnyResult

    from .config import TuningConf

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).

#: Keeps no per-request state in the process: a warm server's worker may serve
#: the next request after this plugin's (cnicore.inprocess.warm_reusable).
WARM_REUSE = True


@hookimpl
def cni_plugin_info() -> PluginInfo:
    return PluginInfo(ALL, about=f"CNI tuning plugin (cnicore) v{__version__}")


def _fail(msg: str) -> CNIError:
    return CNIError(ERR_INTERNAL, msg)


def _errtext(exc: OSError) -> str:
    """An errno's text as Go prints it (``no such file or directory``)."""
    text = exc.strerror or str(exc)
    return text[:1].lower() + text[1:]


def _conf(request: Request, check_duplicates: bool = True) -> TuningConf:
    from .config import parse_conf

    return parse_conf(request.stdin or request.config, request.args, check_duplicates=check_duplicates)


def _require_prev_result(request: Request) -> None:
    from cnicore.config import lookup

    if lookup(request.config, "prevResult") is None:
        raise _fail("Required prevResult missing")


def _plan_sysctls(conf: TuningConf, request: Request) -> list[tuple[str, str, str]]:
    """``(key, value, path)`` per sysctl, each resolved and accepted by every policy."""
    from cnicore import sysctl

    from .config import sysctl_path

    planned = [(key, value, sysctl_path(key, request.ifname)) for key, value in conf.sysctl.items()]
    for key, value, path in planned:
        sysctl.check(key, value, path, request)
    return planned


def _link(rtnl: Netlink, ifname: str, missing: str) -> Link:
    try:
        return rtnl.link(ifname)
    except LookupError:
        raise _fail(missing) from None


# -- ADD ---------------------------------------------------------------------------

@hookimpl
def cni_add(request: Request) -> AnyResult:
    from cnicore.ns import with_netns_path

    from .config import backup_path, check_allowlist, ethernet_mac, validate_ifname

    conf = _conf(request)
    check_allowlist(conf.sysctl)
    validate_ifname(request.ifname)
    _require_prev_result(request)
    prev = request.prev_result_as_sent()
    request.prev_result  # noqa: B018 - like the reference, refuse a prevResult it cannot convert
    sysctls = _plan_sysctls(conf, request)
    mac = ethernet_mac(conf.mac) if conf.mac else ""
    backup = backup_path(conf.data_dir, request.container_id, request.ifname)

    with_netns_path(request.netns, _apply, conf, request, sysctls, mac, backup)

    if mac:
        for iface in getattr(prev, "interfaces", ()):
            if iface.name == request.ifname:
                iface.mac = mac
    assert prev is not None
    return prev


def _apply(conf: TuningConf, request: Request, sysctls: list[tuple[str, str, str]], mac: str,
           backup: str) -> None:
    """Inside the container namespace: every change, undone again if one fails."""
    from cnicore import sysctl
    from cnicore.netlink import Netlink
    from cnicore.rollback import Rollback

    with Netlink() as rtnl, Rollback() as undo:
        for key, value, path in sysctls:  # each already accepted by the policies
            old = sysctl.write_checked(path, value, key)
            undo.push(f"sysctl {key}", sysctl.write_checked, path, old, key)
        if conf.changes_link:
            _apply_link(rtnl, conf, request.ifname, mac, backup, undo)
        undo.commit()


def _apply_link(rtnl: Netlink, conf: TuningConf, ifname: str, mac: str, backup: str, undo: Any) -> None:
    from .config import encode_backup

    link = _link(rtnl, ifname, f'failed to get "{ifname}": Link not found')
    saved = encode_backup(mac=link.mac if mac else "", promisc=link.promisc if conf.promisc else None,
                          mtu=link.mtu if conf.mtu else 0,
                          allmulti=link.allmulti if conf.allmulti is not None else None,
                          txqlen=link.txqlen if conf.txqlen is not None else None)
    previous = _save_backup(backup, saved, ifname)
    undo.push("backup file", _put_back_backup, backup, previous)

    steps: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    if mac:
        steps.append(("MAC address", {"mac": mac}, {"mac": link.mac}))
    if conf.promisc:
        steps.append(("promiscuous mode", {"promisc": True}, {"promisc": link.promisc}))
    if conf.mtu:
        steps.append(("MTU", {"mtu": conf.mtu}, {"mtu": link.mtu}))
    if conf.allmulti is not None:
        steps.append(("all-multicast mode", {"allmulti": conf.allmulti}, {"allmulti": link.allmulti}))
    if conf.txqlen is not None:
        steps.append(("transmit queue length", {"txqlen": conf.txqlen}, {"txqlen": link.txqlen}))
    for what, new, old in steps:
        value = next(iter(new.values()))
        try:
            rtnl.set_link(link.index, **new)
        except OSError as exc:
            raise _fail(f'failed to set {what} of "{ifname}" to {_show(value)}: {_errtext(exc)}') from None
        undo.push(what, _set_link, rtnl, link.index, old)


def _show(value: object) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _set_link(rtnl: Netlink, index: int, settings: dict[str, Any]) -> None:
    rtnl.set_link(index, **settings)


def _save_backup(path: str, data: bytes, ifname: str) -> bytes | None:
    """Write the backup atomically; return what the file held before (None: no file)."""
    directory = os.path.dirname(path)
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise _fail(f"failed to create backup directory: {exc}") from None
    previous = None
    try:
        with open(path, "rb") as fh:
            previous = fh.read()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise _fail(f"failed to save file {ifname}.json: {exc}") from None
    from cnicore.fsutil import write_atomic

    try:
        # A fresh O_EXCL temporary renamed over the path: a symlink planted in
        # the shared directory is replaced, never written through.
        write_atomic(path, data, 0o600)
    except OSError as exc:
        raise _fail(f"failed to save file {ifname}.json: {exc}") from None
    return previous


def _put_back_backup(path: str, previous: bytes | None) -> None:
    from cnicore.fsutil import write_atomic

    if previous is None:
        _unlink(path)
        return
    write_atomic(path, previous, 0o600)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# -- DEL ---------------------------------------------------------------------------

@hookimpl
def cni_del(request: Request) -> None:
    """Restore the saved link settings. Like the reference, a failure to restore
    does not fail DEL (the backup file is then kept)."""
    from cnicore.ns import NetNSNotFoundError, with_netns_path

    from .config import backup_path

    conf = _conf(request, check_duplicates=False)
    path = backup_path(conf.data_dir, request.container_id, request.ifname)
    if not os.path.exists(path):
        return
    if not request.netns:
        _unlink(path)
        return
    try:
        with_netns_path(request.netns, _restore, path, request.ifname)
    except NetNSNotFoundError:
        _unlink(path)
    except Exception:  # noqa: BLE001 - the reference ignores every restore failure
        pass


def _restore(path: str, ifname: str) -> None:
    from cnicore.netlink import Netlink

    from .config import decode_backup

    with open(path, "rb") as fh:
        saved = decode_backup(fh.read())
    if saved is None:
        return
    with Netlink() as rtnl:
        try:
            link = rtnl.link(ifname)
        except LookupError:
            _unlink(path)  # the interface is gone: nothing to restore
            return
        failed = []
        for key, setting in (("mtu", "mtu"), ("mac", "mac"), ("promisc", "promisc"),
                             ("allmulti", "allmulti"), ("txQLen", "txqlen")):
            if key not in saved or (key == "mtu" and not saved[key]):
                continue
            try:
                rtnl.set_link(link.index, **{setting: saved[key]})
            except (OSError, ValueError):
                failed.append(key)
    if not failed:
        _unlink(path)


# -- CHECK -------------------------------------------------------------------------

@hookimpl
def cni_check(request: Request) -> None:
    from cnicore.ns import with_netns_path

    from .config import sysctl_path

    conf = _conf(request)
    _require_prev_result(request)
    request.prev_result  # noqa: B018 - parsed and converted, as the reference does
    sysctls = [(value, sysctl_path(key, request.ifname)) for key, value in conf.sysctl.items()]
    with_netns_path(request.netns, _check, conf, request.ifname, sysctls)


def _check(conf: TuningConf, ifname: str, sysctls: list[tuple[str, str]]) -> None:
    from cnicore import sysctl
    from cnicore.ip import mac_string, parse_mac
    from cnicore.netlink import Netlink

    for value, path in sysctls:
        try:
            current = sysctl.read(path)
        except OSError as exc:
            raise _fail(f"open {path}: {_errtext(exc)}") from None
        if current != value:
            raise _fail(f"Error: Tuning configured value of {path} is {value}, current value is {current}")
    with Netlink() as rtnl:
        link = _link(rtnl, ifname, f"Cannot find container link {ifname}")
    if conf.mac:
        try:
            wanted = mac_string(parse_mac(conf.mac))
        except ValueError:
            wanted = conf.mac
        if wanted != link.mac:
            raise _fail(f"Error: Tuning configured Ethernet of {ifname} is {conf.mac}, current value is {link.mac}")
    if conf.promisc != link.promisc:
        raise _fail(f"Error: Tuning link {ifname} configured promisc is {_show(conf.promisc)}, "
                    f"current value is {int(link.promisc)}")
    if conf.mtu and conf.mtu != link.mtu:
        raise _fail(f"Error: Tuning configured MTU of {ifname} is {conf.mtu}, current value is {link.mtu}")
    if conf.allmulti is not None and conf.allmulti != link.allmulti:
        raise _fail(f"Error: Tuning configured all-multicast mode of {ifname} is {_show(conf.allmulti)}, "
                    f"current value is {_show(link.allmulti)}")
    if conf.txqlen is not None and conf.txqlen != link.txqlen:
        raise _fail(f"Error: Tuning configured Transmit Queue Length of {ifname} is {conf.txqlen}, "
                    f"current value is {link.txqlen}")
