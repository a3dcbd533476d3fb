"""Former name of :mod:`cnicore.netlink` (the stdlib rtnetlink client), kept so existing imports work.

``import cnicore.rtnl`` gives the very module object :mod:`cnicore.netlink`
(one module, one set of classes: ``isinstance`` and ``except`` agree).
New code imports :mod:`cnicore.netlink`.
"""

from __future__ import annotations

import sys

from cnicore import netlink

sys.modules[__name__] = netlink
