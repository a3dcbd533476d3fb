"""The errors libcni raises, all :class:`~cnicore.errors.CNIError` subclasses.

A runtime usually catches one base class and reports ``code`` and ``str()``;
the subclasses exist so it can also tell *what* went wrong (a bad file, a
missing network, a failing plugin, an unusable cache) without parsing text.
Messages follow the reference's wording where it has one, so logs read the
same whichever libcni a node runs.
"""

from __future__ import annotations

from cnicore.errors import (
    ERR_INCOMPATIBLE_CNI_VERSION,
    ERR_INVALID_NETWORK_CONFIG,
    ERR_IO_FAILURE,
    ERR_UNKNOWN,
    CNIError,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Sequence

__all__ = ["ConfigError", "NotFoundError", "NoConfigsFoundError", "CheckNotSupportedError",
           "CacheError", "LibcniError", "MultiError"]


class ConfigError(CNIError):
    """A network configuration that cannot be read or parsed.

    ``path`` names the offending file (empty when parsing bytes), and is put
    in front of the message: with dozens of files in a conf dir, "no name"
    alone does not tell an operator which one to fix. (A plugin refusing
    its config is another error, :class:`cnicore._go.json.NetConfError`:
    code 999, as the reference plugins report it.)
    """

    def __init__(self, msg: str, path: str = "", code: int = ERR_INVALID_NETWORK_CONFIG) -> None:
        self.path = path
        super().__init__(code, f"{path}: {msg}" if path else msg)


class NotFoundError(ConfigError):
    """No configuration in ``dir`` has the requested network name."""

    def __init__(self, dir: str, name: str) -> None:
        self.dir = dir
        self.name = name
        super().__init__(f'no net configuration with name "{name}" in {dir}')


class NoConfigsFoundError(NotFoundError):
    """``dir`` holds no configuration files at all (or does not exist).

    A subclass of :class:`NotFoundError` because to a caller asking for one
    network both mean "that network is not configured here".
    """

    def __init__(self, dir: str, name: str = "") -> None:
        self.dir = dir
        self.name = name
        ConfigError.__init__(self, f"no net configurations found in {dir}")


class CheckNotSupportedError(CNIError):
    """CHECK asked of a configuration older than 0.4.0, which has no CHECK."""

    def __init__(self, cni_version: str) -> None:
        self.cni_version = cni_version
        super().__init__(ERR_INCOMPATIBLE_CNI_VERSION,
                         f'configuration version "{cni_version}" does not support the CHECK command')


class CacheError(CNIError):
    """The result cache could not be written, read or understood."""

    def __init__(self, msg: str, code: int = ERR_IO_FAILURE, details: str = "") -> None:
        super().__init__(code, msg, details)


class LibcniError(CNIError):
    """A plugin failed during one operation on a network.

    ``code`` and ``details`` are the plugin's own, so a runtime can act on
    them (e.g. retry on 11, "try again later"); the message says which plugin
    and which operation, followed by the plugin's message. ``cause`` is the
    original error.
    """

    def __init__(self, cause: CNIError, operation: str, network: str = "", plugin: str = "",
                 plugin_name: str = "", prefix: str = "") -> None:
        self.cause = cause
        self.operation = operation
        self.network = network
        self.plugin = plugin
        self.plugin_name = plugin_name
        if not prefix:
            desc = f'type="{plugin}"' + (f' name="{plugin_name}"' if plugin_name else "")
            prefix = f"plugin {desc} failed ({operation})"
        super().__init__(cause.code, f"{prefix}: {cause.msg}", cause.details)


class MultiError(CNIError):
    """Several independent failures (GC, validation), all kept in ``errors``.

    The code is the first error's; the message lists every error, one per
    line, like Go's ``errors.Join``.
    """

    def __init__(self, errors: Sequence[CNIError]) -> None:
        self.errors = list(errors)
        code = self.errors[0].code if self.errors else ERR_UNKNOWN
        super().__init__(code, "\n".join(str(err) for err in self.errors))
