"""Releasing attachments: DEL, GC, CHECK's ownership test and ``reap-node``.

Every release is one guarded transaction: the attachment record is deleted
only if it was not rewritten since we read it (``mod_revision``), and each of
its address keys only if it still carries the record's ``create_revision``
(both were written by the same ADD transaction). The address keys are read
first, with their allocation-index bitmaps: an address that somebody else
holds by now (after a reap and a new ADD) is compared unchanged and left
alone, with its bit, while the rest goes and their bits are cleared in the
same transaction. A record that is already gone is a success: DEL is
idempotent.
"""

from __future__ import annotations

import time

from cni_plugins_builtin.cluster_ipam import etcd as kv
from cni_plugins_builtin.cluster_ipam.index import Index, open_index
from cni_plugins_builtin.cluster_ipam.model import Attachment, Keys, dumps, loads, prefix_end

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterator

    from cni_plugins_builtin.cluster_ipam.etcd import KV, Etcd
    from cnicore.ip import IPAddress

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).

#: Guarded deletes that may lose to concurrent writers before DEL gives up.
MAX_ROUNDS = 10
PAGE = 500


def release_kv(etcd: Etcd, keys: Keys, item: KV) -> bool:
    """Delete the attachment ``item`` (as read) with its addresses and clear their bits
    in the allocation index; False if it changed or vanished since it was read.

    The address keys are read first (with the index): those still carrying the
    record's ``create_revision`` are deleted, the others (held by somebody else
    by now) left alone, and the transaction compares that each is still as read."""
    try:
        record = Attachment.decode(item.value)
        addresses = record.addresses()
    except ValueError:
        addresses = Attachment.addresses_in(item.value)  # unreadable: what it still names
    addresses = list(dict.fromkeys(addresses))
    for _ in range(MAX_ROUNDS):
        index, found = open_index(etcd, keys, [keys.ip(ip) for ip in addresses],
                                  [key for ip in addresses for key in index_keys_for(keys, ip)])
        ours = [ip for ip, held in zip(addresses, found)
                if held is not None and held.create_revision == item.create_revision]
        gone = [ip for ip, held in zip(addresses, found) if held is None]
        others = [(ip, held) for ip, held in zip(addresses, found) if held is not None and ip not in ours]
        compares, puts, _ = index.update([], ours + [ip for ip in gone if index.has(ip)])
        ok, responses = etcd.txn(
            [kv.unmodified_since(item.key, item.mod_revision)]
            + [kv.created_at(keys.ip(ip), item.create_revision) for ip in ours]
            + [kv.absent(keys.ip(ip)) for ip in gone]
            + [kv.unmodified_since(held.key, held.mod_revision) for _, held in others] + compares,
            [kv.delete(item.key)] + [kv.delete(keys.ip(ip)) for ip in ours] + puts,
            [kv.read(item.key)])
        if ok:
            return True
        now = kv.kvs(responses[0].get("response_range", {}))
        if not now or now[0].mod_revision != item.mod_revision:
            return False
    return False


def index_keys_for(keys: Keys, ip: IPAddress) -> list[str]:
    return Index(keys).keys_for(ip)


def release(etcd: Etcd, keys: Keys, node: str, container_id: str, ifname: str) -> bool:
    """DEL: release the attachment; True if something was released, False if it
    was already gone."""
    from cni_plugins_builtin.cluster_ipam.config import fail

    akey = keys.attachment(node, container_id, ifname)
    for _ in range(MAX_ROUNDS):
        item = etcd.get(akey)
        if item is None:
            return False
        if release_kv(etcd, keys, item):
            return True
    raise fail(f"attachment {akey} keeps changing, not released")


def attachments(etcd: Etcd, prefix: str, page: int = PAGE) -> Iterator[KV]:
    """Every key under ``prefix`` (paged, linearizable)."""
    start, end = prefix, prefix_end(prefix)
    while True:
        answer = etcd.range(start, end, limit=page)
        items = kv.kvs(answer)
        yield from items
        if not answer.get("more") or not items:
            return
        start = items[-1].key + "\x00"


def collect(etcd: Etcd, keys: Keys, node: str, valid: set[tuple[str, str]], grace: float,
            now: float | None = None) -> list[str]:
    """GC: release this node's attachments that are not in ``valid`` and older
    than ``grace`` seconds (an ADD the runtime had not finished when it made
    its list must survive); the keys released."""
    now = time.time() if now is None else now
    released = []
    for item in list(attachments(etcd, keys.node(node))):
        who = keys.parse_attachment(item.key)
        if who is None or (who[1], who[2]) in valid:
            continue
        try:
            created = Attachment.decode(item.value).created
        except ValueError:
            created = 0.0
        if now - created < grace:
            continue
        if release_kv(etcd, keys, item):
            released.append(item.key)
    return released


