"""CNI result models, one per spec version family, parsed, printed and converted like the reference.

* :class:`Result020` — 0.1.0 and 0.2.0: ``ip4`` / ``ip6`` each with routes.
* :class:`Result040` — 0.3.0, 0.3.1 and 0.4.0: ``interfaces``, ``ips`` with ``version``.
* :class:`Result` — 1.0.0 and 1.1.0 (the current model plugins build): interfaces
  with ``mtu``/``socketPath``/``pciID``, ``ips`` without ``version``.

Parsing validates addresses and normalises them the way Go's ``net`` package
prints them; printing omits empty fields exactly as the reference does (the
1.x result goes through a map in Go, so its keys come out sorted and an empty
``dns`` is dropped; the older families keep struct order and always print
``dns``). ``result.convert(version)`` gives a result as any other version.

Laid out as the reference's ``pkg/types``: the shared pieces and the
registries in ``_base`` (``types.go``, ``create``, ``internal/convert``), one
module per family (``_v020``, ``_v040``, ``_v100``) that registers its class
and the conversions it knows — a newer family converts to and from the
older ones, as in Go. This package's names are the public API; the modules
behind them are not.
"""

from __future__ import annotations

from cnicore.types._base import (
    DNS,
    Interface,
    IPConfig,
    ResultError,
    Route,
    _ResultBase,
    family_of,
    is_ipv4,
    parse_result,
    result_from_json,
)
from cnicore.types._v020 import VERSIONS_020, IPConfig020, Result020
from cnicore.types._v040 import VERSIONS_040, Result040
from cnicore.types._v100 import VERSIONS_100, Result

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnicore.types._base import AnyResult
else:
    #: A result of any version family (a type alias for annotations; at run time the
    #: classes, for isinstance()).
    AnyResult = (Result020, Result040, Result)

__all__ = [
    "AnyResult",
    "ResultError",
    "Route",
    "DNS",
    "Interface",
    "IPConfig",
    "Result",
    "Result040",
    "IPConfig020",
    "Result020",
    "is_ipv4",
    "family_of",
    "parse_result",
    "result_from_json",
]
