#!/usr/bin/env python3
"""One bench run: Go's reference plugins and ours side by side, ratios in one report.

Sections (each interleaves Go and ours round by round, in throwaway network
namespaces): VERSION per plugin and loopback ADD/DEL; the bridge + host-local + tuning chain
ADD/CHECK/DEL exec by exec, through libcni and through cnitool; bridge's
own ADD/DEL work in a warm process against Go's whole process; host-local
at 0/50/99 % of a /20; 50 concurrent chain ADDs and DELs; a third-party
main plugin (scaffolded from cnicore's main example into the bench's venv)
against Go's ptp; podman's ``run -d -p`` and ``rm -f`` on each side's plugins alone
(not in ``--short`` unless ``--only podman`` names it); dhcp, each side with its own daemon
and dnsmasq on a bridge; the link plugins this kernel
lacks (``links``: ipvlan, vlan, vrf, dummy), run by the ``guest`` section in a guest on
Debian's stock kernel beside Go's binaries, cold and warm; and ``cluster-ipam``
(bench/cluster_ipam_bench.py: a 3-member etcd, its phases with their share of the raw
limit and their CPU per ADD) — neither in ``--short``. Then the warm
server (``cnitool daemon``, in a throwaway namespace of its own): the exec
sections again with native launchers served by it ("warm:" rows; ours cold
are Python launchers), and its footprint. ``--no-server`` skips that part.

Writes ``<out>/bench.json`` and ``<out>/bench.md`` (medians, p10–p90 spread,
ratio ours/Go, peak RSS); ``--readme`` also puts the table into
bench/README.md. ``--short`` is the CI form: a few rounds, small numbers,
this environment's own launchers — it must run, not meet numbers.

Run as root: ``sudo bash scripts/dev bench [--short] [--rounds N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import sections  # noqa: E402
from sides import (  # noqa: E402
    EXAMPLE_MAIN_TYPE,
    REPO,
    Go,
    Ours,
    build_go,
    build_venv,
    install_ours,
    install_third_party,
    scratch,
)

README = os.path.join(REPO, "bench", "README.md")
#: The sections, in the order they run (`--only NAME` picks some).
SECTIONS = ["version", "exec", "libcni", "cnitool", "warm", "host-local", "meta", "concurrent", "third-party",
            "ptp", "portmap", "sbr", "macvlan", "host-device", "dhcp", "links", "podman", "guest", "cluster-ipam"]
#: Sections --short leaves out unless --only names them (a real client: seconds a round; the
#: guest: a boot and every exec 10-30x slower under TCG).
NOT_SHORT = ["podman", "guest", "cluster-ipam"]
#: What the ``guest`` section runs on Debian's stock kernel (this machine's lacks their link types).
GUEST_SECTIONS = ["links"]
#: Its rounds at most: every exec costs 10-30x the host's under TCG.
GUEST_ROUNDS = 10
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def machine() -> dict[str, Any]:
    def first(path: str, key: str) -> str:
        try:
            with open(path) as fh:
                return next((line.split(":", 1)[1].strip() for line in fh if line.startswith(key)), "")
        except OSError:
            return ""

    go_version = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "containernetworking-plugins"],
                                capture_output=True, text=True).stdout
    return {"kernel": platform.release(), "cpus": os.cpu_count(), "cpu": first("/proc/cpuinfo", "model name"),
            "memory": first("/proc/meminfo", "MemTotal"), "python": platform.python_version(),
            "go_plugins": go_version, "loadavg_at_start": os.getloadavg(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def warm_launchers() -> str:
    """host-local's launcher for *this* interpreter, so warm bridge runs IPAM in-process."""
    from cnicore.cli.install import install
    from cnicore.registry import get

    path = tempfile.mkdtemp(prefix="cnicore-bench-warm-")
    install(path, entries=[get("host-local")])
    return path


