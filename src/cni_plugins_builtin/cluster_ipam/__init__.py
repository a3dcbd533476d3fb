"""cluster-ipam: IPAM from one address pool shared by many nodes, kept in etcd.

host-local's config and results, with the state in an etcd cluster instead
of files on one node. See :mod:`.plugin` for the verbs and
``docs/CLUSTER_IPAM.md`` for when to use it, the data model and the
behaviour under failures.

Modules, one job each:

* :mod:`.config` — the config: host-local's address part plus ``etcd``,
  ``nodeName``, ``prefix``, ``gcGraceSeconds``;
* :mod:`.model` — key names and record values in etcd (pure);
* :mod:`.etcd` — the client: failover within a budget over :mod:`.transport` (a small
  HTTP/1.1 client on a socket, read as ``http.client`` reads: a cold exec cannot afford its imports);
* :mod:`.chance` — random choices for allocation (``random`` without its imports);
* :mod:`.index` — the allocation index (bitmaps and summaries kept by the same
  transactions as the address keys), and building it for a pool that has none;
* :mod:`.allocate` — ADD's transaction;
* :mod:`.release` — DEL, GC, CHECK's ownership test, reaping a node;
* :mod:`.health` — STATUS's probe;
* :mod:`.inventory` — what ``cnitool ipam show`` reports;
* :mod:`.plugin` — the hook implementations;
* :mod:`.localcluster` — a throwaway etcd cluster for tests and benchmarks.

Nothing is imported here, so loading the plugin module stays cheap.
"""
