"""Tooling: the commands people run, apart from the library they drive.

* :mod:`.cnitool` — the ``cnitool`` entry point: the network verbs straight
  from ``argv`` (no click import), everything else through click;
* :mod:`.netverbs` — the reference cnitool's network commands (add, check,
  del, gc, status) over :mod:`cnicore.libcni`;
* :mod:`.commands` — the click command group (``cnitool --help``);
* :mod:`.ipam` — ``cnitool ipam show`` / ``reap-node`` for cluster-ipam pools;
* :mod:`.install` — ``cnitool plugins install``: writing launchers and their
  manifest into CNI bin dirs (reading a launcher is :mod:`cnicore.launchers`);
* :mod:`.scaffold` — ``cnitool new-plugin``: a plugin project from the example;
* :mod:`.demo` — ``python -m cnicore.cli.demo``: a container network end to end.

``python -m cnicore.cli ARGS`` is ``cnitool ARGS`` (how the warm server is
started under systemd-less setups and by the tests). Nothing in the library
imports this package. This file imports nothing: ``cnitool add`` pays only
for what it uses.
"""
