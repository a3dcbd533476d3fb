"""host-local: IPAM from address ranges, with its state in files on the host.

A Python counterpart of the reference host-local plugin that shares its
on-disk store: both can serve one data directory at the same time. See
:mod:`.plugin` for the behaviour and the deliberate differences.

Modules, one job each (all pure but :mod:`.store` and :mod:`.plugin`):

* :mod:`.config` — the IPAM config: decoding, defaults and validation;
* :mod:`.dns` — ``resolvConf`` parsing;
* :mod:`.store` — the on-disk store (files, lock);
* :mod:`.allocator` — round-robin allocation over a store;
* :mod:`.plugin` — the hook implementations.

Go's rules it shares with the other plugins come from the public toolkit, as
a third-party plugin would use them: ``encoding/json`` decoding
(:mod:`cnicore.config`), ``net`` parsing (:mod:`cnicore.ip`), whitespace and
OS-error wording (:mod:`cnicore.utils`).

Nothing is imported here, so loading the plugin module stays cheap.
"""
