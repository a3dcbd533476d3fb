"""Test helpers and pytest fixtures for CNI plugins (loaded as a pytest plugin).

Everything happens in throwaway network namespaces: a private "host"
namespace that the plugin runs in as if it were the machine's, and container
namespaces. The machine's own network is never touched, and every namespace
is removed afterwards, also when the test fails. The fixtures that make
namespaces need root; without it they skip the test (under ``CI`` they fail it).
With ``CNICORE_FAIL_ON_SKIP=1`` in the environment every skipped test fails
(xfail excepted): CI sets it, since a skipped namespace test hides what CI is for.

Installing cnicore registers this module through the ``pytest11`` entry point,
so a plugin project's tests use the fixtures without any import or conftest.

Every namespace the fixtures make is named ``<prefix>-<role>-<random>``; the
prefix is ``cnitest`` unless the pytest option ``--cni-netns-prefix PREFIX`` or
the environment variable ``CNICORE_TEST_NETNS_PREFIX`` (the option wins) names
another — letters, digits, ``_``, ``.`` and ``-``, at most 64 characters — for
example to tell two suites' namespaces apart, or to look for leftovers of one
(``ip netns list | grep ^PREFIX-``). :class:`Sandbox` and :class:`WarmServer`
made by hand take the environment variable's prefix too.

Fixtures:

* ``cni_sandbox`` — a :class:`Sandbox` (``.host``, ``.container()``).
* ``cni_netns_prefix`` — (session) the namespace prefix in effect (see above).
* ``host_netns`` / ``container_netns`` — one of each from that sandbox.
* ``cni_runner`` — ``cni_runner(plugin_or_type, name=None, path=...)`` returns a
  :class:`PluginRunner` that runs one plugin in-process through ``skel.run``
  inside the host netns (``.run(command, config, netns=...)`` for an
  :class:`Outcome`; ``.add``/``.check``/``.delete`` that raise on failure).
* ``cni_install`` — (session) ``cni_install(dir, entries=None)`` installs launchers
  of this run's kind (see ``cni_server``).
* ``cni_bin_dir`` — (session) a temporary CNI bin dir holding a launcher for
  every installed cnicore plugin (``cnitool plugins install`` into a tmp dir),
  so chained plugins, IPAM delegation and whole conflists exec the real thing.
* ``cni_server`` — (session) a :class:`WarmServer` (``cnitool daemon``) in its own
  throwaway namespace; ``CNICORE_TEST_LAUNCHERS=native`` makes ``cni_bin_dir``
  hold native launchers served by it, so a suite runs warm instead of cold.
  It serves the plugins installed in this environment; a plugin a test writes at
  run time is not the server's own code and runs cold (a server of a test's own
  takes such plugins with ``WarmServer(..., plugins=(root, entries))``).
* ``cni_conflist`` — ``cni_conflist(conflist, cni_path=None)`` returns a
  :class:`ConflistRunner`: the network list run as a runtime runs it, by
  :class:`cnicore.libcni.CNIConfig` from inside the host netns, plugins found in
  ``cni_path`` (default: ``cni_bin_dir`` only), results cached under
  ``tmp_path``. ``.add(netns)`` returns the final result as decoded JSON;
  ``.check(netns)``, ``.delete(netns)``; failures raise
  :class:`cnicore.libcni.LibcniError` with the plugin's code.

Helpers (plain functions, no fixture needed):

* :func:`run_executable` runs a launcher (or a Go plugin) as a real process
  started from inside the host namespace.
* Result assertions, for a result as decoded JSON (any spec version) or a
  :mod:`cnicore.types` object: :func:`assert_result_has_ip`,
  :func:`assert_result_has_route`, :func:`assert_result_has_interface`; and
  :func:`as_current_result` to compare anything else on the 1.x model.
* Kernel assertions inside a namespace (through :mod:`cnicore.netlink`):
  :func:`netns_routes`, :func:`assert_netns_route`,
  :func:`assert_netns_no_route`, :func:`assert_netns_address`.
* :func:`ping` — iputils ``ping`` from inside a namespace (IPv4 or IPv6),
  bounded by a deadline, failing the test with ping's own output.
* :func:`resolv_conf` — a context manager writing a resolv.conf to a temporary
  file (for plugins that report DNS from one, such as host-local's
  ``resolvConf``), removed afterwards; the ``cni_resolv_conf`` fixture makes
  them for one test.

Example, a chained plugin after bridge + host-local::

    def test_chain(cni_conflist, container_netns, tmp_path):
        net = cni_conflist({"cniVersion": "1.0.0", "name": "net", "plugins": [
            {"type": "bridge", "bridge": "br0", "isGateway": True,
             "ipam": {"type": "host-local", "dataDir": str(tmp_path / "ipam"),
                      "ranges": [[{"subnet": "10.10.0.0/24"}]]}},
            {"type": "my-plugin"}]})
        result = net.add(container_netns)
        assert_result_has_ip(result, "10.10.0.2/24", ifname="eth0")
        net.check(container_netns)
        net.delete(container_netns)
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid

from cnicore import skel
from cnicore.cli.install import install
from cnicore.errors import CNIError
from cnicore.host import PluginHost
from cnicore.libcni import CNIConfig, NetworkConfigList, RuntimeConf, conf_list_from_bytes, conf_list_from_dict
from cnicore.netlink import AF_INET, AF_INET6, Netlink
from cnicore.ns import new_netns
from cnicore.registry import PluginEntry, load
from cnicore.types import Result, Result020, Result040, result_from_json
from cnicore.version import ALL, greater_or_equal

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterator, Mapping, Sequence

    from cnicore.netlink import Route as KernelRoute
    from cnicore.ns import NetNS
    from cnicore.types import AnyResult

DEFAULT_PATH = "/opt/cni/bin:/usr/lib/cni"

__all__ = [
    "DEFAULT_PATH", "DEFAULT_NETNS_PREFIX", "NETNS_PREFIX_ENV", "netns_prefix",
    "Sandbox", "WarmServer", "Outcome", "PluginRunner", "ConflistRunner", "cni_env",
    "run_executable", "in_netns", "run_in", "launcher_kind", "plugin_environment", "ping", "resolv_conf",
    "SPEC_VERSIONS", "spec_has_chaining", "spec_has_check", "spec_has_ip_version", "spec_has_gc",
    "spec_has_status", "version_answer", "assert_plugin_valid",
    "as_current_result", "assert_result_has_interface", "assert_result_has_ip", "assert_result_has_route",
    "netns_routes", "assert_netns_route", "assert_netns_no_route", "assert_netns_address",
    "KERNEL_FEATURES", "kernel_has",
]


# -- what Go's testutils give plugin authors ---------------------------------------

#: Every spec version, oldest first (the versions a plugin's tests iterate over).
SPEC_VERSIONS: tuple[str, ...] = ALL


def spec_has_chaining(version: str) -> bool:
    """True if configs of ``version`` carry ``prevResult`` (0.3.0 and later)."""
    return greater_or_equal(version, "0.3.0")


def spec_has_check(version: str) -> bool:
    """True if ``version`` has the CHECK command (0.4.0 and later)."""
    return greater_or_equal(version, "0.4.0")


def spec_has_ip_version(version: str) -> bool:
    """True if results of ``version`` give each IP a ``version`` field (0.3.0 to 0.4.0)."""
    return version in ("0.3.0", "0.3.1", "0.4.0")


def spec_has_gc(version: str) -> bool:
    """True if ``version`` has the GC command (1.1.0 and later)."""
    return greater_or_equal(version, "1.1.0")


def spec_has_status(version: str) -> bool:
    """True if ``version`` has the STATUS command (1.1.0 and later)."""
    return greater_or_equal(version, "1.1.0")


def version_answer(plugin: Any, name: str = "plugin") -> dict[str, Any]:
    """The plugin's VERSION answer, decoded, exactly as a launcher would print it."""
    status, out, err = skel.run(PluginHost(plugin, name), {"CNI_COMMAND": "VERSION"}, b"")
    if status != 0:
        raise AssertionError(f"VERSION failed ({status}): {out!r} {err!r}")
    answer: dict[str, Any] = json.loads(out)
    return answer


