"""Tests of superposition.plot: layouts, the numbers each figure draws, validation, saving."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib.colors
import matplotlib.image
import numpy as np
import pytest
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.quiver import Quiver
from torch import Tensor

from superposition import metrics, plot

# --------------------------------------------------------------------------- helpers


def colours(fig: Figure) -> int:
    """Number of distinct RGBA colours in the rendered figure."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba()).reshape(-1, 4)
    return len(np.unique(pixels, axis=0))


def cosine_distance_np(X: np.ndarray, center: bool = False) -> np.ndarray:
    """1 - normalised column dot products, written independently of metrics."""
    X = X.astype(np.float64)
    if center:
        X = X - X.mean(0)
    unit = X / np.linalg.norm(X, axis=0)
    return 1.0 - unit.T @ unit


def activations(tokens: int = 40, neurons: int = 12, seed: int = 0) -> Tensor:
    return torch.randn(tokens, neurons, generator=torch.Generator().manual_seed(seed)).exp()


def pentagon() -> Tensor:
    angles = torch.arange(5) * 2 * math.pi / 5
    return torch.stack([angles.cos(), angles.sin()])[None]  # [1, 2, 5]


# --------------------------------------------------------------------------- toy_weights


def test_toy_weights_layout_and_data() -> None:
    W = torch.randn(3, 4, 6, generator=torch.Generator().manual_seed(1))
    b = torch.randn(3, 6, generator=torch.Generator().manual_seed(2))
    fig = plot.toy_weights(W, b, titles=["a", "b", "c"])
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 3 * 3 + 2  # per instance: WᵀW, bias, bars; then 2 colorbars
    for k in range(3):
        gram_ax, bias_ax, bar_ax = fig.axes[3 * k : 3 * k + 3]
        Wk = W[k].numpy()
        np.testing.assert_allclose(gram_ax.images[0].get_array(), Wk.T @ Wk, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(bias_ax.images[0].get_array(), b[k].numpy()[:, None])
        widths = [p.get_width() for p in bar_ax.patches]
        np.testing.assert_allclose(widths, np.linalg.norm(Wk, axis=0), rtol=1e-5)
        assert gram_ax.get_title() == "abc"[k]
    limit = max(float((W.mT @ W).abs().max()), float(b.abs().max()))
    assert fig.axes[0].images[0].get_clim() == pytest.approx((-limit, limit))
    assert colours(fig) > 1


def test_toy_weights_bars_coloured_by_interference() -> None:
    # instance 0: two orthogonal features and a dead one; instance 1: an antipodal pair.
    W = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], [[1.0, -1.0, 0.0], [0.0, 0.0, 0.0]]])
    fig = plot.toy_weights(W, torch.zeros(2, 3))
    import matplotlib

    inferno = matplotlib.colormaps["inferno"]
    orthogonal = [p.get_facecolor() for p in fig.axes[2].patches]
    antipodal = [p.get_facecolor() for p in fig.axes[5].patches]
    assert orthogonal[0] == pytest.approx(inferno(0.0))  # interference 0: black end
    assert antipodal[0] == pytest.approx(inferno(1.0))  # interference 1: yellow end
    np.testing.assert_allclose(metrics.interference(W)[1, :2], [1.0, 1.0])


def test_toy_weights_accepts_a_single_matrix() -> None:
    assert len(plot.toy_weights(torch.randn(2, 4), torch.zeros(4)).axes) == 5


def test_toy_weights_errors() -> None:
    with pytest.raises(ValueError, match=r"b must have shape .* \(2, 5\) .* got shape \(2, 4\)"):
        plot.toy_weights(torch.randn(2, 3, 5), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="titles must be a sequence of 2 strings"):
        plot.toy_weights(torch.randn(2, 3, 5), torch.zeros(2, 5), titles=["only one"])
    with pytest.raises(ValueError, match=r"W must be a floating-point tensor"):
        plot.toy_weights(torch.ones(2, 3, 5, dtype=torch.long), torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"W must have shape \[instances, n_hidden, n_features\]"):
        plot.toy_weights(torch.randn(2, 2, 3, 5), torch.zeros(2, 5))


# --------------------------------------------------------------------------- feature_directions


