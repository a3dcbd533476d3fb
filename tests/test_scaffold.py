"""``cnitool new-plugin`` and :mod:`cnicore.cli.scaffold`: names, substitution, refusals,
and the whole life of a scaffolded plugin in a fresh virtualenv.

The end-to-end test installs cnicore from this checkout (not editable, so the
example project must travel inside the wheel) and the scaffolded project into
a new venv without system site-packages, runs the project's own tests there,
installs the launchers into a tmp bin dir and execs the new plugin chained
after our bridge (host-local IPAM) in sandbox namespaces. pip's download cache
is the default one, so only the first run fetches anything.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cnicore.cli import scaffold
from cnicore.cli.commands import main
from cnicore.cli.scaffold import ScaffoldError, new_plugin, template_files, validate_name
from cnicore.launchers import read_header
from cnicore.rtnl import AF_INET, RtnlSocket
from cnicore.testing import assert_result_has_route, run_executable

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "cni_plugin_template"
CNITOOL = os.path.join(os.path.dirname(sys.executable), "cnitool")

privileged = pytest.mark.privileged


def project_files(path: Path | str) -> dict[str, str]:
    """The project's own files (no build leftovers) and their text."""
    return {relative: (Path(path) / relative).read_text() for relative in template_files(str(path))}


# -- names -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["my-routes", "x", "0day", "a-b-c", "egress2"])
def test_valid_names(name: str) -> None:
    validate_name(name)


@pytest.mark.parametrize(("name", "message"), [
    ("", "invalid plugin name"),
    ("My-Routes", "invalid plugin name"),
    ("-lead", "invalid plugin name"),
    ("my_routes", "invalid plugin name"),
    ("a/b", "invalid plugin name"),
    ("x" * 65, "longer than 64"),
    ("bridge", "cnicore built-in"),
    ("host-local", "cnicore built-in"),
    ("tuning", "cnicore built-in"),
    ("macvlan", "cnicore built-in|reference CNI plugin"),  # a reference type, built in or not (yet)
    ("portmap", "cnicore built-in"),
])
def test_invalid_names(name: str, message: str) -> None:
    with pytest.raises(ScaffoldError, match=message):
        validate_name(name)


def test_a_reference_type_is_refused_even_when_no_built_in_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scaffold, "builtin_types", lambda: frozenset())
    with pytest.raises(ScaffoldError, match="reference CNI plugin"):
        validate_name("portmap")


def test_names_derived() -> None:
    assert scaffold.package_name("my-routes") == "cni_plugin_my_routes"
    assert scaffold.distribution_name("my-routes") == "cni-plugin-my-routes"


# -- the copy ----------------------------------------------------------------------------


def test_scaffold_substitutes_every_name(tmp_path: Path) -> None:
    dest = new_plugin("egress-routes", tmp_path / "proj")
    files = project_files(Path(dest))
    assert sorted(files) == sorted(p.replace("cni_plugin_template", "cni_plugin_egress_routes")
                                   for p in template_files(str(TEMPLATE)))
    assert "src/cni_plugin_egress_routes/plugin.py" in files
    for path, text in files.items():
        assert "template" not in text.lower(), f"{path} still names the example"
    pyproject = files["pyproject.toml"]
    assert 'name = "cni-plugin-egress-routes"' in pyproject
    assert 'egress-routes = "cni_plugin_egress_routes.plugin"' in pyproject
    assert 'PLUGIN_TYPE = "egress-routes"' in files["src/cni_plugin_egress_routes/plugin.py"]
    assert "from cni_plugin_egress_routes import plugin" in files["tests/test_plugin.py"]
    assert oct(os.stat(dest).st_mode & 0o777) == oct(0o777 & ~current_umask())


