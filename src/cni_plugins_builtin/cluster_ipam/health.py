"""STATUS: can the etcd cluster serve us right now?

Two questions, in order, within ``etcd.timeoutSeconds``: does any endpoint
answer at all (``maintenance/status``), and can the cluster serve a
linearizable read (which needs a leader with a quorum behind it — a
minority member still answers status, and would answer serializable reads
with stale data)? A member that knows it has no leader ends the wait early.
"""

from __future__ import annotations

import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cni_plugins_builtin.cluster_ipam.config import ClusterSettings

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).

#: How long one endpoint may take to answer ``status``.
STATUS_SECONDS = 1.0


def probe(cluster: ClusterSettings) -> tuple[bool, str] | None:
    """None when the cluster serves; else ``(some endpoint answered, why not)``."""
    from cni_plugins_builtin.cluster_ipam.etcd import Etcd, EtcdRequestError, EtcdUnavailable
    from cni_plugins_builtin.cluster_ipam.model import Keys

    settings = cluster.etcd
    deadline = time.monotonic() + settings.timeout
    etcd = Etcd(settings, deadline=deadline)
    leaders = []
    silent = []
    for index, url in enumerate(settings.urls):
        budget = min(STATUS_SECONDS, deadline - time.monotonic())
        status = etcd.status(index, budget) if budget > 0 else None
        if status is None:
            silent.append(url)
        else:
            leaders.append(str(status.get("leader") or "0"))
    if not leaders:
        return False, f"no answer from {', '.join(silent)}"
    if all(leader == "0" for leader in leaders):
        return True, "the members that answer have no leader"
    try:
        etcd.range(Keys(cluster.prefix, cluster.network).base, count_only=True)
    except (EtcdUnavailable, EtcdRequestError) as exc:
        return True, f"a linearizable read failed: {exc}"
    return None
