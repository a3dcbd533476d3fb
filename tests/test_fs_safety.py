"""Files in shared directories (tuning backups, libcni's result cache) are
created without following symlinks and with Go's modes; a full or read-only
directory is a clean error that changes nothing; external commands get
argument lists, never a shell."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import subprocess

import pytest

from cnicore import fsutil
from cnicore.testing import run_executable, run_in

pytestmark = [pytest.mark.privileged]


@contextlib.contextmanager
def tiny_tmpfs(path, *, full: bool = False, read_only: bool = False):
    """A 16 KiB tmpfs at ``path`` (filled up, or read-only), unmounted afterwards."""
    os.makedirs(path, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k,mode=0755", "tmpfs", str(path)], check=True)
    try:
        if full:
            fd = os.open(os.path.join(path, "filler"), os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                with contextlib.suppress(OSError):
                    while True:
                        os.write(fd, b"x" * 4096)
            finally:
                os.close(fd)
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
        yield str(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_write_atomic_replaces_a_planted_symlink_and_never_writes_through(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    target = tmp_path / "shared" / "file"
    target.parent.mkdir()
    target.symlink_to(victim)
    fsutil.write_atomic(str(target), b"new", 0o644)
    assert victim.read_bytes() == b"precious"
    assert not target.is_symlink() and target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(p.name for p in target.parent.iterdir()) == ["file"]


@pytest.mark.parametrize("how", ["full", "read_only"])
def test_write_atomic_on_a_full_or_read_only_dir_leaves_nothing(how, tmp_path):
    with tiny_tmpfs(tmp_path / "mnt", **{how: True}) as mnt:
        before = sorted(os.listdir(mnt))
        with pytest.raises(OSError) as info:
            fsutil.write_atomic(os.path.join(mnt, "file"), b"x" * 65536)
        assert info.value.errno in (errno.ENOSPC, errno.EROFS)
        assert sorted(os.listdir(mnt)) == before


PREV = {"cniVersion": "1.0.0", "interfaces": [{"name": "lo"}], "ips": []}


def _tuning(data_dir: str) -> dict:
    return {"cniVersion": "1.0.0", "name": "tun", "type": "tuning", "dataDir": data_dir, "mtu": 1400,
            "prevResult": PREV}


def _lo_mtu(netns) -> str:
    return run_in(netns, "cat", "/sys/class/net/lo/mtu").strip()


def test_tuning_backup_replaces_a_planted_symlink(cni_bin_dir, cni_sandbox, tmp_path):
    data = tmp_path / "tuning"
    data.mkdir()
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    (data / "c1_lo.json").symlink_to(victim)
    ctr = cni_sandbox.container()
    env = {"host": cni_sandbox.host, "netns": ctr, "container_id": "c1", "ifname": "lo", "path": cni_bin_dir}
    run_executable(f"{cni_bin_dir}/tuning", "ADD", _tuning(str(data)), **env).ok()
    assert victim.read_bytes() == b"precious"
    backup = data / "c1_lo.json"
    assert not backup.is_symlink() and stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert json.loads(backup.read_bytes())["mtu"] == 65536
    run_executable(f"{cni_bin_dir}/tuning", "DEL", _tuning(str(data)), **env).ok()
    assert _lo_mtu(ctr) == "65536" and victim.read_bytes() == b"precious"


@pytest.mark.parametrize("how", ["full", "read_only"])
def test_tuning_with_a_full_or_read_only_data_dir_fails_cleanly(how, cni_bin_dir, cni_sandbox, tmp_path):
    ctr = cni_sandbox.container()
    with tiny_tmpfs(tmp_path / "mnt", **{how: True}) as mnt:
        before = sorted(os.listdir(mnt))
        out = run_executable(f"{cni_bin_dir}/tuning", "ADD", _tuning(mnt), host=cni_sandbox.host, netns=ctr,
                             container_id="c1", ifname="lo", path=cni_bin_dir)
        assert (out.code, out.error.code) == (1, 999)
        assert out.error.msg.startswith("failed to save file lo.json: ")
        assert b"Traceback" not in out.stdout
        assert sorted(os.listdir(mnt)) == before
    assert _lo_mtu(ctr) == "65536"  # nothing was changed


LOOPBACK_LIST = {"cniVersion": "1.0.0", "name": "lonet", "plugins": [{"type": "loopback"}]}


def test_result_cache_replaces_a_planted_symlink(cni_conflist, cni_sandbox, tmp_path):
    cache = tmp_path / "cache"
    results = cache / "results"
    results.mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    (results / "lonet-c1-eth0").symlink_to(victim)
    runner = cni_conflist(LOOPBACK_LIST, cache_dir=str(cache))
    ctr = cni_sandbox.container()
    runner.add(ctr, container_id="c1", ifname="eth0")
    entry = results / "lonet-c1-eth0"
    assert victim.read_bytes() == b"precious"
    assert not entry.is_symlink() and stat.S_IMODE(entry.stat().st_mode) == 0o600
    runner.delete(ctr, container_id="c1", ifname="eth0")
    assert os.listdir(results) == []


@pytest.mark.parametrize("how", ["full", "read_only"])
def test_result_cache_on_a_full_or_read_only_dir_is_a_clean_error(how, cni_conflist, cni_sandbox, tmp_path):
    from cnicore.errors import CNIError

    ctr = cni_sandbox.container()
    with tiny_tmpfs(tmp_path / "mnt", **{how: True}) as mnt:
        runner = cni_conflist(LOOPBACK_LIST, cache_dir=mnt)
        with pytest.raises(CNIError) as info:
            runner.add(ctr, container_id="c1", ifname="eth0")
        assert info.value.code == 5  # ERR_IO_FAILURE
        assert 'failed to set network "lonet" cached result' in info.value.msg
        files = [name for _, _, names in os.walk(mnt) for name in names]
        assert files == (["filler"] if how == "full" else [])
    # the attachment the cache could not record was taken down again (Go keeps it)
    assert "UP" not in run_in(ctr, "ip", "-o", "link", "show", "lo").split(">")[0]


def test_firewall_commands_get_argument_lists_never_a_shell(cni_runner, cni_sandbox, tmp_path, monkeypatch):
    """A masquerading bridge ADD and DEL in-process, with every subprocess call recorded."""
    import cni_plugins_builtin.bridge.plugin as bridge

    calls = []
    real = subprocess.run

    def recording(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(subprocess, "run", recording)
    conf = {"cniVersion": "1.0.0", "name": "fw", "type": "bridge", "bridge": "brfw", "isGateway": True,
            "ipMasq": True, "ipam": {"type": "host-local", "subnet": "10.33.0.0/24", "dataDir": str(tmp_path)}}
    runner = cni_runner(bridge)
    ctr = cni_sandbox.container()
    runner.add(conf, ctr, container_id="c1")
    runner.delete(conf, ctr, container_id="c1")
    tools = [os.path.basename(args[0][0]) for args, _ in calls if args and isinstance(args[0], list)]
    assert any(tool.startswith("iptables") for tool in tools), tools  # iptables or its batch form, iptables-restore
    for args, kwargs in calls:
        assert isinstance(args[0], list) and all(isinstance(a, str) for a in args[0])
        assert not kwargs.get("shell")


def test_no_shell_anywhere_in_the_product():
    import cni_plugins_builtin
    import cnicore

    offenders = []
    for package in (cnicore, cni_plugins_builtin):
        root = os.path.dirname(package.__file__)
        for base, _dirs, names in os.walk(root):
            for name in names:
                if name.endswith(".py"):
                    text = open(os.path.join(base, name), encoding="utf-8").read()
                    for needle in ("shell=True", "os.system(", "os.popen(", "/bin/sh"):
                        if needle in text:
                            offenders.append((name, needle))
    assert offenders == []