def test_license_is_an_spdx_expression(tmp_path: Path) -> None:
    """PEP 639's form (setuptools 77+): builds print no deprecation warning about a license table,
    and the metadata carries ``License-Expression``. For cnicore, the example and what it scaffolds."""
    from importlib.metadata import metadata

    scaffolded = Path(new_plugin("lic-routes", tmp_path / "proj"))
    for project in (ROOT, TEMPLATE, scaffolded):
        pyproject = (project / "pyproject.toml").read_text()
        assert 'requires = ["setuptools>=77"]' in pyproject, project
        assert '\nlicense = "Apache-2.0"\nlicense-files = ["LICENSE"]\n' in pyproject, project
        assert "Apache License" in (project / "LICENSE").read_text()
    for distribution in ("cnicore", "cni-plugin-template"):  # as installed (scripts/dev installs both)
        meta = metadata(distribution)
        assert meta["License-Expression"] == "Apache-2.0" and meta["License"] is None, distribution
        assert meta.get_all("License-File") == ["LICENSE"], distribution


def test_builds_print_no_license_warning(tmp_path: Path) -> None:
    """Building cnicore's wheel and a scaffolded project's, as any install does: no warning about the
    license (setuptools deprecated the table form and stops building it after 2027-02-18). Uses this
    environment's pip, which shows the build backend's warnings even with ``-q``."""
    project = new_plugin("quiet-routes", tmp_path / "proj")
    built = run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check",
                 "-w", str(tmp_path / "wheels"), str(ROOT), project], timeout=600)
    output = built.stdout + built.stderr
    assert "license" not in output.lower() and "deprecat" not in output.lower(), output
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "wheels").iterdir()) == ["cni_plugin_quiet_routes",
                                                                                    "cnicore"]


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_scaffold_leaves_build_leftovers_behind(tmp_path: Path) -> None:
    fake = tmp_path / "example"
    for relative in ("pyproject.toml", "src/cni_plugin_template/plugin.py", "build/lib/x.py",
                     "src/cni_plugin_template.egg-info/PKG-INFO", "src/cni_plugin_template/__pycache__/p.pyc",
                     ".pytest_cache/v", "tests/test_plugin.py", "tests/x.pyc"):
        (fake / relative).parent.mkdir(parents=True, exist_ok=True)
        (fake / relative).write_text("template-routes cni_plugin_template\n")
    assert template_files(str(fake)) == ["pyproject.toml", "src/cni_plugin_template/plugin.py",
                                         "tests/test_plugin.py"]
    dest = Path(new_plugin("abc", tmp_path / "out", template=str(fake)))
    assert project_files(dest) == {"pyproject.toml": "abc cni_plugin_abc\n",
                                   "src/cni_plugin_abc/plugin.py": "abc cni_plugin_abc\n",
                                   "tests/test_plugin.py": "abc cni_plugin_abc\n"}


def test_scaffold_refuses_a_used_destination(tmp_path: Path) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(ScaffoldError, match="not empty"):
        new_plugin("abc", busy)
    assert [p.name for p in busy.iterdir()] == ["keep.txt"]
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(ScaffoldError, match="not a directory"):
        new_plugin("abc", afile)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert new_plugin("abc", empty) == str(empty)
    assert (empty / "pyproject.toml").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "busy", "empty"]  # no staging dirs left


def test_default_destination_and_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    ok = runner.invoke(main, ["new-plugin", "abc"])
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "cni-plugin-abc" / "src" / "cni_plugin_abc" / "plugin.py").is_file()
    again = runner.invoke(main, ["new-plugin", "abc"])
    assert again.exit_code == 1 and "not empty" in again.output
    bad = runner.invoke(main, ["new-plugin", "loopback", "--dest", str(tmp_path / "lo")])
    assert bad.exit_code == 1 and "built-in" in bad.output and not (tmp_path / "lo").exists()


def test_checkout_template_is_the_one_found() -> None:
    """Editable installs read the example from the checkout's root."""
    root = Path(scaffold.template_root())
    assert root in (TEMPLATE, Path(scaffold.__file__).parent / scaffold.PACKAGED_DIR)
    assert template_files(str(root)) == template_files(str(TEMPLATE))


