"""Tests that need kernel features this machine's kernel lacks (bridge VLAN filtering,
dummy, vlan, ipvlan, vrf...). ``scripts/dev test`` runs this directory in a guest on
Debian's stock kernel (``scripts/guest pytest tests/guest``); the host's own run does
not collect it (tests/conftest.py). A test marks what it needs with
``@pytest.mark.kernel("kind", ...)`` (kinds: :data:`cnicore.testing.KERNEL_FEATURES`);
on a kernel without it the test skips, which CI (``CNICORE_FAIL_ON_SKIP=1``) fails."""

from __future__ import annotations

import pytest

from cnicore.testing import kernel_has


@pytest.fixture(autouse=True)
def _kernel_features(request) -> None:
    for mark in request.node.iter_markers("kernel"):
        missing = [kind for kind in mark.args if not kernel_has(kind)]
        if missing:
            pytest.skip(f"this kernel lacks {', '.join(missing)}: run it in the guest (scripts/guest pytest "
                        f"{request.node.nodeid.split('::')[0]})")


@pytest.fixture(scope="session")
def cni_bin_dir(tmp_path_factory, cni_install) -> str:
    """cnicore.testing's ``cni_bin_dir`` for cnicore's own plugins only: installing a
    launcher validates its plugin by importing it, and the example projects the suite
    installs import pyroute2 — 12 s of 9p reads under TCG, in every pass, for plugins
    these tests never run."""
    from cnicore.registry import discover

    path = tmp_path_factory.mktemp("cni-bin")
    ours = [entry for entry in discover().values() if entry.value.startswith("cni_plugins_builtin")]
    report = cni_install(str(path), ours)
    if report.skipped:
        raise RuntimeError(f"cni_bin_dir: launchers not written: {report.skipped}")
    return str(path)
