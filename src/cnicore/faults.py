"""Test-only fault points: a named place in a multi-step operation where a test
can make the process fail or die, to prove that what was done so far is undone
(rollback) or cleaned up later (DEL, GC).

Inert unless ``CNICORE_FAULTS`` names the point: ``point=kill`` sends SIGKILL
to this process (a crash: nothing runs after it), ``point=fail`` raises
:class:`FaultInjected` (code 999, an ordinary failure). Several points are
separated by commas. Read at every call, so in-process tests can set it too.
"""

from __future__ import annotations

import os

from cnicore.errors import ERR_INTERNAL, CNIError

# Exec path: imports inside functions load only with the verbs that use them (the budget: tests/test_import_budget.py).

__all__ = ["ENV", "FaultInjected", "point"]

ENV = "CNICORE_FAULTS"


class FaultInjected(CNIError):
    """The failure a ``fail`` fault point raises."""

    def __init__(self, name: str) -> None:
        super().__init__(ERR_INTERNAL, f"fault injected at {name}")


def point(name: str) -> None:
    """Fail or die here if the environment names this point; otherwise nothing."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    for item in spec.split(","):
        wanted, _, action = item.partition("=")
        if wanted != name:
            continue
        if action == "kill":
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
        raise FaultInjected(name)