def assert_plugin_valid(plugin: Any, name: str = "plugin") -> None:
    """pluggy's validation of every hook implementation against :mod:`cnicore.hookspecs`
    (names, arguments): raises ``pluggy.PluginValidationError`` with pluggy's message."""
    PluginHost(plugin, name).validate()


#: The prefix of the namespaces the fixtures make, unless configured otherwise.
DEFAULT_NETNS_PREFIX = "cnitest"
#: The environment variable that sets it (the pytest option ``--cni-netns-prefix`` wins).
NETNS_PREFIX_ENV = "CNICORE_TEST_NETNS_PREFIX"
_NETNS_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


def netns_prefix(value: str | None = None) -> str:
    """The namespace prefix in effect: ``value`` (the pytest option's), else ``$CNICORE_TEST_NETNS_PREFIX``,
    else ``cnitest``. Raises ``ValueError`` for a name ``ip netns`` could not list safely."""
    prefix = value or os.environ.get(NETNS_PREFIX_ENV) or DEFAULT_NETNS_PREFIX
    if not _NETNS_PREFIX.match(prefix):
        raise ValueError(f"invalid network namespace prefix {prefix!r}: use up to 64 letters, digits, '_', '.' "
                         "or '-', starting with a letter or digit")
    return prefix


class Sandbox:
    """A private host namespace plus any number of container namespaces, named
    ``<prefix>-host-…`` and ``<prefix>-ctr-…`` (prefix: :func:`netns_prefix` by default)."""

    def __init__(self, prefix: str | None = None) -> None:
        self.prefix = prefix or netns_prefix()
        self._made: list[NetNS] = []
        self.host = self._new("host")

    def _new(self, role: str) -> NetNS:
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


