"""The entry a generated launcher calls: import one plugin, serve one request."""

from __future__ import annotations


def run(type: str, module: str, attr: str = "", policies: list[str] | tuple[str, ...] = ()) -> None:
    """Import ``module`` (and ``attr`` in it), then run it as this process via skel.

    ``__import__`` and ``sys.modules``, not ``importlib.import_module``: same
    result for an absolute name, without importing importlib and warnings
    (~1 ms of every exec)."""
    import sys

    from cnicore.host import PluginHost
    from cnicore.skel import main

    __import__(module)
    plugin = sys.modules[module]
    for part in filter(None, attr.split(".")):
        plugin = getattr(plugin, part)
    main(PluginHost(plugin, type, policies))
