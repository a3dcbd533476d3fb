"""The runtime side of one plugin exec: find the binary, build its environment,
run it, and turn what it prints into a result or a :class:`CNIError`.

Behaviour follows the reference's ``pkg/invoke``. Plugins that delegate to IPAM
import this module on every exec — also when the IPAM plugin is served
in-process and nothing is exec'd — so ``subprocess`` and ``signal`` (which
builds its enums at import, ~1 ms) are imported only when a process is
spawned or its exit explained; :mod:`cnicore.types` only when a result has to
be parsed.
"""

from __future__ import annotations

import errno
import os
import sys
import time

from cnicore import wire
from cnicore.errors import ERR_DECODING_FAILURE, ERR_INTERNAL, ERR_TRY_AGAIN_LATER, CNIError
from cnicore.version import CURRENT, PluginInfo, decode_config_version
from cnicore.wire import go_quote

TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    import threading
    from typing import Any, Mapping

    from cnicore.launchers import LauncherHeader
    from cnicore.types import AnyResult

__all__ = [
    "DEFAULT_TIMEOUT", "TEXT_FILE_BUSY_DELAY", "TEXT_FILE_BUSY_RETRIES",
    "PluginNotFoundError", "PluginError", "PluginTimeoutError", "PluginCancelledError",
    "find_in_path", "split_path", "Args", "DelegateArgs", "exec_plugin",
    "fixup_result_version", "exec_plugin_with_result", "exec_plugin_without_result",
    "get_version_info", "delegate_add", "delegate_check", "delegate_del",
    "delegate_gc", "delegate_status",
]

#: Seconds a plugin may run before it is killed (``None`` disables the limit).
DEFAULT_TIMEOUT: float = 60.0

#: Retries (after the first attempt) when exec fails with ETXTBSY, i.e. the
#: binary is still open for writing because it is being installed right now.
TEXT_FILE_BUSY_RETRIES: int = 5
#: Seconds between those retries; read at call time so tests can shorten it.
TEXT_FILE_BUSY_DELAY: float = 1.0

#: How often a running plugin is checked for cancellation.
POLL_INTERVAL: float = 0.05
#: After a kill, how long to keep reading the pipes before giving up on
#: descendants that escaped the plugin's process group and still hold them.
KILL_DRAIN_TIMEOUT: float = 1.0

# Put each plugin into its own process group so a timeout or cancellation
# kills whatever helpers it forked too; otherwise a surviving grandchild keeps
# our stdout pipe open and the read never ends.
_NEW_GROUP: dict[str, Any] = (
    {"process_group": 0} if sys.version_info >= (3, 11) else {"start_new_session": True})


class _DefaultSink:
    """Marker for "forward to whatever ``sys.stderr`` is at call time"."""

    def __repr__(self) -> str:
        return "<sys.stderr>"


DEFAULT_STDERR = _DefaultSink()


# -- errors ---------------------------------------------------------------------

class PluginNotFoundError(CNIError):
    """The plugin binary is not in any CNI_PATH directory.

    The reference returns a plain error here; a plugin whose delegate lookup
    fails prints it with the internal-error code, so that is the code we use.
    """

    def __init__(self, msg: str) -> None:
        super().__init__(ERR_INTERNAL, msg)


class PluginError(CNIError):
    """A plugin exec failed; carries what the plugin printed for diagnostics."""

    def __init__(self, code: int, msg: str, details: str = "", *, plugin_path: str = "",
                 stdout: bytes = b"", stderr: bytes = b"",
                 returncode: int | None = None) -> None:
        super().__init__(code, msg, details)
        self.plugin_path = plugin_path
        self.stdout = stdout
        self.stderr = stderr
        self.returncode = returncode


class PluginTimeoutError(PluginError):
    """The plugin ran longer than its timeout and was killed."""


class PluginCancelledError(PluginError):
    """The caller cancelled the exec; the plugin was killed."""




