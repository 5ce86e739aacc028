"""Render ``benchmarks/results/latest.json`` as a Markdown page fragment (no Sphinx needed).

``docs/conf.py`` calls :func:`write` before Sphinx reads the sources, and ``performance.md``
includes the result. Run it by hand to see what the docs will show::

    python docs/benchmark_table.py benchmarks/results/latest.json
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

NOT_RUN = (
    "The benchmarks have not been run on this checkout, so there is no table yet. Run\n"
    "`python -m benchmarks.run` (about 80 minutes on 2 CPU cores; `--quick` for a smoke run)\n"
    "to write `benchmarks/results/latest.json`, then rebuild the docs.\n"
)


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _value(value: float) -> str:
    return f"{value:.4g}"


def render(results: Path, image: str | None = None) -> str:
    """The Markdown for the results file ``results``; a note when it does not exist.

    Args:
        results: path of a JSON file written by ``python -m benchmarks.run``.
        image: path (relative to the page) of the ratio plot to show under the table.

    Returns:
        Markdown text: the run's date and machine, then one table row per benchmark row.
    """
    if not results.is_file():
        return NOT_RUN
    try:
        data: dict[str, Any] = json.loads(results.read_text(encoding="utf-8"))
        rows: list[dict[str, Any]] = list(data["rows"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"`{results.name}` could not be read ({type(err).__name__}: {err}).\n"

    kind = "a quick smoke run (small sizes)" if data.get("quick") else "a full run"
    suites: dict[str, Any] = data.get("suites") or {}
    if suites:
        # Suites may come from different runs (``--only``): say when and where each ran.
        first = next(iter(suites.values()))
        machine = first.get("machine") or {}
        took = "; ".join(
            f"{name} on {info.get('date', '?')} ({info.get('seconds', '?')} s)"
            for name, info in suites.items()
        )
        head = f"Results of {kind}" + (f", suites: {took}" if took else "")
    else:
        machine = data.get("machine") or {}
        seconds = data.get("seconds") or {}
        took = ", ".join(f"{k} {v} s" for k, v in seconds.items())
        head = f"Results of {kind} on {data.get('date', 'an unknown date')}" + (
            f"; time per suite: {took}" if took else ""
        )
    about = ", ".join(f"{k} {v}" for k, v in machine.items())
    lines = [
        head + (f" (machine: {about})" if about else "") + ".",
        "",
        "| benchmark | value | unit | target | met |",
        "| --- | ---: | --- | --- | --- |",
    ]
    met_count = 0
    with_bar = 0
    for row in rows:
        bar = str(row.get("bar") or "")
        met = ""
        if bar:
            with_bar += 1
            met_count += bool(row.get("met"))
            met = "yes" if row.get("met") else "**no**"
        value = row.get("value")
        shown = _value(value) if isinstance(value, (int, float)) else _cell(value)
        lines.append(
            f"| {_cell(row.get('name', ''))} | {shown} | {_cell(row.get('unit', ''))} "
            f"| {_cell(bar)} | {met} |"
        )
    lines += ["", f"{met_count} of {with_bar} rows with a target met it.", ""]
    if image:
        lines += [f"![Ratios of every benchmark (log scale)]({image})", ""]
    return "\n".join(lines)


def write(results: Path, out: Path, page: Path | None = None) -> bool:
    """Write :func:`render`'s Markdown to ``out`` (and copy the plot beside it if there is one).

    ``page`` is the folder of the page that includes ``out``: MyST resolves image paths of an
    included file relative to the including page, so the plot is linked relative to it.
    The file is rewritten only when its content changes, so an incremental Sphinx build does
    not re-read the page for nothing. Returns whether anything was written.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    plot = results.with_suffix(".png")
    image = None
    if results.is_file() and plot.is_file():
        target = out.with_suffix(".png")
        shutil.copyfile(plot, target)
        image = os.path.relpath(target, page or out.parent).replace(os.sep, "/")
    text = render(results, image)
    if out.is_file() and out.read_text(encoding="utf-8") == text:
        return False
    out.write_text(text, encoding="utf-8")
    return True


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("benchmarks/results/latest.json")
    print(render(path))
