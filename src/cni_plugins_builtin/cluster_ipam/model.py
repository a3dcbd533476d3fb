"""The data model in etcd: key names and record values. Pure.

Under ``<prefix>/<network>/`` (prefix default ``/cni-ipam/v1``):

* ``ips/v4/<8 hex digits>``, ``ips/v6/<32 hex digits>`` — one key per
  reserved address, named by the address itself (not by range), so two
  configs that cut the same subnet differently can still never hand out one
  address twice; fixed width keeps key order = address order, so a range is
  a key range. Value: ``{"containerID", "ifname", "node"}``.
* ``alive/<node>`` — ``{"at": <unix time>}``, written by the node's GC: that
  the node was alive then (``cnitool ipam reap-node`` refuses a node seen
  recently).
* ``attach/<node>/<containerID>/<ifname>`` — the attachment record, written
  in the same transaction as its addresses (so every address key has the
  record's ``create_revision``: that equality is how DEL, GC and CHECK know
  an address is still theirs). Value: ``{"containerID", "ifname", "node",
  "ips": [{"address", "gateway"}], "created": <unix time>}``.

* ``idx/...``, ``index``, ``index-build`` — the allocation index, its
  marker and its build key (key names in :mod:`.index`).

Container IDs, interface names and network names cannot hold ``/`` (skel and
libcni check them); node names are checked by :mod:`.config`.
"""

from __future__ import annotations

from cnicore import wire

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from cnicore.ip import IPAddress

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).

DEFAULT_PREFIX = "/cni-ipam/v1"


class Keys:
    """Key names for one network under one prefix."""

    __slots__ = ("base",)

    def __init__(self, prefix: str, network: str) -> None:
        self.base = f"{prefix.rstrip('/')}/{network}/"

    @property
    def ips(self) -> str:
        return self.base + "ips/"

    def ip(self, ip: IPAddress) -> str:
        return self.ip_prefix(ip.version) + f"{int(ip):0{8 if ip.version == 4 else 32}x}"

    def ip_prefix(self, version: int) -> str:
        return f"{self.ips}v{version}/"

    def parse_ip(self, key: str) -> IPAddress | None:
        """The address an ``ips/`` key names, or None for a foreign key."""
        import ipaddress

        if not key.startswith(self.ips):
            return None
        family, _, digits = key[len(self.ips):].partition("/")
        try:
            value = int(digits, 16)
            if family == "v4" and len(digits) == 8:
                return ipaddress.IPv4Address(value)
            if family == "v6" and len(digits) == 32:
                return ipaddress.IPv6Address(value)
        except ValueError:
            pass
        return None

    def alive(self, node: str) -> str:
        return f"{self.base}alive/{node}"

    @property
    def attachments(self) -> str:
        return self.base + "attach/"

    def node(self, node: str) -> str:
        return f"{self.attachments}{node}/"

    def attachment(self, node: str, container_id: str, ifname: str) -> str:
        return f"{self.node(node)}{container_id}/{ifname}"

    def parse_attachment(self, key: str) -> tuple[str, str, str] | None:
        """``(node, containerID, ifname)`` of an ``attach/`` key, or None."""
        if not key.startswith(self.attachments):
            return None
        parts = key[len(self.attachments):].split("/")
        return (parts[0], parts[1], parts[2]) if len(parts) == 3 else None


def prefix_end(prefix: str) -> str:
    """The first key after every key starting with ``prefix`` (etcd's range_end)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def dumps(obj: Any) -> bytes:
    """A record's value: compact JSON, UTF-8 (``cnicore.wire``: ``json`` would load ``re``
    and ``enum`` into every cold exec)."""
    return wire.dumps_compact(obj)


def loads(data: bytes) -> Any:
    """A stored value's JSON; ValueError (UnicodeDecodeError included) if it is not UTF-8 JSON."""
    return wire.loads(data.decode("utf-8"))


def ip_value(container_id: str, ifname: str, node: str) -> bytes:
    return dumps({"containerID": container_id, "ifname": ifname, "node": node})


class Attachment:
    """An attachment record: who, on which node, which addresses, since when."""

    __slots__ = ("container_id", "ifname", "node", "ips", "created")

    def __init__(self, container_id: str, ifname: str, node: str, ips: list[tuple[str, str]],
                 created: float) -> None:
        self.container_id = container_id
        self.ifname = ifname
        self.node = node
        #: ``(address in CIDR form, gateway or "")`` per address, in range-set order.
        self.ips = ips
        self.created = created

    def encode(self) -> bytes:
        return dumps({"containerID": self.container_id, "ifname": self.ifname, "node": self.node,
                      "ips": [{"address": a, "gateway": g} for a, g in self.ips],
                      "created": round(self.created, 3)})

    @classmethod
    def decode(cls, data: bytes) -> Attachment:
        """The record, checked field by field: ValueError (never another error) for
        anything this version did not write — a record edited by hand must not
        stop GC or be handed to a runtime as an ADD's result."""
        import ipaddress

        try:
            obj: Any = loads(data)
        except (ValueError, UnicodeDecodeError):
            raise ValueError(f"not an attachment record: {data[:200]!r}") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("ips"), list):
            raise ValueError(f"not an attachment record: {data[:200]!r}")
        texts = [obj.get(name, "") for name in ("containerID", "ifname", "node")]
        created = obj.get("created", 0)
        if not all(isinstance(text, str) for text in texts):
            raise ValueError("containerID, ifname and node must be strings")
        if isinstance(created, bool) or not isinstance(created, (int, float)):
            raise ValueError(f"created must be a number, not {created!r}")
        ips = []
        for item in obj["ips"]:
            address = item.get("address") if isinstance(item, dict) else None
            gateway = (item.get("gateway") or "") if isinstance(item, dict) else None
            if not isinstance(address, str) or not isinstance(gateway, str):
                raise ValueError(f"not an address entry: {item!r}")
            try:
                ipaddress.ip_interface(address)
                if gateway:
                    ipaddress.ip_address(gateway)
            except ValueError:
                raise ValueError(f"not an address entry: {item!r}") from None
            ips.append((address, gateway))
        return cls(texts[0], texts[1], texts[2], ips, float(created))

    @staticmethod
    def addresses_in(data: bytes) -> list[IPAddress]:
        """Whatever addresses a record that does not decode still names (to release
        their keys with it: each is deleted only if it carries the record's revision)."""
        import ipaddress

        try:
            obj: Any = loads(data)
            items = obj.get("ips") if isinstance(obj, dict) else None
        except (ValueError, UnicodeDecodeError):
            return []
        found = []
        for item in items if isinstance(items, list) else []:
            address = item.get("address") if isinstance(item, dict) else None
            try:
                found.append(ipaddress.ip_interface(address).ip)  # type: ignore[arg-type]
            except (ValueError, TypeError):
                continue
        return found

    def addresses(self) -> list[IPAddress]:
        """The bare addresses (without prefix length)."""
        import ipaddress

        return [ipaddress.ip_interface(a).ip for a, _ in self.ips]

    def __repr__(self) -> str:
        return f"Attachment({self.node}/{self.container_id}/{self.ifname}, {self.ips})"