def _go_lower(text: str) -> str:
    """libc's "Text file busy" as Go prints it ("text file busy"); acronyms kept."""
    if len(text) > 1 and text[0].isupper() and text[1].islower():
        return text[0].lower() + text[1:]
    return text


def _exit_text(returncode: int) -> str:
    """What Go's ``ExitError.Error()`` says: ``exit status N`` or ``signal: killed``."""
    if returncode >= 0:
        return f"exit status {returncode}"
    signum = -returncode
    import signal

    name = signal.strsignal(signum) if signum < 32 else None
    return f"signal: {_go_lower(name)}" if name else f"signal: signal {signum}"


def _seconds(value: float) -> str:
    return f"{value:g}s"


# -- finding plugins --------------------------------------------------------------

def split_path(value: str) -> list[str]:
    """Split a CNI_PATH-style list like Go's ``filepath.SplitList`` ("" -> [])."""
    return value.split(os.pathsep) if value else []


def find_in_path(plugin: str, paths: list[str]) -> str:
    """The first ``<dir>/<plugin>`` that is an executable regular file.

    A plugin name is a bare file name; anything with a separator could escape
    the configured directories, so it is refused.
    """
    if not plugin:
        raise PluginNotFoundError("no plugin name provided")
    if os.sep in plugin or (os.altsep and os.altsep in plugin):
        raise PluginNotFoundError(f"invalid plugin name: {plugin}")
    if not paths:
        raise PluginNotFoundError("no paths provided")
    for directory in paths:
        candidate = os.path.join(directory, plugin)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise PluginNotFoundError(
        f"failed to find plugin {go_quote(plugin)} in path [{' '.join(paths)}]")


# -- environments -----------------------------------------------------------------

class Args:
    """Explicit CNI_* arguments for a runtime's exec of a plugin.

    Every CNI_* variable is set, even when empty, so values inherited from the
    runtime's own environment can never leak into the plugin.
    """

    __slots__ = ("command", "container_id", "netns", "ifname", "plugin_args",
                 "plugin_args_str", "path")

    def __init__(self, command: str, container_id: str = "", netns: str = "",
                 ifname: str = "", plugin_args: list[tuple[str, str]] | None = None,
                 plugin_args_str: str = "", path: str = "") -> None:
        self.command = command
        self.container_id = container_id
        self.netns = netns
        self.ifname = ifname
        self.plugin_args = list(plugin_args or [])
        self.plugin_args_str = plugin_args_str
        self.path = path

    def __repr__(self) -> str:
        return (f"Args(command={self.command!r}, container_id={self.container_id!r}, "
                f"netns={self.netns!r}, ifname={self.ifname!r}, "
                f"cni_args={self.cni_args()!r}, path={self.path!r})")

    def cni_args(self) -> str:
        """CNI_ARGS: the raw string if given, else ``K=V;K=V`` from the pairs."""
        if self.plugin_args_str:
            return self.plugin_args_str
        return ";".join(f"{key}={value}" for key, value in self.plugin_args)

    def as_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """``base`` (default ``os.environ``) with the CNI_* variables overridden."""
        env = dict(os.environ if base is None else base)
        env["CNI_COMMAND"] = self.command
        env["CNI_CONTAINERID"] = self.container_id
        env["CNI_NETNS"] = self.netns
        env["CNI_ARGS"] = self.cni_args()
        env["CNI_IFNAME"] = self.ifname
        env["CNI_PATH"] = self.path
        return env


class DelegateArgs:
    """Arguments for a plugin calling a delegate: the delegate sees the
    caller's whole environment (container, netns, ifname...), only the verb
    may differ."""

    __slots__ = ("command",)

    def __init__(self, command: str) -> None:
        self.command = command

    def __repr__(self) -> str:
        return f"DelegateArgs({self.command!r})"

    def as_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """``base`` (default ``os.environ``) with CNI_COMMAND replaced."""
        env = dict(os.environ if base is None else base)
        env["CNI_COMMAND"] = self.command
        return env


# -- running a plugin ---------------------------------------------------------------

