"""The request a plugin hook receives: the CNI_* environment plus the decoded config.

Built by :mod:`cnicore.skel` after validation, so hook implementations can rely
on the fields the command requires being present and well-formed.
"""

from __future__ import annotations

import os

from cnicore._go import lookup
from cnicore.errors import ERR_INTERNAL, CNIError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Mapping

    from cnicore.host import PluginHost
    from cnicore.types import AnyResult, Result

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).


__all__ = [
    "Request",
]

class Request:
    """One CNI operation as seen by a plugin.

    ``config`` is the decoded stdin object and ``stdin`` its raw bytes (for
    delegating unchanged); ``env`` is the whole environment the plugin was
    started with (delegation passes it on).
    """

    __slots__ = ("command", "container_id", "netns", "ifname", "args", "path",
                 "netns_override", "stdin", "config", "cni_version", "env", "host", "_prev_result")

    def __init__(self, command: str, *, container_id: str = "", netns: str = "", ifname: str = "",
                 args: str = "", path: str = "", netns_override: str = "", stdin: bytes = b"",
                 config: dict[str, Any] | None = None, cni_version: str = "",
                 env: Mapping[str, str] | None = None) -> None:
        self.command = command
        self.container_id = container_id
        self.netns = netns
        self.ifname = ifname
        self.args = args
        self.path = path
        self.netns_override = netns_override
        self.stdin = stdin
        self.config: dict[str, Any] = config if config is not None else {}
        self.cni_version = cni_version
        self.env: Mapping[str, str] = env if env is not None else {}
        #: The :class:`cnicore.host.PluginHost` serving this request (set before hooks run),
        #: through which plugin code calls other hooks (IPAM, sysctl policy).
        self.host: PluginHost | None = None
        self._prev_result: Result | None = None

    def __repr__(self) -> str:
        return (f"Request({self.command}, container_id={self.container_id!r}, netns={self.netns!r}, "
                f"ifname={self.ifname!r}, cni_version={self.cni_version!r})")

    @property
    def paths(self) -> list[str]:
        """CNI_PATH split into directories."""
        return [p for p in self.path.split(os.pathsep) if p]

    @property
    def prev_result(self) -> Result | None:
        """``prevResult`` as the current (1.x) result model, or ``None``.

        A prevResult without ``cniVersion`` takes the config's, as the reference
        does; one that cannot be parsed or converted is an error with code 999,
        the code the reference plugins report for it.
        """
        if self._prev_result is None:
            from cnicore.types import Result, ResultError

            parsed = self.prev_result_as_sent()
            if parsed is None:
                return None
            try:
                current = parsed.convert("1.1.0")
            except ResultError as exc:
                raise CNIError(ERR_INTERNAL, f"failed to convert prevResult: {exc}") from None
            assert isinstance(current, Result)
            self._prev_result = current
        return self._prev_result

    def prev_result_as_sent(self) -> AnyResult | None:
        """``prevResult`` parsed in the config's own version family (no conversion)."""
        raw = lookup(self.config, "prevResult")
        if raw is None:
            return None
        from cnicore.types import ResultError, parse_result

        if not isinstance(raw, dict):
            raise CNIError(ERR_INTERNAL, "failed to parse prevResult: not a JSON object")
        if not raw.get("cniVersion"):
            raw = dict(raw, cniVersion=self.cni_version)
        try:
            return parse_result(raw, self.cni_version)
        except ResultError as exc:
            raise CNIError(ERR_INTERNAL, f"failed to parse prevResult: {exc}") from None

    def cni_args(self, fields: Mapping[str, Callable[[str], Any]]) -> dict[str, Any]:
        """CNI_ARGS parsed for the keys in ``fields`` (see :func:`cnicore.args.load_args`)."""
        from cnicore.args import load_args

        return load_args(self.args, fields)
