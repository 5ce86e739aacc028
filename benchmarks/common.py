"""Shared helpers for the benchmarks: rows, side-by-side timing and peak-memory measurement.

Every benchmark reports *ratios* of two things measured in the same process, interleaved, so
that a noisy machine slows both sides alike.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import TypedDict, TypeVar

T = TypeVar("T")


class Row(TypedDict):
    """One line of the results table."""

    name: str
    value: float
    unit: str
    bar: str
    met: bool


def row(name: str, value: float, unit: str, bar: str = "", met: bool = True) -> Row:
    """A result row; ``bar`` is the target in words ("" for a row that is information only)."""
    return Row(name=name, value=float(value), unit=unit, bar=bar, met=bool(met))


def side_by_side(
    fns: dict[str, Callable[[], object]], repeat: int = 3, warmup: int = 1
) -> dict[str, float]:
    """Median wall time of each function, run interleaved ``repeat`` times after ``warmup``."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status")


def reset_peak_rss() -> None:
    """Reset this process's peak resident set size (Linux: ``clear_refs`` 5)."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def rss_mb() -> float:
    """Current resident set size, MiB."""
    return _status_kb("VmRSS") / 1024


def peak_rss_mb() -> float:
    """Peak resident set size since the last :func:`reset_peak_rss`, MiB."""
    return _status_kb("VmHWM") / 1024


def peak_extra_mb(fn: Callable[[], T]) -> tuple[float, T]:
    """Peak memory ``fn`` needs above what was resident when it started, MiB, and its result."""
    import gc

    gc.collect()
    base = rss_mb()
    reset_peak_rss()
    out = fn()
    return peak_rss_mb() - base, out


# The child's own high-water mark (VmHWM, KiB) of the memory it maps after exec. Not
# getrusage's ru_maxrss: Linux carries a process's maximum across exec, so a child spawned
# from a benchmark holding 8 GB reported 8 GB whatever it used.
_PEAK_CHILD = (
    "import sys; from superposition.cli import main; code = main(sys.argv[1:]); "
    "hwm = [ln.split()[1] for ln in open('/proc/self/status') if ln.startswith('VmHWM:')]; "
    "print('PEAK', code, hwm[0])"
)


def cli_peak_gb(argv: list[str]) -> float:
    """Peak RSS (GB: KiB / 1e6, as ``/usr/bin/time`` is read) of ``superposition *argv`` run
    in a fresh process, offline; raises with its output if the command fails."""
    return cli_run(argv)[1]


def cli_run(argv: list[str]) -> tuple[float, float]:
    """``(wall seconds, peak RSS in GB)`` of ``superposition *argv`` in a fresh process,
    offline (the seconds include starting Python and importing the library); raises with its
    output if the command fails."""
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _PEAK_CHILD, *argv], env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - t0
    peak = [ln.split() for ln in done.stdout.splitlines() if ln.startswith("PEAK")]
    if done.returncode != 0 or not peak or peak[0][1] != "0":
        raise RuntimeError(f"superposition {' '.join(argv)} failed:\n{done.stderr[-2000:]}")
    return seconds, int(peak[0][2]) / 1e6


def machine() -> dict[str, object]:
    """The machine and library versions, for the results file."""
    import numpy
    import torch
    import transformers

    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": numpy.__version__,
    }
