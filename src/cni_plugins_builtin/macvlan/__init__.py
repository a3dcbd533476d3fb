"""macvlan: the container's interface is a macvlan on a host link (the "master").

A Python counterpart of the reference macvlan plugin (``plugins/main/macvlan``).
Modules, one job each:

* :mod:`.config` — the config (``master``, ``mode``, ``mtu``, ``mac``,
  ``linkInContainer``, ``bcqueuelen``; the MAC also from CNI_ARGS and
  ``runtimeConfig``), decoded with Go's rules;
* :mod:`.plugin` — the hook implementations (ADD, DEL, CHECK, STATUS, GC), on
  :mod:`cni_plugins_builtin.sublink`, which ipvlan and vlan share.

Nothing is imported here, so loading the plugin module stays cheap.
"""
