"""sbr's config: the reference's ``PluginConf`` (``table``, ``gateways``,
``addSourceHints``), decoded as Go's ``encoding/json`` would."""

from __future__ import annotations

from cnicore.config import decode

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnicore.request import Request

#: The reference's error prefix for a config that does not decode.
PREFIX = "failed to parse network configuration: "


class PluginConf:  # Go's struct name: it shows in decoding errors
    """``table``: use this table for every address and only add rules (no route is
    moved); ``gateways``: at most one IPv4 and one IPv6 gateway used for the
    tables' default routes instead of prevResult's; ``addSourceHints``: keep the
    link's subnet routes in the main table with a source hint."""

    table: int | None = None
    gateways: list[str]
    add_source_hints: bool = False


def load_config(request: Request) -> PluginConf:
    return decode(request, PluginConf, prefix=PREFIX)
