"""The ``cnitool`` entry point: network commands straight from argv, the rest through click.

A network command goes whole to the warm server when the launchers in
CNI_PATH name one (:func:`served_warm`): a worker runs it with this process's
stdio, namespaces, directory and environment, and this process only waits
for its exit status.

Why: click takes ~35 ms to import, more than Go's whole cnitool run, and
``cnitool add NET NETNS`` is what runtimes' tooling and operators run most.
:func:`fast_argv` recognises only the plain forms of the five network
commands — ``[-i IF | --ifname IF | --ifname=IF] VERB NETWORK NETNS`` with the
same ``-i`` forms anywhere after the verb — and anything else (help, version,
other commands, unusual spellings, errors in the command line) goes to
click unchanged, so help texts, messages and exit codes stay click's.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Sequence

_VERBS = ("add", "check", "del", "gc", "status")
_IFNAME_FLAGS = ("-i", "--ifname")


def _take_ifname(args: Sequence[str], index: int) -> tuple[str, int] | None:
    """The value of the ``-i``/``--ifname`` option at ``args[index]`` and the next index,
    or None if it is not one of the plain spellings."""
    arg = args[index]
    if arg in _IFNAME_FLAGS:
        if index + 1 >= len(args) or args[index + 1].startswith("-"):
            return None  # a value that looks like an option: click decides
        return args[index + 1], index + 2
    if arg.startswith("--ifname="):
        return arg[len("--ifname="):], index + 1
    return None


def fast_argv(args: Sequence[str]) -> tuple[str, str, str, str | None] | None:
    """``(verb, network, netns, ifname)`` for a plain network command, else None."""
    index = 0
    root: str | None = None
    while index < len(args) and args[index].startswith("-"):
        taken = _take_ifname(args, index)
        if taken is None:
            return None
        root, index = taken
    if index >= len(args) or args[index] not in _VERBS:
        return None
    verb = args[index]
    index += 1
    positional: list[str] = []
    ifname: str | None = None
    while index < len(args):
        arg = args[index]
        if arg.startswith("-"):
            taken = _take_ifname(args, index)
            if taken is None:
                return None
            ifname, index = taken
        else:
            positional.append(arg)
            index += 1
    if len(positional) != 2:
        return None
    return verb, positional[0], positional[1], ifname or root


def served_warm(verb: str) -> int | None:
    """The exit status of this command run whole by the warm server that the launchers in
    CNI_PATH name (its worker has libcni and every plugin loaded: this process then
    imports almost nothing), or None to run it here: no server, a refusal, a server
    of another environment, or ``CNICORE_CNITOOL_EXEC=1`` (plugins exec'd, as a test asks)."""
    import os

    if os.environ.get("CNICORE_CNITOOL_EXEC") == "1":
        return None
    from cnicore.launchers import interpreter
    from cnicore.server import client

    socket_path = client.socket_for(os.environ.get("CNI_PATH", ""))
    if not socket_path:
        return None
    try:
        return client.run_command(socket_path, interpreter(), sys.argv, os.environ, verb)
    except client.ServerLost as exc:  # part of the add may be done: never rerun it
        sys.stderr.write(f"{exc}\n")
        return 1


def run_served(argv: list[str]) -> int:
    """A network command (``argv``) in a warm server's worker, as :func:`main` runs it
    here; its exit status (``cnitool daemon`` hands this to the server)."""
    fast = fast_argv(argv[1:])
    if fast is None:
        return 2  # the client sends only what fast_argv recognised
    from cnicore.cli.netverbs import run_verb

    try:
        run_verb(*fast)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


def main() -> None:
    fast = fast_argv(sys.argv[1:])
    if fast is not None:
        try:
            status = served_warm(fast[0])  # a Ctrl-C hangs up, and the server kills the worker
            if status is not None:
                sys.exit(status)
            from cnicore.cli.netverbs import run_verb  # lazy: the only import the network verbs need

            run_verb(*fast)
        except KeyboardInterrupt:  # what click's standalone mode prints
            sys.stderr.write("\nAborted!\n")
            sys.exit(1)
        return
    from cnicore.cli.commands import main as click_main  # lazy: click costs ~35 ms

    click_main()


if __name__ == "__main__":
    main()