def _spawn(plugin_path: str, env: Mapping[str, str], deadline: float | None,
           timeout: float | None, cancel: threading.Event | None,
           executable: str | None = None) -> subprocess.Popen[bytes]:
    """Start the plugin (``executable`` in its place when given, with the same argv, as a
    native launcher execs its Python fallback), retrying while its binary is busy being written."""
    import subprocess  # only code that really execs pays for it (~3 ms)

    attempt = 0
    while True:
        if cancel is not None and cancel.is_set():
            raise PluginCancelledError(ERR_INTERNAL, f"plugin {plugin_path} cancelled",
                                       plugin_path=plugin_path)
        try:
            return subprocess.Popen(
                [plugin_path], executable=executable, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, env=dict(env), close_fds=True, **_NEW_GROUP)
        except OSError as exc:
            busy = exc.errno == errno.ETXTBSY
            if not busy or attempt >= TEXT_FILE_BUSY_RETRIES:
                reason = _go_lower(exc.strerror or str(exc))
                raise PluginError(
                    0, f"netplugin failed with no error message: fork/exec {plugin_path}: {reason}",
                    plugin_path=plugin_path) from None
        attempt += 1
        delay = TEXT_FILE_BUSY_DELAY
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PluginTimeoutError(
                    ERR_INTERNAL, f"plugin {plugin_path} timed out after "
                    f"{_seconds(timeout or 0)} (text file busy)", plugin_path=plugin_path)
            delay = min(delay, remaining)
        if cancel is not None:
            cancel.wait(delay)
        else:
            time.sleep(delay)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the plugin's process group, then the plugin itself."""
    if proc.returncode is not None:
        return
    # Not reaped yet, so the pid (and the group id equal to it) cannot have
    # been reused.
    try:
        import signal

        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        proc.kill()
    except OSError:
        pass


def _reap(proc: subprocess.Popen[bytes]) -> None:
    """Close our pipe ends and wait, so no zombie is left behind."""
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            try:
                pipe.close()
            except OSError:
                pass
    proc.wait()


