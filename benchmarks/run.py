"""Run every benchmark, print one table of side-by-side ratios, save JSON and a plot.

Usage::

    python -m benchmarks.run            # the full run (about 100 minutes on 2 CPU cores)
    python -m benchmarks.run --quick    # a smoke run of every benchmark (about a minute)
    python -m benchmarks.run --only toy probe   # replaces those suites' rows in latest.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import Row, machine

SUITES = ("toy", "probe", "metrics", "sae", "explorer", "synth")
RESULTS = Path(__file__).resolve().parent / "results"


def _table(rows: list[Row]) -> str:
    width = max(len(r["name"]) for r in rows)
    lines = [f"{'benchmark':<{width}}  {'value':>12}  {'unit':<10} {'bar':<14} met"]
    lines.append("-" * len(lines[0]))
    for r in rows:
        met = ("yes" if r["met"] else "NO") if r["bar"] else ""
        lines.append(
            f"{r['name']:<{width}}  {r['value']:>12.4g}  {r['unit']:<10} {r['bar']:<14} {met}"
        )
    return "\n".join(lines)


def _write_json(path: Path, payload: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as fh:
        json.dump(payload, fh, indent=2)
        tmp = fh.name
    os.replace(tmp, path)


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    from matplotlib.figure import Figure

    ratios = [r for r in rows if r["unit"] == "x"]
    if not ratios:
        return
    fig = Figure(figsize=(9, 0.35 * len(ratios) + 1.2), layout="constrained")
    ax = fig.add_subplot()
    colours = [("tab:green" if r["met"] else "tab:red") if r["bar"] else "0.6" for r in ratios]
    ax.barh([r["name"] for r in ratios], [r["value"] for r in ratios], color=colours)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel("ratio (green: bar met, red: not met, grey: information)")
    ax.tick_params(axis="y", labelsize=7)
    fig.savefig(path, dpi=120)


def _kept(path: Path, replaced: set[str]) -> dict[str, Any]:
    """The rows and suite records of an earlier results file that this run does not replace.

    A run of some suites (``--only``) keeps the other suites' rows, each with the date and
    machine of the run that measured it; a file written before rows named their suite is
    replaced whole.
    """
    empty: dict[str, Any] = {"suites": {}, "rows": []}
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return empty
    if not isinstance(old.get("suites"), dict) or not all("suite" in r for r in old["rows"]):
        return empty
    return {
        "suites": {s: v for s, v in old["suites"].items() if s not in replaced},
        "rows": [r for r in old["rows"] if r["suite"] not in replaced],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--only", nargs="+", choices=SUITES, default=list(SUITES))
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = parser.parse_args(argv)

    rows: list[Row] = []
    timings: dict[str, float] = {}
    suite_of: dict[str, str] = {}
    for suite in args.only:
        module = importlib.import_module(f"benchmarks.bench_{suite}")
        t0 = time.perf_counter()
        print(f"running {suite} ...", file=sys.stderr, flush=True)
        new = module.run(quick=args.quick)
        suite_of.update((r["name"], suite) for r in new)
        rows.extend(new)
        timings[suite] = round(time.perf_counter() - t0, 1)

    print(_table(rows))
    name = "quick.json" if args.quick else "latest.json"
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    suites = {s: {"date": now, "seconds": t, "machine": machine()} for s, t in timings.items()}
    kept = _kept(args.out / name, set(args.only))
    payload = {
        "date": now,
        "quick": args.quick,
        "suites": {**kept["suites"], **suites},
        "rows": kept["rows"] + [{**r, "suite": suite_of[r["name"]]} for r in rows],
    }
    _write_json(args.out / name, payload)
    _plot(payload["rows"], args.out / name.replace(".json", ".png"))
    missed = [r["name"] for r in rows if r["bar"] and not r["met"]]
    print(
        f"\n{len(rows) - len(missed)} of {len(rows)} rows met their bar"
        + (f"; not met: {missed}" if missed else ""),
        file=sys.stderr,
    )
    print(f"wrote {args.out / name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
