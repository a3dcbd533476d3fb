"""Run nft transactions and read nftables objects back, over the ``nft`` CLI.

The reference drives nft through knftables (text scripts) for ipMasq and
go-nft (JSON) for the spoof check; both end up as one ``nft -f -`` batch,
which the kernel applies atomically. We feed nft the same batches and read
state back with ``nft --json list``, using knftables' rule for "not found".
"""

from __future__ import annotations

from cnicore.firewall.command import FirewallError, ToolMissingError, run

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).

__all__ = ["apply_script", "apply_json", "list_objects", "is_not_found", "supported", "quote"]


def quote(text: str) -> str:
    """A quoted nft string as knftables writes it (Go ``%q``, which nft reads verbatim)."""
    from cnicore.utils import go_quote

    return go_quote(text)


def is_not_found(err: BaseException) -> bool:
    """knftables' IsNotFound: ENOENT reported on the first line of nft's error output."""
    if not isinstance(err, FirewallError) or isinstance(err, ToolMissingError):
        return False
    first = err.stderr.split("\n", 1)[0]
    return "No such file or directory" in first


def apply_script(lines: list[str]) -> None:
    """Apply knftables-style text commands, one per line, as one atomic batch."""
    run(["nft", "-f", "-"], stdin="".join(line + "\n" for line in lines))


def apply_json(commands: list[dict[str, Any]]) -> None:
    """Apply libnftables JSON commands (``{"add": {...}}``...) as one atomic batch."""
    import json

    run(["nft", "-j", "-f", "-"], stdin=json.dumps({"nftables": commands}))


def list_objects(*what: str) -> list[dict[str, Any]]:
    """``nft --json list <what>`` as a list of ``{"<kind>": {...}}`` (metainfo dropped).

    Raises FirewallError; check :func:`is_not_found` for a missing table/chain.
    """
    import json

    out = run(["nft", "--json", "list", *what])
    try:
        items = json.loads(out).get("nftables", []) if out.strip() else []
    except ValueError as exc:
        raise FirewallError(f"unable to parse JSON output of nft list {' '.join(what)}: {exc}") from exc
    return [item for item in items if isinstance(item, dict) and "metainfo" not in item]


def objects_of(items: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The bodies of the ``kind`` ("rule", "chain"...) entries of a listing."""
    return [item[kind] for item in items if isinstance(item.get(kind), dict)]


def supported() -> bool:
    """Go's ``utils.SupportsNFTables``: nft >= 1.0.1 is installed and may change the ruleset.

    Checked like knftables.New: ``nft --check`` of adding a table, with an
    object comment first and, for older kernels, without one.
    """
    import re

    try:
        version = run(["nft", "--version"])
    except FirewallError:
        return False
    match = re.match(r"nftables v(\d+)\.(\d+)\.(\d+)", version)
    if not match or tuple(int(n) for n in match.groups()) < (1, 0, 1):
        return False
    for body in (' { comment "test" ; }', ""):
        try:
            run(["nft", "--check", "-f", "-"], stdin=f"add table ip supports_nftables_test{body}\n")
        except FirewallError:
            continue
        return True
    return False


def object_comments_rejected(err: BaseException) -> bool:
    """True if a failed batch may have failed only because of table/chain comments.

    knftables drops those comments on kernels or nft versions without support;
    we try with them first and retry without on such an error.
    """
    return isinstance(err, FirewallError) and not isinstance(err, ToolMissingError) and (
        "comment" in err.stderr or "Operation not supported" in err.stderr)