# -- the whole life of a scaffolded plugin ------------------------------------------------


def run(argv: list[str], *, timeout: float = 300, env: dict[str, str] | None = None,
        **kwargs) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("CNI_", "PYTHON", "VIRTUAL_ENV"))
            and k not in ("PIP_REQUIRE_VIRTUALENV", "CNICORE_TEST_LAUNCHERS")}
    env = dict(base, CNICORE_FAIL_ON_SKIP="1", **(env or {}))
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                          stdin=subprocess.DEVNULL, **kwargs)
    assert proc.returncode == 0, f"{argv} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


@privileged
def test_new_plugin_in_a_fresh_venv(tmp_path: Path, cni_sandbox) -> None:
    name = "e2e-routes"
    project = tmp_path / "project"
    run([CNITOOL, "new-plugin", name, "--dest", str(project)])

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    python = str(venv / "bin" / "python")
    run([python, "-m", "pip", "install", "-q", str(ROOT), f"{project}[test]"], timeout=600)
    site = run([python, "-c", "import cnicore, sys; print(cnicore.__file__); print(sys.flags.no_site)"]).stdout
    assert site.startswith(str(venv)), "cnicore must be the venv's own, not editable: " + site

    # The installed (non-editable) cnicore carries the example: it scaffolds the same project.
    again = tmp_path / "again"
    run([str(venv / "bin" / "cnitool"), "new-plugin", name, "--dest", str(again)])
    assert project_files(again) == project_files(project)

    tests = run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", "tests"], cwd=project)
    assert " passed" in tests.stdout and "skipped" not in tests.stdout and "failed" not in tests.stdout, tests.stdout

    bindir = tmp_path / "bin"
    run([str(venv / "bin" / "cnitool"), "plugins", "install", str(bindir)])
    header = read_header(str(bindir / name))
    assert header is not None and header.module == "cni_plugin_e2e_routes.plugin"
    assert header.python.startswith(str(venv)) and header.distribution == "cni-plugin-e2e-routes"

    host, ctr = cni_sandbox.host, cni_sandbox.container()
    bridge_conf = {"cniVersion": "1.0.0", "name": "e2enet", "type": "bridge", "bridge": "cni0",
                   "isGateway": True, "ipam": {"type": "host-local", "dataDir": str(tmp_path / "ipam"),
                                               "ranges": [[{"subnet": "10.10.0.0/24"}]]}}
    routes_conf = {"cniVersion": "1.0.0", "name": "e2enet", "type": name,
                   "routes": [{"dst": "10.99.0.0/16"}, {"dst": "192.0.2.0/24", "gw": "10.10.0.254"}]}

    bridged = run_executable(str(bindir / "bridge"), "ADD", bridge_conf, host=host, netns=ctr).ok().json
    chained = dict(routes_conf, prevResult=bridged)
    result = run_executable(str(bindir / name), "ADD", chained, host=host, netns=ctr).ok().json
    assert_result_has_route(result, "10.99.0.0/16", "10.10.0.1")
    assert_result_has_route(result, "192.0.2.0/24", "10.10.0.254")

    def routes() -> set[tuple[str, str]]:
        with RtnlSocket() as rtnl:
            eth0 = rtnl.link("eth0").index
            return {(r.dst, r.gw) for r in rtnl.routes(AF_INET) if r.ifindex == eth0}

    assert ctr.do(routes) >= {("10.99.0.0/16", "10.10.0.1"), ("192.0.2.0/24", "10.10.0.254")}
    run_executable(str(bindir / name), "CHECK", dict(routes_conf, prevResult=result), host=host,
                   netns=ctr).ok()
    run_executable(str(bindir / name), "DEL", dict(routes_conf, prevResult=result), host=host,
                   netns=ctr).ok()
    assert not {dst for dst, _gw in ctr.do(routes)} & {"10.99.0.0/16", "192.0.2.0/24"}
    run_executable(str(bindir / "bridge"), "DEL", dict(bridge_conf, prevResult=result), host=host,
                   netns=ctr).ok()


