"""sbr: a routing table and ``from <ip>`` rules per interface, from prevResult.

Verbs, as the reference sbr plugin (plain Go errors, code 999):

* ADD — needs ``prevResult`` ("This plugin must be called as chained plugin")
  with addresses ("No IP addresses supplied on interface: ..."); takes the
  addresses of ``CNI_IFNAME`` (or with no interface index). Without ``table``:
  for each address the first free table from 100, a rule ``from <ip>/32
  lookup <table>``, a default route to the gateway (``gateways`` overrides
  prevResult's, one per family) and the link's main-table routes of that
  subnet (plus those with neither source nor gateway) copied into it; then the
  link's routes leave the main table (with ``addSourceHints``: the subnet
  routes stay there with a source hint and only the others leave). With
  ``table``: only the rules, pointing at that table. Prints prevResult in the
  config's version. Serialised per namespace by a lock on the netns file.
* CHECK — nothing to check, as the reference.
* DEL — removes the rules whose source is an address of the link (of ``table``
  only, when given); the tables' routes go with the link, as the reference.
* GC, STATUS — not implemented by the reference: skel answers them.

Deliberate differences from the reference:

* DEL succeeds when the namespace is gone (the spec; 1.x's DEL fails, and its
  lock would create a regular file at the vanished netns path).
* No lock file is created: the lock is taken on the netns file opened read-only
  (an ADD naming a missing namespace is ``open <path>: no such file or
  directory``; the reference's lock creates a file there first).
* ``vrfname`` is not an sbr option in any release (it belongs to vrf).
"""

from __future__ import annotations

from cnicore import __version__
from cnicore.plugin import ALL, PluginInfo, hookimpl

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from cnicore.request import Request
    from cnicore.types import AnyResult, IPConfig, Result

#: Keeps no per-request state in the process (cnicore.inprocess.warm_reusable).
WARM_REUSE = True


@hookimpl
def cni_plugin_info() -> PluginInfo:
    return PluginInfo(ALL, about=f"CNI sbr plugin (cnicore) v{__version__}")


def _fail(text: str) -> Exception:
    from cnicore.errors import ERR_INTERNAL, CNIError

    return CNIError(ERR_INTERNAL, text)


def interface_ips(ifname: str, result: Result) -> list[IPConfig]:
    """prevResult's addresses of ``ifname``: those whose interface index names it,
    is out of range or is missing (the reference's ``getIPCfgs``)."""
    if not result.ips:
        raise _fail(f"No IP addresses supplied on interface: {ifname}")
    out = []
    for ipc in result.ips:
        index = ipc.interface
        if index is not None and 0 <= index < len(result.interfaces) and result.interfaces[index].name != ifname:
            continue
        out.append(ipc)
    return out


def _locked_in_netns(path: str, fn: Callable[..., None], *args: object, must_exist: bool = True) -> None:
    """Run ``fn`` in the namespace at ``path`` holding an exclusive lock on it, as the
    reference serialises sbr runs on one namespace (its table numbering would race)."""
    import fcntl
    import os

    from cnicore.ns import with_netns_path

    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError) and must_exist is False:
            raise
        from cnicore.utils import go_os_error

        raise _fail(go_os_error("open", path, exc)) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with_netns_path(path, fn, *args)
    finally:
        os.close(fd)


@hookimpl
def cni_add(request: Request) -> AnyResult:
    from .config import load_config
    from .routing import do_routes, do_routes_with_table

    conf = load_config(request)
    printed = request.prev_result_as_sent()  # printed back as sent, converted to the config's version
    if printed is None:
        raise _fail("This plugin must be called as chained plugin")
    result = request.prev_result
    assert result is not None
    ips = interface_ips(request.ifname, result)
    if conf.table is not None:
        _locked_in_netns(request.netns, do_routes_with_table, ips, conf.table)
    else:
        _locked_in_netns(request.netns, do_routes, ips, request.ifname, conf.gateways, conf.add_source_hints)
    return printed


@hookimpl
def cni_check(request: Request) -> None:
    """The reference checks nothing."""


@hookimpl
def cni_del(request: Request) -> None:
    from cnicore.ns import NetNSError

    from .config import load_config
    from .routing import tidy_rules

    conf = load_config(request)
    if not request.netns:
        return
    try:
        _locked_in_netns(request.netns, tidy_rules, request.ifname, conf.table, must_exist=False)
    except (FileNotFoundError, NetNSError):
        return  # the namespace is gone, and its rules with it