def test_feature_directions_draws_each_feature() -> None:
    W = pentagon()
    fig = plot.feature_directions(W)
    assert len(fig.axes) == 1
    (quiver,) = [c for c in fig.axes[0].collections if isinstance(c, Quiver)]
    np.testing.assert_allclose(quiver.U, W[0, 0].numpy(), atol=1e-6)
    np.testing.assert_allclose(quiver.V, W[0, 1].numpy(), atol=1e-6)
    assert len({tuple(c) for c in quiver.get_facecolors()}) == 5  # one colour per feature
    assert colours(fig) > 1


def test_feature_directions_one_panel_per_instance() -> None:
    assert len(plot.feature_directions(torch.randn(3, 2, 4)).axes) == 3


def test_feature_directions_errors() -> None:
    with pytest.raises(ValueError, match=r"n_hidden = 2\), got shape \(1, 3, 5\)"):
        plot.feature_directions(torch.randn(1, 3, 5))
    ax = Figure().add_subplot()
    with pytest.raises(ValueError, match="W must hold one instance, got 2 instances"):
        plot.feature_directions(torch.randn(2, 2, 5), ax=ax)


# --------------------------------------------------------------------------- feature_geometry


def test_feature_geometry_line_dots_and_guides() -> None:
    W = torch.randn(3, 2, 6, generator=torch.Generator().manual_seed(3))
    W[:, :, 0] = 0.0  # one dead feature per instance: never dotted
    p = [1.0, 0.1, 0.01]
    fig = plot.feature_geometry(W, p)
    ax = fig.axes[0]
    assert len(fig.axes) == 1
    assert ax.get_xscale() == "log"
    guides = sorted(line.get_ydata()[0] for line in ax.lines if line.get_linestyle() == "--")
    assert guides == pytest.approx(sorted([1, 3 / 4, 2 / 3, 1 / 2, 2 / 5, 1 / 3]))
    assert {t.get_text() for t in ax.texts} == {"1", "3/4", "2/3", "1/2", "2/5", "1/3"}
    (curve,) = [line for line in ax.lines if line.get_linestyle() == "-"]
    np.testing.assert_allclose(curve.get_xdata(), [1.0, 10.0, 100.0])
    expected = 2 / (W.numpy() ** 2).sum((1, 2))  # n_hidden / ||W||_F^2, instance order kept
    np.testing.assert_allclose(curve.get_ydata(), expected, rtol=1e-5)
    shown = metrics.feature_norms(W) > 0.5
    dots = ax.collections[0].get_offsets()
    assert len(dots) == int(shown.sum())
    np.testing.assert_allclose(
        np.sort(dots[:, 1]), np.sort(metrics.feature_dimensionality(W)[shown].numpy()), rtol=1e-5
    )
    assert colours(fig) > 1


def test_feature_geometry_errors() -> None:
    with pytest.raises(ValueError, match=r"feature_probability must have shape \(2,\)"):
        plot.feature_geometry(torch.randn(2, 3, 5), [0.1])
    with pytest.raises(
        ValueError, match=r"feature_probability must be in \(0, 1\], got \[0.1, 1.5\]"
    ):
        plot.feature_geometry(torch.randn(2, 3, 5), [0.1, 1.5])


# --------------------------------------------------------------------------- phases


def test_classify_phase_hand_built() -> None:
    W = torch.tensor(
        [
            [[1.0, -0.9]],  # antipodal pair: superposition
            [[1.0, 0.1]],  # feature 1 only
            [[0.05, -1.0]],  # feature 2 only (feature 1 too short to count)
            [[1.0, 1.0]],  # both, same direction: not antipodal, tie -> feature 1
            [[0.0, 0.0]],  # nothing learned: tie -> feature 1
        ]
    )
    codes = plot.classify_phase(W)
    assert codes.dtype == torch.int64
    assert codes.tolist() == [2, 0, 1, 0, 0]
    assert plot.classify_phase(torch.tensor([[0.7, -0.7]])).tolist() == [2]  # a single matrix
    assert plot.classify_phase(torch.tensor([[[0.7, -0.7]]]), threshold=0.8).tolist() == [0]


def test_classify_phase_error() -> None:
    with pytest.raises(ValueError, match=r"shape \[instances, 1, 2\], got shape \(3, 2, 2\)"):
        plot.classify_phase(torch.randn(3, 2, 2))


