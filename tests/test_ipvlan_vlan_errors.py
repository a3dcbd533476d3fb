"""ipvlan's and vlan's refusals that come before the link is made, side by side with
Debian's Go binaries (v1.1.1) — on this machine's kernel, which cannot make ipvlan or
vlan links (that part is tested in the guest: tests/guest/test_ipvlan_vlan.py).

Same exit status, CNI code and message for ADD; DEL succeeds for every config that
decodes (the reference's DEL repeats ADD's checks and fails; ours only decodes, so a
DEL after the master went away still cleans up).
"""

from __future__ import annotations

import pytest

from cnicore.testing import Sandbox, run_in
from test_macvlan import GO, error_of, make_master, netconf, run

pytestmark = [pytest.mark.privileged, pytest.mark.interop]

TWO_NAMES = {"cniVersion": "1.0.0", "interfaces": [{"name": "a"}, {"name": "b"}]}

#: (plugin, case) -> config changes (None removes the key).
BAD = {
    ("vlan", "no-master"): {"master": None},
    ("vlan", "vlanId-too-big"): {"vlanId": 5000},
    ("vlan", "vlanId-negative"): {"vlanId": -1},
    ("vlan", "vlanId-string"): {"vlanId": "x"},
    ("vlan", "mtu-too-big"): {"mtu": 9000},
    ("vlan", "mtu-negative"): {"mtu": -5},
    ("vlan", "missing-master"): {"master": "nope"},
    ("ipvlan", "no-master-no-default-route"): {"master": None},
    ("ipvlan", "unknown-mode"): {"mode": "l4"},
    ("ipvlan", "mode-number"): {"mode": 1},
    ("ipvlan", "missing-master"): {"master": "nope"},
    ("ipvlan", "chained-two-interfaces"): {"master": None, "prevResult": TWO_NAMES},
    ("ipvlan", "prevResult-not-an-object"): {"prevResult": "x"},
}

#: linkInContainer came after v1.1.1 (which ignores it): ours against the current reference's texts.
NEWER = {
    ("vlan", "linkInContainer-master-not-there"): ({"linkInContainer": True}, "Link not found"),
    ("ipvlan", "linkInContainer-master-not-there"): ({"linkInContainer": True},
                                                     'failed to lookup master "m0": Link not found'),
    ("ipvlan", "linkInContainer-no-default-route"): ({"master": None, "linkInContainer": True},
                                                     "no default route interface found"),
}


@pytest.mark.parametrize(("kind", "case"), sorted(BAD), ids=[f"{k}-{c}" for k, c in sorted(BAD)])
def test_bad_configs_fail_like_go(kind: str, case: str, cni_bin_dir: str, tmp_path) -> None:
    seen = {}
    for side, binary in (("ours", f"{cni_bin_dir}/{kind}"), ("go", f"{GO}/{kind}")):
        config = netconf(kind, "1.0.0", str(tmp_path / side), master="m0", **({"vlanId": 100} if kind == "vlan"
                                                                             else {}))
        config.update(BAD[kind, case])
        config = {k: v for k, v in config.items() if v is not None}
        with Sandbox() as sandbox:
            make_master(sandbox.host, default_route=False)
            ctr = sandbox.container()
            outcome = run(binary, "ADD", config, sandbox, ctr, cni_bin_dir)
            assert not outcome.stderr.startswith(b"Traceback"), outcome
            seen[side] = error_of(outcome)
            assert run_in(ctr, "ip", "-o", "link").count("\n") == 1, side  # lo only
            if side == "ours":
                deleted = error_of(run(binary, "DEL", config, sandbox, ctr, cni_bin_dir))
                decodes = not seen[side][2].startswith("failed to load netconf")
                assert deleted == ((0, None, "") if decodes else seen[side])
    assert seen["ours"] == seen["go"]
    assert seen["ours"][0] == 1


@pytest.mark.parametrize(("kind", "case"), sorted(NEWER), ids=[f"{k}-{c}" for k, c in sorted(NEWER)])
def test_link_in_container_refusals(kind: str, case: str, cni_bin_dir: str, cni_sandbox, tmp_path) -> None:
    """With ``linkInContainer`` the master and the default route are looked for in the
    container, which has neither here (the host has both)."""
    changes, message = NEWER[kind, case]
    config = netconf(kind, "1.1.0", str(tmp_path), master="m0", **({"vlanId": 100} if kind == "vlan" else {}))
    config.update(changes)
    config = {k: v for k, v in config.items() if v is not None}
    make_master(cni_sandbox.host)
    ctr = cni_sandbox.container()
    assert error_of(run(f"{cni_bin_dir}/{kind}", "ADD", config, cni_sandbox, ctr, cni_bin_dir)) == (1, 999, message)
    assert run_in(ctr, "ip", "-o", "link").count("\n") == 1  # lo only
    run(f"{cni_bin_dir}/{kind}", "DEL", config, cni_sandbox, ctr, cni_bin_dir).ok()


@pytest.mark.parametrize("command", ["ADD", "DEL"])
def test_vlan_without_ipam_type_like_go(command: str, cni_bin_dir: str, tmp_path) -> None:
    """vlan always runs IPAM: without ``ipam.type`` DEL fails as Go's does (no plugin name);
    ADD gets there only on a kernel with vlan links (the guest)."""
    seen = {}
    for side, binary in (("ours", f"{cni_bin_dir}/vlan"), ("go", f"{GO}/vlan")):
        config = dict(netconf("vlan", "1.0.0", "", ipam=False, master="m0", vlanId=100), ipam={})
        with Sandbox() as sandbox:
            make_master(sandbox.host)
            seen[side] = error_of(run(binary, command, config, sandbox, sandbox.container(), cni_bin_dir))
    if command == "DEL":
        assert seen["ours"] == seen["go"] == (1, 999, "no plugin name provided")
    else:  # this kernel: both fail at the link
        assert seen["ours"] == seen["go"] == (1, 999, "failed to create vlan: operation not supported")
