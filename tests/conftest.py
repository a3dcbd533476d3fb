"""Suite-wide rules live in cnicore's pytest plugin (:mod:`cnicore.testing`, loaded
through the ``pytest11`` entry point), so plugin projects get them too: in CI
(``CNICORE_FAIL_ON_SKIP=1``) a skipped test is a failure, because a skipped
namespace or interop test hides exactly what CI is for.

``tests/guest`` holds tests that need kernel features this machine's kernel lacks:
``scripts/dev test`` runs them in a guest on Debian's stock kernel (``scripts/guest``),
which sets ``CNICORE_IN_GUEST=1``; elsewhere they are collected only when named."""

import os

if os.environ.get("CNICORE_IN_GUEST") != "1":
    collect_ignore = ["guest"]
