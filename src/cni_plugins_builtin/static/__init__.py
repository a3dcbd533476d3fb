"""static: IPAM that hands out exactly the addresses it is given.

A Python counterpart of the reference static IPAM plugin
(``plugins/ipam/static``). Modules, one job each:

* :mod:`.config` — the config (``ipam.addresses``, ``routes``, ``dns``) and
  the addresses requested through CNI_ARGS, ``args.cni.ips`` and
  ``runtimeConfig.ips``: decoded and validated with the reference's rules and
  error texts, pure;
* :mod:`.plugin` — the hook implementations.

Nothing is imported here, so loading the plugin module stays cheap.
"""
