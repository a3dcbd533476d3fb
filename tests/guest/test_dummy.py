"""The dummy plugin on a kernel with dummy links (Debian's stock kernel, in the guest:
scripts/guest). The reference's dummy exists only from v1.4 (Debian's 1.1.1 has none):
its behaviour is checked against the kernel's view. Few execs: guest time is dear (a
passing CHECK, a repeated DEL and the errors that need no dummy are tested on the host
with tap, which shares this plugin's code paths)."""

from __future__ import annotations

import pytest

from cnicore.testing import Sandbox, run_executable
from cnicore.testing import run_in as sh

pytestmark = [pytest.mark.privileged, pytest.mark.kernel("dummy")]


def conf(**keys: object) -> dict:
    return {"cniVersion": "1.0.0", "name": "dummynet", "type": "dummy",
            "ipam": {"type": "static", "addresses": [{"address": "10.55.0.5/24", "gateway": "10.55.0.1"}],
                     "routes": [{"dst": "10.56.0.0/16"}]}, **keys}


def test_add_check_del(cni_bin_dir: str) -> None:
    with Sandbox() as sandbox:
        ctr = sandbox.container()

        def run(command: str, config: dict):
            return run_executable(f"{cni_bin_dir}/dummy", command, config, host=sandbox.host, netns=ctr,
                                  path=cni_bin_dir, container_id="c1")

        added = run("ADD", conf()).ok().json
        link = sh(ctr, "ip", "-d", "link", "show", "eth0")
        assert "dummy" in link and ",UP" in link
        mac = link.split("link/ether ")[1].split()[0]
        assert added["interfaces"] == [{"name": "eth0", "mac": mac, "sandbox": ctr.path}]
        assert added["ips"] == [{"address": "10.55.0.5/24", "gateway": "10.55.0.1", "interface": 0}]
        assert "10.56.0.0/16 via 10.55.0.1 dev eth0" in sh(ctr, "ip", "route")
        sh(ctr, "ip", "link", "set", "eth0", "down")
        down = run("CHECK", conf(prevResult=added))
        assert down.error is not None and down.error.msg == "Interface eth0 is down"
        run("DEL", conf()).ok()
        assert "eth0" not in sh(ctr, "ip", "-o", "link")
