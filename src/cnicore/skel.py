"""The plugin side of the CNI protocol.

:func:`run` is a pure function over (environment, stdin) that returns the exit
status and the bytes for stdout and stderr; :func:`main` is the thin process
entry that wires it to the real process. Tests, launchers and any resident fast
path call the same :func:`run`.

Validation order, messages and codes follow the reference skel so that a
runtime sees the same answer from our plugins as from the Go ones:

* each CNI_* variable is read in a fixed order; a present but invalid
  container ID or interface name fails at once, missing required ones are
  reported together (code 4);
* an empty CNI_COMMAND prints the plugin's about text to stderr and exits 0;
* stdin must be a JSON object (code 6) with a valid network ``name`` (code 7);
* the config's cniVersion must be one the plugin supports (code 1); CHECK
  needs 0.4.0+, GC and STATUS 1.1.0+;
* an unknown command is code 4; an unexpected exception is code 999 with the
  traceback on stderr, never on stdout.

One deliberate difference: the reference checks that CNI_NETNS is not the
plugin's own namespace only *after* running ADD/DEL; we check before, so
nothing is changed in the wrong namespace.
"""

from __future__ import annotations

import os
import sys

from cnicore import errors, wire
from cnicore._go import lookup, mismatch_text
from cnicore.errors import CNIError
from cnicore.names import validate_container_id, validate_ifname, validate_network_name
from cnicore.version import ALL, CURRENT, PluginInfo, config_version, greater_or_equal, incompatible_details

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Mapping, Protocol, Union

    from cnicore.request import Request
    from cnicore.types import AnyResult

    class Plugin(Protocol):
        """What :func:`run` drives: a plugin's info and its verbs."""

        def info(self) -> PluginInfo: ...

        def call(self, verb: str, request: Request) -> AnyResult | None: ...

    Stdin = Union[bytes, Callable[[], bytes]]

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).

__all__ = ["VERBS", "main", "run"]

VERBS = ("ADD", "CHECK", "DEL", "GC", "STATUS")
#: Per variable: the commands that require it. A present value is validated
#: only for commands that require it, like the reference.
ENV_TABLE: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("CNI_COMMAND", VERBS),
    ("CNI_CONTAINERID", ("ADD", "CHECK", "DEL")),
    ("CNI_NETNS", ("ADD", "CHECK")),
    ("CNI_IFNAME", ("ADD", "CHECK", "DEL")),
    ("CNI_ARGS", ()),
    ("CNI_PATH", VERBS),
    ("CNI_NETNS_OVERRIDE", ()),
)
#: The lowest config version each verb accepts.
MIN_VERSION = {"CHECK": "0.4.0", "GC": "1.1.0", "STATUS": "1.1.0"}


_VALIDATORS: dict[str, Callable[[str], None]] = {
    "CNI_CONTAINERID": validate_container_id,
    "CNI_IFNAME": validate_ifname,
}


def read_env(env: Mapping[str, str]) -> dict[str, str]:
    """The CNI_* variables, validated; raises the reference's CNIError."""
    command = env.get("CNI_COMMAND", "")
    values: dict[str, str] = {}
    missing: list[str] = []
    for name, required_by in ENV_TABLE:
        value = env.get(name, "")
        values[name] = value
        required = command in required_by
        if value == "":
            if required or name == "CNI_COMMAND":
                missing.append(name)
        elif required and name in _VALIDATORS:
            _VALIDATORS[name](value)
    if missing:
        raise CNIError(errors.ERR_INVALID_ENVIRONMENT_VARIABLES,
                       f"required env variables [{','.join(missing)}] missing")
    return values


def decode_config(stdin: bytes) -> dict[str, object]:
    """Decode stdin and check the network name, as the reference does before any verb."""
    try:
        # Like Go: invalid UTF-8 in strings becomes U+FFFD (and a BOM or UTF-16 is
        # a syntax error), NaN/Infinity are not JSON.
        config = wire.loads(stdin.decode("utf-8", "replace"))
    except ValueError as exc:
        from cnicore._go.jsonsyntax import syntax_error

        # Go's words for the first syntax error (ours only if Go would have none).
        raise CNIError(errors.ERR_DECODING_FAILURE,
                       f"error unmarshall network config: {syntax_error(stdin) or exc}") from None
    if config is None:  # Go decodes null into an empty struct: no name
        raise CNIError(errors.ERR_INVALID_NETWORK_CONFIG, "missing network name")
    if not isinstance(config, dict):
        raise CNIError(errors.ERR_DECODING_FAILURE,
                       f"error unmarshall network config: json: cannot unmarshal {wire.json_kind(config)} "
                       'into Go value of type struct { Name string "json:\\"name\\"" }')
    name = lookup(config, "name")  # Go decodes struct{Name string}: the key's case does not matter
    if name is None:
        name = ""
    if not isinstance(name, str):
        raise CNIError(errors.ERR_DECODING_FAILURE, "error unmarshall network config: "
                       + mismatch_text(name, "string", "", ("name",)))
    if name == "":
        raise CNIError(errors.ERR_INVALID_NETWORK_CONFIG, "missing network name")
    validate_network_name(name)
    return config