# -- the kinds: chained (above), main and ipam ----------------------------------------------

KIND_NAMES = {"chained": "k-routes", "main": "k-ptp", "ipam": "k-ipam"}


@pytest.mark.parametrize("kind", sorted(scaffold.KINDS))
def test_every_kind_substitutes_every_name(tmp_path: Path, kind: str) -> None:
    template = scaffold.KINDS[kind]
    name = KIND_NAMES[kind]
    dest = new_plugin(name, tmp_path / "proj", kind=kind)
    files = project_files(Path(dest))
    package = scaffold.package_name(name)
    assert sorted(files) == sorted(p.replace(template.package, package)
                                   for p in template_files(str(ROOT / template.source_dir)))
    for path, text in files.items():
        assert "template" not in text.lower(), f"{path} still names the example"
    assert f'name = "cni-plugin-{name}"' in files["pyproject.toml"]
    assert f'{name} = "{package}.plugin"' in files["pyproject.toml"]
    assert f'PLUGIN_TYPE = "{name}"' in files[f"src/{package}/plugin.py"]


def test_kind_from_the_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(main, ["new-plugin", "abc-ptp", "--kind", "main", "--dest", str(tmp_path / "p")])
    assert ok.exit_code == 0, ok.output
    assert "setup_veth" in (tmp_path / "p" / "src" / "cni_plugin_abc_ptp" / "plugin.py").read_text()
    bad = runner.invoke(main, ["new-plugin", "abc", "--kind", "meta", "--dest", str(tmp_path / "q")])
    assert bad.exit_code == 2 and "'meta' is not one of 'chained', 'main', 'ipam'" in bad.output
    assert not (tmp_path / "q").exists()
    with pytest.raises(ScaffoldError, match="unknown plugin kind 'meta': choose one of chained, main, ipam"):
        new_plugin("abc", tmp_path / "r", kind="meta")


@pytest.mark.parametrize("kind", sorted(scaffold.KINDS))
def test_checkout_templates_are_the_ones_found(kind: str) -> None:
    template = scaffold.KINDS[kind]
    root = Path(scaffold.template_root(kind))
    assert root in (ROOT / template.source_dir, Path(scaffold.__file__).parent / template.packaged_dir)
    assert template_files(str(root)) == template_files(str(ROOT / template.source_dir))


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv (no system site-packages) with cnicore installed from this checkout, not
    editable: the examples must travel inside the wheel. Shared by the kinds' tests below."""
    venv = tmp_path_factory.mktemp("kinds") / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(ROOT)],
        timeout=600)
    return venv


@privileged
@pytest.mark.parametrize("kind", sorted(scaffold.KINDS))
def test_new_plugin_kind_in_a_fresh_venv(tmp_path: Path, fresh_venv: Path, kind: str) -> None:
    """Scaffolded by the venv's own cnitool (from the example inside the installed wheel),
    installed, and the project's own tests pass cold (Python launchers) and warm
    (native launchers served by a cnitool daemon of that venv)."""
    name = KIND_NAMES[kind]
    project = tmp_path / "project"
    run([str(fresh_venv / "bin" / "cnitool"), "new-plugin", name, "--kind", kind, "--dest", str(project)])
    assert project_files(project) == project_files(new_plugin(name, tmp_path / "from-checkout", kind=kind))
    python = str(fresh_venv / "bin" / "python")
    run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", f"{project}[test]"], timeout=600)
    for launchers in ("python", "native"):
        tests = run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", "tests"], cwd=project,
                    env={"CNICORE_TEST_LAUNCHERS": launchers})
        assert " passed" in tests.stdout and "skipped" not in tests.stdout and "failed" not in tests.stdout, \
            (launchers, tests.stdout)
