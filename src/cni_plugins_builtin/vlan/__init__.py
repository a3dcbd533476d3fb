"""vlan: the container's interface is an 802.1Q VLAN link on a host link (the "master").

A Python counterpart of the reference vlan plugin (``plugins/main/vlan``);
:mod:`.plugin` holds the config and the hooks, on :mod:`cni_plugins_builtin.sublink`.
Nothing is imported here, so loading the plugin module stays cheap.
"""
