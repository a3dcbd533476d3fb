"""The extension contract of cnicore: every hook a plugin may implement.

A CNI plugin is a module (or object) with functions marked by
:func:`cnicore.plugin.hookimpl`, registered under the ``cnicore.plugins``
entry-point group with the CNI ``type`` as the entry-point name::

    [project.entry-points."cnicore.plugins"]
    my-plugin = "my_package.plugin"

How a request reaches these hooks: the runtime execs the plugin's launcher
(written by ``cnitool plugins install``), which imports only that module and
hands the request to :func:`cnicore.skel.run` with a
:class:`cnicore.host.PluginHost` holding the plugin followed by the *policy*
plugins (the IPAM dispatcher :mod:`cnicore.ipam`, the sysctl policy
:mod:`cnicore.sysctl`, then any policies baked into the launcher). The warm
server (``cnitool daemon``) runs the same code in a worker. VERSION is
answered from the plugin's own ``cni_plugin_info``. For the other commands
the host calls a hook with no implementation, or with exactly one that is
not a wrapper, directly, without importing pluggy (or this module); anything
else goes through a pluggy ``PluginManager`` built from this module. Both
ways behave as pluggy does: every implementation is checked against these
specs first (an unknown hook, or an argument its spec does not declare, is a
``pluggy.PluginValidationError`` with pluggy's message), and ``cnitool
plugins install`` refuses a plugin that fails the check.

Arguments are passed by name; an implementation may accept any subset of a
hook's arguments, in any order.

Errors: raise :class:`cnicore.errors.CNIError` with a spec error code; any
other exception becomes code 999 (internal) with the traceback on stderr.

Call order: pluggy calls the most recently registered implementation first,
so policy plugins (registered after the main plugin) see calls before it; use
``tryfirst``/``trylast`` to be explicit, and wrappers (``wrapper=True``) run
around all of them. ``firstresult`` hooks stop at the first implementation
returning something other than ``None``; the others call every
implementation and return the list of their non-``None`` results.

Every hook is listed with its signature in ``docs/HOOKS.md`` (a test checks
that list and these docstrings against the specs).
"""

from __future__ import annotations

import pluggy

from cnicore.plugin import PROJECT

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cnicore.request import Request
    from cnicore.types import AnyResult
    from cnicore.version import PluginInfo

__all__ = ["cni_add", "cni_check", "cni_del", "cni_gc", "cni_ipam", "cni_plugin_info", "cni_status",
           "cni_sysctl_check", "hookspec"]

hookspec = pluggy.HookspecMarker(PROJECT)


# -- the plugin verbs ----------------------------------------------------------

@hookspec(firstresult=True)
def cni_plugin_info() -> PluginInfo | None:
    """Return the spec versions the plugin accepts (and its about text).

    Called for VERSION, for the about text when the plugin is run by hand
    without CNI_COMMAND, and before every other command to check the config's
    ``cniVersion``. For speed the host reads it straight from the main plugin
    (never from policies) without pluggy, so it must be cheap and pure. A
    plugin that does not implement it supports every version 0.1.0–1.1.0.

    :returns: A :class:`cnicore.version.PluginInfo`, or ``None`` for the default.

    Stops at the first non-``None`` result (``firstresult``).
    """


@hookspec(firstresult=True)
def cni_add(request: Request) -> AnyResult | dict[str, object] | None:
    """Attach the container described by ``request`` to the network (ADD).

    Called once per ADD, after the environment, the config and its version
    have been validated. A chained plugin passes ``request.prev_result`` on,
    changed or not. ADD must be all-or-nothing: on failure undo what it did
    before raising.

    :param request: The :class:`cnicore.request.Request`: container ID, netns,
        interface name, CNI_ARGS, the decoded config and ``prev_result``.
    :returns: The result, in any family of :mod:`cnicore.types` (usually
        :class:`cnicore.types.Result`) or as a dict; cnicore converts it to the
        config's ``cniVersion`` and prints it.

    Stops at the first non-``None`` result (``firstresult``).
    """