def test_phase_diagram_grid_and_names() -> None:
    labels = np.array([[2, 1, 0], [0, 2, 1]])
    # columns given from sparse to dense and rows from high to low: the plot sorts both.
    fig = plot.phase_diagram(labels, [0.01, 0.1, 1.0], [4.0, 0.25])
    ax, bar = fig.axes
    assert len(fig.axes) == 2
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
    grid = np.asarray(ax.collections[0].get_array()).reshape(2, 3)
    np.testing.assert_array_equal(grid, labels[::-1, ::-1])
    assert [t.get_text() for t in bar.get_yticklabels()] == list(plot.PHASE_NAMES)
    assert colours(fig) > 1


def test_phase_diagram_errors() -> None:
    with pytest.raises(ValueError, match="labels must be a 2-D integer array"):
        plot.phase_diagram(np.zeros((2, 3)), [1.0, 0.1, 0.01], [0.5, 2.0])
    with pytest.raises(ValueError, match=r"relative_importance must have shape \(2,\)"):
        plot.phase_diagram(np.zeros((2, 3), int), [1.0, 0.1, 0.01], [0.5])
    with pytest.raises(ValueError, match=r"feature_probability must have shape \(3,\)"):
        plot.phase_diagram(np.zeros((2, 3), int), [1.0, 0.1], [0.5, 2.0])
    with pytest.raises(ValueError, match=r"labels must be codes 0, 1 or 2, got values \[0, 3\]"):
        plot.phase_diagram(np.array([[0, 3]]), [1.0, 0.1], [1.0])


# --------------------------------------------------------------------------- Figures 4 and 5


@pytest.mark.parametrize(
    ("neurons", "index"),
    [("half", list(range(6))), ("all", list(range(12))), (4, [0, 1, 2, 3]), ([7, 2, 9], [7, 2, 9])],
)
@pytest.mark.parametrize("center", [False, True])
def test_cosine_heatmap_shows_the_cosine_distance(
    neurons: str | int | list[int], index: list[int], center: bool
) -> None:
    X = activations()
    fig = plot.cosine_heatmap(X, neurons=neurons, center=center)  # type: ignore[arg-type]
    assert len(fig.axes) == 2  # heatmap and colorbar
    image = fig.axes[0].images[0]
    expected = cosine_distance_np(X.numpy()[:, index], center=center)
    np.testing.assert_allclose(image.get_array(), expected, atol=1e-5)
    assert image.get_clim() == (0.0, 2.0)
    assert image.get_cmap().name == "RdBu_r"
    assert image.get_interpolation() == "nearest"
    assert image.get_rasterized()


def test_cosine_heatmap_colours_follow_the_paper() -> None:
    # blue at 0 (identical), white at 1 (orthogonal), red at 2 (opposed)
    cmap = plot.cosine_heatmap(activations(), neurons="all").axes[0].images[0].get_cmap()
    r0, _, b0, _ = cmap(0.0)
    r2, _, b2, _ = cmap(1.0)
    assert b0 > r0
    assert r2 > b2
    assert min(cmap(0.5)[:3]) > 0.9
    assert colours(plot.cosine_heatmap(activations())) > 1


def test_half_precision_activations_are_drawn_in_float32() -> None:
    X = activations().bfloat16()
    image = plot.cosine_heatmap(X, neurons="all").axes[0].images[0]
    np.testing.assert_allclose(image.get_array(), cosine_distance_np(X.float().numpy()), atol=1e-5)
    assert len(plot.neuron_traces(X.half(), [str(i) for i in range(40)], n=3).axes[0].lines) == 3


def test_cosine_heatmap_errors() -> None:
    with pytest.raises(ValueError, match=r"X must be a floating-point tensor of shape \[tokens"):
        plot.cosine_heatmap(torch.ones(5, 4, dtype=torch.int64))
    with pytest.raises(
        ValueError, match=r"X must have shape \[tokens, neurons\].*got shape \(5,\)"
    ):
        plot.cosine_heatmap(torch.ones(5))
    with pytest.raises(ValueError, match=r"neurons must be a count in 1..4, got 9"):
        plot.cosine_heatmap(torch.rand(5, 4), neurons=9)
    with pytest.raises(ValueError, match=r"neurons must be indices in 0..3"):
        plot.cosine_heatmap(torch.rand(5, 4), neurons=[0, 4])
    with pytest.raises(ValueError, match=r'neurons must be "half", "all"'):
        plot.cosine_heatmap(torch.rand(5, 4), neurons="most")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"X must be a torch.Tensor or numpy.ndarray"):
        plot.cosine_heatmap([[1.0, 2.0]])  # type: ignore[arg-type]


