"""``cnitool ipam``: operate cluster-ipam pools (usage, reaping a node that is gone).

Networks are found as for the other network commands: by name in
NETCONFPATH (default /etc/cni/net.d). Nothing here runs on its own:
reaping a node is always an operator's explicit command.
"""

from __future__ import annotations

import json

import click

from cni_plugins_builtin.cluster_ipam import inventory
from cni_plugins_builtin.cluster_ipam.config import load_config
from cni_plugins_builtin.cluster_ipam.etcd import EtcdRequestError, EtcdUnavailable
from cnicore.errors import CNIError
from cnicore.libcni import LibcniError, default_conf_dir, load_conflist

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, TypeVar

    from cnicore.libcni import NetworkConfigList

    _T = TypeVar("_T")


@click.group()
def ipam() -> None:
    """Inspect and repair cluster-ipam address pools (kept in etcd)."""


def _operate(fn: Callable[..., _T], *args: Any) -> _T:
    """Run ``fn``; config and etcd trouble become one line on stderr, exit 1."""
    try:
        return fn(*args)
    except EtcdUnavailable as exc:
        raise click.ClickException(f"etcd cluster unavailable: {exc}") from None
    except (CNIError, LibcniError, EtcdRequestError, inventory.NotClusterIPAM, inventory.NodeLive,
            OSError) as exc:
        raise click.ClickException(str(exc)) from None


def _settings(conf_list: NetworkConfigList) -> tuple[Any, Any]:
    return load_config(inventory.ipam_config(conf_list))


@ipam.command("show")
@click.argument("network")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.option("--sweep", is_flag=True,
              help="Also delete orphan address keys (held by no attachment, e.g. one deleted by hand).")
def show(network: str, as_json: bool, sweep: bool) -> None:
    """Used and free addresses per range, attachments per node, of NETWORK's pool.

    \b
    Example:
      cnitool ipam show podnet
    """
    def run() -> dict[str, Any]:
        return inventory.usage(*_settings(load_conflist(None, network)), sweep_orphans=sweep)

    report = _operate(run)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"network {report['network']}")
    rows = [[r["range"], r["size"], r["used"], r["free"],
             " ".join(f"{node}={count}" for node, count in r["byNode"].items())] for r in report["ranges"]]
    print_table(["RANGE", "SIZE", "USED", "FREE", "USED BY NODE"], rows)
    if report["outside"]:
        click.echo(f"held outside the configured ranges: {report['outside']}")
    if report["orphans"]:
        verb = "deleted" if report["swept"] else "held by no attachment (--sweep deletes them)"
        click.echo(f"orphan address keys, {verb}: {' '.join(report['orphans'])}")
    click.echo("")
    print_table(["NODE", "ATTACHMENTS", "ADDRESSES"],
           [[node, n["attachments"], n["addresses"]] for node, n in report["nodes"].items()])


@ipam.command("reap-node")
@click.argument("node")
@click.option("--network", "names", multiple=True, metavar="NAME",
              help="Only this network (repeatable); default: every cluster-ipam network in NETCONFPATH.")
@click.option("--force", is_flag=True, help="Reap even a node seen alive recently (its GC or an ADD).")
@click.option("--idle-seconds", "idle", type=float, default=inventory.DEFAULT_IDLE, show_default=True,
              help="A node seen within this long is alive.")
def reap_node(node: str, names: tuple[str, ...], force: bool, idle: float) -> None:
    """Release every address NODE holds: for a node that is gone for good.

    Never run for a node that still runs containers: they keep their
    addresses in the kernel while the pool hands them out again. A node whose
    GC or ADD was seen within --idle-seconds is refused unless --force. Every
    network is tried; each one's outcome is printed, and the exit status is 1
    if any failed.

    \b
    Example:
      cnitool ipam reap-node worker-7
    """
    lists = _operate(lambda: [load_conflist(None, name) for name in names] if names
                     else inventory.networks(default_conf_dir()))
    if not lists:
        raise click.ClickException(f"no cluster-ipam network in {default_conf_dir()}")
    failed = 0
    for conf_list in lists:
        try:
            count = _operate(lambda: len(inventory.reap_node(_settings(conf_list)[1], node, force, idle)))
        except click.ClickException as exc:
            failed += 1
            click.echo(f"{conf_list.name}: not reaped: {exc.message}", err=True)
            continue
        click.echo(f"{conf_list.name}: released {count} attachment(s) of node {node}")
    if failed:
        raise click.ClickException(f"{failed} of {len(lists)} network(s) not reaped")


def print_table(headers: list[str], rows: list[list[Any]]) -> None:
    """Left-aligned columns under ``headers`` (the cnitool commands' plain output)."""
    widths = [max([len(h)] + [len(str(r[i])) for r in rows]) for i, h in enumerate(headers)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
    for row in rows:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
