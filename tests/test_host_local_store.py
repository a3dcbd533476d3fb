"""host-local's store: the record index, crash windows, file modes and symlinks.

No namespaces needed (IPAM only writes files under tmp_path). The index
(kept in the lock file) must never disagree with the records on disk, whoever
wrote them; these tests change the store behind our back the way Go's
host-local or an administrator would.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cni_plugins_builtin.host_local import index
from cni_plugins_builtin.host_local import store as store_mod
from cni_plugins_builtin.host_local.store import DiskStore
from cnicore._go.ip import parse_ip
from test_host_local import (
    GO_HOST_LOCAL,
    add,
    addresses,
    err,
    exec_plugin,
    launcher,  # noqa: F401 - a fixture, used by name
    needs_go,
    netconf,
    records,
    run,
    store_dir,
)


def fresh_process() -> None:
    """Forget this process's warm copies, as a new exec would."""
    store_mod._WARM.clear()


def index_view(data_dir: Path) -> dict[str, str]:
    """What the index (trusted or rebuilt) says: name -> holder."""
    with DiskStore(str(data_dir), "hlnet") as store:
        return {r.name: r.text for r in store.records()}


def disk_view(data_dir: Path) -> dict[str, str]:
    return {name: data.decode().strip() for name, data in records(data_dir).items()}


@pytest.mark.parametrize("warm", [True, False])
def test_index_follows_changes_made_behind_its_back(tmp_path: Path, warm: bool) -> None:
    config = netconf(tmp_path, subnet="10.9.0.0/24")
    assert addresses(add(config, cid="a")) == ["10.9.0.2"]
    netdir = store_dir(tmp_path)
    # Written by somebody else (Go's host-local, an administrator): created ...
    (netdir / "10.9.0.3").write_bytes(b"other\r\neth0")
    if not warm:
        fresh_process()
    assert addresses(add(config, cid="b")) == ["10.9.0.4"]  # 10.9.0.3 is seen as taken
    assert "duplicate allocation" in err(run("ADD", config, cid="other"))[2]
    # ... and removed: the address is free again, the holder gone.
    (netdir / "10.9.0.3").unlink()
    if not warm:
        fresh_process()
    run("CHECK", config, cid="b").ok()
    assert err(run("CHECK", config, cid="other"))[1] == 999
    assert index_view(tmp_path) == disk_view(tmp_path) == {"10.9.0.2": "a\r\neth0", "10.9.0.4": "b\r\neth0"}


def test_index_is_trusted_only_with_the_directorys_stamp(tmp_path: Path) -> None:
    config = netconf(tmp_path, subnet="10.9.0.0/24")
    add(config, cid="a")
    netdir = store_dir(tmp_path)
    header = (netdir / "lock").read_bytes()[:index.HEADER_SIZE]
    assert header.startswith(index.MAGIC)
    st = os.stat(netdir)
    assert [int(field) for field in header.split()[2:6]] == [st.st_mtime_ns, st.st_ctime_ns, st.st_dev, st.st_ino]
    fd = os.open(netdir / "lock", os.O_RDONLY)
    try:
        stamp = index.directory_stamp(os.stat(netdir))
        assert index.load(fd, stamp) is not None
        for field in range(4):
            assert index.load(fd, tuple(v + (i == field) for i, v in enumerate(stamp))) is None  # type: ignore[arg-type]
        os.utime(netdir)  # any later change to the directory moves its mtime on
        assert index.load(fd, index.directory_stamp(os.stat(netdir))) is None
        os.utime(netdir, ns=(st.st_atime_ns, st.st_mtime_ns))  # and setting it back moves the ctime on
        assert index.load(fd, index.directory_stamp(os.stat(netdir))) is None
    finally:
        os.close(fd)
    fresh_process()
    assert index_view(tmp_path) == disk_view(tmp_path) == {"10.9.0.2": "a\r\neth0"}


def test_a_torn_or_garbage_index_is_rebuilt(tmp_path: Path) -> None:
    config = netconf(tmp_path, subnet="10.9.0.0/24")
    add(config, cid="a")
    lock = store_dir(tmp_path) / "lock"
    data = lock.read_bytes()
    stamp = os.stat(store_dir(tmp_path)).st_mtime_ns
    for broken in (data[:index.HEADER_SIZE + 5], b"garbage", data[:index.HEADER_SIZE] + b"+x y\n" * 3, b""):
        with open(lock, "r+b") as fh:  # in place: the directory's mtime stays the stamp
            fh.truncate(0)
            fh.write(broken)
        os.utime(store_dir(tmp_path), ns=(stamp, stamp))
        fresh_process()
        assert index_view(tmp_path) == {"10.9.0.2": "a\r\neth0"}
        stamp = os.stat(store_dir(tmp_path)).st_mtime_ns


