"""portmap: publish container ports on the host, as a chained plugin (see plugin.py).

Modules: ``plugin`` (the verbs), ``config`` (decoding, defaults, validation, the
container's addresses), ``iptables`` (the reference's chains, in batches) and
``nftables`` (the later releases' ``cni_hostport`` tables).
"""
