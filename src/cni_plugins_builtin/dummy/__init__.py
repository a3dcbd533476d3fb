"""dummy: a dummy link in the container, addressed by IPAM.

A Python counterpart of the reference dummy plugin (``plugins/main/dummy``, from
v1.4 on; Debian's 1.1.1 has none). One module, :mod:`.plugin`: the config is the
plain ``types.NetConf``. Nothing is imported here, so loading the plugin stays cheap.
"""
