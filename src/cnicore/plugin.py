"""What a plugin author imports: the ``hookimpl`` marker and the types a hook returns.

The marker is pluggy-compatible (it sets the same ``cnicore_impl`` attribute
pluggy's ``HookimplMarker("cnicore")`` sets) but does not import pluggy, so a
plugin module stays cheap to import: VERSION is answered without pluggy.
"""

from __future__ import annotations

from cnicore.errors import CNIError
from cnicore.version import ALL, PluginInfo, versions_from

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, TypeVar

    F = TypeVar("F", bound=Callable[..., Any])

PROJECT = "cnicore"
ENTRY_POINT_GROUP = "cnicore.plugins"

__all__ = ["ALL", "CNIError", "PluginInfo", "hookimpl", "versions_from", "PROJECT", "ENTRY_POINT_GROUP"]


def hookimpl(function: F | None = None, *, tryfirst: bool = False, trylast: bool = False,
             wrapper: bool = False, hookwrapper: bool = False, optionalhook: bool = False,
             specname: str | None = None) -> Any:
    """Mark a function as an implementation of a hook in :mod:`cnicore.hookspecs`.

    Usable bare (``@hookimpl``) or with pluggy's options (``@hookimpl(tryfirst=True)``).
    """
    opts = {"wrapper": wrapper, "hookwrapper": hookwrapper, "optionalhook": optionalhook,
            "tryfirst": tryfirst, "trylast": trylast, "specname": specname}

    def mark(func: F) -> F:
        setattr(func, PROJECT + "_impl", opts)
        return func

    if function is not None:
        return mark(function)
    return mark
