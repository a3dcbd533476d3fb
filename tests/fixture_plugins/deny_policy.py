"""A policy plugin for tests: refuses ADD when the config says ``"cnitestDeny": true``."""

from __future__ import annotations

from cnicore.errors import ERR_INVALID_NETWORK_CONFIG, CNIError
from cnicore.plugin import hookimpl


@hookimpl(tryfirst=True)
def cni_add(request):
    if request.config.get("cnitestDeny"):
        raise CNIError(ERR_INVALID_NETWORK_CONFIG, "denied by cnitest policy", f"plugin {request.host.name}")
