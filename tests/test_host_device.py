"""The built-in host-device plugin, through its launcher (cold, or warm with
``CNICORE_TEST_LAUNCHERS=native``) and side by side with Debian's Go host-device (v1.1.1).

The "host device" is one end of a veth pair made in the sandbox's private host
namespace (the other end stays there: traffic across proves the moved link works).
Nothing touches the machine's own links: the PCI lookups are tested with a PCI
device that has no network interface and with an address that does not exist.
"""

from __future__ import annotations

import json
import os
import sys

import pytest

from cnicore.netlink import Netlink
from cnicore.testing import Sandbox, ping, run_executable, run_in
from cnicore.version import ALL

pytestmark = [pytest.mark.privileged, pytest.mark.interop]

GO_HOST_DEVICE = "/usr/lib/cni/host-device"
GO_NEWEST = "1.0.0"  # Debian's 1.1.1 refuses 1.1.0 configs
DEV, PEER = "hd0", "hd0peer"
DEV_MAC = "02:42:0a:11:00:05"
HOST_ADDR, CTR_ADDR = "10.77.0.1", "10.77.0.2"
PCI = "/sys/bus/pci/devices"
PCI_MISSING = "0000:ff:1f.7"


def _pci_without_net(with_driver: bool) -> str:
    """A PCI device of this machine with no network interface (none of its links is ever
    touched: the lookup fails before anything moves), bound to a driver or not."""
    for addr in sorted(os.listdir(PCI)) if os.path.isdir(PCI) else ():
        has_net = os.path.exists(f"{PCI}/{addr}/net") or any(
            os.path.exists(f"{PCI}/{addr}/{sub}/net") for sub in os.listdir(f"{PCI}/{addr}") if sub.startswith("virtio"))
        if not has_net and os.path.exists(f"{PCI}/{addr}/driver") == with_driver:
            return addr
    return ""


PCI_NO_DRIVER, PCI_NO_NET = _pci_without_net(False), _pci_without_net(True)


@pytest.fixture
def ours(cni_bin_dir: str) -> str:
    return f"{cni_bin_dir}/host-device"


def conf(version: str = "1.0.0", ipam: bool = False, **keys: object) -> dict:
    config: dict = {"cniVersion": version, "name": "hdnet", "type": "host-device", **keys}
    if ipam:
        config["ipam"] = {"type": "static", "addresses": [{"address": f"{CTR_ADDR}/24"}],
                          "routes": [{"dst": "10.78.0.0/16", "gw": HOST_ADDR}]}
        config["dns"] = {"nameservers": ["10.77.0.53"]}
    return config


def host_device(sandbox: Sandbox) -> None:
    """The veth pair in the private host: DEV (to be moved, up) and PEER (stays, addressed)."""
    def make() -> None:
        with Netlink() as nl:
            nl.add_veth(DEV, PEER, mac=DEV_MAC)
            nl.set_up(DEV)
            nl.set_up(PEER)
            nl.add_address(PEER, f"{HOST_ADDR}/24")
    sandbox.host.do(make)


def run(binary: str, command: str, config: dict, sandbox: Sandbox, netns, cni_bin_dir: str, **kw: object):
    return run_executable(binary, command, config, host=sandbox.host, netns=netns, path=cni_bin_dir,
                          container_id="c1", **kw)


def links(netns) -> dict[str, tuple[str, bool, str]]:
    """name -> (MAC, up, alias) of the namespace's links other than lo."""
    def read() -> dict[str, tuple[str, bool, str]]:
        with Netlink() as nl:
            return {link.name: (link.mac, link.is_up, nl.link_alias(link.index)) for link in nl.links()
                    if link.name != "lo"}
    return netns.do(read)


def shape(result: dict) -> dict:
    """A result without the sandbox path (it differs per run) and Go's empty ``dns``."""
    if result.get("dns") == {}:
        del result["dns"]
    for intf in result.get("interfaces", []):
        intf["sandbox"] = "S" if intf.get("sandbox") else ""
    return result


