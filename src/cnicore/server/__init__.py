"""The warm server: plugin execs served by pre-forked workers of a resident process.

``cnitool daemon`` runs :func:`serve`. Native launchers (``forwarder.c``,
installed by ``cnitool plugins install --native``) and :mod:`cnicore.libcni`
(through :mod:`cnicore.server.client`) send it requests; without a server
both run the plugin cold, exactly as before. The protocol, the fallback rules
and the security model are in ``docs/DESIGN.md`` ("The warm server").

Modules: ``_protocol`` (the wire format, pure), ``_daemon`` (the parent and
its pool), ``_worker`` (one request in one process), ``_native`` (compiling
the launcher), ``client`` (the Python side of a launcher).
"""

from __future__ import annotations

from cnicore.server._daemon import ServerError, serve

__all__ = ["ServerError", "serve"]
