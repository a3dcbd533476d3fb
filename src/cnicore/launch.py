"""The entry a generated launcher calls: import one plugin, serve one request."""

from __future__ import annotations

import os
import sys

from cnicore import errors, skel
from cnicore.errors import CNIError
from cnicore.host import PluginHost


def run(type: str, module: str, attr: str = "", policies: list[str] | tuple[str, ...] = ()) -> None:
    """Import ``module`` (and ``attr`` in it), then run it as this process via skel.

    ``__import__`` and ``sys.modules``, not ``importlib.import_module``: same
    result for an absolute name, without importing importlib and warnings
    (~1 ms of every exec)."""
    if os.environ.get("CNICORE_SERVER_LOST"):
        _report_server_lost()
    skel.main(PluginHost(resolve(module, attr), type, policies))


def resolve(module: str, attr: str = "") -> object:
    """The plugin an entry point names: ``module`` imported, then ``attr`` (dotted) in it."""
    __import__(module)
    plugin: object = sys.modules[module]
    for part in filter(None, attr.split(".")):  # an entry point "module:object"
        plugin = getattr(plugin, part)
    return plugin


def _report_server_lost() -> None:
    """The native launcher lost the warm server during ADD: the plugin may have done
    part of its work, so the runtime must retry (CNI code 11), not have it rerun."""
    try:
        config = skel.decode_config(sys.stdin.buffer.read())
    except CNIError:
        config = None
    err = CNIError(errors.ERR_TRY_AGAIN_LATER, "the warm server closed the connection during ADD; "
                   "try again later")
    skel._write_all(1, skel._error_bytes(err, config))
    sys.exit(1)
