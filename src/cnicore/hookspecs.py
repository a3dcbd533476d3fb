"""The extension contract of cnicore: every hook a plugin may implement.

A CNI plugin is a module (or object) with functions marked by
:func:`cnicore.plugin.hookimpl`, registered under the ``cnicore.plugins``
entry-point group with the CNI ``type`` as the entry-point name::

    [project.entry-points."cnicore.plugins"]
    my-plugin = "my_package.plugin"

When a runtime execs the plugin, its launcher builds a pluggy
``PluginManager`` holding that one plugin module plus the *policy* plugins
(the default IPAM dispatcher and sysctl policy, and any policies baked into
the launcher) and calls the hook for the command. Hook arguments are passed
by name; an implementation may accept any subset of them.

Errors: raise :class:`cnicore.errors.CNIError` with a spec error code; any
other exception becomes code 999 (internal) with the traceback on stderr.

Ordering: pluggy calls the most recently registered implementation first, so
policy plugins (registered after the main plugin) see calls before it; use
``tryfirst``/``trylast`` to be explicit. ``firstresult`` hooks stop at the first
implementation returning something other than ``None``.
"""

from __future__ import annotations

import pluggy

from cnicore.plugin import PROJECT

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnicore.request import Request
    from cnicore.types import AnyResult
    from cnicore.version import PluginInfo

hookspec = pluggy.HookspecMarker(PROJECT)


# -- the plugin verbs ----------------------------------------------------------

@hookspec(firstresult=True)
def cni_plugin_info() -> PluginInfo | None:
    """The spec versions the plugin accepts, answered to VERSION.

    Returns a :class:`cnicore.version.PluginInfo` (its ``about`` text is printed
    when the plugin is run by hand without CNI_COMMAND). ``firstresult``.

    For speed, launchers read this straight from the main plugin module
    without building a PluginManager, so it must be a cheap, pure function.
    A plugin that does not implement it supports every version 0.1.0–1.1.0.
    """


@hookspec(firstresult=True)
def cni_add(request: Request) -> AnyResult | dict[str, object] | None:
    """ADD: attach the container described by ``request`` to the network.

    ``request`` is a :class:`cnicore.request.Request` whose container ID,
    netns, interface name and config are already validated. Return the result
    (any family of :mod:`cnicore.types`, usually :class:`cnicore.types.Result`);
    cnicore converts it to the config's ``cniVersion`` and prints it. A chained
    plugin passes ``request.prev_result`` on, changed or not. ``firstresult``:
    the first implementation returning a result wins.

    ADD must be all-or-nothing: on failure undo what it did before raising.
    """


@hookspec
def cni_check(request: Request) -> None:
    """CHECK (config 0.4.0+): verify the attachment still matches the config and
    ``request.prev_result``; raise :class:`~cnicore.errors.CNIError` if not.
    Every implementation runs; the return value is ignored."""


@hookspec
def cni_del(request: Request) -> None:
    """DEL: release everything ADD created for (container ID, ifname).

    Must succeed when things are already gone, and when ``request.netns`` is
    empty or no longer exists. Every implementation runs; return ignored.
    """


@hookspec
def cni_gc(request: Request) -> None:
    """GC (config 1.1.0+): release resources of attachments that are not in
    ``request.config["cni.dev/valid-attachments"]`` (a list of
    ``{"containerID", "ifname"}``). Every implementation runs."""


@hookspec
def cni_status(request: Request) -> None:
    """STATUS (config 1.1.0+): raise a CNIError (code 50 plugin not available,
    51 limited connectivity, ...) if the plugin cannot serve ADD now.
    Every implementation runs."""


# -- IPAM ------------------------------------------------------------------------

@hookspec(firstresult=True)
def cni_ipam(command: str, ipam_type: str, request: Request) -> AnyResult | bool | None:
    """Run IPAM ``command`` (ADD, CHECK, DEL, GC or STATUS) for a main plugin.

    Main plugins call it through :func:`cnicore.ipam.run_ipam` with the
    ``ipam.type`` of their config; ``request`` carries the original stdin and
    environment, which IPAM receives unchanged except CNI_COMMAND.

    Returns the IPAM result for ADD and ``True`` for the other commands once
    handled. ``firstresult``. The default implementation (registered
    ``trylast``) looks ``ipam_type`` up in CNI_PATH: a cnicore launcher runs
    in-process through its plugin's hooks, any other binary is exec'd with
    :mod:`cnicore.invoke`, so both give the same result. Implement it to serve
    IPAM another way (an embedded allocator, a test double over real state).
    """


# -- policy ----------------------------------------------------------------------

@hookspec
def cni_sysctl_check(key: str, value: str, path: str, request: Request | None) -> None:
    """Validate a sysctl write before any plugin performs it.

    ``key`` is the dotted name as configured (``net.ipv4.conf.eth0.forwarding``),
    ``path`` the file under /proc/sys it resolves to, ``request`` the operation
    doing the write. Raise :class:`~cnicore.errors.CNIError` to veto; every
    implementation runs, so any policy can refuse. The default policy allows
    only paths that resolve under /proc/sys/net/.
    """