# -- ADD, CHECK, DEL side by side with Go -------------------------------------------------

LOOKUPS = {
    "device": {"device": DEV},
    "hwaddr": {"hwaddr": DEV_MAC.upper()},
    "hwaddr-dashes": {"hwaddr": DEV_MAC.replace(":", "-")},
}


@pytest.mark.parametrize("version, lookup", [(v, "device") for v in ALL]
                         + [("1.0.0", lookup) for lookup in sorted(LOOKUPS) if lookup != "device"])
@pytest.mark.parametrize("ipam", [False, True], ids=["no-ipam", "static"])
def test_add_check_del_like_go(version: str, lookup: str, ipam: bool, ours: str, cni_bin_dir: str) -> None:
    seen = {}
    for side, binary in (("ours", ours), ("go", GO_HOST_DEVICE)):
        go_version = GO_NEWEST if side == "go" and version == "1.1.0" else version
        config = conf(go_version, ipam, **LOOKUPS[lookup])
        with Sandbox() as sandbox:
            host_device(sandbox)
            ctr = sandbox.container()
            out = run(binary, "ADD", config, sandbox, ctr, cni_bin_dir)
            if version < "0.3.0" and not ipam:  # a result without addresses has no 0.1/0.2 form
                assert out.error is not None and out.error.msg == "cannot convert: no valid IP addresses"
                seen[side] = (out.code, out.error.code)
                continue
            added = out.ok().json
            assert added["cniVersion"] == go_version
            added["cniVersion"] = version
            in_ctr = links(ctr)
            assert in_ctr == {"eth0": (DEV_MAC, True, DEV)}, in_ctr
            assert DEV not in links(sandbox.host)
            if ipam:
                ping(ctr, HOST_ADDR)  # the moved link carries traffic to its peer
                assert "10.78.0.0/16 via 10.77.0.1 dev eth0" in run_in(ctr, "ip", "route")
            if version >= "0.4.0":
                run(binary, "CHECK", dict(config, prevResult=added | {"cniVersion": go_version}), sandbox, ctr,
                    cni_bin_dir).ok()
            run(binary, "DEL", config, sandbox, ctr, cni_bin_dir).ok()
            back = links(sandbox.host)
            assert links(ctr) == {}
            mac, up, alias = back[DEV]
            assert (mac, up) == (DEV_MAC, False)  # back under its name, down (its state is unknown)
            # the current reference clears the alias; Debian's 1.1.1 leaves it set
            assert alias == ("" if side == "ours" else DEV)
            seen[side] = shape(added)
    assert seen["ours"] == seen["go"]


def test_del_again_and_with_the_netns_gone(ours: str, cni_bin_dir: str) -> None:
    """DEL succeeds when repeated and when the namespace is gone (the reference fails
    both: "failed to find" / "failed to open netns"); the link returns nowhere twice."""
    with Sandbox() as sandbox:
        host_device(sandbox)
        ctr = sandbox.container()
        run(ours, "ADD", conf(device=DEV), sandbox, ctr, cni_bin_dir).ok()
        run(ours, "DEL", conf(device=DEV), sandbox, ctr, cni_bin_dir).ok()
        run(ours, "DEL", conf(device=DEV), sandbox, ctr, cni_bin_dir).ok()
        assert DEV in links(sandbox.host)
        go = run(GO_HOST_DEVICE, "DEL", conf(device=DEV), sandbox, ctr, cni_bin_dir)
        assert go.code != 0 and 'failed to find "eth0"' in go.error.msg  # what 1.1.1 does instead
        ctr2 = sandbox.container()
        run(ours, "ADD", conf(device=DEV), sandbox, ctr2, cni_bin_dir).ok()
        path = ctr2.path
        ctr2.remove()  # a veth dies with its namespace (a physical link returns to the initial one)
        run(ours, "DEL", conf(device=DEV), sandbox, path, cni_bin_dir).ok()
        run(ours, "DEL", conf(device=DEV), sandbox, "", cni_bin_dir).ok()  # no netns at all: nothing to do


