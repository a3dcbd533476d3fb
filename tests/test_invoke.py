"""Tests for cnicore.invoke with real executables: small shell-script fake
plugins written to tmp_path, plus Debian's Go reference ``loopback`` plugin.
No network namespaces and no network changes are involved."""

from __future__ import annotations

import io
import json
import os
import threading
import time
from pathlib import Path

import pytest

from cnicore import invoke
from cnicore.errors import (
    ERR_DECODING_FAILURE,
    ERR_INTERNAL,
    ERR_INVALID_ENVIRONMENT_VARIABLES,
    ERR_INVALID_NETWORK_CONFIG,
    CNIError,
)
from cnicore.invoke import (
    Args,
    DelegateArgs,
    PluginCancelledError,
    PluginError,
    PluginNotFoundError,
    PluginTimeoutError,
    exec_plugin,
    exec_plugin_with_result,
    exec_plugin_without_result,
    find_in_path,
    fixup_result_version,
    get_version_info,
)
from cnicore.types import Result, Result020, Result040
from cnicore.version import PluginInfo

LOOPBACK = "/usr/lib/cni/loopback"
CONF_100 = b'{"cniVersion":"1.0.0","name":"net","type":"fake"}'
RESULT_100 = {"cniVersion": "1.0.0",
              "ips": [{"address": "10.1.2.3/24", "gateway": "10.1.2.1"}]}


def make_plugin(directory: Path, name: str, body: str, mode: int = 0o755) -> Path:
    """An executable ``/bin/sh`` fake plugin."""
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(mode)
    return path


def process_gone(pid: int, wait: float = 3.0) -> bool:
    """True once ``pid`` no longer exists (or is a zombie someone else must reap)."""
    end = time.monotonic() + wait
    while True:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state in ("Z", "X"):
            return True
        if time.monotonic() > end:
            return False
        time.sleep(0.02)


def read_pid(path: Path, wait: float = 3.0) -> int:
    end = time.monotonic() + wait
    while time.monotonic() < end:
        text = path.read_text().strip() if path.exists() else ""
        if text:
            return int(text)
        time.sleep(0.01)
    raise AssertionError(f"no pid written to {path}")


# -- find_in_path ---------------------------------------------------------------

class TestFindInPath:
    def test_empty_name(self, tmp_path: Path) -> None:
        with pytest.raises(PluginNotFoundError, match="^no plugin name provided$") as info:
            find_in_path("", [str(tmp_path)])
        assert info.value.code == ERR_INTERNAL

    def test_name_with_separator(self, tmp_path: Path) -> None:
        make_plugin(tmp_path, "p", "exit 0\n")
        with pytest.raises(PluginNotFoundError) as info:
            find_in_path("../p", [str(tmp_path / "sub")])
        assert info.value.msg == "invalid plugin name: ../p"

    def test_no_paths(self) -> None:
        with pytest.raises(PluginNotFoundError, match="^no paths provided$"):
            find_in_path("p", [])

    def test_first_match_wins(self, tmp_path: Path) -> None:
        a, b = tmp_path / "a", tmp_path / "b"
        a.mkdir()
        b.mkdir()
        make_plugin(a, "p", "exit 0\n")
        make_plugin(b, "p", "exit 0\n")
        assert find_in_path("p", [str(a), str(b)]) == str(a / "p")
        assert find_in_path("p", [str(b), str(a)]) == str(b / "p")

    def test_skips_directory_and_non_executable(self, tmp_path: Path) -> None:
        d1, d2, d3 = (tmp_path / n for n in ("d1", "d2", "d3"))
        for d in (d1, d2, d3):
            d.mkdir()
        (d1 / "p").mkdir()                       # a directory named like the plugin
        make_plugin(d2, "p", "exit 0\n", mode=0o644)  # not executable (even for root)
        make_plugin(d3, "p", "exit 0\n")
        missing = str(tmp_path / "missing")
        assert find_in_path("p", [missing, str(d1), str(d2), str(d3)]) == str(d3 / "p")

    def test_symlink_to_executable(self, tmp_path: Path) -> None:
        real = make_plugin(tmp_path, "real", "exit 0\n")
        d = tmp_path / "d"
        d.mkdir()
        (d / "p").symlink_to(real)
        assert find_in_path("p", [str(d)]) == str(d / "p")

    def test_not_found_message(self, tmp_path: Path) -> None:
        with pytest.raises(PluginNotFoundError) as info:
            find_in_path("nope", ["/x/a", "/x/b"])
        assert str(info.value) == 'failed to find plugin "nope" in path [/x/a /x/b]'
        assert isinstance(info.value, CNIError)

    def test_split_path(self) -> None:
        assert invoke.split_path("") == []
        assert invoke.split_path("/a:/b") == ["/a", "/b"]
        assert invoke.split_path("/a::/b") == ["/a", "", "/b"]


