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

Deliberate difference: the daemon protocol is cnicore's own (JSON lines over
the unix socket), not Go's net/rpc, so this plugin needs cnicore's daemon
(``python -m cni_plugins_builtin.dhcp daemon``) and Go's plugin Go's daemon.
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


def call(request: Request, method: str) -> Any:
    """One request to the daemon, the reference's error texts around the daemon's."""
    import json
    import os
    import socket

    path = socket_path(request.config)
    args = {"containerID": request.container_id, "netns": os.path.abspath(request.netns) if request.netns else "",
            "ifName": request.ifname, "args": request.args, "path": request.path,
            "stdinData": request.stdin.decode("utf-8", "replace") if request.stdin else json.dumps(request.config)}
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            sock.connect(path)
        except OSError as exc:
            from cnicore.utils import errno_text

            raise _fail(f"error dialing DHCP daemon: dial unix {path}: connect: {errno_text(exc)}") from None
        sock.sendall(json.dumps({"method": method, "args": args}).encode() + b"\n")
        sock.settimeout(120)  # the daemon's own exchange gives up well before
        line = sock.makefile("rb").readline()
        try:
            reply = json.loads(line)
        except ValueError:
            reply = {"error": f"unexpected reply from the daemon: {line[:60]!r} (not cnicore's dhcp daemon?)"}
        if not isinstance(reply, dict):
            reply = {"error": "unexpected reply from the daemon"}
    except OSError as exc:
        from cnicore.utils import errno_text

        raise _fail(f"error calling DHCP.{method}: {errno_text(exc)}") from None
    finally:
        sock.close()
    if "error" in reply or "result" not in reply:
        raise _fail(f"error calling DHCP.{method}: {reply.get('error', 'no reply')}")
    return reply["result"]


@hookimpl
def cni_add(request: Request) -> Result:
    from cnicore.types import Result, parse_result

    result = parse_result(call(request, "Allocate"), "1.1.0")
    assert isinstance(result, Result)
    return result


@hookimpl
def cni_check(request: Request) -> None:
    call(request, "Allocate")


@hookimpl
def cni_del(request: Request) -> None:
    call(request, "Release")
