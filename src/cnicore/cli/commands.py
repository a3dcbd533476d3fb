"""``cnitool``: a thin click CLI over the cnicore library.

Each command parses options, calls one library function and formats its
answer: a short table where a person reads, JSON with ``--json`` where a
program does.
"""

from __future__ import annotations

import json
import os
import sys

import click

from cnicore import __version__, ns, registry
from cnicore.cli import cnitool, netverbs
from cnicore.cli.install import LauncherError, install
from cnicore.cli.ipam import ipam, print_table
from cnicore.cli.scaffold import KINDS as SCAFFOLD_KINDS
from cnicore.cli.scaffold import ScaffoldError
from cnicore.cli.scaffold import new_plugin as scaffold
from cnicore.launchers import DEFAULT_DIR, DEFAULT_SOCKET
from cnicore.libcni import load_conflist
from cnicore.server import ServerError, serve
from cnicore.server._native import compiler


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cnitool")
@click.option("-i", "--ifname", "root_ifname", default=None, metavar="TEXT",
              help="Interface name for the network commands (as after the command).")
def main(root_ifname: str | None) -> None:
    """Run CNI network operations and manage cnicore plugins.

    The network commands (add, check, del, gc, status) behave like the
    reference Go cnitool: NETCONFPATH (default /etc/cni/net.d) holds the
    network configs, CNI_PATH the plugin directories, CNI_ARGS and CAP_ARGS
    the extra arguments, CNI_IFNAME the interface (default eth0); the
    container ID is derived from the namespace path. Errors go to stderr with
    exit status 1.
    """


# -- the reference cnitool's commands (their work: cnicore.cli.netverbs) ---------------------

def _cni() -> object:
    return netverbs.cni()


#: The reference cnitool's network commands: (name, summary, example) for their help.
NETWORK_COMMANDS = [
    ("add", "Add the network's interface to a network namespace; prints the result.",
     "NETCONFPATH=./net.d CNI_PATH=/opt/cni/bin cnitool add mynet /var/run/netns/ctr1"),
    ("check", "Check the network's interface in a network namespace.",
     "cnitool check mynet /var/run/netns/ctr1"),
    ("del", "Delete the network's interface from a network namespace.",
     "cnitool del mynet /var/run/netns/ctr1"),
    ("gc", "Garbage-collect the network: DEL every cached attachment, then GC the plugins.",
     "cnitool gc mynet /var/run/netns/ctr1"),
    ("status", "Ask the network's plugins whether they are ready (CNI 1.1.0).",
     "cnitool status mynet /var/run/netns/ctr1"),
]


def _network_command(name: str, summary: str, example: str) -> None:
    """Register one network command; :func:`cnicore.cli.netverbs.run_verb` does its work
    (:mod:`cnicore.cli.cnitool` calls that directly, without click, for the common forms)."""
    @main.command(name, help=f"{summary}\n\n\b\nExample:\n  {example}")
    @click.argument("network")
    @click.argument("netns")
    @click.option("-i", "--ifname", default=None,
                  help="Interface name (defaults to env var CNI_IFNAME or 'eth0').")
    def command(network: str, netns: str, ifname: str | None) -> None:
        root_ifname = click.get_current_context().find_root().params.get("root_ifname")
        netverbs.run_verb(name, network, netns, ifname or root_ifname)


for _name, _summary, _example in NETWORK_COMMANDS:
    _network_command(_name, _summary, _example)


# -- beyond the reference -----------------------------------------------------------

@main.command("validate")
@click.argument("network")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a summary.")
def validate(network: str, as_json: bool) -> None:
    """Check that every plugin of NETWORK is in CNI_PATH and supports its version.

    \b
    Example:
      NETCONFPATH=./net.d CNI_PATH=/opt/cni/bin cnitool validate mynet
    """
    try:
        conf_list = load_conflist(None, network)
        caps = _cni().validate_network_list(conf_list)  # type: ignore[attr-defined]
    except Exception as exc:  # noqa: BLE001
        raise click.ClickException(str(exc)) from None
    plugins = [p.type for p in conf_list.plugins]
    if as_json:
        click.echo(json.dumps({"network": network, "cniVersion": conf_list.cni_version,
                               "plugins": plugins, "capabilities": caps}, indent=2))
        return
    click.echo(f"{network}: valid (cniVersion {conf_list.cni_version}; plugins {', '.join(plugins)}; "
               f"capabilities {', '.join(caps) or 'none'})")


@main.command("version")
@click.argument("plugin_type")
@click.option("--json", "as_json", is_flag=True, help="Print the plugin's VERSION answer as JSON.")
def version(plugin_type: str, as_json: bool) -> None:
    """Show which CNI versions the plugin PLUGIN_TYPE (found in CNI_PATH) supports.

    \b
    Example:
      CNI_PATH=/opt/cni/bin:/usr/lib/cni cnitool version bridge
    """
    try:
        info = _cni().get_version_info(plugin_type)  # type: ignore[attr-defined]
    except Exception as exc:  # noqa: BLE001
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps({"cniVersion": info.cni_version,
                               "supportedVersions": list(info.supported_versions)}))
        return
    click.echo(f"{plugin_type}: speaks CNI {info.cni_version}; accepts {', '.join(info.supported_versions)}")


