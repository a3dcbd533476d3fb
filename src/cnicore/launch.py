"""The entry a generated launcher calls: import one plugin, serve one request."""

from __future__ import annotations


def run(type: str, module: str, attr: str = "", policies: list[str] | tuple[str, ...] = ()) -> None:
    """Import ``module`` (and ``attr`` in it), then run it as this process via skel."""
    import importlib

    from cnicore.host import PluginHost
    from cnicore.skel import main

    plugin = importlib.import_module(module)
    for part in filter(None, attr.split(".")):
        plugin = getattr(plugin, part)
    main(PluginHost(plugin, type, policies))
