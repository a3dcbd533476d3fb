"""The two sides of every comparison: Go's reference binaries and ours.

:class:`Ours` is how our plugins are reached — a CNI bin dir and the
interpreter whose launchers fill it. The default kind, ``exec``, is a
non-editable install (compiled bytecode) with ``cnitool plugins install``
launchers; another kind (the warm server's launchers, say) is just another
bin dir and label, so every section can run "through the server" unchanged.
:class:`Go` is Debian's plugins plus our small driver of Go's libcni
(tests/go/golibcni), which stands in for Go's cnitool (not packaged).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GO_DIR = "/usr/lib/cni"
GOPATH = "/usr/share/gocode"
GOLIBCNI_SOURCE = os.path.join(REPO, "tests", "go", "golibcni")


def scratch(name: str) -> str:
    """A temp path of this checkout's own: several checkouts bench on one machine."""
    import hashlib

    return os.path.join(tempfile.gettempdir(), f"{name}-{hashlib.sha1(REPO.encode()).hexdigest()[:8]}")


class Ours:
    """Our plugins: ``bin_dir`` for runtimes, ``python`` and ``cnitool`` of that environment."""

    def __init__(self, kind: str, bin_dir: str, python: str) -> None:
        self.kind = kind
        self.bin_dir = bin_dir
        self.python = python
        self.cnitool = os.path.join(os.path.dirname(python), "cnitool")

    def describe(self) -> str:
        return f"{self.kind} launchers in {self.bin_dir} ({self.python})"


def build_venv(path: str) -> str:
    """cnicore installed non-editable into ``path``; its python."""
    pip = [os.path.join(path, "bin", "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    if not os.path.exists(os.path.join(path, "bin", "python")):
        subprocess.run([sys.executable, "-m", "venv", path], check=True)
        # A current pip writes console scripts that do not import re (~8 ms of every cnitool run).
        subprocess.run(pip + ["--upgrade", "pip"], check=True)
    subprocess.run(pip + ["--force-reinstall", "--no-deps", REPO], check=True)
    subprocess.run(pip + [REPO], check=True)
    return os.path.join(path, "bin", "python")


#: The CNI type the bench gives the plugin it scaffolds from cnicore's main example (``--kind main``).
THIRD_PARTY_TYPE = "bench-ptp"
#: The main example's own type: what --short measures instead (scripts/dev installs the examples
#: into its environment; the bench installs nothing there).
EXAMPLE_MAIN_TYPE = "template-ptp"


def install_third_party(python: str) -> str:
    """Scaffold a project from the main plugin example with ``python``'s own ``cnitool new-plugin``
    and install it (not editable) into that environment, as a plugin author would; its type.

    Only for the bench's scratch venv: installing it would change any other environment."""
    project = os.path.join(tempfile.mkdtemp(prefix="cnicore-bench-third-party-"), THIRD_PARTY_TYPE)
    cnitool = os.path.join(os.path.dirname(python), "cnitool")
    subprocess.run([cnitool, "new-plugin", THIRD_PARTY_TYPE, "--kind", "main", "--dest", project], check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--force-reinstall",
                    "--no-deps", project], check=True)
    shutil.rmtree(os.path.dirname(project), ignore_errors=True)
    return THIRD_PARTY_TYPE


def install_ours(python: str, kind: str = "exec", socket: str = "") -> Ours:
    """Launchers of ``python``'s environment, installed by its cnitool into a fresh dir:
    Python launchers (the cold path), or native ones for the warm server at ``socket``."""
    bin_dir = tempfile.mkdtemp(prefix="cnicore-bench-bin-")
    cnitool = os.path.join(os.path.dirname(python), "cnitool")
    flags = ["--native", "--socket", socket] if socket else ["--python"]
    subprocess.run([cnitool, "plugins", "install", bin_dir, *flags], check=True, stdout=subprocess.DEVNULL)
    return Ours(kind, bin_dir, python)


class Go:
    """Debian's Go plugins and, if the toolchain and Go's libcni are installed, the driver."""

    def __init__(self, golibcni: str | None, why_not: str = "") -> None:
        self.bin_dir = GO_DIR
        self.golibcni = golibcni
        self.why_not = why_not


def build_go(cache_root: str) -> Go:
    """Build tests/go/golibcni against Debian's libcni (cached between runs)."""
    if not os.access(os.path.join(GO_DIR, "bridge"), os.X_OK):
        raise SystemExit(f"Go reference plugins missing in {GO_DIR} (scripts/dev installs them)")
    if not shutil.which("go") or not os.path.isdir(os.path.join(GOPATH, "src/github.com/containernetworking/cni")):
        return Go(None, "go toolchain or golang-github-appc-cni-dev not installed")
    os.makedirs(cache_root, exist_ok=True)
    out = os.path.join(cache_root, "golibcni")
    env = dict(os.environ, GO111MODULE="off", GOPATH=GOPATH, GOFLAGS="",
               GOCACHE=os.path.join(cache_root, "gocache"))
    proc = subprocess.run(["go", "build", "-o", out, "."], cwd=GOLIBCNI_SOURCE, env=env,
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        return Go(None, f"go build failed: {proc.stderr.strip()[-300:]}")
    return Go(out)


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without CNI_* and PYTHON* variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CNI_", "PYTHON", "NETCONFPATH", "CAP_ARGS"))}
    env.update(extra)
    return env