def test_add_reads_no_record_when_the_index_is_trusted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The point of the index: an ADD's cost does not grow with the records."""
    config = netconf(tmp_path, subnet="10.9.0.0/22")
    netdir = store_dir(tmp_path)
    netdir.mkdir(parents=True)
    for i in range(600):  # filled by somebody else: the first request reads them all once
        ip = f"10.9.{2 + i // 256}.{i % 256}"
        (netdir / ip).write_bytes(f"filler-{i}\r\neth0".encode())
    add(config, cid="first")
    opened: list[str] = []
    real_open = os.open

    def counting_open(path: object, *args: object, **kwargs: object) -> int:
        opened.append(os.path.basename(str(path)))
        return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", counting_open)
    for warm in (True, False):
        if not warm:
            fresh_process()
        opened.clear()
        add(config, cid=f"next-{warm}")
        assert [name for name in opened if parse_ip(name) is not None] == [], opened
    opened.clear()
    run("DEL", config, cid="next-True").ok()
    assert len([name for name in opened if parse_ip(name) is not None]) == 1  # the record, re-read before removal


def test_no_empty_record_when_killed_between_write_and_link(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A record appears whole or not at all: the window the reference has between
    its exclusive create and its write (SIGKILL there leaves an empty record no
    DEL matches) is gone. The kill is simulated where it would hurt most."""
    config = netconf(tmp_path, subnet="10.9.0.0/24")
    add(config, cid="a")

    class Killed(BaseException):
        pass

    def killed(*args: object) -> None:
        raise Killed()

    with monkeypatch.context() as patch:
        patch.setattr(os, "link", killed)
        with pytest.raises(Killed):
            run("ADD", config, cid="b")
    assert disk_view(tmp_path) == {"10.9.0.2": "a\r\neth0"}  # nothing half-made
    fresh_process()
    (store_dir(tmp_path) / store_mod.SCRATCH_NAME).write_bytes(b"b\r\neth0")  # as a real kill leaves it
    assert addresses(add(config, cid="b")) == ["10.9.0.3"]
    run("DEL", config, cid="b").ok()
    run("DEL", config, cid="a").ok()
    assert disk_view(tmp_path) == {}
    assert sorted(os.listdir(store_dir(tmp_path))) == ["last_reserved_ip.0", "lock"]


def test_files_have_gos_modes(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        add(netconf(tmp_path, subnet="10.9.0.0/24"), cid="a")
    finally:
        os.umask(umask)
    netdir = store_dir(tmp_path)
    modes = {name: stat.S_IMODE(os.stat(netdir / name).st_mode) for name in os.listdir(netdir)}
    assert modes == {"10.9.0.2": 0o644, "last_reserved_ip.0": 0o644, "lock": 0o750 & ~0o022}


def test_planted_symlinks_are_replaced_not_written_through(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    netdir = store_dir(tmp_path / "data")
    netdir.mkdir(parents=True)
    (netdir / "last_reserved_ip.0").symlink_to(victim)
    (netdir / store_mod.SCRATCH_NAME).symlink_to(victim)
    config = netconf(tmp_path / "data", subnet="10.9.0.0/24")
    assert addresses(add(config, cid="a")) == ["10.9.0.2"]
    assert victim.read_bytes() == b"precious"
    assert not (netdir / "last_reserved_ip.0").is_symlink()
    assert (netdir / "last_reserved_ip.0").read_bytes() == b"10.9.0.2"


def test_refused_request_outside_the_ranges_leaves_no_cursor(tmp_path: Path) -> None:
    config = netconf(tmp_path, subnet="10.9.0.0/24")
    assert err(run("ADD", config, cid="a", args="IP=192.168.1.5")) == \
        (1, 999, "failed to allocate all requested IPs: 192.168.1.5")
    assert sorted(os.listdir(store_dir(tmp_path))) == ["lock"]
    add(config, cid="b")
    before = (store_dir(tmp_path) / "last_reserved_ip.0").read_bytes()
    assert err(run("ADD", config, cid="c", args="IP=10.9.0.7,10.9.0.8"))[2] == \
        "failed to allocate all requested IPs: 10.9.0.8"
    assert (store_dir(tmp_path) / "last_reserved_ip.0").read_bytes() == before
    assert sorted(disk_view(tmp_path)) == ["10.9.0.2"]


@pytest.mark.interop
@needs_go
def test_index_agrees_with_disk_under_alternating_go_and_ours(launcher: str, tmp_path: Path) -> None:
    config = netconf(tmp_path, subnet="10.9.0.0/28")  # 13 addresses: wraps around often
    live: set[str] = set()
    for i in range(40):
        exe = GO_HOST_LOCAL if i % 3 == 0 else launcher
        cid = f"c{i}"
        if len(live) >= 10:
            gone = sorted(live)[i % len(live)]
            exec_plugin(launcher if i % 2 else GO_HOST_LOCAL, "DEL", config, cid=gone).ok()
            live.discard(gone)
        out = exec_plugin(exe, "ADD", config, cid=cid).ok()
        live.add(cid)
        assert len(addresses(out.json)) == 1
        got = disk_view(tmp_path)
        assert sorted(got.values()) == sorted(f"{c}\r\neth0" for c in live)
    fresh_process()
    assert index_view(tmp_path) == disk_view(tmp_path)


def test_a_record_the_index_missed_is_skipped_and_learnt(tmp_path: Path) -> None:
    """Belt and braces: should a record appear without the directory's mtime moving
    (it cannot, short of someone resetting it), the exclusive create still refuses
    the address and the index learns who holds it."""
    config = netconf(tmp_path, subnet="10.9.0.0/24")
    add(config, cid="a")
    netdir = store_dir(tmp_path)
    stamp = os.stat(netdir)
    (netdir / "10.9.0.3").write_bytes(b"ghost\r\neth0")
    os.utime(netdir, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))  # hide the change
    assert addresses(add(config, cid="b")) == ["10.9.0.4"]
    assert "duplicate allocation" in err(run("ADD", config, cid="ghost"))[2]
    fresh_process()
    assert index_view(tmp_path) == disk_view(tmp_path)


# -- an index that is wrong must never be trusted or kept (issue 19, findings 11 and 12) ------------------------


def fill_small_range(tmp_path: Path) -> dict:
    """A /29 (10.9.0.2-.6) held by a..e, the index written and trusted."""
    config = netconf(tmp_path, subnet="10.9.0.0/29")
    for cid in "abcde":
        add(config, cid=cid)
    assert disk_view(tmp_path) == {f"10.9.0.{2 + i}": f"{c}\r\neth0" for i, c in enumerate("abcde")}
    return config


def tamper(netdir: Path) -> None:
    """Behind the index's back: b's record removed, one for "ghost" created over d's place."""
    (netdir / "10.9.0.3").unlink()
    (netdir / "10.9.0.5").unlink()
    (netdir / "10.9.0.5").write_bytes(b"ghost\r\neth0")


def restore_mtime(netdir: Path, st: os.stat_result) -> None:
    os.utime(netdir, ns=(st.st_atime_ns, st.st_mtime_ns))


def forge_stamp(netdir: Path) -> None:
    """Give the lock file's index a header matching the directory as it is now: what a
    change in the same clock tick as our stamp leaves on a kernel with coarse
    timestamps (before 6.13), so the index is trusted though wrong."""
    fd = os.open(netdir / "lock", os.O_RDWR)
    try:
        header = os.pread(fd, index.HEADER_SIZE, 0)
        length = int(header.split()[-1])
        os.pwrite(fd, index.header(index.directory_stamp(os.stat(netdir)), length), 0)
    finally:
        os.close(fd)


HIDDEN = {
    "mtime set back to the stamp": lambda netdir, st: restore_mtime(netdir, st),
    "header forged to the directory (same tick)": lambda netdir, st: forge_stamp(netdir),
}


@pytest.mark.parametrize("warm", [True, False])
@pytest.mark.parametrize("hide", sorted(HIDDEN))
def test_a_hidden_change_is_seen_and_repaired(tmp_path: Path, hide: str, warm: bool) -> None:
    """Finding 11: the directory changed and its mtime was set back (or the stamp
    matches by accident); the index must not be trusted, or the first write that
    meets the disagreement rebuilds it — never re-stamped as it was."""
    config = fill_small_range(tmp_path)
    netdir = store_dir(tmp_path)
    st = os.stat(netdir)
    tamper(netdir)
    HIDDEN[hide](netdir, st)
    if not warm:
        fresh_process()
    # ghost holds 10.9.0.5 on disk: a repeated ADD is a duplicate, not a second address.
    assert "duplicate allocation" in err(run("ADD", config, cid="ghost"))[2]
    # 10.9.0.3 is free on disk: handed out, not "no IP addresses available".
    assert addresses(add(config, cid="f")) == ["10.9.0.3"]
    assert err(run("ADD", config, cid="g"))[2].startswith("failed to allocate for range 0: no IP addresses")
    run("DEL", config, cid="ghost").ok()
    assert "10.9.0.5" not in disk_view(tmp_path)
    assert index_view(tmp_path) == disk_view(tmp_path)
    fresh_process()
    assert index_view(tmp_path) == disk_view(tmp_path)


def test_del_of_a_phantom_holder_rebuilds_the_index(tmp_path: Path) -> None:
    """A write that finds the disk disagreeing with a trusted index (a record it
    names is gone) rebuilds it instead of stamping it again."""
    config = fill_small_range(tmp_path)
    netdir = store_dir(tmp_path)
    tamper(netdir)
    forge_stamp(netdir)
    fresh_process()
    run("DEL", config, cid="b").ok()  # the index says b holds 10.9.0.3; the disk says nobody does
    assert index_view(tmp_path) == disk_view(tmp_path)
    fresh_process()
    assert index_view(tmp_path) == disk_view(tmp_path)
    assert addresses(add(config, cid="f")) == ["10.9.0.3"]


def copy_with_old_index(src: Path, dst: Path, old_lock: bytes, old_stat: os.stat_result) -> None:
    """``cp -a`` of a live store whose lock file was read before a change and the
    records after, the directory's mtime restored to the earlier moment."""
    import subprocess

    subprocess.run(["cp", "-a", str(src), str(dst)], check=True)
    (dst / "lock").write_bytes(old_lock)
    os.utime(dst, ns=(old_stat.st_atime_ns, old_stat.st_mtime_ns))


@pytest.mark.parametrize("warm", [True, False])
def test_a_copied_store_is_not_trusted(tmp_path: Path, warm: bool) -> None:
    """Finding 12: the index records the directory's identity; a copy is another directory."""
    config = fill_small_range(tmp_path / "orig")
    netdir = store_dir(tmp_path / "orig")
    old_lock, old_stat = (netdir / "lock").read_bytes(), os.stat(netdir)
    run("DEL", config, cid="b").ok()
    copy_dir = tmp_path / "copy"
    copy_dir.mkdir()
    copy_with_old_index(netdir, store_dir(copy_dir), old_lock, old_stat)
    if not warm:
        fresh_process()
    copied = netconf(copy_dir, subnet="10.9.0.0/29")
    assert index_view(copy_dir) == disk_view(copy_dir)  # no phantom b
    assert err(run("CHECK", copied, cid="b"))[1] == 999
    assert addresses(add(copied, cid="f")) == ["10.9.0.3"]
    run("DEL", copied, cid="c").ok()
    assert "10.9.0.4" not in disk_view(copy_dir)
    fresh_process()
    assert index_view(copy_dir) == disk_view(copy_dir)
    assert index_view(tmp_path / "orig") == disk_view(tmp_path / "orig")


@pytest.mark.interop
@needs_go
@pytest.mark.parametrize("case", ["mtime set back", "cp -a with an older lock file"])
def test_hidden_changes_with_go_writing_between_ours(launcher: str, tmp_path: Path, case: str) -> None:
    """Go's host-local and ours alternate on a store that was changed behind the index's
    back; every step leaves the records as both expect and the index equal to them."""
    data = tmp_path / "data"
    config = fill_small_range(data)
    netdir = store_dir(data)
    if case == "mtime set back":
        st = os.stat(netdir)
        tamper(netdir)
        restore_mtime(netdir, st)
    else:
        old_lock, old_stat = (netdir / "lock").read_bytes(), os.stat(netdir)
        run("DEL", config, cid="b").ok()
        (netdir / "10.9.0.5").unlink()
        (netdir / "10.9.0.5").write_bytes(b"ghost\r\neth0")
        moved = tmp_path / "moved"
        netdir.rename(moved)
        copy_with_old_index(moved, netdir, old_lock, old_stat)
    fresh_process()
    live = {"a", "c", "e", "ghost"}  # one address free: ADDs and DELs alternate
    for i in range(12):
        exe = GO_HOST_LOCAL if i % 3 == 1 else launcher
        if i % 2:
            gone = sorted(live)[i % len(live)]
            exec_plugin(exe, "DEL", config, cid=gone).ok()
            live.discard(gone)
        else:
            cid = f"n{i}"
            exec_plugin(exe, "ADD", config, cid=cid).ok()
            live.add(cid)
        assert sorted(disk_view(data).values()) == sorted(f"{c}\r\neth0" for c in live)
        fresh_process()
        assert index_view(data) == disk_view(data)
