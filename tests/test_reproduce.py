"""`superposition reproduce --quick`: files, keys, determinism, and a report that embeds every
figure."""

from __future__ import annotations

import json
import os
import stat
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from superposition.report import ReproduceConfig, phase_losses, reproduce


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    a = tmp_path_factory.mktemp("run_a")
    b = tmp_path_factory.mktemp("run_b")
    for out in (a, b):
        reproduce(ReproduceConfig(out=out, quick=True, seed=0, progress=False))
    return a, b


def _strip_volatile(m: dict[str, Any]) -> dict[str, Any]:
    m = dict(m)
    m.pop("timings_s")
    m["config"] = {k: v for k, v in m["config"].items() if k not in ("date", "out")}
    return m


def test_metrics_json_has_the_documented_keys(quick_runs: tuple[Path, Path]) -> None:
    m = json.loads((quick_runs[0] / "metrics.json").read_text())
    assert set(m) == {"section3", "section5", "config", "timings_s"}
    assert set(m["section3"]["results"]) == {
        "1_linear_top_m_orthogonal",
        "2_relu_dense_top_m",
        "3_relu_sparse_superposition",
    }
    assert set(m["section5"]["categories"]) == {"language", "math_and_logic", "miscellaneous"}
    for cat in m["section5"]["categories"].values():
        assert set(cat) == {"paper", "corrected", "baseline_paper", "baseline"}
        assert cat["paper"]["n_pad_tokens"] > 0, "the paper's analysis keeps padding"
        assert cat["corrected"]["n_pad_tokens"] == 0
        assert cat["corrected"]["n_neurons"] == 1536
    assert set(m["config"]["versions"]) >= {"superposition", "torch", "transformers"}
    assert m["config"]["seed"] == 0


def test_section3_results_hold_in_the_quick_run(quick_runs: tuple[Path, Path]) -> None:
    m = json.loads((quick_runs[0] / "metrics.json").read_text())
    assert all(m["section3"]["results"].values()), m["section3"]["results"]


def test_same_seed_same_numbers(quick_runs: tuple[Path, Path]) -> None:
    a, b = (json.loads((d / "metrics.json").read_text()) for d in quick_runs)
    assert _strip_volatile(a) == _strip_volatile(b)


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.alts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        d = dict(attrs)
        if tag == "img":
            assert (d.get("src") or "").startswith("data:image/png;base64,")
            self.alts.append(d.get("alt") or "")


def test_report_embeds_every_figure(quick_runs: tuple[Path, Path]) -> None:
    out = quick_runs[0]
    parser = _Images()
    parser.feed((out / "report.html").read_text())
    pngs = {p.stem for p in out.glob("*.png")}
    assert len(pngs) >= 4 + 3 * 3 * 4
    assert pngs <= set(parser.alts)


def test_pngs_are_not_blank(quick_runs: tuple[Path, Path]) -> None:
    from matplotlib.image import imread

    for png in sorted(quick_runs[0].glob("*.png")):
        img = imread(png)
        colours = np.unique(img.reshape(-1, img.shape[-1]), axis=0)
        assert len(colours) > 1, f"{png.name} is a single colour"


@pytest.mark.parametrize(("s", "r"), [(1.0, 0.5), (0.1, 2.0), (0.01, 1.0)])
def test_phase_losses_match_monte_carlo(s: float, r: float) -> None:
    """The closed forms against a direct simulation of each configuration's expected loss."""
    rng = np.random.default_rng(0)
    n = 400_000
    x = rng.random((n, 2)) * (rng.random((n, 2)) < s)
    imp = np.array([1.0, r])
    # One feature represented exactly (W = 1, b = 0); the dropped one is predicted by its bias,
    # whose best value is its mean s/2.
    drop2 = (imp[1] * (x[:, 1] - s / 2) ** 2).mean()
    drop1 = (imp[0] * (x[:, 0] - s / 2) ** 2).mean()
    relu = np.maximum
    out = np.stack([relu(x[:, 0] - x[:, 1], 0), relu(x[:, 1] - x[:, 0], 0)], 1)
    antipodal = ((x - out) ** 2 * imp).sum(1).mean()
    closed = phase_losses(s, r)
    np.testing.assert_allclose(closed, (drop2, drop1, antipodal), rtol=0.05, atol=1e-4)


def test_every_output_is_readable_as_the_umask_allows(quick_runs: tuple[Path, Path]) -> None:
    mask = os.umask(0)
    os.umask(mask)
    files = sorted(quick_runs[0].iterdir())
    assert {"report.html", "metrics.json"} <= {p.name for p in files}
    wrong = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    wrong = {k: v for k, v in wrong.items() if v != oct(0o666 & ~mask)}
    assert not wrong, f"files not {oct(0o666 & ~mask)} under umask {oct(mask)}: {wrong}"