class WarmServer:
    """A ``cnitool daemon`` of this environment (or of ``python``'s), running inside its own throwaway
    network namespace (so a worker that failed to enter its caller's namespace
    could not touch the machine's; named ``<prefix>-…``, by default
    :func:`netns_prefix` ``+ "-srv"``), listening in a private 0700 directory.

    ``stop()`` ends it by PID (SIGTERM, then SIGKILL) and removes the
    namespace; it is also what leaving the ``with`` block does.

    A worker hosts only plugins its parent loaded (installed ones, found by their
    entry points): ``plugins`` adds test plugins written at run time, as
    ``(source root, entries)`` (see :func:`plugin_environment`).
    """

    def __init__(self, directory: str, workers: int = 2, timeout: float = 60.0,
                 extra_env: Mapping[str, str] | None = None, prefix: str | None = None,
                 python: str = "", extra_args: Sequence[str] = (),
                 plugins: tuple[str, Sequence[PluginEntry]] | None = None) -> None:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)
        self.socket = os.path.join(directory, "cnicore.sock")
        self.log_path = os.path.join(directory, "server.log")
        self.netns = new_netns(f"{prefix or netns_prefix() + '-srv'}-{uuid.uuid4().hex[:10]}")
        env = dict(os.environ, **(extra_env or {}))
        if plugins is not None:
            env.update(plugin_environment(os.path.join(directory, "entry-points"), *plugins))
        try:
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    ["ip", "netns", "exec", os.path.basename(self.netns.path), python or sys.executable, "-m",
                     "cnicore.cli", "daemon", "--socket", self.socket, "--workers", str(workers),
                     "--timeout", str(timeout), *extra_args],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
            self.wait_ready()
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self) -> int:
        return int(self.proc.pid)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until a worker answers a status request (or the server died).

        A socket that accepts is not enough: the first request must be answered within
        the launchers' first-answer deadline, or it runs cold — which a slow start (a
        loaded machine, a guest under TCG) made some tests see."""
        from cnicore.server import client

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"cnitool daemon exited with {self.proc.returncode}: {self.log()}")
            if os.path.exists(self.socket) and client.status(self.socket) is not None:
                return
            time.sleep(0.05)
        raise RuntimeError(f"cnitool daemon not ready after {timeout} s: {self.log()}")

    def workers(self) -> list[int]:
        """PIDs of the server's worker processes (children of the parent)."""
        try:
            with open(f"/proc/{self.pid}/task/{self.pid}/children") as fh:
                return [int(p) for p in fh.read().split()]
        except OSError:
            return []

    def served(self) -> int:
        """How many requests the stopped server reported having run (-1: no report)."""
        found = re.findall(r"stopped after serving (\d+) requests", self.log())
        return int(found[-1]) if found else -1

    def refused(self) -> list[str]:
        """The server's log lines about requests it refused (their callers ran them cold)."""
        return [line for line in self.log().splitlines() if "refused" in line]

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as fh:
                return fh.read()
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM and wait; SIGKILL if it does not stop; remove its namespace."""
        proc = getattr(self, "proc", None)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.netns is not None:
            self.netns.remove()
            self.netns = None  # type: ignore[assignment]

    def __enter__(self) -> WarmServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def plugin_environment(directory: str, root: str, entries: Sequence[PluginEntry]) -> dict[str, str]:
    """Environment for a process that should find ``entries`` (modules under ``root``) as
    installed plugins: ``PYTHONPATH`` holding ``root`` and, in ``directory``, a
    distribution's entry points naming them (kept out of this process's own path)."""
    dist = os.path.join(directory, "cnicore_test_plugins-0.dist-info")
    os.makedirs(dist, exist_ok=True)
    with open(os.path.join(dist, "METADATA"), "w") as fh:
        fh.write("Metadata-Version: 2.1\nName: cnicore-tests\nVersion: 0\n")
    with open(os.path.join(dist, "entry_points.txt"), "w") as fh:
        fh.write("[cnicore.plugins]\n" + "".join(f"{e.type} = {e.value}\n" for e in entries))
    path = [root, directory, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {"PYTHONPATH": os.pathsep.join(path)}


def launcher_kind() -> str:
    """The launchers ``cni_bin_dir`` installs: ``CNICORE_TEST_LAUNCHERS`` (``python``,
    the cold path, by default; ``native`` for native launchers to a warm server)."""
    kind = os.environ.get("CNICORE_TEST_LAUNCHERS", "python")
    if kind not in ("python", "native"):
        raise ValueError(f"CNICORE_TEST_LAUNCHERS must be python or native, not {kind!r}")
    return kind


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
        self.host_netns = host
        self.path = path
        self.plugin = plugin if hasattr(plugin, "call") and hasattr(plugin, "info") else PluginHost(plugin, name)

    def run(self, command: str, config: bytes | str | Mapping[str, Any], *, netns: NetNS | str = "",
            **env_kw: Any) -> Outcome:
        """``skel.run`` for ``command`` inside the host namespace; never raises for plugin errors."""
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


def run_executable(executable: str, command: str, config: bytes | str | Mapping[str, Any], *, host: NetNS,
                   netns: NetNS | str = "", timeout: float = 30.0, **env_kw: Any) -> Outcome:
    """Exec a plugin binary (launcher or Go plugin) from inside ``host``, as a runtime would.

    ``env_kw`` are :func:`cni_env`'s keywords (``path=`` sets CNI_PATH; by
    default the executable's own directory, then the usual ones)."""
    env_kw.setdefault("path", os.path.dirname(executable) + ":" + DEFAULT_PATH)
    env = dict(os.environ, **cni_env(command, netns=netns if isinstance(netns, str) else netns.path, **env_kw))
    env.pop("PYTHONPATH", None)

    def run() -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([executable], input=_stdin(config), env=env, capture_output=True,
                              timeout=timeout)

    proc = host.do(run)
    return Outcome(proc.returncode, proc.stdout, proc.stderr)