@pytest.mark.parametrize("adder, deleter", [("ours", "go"), ("go", "ours")])
def test_interop_del_restores_the_other_sides_link(adder: str, deleter: str, ours: str, cni_bin_dir: str) -> None:
    binaries = {"ours": ours, "go": GO_HOST_DEVICE}
    with Sandbox() as sandbox:
        host_device(sandbox)
        ctr = sandbox.container()
        run(binaries[adder], "ADD", conf(device=DEV), sandbox, ctr, cni_bin_dir).ok()
        run(binaries[deleter], "DEL", conf(device=DEV), sandbox, ctr, cni_bin_dir).ok()
        assert DEV in links(sandbox.host) and links(ctr) == {}


def test_failed_ipam_leaves_the_link_on_the_host(ours: str, cni_bin_dir: str) -> None:
    """ADD moves the link, then IPAM fails: ours moves it back (the reference leaves it in
    the container); the error is IPAM's."""
    bad = conf(device=DEV) | {"ipam": {"type": "static", "addresses": [{"address": "not-an-ip"}]}}
    with Sandbox() as sandbox:
        host_device(sandbox)
        ctr = sandbox.container()
        out = run(ours, "ADD", bad, sandbox, ctr, cni_bin_dir)
        assert out.code != 0 and out.error is not None
        assert links(ctr) == {}
        assert links(sandbox.host)[DEV][2] == ""  # named as before, alias cleared


def test_the_container_name_taken_rolls_back(ours: str, cni_bin_dir: str) -> None:
    """The container already has CNI_IFNAME: the move fails and the link is back on the
    host under its name, up as it was, like the current reference (Debian's 1.1.1 renames
    inside the container, fails there and leaves the link in it, under its host name)."""
    with Sandbox() as sandbox:
        host_device(sandbox)
        ctr = sandbox.container()
        run_in(ctr, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "other")
        seen = {}
        for side, binary in (("ours", ours), ("go", GO_HOST_DEVICE)):
            out = run(binary, "ADD", conf(device=DEV), sandbox, ctr, cni_bin_dir)
            assert out.code == 1 and out.error is not None
            if side == "ours":
                assert links(sandbox.host)[DEV] == (DEV_MAC, True, "")
                assert out.error.msg == ('failed to move link failed to move "eth0" (host: "hd0") to container NS: '
                                         "file exists")
            else:
                assert DEV in links(ctr) and DEV not in links(sandbox.host)
            seen[side] = out.error.code
        assert seen["ours"] == seen["go"] == 999


# -- kernelpath: the sysfs of the plugin's own namespace ----------------------------------

def sysfs_wrapper(tmp_path, target: str) -> str:
    """``target`` run in a private mount namespace with a sysfs of the sandbox's host
    namespace on /sys: what a plugin on a real host sees (this process's /sys shows the
    machine's links). The mount goes with the namespace."""
    script = tmp_path / f"with-sysfs-{os.path.basename(target)}"
    script.write_text(f"#!/bin/sh\nexec unshare --mount --propagation private sh -c "
                      f"'mount -t sysfs sysfs /sys && exec \"$0\"' {target}\n")
    script.chmod(0o755)
    return str(script)


@pytest.fixture
def ours_cold(tmp_path) -> str:
    """Our plugin exec'd cold (a fresh ``python -IS`` in the caller's mount namespace,
    which the sysfs wrapper needs; a warm server's worker has its own)."""
    launcher = tmp_path / "host-device-cold"
    launcher.write_text(f"#!{sys.executable} -IS\nimport sys\nsys.path[:0] = {sys.path!r}\n"
                        "from cnicore import skel\nfrom cnicore.host import PluginHost\n"
                        "import cni_plugins_builtin.host_device.plugin as m\n"
                        "skel.main(PluginHost(m, 'host-device'))\n")
    launcher.chmod(0o755)
    return str(launcher)


