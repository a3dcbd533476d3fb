"""sbr: source-based routing for an interface set up earlier in the chain.

A Python counterpart of the reference sbr meta plugin (``plugins/meta/sbr``).
Modules, one job each:

* :mod:`.config` — the config (``table``, ``gateways``, ``addSourceHints``),
  decoded with Go's rules;
* :mod:`.routing` — the policy routing itself (tables, rules, moved routes),
  run inside the container namespace;
* :mod:`.plugin` — the hook implementations.

Nothing is imported here, so loading the plugin module stays cheap.
"""
