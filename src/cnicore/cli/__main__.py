"""``python -m cnicore.cli ARGS``: the same as ``cnitool ARGS``."""

from cnicore.cli.cnitool import main

main()