@pytest.mark.parametrize("center", [False, True])
def test_cosine_histogram_counts_each_pair_once(center: bool) -> None:
    X = activations()
    fig = plot.cosine_histogram(X, center=center, bins=40)
    assert len(fig.axes) == 1
    heights = [p.get_height() for p in fig.axes[0].patches]
    distance = cosine_distance_np(X.numpy(), center=center)
    upper = distance[np.triu_indices(12, k=1)]
    expected, _ = np.histogram(upper, bins=40, range=(0.0, 2.0))
    assert sum(heights) == 12 * 11 / 2
    # bins are the same; a value sitting on an edge may round into its neighbour
    assert np.abs(np.asarray(heights) - expected).sum() <= 2
    assert colours(fig) > 1


def test_cosine_histogram_errors() -> None:
    with pytest.raises(ValueError, match=r"X must have at least 2 neurons .* got shape \(5, 1\)"):
        plot.cosine_histogram(torch.rand(5, 1))
    with pytest.raises(ValueError, match="bins must be a positive int, got 0"):
        plot.cosine_histogram(torch.rand(5, 3), bins=0)


# --------------------------------------------------------------------------- Figures 6 and 7


def test_neuron_traces_plots_the_sampled_neurons() -> None:
    X = activations(tokens=8, neurons=30)
    tokens = [f"t{i}" for i in range(8)]
    fig = plot.neuron_traces(X, tokens, n=5, seed=3)
    ax = fig.axes[0]
    assert len(fig.axes) == 1
    assert len(ax.lines) == 5
    chosen = torch.randperm(30, generator=torch.Generator().manual_seed(3))[:5].sort().values
    for line, neuron in zip(ax.lines, chosen.tolist(), strict=True):
        np.testing.assert_allclose(line.get_ydata(), X[:, neuron].numpy())
        np.testing.assert_array_equal(line.get_xdata(), np.arange(8))
    assert [t.get_text() for t in ax.get_xticklabels()] == tokens
    assert colours(fig) > 1


def test_neuron_traces_seed_decides_the_sample() -> None:
    X = activations(tokens=4, neurons=200)
    tokens = list("abcd")

    def sample(seed: int) -> list[list[float]]:
        ax = plot.neuron_traces(X, tokens, n=6, seed=seed).axes[0]
        return [list(line.get_ydata()) for line in ax.lines]

    assert sample(0) == sample(0)
    assert sample(0) != sample(1)
    # asking for more neurons than exist draws them all
    assert len(plot.neuron_traces(X[:, :3], tokens, n=50).axes[0].lines) == 3


def test_neuron_traces_thins_long_token_axes_and_marks_texts() -> None:
    X = activations(tokens=200, neurons=4)
    tokens = [f"w{i}" for i in range(200)]
    text_index = torch.arange(200) // 70  # texts start at 70 and 140
    ax = plot.neuron_traces(X, tokens, n=4, text_index=text_index).axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert 30 <= len(labels) <= 60
    assert labels[:2] == ["w0", "w4"]
    assert all(label.get_rotation() == 90 for label in ax.get_xticklabels())
    boundaries = [line.get_xdata()[0] for line in ax.lines if line.get_linestyle() == ":"]
    assert boundaries == [69.5, 139.5]


def test_neuron_traces_errors() -> None:
    X = torch.rand(3, 5)
    with pytest.raises(ValueError, match=r"one string per row of X \(3 tokens.*got 2 tokens"):
        plot.neuron_traces(X, ["a", "b"])
    with pytest.raises(ValueError, match=r"text_index must have shape \(3,\).*got shape \(2,\)"):
        plot.neuron_traces(X, ["a", "b", "c"], text_index=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="n must be a positive int, got 0"):
        plot.neuron_traces(X, ["a", "b", "c"], n=0)


