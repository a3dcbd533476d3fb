"""Serve a cnicore launcher's plugin inside this process, observably as its exec would.

Why: an exec of a launcher starts an interpreter (~20 ms of a ~25 ms exec).
A runtime-side process of the same interpreter — in-process IPAM delegation,
``cnitool`` — can host the launcher's plugin itself: same module, same
``sys.path`` entries, same policies (read from the launcher's header), same
stdin and environment, through the same :func:`cnicore.skel.run` the
launcher calls. What differs from an exec, and why it is acceptable where it
is used: no timeout or cancellation (Go's cnitool sets none either), and a
plugin that kills its process takes the caller with it.
"""

from __future__ import annotations

import io
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Mapping

    from cnicore.host import PluginHost
    from cnicore.launchers import LauncherHeader

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).

_HOSTS: dict[tuple[str, str, str, tuple[str, ...]], tuple[object, PluginHost]] = {}


def host_for(header: LauncherHeader) -> PluginHost:
    """The launcher's plugin hosted as the launcher hosts it; one host per plugin
    module and process (a module dropped from ``sys.modules`` is imported again)."""
    key = (header.module, header.attr, header.type, header.policies)
    cached = _HOSTS.get(key)
    if cached is not None and sys.modules.get(header.module) is cached[0]:
        return cached[1]
    from cnicore import launchers
    from cnicore.host import PluginHost
    from cnicore.launch import resolve

    if launchers.code_check is None:  # a warm worker hosts only what its parent loaded: no caller's path
        sys.path.extend([p for p in header.path if p not in sys.path])
    host = PluginHost(resolve(header.module, header.attr), header.type, header.policies)
    _HOSTS[key] = (sys.modules[header.module], host)
    return host


def warm_reusable() -> bool:
    """Whether every plugin hosted in this process, and every policy module of its
    launcher, declares ``WARM_REUSE = True``: that it keeps no per-request state in
    the process, so a warm worker may serve another request after it
    (:mod:`cnicore.server._worker`). An exec runs each request in a new process;
    this is the plugin's promise that it cannot tell the difference."""
    for module, host in _HOSTS.values():
        if getattr(module, "WARM_REUSE", False) is not True:
            return False
        for policy in host.policies:
            owner = sys.modules.get(policy) if isinstance(policy, str) else policy
            if getattr(owner, "WARM_REUSE", False) is not True:
                return False
    return True


def run(header: LauncherHeader, env: Mapping[str, str], stdin: bytes,
        capture_stderr: bool = False) -> tuple[int, bytes, bytes]:
    """``(exit status, stdout, stderr)`` as the launcher's process would produce them.

    ``capture_stderr``: what the plugin writes to ``sys.stderr`` itself is
    captured too, as a pipe would (swaps the process-wide ``sys.stderr``:
    single-threaded callers only)."""
    from cnicore import skel

    if not capture_stderr:
        return skel.run(host_for(header), env, stdin)
    captured = io.BytesIO()
    saved = sys.stderr
    wrapper = io.TextIOWrapper(captured, encoding="utf-8", errors="backslashreplace", write_through=True)
    sys.stderr = wrapper
    try:
        code, out, err = skel.run(host_for(header), env, stdin)
    finally:
        sys.stderr = saved
        wrapper.flush()
        wrapper.detach()  # closing the wrapper would close the buffer with it
    return code, out, captured.getvalue() + err
