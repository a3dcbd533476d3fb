"""host-device: move an existing host link into the container, and back on DEL.

A Python counterpart of the reference host-device plugin (``plugins/main/host-device``).
Modules, one job each:

* :mod:`.config` — the config (``device``, ``hwaddr``, ``kernelpath``, ``pciBusID``,
  ``runtimeConfig.deviceID``), decoded with Go's rules; the sysfs lookups it needs;
* :mod:`.links` — finding the host link and the rename dance through a temporary namespace;
* :mod:`.plugin` — the hook implementations: ADD, DEL, CHECK, STATUS, GC.

Nothing is imported here, so loading the plugin module stays cheap.
"""