def run(opts: argparse.Namespace) -> dict[str, Any]:
    from cnicore.testing import Sandbox

    started = time.perf_counter()
    host = machine()
    third_party = ""  # the type of the plugin scaffolded from the main example, if installed
    if opts.ours_bin:
        ours = Ours(opts.ours_kind, opts.ours_bin, opts.ours_python or sys.executable)
    elif opts.short or opts.in_guest:
        ours = install_ours(sys.executable)  # this environment's launchers: no venv build in CI
    else:
        python = build_venv(opts.venv)
        if not opts.only or "third-party" in opts.only:
            third_party = install_third_party(python)  # before the launchers and the server: they see it
        ours = install_ours(python)
    go = Go(None, "not built in the guest") if opts.in_guest else build_go(scratch("cnicore-bench-go"))
    warm = Ours("warm", warm_launchers(), sys.executable)
    rounds = opts.rounds or (2 if opts.short else 20)
    count = opts.concurrency or (4 if opts.short else 50)
    prefix = 24 if opts.short else 20
    work = tempfile.mkdtemp(prefix="cnicore-bench-work-")
    rows: list[dict[str, Any]] = []

    def steps(side: Ours, label: str) -> None:
        every = {
            "version": lambda: sections.version(sandbox, go, side, rounds),
            "exec": lambda: sections.chain_exec(sandbox, go, side, work, rounds),
            "libcni": lambda: sections.chain_libcni(sandbox, go, side, work, rounds),
            "cnitool": lambda: sections.chain_cnitool(sandbox, go, side, work, rounds),
            "warm": lambda: sections.bridge_warm(sandbox, go, warm, work, rounds),
            "host-local": lambda: sections.host_local(go, side, work, rounds, prefix),
            "meta": lambda: sections.meta(sandbox, go, side, work, rounds),
            "concurrent": lambda: sections.concurrent(sandbox, go, side, work, count, 1 if opts.short else 3),
            "third-party": lambda: sections.third_party_main(sandbox, go, side, work, rounds,
                                                             third_party or EXAMPLE_MAIN_TYPE),
            "ptp": lambda: sections.ptp_static(sandbox, go, side, work, rounds),
            "portmap": lambda: sections.portmap(sandbox, go, side, rounds),
            "sbr": lambda: sections.sbr(sandbox, go, side, work, rounds),
            "macvlan": lambda: sections.macvlan(sandbox, go, side, work, rounds),
            "host-device": lambda: sections.host_device(sandbox, go, side, rounds),
            "dhcp": lambda: sections.dhcp(sandbox, go, side, work, rounds),
            "links": lambda: sections.links(sandbox, go, side, work, rounds),
            "podman": lambda: sections.podman(go, side, min(rounds, 10)),
        }
        for name, step in every.items():
            if (opts.only and name not in opts.only) or (label and name in ("warm", "host-local")):
                continue
            if opts.short and not opts.only and name in NOT_SHORT:
                continue
            for case in step():
                rows.append(case.row())
                rows[-1]["section"] = label + rows[-1]["section"]
                print(format_row(rows[-1]), flush=True)

    with Sandbox("cnitest-bench") as sandbox:
        sandbox.host.do(steps, ours, "")
        if not opts.no_server and not opts.ours_bin:
            from cnicore.testing import WarmServer

            server_dir = tempfile.mkdtemp(prefix="cnicore-bench-server-")
            with WarmServer(server_dir, workers=opts.workers, python=ours.python,
                            prefix="cnitest-bench-srv") as server:
                served = install_ours(ours.python, "warm server", server.socket)
                sandbox.host.do(steps, served, "warm: ")
                time.sleep(0.5)  # the last workers' replacements settle
                for case in sections.server_footprint(server.pid, server.workers(), 1.0 if opts.short else 5.0):
                    rows.append(case.row())
                    print(format_row(rows[-1]), flush=True)
            rows[-1]["served_requests"] = server.served()
            shutil.rmtree(server_dir, ignore_errors=True)
            shutil.rmtree(served.bin_dir, ignore_errors=True)
    # What this run made in /tmp, kept only when a section failed, to look into.
    for path in (work, warm.bin_dir, "" if opts.ours_bin else ours.bin_dir):
        if path:
            shutil.rmtree(path, ignore_errors=True)
    if "guest" in opts.only or (not opts.only and not opts.short):
        for row in guest_rows(ours.python, min(rounds, GUEST_ROUNDS), opts.workers):
            rows.append(row)
            print(format_row(row), flush=True)
    if "cluster-ipam" in opts.only or (not opts.only and not opts.short):
        for row in cluster_ipam_rows(ours.python):
            rows.append(row)
            print(format_row(row), flush=True)
    return {"machine": host, "ours": ours.describe(), "go": go.bin_dir,
            "golibcni": go.golibcni or go.why_not, "rounds": rounds, "concurrency": count,
            "short": opts.short, "seconds": round(time.perf_counter() - started, 1), "rows": rows}


