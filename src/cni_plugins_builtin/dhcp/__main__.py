"""``python -m cni_plugins_builtin.dhcp daemon ...``: the DHCP client daemon."""

import sys

from .daemon import main

sys.exit(main(sys.argv[1:]))