@main.group()
def netns() -> None:
    """Create, list and remove named network namespaces for experiments."""


@netns.command("add")
@click.argument("name")
def netns_add(name: str) -> None:
    """Create the namespace NAME, persisted under /var/run/netns (like `ip netns add`).

    \b
    Example:
      cnitool netns add ctr1 && cnitool add mynet /var/run/netns/ctr1
    """
    try:
        created = ns.new_netns(name)
    except ns.NetNSError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(created.path)
    created.close()


@netns.command("del")
@click.argument("name")
def netns_del(name: str) -> None:
    """Remove the namespace NAME (its interfaces go with it).

    \b
    Example:
      cnitool del mynet /var/run/netns/ctr1 && cnitool netns del ctr1
    """
    try:
        ns.get_netns(os.path.join(ns.NETNS_RUN_DIR, name)).remove()
    except ns.NetNSError as exc:
        raise click.ClickException(str(exc)) from None


@netns.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def netns_list(as_json: bool) -> None:
    """List the named namespaces under /var/run/netns."""
    names = ns.list_netns()
    if as_json:
        click.echo(json.dumps(names))
    elif names:
        click.echo("\n".join(names))


@main.group()
def plugins() -> None:
    """List installed cnicore plugins and install their launchers."""


@plugins.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def plugins_list(as_json: bool) -> None:
    """Show every plugin registered under the ``cnicore.plugins`` entry points.

    \b
    Example:
      cnitool plugins list
      cnitool plugins list --json
    """
    try:
        entries = registry.discover()
    except registry.RegistryError as exc:
        raise click.ClickException(str(exc)) from None
    rows: list[dict[str, object]] = []
    for entry in entries.values():
        try:
            versions = list(entry.info().supported_versions)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not hide the others
            versions = [f"<cannot load: {exc}>"]  # one item, whatever commas the reason has
        rows.append({"type": entry.type, "distribution": entry.distribution, "version": entry.version,
                     "module": entry.value, "supportedVersions": versions})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        row["supportedVersions"] = ", ".join(row["supportedVersions"])  # type: ignore[arg-type]
    keys = ["type", "distribution", "version", "supportedVersions"]
    print_table(["TYPE", "DISTRIBUTION", "VERSION", "CNI VERSIONS"], [[row[k] for k in keys] for row in rows])


@plugins.command("install")
@click.argument("directory", default=DEFAULT_DIR, type=click.Path(file_okay=False))
@click.option("--policy", "policies", multiple=True, metavar="MODULE",
              help="Register a policy plugin module in every launcher (repeatable).")
@click.option("--native/--python", "native", default=None,
              help="Compiled launchers that forward to the warm server (default when a C compiler "
                   "is present), or Python scripts.")
@click.option("--socket", "socket_path", default=None, metavar="PATH",
              help="The warm server's socket (default /run/cnicore/cnicore.sock).")
@click.option("--json", "as_json", is_flag=True, help="Print what was done as JSON.")
def plugins_install(directory: str, policies: tuple[str, ...], native: bool | None,
                    socket_path: str | None, as_json: bool) -> None:
    """Write an executable launcher per plugin into DIRECTORY (default /opt/cni/bin).

    Re-running adds new plugins, rewrites changed launchers and removes the
    ones it wrote for plugins that are gone. Files it did not write (the Go
    plugins, say) are never touched. Every plugin is checked against the
    hookspecs first: one pluggy refuses is skipped with pluggy's message, and
    the exit status is then 1.

    A native launcher hands each exec to `cnitool daemon` on SOCKET and runs
    the plugin's Python launcher (kept in DIRECTORY/.cnicore-python) itself
    when no server answers.

    \b
    Example:
      cnitool plugins install /opt/cni/bin
      CNI_PATH=/opt/cni/bin CNI_COMMAND=VERSION /opt/cni/bin/loopback
    """
    if native is None:
        native = compiler() is not None
    try:
        report = install(directory, policies=policies, kind="native" if native else "python",
                         socket=socket_path or DEFAULT_SOCKET)
    except (registry.RegistryError, LauncherError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
        sys.exit(1 if report.refused else 0)
    for label, names in (("added", report.added), ("updated", report.updated),
                         ("removed", report.removed), ("unchanged", report.unchanged)):
        if names:
            click.echo(f"{label:>9}: {', '.join(names)}")
    for name, why in report.skipped.items():
        click.echo(f"  skipped: {name} ({why})", err=True)
    if report.refused:
        sys.exit(1)


@main.group("daemon", invoke_without_command=True)
@click.option("--socket", "socket_path", default=None, metavar="PATH",
              help="Listen here (default /run/cnicore/cnicore.sock; ignored under systemd "
                   "socket activation).")
@click.option("--workers", type=click.IntRange(1, 256), default=4, show_default=True,
              help="Idle pre-forked workers kept ready.")
@click.option("--max-workers", type=click.IntRange(1, 1024), default=None,
              help="Most requests served at once; more wait (default 16 x workers, at least 64).")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=300.0, show_default=True,
              help="Seconds a request may run before its worker is killed.")