@hookspec
def cni_check(request: Request) -> None:
    """Verify that the attachment still matches the config (CHECK).

    Called once per CHECK (config 0.4.0 and later); raise
    :class:`~cnicore.errors.CNIError` when the container's networking differs
    from the config or from ``request.prev_result``.

    :param request: The :class:`cnicore.request.Request`, with ``prev_result``
        set to the result of the ADD being checked.
    :returns: Nothing; return values are ignored.

    Every implementation is called.
    """


@hookspec
def cni_del(request: Request) -> None:
    """Release everything ADD created for (container ID, ifname) (DEL).

    Called once per DEL. Must succeed when things are already gone, and when
    ``request.netns`` is empty or no longer exists.

    :param request: The :class:`cnicore.request.Request`; ``netns`` may be empty.
    :returns: Nothing; return values are ignored.

    Every implementation is called.
    """


@hookspec
def cni_gc(request: Request) -> None:
    """Release resources of attachments that no longer exist (GC).

    Called once per GC (config 1.1.0 and later); keep what belongs to the
    attachments listed in ``request.config["cni.dev/valid-attachments"]`` (a
    list of ``{"containerID", "ifname"}``) and release the rest.

    :param request: The :class:`cnicore.request.Request` of the GC command.
    :returns: Nothing; return values are ignored.

    Every implementation is called.
    """


@hookspec
def cni_status(request: Request) -> None:
    """Say whether the plugin can serve ADD now (STATUS).

    Called once per STATUS (config 1.1.0 and later); raise a
    :class:`~cnicore.errors.CNIError` (code 50 plugin not available, 51
    limited connectivity, ...) when it cannot.

    :param request: The :class:`cnicore.request.Request` of the STATUS command.
    :returns: Nothing; return values are ignored.

    Every implementation is called.
    """


# -- IPAM ------------------------------------------------------------------------

@hookspec(firstresult=True)
def cni_ipam(command: str, ipam_type: str, request: Request) -> AnyResult | bool | None:
    """Run IPAM ``command`` for a main plugin.

    Called when a main plugin delegates (:func:`cnicore.ipam.exec_add` and friends) with the
    ``ipam.type`` of its config. The default implementation (in
    :mod:`cnicore.ipam`, registered ``trylast``) looks ``ipam_type`` up in
    CNI_PATH: a cnicore launcher runs in-process through its plugin's hooks,
    any other binary is exec'd with :mod:`cnicore.invoke`, so both give the
    same result. Implement it to serve IPAM another way (an embedded
    allocator, a test double over real state).

    :param command: ADD, CHECK, DEL, GC or STATUS.
    :param ipam_type: The IPAM plugin's type (``ipam.type`` of the config).
    :param request: The main plugin's :class:`cnicore.request.Request`: the
        original stdin and environment, which IPAM receives unchanged except
        CNI_COMMAND.
    :returns: The IPAM result for ADD, ``True`` for the other commands once
        handled, or ``None`` to leave the command to the next implementation.

    Stops at the first non-``None`` result (``firstresult``).
    """


# -- policy ----------------------------------------------------------------------

@hookspec
def cni_sysctl_check(key: str, value: str, path: str, request: Request | None) -> None:
    """Validate a sysctl write before any plugin performs it.

    Called by :func:`cnicore.sysctl.write` before every write; raise
    :class:`~cnicore.errors.CNIError` to veto. The default policy
    (:mod:`cnicore.sysctl`) allows only paths that resolve under
    /proc/sys/net/.

    :param key: The dotted name as configured (``net.ipv4.conf.eth0.forwarding``).
    :param value: The value about to be written.
    :param path: The file under /proc/sys that ``key`` resolves to.
    :param request: The :class:`cnicore.request.Request` doing the write, or
        ``None`` outside a request.
    :returns: Nothing; return values are ignored.

    Every implementation is called, so any policy can refuse.
    """