class ConflistRunner:
    """A network list (conflist) run as a runtime runs it.

    :class:`cnicore.libcni.CNIConfig` execs each plugin found in ``cni_path``
    from inside ``host`` (so the plugins see it as their host namespace),
    injects ``name``/``cniVersion``/``prevResult``/``runtimeConfig`` and caches
    results in ``cache_dir``, exactly as for a real runtime. The container ID
    defaults to the container namespace's name, so several containers in one
    test never collide.
    """

    def __init__(self, conflist: bytes | str | Mapping[str, Any] | NetworkConfigList, host: NetNS,
                 cni_path: str | list[str], cache_dir: str, timeout: float | None = 60.0) -> None:
        if isinstance(conflist, NetworkConfigList):
            self.conf_list = conflist
        elif isinstance(conflist, (bytes, str)):
            self.conf_list = conf_list_from_bytes(conflist)
        else:
            self.conf_list = conf_list_from_dict(conflist)
        self.host_netns = host
        self.cache_dir = cache_dir
        self.cni = CNIConfig(cni_path, cache_dir=cache_dir, timeout=timeout)

    def __repr__(self) -> str:
        return f"ConflistRunner({self.conf_list!r}, path={self.cni.path!r})"

    @property
    def name(self) -> str:
        return self.conf_list.name

    def runtime_conf(self, netns: NetNS | str, *, container_id: str = "", ifname: str = "eth0",
                     args: Mapping[str, str] | None = None,
                     capability_args: Mapping[str, Any] | None = None) -> RuntimeConf:
        """The :class:`~cnicore.libcni.RuntimeConf` for one attachment."""
        path = netns if isinstance(netns, str) else netns.path
        return RuntimeConf(container_id or os.path.basename(path) or "cnitest-ctr", path, ifname,
                           list((args or {}).items()), capability_args)

    def add(self, netns: NetNS | str, **rt_kw: Any) -> Any:
        """ADD the whole list; return the final result as decoded JSON (in the list's version)."""
        result = self.host_netns.do(self.cni.add_network_list, self.conf_list, self.runtime_conf(netns, **rt_kw))
        return json.loads(result.to_json()) if result is not None else None

    def check(self, netns: NetNS | str, **rt_kw: Any) -> None:
        """CHECK the whole list against the cached result (0.4.0+ lists)."""
        self.host_netns.do(self.cni.check_network_list, self.conf_list, self.runtime_conf(netns, **rt_kw))

    def delete(self, netns: NetNS | str, **rt_kw: Any) -> None:
        """DEL the whole list (in reverse order) and forget the cached result."""
        self.host_netns.do(self.cni.del_network_list, self.conf_list, self.runtime_conf(netns, **rt_kw))

    def status(self) -> None:
        """STATUS of every plugin (1.1.0 lists)."""
        self.host_netns.do(self.cni.get_status_network_list, self.conf_list)

    def cached_result(self, netns: NetNS | str, **rt_kw: Any) -> Any:
        """The cached result of an attachment as decoded JSON, ``None`` if there is none."""
        result = self.cni.get_network_list_cached_result(self.conf_list, self.runtime_conf(netns, **rt_kw))
        return json.loads(result.to_json()) if result is not None else None