def test_activation_sums_histogram() -> None:
    X = activations(tokens=30, neurons=64)
    fig = plot.activation_sums(X, bins=10)
    assert len(fig.axes) == 1
    heights = [p.get_height() for p in fig.axes[0].patches]
    expected, _ = np.histogram(X.double().numpy().sum(0), bins=10)
    np.testing.assert_array_equal(heights, expected)
    assert colours(fig) > 1
    with pytest.raises(ValueError, match=r"X must have shape \[tokens, neurons\] with at least"):
        plot.activation_sums(torch.zeros(0, 4))


# --------------------------------------------------------------------------- ax=


PANELS: dict[str, Callable[[Axes], Figure]] = {
    "feature_directions": lambda ax: plot.feature_directions(pentagon(), ax=ax),
    "feature_geometry": lambda ax: plot.feature_geometry(torch.randn(2, 3, 6), [1.0, 0.1], ax=ax),
    "phase_diagram": lambda ax: plot.phase_diagram(np.eye(2, dtype=int), [1.0, 0.1], [1, 2], ax=ax),
    "cosine_heatmap": lambda ax: plot.cosine_heatmap(activations(), ax=ax),
    "cosine_histogram": lambda ax: plot.cosine_histogram(activations(), ax=ax),
    "neuron_traces": lambda ax: plot.neuron_traces(activations(3, 5), list("abc"), ax=ax),
    "activation_sums": lambda ax: plot.activation_sums(activations(), ax=ax),
}


@pytest.mark.parametrize("name", sorted(PANELS))
def test_ax_draws_into_the_given_axes(name: str) -> None:
    fig = Figure()
    untouched, target = fig.subplots(1, 2)
    assert PANELS[name](target) is fig
    assert target.has_data() or target.images
    assert not untouched.has_data()


def test_ax_inside_a_subfigure_returns_the_root_figure() -> None:
    fig = Figure()
    ax = fig.subfigures(1, 2)[1].add_subplot()
    assert plot.activation_sums(activations(), ax=ax) is fig


# --------------------------------------------------------------------------- accessors


@dataclass
class FakeToyModel:
    W: Tensor
    b: Tensor
    n_hidden: int = 2


@dataclass
class FakeActivations:
    values: Tensor
    tokens: list[str]


@dataclass
class FakeActivationsWithTexts(FakeActivations):
    text_index: Tensor


def test_toy_model_plots_delegate() -> None:
    W = torch.nn.Parameter(torch.randn(2, 2, 5))
    b = torch.nn.Parameter(torch.zeros(2, 5))
    plots = plot.ToyModelPlots(FakeToyModel(W, b))
    weights = plots.weights(titles=["dense", "sparse"])
    assert len(weights.axes) == 8
    assert weights.axes[0].get_title() == "dense"
    direct = plot.toy_weights(W.detach(), b.detach())
    np.testing.assert_array_equal(
        weights.axes[0].images[0].get_array(), direct.axes[0].images[0].get_array()
    )
    assert len(plots.directions().axes) == 2
    geometry = plots.geometry([1.0, 0.1])
    np.testing.assert_allclose(
        geometry.axes[0].lines[-1].get_ydata(), metrics.dimensions_per_feature(W.detach())
    )
    assert W.grad is None
    assert "ToyModelPlots" in repr(plots)


def test_activation_plots_delegate() -> None:
    X = activations(tokens=6, neurons=10)
    tokens = list("abcdef")
    plots = plot.ActivationPlots(FakeActivations(X, tokens))
    np.testing.assert_array_equal(
        plots.cosine_heatmap(neurons="all").axes[0].images[0].get_array(),
        plot.cosine_heatmap(X, neurons="all").axes[0].images[0].get_array(),
    )
    assert len(plots.cosine_histogram(bins=7).axes[0].patches) == 7
    assert len(plots.neuron_traces(n=4).axes[0].lines) == 4
    assert len(plots.activation_sums(bins=5).axes[0].patches) == 5
    with_texts = plot.ActivationPlots(
        FakeActivationsWithTexts(X, tokens, torch.tensor([0, 0, 0, 1, 1, 1]))
    )
    lines = with_texts.neuron_traces(n=4).axes[0].lines
    assert [line.get_xdata()[0] for line in lines if line.get_linestyle() == ":"] == [2.5]


