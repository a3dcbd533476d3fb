"""CNI_ARGS: the ``K=V;K=V`` string a runtime passes to plugins.

Parsing follows the reference: every pair must be exactly ``key=value``; keys a
plugin does not know are an error unless ``IgnoreUnknown`` is true (``1`` or
``true``, any case). Values are converted by the plugin's own field converters.
"""

from __future__ import annotations

from cnicore import wire
from cnicore.errors import ERR_INTERNAL, CNIError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Mapping


class ArgsError(CNIError):
    """CNI_ARGS that cannot be parsed. Code 999, as every reference plugin
    reports it (its LoadArgs error is a plain error), so runtimes see the same
    code from ours."""

    def __init__(self, msg: str) -> None:
        super().__init__(ERR_INTERNAL, msg)


def parse_bool(text: str) -> bool:
    """``1``/``true`` and ``0``/``false``, case-insensitive, as the reference accepts."""
    lowered = text.lower()
    if lowered in ("1", "true"):
        return True
    if lowered in ("0", "false"):
        return False
    raise ValueError(f"boolean unmarshal error: invalid input {lowered}")


def split_pairs(args: str) -> list[tuple[str, str]]:
    """``"A=1;B=2"`` -> ``[("A", "1"), ("B", "2")]``; ``""`` -> ``[]``."""
    if not args:
        return []
    pairs = []
    for pair in args.split(";"):
        parts = pair.split("=")
        if len(parts) != 2:
            raise ArgsError(f"ARGS: invalid pair {wire.go_quote(pair)}")
        pairs.append((parts[0], parts[1]))
    return pairs


def join_pairs(pairs: list[tuple[str, str]] | list[list[str]]) -> str:
    """The inverse of :func:`split_pairs`."""
    return ";".join(f"{k}={v}" for k, v in pairs)


def load_args(args: str, fields: Mapping[str, Callable[[str], Any]]) -> dict[str, Any]:
    """Parse ``args`` into ``{key: converted value}`` for the keys in ``fields``.

    ``fields`` maps each key the plugin understands to a converter (``str``,
    :func:`parse_bool`, ``ipaddress.ip_address``...). ``IgnoreUnknown`` is
    always understood. Raises :class:`ArgsError`.
    """
    known = dict(fields)
    known.setdefault("IgnoreUnknown", parse_bool)
    values: dict[str, Any] = {}
    unknown: list[str] = []
    for key, raw in split_pairs(args):
        converter = known.get(key)
        if converter is None:
            unknown.append(f"{key}={raw}")
            continue
        try:
            values[key] = converter(raw)
        except ValueError as exc:
            raise ArgsError(f"ARGS: error parsing value of pair {wire.go_quote(f'{key}={raw}')}: {exc}") from None
    if unknown and not values.get("IgnoreUnknown", False):
        raise ArgsError(f"ARGS: unknown args {wire.go_quote_list(unknown)}")
    return values
