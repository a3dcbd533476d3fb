"""Go's ``encoding/json`` as libcni uses it: the map round-trip.

Go's libcni decodes configs into ``map[string]interface{}`` and encodes them
again, so what a plugin receives (and what the result cache holds) has every
object's keys sorted, no whitespace, Go's HTML-safe escapes, and numbers as
float64 prints them (:func:`normalise`, :func:`marshal`). Producing the same
bytes keeps our plugin stdin and cache files interchangeable with the
reference's.

Decoding a plugin's config into Go structs (key folding, kinds, Go's error
texts, ``NetConfError``) is public and lives in :mod:`cnicore.config`; its
names are still reachable here, loaded on first use, for older imports.
"""

from __future__ import annotations

from cnicore import wire

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: The struct decoder's names, now in :mod:`cnicore.config`.
_MOVED = frozenset({"ANY", "BOOL", "INT", "NETCONF_FIELDS", "STRING", "Decoder", "GoType", "Map", "NetConfError",
                    "Scalar", "Slice", "Struct", "decode_struct", "fields", "fold", "kind", "lookup",
                    "mismatch_text"})


def __getattr__(name: str) -> object:
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from cnicore import config

    return getattr(config, name)


# -- libcni's map round-trip ---------------------------------------------------------------

def normalise(value: Any) -> Any:
    """``value`` as a Go ``interface{}`` re-encodes it: dicts sorted by key
    (recursively), tuples as lists, and integral floats as integers (Go prints
    float64 ``1.0`` as ``1``). Anything else is returned unchanged."""
    if isinstance(value, dict):
        return {str(k): normalise(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return [normalise(v) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value)
    return value


def marshal(value: Any) -> bytes:
    """Compact bytes of an already :func:`normalise`-d value, keys in the
    order given (so a caller can keep a struct's field order where Go does)."""
    return wire.dumps_compact(value)