def test_accessors_reject_objects_without_the_attributes() -> None:
    with pytest.raises(TypeError, match=r"needs a model with \.W and \.b tensors, dict has no \.W"):
        plot.ToyModelPlots({})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"FakeToyModel has no \.values"):
        plot.ActivationPlots(FakeToyModel(torch.zeros(1), torch.zeros(1)))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- save_figure


def test_save_figure_writes_a_png_atomically(tmp_path: Path) -> None:
    fig = plot.cosine_heatmap(activations())
    path = plot.save_figure(fig, tmp_path / "fig4.png")
    assert path == tmp_path / "fig4.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(path).reshape(-1, 4)
    assert len(np.unique(pixels, axis=0)) > 1
    assert [p.name for p in tmp_path.iterdir()] == ["fig4.png"]
    # no suffix: still a PNG, under exactly the name asked for
    plot.save_figure(fig, tmp_path / "bare")
    assert (tmp_path / "bare").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bare", "fig4.png"]


def test_save_figure_failure_leaves_no_file(tmp_path: Path) -> None:
    fig = plot.activation_sums(activations())
    (tmp_path / "old.xyz").write_bytes(b"previous")
    with pytest.raises(ValueError, match="xyz"):
        plot.save_figure(fig, tmp_path / "old.xyz")
    assert [p.name for p in tmp_path.iterdir()] == ["old.xyz"]
    assert (tmp_path / "old.xyz").read_bytes() == b"previous"


# --------------------------------------------------------------------------- imports


def test_no_matplotlib_on_import_and_no_pyplot_ever() -> None:
    code = (
        "import sys, torch\n"
        "import superposition, superposition.plot as p\n"
        "assert 'matplotlib' not in sys.modules, 'importing superposition imported matplotlib'\n"
        "p.cosine_heatmap(torch.rand(5, 4))\n"
        "p.toy_weights(torch.randn(1, 2, 3), torch.zeros(1, 3))\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'plot used pyplot'\n"
    )
    src = Path(plot.__file__).parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr


def test_all_names_exist() -> None:
    for name in plot.__all__:
        assert hasattr(plot, name)


def test_distance_figures_from_a_precomputed_matrix_match_the_activation_figures() -> None:
    """distance_heatmap/histogram draw exactly what cosine_heatmap/histogram draw from X."""
    g = torch.Generator().manual_seed(3)
    X = torch.rand(40, 10, generator=g)
    D = 1 - np.corrcoef(X.numpy(), rowvar=False)  # independent: numpy's Pearson
    img_x = plot.cosine_heatmap(X, center=True, neurons="all").axes[0].images[0].get_array()
    img_d = plot.distance_heatmap(D, neurons="all").axes[0].images[0].get_array()
    np.testing.assert_allclose(np.asarray(img_d), np.asarray(img_x), atol=1e-5)
    hx = [p.get_height() for p in plot.cosine_histogram(X, center=True, bins=16).axes[0].patches]
    hd = [p.get_height() for p in plot.distance_histogram(D, bins=16).axes[0].patches]
    assert hx == hd
    with pytest.raises(ValueError, match=r"D must be square \[neurons, neurons\], got shape"):
        plot.distance_heatmap(torch.ones(3, 4))


# --------------------------------------------------------------------------- titles and legends


@pytest.mark.parametrize(
    ("draw", "title"),
    [
        (lambda: plot.cosine_histogram(activations()), "cosine distance between every pair of 12"),
        (
            lambda: plot.distance_histogram(metrics.cosine_distance(activations()), label="d"),
            "d between every pair of 12 neurons",
        ),
        (lambda: plot.activation_sums(activations()), "activation summed over all tokens"),
        (lambda: plot.feature_directions(pentagon()), "embeddings W_i of 5 features"),
        (
            lambda: plot.phase_diagram(np.eye(2, dtype=int), [1.0, 0.1], [1, 2]),
            "phase learned by the n = 2, m = 1 model",
        ),
    ],
)
def test_every_single_panel_figure_has_a_title(draw: Callable[[], Figure], title: str) -> None:
    assert title in draw().axes[0].get_title()