# -- environments -------------------------------------------------------------------

class TestArgs:
    def test_explicit_args_override_inherited(self) -> None:
        base = {"PATH": "/bin", "CNI_COMMAND": "DEL", "CNI_NETNS": "/old", "CNI_IFNAME": "old",
                "CNI_ARGS": "OLD=1", "CNI_CONTAINERID": "old", "CNI_PATH": "/old", "KEEP": "me"}
        env = Args(command="ADD", container_id="c1", netns="/var/run/netns/x", ifname="eth0",
                   plugin_args=[("A", "1"), ("B", "2")], path="/opt/cni/bin").as_env(base)
        assert env == {"PATH": "/bin", "KEEP": "me", "CNI_COMMAND": "ADD",
                       "CNI_CONTAINERID": "c1", "CNI_NETNS": "/var/run/netns/x",
                       "CNI_ARGS": "A=1;B=2", "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin"}
        assert base["CNI_COMMAND"] == "DEL"  # base untouched

    def test_empty_fields_still_override(self) -> None:
        env = Args(command="VERSION").as_env({"CNI_NETNS": "/inherited", "CNI_ARGS": "X=1"})
        assert env["CNI_NETNS"] == "" and env["CNI_ARGS"] == "" and env["CNI_PATH"] == ""

    def test_plugin_args_str_wins(self) -> None:
        args = Args(command="ADD", plugin_args=[("A", "1")], plugin_args_str="IgnoreUnknown=1")
        assert args.as_env({})["CNI_ARGS"] == "IgnoreUnknown=1"

    def test_default_base_is_os_environ(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CNICORE_TEST_MARKER", "yes")
        monkeypatch.setenv("CNI_IFNAME", "inherited")
        env = Args(command="ADD", ifname="eth1").as_env()
        assert env["CNICORE_TEST_MARKER"] == "yes" and env["CNI_IFNAME"] == "eth1"
        env = DelegateArgs("DEL").as_env()
        assert env["CNICORE_TEST_MARKER"] == "yes" and env["CNI_IFNAME"] == "inherited"
        assert env["CNI_COMMAND"] == "DEL"

    def test_delegate_args_change_only_command(self) -> None:
        base = {"CNI_COMMAND": "ADD", "CNI_NETNS": "/n", "CNI_IFNAME": "eth0",
                "CNI_CONTAINERID": "c", "CNI_ARGS": "K=V", "CNI_PATH": "/p", "OTHER": "x"}
        env = DelegateArgs("DEL").as_env(base)
        assert env == dict(base, CNI_COMMAND="DEL")


# -- exec_plugin: success, env, stdin, stderr -------------------------------------------

ENV_DUMP = """\
stdin=$(cat)
printf '{"cmd":"%s","cid":"%s","netns":"%s","ifname":"%s","args":"%s","path":"%s","other":"%s","stdin":%s}' \\
  "$CNI_COMMAND" "$CNI_CONTAINERID" "$CNI_NETNS" "$CNI_IFNAME" "$CNI_ARGS" "$CNI_PATH" "$OTHER" "$stdin"
"""


class TestExecPlugin:
    def test_exact_env_and_stdin(self, tmp_path: Path) -> None:
        plugin = make_plugin(tmp_path, "dump", ENV_DUMP)
        env = Args(command="ADD", container_id="c1", netns="/n", ifname="eth0",
                   plugin_args=[("K", "V")], path="/p").as_env({"OTHER": "o", "PATH": "/usr/bin:/bin"})
        out = exec_plugin(str(plugin), b'{"a":1}', env)
        assert json.loads(out) == {"cmd": "ADD", "cid": "c1", "netns": "/n", "ifname": "eth0",
                                   "args": "K=V", "path": "/p", "other": "o", "stdin": {"a": 1}}

    def test_env_is_exact_not_inherited(self, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CNICORE_LEAK", "1")
        plugin = make_plugin(tmp_path, "env", "/usr/bin/env\n")
        out = exec_plugin(str(plugin), b"", {"ONLY": "this"})
        lines = set(out.decode().splitlines())
        assert "ONLY=this" in lines
        assert not any(line.startswith("CNICORE_LEAK=") for line in lines)

    def test_stderr_forwarded_on_success(self, tmp_path: Path) -> None:
        plugin = make_plugin(tmp_path, "p", "echo warn >&2; echo '{}'\n")
        sink = io.StringIO()
        assert exec_plugin(str(plugin), b"", {}, stderr_sink=sink) == b"{}\n"
        assert sink.getvalue() == "warn\n"
        raw = io.BytesIO()
        exec_plugin(str(plugin), b"", {}, stderr_sink=raw)
        assert raw.getvalue() == b"warn\n"
        exec_plugin(str(plugin), b"", {}, stderr_sink=None)  # discarded, no error

    def test_stderr_default_is_sys_stderr(self, tmp_path: Path,
                                          capfd: pytest.CaptureFixture[str]) -> None:
        plugin = make_plugin(tmp_path, "p", "echo to-stderr >&2\n")
        exec_plugin(str(plugin), b"", {})
        assert "to-stderr" in capfd.readouterr().err

    def test_large_stdin_and_stdout(self, tmp_path: Path) -> None:
        plugin = make_plugin(tmp_path, "cat", "exec /bin/cat\n")
        data = b"x" * (1 << 20)
        assert exec_plugin(str(plugin), data, {}) == data
        assert exec_plugin(str(plugin), data, {}, timeout=None) == data
        assert exec_plugin(str(plugin), data, {}, cancel=threading.Event()) == data

    def test_plugin_ignoring_stdin(self, tmp_path: Path) -> None:
        plugin = make_plugin(tmp_path, "p", "echo ok\n")
        assert exec_plugin(str(plugin), b"y" * (1 << 20), {}) == b"ok\n"

    def test_missing_binary(self, tmp_path: Path) -> None:
        path = str(tmp_path / "absent")
        with pytest.raises(PluginError) as info:
            exec_plugin(path, b"", {})
        assert info.value.code == 0
        assert info.value.msg == (f"netplugin failed with no error message: "
                                  f"fork/exec {path}: no such file or directory")

    def test_not_executable(self, tmp_path: Path) -> None:
        plugin = make_plugin(tmp_path, "p", "exit 0\n", mode=0o644)
        with pytest.raises(PluginError, match="fork/exec .*: permission denied$"):
            exec_plugin(str(plugin), b"", {})


# -- exec_plugin: failures ---------------------------------------------------------

class TestPluginErrors:
    def test_error_object_parsed(self, tmp_path: Path) -> None:
        plugin = make_plugin(tmp_path, "p", """\
cat >/dev/null
echo '{"cniVersion":"1.0.0","code":7,"msg":"bad config","details":"field x"}'
echo noise >&2
exit 1
""")
        with pytest.raises(PluginError) as info:
            exec_plugin(str(plugin), CONF_100, {})
        err = info.value
        assert (err.code, err.msg, err.details) == (ERR_INVALID_NETWORK_CONFIG, "bad config", "field x")
        assert str(err) == "bad config; field x"
        assert err.plugin_path == str(plugin)
        assert err.stderr == b"noise\n" and b'"code":7' in err.stdout
        assert err.returncode == 1

    def test_no_output(self, tmp_path: Path) -> None:
        plugin = make_plugin(tmp_path, "p", "exit 3\n")
        with pytest.raises(PluginError) as info:
            exec_plugin(str(plugin), b"", {})
        assert info.value.code == 0
        assert info.value.msg == "netplugin failed with no error message: exit status 3"

    def test_stderr_only(self, tmp_path: Path) -> None:
        plugin = make_plugin(tmp_path, "p", "printf 'oops \"x\"\\n' >&2; exit 2\n")
        with pytest.raises(PluginError) as info:
            exec_plugin(str(plugin), b"", {})
        assert info.value.msg == 'netplugin failed: "oops \\"x\\"\\n": exit status 2'
        assert info.value.code == 0

    def test_garbage_stdout(self, tmp_path: Path) -> None:
        plugin = make_plugin(tmp_path, "p", "echo 'not json'; exit 1\n")
        with pytest.raises(PluginError) as info:
            exec_plugin(str(plugin), b"", {})
        assert info.value.code == 0
        assert info.value.msg.startswith(
            'netplugin failed but error parsing its diagnostic message "not json\\n": ')

    def test_non_object_stdout(self, tmp_path: Path) -> None:
        plugin = make_plugin(tmp_path, "p", "echo '[1,2]'; exit 1\n")
        with pytest.raises(PluginError, match="error parsing its diagnostic message"):
            exec_plugin(str(plugin), b"", {})

    def test_null_stdout_is_empty_error(self, tmp_path: Path) -> None:
        plugin = make_plugin(tmp_path, "p", "echo null; exit 1\n")
        with pytest.raises(PluginError) as info:
            exec_plugin(str(plugin), b"", {})
        assert (info.value.code, info.value.msg) == (0, "")

    def test_killed_by_signal(self, tmp_path: Path) -> None:
        plugin = make_plugin(tmp_path, "p", "kill -KILL $$\n")
        with pytest.raises(PluginError) as info:
            exec_plugin(str(plugin), b"", {})
        assert info.value.msg == "netplugin failed with no error message: signal: killed"
        plugin = make_plugin(tmp_path, "q", "echo dying >&2; kill -SEGV $$\n")
        with pytest.raises(PluginError) as info:
            exec_plugin(str(plugin), b"", {})
        assert info.value.msg == 'netplugin failed: "dying\\n": signal: segmentation fault'

    def test_stderr_not_forwarded_on_failure(self, tmp_path: Path) -> None:
        plugin = make_plugin(tmp_path, "p", "echo err >&2; exit 1\n")
        sink = io.StringIO()
        with pytest.raises(PluginError):
            exec_plugin(str(plugin), b"", {}, stderr_sink=sink)
        assert sink.getvalue() == ""

    def test_go_quote(self) -> None:
        q = invoke.go_quote
        assert q(b'a"b\\c\n\t') == '"a\\"b\\\\c\\n\\t"'
        assert q(b"\x00\x7f") == '"\\x00\\x7f"'
        assert q("héllo ✓".encode()) == '"héllo ✓"'
        assert q(b"\xff") == '"\\xff"'
        assert q("\u200b") == '"\\u200b"'


# -- retries, timeout, cancellation --------------------------------------------------

class TestLifecycle:
    def test_text_file_busy_retried(self, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(invoke, "TEXT_FILE_BUSY_DELAY", 0.05)
        plugin = make_plugin(tmp_path, "p", "echo ran\n")
        writer = open(plugin, "r+b")  # an open writer makes execve fail with ETXTBSY
        results: list[object] = []

        def run() -> None:
            try:
                results.append(exec_plugin(str(plugin), b"", {}))
            except Exception as exc:  # pragma: no cover - reported below
                results.append(exc)

        thread = threading.Thread(target=run)
        start = time.monotonic()
        thread.start()
        time.sleep(0.12)
        writer.close()
        thread.join(10)
        assert results == [b"ran\n"]
        assert time.monotonic() - start >= 0.1

    def test_text_file_busy_gives_up(self, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(invoke, "TEXT_FILE_BUSY_DELAY", 0.01)
        plugin = make_plugin(tmp_path, "p", "echo ran\n")
        sleeps: list[float] = []
        real_sleep = time.sleep
        monkeypatch.setattr(invoke.time, "sleep", lambda s: (sleeps.append(s), real_sleep(s)))
        with open(plugin, "r+b"):
            with pytest.raises(PluginError, match="fork/exec .*: text file busy$"):
                exec_plugin(str(plugin), b"", {})
        assert sleeps == [0.01] * invoke.TEXT_FILE_BUSY_RETRIES

    def test_timeout_kills_and_reaps(self, tmp_path: Path) -> None:
        pidfile = tmp_path / "pid"
        plugin = make_plugin(tmp_path, "slow", f"echo $$ > {pidfile}\necho partial\nexec sleep 1000\n")
        start = time.monotonic()
        with pytest.raises(PluginTimeoutError) as info:
            exec_plugin(str(plugin), b"", {"PATH": "/usr/bin:/bin"}, timeout=0.5)
        elapsed = time.monotonic() - start
        assert 0.4 < elapsed < 5
        err = info.value
        assert err.code == ERR_INTERNAL
        assert err.msg == f"plugin {plugin} timed out after 0.5s and was killed"
        assert err.stdout == b"partial\n" and err.returncode == -9
        pid = read_pid(pidfile)
        assert not os.path.exists(f"/proc/{pid}")  # reaped, not a zombie
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)

    def test_timeout_kills_grandchildren(self, tmp_path: Path) -> None:
        """A plugin whose helper keeps our stdout open must not hang us."""
        pids = tmp_path / "pids"
        plugin = make_plugin(tmp_path, "slow", f"""\
sleep 1000 &
echo $! > {pids}.child
echo $$ > {pids}
wait
""")
        start = time.monotonic()
        with pytest.raises(PluginTimeoutError):
            exec_plugin(str(plugin), b"", {"PATH": "/usr/bin:/bin"}, timeout=0.3)
        assert time.monotonic() - start < 5
        pid, child = read_pid(pids), read_pid(Path(f"{pids}.child"))
        assert not os.path.exists(f"/proc/{pid}")
        assert process_gone(child)

    def test_cancel(self, tmp_path: Path) -> None:
        pidfile = tmp_path / "pid"
        plugin = make_plugin(tmp_path, "slow", f"echo $$ > {pidfile}\nexec sleep 1000\n")
        cancel = threading.Event()
        timer = threading.Timer(0.3, cancel.set)
        timer.start()
        start = time.monotonic()
        try:
            with pytest.raises(PluginCancelledError) as info:
                exec_plugin(str(plugin), b"", {"PATH": "/usr/bin:/bin"}, timeout=None,
                            cancel=cancel)
        finally:
            timer.cancel()
        assert time.monotonic() - start < 5
        assert info.value.code == ERR_INTERNAL
        assert info.value.msg == f"plugin {plugin} cancelled"
        assert not os.path.exists(f"/proc/{read_pid(pidfile)}")

    def test_cancel_before_start(self, tmp_path: Path) -> None:
        marker = tmp_path / "ran"
        plugin = make_plugin(tmp_path, "p", f"touch {marker}\n")
        cancel = threading.Event()
        cancel.set()
        with pytest.raises(PluginCancelledError):
            exec_plugin(str(plugin), b"", {}, cancel=cancel)
        assert not marker.exists()

    def test_fast_plugin_with_timeout_and_cancel(self, tmp_path: Path) -> None:
        plugin = make_plugin(tmp_path, "p", "cat\n")
        assert exec_plugin(str(plugin), b"hi", {"PATH": "/usr/bin:/bin"}, timeout=5,
                           cancel=threading.Event()) == b"hi"


# -- results -----------------------------------------------------------------------------

class TestResults:
    def test_fixup_missing_version_takes_config(self) -> None:
        version, raw = fixup_result_version(b'{"cniVersion":"0.4.0"}', b'{"ips":[]}')
        assert version == "0.4.0" and raw == {"ips": [], "cniVersion": "0.4.0"}

    def test_fixup_empty_version_takes_config(self) -> None:
        version, raw = fixup_result_version(CONF_100, b'{"cniVersion":""}')
        assert version == "1.0.0" and raw["cniVersion"] == "1.0.0"

    def test_fixup_config_without_version(self) -> None:
        assert fixup_result_version(b'{"name":"n"}', b"{}") == ("0.1.0", {"cniVersion": "0.1.0"})

    def test_fixup_keeps_result_version(self) -> None:
        version, raw = fixup_result_version(CONF_100, b'{"cniVersion":"0.3.1","ips":[]}')
        assert version == "0.3.1" and raw == {"cniVersion": "0.3.1", "ips": []}

    def test_fixup_null_result(self) -> None:
        assert fixup_result_version(CONF_100, b"null") == ("1.0.0", {"cniVersion": "1.0.0"})

    def test_fixup_invalid(self) -> None:
        # Go's plain errors (999 when a plugin reports them), in Go's words
        for bad, words in ((b"", "unexpected end of JSON input"), (b"{", "unexpected end of JSON input"),
                           (b"[1]", "json: cannot unmarshal array into Go value of type map[string]interface {}")):
            with pytest.raises(CNIError) as info:
                fixup_result_version(CONF_100, bad)
            assert info.value.code == ERR_INTERNAL
            assert info.value.msg == "failed to unmarshal raw result: " + words
        with pytest.raises(CNIError) as info:
            fixup_result_version(b"{", b"{}")
        assert info.value.code == ERR_DECODING_FAILURE

    def test_with_result(self, tmp_path: Path) -> None:
        plugin = make_plugin(tmp_path, "p", f"cat >/dev/null; echo '{json.dumps(RESULT_100)}'\n")
        result = exec_plugin_with_result(str(plugin), CONF_100, Args(command="ADD"), env_base={})
        assert isinstance(result, Result)
        assert result.cni_version == "1.0.0" and result.ips[0].address == "10.1.2.3/24"

    def test_with_result_version_from_config(self, tmp_path: Path) -> None:
        plugin = make_plugin(tmp_path, "p", """cat >/dev/null; echo '{"ips":[{"version":"4","address":"10.0.0.2/24"}]}'\n""")
        result = exec_plugin_with_result(str(plugin), b'{"cniVersion":"0.4.0","name":"n"}',
                                         Args(command="ADD"), env_base={})
        assert isinstance(result, Result040) and result.cni_version == "0.4.0"
        plugin = make_plugin(tmp_path, "q", """echo '{"ip4":{"ip":"10.0.0.2/24"}}'\n""")
        result = exec_plugin_with_result(str(plugin), b'{"name":"n"}', Args(command="ADD"),
                                         env_base={})
        assert isinstance(result, Result020) and result.cni_version == "0.1.0"

    def test_with_result_unparseable(self, tmp_path: Path) -> None:
        plugin = make_plugin(tmp_path, "p", """echo '{"cniVersion":"1.0.0","ips":[{"address":"nope"}]}'\n""")
        with pytest.raises(CNIError) as info:
            exec_plugin_with_result(str(plugin), CONF_100, Args(command="ADD"), env_base={})
        assert info.value.code == ERR_DECODING_FAILURE and not isinstance(info.value, PluginError)
        plugin = make_plugin(tmp_path, "q", """echo '{"cniVersion":"9.9.9"}'\n""")
        with pytest.raises(CNIError) as info:
            exec_plugin_with_result(str(plugin), CONF_100, Args(command="ADD"), env_base={})
        assert info.value.code == ERR_DECODING_FAILURE

    def test_without_result_ignores_stdout(self, tmp_path: Path) -> None:
        plugin = make_plugin(tmp_path, "p", "echo garbage\n")
        assert exec_plugin_without_result(str(plugin), CONF_100, Args(command="DEL"),
                                          env_base={}) is None
        failing = make_plugin(tmp_path, "f", """echo '{"code":11,"msg":"busy"}'; exit 1\n""")
        with pytest.raises(PluginError) as info:
            exec_plugin_without_result(str(failing), CONF_100, Args(command="DEL"), env_base={})
        assert (info.value.code, info.value.msg) == (11, "busy")


# -- VERSION -------------------------------------------------------------------------

class TestVersion:
    def test_version_env_and_stdin(self, tmp_path: Path) -> None:
        log = tmp_path / "log"
        plugin = make_plugin(tmp_path, "p", f"""\
cat > {log}
echo "$CNI_COMMAND $CNI_NETNS $CNI_IFNAME $CNI_PATH" >> {log}
echo '{{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}}'
""")
        info = get_version_info(str(plugin))
        assert info == PluginInfo(("0.4.0", "1.0.0"), "1.0.0")
        assert log.read_text() == '{"cniVersion":"1.1.0"}VERSION dummy dummy dummy\n'

    def test_unknown_version_command_means_010(self, tmp_path: Path) -> None:
        plugin = make_plugin(tmp_path, "old", """echo '{"code":4,"msg":"unknown CNI_COMMAND: VERSION"}'; exit 1\n""")
        assert get_version_info(str(plugin)) == PluginInfo(("0.1.0",))

    def test_other_errors_propagate(self, tmp_path: Path) -> None:
        plugin = make_plugin(tmp_path, "p", """echo '{"code":4,"msg":"unknown CNI_COMMAND: VERSION","details":"x"}'; exit 1\n""")
        with pytest.raises(PluginError):
            get_version_info(str(plugin))

    def test_undecodable_answer(self, tmp_path: Path) -> None:
        plugin = make_plugin(tmp_path, "p", "echo '{}'\n")
        with pytest.raises(CNIError) as info:
            get_version_info(str(plugin))
        assert info.value.code == ERR_DECODING_FAILURE

    def test_legacy_020_answer(self, tmp_path: Path) -> None:
        plugin = make_plugin(tmp_path, "p", """echo '{"cniVersion":"0.2.0"}'\n""")
        assert get_version_info(str(plugin)).supported_versions == ("0.1.0", "0.2.0")


# -- delegation ------------------------------------------------------------------------

class TestDelegate:
    def env(self, tmp_path: Path, **extra: str) -> dict[str, str]:
        return {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "ctr", "CNI_NETNS": "/n",
                "CNI_IFNAME": "eth0", "CNI_ARGS": "K=V", "PATH": "/usr/bin:/bin",
                "CNI_PATH": f"{tmp_path / 'empty'}:{tmp_path / 'bin'}", "OTHER": "o", **extra}

    def test_delegate_add(self, tmp_path: Path) -> None:
        (tmp_path / "bin").mkdir()
        log = tmp_path / "log"
        make_plugin(tmp_path / "bin", "ipam", f"""\
cat > {log}
echo "$CNI_COMMAND $CNI_CONTAINERID $CNI_NETNS $CNI_IFNAME $CNI_ARGS $OTHER" >> {log}
echo '{json.dumps(RESULT_100)}'
""")
        result = invoke.delegate_add("ipam", CONF_100, self.env(tmp_path, CNI_COMMAND="CHECK"))
        assert isinstance(result, Result) and result.ips[0].gateway == "10.1.2.1"
        assert log.read_text() == CONF_100.decode() + "ADD ctr /n eth0 K=V o\n"

    @pytest.mark.parametrize("func,verb", [(invoke.delegate_check, "CHECK"),
                                           (invoke.delegate_del, "DEL"),
                                           (invoke.delegate_gc, "GC"),
                                           (invoke.delegate_status, "STATUS")])
    def test_delegate_no_result(self, tmp_path: Path, func, verb: str) -> None:  # type: ignore[no-untyped-def]
        (tmp_path / "bin").mkdir()
        log = tmp_path / "log"
        make_plugin(tmp_path / "bin", "ipam", f"""\
cat > {log}
echo "$CNI_COMMAND $CNI_IFNAME" >> {log}
echo 'ignored'
""")
        assert func("ipam", CONF_100, self.env(tmp_path)) is None
        assert log.read_text() == CONF_100.decode() + f"{verb} eth0\n"

    def test_delegate_uses_os_environ(self, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
        (tmp_path / "bin").mkdir()
        make_plugin(tmp_path / "bin", "ipam", """echo "{\\"cniVersion\\":\\"1.0.0\\",\\"ips\\":[{\\"address\\":\\"$CNI_IFNAME\\"}]}"\n""")
        monkeypatch.setenv("CNI_PATH", str(tmp_path / "bin"))
        monkeypatch.setenv("CNI_IFNAME", "10.9.9.9/32")
        result = invoke.delegate_add("ipam", CONF_100)
        assert isinstance(result, Result) and result.ips[0].address == "10.9.9.9/32"

    def test_delegate_not_found(self, tmp_path: Path) -> None:
        with pytest.raises(PluginNotFoundError) as info:
            invoke.delegate_del("ipam", CONF_100, self.env(tmp_path))
        assert info.value.code == ERR_INTERNAL
        assert 'failed to find plugin "ipam"' in info.value.msg
        with pytest.raises(PluginNotFoundError, match="^no paths provided$"):
            invoke.delegate_add("ipam", CONF_100, {"CNI_PATH": ""})

    def test_delegate_error_propagates(self, tmp_path: Path) -> None:
        (tmp_path / "bin").mkdir()
        make_plugin(tmp_path / "bin", "ipam", """echo '{"code":3,"msg":"no such container"}'; exit 1\n""")
        with pytest.raises(PluginError) as info:
            invoke.delegate_del("ipam", CONF_100, self.env(tmp_path))
        assert (info.value.code, info.value.msg) == (3, "no such container")


# -- the Go reference plugin ---------------------------------------------------------

@pytest.mark.interop
@pytest.mark.skipif(not os.access(LOOPBACK, os.X_OK), reason="Go loopback plugin not installed")
class TestGoLoopback:
    def test_version_info(self) -> None:
        info = get_version_info(LOOPBACK)
        assert "0.4.0" in info.supported_versions and "1.0.0" in info.supported_versions
        assert info.cni_version

    def test_missing_env_error(self) -> None:
        conf = b'{"cniVersion":"1.0.0","name":"lo","type":"loopback"}'
        with pytest.raises(PluginError) as info:
            exec_plugin_with_result(LOOPBACK, conf, Args(command="ADD"))
        err = info.value
        assert err.code == ERR_INVALID_ENVIRONMENT_VARIABLES
        assert err.msg == ("required env variables "
                           "[CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME,CNI_PATH] missing")
        assert err.plugin_path == LOOPBACK and err.returncode == 1

    def test_found_via_find_in_path(self, tmp_path: Path) -> None:
        assert find_in_path("loopback", [str(tmp_path), "/usr/lib/cni"]) == LOOPBACK


