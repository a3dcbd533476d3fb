"""dhcp: IPAM that asks the DHCP client daemon (:mod:`.daemon`) for a lease.

Verbs, as the reference dhcp plugin (errors code 999):

* ADD — ``Allocate`` on the daemon's socket (``ipam.daemonSocketPath``, default
  /run/cni/dhcp.sock): the daemon enters CNI_NETNS, runs DHCP on CNI_IFNAME and
  keeps the lease renewed; the result has the address, gateway and routes
  (option 121, else 33 plus the router), ``priority`` on the routes;
* CHECK — ``Allocate`` again (the reference's check: the lease must exist or be
  acquirable);
* DEL — ``Release``: the daemon stops renewing and sends DHCPRELEASE;
* GC, STATUS — not implemented by the reference: skel answers them.

The wire is the reference's: Go's net/rpc over HTTP with gob (:mod:`.rpc`),
so this plugin works with Go's daemon (``/usr/lib/cni/dhcp daemon``) and Go's
plugin with ours (``python -m cni_plugins_builtin.dhcp daemon``). The error
texts are the reference plugin's: ``error dialing DHCP daemon: ...`` when no
daemon answers, ``error calling DHCP.Allocate: ...`` with the daemon's error.
Where the reference waits for ever, this plugin gives up after
:data:`CALL_TIMEOUT` (longer than Go's daemon takes to give up on a server).
"""

from __future__ import annotations

from cnicore import __version__
from cnicore.plugin import ALL, PluginInfo, hookimpl

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from cnicore.request import Request
    from cnicore.types import Result

#: Keeps no per-request state in the process (cnicore.inprocess.warm_reusable).
WARM_REUSE = True

DEFAULT_SOCKET = "/run/cni/dhcp.sock"


@hookimpl
def cni_plugin_info() -> PluginInfo:
    return PluginInfo(ALL, about=f"CNI dhcp plugin (cnicore) v{__version__}")


def _fail(text: str) -> Exception:
    from cnicore.errors import ERR_INTERNAL, CNIError

    return CNIError(ERR_INTERNAL, text)


def socket_path(config: Any) -> str:
    ipam = config.get("ipam") if isinstance(config, dict) else None
    path = ipam.get("daemonSocketPath") if isinstance(ipam, dict) else None
    return path if isinstance(path, str) and path else DEFAULT_SOCKET


#: Seconds to wait for the daemon's answer: Go's daemon retries a silent DHCP server
#: for about four minutes (resends backing off to -resendmax) before it answers.
CALL_TIMEOUT = 300.0


def call(request: Request, method: str) -> Any:
    """``DHCP.<method>`` on the daemon's socket with the request as skel.CmdArgs; the
    reply as gob decoded it. The reference's error texts around the daemon's."""
    import json
    import os

    from .messages import CMD_ARGS, cmd_args
    from .rpc import CallError, DialError
    from .rpc import call as rpc_call

    path = socket_path(request.config)
    stdin = request.stdin if request.stdin else json.dumps(request.config).encode()
    args = cmd_args(request.container_id, os.path.abspath(request.netns) if request.netns else "", request.ifname,
                    request.args, request.path, stdin)
    try:
        return rpc_call(path, f"DHCP.{method}", args, CMD_ARGS, CALL_TIMEOUT)
    except DialError as exc:
        raise _fail(f"error dialing DHCP daemon: {exc}") from None
    except CallError as exc:
        raise _fail(f"error calling DHCP.{method}: {exc}") from None


@hookimpl
def cni_add(request: Request) -> Result:
    from cnicore.types import Result, parse_result

    from .messages import result_from_gob

    reply = call(request, "Allocate")
    try:
        result = parse_result(result_from_gob(reply if isinstance(reply, dict) else {}), "1.1.0")
    except ValueError as exc:
        raise _fail(f"error calling DHCP.Allocate: {exc}") from None
    assert isinstance(result, Result)
    return result


@hookimpl
def cni_check(request: Request) -> None:
    call(request, "Allocate")


@hookimpl
def cni_del(request: Request) -> None:
    call(request, "Release")
