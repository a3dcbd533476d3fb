"""All-or-nothing operations (public toolkit): record how to undo each step, undo them all on failure.

A plugin ADD pushes an undo action right after each change it makes (a veth
created, an address reserved, a rule added). If anything later fails, the
actions run in reverse order; a failing undo is reported on stderr and does
not stop the others, and the original error is the one raised.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable


__all__ = ["Rollback"]


class Rollback:
    """``with Rollback() as undo: ...; undo.push(fn, *args)``; call :meth:`commit` on success."""

    def __init__(self) -> None:
        self._actions: list[tuple[str, Callable[..., Any], tuple[Any, ...]]] = []
        self._committed = False

    def push(self, what: str, fn: Callable[..., Any], *args: Any) -> None:
        """Remember how to undo the step just done (``what`` names it in diagnostics)."""
        self._actions.append((what, fn, args))

    def commit(self) -> None:
        """The operation succeeded: forget the undo actions."""
        self._committed = True
        self._actions.clear()

    def run(self) -> list[str]:
        """Undo everything recorded, newest first; return what failed to undo."""
        failed = []
        while self._actions:
            what, fn, args = self._actions.pop()
            try:
                fn(*args)
            except Exception as exc:  # noqa: BLE001 - keep undoing the rest
                failed.append(what)
                print(f"rollback: failed to undo {what}: {exc}", file=sys.stderr)
        return failed

    def __enter__(self) -> Rollback:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None and not self._committed:
            self.run()
