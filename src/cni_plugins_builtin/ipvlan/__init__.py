"""ipvlan: the container's interface is an ipvlan on a host link (the "master").

A Python counterpart of the reference ipvlan plugin (``plugins/main/ipvlan``);
:mod:`.plugin` holds the config and the hooks, on :mod:`cni_plugins_builtin.sublink`.
Nothing is imported here, so loading the plugin module stays cheap.
"""
