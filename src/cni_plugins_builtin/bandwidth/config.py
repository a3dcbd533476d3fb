"""The bandwidth plugin's configuration and the reference's tbf arithmetic, pure.

Field names, precedence and error texts follow the reference bandwidth
plugin: the top-level ``ingressRate``/``ingressBurst``/``egressRate``/
``egressBurst`` (bits per second, bits) are used when any of them is
present; otherwise ``runtimeConfig.bandwidth`` (what a runtime passes for
the ``bandwidth`` capability).
"""

from __future__ import annotations

from cnicore.config import NETCONF_FIELDS, NetConfError, Scalar, Struct, decode_struct, lookup

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

UINT64 = Scalar("uint64")
MAX_UINT32 = 0xFFFFFFFF
KEYS = ("ingressRate", "ingressBurst", "egressRate", "egressBurst")
_FOLDED_KEYS = {key.lower() for key in KEYS}
_ENTRY = {key: UINT64 for key in KEYS}
#: The reference's ``PluginConf`` (NetConf, runtimeConfig and the embedded ``*BandwidthEntry``).
SCHEMA = Struct("PluginConf", {
    **NETCONF_FIELDS,
    **_ENTRY,
    "runtimeConfig": Struct("", {"bandwidth": Struct("BandwidthEntry", _ENTRY, "main.BandwidthEntry")},
                            'struct { Bandwidth *main.BandwidthEntry "json:\\"bandwidth,omitempty\\"" }'),
})
PREFIX = "failed to parse network configuration: "
#: The reference's tbf latency, in milliseconds.
LATENCY_MS = 25
TIME_UNITS_PER_SEC = 1000000
IFB_PREFIX = "bwp"
IFB_NAME_LENGTH = 15


class Bandwidth:
    """One bandwidth entry: rates in bits per second, bursts in bits (0: no limit)."""

    __slots__ = ("ingress_rate", "ingress_burst", "egress_rate", "egress_burst")

    def __init__(self, values: dict[str, Any]) -> None:
        self.ingress_rate: int = values.get("ingressRate") or 0
        self.ingress_burst: int = values.get("ingressBurst") or 0
        self.egress_rate: int = values.get("egressRate") or 0
        self.egress_burst: int = values.get("egressBurst") or 0

    @property
    def is_zero(self) -> bool:
        return not (self.ingress_rate or self.ingress_burst or self.egress_rate or self.egress_burst)

    @property
    def ingress(self) -> bool:
        """Shape traffic to the container (tbf on the host veth)."""
        return bool(self.ingress_rate and self.ingress_burst)

    @property
    def egress(self) -> bool:
        """Shape traffic from the container (through the ifb)."""
        return bool(self.egress_rate and self.egress_burst)


def parse_conf(raw: dict[str, Any]) -> tuple[str, Bandwidth | None]:
    """``(network name, bandwidth or None)``, validated as the reference does."""
    obj = decode_struct(raw, SCHEMA, PREFIX)
    # Go allocates the embedded *BandwidthEntry as soon as one of its keys (any case) is present
    top = any(key.lower() in _FOLDED_KEYS for key in raw)
    runtime = lookup(lookup(obj, "runtimeConfig"), "bandwidth")
    bandwidth = Bandwidth(obj) if top else Bandwidth(runtime) if isinstance(runtime, dict) else None
    if bandwidth is not None:
        validate(bandwidth.ingress_rate, bandwidth.ingress_burst)
        validate(bandwidth.egress_rate, bandwidth.egress_burst)
    return obj.get("name") or "", bandwidth


def validate(rate: int, burst: int) -> None:
    if burst == 0 and rate != 0:
        raise NetConfError("if rate is set, burst must also be set")
    if rate == 0 and burst != 0:
        raise NetConfError("if burst is set, rate must also be set")
    if burst // 8 >= MAX_UINT32:
        raise NetConfError("burst cannot be more than 4GB")


def ifb_name(network: str, container_id: str) -> str:
    """``bwp`` + hash of network name and container ID, as the reference names it."""
    from cnicore.utils import must_format_hash_with_prefix

    return must_format_hash_with_prefix(IFB_NAME_LENGTH, IFB_PREFIX, network + container_id)


def tick_in_usec(psched: str) -> float:
    """Scheduler ticks per microsecond from ``/proc/net/psched`` (as vishvananda/netlink reads it)."""
    t2us, us2t, clock_res = (int(part, 16) for part in psched.split()[:3])
    if clock_res == 1000000000:
        t2us = us2t
    return t2us / us2t * (clock_res / TIME_UNITS_PER_SEC)


def tbf_params(rate_bits: int, burst_bits: int, tick: float) -> tuple[int, int, int]:
    """``(rate, limit, buffer)`` of the reference's tbf: bytes/s, bytes, ticks."""
    rate = rate_bits // 8
    burst = (burst_bits // 8) & MAX_UINT32
    buffer = int(float(int(burst * float(TIME_UNITS_PER_SEC) / rate) & MAX_UINT32) * tick) & MAX_UINT32
    latency = TIME_UNITS_PER_SEC * (LATENCY_MS / 1000.0)
    limit = (int(rate * latency / TIME_UNITS_PER_SEC) + burst) & MAX_UINT32
    return rate, limit, buffer
