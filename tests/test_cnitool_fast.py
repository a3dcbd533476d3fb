"""cnitool's fast path: the plain network-command forms parsed without click, exactly as click parses them.

No namespaces: the verbs' work is replaced by a recorder, both through the fast
parser and through click, and the two must agree on every form; anything the
fast parser declines goes to click (help, errors, other commands).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from cnicore.cli import commands, netverbs
from cnicore.cli.cnitool import fast_argv

PLAIN = [
    ["add", "net", "/var/run/netns/x"],
    ["del", "net", "ns"],
    ["check", "net", "ns", "-i", "eth1"],
    ["gc", "net", "-i", "eth1", "ns"],
    ["status", "--ifname", "eth2", "net", "ns"],
    ["add", "net", "ns", "--ifname=eth3"],
    ["-i", "net9", "add", "net", "ns"],
    ["--ifname", "net9", "del", "net", "ns", "-i", "eth0"],
    ["--ifname=a", "-i", "b", "add", "net", "ns", "-i", "c", "--ifname", "d"],
    ["add", "", "ns"],
    ["add", "net", "ns", "--ifname="],
]
DECLINED = [
    [], ["--help"], ["-h"], ["--version"], ["add"], ["add", "--help"], ["add", "net"],
    ["add", "net", "ns", "extra"], ["add", "net", "ns", "-i"], ["add", "net", "ns", "-i", "-x"],
    ["add", "-inet1", "net", "ns"], ["add", "--", "net", "ns"], ["add", "net", "-", "ns"],
    ["validate", "net"], ["version", "bridge"], ["plugins", "list"], ["netns", "list"],
    ["-x", "add", "net", "ns"], ["ADD", "net", "ns"], ["add", "net", "ns", "--json"],
]


@pytest.mark.parametrize("argv", PLAIN, ids=" ".join)
def test_fast_parse_equals_clicks(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, str, str, str | None]] = []
    monkeypatch.setattr(netverbs, "run_verb", lambda *args: seen.append(args))
    result = CliRunner().invoke(commands.main, argv)
    assert result.exit_code == 0, result.output
    assert [fast_argv(argv)] == seen


@pytest.mark.parametrize("argv", DECLINED, ids=" ".join)
def test_everything_else_goes_to_click(argv: list[str]) -> None:
    assert fast_argv(argv) is None


# -- our plugins served inside cnitool, observably as their exec ---------------------------------

@pytest.fixture(scope="module")
def launchers(tmp_path_factory: pytest.TempPathFactory) -> str:
    from cnicore.cli.install import install
    from cnicore.registry import get

    path = tmp_path_factory.mktemp("bin")
    install(str(path), entries=[get(name) for name in ("bridge", "host-local", "tuning")])
    return str(path)


FAILING = [
    ({"type": "bridge", "mtu": "big", "ipam": {"type": "host-local", "subnet": "10.77.0.0/24"}}, "ctr"),
    ({"type": "bridge", "ipam": {"type": "host-local", "subnet": "10.77.0.0/33"}}, "ctr"),
    ({"type": "tuning", "sysctl": {"kernel.hostname": "x"}}, "ctr"),
    ({"type": "bridge", "ipam": {"type": "host-local", "subnet": "10.77.0.0/24"}}, "/etc/hostname"),
    ({"type": "tuning", "mtu": 1300}, "/nonexistent/netns"),
]


@pytest.mark.parametrize("plugin,netns", FAILING)
@pytest.mark.parametrize("verb", ["add", "check", "del"])
def test_in_process_failures_are_the_execs(plugin: dict, netns: str, verb: str, launchers: str,
                                           tmp_path, cni_sandbox) -> None:
    """Exit status, stdout and stderr of cnitool are the same whether our plugins
    are served in its process or exec'd (CNICORE_CNITOOL_EXEC=1). Run from the
    sandbox's host namespace against a throwaway container namespace."""
    import json as _json

    if netns == "ctr":
        netns = cni_sandbox.container().path

    confdir = tmp_path / "net.d"
    confdir.mkdir()
    plugin = dict(plugin)
    if "ipam" in plugin:
        plugin["ipam"] = dict(plugin["ipam"], dataDir=str(tmp_path / "ipam"))
    (confdir / "n.conflist").write_text(_json.dumps({"cniVersion": "1.0.0", "name": "n", "plugins": [plugin]}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CNI_", "PYTHON"))}
    env.update(NETCONFPATH=str(confdir), CNI_PATH=launchers, CNI_CACHE_DIR=str(tmp_path / "cache"))
    cnitool = os.path.join(os.path.dirname(sys.executable), "cnitool")
    outs = []
    for mode in ("0", "1"):
        proc = cni_sandbox.host.do(subprocess.run, [cnitool, verb, "n", netns],
                                   env=dict(env, CNICORE_CNITOOL_EXEC=mode), capture_output=True, timeout=60,
                                   stdin=subprocess.DEVNULL)
        outs.append((proc.returncode, proc.stdout, proc.stderr))
    assert outs[0] == outs[1]


@pytest.mark.parametrize("data", [b"", b"/var/run/netns/ctr1", "/run/netns/é".encode(), bytes(range(256)) * 9])
def test_container_id_digest_is_hashlibs(data: bytes) -> None:
    import hashlib

    assert netverbs.sha512_hex(data) == hashlib.sha512(data).hexdigest()
