"""The warm server: plugin execs served by pre-forked workers of a resident process.

``cnitool daemon`` runs :func:`serve`. Native launchers (``forwarder.c``,
installed by ``cnitool plugins install --native``) and :mod:`cnicore.libcni`
(through :mod:`cnicore.server.client`) send it requests; without a server
both run the plugin cold, exactly as before. The protocol, the fallback rules
and the security model are in ``docs/DESIGN.md`` ("The warm server").

Modules: ``_protocol`` (the wire format, pure), ``_daemon`` (the parent and
its pool), ``_worker`` (one request in one process), ``_codewatch`` (whether
the served code changed on disk), ``_native`` (compiling the launcher),
``client`` (the Python side of a launcher).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnicore.server._daemon import ServerError, serve

__all__ = ["ServerError", "serve"]


def __getattr__(name: str) -> object:
    """``serve`` and ``ServerError`` from ``_daemon``, imported on first use: a libcni
    caller importing :mod:`cnicore.server.client` must not pay for the parent's
    imports (~11 ms of a ``cnitool add``)."""
    if name in __all__:
        from cnicore.server import _daemon

        return getattr(_daemon, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
