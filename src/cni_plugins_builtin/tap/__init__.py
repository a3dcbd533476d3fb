"""tap: a TAP device in the container (for a VM's or userspace network stack's NIC).

A Python counterpart of the reference tap plugin (``plugins/main/tap``, from v1.4 on;
Debian's 1.1.1 has none). Modules: :mod:`.config` (the config, pure) and
:mod:`.plugin` (the hooks). Nothing is imported here, so loading the plugin stays cheap.
"""