def gc(etcd: Etcd, keys: Keys, node: str, valid: set[tuple[str, str]], grace: float) -> None:
    """GC: this node's stale attachments (:func:`collect`), then its orphan address
    keys (:func:`orphans`), then the node's liveness key."""
    collect(etcd, keys, node, valid, grace)
    sweep(etcd, orphans(etcd, keys, node))
    etcd.call("kv/put", {"key": kv.b64(keys.alive(node)),
                         "value": kv.b64(dumps({"at": round(time.time(), 3)}))})


def last_seen(etcd: Etcd, keys: Keys, node: str) -> float:
    """When ``node`` was last known alive in this network: its GC's liveness key or
    its newest attachment's creation (0 if never)."""
    seen = 0.0
    item = etcd.get(keys.alive(node))
    if item is not None:
        try:
            at = loads(item.value).get("at")
            seen = float(at) if isinstance(at, (int, float)) and not isinstance(at, bool) else 0.0
        except (ValueError, AttributeError, UnicodeDecodeError):
            pass
    for record in attachments(etcd, keys.node(node)):
        try:
            seen = max(seen, Attachment.decode(record.value).created)
        except ValueError:
            continue
    return seen


def orphans(etcd: Etcd, keys: Keys, node: str | None = None) -> list[KV]:
    """Address keys no attachment holds (an attachment key deleted by hand, a record
    rewritten): of ``node`` only (by the address key's value), or of every node.

    An address key is held iff an attachment lists it *and* was created in the
    same transaction (equal ``create_revision``). The address keys are read
    first, the attachments after: an attachment that held one of them then
    still exists (DEL removes both in one transaction), so nothing held is
    ever taken for an orphan."""
    found = []
    for item in attachments(etcd, keys.ips):
        if keys.parse_ip(item.key) is None:
            continue
        if node is not None and _value_node(item.value) != node:
            continue
        found.append(item)
    if not found:
        return []
    held: set[tuple[str, int]] = set()
    for item in attachments(etcd, keys.node(node) if node is not None else keys.attachments):
        try:
            record = Attachment.decode(item.value)
        except ValueError:
            held.update((keys.ip(ip), item.create_revision) for ip in Attachment.addresses_in(item.value))
            continue
        held.update((keys.ip(ip), item.create_revision) for ip in record.addresses())
    return [item for item in found if (item.key, item.create_revision) not in held]


def sweep(etcd: Etcd, items: list[KV]) -> list[str]:
    """Delete these orphan address keys, each only if unchanged since it was read (its
    bit cleared in the allocation index by the same transaction); the keys deleted."""
    done = []
    for item in items:
        keys = _keys_of(item.key)
        ip = keys.parse_ip(item.key) if keys is not None else None
        if keys is None or ip is None:
            continue
        for _ in range(MAX_ROUNDS):
            index, _ = open_index(etcd, keys, [], index_keys_for(keys, ip))
            compares, puts, _ = index.update([], [ip])
            ok, responses = etcd.txn([kv.unmodified_since(item.key, item.mod_revision)] + compares,
                                     [kv.delete(item.key)] + puts, [kv.read(item.key)])
            if ok:
                done.append(item.key)
                break
            now = kv.kvs(responses[0].get("response_range", {}))
            if not now or now[0].mod_revision != item.mod_revision:
                break
    return done


def _keys_of(address_key: str) -> Keys | None:
    """The network's key names, from one of its address keys (``<base>ips/v4/...``)."""
    base, found, _ = address_key.rpartition("/ips/")
    if not found:
        return None
    prefix, _, network = base.rpartition("/")
    return Keys(prefix or "/", network)


def _value_node(value: bytes) -> str | None:
    try:
        obj = loads(value)
    except (ValueError, UnicodeDecodeError):
        return None
    node = obj.get("node") if isinstance(obj, dict) else None
    return node if isinstance(node, str) else None


def still_held(etcd: Etcd, keys: Keys, item: KV) -> list[str]:
    """CHECK: the record's addresses whose keys no longer carry its revision."""
    record = Attachment.decode(item.value)
    addresses = record.addresses()
    _, responses = etcd.txn([], [kv.read(keys.ip(ip)) for ip in addresses])  # one revision for all
    lost = []
    for ip, response in zip(addresses, responses):
        found = kv.kvs(response.get("response_range", {}))
        if not found or found[0].create_revision != item.create_revision:
            lost.append(str(ip))
    return lost