def guest_rows(python: str, rounds: int, workers: int) -> list[dict[str, Any]]:
    """The GUEST_SECTIONS, cold and warm, run by this bench inside a guest on Debian's stock
    kernel (scripts/guest) with ``python``'s environment; their rows, marked "guest: "."""
    out = tempfile.mkdtemp(prefix="cnicore-bench-guest-", dir="/var/tmp")  # the guest's /tmp is its own
    shares = ["--share", out]
    env_root = os.path.dirname(os.path.dirname(python))
    if env_root.startswith("/tmp/"):
        shares += ["--share", env_root]
    argv = [os.path.join(REPO, "scripts", "guest"), "run", "--timeout", "1500", *shares, "--",
            python, os.path.join(REPO, "bench", "run.py"), "--in-guest", "--rounds", str(rounds),
            "--workers", str(workers), "--out", out]
    for name in GUEST_SECTIONS:
        argv += ["--only", name]
    try:
        proc = subprocess.run(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            with open(os.path.join(out, "bench.json")) as fh:
                rows = json.load(fh)["rows"]
        except (OSError, ValueError, KeyError):
            tail = proc.stdout.strip().splitlines()[-5:]
            return [{"section": "guest", "case": "skipped",
                     "skipped": f"the guest run failed (exit {proc.returncode}): {' / '.join(tail)}"}]
    finally:
        shutil.rmtree(out, ignore_errors=True)
    for row in rows:
        row["section"] = "guest: " + row["section"]
    return rows


def cluster_ipam_rows(python: str) -> list[dict[str, Any]]:
    """bench/cluster_ipam_bench.py with ``python``'s environment (a 3-member etcd, 16 clients
    on 3 nodes): its phases as rows. There is no Go cluster-ipam; the server phases carry
    their share of the raw limit measured in the same run, and every phase its CPU per ADD."""
    proc = subprocess.run([python, os.path.join(REPO, "bench", "cluster_ipam_bench.py"), "--json"],
                          cwd=REPO, capture_output=True, text=True, timeout=1800)
    try:
        phases = json.loads(proc.stdout)
    except ValueError:
        return [{"section": "cluster-ipam", "case": "skipped",
                 "skipped": f"the cluster-ipam bench failed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}"}]
    raw = next((float(p["adds_per_s"]) for p in phases if p["phase"] == "raw limit"), 0.0)
    rows = []
    for phase in phases:
        cpu = phase["cpu_ms_per_add"]
        row: dict[str, Any] = {"section": "cluster-ipam", "case": phase["phase"], "adds_per_s": phase["adds_per_s"],
                               "failed": phase["failed"], "p50_ms": phase["p50_ms"], "p99_ms": phase["p99_ms"],
                               "cpu_ms_per_add": f"{cpu['clients']}+{cpu['server']}+{cpu['etcd']}"}
        if str(phase["phase"]).startswith("server") and "/s" not in str(phase["phase"]) and raw:
            row["share_of_raw_limit"] = round(float(phase["adds_per_s"]) / raw, 2)
        for key in ("duplicates", "lost", "orphans"):
            if key in phase:
                row[key] = phase[key]
        rows.append(row)
    return rows


def _cell(side: dict[str, Any] | None) -> str:
    if not side:
        return "–"
    return f"{side['median_ms']:.1f} ms ({side['p10_ms']:.1f}–{side['p90_ms']:.1f})"


def _rss(side: dict[str, Any] | None) -> str:
    return f"{side['peak_rss_kib'] / 1024:.1f} MB" if side and "peak_rss_kib" in side else ""


def format_row(row: dict[str, Any]) -> str:
    if "skipped" in row:
        return f"| {row['section']} | {row.get('case', '')} | skipped: {row['skipped']} | | | | |"
    ratio = f"{row['ratio']:.2f}x" if "ratio" in row else ""
    extras = [f"{k.replace('_', ' ')}: {v:.2f}" if isinstance(v, float) else f"{k.replace('_', ' ')}: {v}"
              for k, v in row.items() if k not in ("section", "case", "go", "ours", "ratio", "note")]
    note = "; ".join(([row["note"]] if "note" in row else []) + extras)
    return (f"| {row['section']} | {row['case']} | {_cell(row.get('go'))} | {_cell(row.get('ours'))} | {ratio} "
            f"| {_rss(row.get('go'))} | {_rss(row.get('ours'))} | {note} |")


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"Run {m['date']} on {m['cpus']} × {m['cpu']}, {m['memory']}, Linux {m['kernel']}, "
        f"Python {m['python']}, Go plugins {m['go_plugins']} (load at start {m['loadavg_at_start'][0]:.2f}); "
        f"{report['rounds']} rounds, {report['concurrency']} concurrent; ours: {report['ours']}"
        f"{' (short form)' if report['short'] else ''}.",
        "",
        "| section | case | Go median (p10–p90) | ours median (p10–p90) | ours/Go | Go peak RSS | ours peak RSS "
        "| notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [format_row(row) for row in report["rows"]]
    return "\n".join(lines) + "\n"


def update_readme(table: str) -> None:
    with open(README) as fh:
        text = fh.read()
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + BEGIN + "\n" + table + END + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n## Latest run\n\n" + BEGIN + "\n" + table + END + "\n"
    with open(README, "w") as fh:
        fh.write(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="CI form: few rounds, small sizes")
    parser.add_argument("--rounds", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=0)
    parser.add_argument("--out", default=scratch("cnicore-bench"))
    parser.add_argument("--venv", default=scratch("cnicore-bench-venv"))
    parser.add_argument("--readme", action="store_true", help="also write the table into bench/README.md")
    parser.add_argument("--only", action="append", default=[],
                        choices=SECTIONS,
                        help="run only this section (repeatable)")
    parser.add_argument("--ours-bin", default="", help="use these launchers (e.g. the warm server's)")
    parser.add_argument("--ours-kind", default="exec", help="label for --ours-bin (e.g. server)")
    parser.add_argument("--ours-python", default="", help="the python whose cnitool goes with --ours-bin")
    parser.add_argument("--no-server", action="store_true", help="skip the warm server's part")
    parser.add_argument("--workers", type=int, default=4, help="the warm server's idle workers")
    parser.add_argument("--in-guest", action="store_true",
                        help="(run by the guest section) this environment's launchers, Go's driver not built")
    opts = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 1
    print("| section | case | Go | ours | ours/Go | Go RSS | ours RSS | notes |", flush=True)
    report = run(opts)
    os.makedirs(opts.out, exist_ok=True)
    table = markdown(report)
    with open(os.path.join(opts.out, "bench.json"), "w") as fh:
        json.dump(report, fh, indent=2)
    with open(os.path.join(opts.out, "bench.md"), "w") as fh:
        fh.write(table)
    if opts.readme:
        update_readme(table)
    print(f"\nreport: {opts.out}/bench.json, {opts.out}/bench.md ({report['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