def check_version(command: str, version: str, info: PluginInfo) -> None:
    """The config version must be allowed for the command and supported by the plugin.

    Only commands with a minimum version parse it (a malformed one is a decoding
    error); for the others the reference just looks the string up in the list.
    """
    minimum = MIN_VERSION.get(command)
    try:
        if minimum is not None:
            if not greater_or_equal(version, minimum):
                raise CNIError(errors.ERR_INCOMPATIBLE_CNI_VERSION,
                               f"config version does not allow {command}")
            if not any(greater_or_equal(v, version) for v in info.supported_versions):
                raise CNIError(errors.ERR_INCOMPATIBLE_CNI_VERSION,
                               f"plugin version does not allow {command}")
    except ValueError as exc:
        raise CNIError(errors.ERR_DECODING_FAILURE, str(exc)) from None
    if version not in info.supported_versions:
        raise CNIError(errors.ERR_INCOMPATIBLE_CNI_VERSION, "incompatible CNI versions",
                       incompatible_details(version, info.supported_versions))


def netns_is_own(netns: str) -> bool:
    """True if ``netns`` is the plugin's own namespace (an unopenable path is not)."""
    from cnicore.ns import is_same_as_current

    return is_same_as_current(netns)


def _override(value: str) -> bool:
    return value.upper() == "TRUE" or value == "1"


# -- the pure core -------------------------------------------------------------

def run(plugin: Plugin, env: Mapping[str, str], stdin: Stdin,
        netns_check: Callable[[str], bool] = netns_is_own) -> tuple[int, bytes, bytes]:
    """Execute one CNI request: returns ``(exit status, stdout, stderr)``.

    ``stdin`` may be a callable so VERSION never reads it (a runtime may leave
    it open). ``netns_check`` tells whether a path is the plugin's own netns.
    """
    config: dict[str, object] | None = None
    try:
        try:
            values = read_env(env)
        except CNIError as exc:
            if exc.code == errors.ERR_INVALID_ENVIRONMENT_VARIABLES and env.get("CNI_COMMAND", "") == "":
                info = plugin.info()
                about = getattr(info, "about", "") or "CNI plugin"
                text = f"{about}\nCNI protocol versions supported: {', '.join(info.supported_versions)}\n"
                return 0, b"", text.encode()
            raise
        command = values["CNI_COMMAND"]
        if command == "VERSION":
            return 0, plugin.info().encode(), b""
        try:
            data = stdin() if callable(stdin) else stdin
        except OSError as exc:
            raise CNIError(errors.ERR_IO_FAILURE, f"error reading from stdin: {exc}") from None
        config = decode_config(data)
        if command not in VERBS:
            raise CNIError(errors.ERR_INVALID_ENVIRONMENT_VARIABLES, f"unknown CNI_COMMAND: {command}")
        version = config_version(config)
        check_version(command, version, plugin.info())
        if command in ("ADD", "DEL") and not _override(values["CNI_NETNS_OVERRIDE"]) \
                and values["CNI_NETNS"] and netns_check(values["CNI_NETNS"]):
            raise CNIError(errors.ERR_INVALID_NETNS,
                           "plugin's netns and netns from CNI_NETNS should not be the same")
        from cnicore.request import Request

        request = Request(command, container_id=values["CNI_CONTAINERID"], netns=values["CNI_NETNS"],
                          ifname=values["CNI_IFNAME"], args=values["CNI_ARGS"], path=values["CNI_PATH"],
                          netns_override=values["CNI_NETNS_OVERRIDE"], stdin=data, config=config,
                          cni_version=version, env=env)
        result = plugin.call(command, request)
        if command != "ADD":
            return 0, b"", b""
        return 0, _result_bytes(result, version), b""
    except CNIError as exc:
        return 1, _error_bytes(exc, config), b""
    except Exception as exc:  # noqa: BLE001 - every failure must become a CNI error
        import traceback

        err = CNIError(errors.ERR_INTERNAL, str(exc) or type(exc).__name__)
        return 1, _error_bytes(err, config), traceback.format_exc().encode()


def _result_bytes(result: object, version: str) -> bytes:
    from cnicore.types import ResultError, _ResultBase, result_from_json

    if result is None:
        raise CNIError(errors.ERR_INTERNAL, "plugin returned no result for ADD")
    if isinstance(result, dict):
        if not result.get("cniVersion"):
            result = dict(result, cniVersion=version)
        result = result_from_json(result)
    if not isinstance(result, _ResultBase):
        raise CNIError(errors.ERR_INTERNAL, f"plugin returned {type(result).__name__}, not a result")
    try:
        return result.convert(version).to_json()
    except ResultError as exc:
        raise CNIError(errors.ERR_INTERNAL, str(exc)) from None


def _error_version(config: dict[str, object] | None) -> str:
    version = lookup(config, "cniVersion") if config else None
    return version if isinstance(version, str) and version in ALL else CURRENT


def _error_bytes(err: CNIError, config: dict[str, object] | None) -> bytes:
    return wire.dumps_indent(err.to_dict(_error_version(config)))


# -- the process entry ---------------------------------------------------------

def main(plugin: Plugin) -> None:
    """Run ``plugin`` as this process: os.environ and stdin in, stdout/stderr and exit status out."""
    code, out, err = run(plugin, os.environ, sys.stdin.buffer.read)
    if err:
        _write_all(2, err)
    if out:
        _write_all(1, out)
    sys.exit(code)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except OSError:
            return
        view = view[written:]