@click.option("--max-requests", type=click.IntRange(1, 100000), default=200, show_default=True,
              help="Requests one worker serves at most (1: a fresh worker for every request).")
@click.option("--idle-exit", type=click.FloatRange(min=0.1), default=30.0, show_default=True,
              help="Seconds a worker that has served waits for another request before it exits.")
@click.pass_context
def daemon(ctx: click.Context, socket_path: str | None, workers: int, max_workers: int | None, timeout: float,
           max_requests: int, idle_exit: float) -> None:
    """Serve plugin execs warm until SIGTERM: the warm server behind native launchers.

    Imports cnicore and every installed plugin once, keeps WORKERS idle
    pre-forked workers, and runs each request in a worker that enters the
    caller's mount and network namespaces. A worker serves further requests
    only after plugins that declare WARM_REUSE, and only when it returns
    exactly to its own state; otherwise each request has a fresh worker.
    Root only.

    Each request leaves one line on stderr (caller pid, plugin, command,
    warm or refused and why, duration); `cnitool daemon status` shows the
    counters.

    \b
    Example:
      cnitool daemon --workers 4 &
      cnitool plugins install /opt/cni/bin
      cnitool daemon status
    """
    if ctx.invoked_subcommand is not None:
        ctx.obj = socket_path
        return
    try:
        serve(socket_path or DEFAULT_SOCKET, workers=workers, max_workers=max_workers, timeout=timeout,
              max_requests=max_requests, idle_exit=idle_exit, run_command=cnitool.run_served)
    except ServerError as exc:
        raise click.ClickException(str(exc)) from None


@daemon.command("status")
@click.option("--socket", "socket_path", default=None, metavar="PATH",
              help="The server's socket (default: the one given to daemon, else /run/cnicore/cnicore.sock).")
@click.option("--json", "as_json", is_flag=True, help="Print the counters as JSON.")
@click.pass_context
def daemon_status(ctx: click.Context, socket_path: str | None, as_json: bool) -> None:
    """Show a running server's workers and counters: requests served warm,
    refused by reason (their callers ran them cold), restarts.

    Asked of the server itself, by the server's own user; exit status 1 when
    no server answers within the launchers' first-answer deadline.
    """
    from cnicore.server import client

    path = socket_path or ctx.obj or DEFAULT_SOCKET
    answer = client.status(path)
    if answer is None:
        raise click.ClickException(f"no answer from a warm server on {path}")
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    click.echo(f"server pid {answer.get('pid')} on {path}")
    click.echo(f"  workers: {answer.get('workers')} ({answer.get('busy')} busy, {answer.get('idle')} idle)")
    click.echo(f"   served: {answer.get('served')}")
    refused = answer.get("refused") or {}
    assert isinstance(refused, dict)
    click.echo(f"  refused: {sum(refused.values())}")
    for reason, count in sorted(refused.items()):
        click.echo(f"           {count} {reason}")
    click.echo(f" restarts: {answer.get('restarts')}")


@main.command("new-plugin")
@click.argument("name")
@click.option("--dest", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="The project directory to create (default ./cni-plugin-NAME); "
                   "it must not exist or be empty.")
@click.option("--kind", type=click.Choice(list(SCAFFOLD_KINDS)), default="chained", show_default=True,
              help="chained: runs after a plugin that made the interface (adds routes); "
                   "main: makes the interface (a veth pair, IPAM delegated, like ptp); "
                   "ipam: hands out addresses (its own store and GC).")
def new_plugin(name: str, dest: str | None, kind: str) -> None:
    """Create a plugin project for the CNI type NAME from one of cnicore's examples.

    Each example is a complete, tested plugin of its --kind; the copy is
    named cni-plugin-NAME (distribution), cni_plugin_NAME (package, '-' as
    '_') and NAME (the CNI type).

    \b
    Example:
      cnitool new-plugin my-ptp --kind main && cd cni-plugin-my-ptp
      pip install -e '.[test]' && sudo python -m pytest
      sudo cnitool plugins install /opt/cni/bin
    """
    try:
        path = scaffold(name, dest, kind=kind)
    except (ScaffoldError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"created {path}")
    click.echo(f"next: cd {path} && pip install -e '.[test]' && python -m pytest "
               "(as root for the namespace tests); see its README.md")


main.add_command(ipam)  # cluster-ipam's commands, in their own module
