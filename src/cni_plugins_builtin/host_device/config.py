"""The host-device plugin's configuration: the reference's ``NetConf``, decoded with Go's rules.

``types.NetConf`` plus ``device``, ``hwaddr``, ``kernelpath``, ``pciBusID`` and
``runtimeConfig.deviceID`` (a PCI or auxiliary-bus device ID a device plugin
hands over; it overrides ``pciBusID``). One of them must be given. A PCI device
bound to a userspace (DPDK) driver is not moved: the result only names it.
"""

from __future__ import annotations

import os

from cnicore.config import NETCONF_FIELDS, PREFIX, STRING, NetConfError, Struct, decode_struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SYS_BUS_PCI = "/sys/bus/pci/devices"
SYS_BUS_AUXILIARY = "/sys/bus/auxiliary/devices"
#: Drivers that hand a PCI network device to userspace (DPDK): such a device has no netdev to move.
USERSPACE_DRIVERS = ("vfio-pci", "uio_pci_generic", "igb_uio")

SCHEMA = Struct("NetConf", {
    **NETCONF_FIELDS,
    "device": STRING, "hwaddr": STRING, "kernelpath": STRING, "pciBusID": STRING,
    "runtimeConfig": Struct("", {"deviceID": STRING},
                            "struct { DeviceID string \"json:\\\"deviceID,omitempty\\\"\" }"),
})


class HostDeviceConf:
    """A decoded host-device config; ``aux_device`` is set from a ``deviceID`` on the auxiliary bus."""

    __slots__ = ("device", "hwaddr", "kernelpath", "pci_addr", "aux_device", "dpdk_mode", "ipam_type", "dns")

    def __init__(self, raw: dict[str, Any], *, check_device: bool = True) -> None:
        conf = decode_struct(raw, SCHEMA, PREFIX)
        self.device: str = conf.get("device") or ""
        self.hwaddr: str = conf.get("hwaddr") or ""
        self.kernelpath: str = conf.get("kernelpath") or ""
        self.pci_addr: str = conf.get("pciBusID") or ""
        self.aux_device = ""
        self.dpdk_mode = False
        self.ipam_type: str = (conf.get("ipam") or {}).get("type") or ""
        self.dns: dict[str, Any] = conf.get("dns") or {}
        if not check_device:
            return
        self._device_id((conf.get("runtimeConfig") or {}).get("deviceID") or "")
        if not (self.device or self.hwaddr or self.kernelpath or self.pci_addr or self.aux_device):
            raise NetConfError('specify either "device", "hwaddr", "kernelpath" or "pciBusID"')
        if self.pci_addr:
            try:
                self.dpdk_mode = _has_dpdk_driver(self.pci_addr)
            except OSError as exc:
                raise NetConfError(f"error with host device: {exc.strerror}") from None

    def _device_id(self, device_id: str) -> None:
        """The runtime's standard ``deviceID`` replaces ``pciBusID`` (the reference's handleDeviceID)."""
        if not device_id:
            return
        if os.path.exists(os.path.join(SYS_BUS_PCI, device_id)):
            self.pci_addr = device_id
        elif os.path.exists(os.path.join(SYS_BUS_AUXILIARY, device_id)):
            self.pci_addr, self.aux_device = "", device_id
        else:
            raise NetConfError(f"runtime config DeviceID {device_id} not found or unsupported")


def _has_dpdk_driver(pci_addr: str) -> bool:
    """Whether the PCI device is bound to a userspace driver. OSError carries Go's
    ``filepath.EvalSymlinks`` text (``lstat <first missing path>: ...``) as strerror."""
    from cnicore.utils import go_os_error

    link = os.path.join(SYS_BUS_PCI, pci_addr, "driver")
    resolved = "/"
    for part in link.strip("/").split("/"):  # Go names the first missing component, links resolved
        path = os.path.join(resolved, part)
        try:
            os.lstat(path)
        except OSError as exc:
            raise OSError(exc.errno, go_os_error("lstat", path, exc)) from None
        resolved = os.path.realpath(path)
    return os.path.basename(resolved) in USERSPACE_DRIVERS
