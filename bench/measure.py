"""Samples and their summary: what every bench section records, Go beside ours.

A :class:`Case` holds the wall-time samples (seconds) and peak RSS (KiB) of
one operation for each side; :meth:`Case.row` turns it into the report's row
(medians, p10–p90 spread, ratio ours/Go). Timing helpers run one exec, or
one command under GNU time for its peak RSS.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from typing import Any, Callable


def cpu_ticks(pid: int, children: bool = False) -> int:
    """utime + stime of a process (and, with ``children``, of its reaped children), in clock ticks."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15 if children else 13])


def spread_ms(samples: list[float]) -> dict[str, float]:
    """Median, p10, p90 (ms) and count of wall-time samples in seconds."""
    times = sorted(samples)
    n = len(times)

    def pct(q: float) -> float:
        return times[min(n - 1, max(0, round(q * (n - 1))))] * 1000

    return {"median_ms": statistics.median(times) * 1000, "p10_ms": pct(0.1), "p90_ms": pct(0.9), "n": n}


class Case:
    """One operation measured for Go and for us (either may be missing)."""

    def __init__(self, section: str, name: str, note: str = "") -> None:
        self.section = section
        self.name = name
        self.note = note
        self.samples: dict[str, list[float]] = {"go": [], "ours": []}
        self.rss_kib: dict[str, int] = {}
        self.extra: dict[str, Any] = {}

    def add(self, side: str, seconds: float) -> None:
        self.samples[side].append(seconds)

    def timed(self, side: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        value = fn()
        self.add(side, time.perf_counter() - start)
        return value

    def rss(self, side: str, kib: int) -> None:
        self.rss_kib[side] = max(kib, self.rss_kib.get(side, 0))

    def row(self) -> dict[str, Any]:
        out: dict[str, Any] = {"section": self.section, "case": self.name}
        for side in ("go", "ours"):
            if self.samples[side]:
                out[side] = spread_ms(self.samples[side])
                if side in self.rss_kib:
                    out[side]["peak_rss_kib"] = self.rss_kib[side]
        if "go" in out and "ours" in out:
            out["ratio"] = out["ours"]["median_ms"] / out["go"]["median_ms"]
        if self.note:
            out["note"] = self.note
        out.update(self.extra)
        return out


def run_exec(argv: list[str], env: dict[str, str], stdin: bytes = b"") -> tuple[float, bytes]:
    """Wall seconds and stdout of one command that must succeed."""
    start = time.perf_counter()
    proc = subprocess.run(argv, input=stdin, capture_output=True, env=env)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {proc.stdout[-500:]!r} {proc.stderr[-500:]!r}")
    return elapsed, proc.stdout


def run_with_rss(argv: list[str], env: dict[str, str], stdin: bytes = b"") -> tuple[int, bytes]:
    """Peak RSS (KiB, GNU time) and stdout of one command that must succeed.

    Not from our own ``wait4``: a child forked from this large process is
    charged the parent's pages it touched before exec."""
    fd, out_path = tempfile.mkstemp(prefix="cnicore-bench-rss-")
    os.close(fd)
    try:
        proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", out_path, *argv], input=stdin,
                              capture_output=True, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {proc.stderr[-500:]!r}")
        with open(out_path) as fh:
            return int(fh.read().strip().splitlines()[-1]), proc.stdout
    finally:
        os.unlink(out_path)
