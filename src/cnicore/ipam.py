"""IPAM dispatch: how a main plugin's ``ipam`` section is served.

:func:`run_ipam` is what main plugins call. The default ``cni_ipam``
implementation here finds ``ipam.type`` in CNI_PATH; when that file is a
cnicore launcher for this same interpreter, the IPAM plugin runs in-process
through :func:`cnicore.skel.run` (same validation, same bytes, no exec);
otherwise the binary is exec'd through :mod:`cnicore.invoke`. Either way the
IPAM plugin sees the original stdin and environment with only CNI_COMMAND
changed, as delegation requires.
"""

from __future__ import annotations

import sys

from cnicore._go import lookup
from cnicore.errors import ERR_INVALID_NETWORK_CONFIG, CNIError
from cnicore.plugin import hookimpl

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnicore.launchers import LauncherHeader
    from cnicore.request import Request
    from cnicore.types import AnyResult

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).


def ipam_type(request: Request) -> str:
    """``config["ipam"]["type"]``, or a config error."""
    kind = lookup(lookup(request.config, "ipam"), "type")
    if not kind or not isinstance(kind, str):
        raise CNIError(ERR_INVALID_NETWORK_CONFIG, "missing ipam type in network config")
    return kind


def run_ipam(request: Request, command: str | None = None) -> AnyResult | None:
    """Run IPAM ``command`` (default: the request's) through the ``cni_ipam`` hook.

    Returns the result for ADD, ``None`` otherwise.
    """
    command = command or request.command
    kind = ipam_type(request)
    if request.host is None:
        outcome = cni_ipam(command, kind, request)
    else:
        outcome = request.host.call_hook("cni_ipam", command=command, ipam_type=kind, request=request)
    if command == "ADD":
        if outcome is None or outcome is True:
            raise CNIError(ERR_INVALID_NETWORK_CONFIG, f"IPAM plugin {kind!r} returned no result")
        return outcome
    return None


@hookimpl(trylast=True)
def cni_ipam(command: str, ipam_type: str, request: Request) -> AnyResult | bool:
    """Default: in-process for a cnicore launcher of this interpreter, exec otherwise."""
    from cnicore import invoke
    from cnicore.launchers import read_header

    path = invoke.find_in_path(ipam_type, request.paths)
    header = read_header(path)
    env = dict(request.env)
    env["CNI_COMMAND"] = command
    if header is not None and header.runs_here():
        return _run_in_process(header, command, request.stdin, env)
    args = invoke.DelegateArgs(command)
    if command == "ADD":
        return invoke.exec_plugin_with_result(path, request.stdin, args, env_base=request.env)
    invoke.exec_plugin_without_result(path, request.stdin, args, env_base=request.env)
    return True


def _run_in_process(header: LauncherHeader, command: str, stdin: bytes,
                    env: dict[str, str]) -> AnyResult | bool:
    """Serve the request as the launcher would (:mod:`cnicore.inprocess`)."""
    from cnicore import inprocess, invoke, wire

    name = header.type
    code, out, err = inprocess.run(header, env, stdin)
    if err:
        sys.stderr.buffer.write(err)
    if code != 0:
        try:
            raise CNIError.from_dict(wire.loads(out))
        except ValueError:
            raise CNIError(0, f"IPAM plugin {name} failed: {out!r}") from None
    if command != "ADD":
        return True
    from cnicore.types import parse_result

    version, fixed = invoke.fixup_result_version(stdin, out)
    return parse_result(fixed, version)
