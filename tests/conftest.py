"""Suite-wide rules live in cnicore's pytest plugin (:mod:`cnicore.testing`, loaded
through the ``pytest11`` entry point), so plugin projects get them too: in CI
(``CNICORE_FAIL_ON_SKIP=1``) a skipped test is a failure, because a skipped
namespace or interop test hides exactly what CI is for."""