@pytest.mark.parametrize(
    ("neurons", "says"),
    [
        ("half", "neurons 0–5 (the first half) of 12"),
        ("all", "all 12 neurons"),
        (4, "neurons 0–3 of 12"),
        (1, "neuron 0 of 12"),
        ([7, 2, 9], "3 chosen neurons of 12"),
    ],
)
def test_heatmap_title_says_which_neurons(neurons: str | int | list[int], says: str) -> None:
    fig = plot.cosine_heatmap(activations(), neurons=neurons)  # type: ignore[arg-type]
    assert fig.axes[0].get_title() == f"cosine distance, {says}"


def test_feature_directions_legend_names_each_feature_in_its_colour() -> None:
    fig = plot.feature_directions(pentagon())
    legend = fig.axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == [f"feature {i}" for i in range(5)]
    (quiver,) = [c for c in fig.axes[0].collections if isinstance(c, Quiver)]
    arrows = [tuple(c) for c in quiver.get_facecolors()]
    swatches = [tuple(matplotlib.colors.to_rgba(h.get_color())) for h in legend.legend_handles]
    np.testing.assert_allclose(swatches, arrows)
    # several panels share one figure legend
    fig = plot.feature_directions(torch.randn(3, 2, 4))
    assert len(fig.legends) == 1
    assert len(fig.legends[0].get_texts()) == 4
    # too many features for a readable legend: none
    assert plot.feature_directions(torch.randn(1, 2, 40)).axes[0].get_legend() is None


# --------------------------------------------------------------------------- phase diagram optimum


def _boundary_paths(fig: Figure) -> list[np.ndarray]:
    sets = [c for c in fig.axes[0].collections if c.get_gid() == "optimum-boundary"]
    return [p.vertices for c in sets for p in c.get_paths() if len(p.vertices)]


def test_phase_diagram_draws_the_optimum_boundary_where_the_losses_cross() -> None:
    # feature 1 only costs r, feature 2 only costs 1, antipodal never wins: the boundary is r = 1
    def losses(p: float, r: float) -> tuple[float, float, float]:
        return (r, 1.0, 10.0)

    labels = np.array([[0, 0, 0], [1, 1, 1]])  # rows r = 0.5, 2: exactly the optimum
    fig = plot.phase_diagram(labels, [1.0, 0.1, 0.01], [0.5, 2.0], optimum=losses)
    paths = _boundary_paths(fig)
    assert paths, "no boundary drawn"
    y = np.concatenate([v[:, 1] for v in paths])
    np.testing.assert_allclose(y, 1.0, rtol=1e-9)
    x = np.concatenate([v[:, 0] for v in paths])
    assert x.min() < 1.1
    assert x.max() > 90
    assert not [line for line in fig.axes[0].lines if line.get_gid() == "disagreement"]


def test_phase_diagram_crosses_the_cells_that_disagree_with_the_closed_form() -> None:
    from superposition.report import phase_losses

    p = [1.0, 0.3, 0.1, 0.03, 0.01]
    r = [0.1, 1.0, 10.0]
    optimum = np.array([[int(np.argmin(phase_losses(pp, rr))) for pp in p] for rr in r])
    learned = optimum.copy()
    learned[0, 2] = (learned[0, 2] + 1) % 3
    learned[2, 4] = (learned[2, 4] + 1) % 3
    fig = plot.phase_diagram(learned, p, r, optimum=phase_losses)
    (cross,) = [line for line in fig.axes[0].lines if line.get_gid() == "disagreement"]
    got = np.array(sorted(zip(cross.get_xdata(), cross.get_ydata(), strict=True)))
    np.testing.assert_allclose(got, [(1 / 0.1, 0.1), (1 / 0.01, 10.0)])
    # the closed form has all three phases here, so each pair of neighbours has its boundary
    assert len(_boundary_paths(fig)) >= 2
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["lowest closed-form loss: boundary", "learned ≠ lowest-loss phase"]


def test_phase_diagram_optimum_must_give_three_losses() -> None:
    with pytest.raises(ValueError, match=r"optimum must return the three phases' losses"):
        plot.phase_diagram(np.eye(2, dtype=int), [1.0, 0.1], [1, 2], optimum=lambda p, r: (p, r))
