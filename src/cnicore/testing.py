"""Test helpers and pytest fixtures for CNI plugins (loaded as a pytest plugin).

Everything happens in throwaway network namespaces: a private "host"
namespace that the plugin runs in as if it were the machine's, and container
namespaces. The machine's own network is never touched, and every namespace
is removed afterwards, also when the test fails.

Fixtures:

* ``cni_sandbox`` — a :class:`Sandbox` (``.host``, ``.container()``).
* ``host_netns`` / ``container_netns`` — one of each from that sandbox.
* ``cni_runner`` — ``cni_runner(plugin_or_type)`` returns a :class:`PluginRunner`
  that runs the plugin in-process through ``skel.run`` inside the host netns.

:func:`run_executable` runs a launcher (or a Go plugin) as a real process
started from inside the host namespace.
"""

from __future__ import annotations

import json
import os

from cnicore.errors import CNIError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterator, Mapping

    from cnicore.ns import NetNS

DEFAULT_PATH = "/opt/cni/bin:/usr/lib/cni"


class Sandbox:
    """A private host namespace plus any number of container namespaces."""

    def __init__(self, prefix: str = "cnitest") -> None:
        self.prefix = prefix
        self._made: list[NetNS] = []
        self.host = self._new("host")

    def _new(self, role: str) -> NetNS:
        import uuid

        from cnicore.ns import new_netns

        netns = new_netns(f"{self.prefix}-{role}-{uuid.uuid4().hex[:10]}")
        self._made.append(netns)
        return netns

    def container(self) -> NetNS:
        """A new, empty container namespace (only ``lo``, down)."""
        return self._new("ctr")

    def cleanup(self) -> None:
        """Remove every namespace this sandbox made (idempotent)."""
        errors = []
        while self._made:
            netns = self._made.pop()
            try:
                netns.remove()
            except Exception as exc:  # noqa: BLE001 - remove the rest anyway
                errors.append(exc)
        if errors:
            raise errors[0]

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


class Outcome:
    """What one plugin run produced."""

    __slots__ = ("code", "stdout", "stderr")

    def __init__(self, code: int, stdout: bytes, stderr: bytes) -> None:
        self.code = code
        self.stdout = stdout
        self.stderr = stderr

    def __repr__(self) -> str:
        return f"Outcome(code={self.code}, stdout={self.stdout[:300]!r}, stderr={self.stderr[-300:]!r})"

    @property
    def json(self) -> Any:
        """stdout decoded (``None`` when empty)."""
        return json.loads(self.stdout) if self.stdout else None

    @property
    def error(self) -> CNIError | None:
        """The error object a failed run printed."""
        return CNIError.from_dict(self.json) if self.code != 0 else None

    def ok(self) -> Outcome:
        """Raise the plugin's error (with its stderr) unless it succeeded."""
        if self.code != 0:
            err = self.error or CNIError(0, "no error object")
            raise AssertionError(f"plugin failed (exit {self.code}): {err!r}\nstderr: {self.stderr.decode()}")
        return self


def cni_env(command: str, *, container_id: str = "cnitest-ctr", netns: str = "", ifname: str = "eth0",
            args: str = "", path: str = DEFAULT_PATH, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A CNI environment for one request (empty values are left out, as a runtime would)."""
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": container_id, "CNI_NETNS": netns,
           "CNI_IFNAME": ifname, "CNI_ARGS": args, "CNI_PATH": path}
    env = {k: v for k, v in env.items() if v}
    if extra:
        env.update(extra)
    return env


def _stdin(config: bytes | str | Mapping[str, Any]) -> bytes:
    if isinstance(config, bytes):
        return config
    if isinstance(config, str):
        return config.encode()
    return json.dumps(config).encode()


class PluginRunner:
    """Runs one plugin in-process, with the sandbox's host namespace as its own."""

    def __init__(self, plugin: Any, name: str, host: NetNS, path: str = DEFAULT_PATH) -> None:
        from cnicore.host import PluginHost

        self.host_netns = host
        self.path = path
        self.plugin = plugin if hasattr(plugin, "call") and hasattr(plugin, "info") else PluginHost(plugin, name)

    def run(self, command: str, config: bytes | str | Mapping[str, Any], *, netns: NetNS | str = "",
            **env_kw: Any) -> Outcome:
        """``skel.run`` for ``command`` inside the host namespace; never raises for plugin errors."""
        from cnicore import skel

        env_kw.setdefault("path", self.path)
        env = cni_env(command, netns=netns if isinstance(netns, str) else netns.path, **env_kw)
        data = _stdin(config)
        code, out, err = self.host_netns.do(skel.run, self.plugin, dict(os.environ, **env), data)
        return Outcome(code, out, err)

    def add(self, config: Any, netns: NetNS | str, **env_kw: Any) -> Any:
        """ADD and return the printed result (decoded JSON); assertion error on failure."""
        return self.run("ADD", config, netns=netns, **env_kw).ok().json

    def check(self, config: Any, netns: NetNS | str, **env_kw: Any) -> None:
        self.run("CHECK", config, netns=netns, **env_kw).ok()

    def delete(self, config: Any, netns: NetNS | str = "", **env_kw: Any) -> None:
        self.run("DEL", config, netns=netns, **env_kw).ok()


def run_executable(path: str, command: str, config: bytes | str | Mapping[str, Any], *, host: NetNS,
                   netns: NetNS | str = "", timeout: float = 30.0, **env_kw: Any) -> Outcome:
    """Exec a plugin binary (launcher or Go plugin) from inside ``host``, as a runtime would."""
    import subprocess

    env_kw.setdefault("path", os.path.dirname(path) + ":" + DEFAULT_PATH)
    env = dict(os.environ, **cni_env(command, netns=netns if isinstance(netns, str) else netns.path, **env_kw))
    env.pop("PYTHONPATH", None)

    def run() -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([path], input=_stdin(config), env=env, capture_output=True, timeout=timeout)

    proc = host.do(run)
    return Outcome(proc.returncode, proc.stdout, proc.stderr)


# -- pytest fixtures ------------------------------------------------------------

try:
    import pytest
except ImportError:  # pragma: no cover - the helpers above work without pytest
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    def _require_root() -> None:
        if os.geteuid() != 0:
            if os.environ.get("CI"):
                pytest.fail("network-namespace tests need root, and CI must run them")
            pytest.skip("needs root to create network namespaces")

    @pytest.fixture
    def cni_sandbox() -> Iterator[Sandbox]:
        """A private host netns plus container netns on demand; all removed afterwards."""
        _require_root()
        with Sandbox() as sandbox:
            yield sandbox

    @pytest.fixture
    def host_netns(cni_sandbox: Sandbox) -> NetNS:
        """The sandbox's private "host" namespace (plugins run here)."""
        return cni_sandbox.host

    @pytest.fixture
    def container_netns(cni_sandbox: Sandbox) -> NetNS:
        """A fresh container namespace."""
        return cni_sandbox.container()

    @pytest.fixture
    def cni_runner(cni_sandbox: Sandbox) -> Any:
        """``cni_runner(plugin_module_or_type, path=...)`` -> :class:`PluginRunner`."""

        def make(plugin: Any, name: str | None = None, path: str = DEFAULT_PATH) -> PluginRunner:
            if isinstance(plugin, str):
                from cnicore.registry import load

                name = name or plugin
                plugin = load(plugin)
            return PluginRunner(plugin, name or getattr(plugin, "__name__", "plugin"), cni_sandbox.host, path)

        return make
