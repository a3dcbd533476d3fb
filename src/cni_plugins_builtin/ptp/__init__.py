"""ptp: a veth pair per container, its traffic routed through the host.

A Python counterpart of the reference ptp plugin (``plugins/main/ptp``).
Modules, one job each:

* :mod:`.config` — the config (``mtu``, ``ipMasq``, ``ipMasqBackend``), decoded with Go's rules, pure;
* :mod:`.plugin` — the hook implementations: the veth, the container and host
  sides, masquerade, CHECK, DEL, STATUS and GC.

Nothing is imported here, so loading the plugin module stays cheap.
"""