def _drain(proc: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
    """Collect what a killed plugin printed, without hanging on escaped children."""
    import subprocess

    try:
        out, err = proc.communicate(timeout=KILL_DRAIN_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        out, err = exc.stdout or b"", exc.stderr or b""
        _reap(proc)
    return out or b"", err or b""


def _collect(proc: subprocess.Popen[bytes], stdin: bytes, deadline: float | None,
             cancel: threading.Event | None) -> tuple[bytes, bytes, str]:
    """Feed stdin, read stdout/stderr; returns them and "" or the kill reason."""
    import subprocess

    if deadline is None and cancel is None:
        out, err = proc.communicate(stdin)
        return out, err, ""
    pending: bytes | None = stdin  # communicate() takes input only on its first call
    while True:
        wait = POLL_INTERVAL if cancel is not None else None
        if deadline is not None:
            remaining = max(deadline - time.monotonic(), 0.0)
            wait = remaining if wait is None else min(wait, remaining)
        try:
            out, err = proc.communicate(pending, timeout=wait)
            return out, err, ""
        except subprocess.TimeoutExpired:
            pending = None
        if cancel is not None and cancel.is_set():
            reason = "cancelled"
            break
        if deadline is not None and time.monotonic() >= deadline:
            reason = "timeout"
            break
    _kill(proc)
    out, err = _drain(proc)
    return out, err, reason


def _forward_stderr(data: bytes, sink: Any) -> None:
    """Pass a successful plugin's stderr on; informational only, so failures are ignored."""
    if not data or sink is None:
        return
    if sink is DEFAULT_STDERR:
        sink = sys.stderr
        if sink is None:
            return
    try:
        buffer = getattr(sink, "buffer", None)
        if buffer is not None:
            sink.flush()
            buffer.write(data)
            buffer.flush()
            return
        try:
            sink.write(data)
        except TypeError:
            sink.write(data.decode("utf-8", "replace"))
    except (OSError, ValueError):
        pass


def _failure(plugin_path: str, returncode: int, stdout: bytes, stderr: bytes) -> PluginError:
    """The error a failed plugin reported, or the reference's fallback text."""
    status = _exit_text(returncode)
    code, msg, details = 0, "", ""
    if not stdout:
        if not stderr:
            msg = f"netplugin failed with no error message: {status}"
        else:
            msg = f"netplugin failed: {go_quote(stderr)}: {status}"
    else:
        try:
            obj = wire.loads(stdout)
            # Go decodes "null" into an empty error rather than failing.
            parsed = CNIError.from_dict({} if obj is None else obj)
            code, msg, details = parsed.code, parsed.msg, parsed.details
        except ValueError as exc:
            from cnicore._go.jsonsyntax import syntax_error

            msg = (f"netplugin failed but error parsing its diagnostic message "
                   f"{go_quote(stdout)}: {syntax_error(stdout) or exc}")
    return PluginError(code, msg, details, plugin_path=plugin_path, stdout=stdout,
                       stderr=stderr, returncode=returncode)


def exec_plugin(plugin_path: str, stdin: bytes, env: Mapping[str, str],
                timeout: float | None = DEFAULT_TIMEOUT, stderr_sink: Any = DEFAULT_STDERR,
                cancel: threading.Event | None = None) -> bytes:
    """Run one plugin binary (no shell) with exactly ``env`` and ``stdin``.

    Returns its stdout on exit status 0, after forwarding its stderr to
    ``stderr_sink`` (default: ``sys.stderr`` at call time; ``None`` discards).
    Raises :class:`PluginError` with the plugin's own error object when it
    fails, :class:`PluginTimeoutError` / :class:`PluginCancelledError` when it
    had to be killed. The process is always reaped.
    """
    if isinstance(stdin, str):
        stdin = stdin.encode()
    deadline = None if timeout is None else time.monotonic() + timeout
    from cnicore.launchers import read_header

    header = read_header(plugin_path)
    warm = _warm(header, plugin_path, stdin, env, timeout, cancel)
    if warm is not None:
        returncode, stdout, stderr, reason = warm
    else:
        proc = _spawn(plugin_path, env, deadline, timeout, cancel, _cold_executable(header))
        try:
            stdout, stderr, reason = _collect(proc, stdin, deadline, cancel)
        except BaseException:
            # KeyboardInterrupt and friends: never leave the plugin running.
            _kill(proc)
            _reap(proc)
            raise
        returncode = proc.returncode
    return _finish(plugin_path, returncode, stdout, stderr, reason, timeout, stderr_sink)


def _finish(plugin_path: str, returncode: int, stdout: bytes, stderr: bytes, reason: str,
            timeout: float | None, stderr_sink: Any) -> bytes:
    """stdout of a plugin that succeeded (its stderr forwarded), else the error it earned."""
    if reason == "timeout":
        raise PluginTimeoutError(
            ERR_INTERNAL, f"plugin {plugin_path} timed out after {_seconds(timeout or 0)} "
            "and was killed", plugin_path=plugin_path, stdout=stdout, stderr=stderr,
            returncode=returncode)
    if reason == "cancelled":
        raise PluginCancelledError(
            ERR_INTERNAL, f"plugin {plugin_path} cancelled", plugin_path=plugin_path,
            stdout=stdout, stderr=stderr, returncode=returncode)
    if returncode != 0:
        raise _failure(plugin_path, returncode, stdout, stderr)
    _forward_stderr(stderr, stderr_sink)
    return stdout


#: False in a warm server's worker: a cnicore plugin it runs is served in-process there,
#: never sent back to the server as another request.
use_warm_server = True


def _warm(header: LauncherHeader | None, plugin_path: str, stdin: bytes, env: Mapping[str, str],
          timeout: float | None, cancel: threading.Event | None) -> tuple[int, bytes, bytes, str] | None:
    """The plugin run by the warm server when ``header`` (the plugin's, if it is a
    cnicore launcher) names a running one: ``(status, stdout, stderr, kill reason)``;
    None to exec it instead."""
    if header is None or not header.socket or not use_warm_server:
        return None
    from cnicore.server import client

    try:
        done = client.call(header, plugin_path, stdin, env, timeout, cancel)
    except client.Cancelled as exc:
        return -9, b"", b"", exc.reason
    except client.ServerLost as exc:
        raise PluginError(ERR_TRY_AGAIN_LATER, f"plugin {plugin_path}: {exc}",
                          plugin_path=plugin_path) from None
    return None if done is None else (*done, "")


def _cold_executable(header: LauncherHeader | None) -> str | None:
    """A native launcher's Python fallback when its server gave no first answer to this
    process (the launcher would only wait for it again), else None: exec the plugin."""
    if header is None or not header.native or not header.socket:
        return None
    from cnicore.server import client

    return header.file if header.socket in client._unresponsive else None


def serve_or_exec(plugin_path: str, stdin: bytes, env: Mapping[str, str],
                  timeout: float | None = DEFAULT_TIMEOUT, stderr_sink: Any = DEFAULT_STDERR,
                  cancel: threading.Event | None = None, in_process: bool = False) -> bytes:
    """:func:`exec_plugin` (the warm server first, when the launcher names a running
    one), or with ``in_process`` and a cnicore launcher of this interpreter that no
    server takes, its plugin served here (:mod:`cnicore.inprocess`): same stdout, same
    errors (:func:`_failure`), stderr forwarded the same way; no timeout."""
    if in_process:
        from cnicore.launchers import read_header

        header = read_header(plugin_path)
        if header is not None and header.runs_here():
            warm = _warm(header, plugin_path, stdin, env, timeout, cancel)
            if warm is None:
                from cnicore import inprocess

                warm = (*inprocess.run(header, env, stdin, capture_stderr=True), "")
            return _finish(plugin_path, *warm, timeout, stderr_sink)
    return exec_plugin(plugin_path, stdin, env, timeout, stderr_sink, cancel)


# -- results ----------------------------------------------------------------------

def fixup_result_version(netconf: bytes, result: bytes) -> tuple[str, dict[str, Any]]:
    """The result's version and the decoded result with ``cniVersion`` set.

    Plugins must answer in the config's version, but older ones leave
    ``cniVersion`` out; like the reference we then assume the config's version
    rather than the spec's literal 0.1.0.
    """
    conf_version = decode_config_version(netconf)
    # The reference returns plain errors here (a plugin reports them as 999), in Go's words.
    try:
        raw = wire.loads(result)
    except ValueError as exc:
        from cnicore._go.jsonsyntax import syntax_error

        raise CNIError(ERR_INTERNAL, f"failed to unmarshal raw result: {syntax_error(result) or exc}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise CNIError(ERR_INTERNAL, f"failed to unmarshal raw result: json: cannot unmarshal "
                                     f"{wire.json_kind(raw)} into Go value of type map[string]interface {{}}")
    own = raw.get("cniVersion")
    if isinstance(own, str) and own:
        return own, raw
    raw["cniVersion"] = conf_version
    return conf_version, raw


def exec_plugin_with_result(plugin_path: str, netconf: bytes, args: Args | DelegateArgs,
                            timeout: float | None = DEFAULT_TIMEOUT,
                            env_base: Mapping[str, str] | None = None,
                            stderr_sink: Any = DEFAULT_STDERR,
                            cancel: threading.Event | None = None, in_process: bool = False) -> AnyResult:
    """Exec a command that returns a result (ADD) and parse it in its version."""
    stdout = serve_or_exec(plugin_path, netconf, args.as_env(env_base), timeout,
                           stderr_sink, cancel, in_process)
    version, raw = fixup_result_version(netconf, stdout)
    from cnicore.types import ResultError, parse_result

    try:
        return parse_result(raw, version)
    except ResultError as exc:
        raise CNIError(ERR_DECODING_FAILURE, str(exc)) from None


def exec_plugin_without_result(plugin_path: str, netconf: bytes, args: Args | DelegateArgs,
                               timeout: float | None = DEFAULT_TIMEOUT,
                               env_base: Mapping[str, str] | None = None,
                               stderr_sink: Any = DEFAULT_STDERR,
                               cancel: threading.Event | None = None, in_process: bool = False) -> None:
    """Exec a command whose stdout is ignored (CHECK, DEL, GC, STATUS)."""
    serve_or_exec(plugin_path, netconf, args.as_env(env_base), timeout, stderr_sink, cancel, in_process)


def get_version_info(plugin_path: str, timeout: float | None = DEFAULT_TIMEOUT,
                     env_base: Mapping[str, str] | None = None,
                     cancel: threading.Event | None = None) -> PluginInfo:
    """Ask a plugin which spec versions it supports.

    Plugins older than the VERSION command reject it and so speak only 0.1.0.
    """
    # Dummy values keep plugins built on an old skel from rejecting the call.
    args = Args(command="VERSION", netns="dummy", ifname="dummy", path="dummy")
    stdin = wire.dumps_compact({"cniVersion": CURRENT})
    try:
        stdout = exec_plugin(plugin_path, stdin, args.as_env(env_base), timeout,
                             DEFAULT_STDERR, cancel)
    except CNIError as exc:
        if str(exc) == "unknown CNI_COMMAND: VERSION":
            return PluginInfo(("0.1.0",))
        raise
    try:
        return PluginInfo.decode(stdout)
    except ValueError as exc:
        raise CNIError(ERR_DECODING_FAILURE, str(exc)) from None


# -- delegation -------------------------------------------------------------------

def _delegate_path(plugin: str, env: Mapping[str, str] | None) -> tuple[str, Mapping[str, str]]:
    environ = os.environ if env is None else env
    return find_in_path(plugin, split_path(environ.get("CNI_PATH", ""))), environ


def delegate_add(plugin: str, netconf: bytes, env: Mapping[str, str] | None = None,
                 timeout: float | None = DEFAULT_TIMEOUT,
                 cancel: threading.Event | None = None) -> AnyResult:
    """Run a delegate (typically IPAM) ADD with this plugin's own environment."""
    path, environ = _delegate_path(plugin, env)
    return exec_plugin_with_result(path, netconf, DelegateArgs("ADD"), timeout, environ,
                                   cancel=cancel)


def _delegate_no_result(verb: str, plugin: str, netconf: bytes,
                        env: Mapping[str, str] | None, timeout: float | None,
                        cancel: threading.Event | None) -> None:
    path, environ = _delegate_path(plugin, env)
    exec_plugin_without_result(path, netconf, DelegateArgs(verb), timeout, environ,
                               cancel=cancel)


def delegate_check(plugin: str, netconf: bytes, env: Mapping[str, str] | None = None,
                   timeout: float | None = DEFAULT_TIMEOUT,
                   cancel: threading.Event | None = None) -> None:
    """Run a delegate CHECK."""
    _delegate_no_result("CHECK", plugin, netconf, env, timeout, cancel)


def delegate_del(plugin: str, netconf: bytes, env: Mapping[str, str] | None = None,
                 timeout: float | None = DEFAULT_TIMEOUT,
                 cancel: threading.Event | None = None) -> None:
    """Run a delegate DEL."""
    _delegate_no_result("DEL", plugin, netconf, env, timeout, cancel)


def delegate_gc(plugin: str, netconf: bytes, env: Mapping[str, str] | None = None,
                timeout: float | None = DEFAULT_TIMEOUT,
                cancel: threading.Event | None = None) -> None:
    """Run a delegate GC."""
    _delegate_no_result("GC", plugin, netconf, env, timeout, cancel)


def delegate_status(plugin: str, netconf: bytes, env: Mapping[str, str] | None = None,
                    timeout: float | None = DEFAULT_TIMEOUT,
                    cancel: threading.Event | None = None) -> None:
    """Run a delegate STATUS."""
    _delegate_no_result("STATUS", plugin, netconf, env, timeout, cancel)
