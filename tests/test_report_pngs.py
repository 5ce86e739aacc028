"""The report's PNGs encoded in a child process: the same bytes as in-process, and every figure
encoded even when the child cannot do it (a figure that does not pickle, no child, a dead one)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from superposition.report._pngs import PngEncoder, encode


def _figures() -> dict[str, Figure]:
    rng = np.random.default_rng(0)
    heat = Figure(figsize=(3, 2), layout="constrained")
    ax = heat.add_subplot()
    ax.imshow(rng.normal(size=(40, 40)), cmap="RdBu")
    ax.set_title("a heatmap")
    heat.colorbar(ax.images[0])
    lines = Figure(figsize=(3, 2), layout="constrained")
    ax = lines.add_subplot()
    ax.plot(rng.normal(size=50).cumsum(), label="walk")
    ax.set_ylabel("a label long enough\nto move the axes", fontsize=14)
    empty = Figure(figsize=(1, 1))  # no axes: width 0
    return {"heat": heat, "lines": lines, "empty": empty}


def _unpicklable() -> Figure:
    fig = Figure(figsize=(2, 2), layout="constrained")
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1])
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"<{x:g}>"))  # a lambda
    return fig


def test_the_child_gives_the_bytes_and_widths_of_an_in_process_encoding() -> None:
    figures = _figures()
    with PngEncoder(dpi=60) as pngs:
        pngs.submit(figures)
        images, widths = pngs.results(figures)
        assert pngs._proc is not None
        assert pngs._proc.returncode == 0  # the child did them
        assert not list(pngs._dir.glob("*.fig"))  # it read every figure handed over
    fresh = _figures()  # drawn here, never pickled
    for name, fig in fresh.items():
        png, width = encode(fig, 60)
        assert images[name] == png, name
        assert widths[name] == pytest.approx(width, rel=1e-12), name
    assert images["heat"].startswith(b"\x89PNG")
    assert widths["empty"] == 0.0
    # the width is the axes' as laid out (after its large label), as a full draw here lays it
    # out, not as first placed
    fig = _figures()["lines"]
    fig.set_dpi(60)  # the PNG's: text, so the layout, snaps to its pixels
    placed = fig.axes[0].get_window_extent().width / fig.dpi
    fig.draw_without_rendering()
    drawn = fig.axes[0].get_window_extent().width / fig.dpi
    assert abs(drawn - placed) > 0.05 * placed
    assert widths["lines"] == pytest.approx(drawn, rel=1e-9)


def test_a_figure_that_does_not_pickle_is_encoded_here() -> None:
    figures = {**_figures(), "lambda": _unpicklable()}
    with PngEncoder(dpi=50) as pngs:
        pngs.submit(figures)
        images, _ = pngs.results(figures)
        assert not (pngs._dir / f"{pngs._names['lambda']}.png").exists()
    assert list(images) == list(figures)  # in the order given
    assert images["lambda"] == encode(_unpicklable(), 50)[0]


def test_without_a_child_every_figure_is_encoded_here(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    figures = _figures()
    with PngEncoder(dpi=50) as pngs:
        pngs.submit(figures)
        images, widths = pngs.results(figures)
    for name, fig in _figures().items():
        assert (images[name], widths[name]) == encode(fig, 50)


def test_a_child_killed_half_way_leaves_the_rest_to_this_process() -> None:
    first, second = _figures(), {"later": _unpicklable(), "more": _figures()["lines"]}
    with PngEncoder(dpi=50) as pngs:
        pngs.submit(first)
        assert pngs._proc is not None
        os.kill(pngs._proc.pid, signal.SIGKILL)
        pngs._proc.wait()
        pngs.submit(second)  # writing to a dead child's stdin: no error, left for the end
        images, _ = pngs.results({**first, **second})
    assert images["more"] == encode(_figures()["lines"], 50)[0]
    assert set(images) == {*first, *second}


def _fail_half_way(seen: list[object]) -> None:
    with PngEncoder(dpi=50) as pngs:
        pngs.submit(_figures())
        seen += [pngs._proc, Path(pngs._dir)]
        raise RuntimeError("a section failed")


def test_leaving_early_stops_the_child_and_removes_its_folder() -> None:
    seen: list[object] = []
    with pytest.raises(RuntimeError, match="a section failed"):
        _fail_half_way(seen)
    proc, folder = seen
    assert isinstance(proc, subprocess.Popen)
    assert proc.poll() is not None
    assert isinstance(folder, Path)
    assert not folder.exists()
