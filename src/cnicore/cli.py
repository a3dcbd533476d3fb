"""``cnitool``: a thin click CLI over the cnicore library.

Each command parses options, calls one library function and formats its
answer: a short table where a person reads, JSON with ``--json`` where a
program does.
"""

from __future__ import annotations

import json
import sys

import click

from cnicore import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cnitool")
def main() -> None:
    """Run CNI network operations and manage cnicore plugins."""


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
    from cnicore.registry import RegistryError, discover

    try:
        entries = discover()
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from None
    rows = []
    for entry in entries.values():
        try:
            versions = ", ".join(entry.info().supported_versions)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not hide the others
            versions = f"<cannot load: {exc}>"
        rows.append({"type": entry.type, "distribution": entry.distribution, "version": entry.version,
                     "module": entry.value, "supportedVersions": versions})
    if as_json:
        for row in rows:
            row["supportedVersions"] = [v.strip() for v in str(row["supportedVersions"]).split(",")]
        click.echo(json.dumps(rows, indent=2))
        return
    _table(rows, ["type", "distribution", "version", "supportedVersions"],
           ["TYPE", "DISTRIBUTION", "VERSION", "CNI VERSIONS"])


@plugins.command("install")
@click.argument("directory", default="/opt/cni/bin", type=click.Path(file_okay=False))
@click.option("--policy", "policies", multiple=True, metavar="MODULE",
              help="Extra policy plugin module every launcher registers (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print what was done as JSON.")
def plugins_install(directory: str, policies: tuple[str, ...], as_json: bool) -> None:
    """Write an executable launcher per plugin into DIRECTORY (default /opt/cni/bin).

    Re-running adds new plugins, rewrites changed launchers and removes the
    ones it wrote for plugins that are gone. Files it did not write (the Go
    plugins, say) are never touched.

    \b
    Example:
      cnitool plugins install /opt/cni/bin
      CNI_PATH=/opt/cni/bin CNI_COMMAND=VERSION /opt/cni/bin/loopback
    """
    from cnicore.launchers import LauncherError, install
    from cnicore.registry import RegistryError

    try:
        report = install(directory, policies=policies)
    except (RegistryError, LauncherError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
        return
    for label, names in (("added", report.added), ("updated", report.updated),
                         ("removed", report.removed), ("unchanged", report.unchanged)):
        if names:
            click.echo(f"{label:>9}: {', '.join(names)}")
    for name, why in report.skipped.items():
        click.echo(f"  skipped: {name} ({why})", err=True)


def _table(rows: list[dict[str, object]], keys: list[str], headers: list[str]) -> None:
    widths = [max([len(h)] + [len(str(r[k])) for r in rows]) for k, h in zip(keys, headers)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
    for row in rows:
        click.echo("  ".join(str(row[k]).ljust(w) for k, w in zip(keys, widths)).rstrip())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