# -- result assertions ----------------------------------------------------------

#: The machine's own network namespace, as this process started in it: helpers
#: below refuse to run anything there.
MACHINE_NETNS_INODE = os.stat("/proc/self/ns/net").st_ino


#: What :func:`kernel_has` can probe: the ``ip`` commands that make one, run in order
#: inside a throwaway network namespace (a parent link first where the kind needs one).
KERNEL_FEATURES: dict[str, tuple[str, ...]] = {
    "dummy": ("link add t0 type dummy",),
    "veth": ("link add t0 type veth peer name t1",),
    "bridge": ("link add t0 type bridge",),
    "bridge_vlan_filtering": ("link add t0 type bridge vlan_filtering 1",),
    "vlan": ("link add t0 type veth peer name t1", "link add t0.5 link t0 type vlan id 5"),
    "macvlan": ("link add t0 type veth peer name t1", "link add t2 link t0 type macvlan mode bridge"),
    "ipvlan": ("link add t0 type veth peer name t1", "link add t2 link t0 type ipvlan mode l2"),
    "vrf": ("link add t0 type vrf table 10",),
    "ifb": ("link add t0 type ifb",),
    "tap": ("tuntap add t0 mode tap",),
}
_kernel_answers: dict[str, bool] = {}


def kernel_has(kind: str) -> bool:
    """Whether the running kernel can make ``kind`` (a key of :data:`KERNEL_FEATURES`):
    tried for real in a throwaway network namespace (``unshare --net``, gone with the
    process), never in the machine's own. Needs root; the answer is cached.

    This machine's kernel lacks dummy, vlan, macvlan, ipvlan, vrf and bridge VLAN
    filtering; tests that need them live in ``tests/guest`` and run on Debian's stock
    kernel through ``scripts/guest``."""
    if kind not in _kernel_answers:
        script = " && ".join(f"ip {step}" for step in KERNEL_FEATURES[kind])
        proc = subprocess.run(["unshare", "--net", "--", "sh", "-c", script], capture_output=True,
                              stdin=subprocess.DEVNULL, timeout=60)
        _kernel_answers[kind] = proc.returncode == 0
    return _kernel_answers[kind]