def test_kernelpath_like_go(ours_cold: str, cni_bin_dir: str, tmp_path) -> None:
    """``kernelpath`` names a device directory whose ``net`` lists the link: for a veth,
    /sys/devices/virtual (its first entry by name, ``hd0``, sorts before ``hd0peer``
    and ``lo``)."""
    seen = {}
    for side, binary in (("ours", ours_cold), ("go", GO_HOST_DEVICE)):
        wrapped = sysfs_wrapper(tmp_path, binary)
        with Sandbox() as sandbox:
            host_device(sandbox)
            ctr = sandbox.container()
            added = run(wrapped, "ADD", conf(kernelpath="/sys/devices/virtual"), sandbox, ctr, cni_bin_dir).ok()
            assert links(ctr) == {"eth0": (DEV_MAC, True, DEV)}
            run(wrapped, "DEL", conf(kernelpath="/sys/devices/virtual"), sandbox, ctr, cni_bin_dir).ok()
            assert DEV in links(sandbox.host)
            seen[side] = shape(added.json)
    assert seen["ours"] == seen["go"]


# -- errors, side by side ------------------------------------------------------------------

ERRORS = {
    "nothing": {},
    "device-missing": {"device": "nosuchdev"},
    "hwaddr-bad": {"hwaddr": "02:42:zz:00:00:01"},
    "hwaddr-missing": {"hwaddr": "02:42:0a:11:99:99"},
    "kernelpath-relative": {"kernelpath": "sys/devices/virtual"},
    "kernelpath-outside": {"kernelpath": "/proc/devices"},
    "kernelpath-missing": {"kernelpath": "/sys/devices/nosuch"},
    "pci-missing": {"pciBusID": PCI_MISSING},
    **({"pci-no-driver": {"pciBusID": PCI_NO_DRIVER}} if PCI_NO_DRIVER else {}),
    **({"pci-no-net": {"pciBusID": PCI_NO_NET}} if PCI_NO_NET else {}),
    **({"deviceID-pci-no-net": {"runtimeConfig": {"deviceID": PCI_NO_NET}}} if PCI_NO_NET else {}),
    "deviceID-missing": {"runtimeConfig": {"deviceID": "nosuch"}},
    "device-wrong-type": {"device": 5},
    "hwaddr-wrong-type": {"hwaddr": ["02:42:0a:11:00:05"]},
}
#: Where Debian's 1.1.1 words it differently from the current reference (which we follow).
GO_111_TEXTS = {
    "kernelpath-missing": 'failed to find host device: failed to find network devices at "/sys/devices/nosuch/net"',
    "deviceID-missing": "error with host device: lstat /sys/bus/pci/devices/nosuch: no such file or directory",
}
OUR_TEXTS = {
    "kernelpath-missing": ('failed to find host device: failed to read directory /sys/devices/nosuch/net: '
                           '"open /sys/devices/nosuch/net: no such file or directory"'),
    "deviceID-missing": "runtime config DeviceID nosuch not found or unsupported",
    "pci-no-net": f"failed to find host device: no net directory under pci device {PCI_NO_NET}",
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_errors_like_go(case: str, ours: str, cni_bin_dir: str) -> None:
    seen = {}
    for side, binary in (("ours", ours), ("go", GO_HOST_DEVICE)):
        with Sandbox() as sandbox:
            host_device(sandbox)
            ctr = sandbox.container()
            out = run(binary, "ADD", conf(**ERRORS[case]), sandbox, ctr, cni_bin_dir)
            assert out.code != 0, out
            assert out.error is not None, out
            seen[side] = (out.code, out.error.code, out.error.msg)
            assert links(sandbox.host)[DEV][:2] == (DEV_MAC, True)  # untouched
            assert links(ctr) == {}
    if case in OUR_TEXTS:
        assert seen["ours"][2] == OUR_TEXTS[case]
    if case in GO_111_TEXTS:
        assert seen["go"][2] == GO_111_TEXTS[case]
        seen["go"] = seen["go"][:2] + (seen["ours"][2],)
    assert seen["ours"] == seen["go"], json.dumps(seen)