def in_netns(netns: NetNS, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` inside ``netns`` (via ``NetNS.do``), refusing to run
    it if that would be the machine's own namespace."""

    def guarded() -> Any:
        if os.stat("/proc/thread-self/ns/net").st_ino == MACHINE_NETNS_INODE:
            raise AssertionError("refusing to run in the machine's own network namespace")
        return fn(*args, **kwargs)

    return netns.do(guarded)


def run_in(netns: NetNS, *argv: str, check: bool = True) -> str:
    """Run a command (``ip``, ``iptables-save``, ``nft``...) inside ``netns``; its stdout.

    With ``check`` a non-zero exit fails the test with the command's output.
    """
    proc = in_netns(netns, subprocess.run, list(argv), capture_output=True, text=True,
                    stdin=subprocess.DEVNULL)
    if check:
        assert proc.returncode == 0, (argv, proc.stdout, proc.stderr)
    return str(proc.stdout)


def ping(netns: NetNS, address: str, *, count: int = 1, timeout: float = 10.0, interface: str = "") -> str:
    """Ping ``address`` (IPv4 or IPv6) from inside ``netns`` with iputils ``ping``; return its output.

    Succeeds once ``count`` replies came back; fails the test (``AssertionError``
    with ping's output) when they did not within ``timeout`` seconds. Errors that
    can clear up meanwhile (an IPv6 address still tentative, a route not there
    yet) are retried until the deadline, so a test need not sleep first.
    ``interface`` is ping's ``-I`` (an interface name or a source address).
    """
    target = ipaddress.ip_address(address.split("%")[0])
    if count < 1 or not 0 < timeout <= 600:
        raise ValueError(f"ping: count must be >= 1 and timeout in (0, 600], not {count}, {timeout}")
    deadline = time.monotonic() + timeout
    attempts: list[str] = []
    while True:
        left = deadline - time.monotonic()
        argv = ["ping", f"-{target.version}", "-n", "-c", str(count), "-i", "0.2",
                "-w", str(max(1, math.ceil(left)))]
        if interface:
            argv += ["-I", interface]
        argv.append(address)
        try:
            proc = in_netns(netns, subprocess.run, argv, capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=max(left, 1.0) + 5.0)
        except subprocess.TimeoutExpired as exc:
            attempts.append(f"killed after {exc.timeout:.0f} s")
            break
        if proc.returncode == 0:
            return str(proc.stdout)
        attempts.append(f"exit {proc.returncode}: {(proc.stdout + proc.stderr).strip()}")
        if proc.returncode == 1 or time.monotonic() + 0.1 >= deadline:
            break  # 1: it ran to the deadline without enough replies
        time.sleep(0.1)
    raise AssertionError(f"ping {address} from {netns.path}: not {count} repl{'y' if count == 1 else 'ies'} "
                         f"within {timeout:g} s ({len(attempts)} attempt(s)); last: {attempts[-1]}")


@contextlib.contextmanager
def resolv_conf(nameservers: Sequence[str] = (), *, domain: str = "", search: Sequence[str] = (),
                options: Sequence[str] = (), text: str | None = None, directory: str | None = None) -> Iterator[str]:
    """A resolv.conf in a temporary file for the ``with`` block; yields its path, removes it afterwards.

    Written from ``nameservers``, ``domain``, ``search`` and ``options`` in the
    usual syntax, or ``text`` verbatim; in ``directory`` (default: the system's
    temporary directory). For plugins that report DNS settings read from a file,
    such as host-local's ``resolvConf``.
    """
    if text is None:
        lines = [f"nameserver {server}" for server in nameservers]
        lines += [f"domain {domain}"] if domain else []
        lines += [f"search {' '.join(search)}"] if search else []
        lines += [f"options {' '.join(options)}"] if options else []
        text = "".join(line + "\n" for line in lines)
    fd, path = tempfile.mkstemp(prefix="cnitest-resolv-", suffix=".conf", dir=directory)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(path, 0o644)  # as /etc/resolv.conf: readable by a plugin of another user
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def as_current_result(result: AnyResult | Mapping[str, Any] | bytes | str) -> Result:
    """Any result (decoded JSON, JSON text or a :mod:`cnicore.types` object, any
    spec version) as the current 1.x model, for version-independent assertions."""
    if isinstance(result, (Result, Result020, Result040)):
        parsed: AnyResult = result
    else:
        parsed = result_from_json(result if isinstance(result, (bytes, str)) else dict(result))
    current = parsed.convert("1.1.0")
    assert isinstance(current, Result)
    return current


def _show(result: Result) -> str:
    return json.dumps(result.to_dict(), indent=1, sort_keys=True)


def assert_result_has_interface(result: AnyResult | Mapping[str, Any], name: str, *,
                                sandbox: str | None = None, mac: str | None = None) -> int:
    """Assert the result lists interface ``name`` (with ``sandbox``/``mac`` when given);
    return its index in ``interfaces``."""
    current = as_current_result(result)
    for index, iface in enumerate(current.interfaces):
        if iface.name != name:
            continue
        if sandbox is not None and iface.sandbox != sandbox:
            raise AssertionError(f"interface {name!r} has sandbox {iface.sandbox!r}, not {sandbox!r}")
        if mac is not None and iface.mac.lower() != mac.lower():
            raise AssertionError(f"interface {name!r} has MAC {iface.mac!r}, not {mac!r}")
        return index
    raise AssertionError(f"no interface {name!r} in the result:\n{_show(current)}")


def assert_result_has_ip(result: AnyResult | Mapping[str, Any], cidr: str, *, gateway: str | None = None,
                         ifname: str | None = None) -> None:
    """Assert the result holds address ``cidr`` (compared as a value: ``10.0.0.2/24``),
    with ``gateway`` and on interface ``ifname`` when given. Works for every spec
    version (0.2.0 results have no interfaces, so ``ifname`` cannot be checked there)."""
    current = as_current_result(result)
    wanted = ipaddress.ip_interface(cidr)
    for ip in current.ips:
        if ipaddress.ip_interface(ip.address) != wanted:
            continue
        if gateway is not None and (ip.gateway and ipaddress.ip_address(ip.gateway)) != (
                gateway and ipaddress.ip_address(gateway)):
            raise AssertionError(f"address {cidr} has gateway {ip.gateway!r}, not {gateway!r}")
        if ifname is not None:
            index = ip.interface
            actual = current.interfaces[index].name if index is not None and 0 <= index < len(
                current.interfaces) else None
            if actual != ifname:
                raise AssertionError(f"address {cidr} is on interface {actual!r}, not {ifname!r}")
        return
    raise AssertionError(f"no address {cidr} in the result:\n{_show(current)}")


def assert_result_has_route(result: AnyResult | Mapping[str, Any], dst: str, gw: str | None = None) -> None:
    """Assert the result holds a route to ``dst`` (a CIDR, compared as a network),
    via ``gw`` when given (``""`` asserts a route without gateway)."""
    current = as_current_result(result)
    wanted = ipaddress.ip_network(dst, strict=False)
    for route in current.routes:
        if ipaddress.ip_network(route.dst, strict=False) != wanted:
            continue
        if gw is None or (route.gw and ipaddress.ip_address(route.gw)) == (gw and ipaddress.ip_address(gw)):
            return
    via = "" if gw is None else f" via {gw or '(no gateway)'}"
    raise AssertionError(f"no route to {dst}{via} in the result:\n{_show(current)}")


# -- kernel assertions ---------------------------------------------------------

def netns_routes(netns: NetNS, family: int = 0, *, table: int | None = 254) -> list[KernelRoute]:
    """The routes in ``netns`` (``family`` 0: IPv4 and IPv6; ``table`` None: every table),
    read with :mod:`cnicore.netlink` inside the namespace."""

    def read() -> list[KernelRoute]:
        with Netlink() as rtnl:
            families = (family,) if family else (AF_INET, AF_INET6)
            return [r for f in families for r in rtnl.routes(f, table=table)]

    return netns.do(read)


def _ifindex(netns: NetNS, ifname: str) -> int:
    def read() -> int:
        with Netlink() as rtnl:
            return rtnl.link(ifname).index

    return netns.do(read)


def _matching_routes(netns: NetNS, dst: str, gw: str | None, dev: str | None) -> tuple[list[Any], list[Any]]:
    wanted = ipaddress.ip_network(dst, strict=False)
    family = AF_INET6 if wanted.version == 6 else AF_INET
    every = netns_routes(netns, family)
    index = _ifindex(netns, dev) if dev is not None else None
    found = [r for r in every if ipaddress.ip_network(r.dst, strict=False) == wanted
             and (gw is None or (r.gw and ipaddress.ip_address(r.gw)) == (gw and ipaddress.ip_address(gw)))
             and (index is None or r.ifindex == index)]
    return found, every


def assert_netns_route(netns: NetNS, dst: str, *, gw: str | None = None, dev: str | None = None) -> KernelRoute:
    """Assert ``netns`` has a main-table route to ``dst`` (via ``gw``, out of ``dev``
    when given; ``gw=""`` means on-link); return it."""
    found, every = _matching_routes(netns, dst, gw, dev)
    if not found:
        raise AssertionError(f"no route to {dst} (gw={gw!r}, dev={dev!r}) in {netns.path}; routes: {every!r}")
    return found[0]


def assert_netns_no_route(netns: NetNS, dst: str) -> None:
    """Assert ``netns`` has no main-table route to ``dst``."""
    found, _every = _matching_routes(netns, dst, None, None)
    if found:
        raise AssertionError(f"unexpected route(s) to {dst} in {netns.path}: {found!r}")


def assert_netns_address(netns: NetNS, ifname: str, cidr: str) -> None:
    """Assert interface ``ifname`` in ``netns`` has address ``cidr`` (compared as a value)."""
    wanted = ipaddress.ip_interface(cidr)

    def read() -> list[str]:
        with Netlink() as rtnl:
            return rtnl.addresses(ifname, AF_INET6 if wanted.version == 6 else AF_INET)

    present = netns.do(read)
    if wanted not in [ipaddress.ip_interface(a) for a in present]:
        raise AssertionError(f"{ifname} in {netns.path} has {present!r}, not {cidr}")


# -- pytest fixtures ------------------------------------------------------------

try:
    import pytest
except ImportError:  # pragma: no cover - the helpers above work without pytest
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(item: Any, call: Any) -> Iterator[None]:
        """With ``CNICORE_FAIL_ON_SKIP=1`` (set it in CI) a skipped test fails: a skipped
        namespace or interop test hides exactly what CI is for. xfail is left alone."""
        outcome = yield
        report = outcome.get_result()  # type: ignore[attr-defined]
        if report.skipped and os.environ.get("CNICORE_FAIL_ON_SKIP") == "1" and not hasattr(report, "wasxfail"):
            report.outcome = "failed"
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            report.longrepr = f"skipped in CI, which must run every test: {reason}"

    @pytest.hookimpl(hookwrapper=True)
    def pytest_make_collect_report(collector: Any) -> Iterator[None]:
        """The same rule for a whole module skipped at collection time."""
        outcome = yield
        report = outcome.get_result()  # type: ignore[attr-defined]
        if report.skipped and os.environ.get("CNICORE_FAIL_ON_SKIP") == "1":
            report.outcome = "failed"
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            report.longrepr = f"module skipped in CI, which must run every test: {reason}"

    def pytest_addoption(parser: Any) -> None:
        group = parser.getgroup("cnicore")
        group.addoption("--cni-netns-prefix", dest="cni_netns_prefix", default=None, metavar="PREFIX",
                        help=f"prefix of the network namespaces cnicore's fixtures make (default: "
                             f"${NETNS_PREFIX_ENV}, else {DEFAULT_NETNS_PREFIX!r})")

    def pytest_configure(config: Any) -> None:
        """Refuse a bad namespace prefix before any test runs."""
        try:
            netns_prefix(config.getoption("cni_netns_prefix", None))
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None

    def _require_root() -> None:
        if os.geteuid() != 0:
            if os.environ.get("CI"):
                pytest.fail("network-namespace tests need root, and CI must run them")
            pytest.skip("needs root to create network namespaces")

    @pytest.fixture(scope="session")
    def cni_netns_prefix(pytestconfig: Any) -> str:
        """(session) The prefix of the namespaces the fixtures make: ``--cni-netns-prefix``,
        else ``$CNICORE_TEST_NETNS_PREFIX``, else ``cnitest``."""
        return netns_prefix(pytestconfig.getoption("cni_netns_prefix", None))

    @pytest.fixture
    def cni_sandbox(cni_netns_prefix: str) -> Iterator[Sandbox]:
        """A private host netns plus container netns on demand; all removed afterwards."""
        _require_root()
        with Sandbox(cni_netns_prefix) as sandbox:
            yield sandbox

    @pytest.fixture
    def cni_resolv_conf(tmp_path: Any) -> Iterator[Any]:
        """``cni_resolv_conf(nameservers, domain=..., search=..., options=..., text=...)`` -> the path of
        a resolv.conf written under ``tmp_path`` (see :func:`resolv_conf`); removed after the test."""
        with contextlib.ExitStack() as stack:

            def make(nameservers: Sequence[str] = (), **kw: Any) -> str:
                return stack.enter_context(resolv_conf(nameservers, directory=str(tmp_path), **kw))

            yield make

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
                name = name or plugin
                plugin = load(plugin)
            label = name or str(getattr(plugin, "__name__", "plugin"))
            return PluginRunner(plugin, label, cni_sandbox.host, path)

        return make

    @pytest.fixture(scope="session")
    def cni_server(tmp_path_factory: Any, cni_netns_prefix: str) -> Iterator[WarmServer]:
        """(session) A warm server of this environment in its own throwaway namespace."""
        _require_root()
        server = WarmServer(str(tmp_path_factory.mktemp("cni-server")), prefix=f"{cni_netns_prefix}-srv")
        try:
            yield server
        finally:
            server.stop()
        # A plugin written by a test at run time is not the server's own code: its requests
        # run cold by design (cnicore.server._code). Any other refusal is a failure.
        refused = [line for line in server.refused() if "plugin code is not the server's own" not in line]
        assert not refused, f"the warm server refused requests (they ran cold): {refused}"
        if launcher_kind() == "native":
            assert server.served() > 0, f"native launchers never reached the server: {server.log()}"

    @pytest.fixture(scope="session")
    def cni_install(request: Any) -> Any:
        """``cni_install(directory, entries=None, policies=())``: :func:`cnicore.cli.install.install`
        with this run's launcher kind — Python launchers (cold), or with
        ``CNICORE_TEST_LAUNCHERS=native`` native launchers served by ``cni_server``."""
        kind = launcher_kind()
        socket = request.getfixturevalue("cni_server").socket if kind == "native" else ""

        def run(directory: str, entries: Any = None, policies: Any = ()) -> Any:
            return install(str(directory), entries, policies=policies, kind=kind, socket=socket)

        return run

    @pytest.fixture(scope="session")
    def cni_bin_dir(tmp_path_factory: Any, cni_install: Any) -> str:
        """A temporary CNI bin dir with a launcher for every installed cnicore plugin
        (what ``cnitool plugins install DIR`` writes), made once per session, of the
        kind ``cni_install`` writes."""
        path = tmp_path_factory.mktemp("cni-bin")
        report = cni_install(str(path))
        if report.skipped:
            raise RuntimeError(f"cni_bin_dir: launchers not written: {report.skipped}")
        return str(path)

    @pytest.fixture
    def cni_conflist(cni_sandbox: Sandbox, tmp_path: Any, request: Any) -> Any:
        """``cni_conflist(conflist, cni_path=None, cache_dir=None)`` -> :class:`ConflistRunner`.

        ``conflist`` is a dict, JSON text or a parsed ``NetworkConfigList``;
        ``cni_path`` (a list or ``os.pathsep``-joined) defaults to ``cni_bin_dir``;
        results are cached under ``tmp_path`` unless ``cache_dir`` says otherwise.
        """

        def make(conflist: Any, cni_path: str | list[str] | None = None, cache_dir: str | None = None,
                 timeout: float | None = 60.0) -> ConflistRunner:
            if cni_path is None:
                cni_path = [request.getfixturevalue("cni_bin_dir")]
            if cache_dir is None:
                cache_dir = str(tmp_path / "cni-cache")
            return ConflistRunner(conflist, cni_sandbox.host, cni_path, cache_dir, timeout)

        return make
