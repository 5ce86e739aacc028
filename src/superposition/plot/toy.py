"""Toy-model figures: weights, feature directions and geometry, the phase diagram."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np
from torch import Tensor

from superposition import metrics

# The phase classifier is a formula, so it lives in metrics; plot.classify_phase and
# plot.PHASE_NAMES stay where users found them.
from superposition.metrics import PHASE_NAMES as PHASE_NAMES
from superposition.metrics import classify_phase as classify_phase

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from numpy.typing import NDArray

from superposition.plot._common import (
    _cmap,
    _float_tensor,
    _mappable,
    _new_figure,
    _panel,
    _probabilities,
    _require,
    _root,
    _toy_weights,
)

#: The fractions where Elhage et al. find features sticking (tegum products of small
#: polytopes): drawn as guide lines by :func:`feature_geometry`.
DIMENSION_FRACTIONS: tuple[tuple[float, str], ...] = (
    (1.0, "1"),
    (3 / 4, "3/4"),
    (2 / 3, "2/3"),
    (1 / 2, "1/2"),
    (2 / 5, "2/5"),
    (1 / 3, "1/3"),
)

# Beyond this many features a legend of colours says nothing a reader can match.
_MAX_LEGEND = 12


# --------------------------------------------------------------------------- duck types


class ToyModelLike(Protocol):
    """What :class:`ToyModelPlots` needs of a toy model: its weights and bias.

    Attributes:
        W: ``[instances, n_hidden, n_features]`` weights (a parameter is fine: it is detached).
        b: ``[instances, n_features]`` output bias.
    """

    @property
    def W(self) -> Tensor: ...

    @property
    def b(self) -> Tensor: ...


# --------------------------------------------------------------------------- toy models


def toy_weights(
    W: Tensor | NDArray[np.floating],
    b: Tensor | NDArray[np.floating],
    *,
    titles: Sequence[str] | None = None,
) -> Figure:
    """The toy-models paper's standard figure: ``WᵀW`` and bias above, feature norms below.

    One column per instance (e.g. one per sparsity). The top row shows ``WᵀW`` as a heatmap
    (``RdBu``, limits symmetric about 0 and shared by all instances) beside the bias as a narrow
    column; the bottom row shows ``||W_i||`` as horizontal bars, feature 0 at the top like the
    heatmap's rows, coloured by :func:`superposition.metrics.interference` from black (0, the
    feature has a dimension of its own) to yellow (≥ 1, in superposition).

    Layout: ``3 * instances`` axes, then one colorbar for the heatmaps and one for the bars.

    Args:
        W: ``[instances, n_hidden, n_features]`` weights (or one ``[n_hidden, n_features]``).
        b: ``[instances, n_features]`` bias (or one ``[n_features]``).
        titles: one title per instance, e.g. ``["1-S = 1", "1-S = 0.1"]``.

    Returns:
        The figure.

    Raises:
        ValueError: if the shapes of ``W``, ``b`` or ``titles`` do not match.

    Examples:
        >>> import torch
        >>> fig = toy_weights(torch.randn(2, 5, 20), torch.zeros(2, 20))
        >>> len(fig.axes)  # 2 instances x (WᵀW, bias, bars) + 2 colorbars
        8
    """
    from matplotlib.colors import Normalize

    W = _toy_weights(W)
    n_inst, _, n_feat = W.shape
    if isinstance(b, (Tensor, np.ndarray)) and b.ndim == 1:
        b = b[None]
    b = _float_tensor(b, "b", 2, "[instances, n_features]")
    if tuple(b.shape) != (n_inst, n_feat):
        raise ValueError(
            f"b must have shape [instances, n_features] = ({n_inst}, {n_feat}) to match W, "
            f"got shape {tuple(b.shape)}"
        )
    if titles is None:
        titles = [f"instance {k}" for k in range(n_inst)]
    if isinstance(titles, str) or len(titles) != n_inst:
        raise ValueError(
            f"titles must be a sequence of {n_inst} strings (one per instance), got {titles!r}"
        )

    gram = (W.mT @ W).numpy()  # [instances, features, features]
    bias = b.numpy()
    norms = metrics.feature_norms(W).numpy()
    interf = metrics.interference(W).numpy()
    limit = float(max(np.abs(gram).max(), np.abs(bias).max(), 1e-6))
    heat = Normalize(-limit, limit)
    superposed = Normalize(0.0, 1.0, clip=True)
    bar_max = float(max(norms.max(), 1.0)) * 1.05

    fig = _new_figure(max(3.0, 2.6 * n_inst) + 1.2, 5.5)
    grid = fig.add_gridspec(2, 2 * n_inst, width_ratios=[n_feat, 1.5] * n_inst)
    heatmaps: list[Axes] = []
    bars: list[Axes] = []
    for k in range(n_inst):
        ax_g = fig.add_subplot(grid[0, 2 * k])
        ax_b = fig.add_subplot(grid[0, 2 * k + 1])
        ax_n = fig.add_subplot(grid[1, 2 * k : 2 * k + 2])
        image = ax_g.imshow(gram[k], cmap="RdBu", norm=heat, interpolation="nearest")
        ax_b.imshow(
            bias[k][:, None], cmap="RdBu", norm=heat, interpolation="nearest", aspect="auto"
        )
        ax_g.set_title(titles[k], fontsize="medium")
        ax_g.set_xticks([])
        ax_g.set_yticks([])
        ax_b.set_xticks([0], ["b"])
        ax_b.set_yticks([])
        ax_n.barh(np.arange(n_feat), norms[k], color=_cmap("inferno")(superposed(interf[k])))
        ax_n.set_ylim(n_feat - 0.5, -0.5)
        ax_n.set_xlim(0, bar_max)
        ax_n.set_yticks([])
        ax_n.set_xlabel("‖W_i‖")
        heatmaps += [ax_g, ax_b]
        bars.append(ax_n)
    heatmaps[0].set_ylabel("WᵀW")
    bars[0].set_ylabel("features")
    fig.colorbar(image, ax=heatmaps, shrink=0.8, label="WᵀW, b")
    fig.colorbar(_mappable("inferno", superposed), ax=bars, shrink=0.8, label="interference")
    return fig


def feature_directions(W: Tensor | NDArray[np.floating], *, ax: Axes | None = None) -> Figure:
    """The 2-D embedding ``W_i`` of every feature of an ``n_hidden = 2`` model, as arrows.

    Arrows start at the origin, one colour per feature, named in a legend; five features of
    equal importance at high sparsity form the paper's pentagon. With several instances and no
    ``ax``, one panel per instance. Each panel is titled (``"instance k"`` with several).

    Args:
        W: ``[instances, 2, n_features]`` weights (or one ``[2, n_features]``).
        ax: draw into this axes; ``W`` must then hold a single instance.

    Returns:
        The figure.

    Raises:
        ValueError: if ``n_hidden != 2``, or ``ax`` is given with several instances.

    Examples:
        >>> import math, torch
        >>> angles = torch.arange(5) * 2 * math.pi / 5
        >>> pentagon = torch.stack([angles.cos(), angles.sin()])  # [2, 5]
        >>> fig = feature_directions(pentagon)
        >>> len(fig.axes), fig.axes[0].get_title()
        (1, 'embeddings W_i of 5 features')
    """
    W = _toy_weights(W)
    if W.shape[1] != 2:
        raise ValueError(
            f"feature_directions draws 2-D embeddings: W must have shape [instances, 2, "
            f"n_features] (n_hidden = 2), got shape {tuple(W.shape)}"
        )
    n_inst, _, n_feat = W.shape
    if ax is not None and n_inst != 1:
        raise ValueError(
            f"ax= draws one panel, so W must hold one instance, got {n_inst} instances in "
            f"shape {tuple(W.shape)}; pass W[k] or leave ax=None for one panel per instance"
        )
    if ax is None:
        legend = 1.3 if n_feat <= _MAX_LEGEND else 0.0
        fig = _new_figure(max(2.8 * n_inst + 0.4, 3.4) + legend, 3.2)
        axes = [fig.add_subplot(1, n_inst, k + 1) for k in range(n_inst)]
    else:
        fig, axes = _root(ax), [ax]
    colors = _cmap("hsv")(np.arange(n_feat) / n_feat)
    reach = max(float(metrics.feature_norms(W).max()), 1e-6) * 1.15
    for k, panel in enumerate(axes):
        x, y = W[k].numpy()
        panel.quiver(
            np.zeros(n_feat), np.zeros(n_feat), x, y, color=colors,
            angles="xy", scale_units="xy", scale=1, width=0.012,
        )  # fmt: skip
        panel.axhline(0, color="0.85", lw=0.8, zorder=0)
        panel.axvline(0, color="0.85", lw=0.8, zorder=0)
        panel.set_xlim(-reach, reach)
        panel.set_ylim(-reach, reach)
        panel.set_aspect("equal")
        panel.set_xticks([])
        panel.set_yticks([])
        if n_inst > 1:
            panel.set_title(f"instance {k}", fontsize="medium")
        else:
            panel.set_title(f"embeddings W_i of {n_feat} features", fontsize="medium")
    if n_feat <= _MAX_LEGEND:
        from matplotlib.lines import Line2D

        # Quiver has no per-arrow legend handles: one coloured line per feature stands in.
        handles = [Line2D([], [], color=c, lw=2) for c in colors]
        labels = [f"feature {i}" for i in range(n_feat)]
        if ax is None and n_inst > 1:
            fig.legend(handles, labels, loc="outside right upper", fontsize="small")
        else:
            axes[0].legend(handles, labels, loc="center left", bbox_to_anchor=(1.02, 0.5),
                           fontsize="small", frameon=False)  # fmt: skip
    return fig


def feature_geometry(
    W: Tensor | NDArray[np.floating],
    feature_probability: Sequence[float] | Tensor | NDArray[np.floating],
    *,
    min_norm: float = 0.5,
    ax: Axes | None = None,
) -> Figure:
    """Dimensions per feature against ``1/(1-S)``, with each feature's ``D_i`` scattered.

    The line is :func:`superposition.metrics.dimensions_per_feature` of each instance; the
    dots are :func:`superposition.metrics.feature_dimensionality` of its represented features
    (``||W_i|| > min_norm``). Dashed guide lines mark the fractions 1, 3/4, 2/3, 1/2, 2/5 and
    1/3 where the paper finds features sticking.

    Args:
        W: ``[instances, n_hidden, n_features]`` weights, one instance per sparsity.
        feature_probability: ``[instances]`` probability ``1 - S`` that a feature is non-zero.
        min_norm: features with a shorter embedding count as not represented and are not dotted.
        ax: draw into this axes.

    Returns:
        The figure.

    Raises:
        ValueError: if ``feature_probability`` is not one value in (0, 1] per instance.

    Examples:
        >>> import torch
        >>> fig = feature_geometry(torch.randn(3, 5, 20), [1.0, 0.1, 0.01])
        >>> fig.axes[0].get_xscale()
        'log'
    """
    from matplotlib.transforms import blended_transform_factory

    W = _toy_weights(W)
    p = _probabilities(feature_probability, W.shape[0])
    x = 1.0 / p
    per_feature = metrics.dimensions_per_feature(W).double().numpy()
    per_feature = np.where(np.isfinite(per_feature), per_feature, np.nan)
    dims = metrics.feature_dimensionality(W).numpy()
    shown = metrics.feature_norms(W).numpy() > min_norm

    fig, ax = _panel(ax)
    label_at = blended_transform_factory(ax.transAxes, ax.transData)
    for value, name in DIMENSION_FRACTIONS:
        ax.axhline(value, color="0.7", ls="--", lw=0.8, zorder=0)
        ax.text(1.01, value, name, transform=label_at, va="center", fontsize="small")
    order = np.argsort(x)
    ax.plot(x[order], per_feature[order], color="black", lw=1.5, label="dimensions per feature")
    xs = np.repeat(x, W.shape[-1]).reshape(dims.shape)
    ax.scatter(xs[shown], dims[shown], s=12, alpha=0.6, color="tab:blue", label="D_i per feature")
    ax.set_xscale("log")
    ax.set_ylim(0, 1.1 * max(1.0, float(np.nanmax(per_feature, initial=1.0))))
    ax.set_xlabel("1 / (1 − S)")
    ax.set_ylabel("dimensions per feature")
    ax.legend(loc="upper right", fontsize="small")
    return fig


def _log_edges(values: NDArray[np.float64]) -> NDArray[np.float64]:
    """Cell edges for sorted positive centres on a log axis: geometric midpoints."""
    logs = np.log(values)
    if len(logs) == 1:
        edges = logs[0] + np.array([-0.5, 0.5])
    else:
        mid = (logs[1:] + logs[:-1]) / 2
        edges = np.concatenate([[2 * logs[0] - mid[0]], mid, [2 * logs[-1] - mid[-1]]])
    return np.asarray(np.exp(edges), dtype=np.float64)


def phase_diagram(
    labels: Tensor | NDArray[np.integer],
    feature_probability: Sequence[float] | Tensor | NDArray[np.floating],
    relative_importance: Sequence[float] | Tensor | NDArray[np.floating],
    *,
    optimum: Callable[[float, float], Sequence[float]] | None = None,
    ax: Axes | None = None,
) -> Figure:
    """The ``n = 2, m = 1`` phase diagram: what the model learned at each sparsity and importance.

    A grid of cells on log axes, ``1/(1-S)`` across and feature 2's importance relative to
    feature 1's up, each coloured by its :func:`~superposition.metrics.classify_phase` code,
    with a colorbar naming the three phases.

    With ``optimum``, the diagram also shows what the model *should* learn: ``optimum(p, r)``
    returns the expected loss of each of the three phases (in
    :data:`~superposition.metrics.PHASE_NAMES` order) at feature probability ``p`` and relative
    importance ``r``, e.g. :func:`superposition.report.phase_losses`. The boundaries where the
    lowest-loss phase changes are drawn as dashed black lines (gid ``"optimum-boundary"``), and
    every cell whose learned phase is not the optimum at its centre gets a white cross (gid
    ``"disagreement"``).

    Args:
        labels: ``[len(relative_importance), len(feature_probability)]`` ints in ``{0, 1, 2}``.
        feature_probability: ``1 - S`` of each column, in (0, 1].
        relative_importance: importance of feature 2 over feature 1 for each row, positive.
        optimum: the three phases' expected losses at ``(p, r)``, to overlay the optimum.
        ax: draw into this axes (a colorbar is added beside it).

    Returns:
        The figure, with the diagram and its colorbar.

    Raises:
        ValueError: if ``labels`` is not an integer array of the grid's shape with codes 0–2.

    Examples:
        >>> import torch
        >>> labels = torch.tensor([[1, 1, 2], [0, 2, 2]])
        >>> fig = phase_diagram(labels, [1.0, 0.1, 0.01], [0.5, 2.0])
        >>> len(fig.axes)  # the diagram and its colorbar
        2
        >>> def losses(p, r):  # feature 1 only wins everywhere
        ...     return (0.0, 1.0, 1.0)
        >>> fig = phase_diagram(labels, [1.0, 0.1, 0.01], [0.5, 2.0], optimum=losses)
        >>> [line.get_gid() for line in fig.axes[0].lines]
        ['disagreement']
        >>> len(fig.axes[0].lines[0].get_xdata())  # cells that did not learn "feature 1 only"
        5
    """
    from matplotlib.colors import BoundaryNorm, ListedColormap

    grid = np.asarray(labels.detach().cpu() if isinstance(labels, Tensor) else labels)
    if grid.ndim != 2 or not np.issubdtype(grid.dtype, np.integer):
        raise ValueError(
            "labels must be a 2-D integer array [len(relative_importance), "
            f"len(feature_probability)], got shape {grid.shape} and dtype {grid.dtype}"
        )
    rows, cols = grid.shape
    p = _probabilities(feature_probability, cols)
    imp = np.atleast_1d(
        np.asarray(
            relative_importance.detach().cpu()
            if isinstance(relative_importance, Tensor)
            else relative_importance,
            dtype=np.float64,
        )
    )
    if imp.shape != (rows,):
        raise ValueError(
            f"relative_importance must have shape ({rows},), one value per row of labels, "
            f"got {imp.shape}"
        )
    if not bool(np.all(imp > 0)):
        raise ValueError(f"relative_importance must be positive, got {imp.tolist()!r}")
    if grid.size and not bool(np.isin(grid, (0, 1, 2)).all()):
        raise ValueError(f"labels must be codes 0, 1 or 2, got values {np.unique(grid).tolist()}")

    x = 1.0 / p
    col_order, row_order = np.argsort(x), np.argsort(imp)
    cmap = ListedColormap(["tab:blue", "tab:orange", "tab:purple"])
    norm = BoundaryNorm([-0.5, 0.5, 1.5, 2.5], cmap.N)
    fig, ax = _panel(ax)
    mesh = ax.pcolormesh(
        _log_edges(x[col_order]),
        _log_edges(imp[row_order]),
        grid[np.ix_(row_order, col_order)],
        cmap=cmap,
        norm=norm,
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("1 / (1 − S)")
    ax.set_ylabel("relative importance of feature 2")
    ax.set_title("phase learned by the n = 2, m = 1 model")
    if optimum is not None:
        _overlay_optimum(ax, optimum, grid, p, imp)
        ax.set_title("learned phase; dashed: optimum's boundaries")
    bar = fig.colorbar(mesh, ax=ax, ticks=[0, 1, 2])
    bar.ax.set_yticklabels(PHASE_NAMES)
    return fig


def _overlay_optimum(
    ax: Axes,
    optimum: Callable[[float, float], Sequence[float]],
    grid: NDArray[np.integer],
    p: NDArray[np.float64],
    imp: NDArray[np.float64],
) -> None:
    """Dashed boundaries of the lowest-loss phase, and a cross on each cell that disagrees."""
    from matplotlib.lines import Line2D

    def losses(pp: float, rr: float) -> NDArray[np.float64]:
        values = np.asarray(optimum(float(pp), float(rr)), dtype=np.float64)
        if values.shape != (3,):
            raise ValueError(
                "optimum must return the three phases' losses (one per PHASE_NAMES entry), "
                f"got shape {values.shape} at p={pp!r}, r={rr!r}"
            )
        return values

    x_lo, x_hi = ax.get_xlim()
    y_lo, y_hi = ax.get_ylim()
    # 1/(1-S) < 1 would be a feature probability above 1: the closed form means nothing there.
    xs = np.geomspace(max(x_lo, 1.0), x_hi, 241)
    ys = np.geomspace(y_lo, y_hi, 241)
    fine = np.array([[losses(1.0 / x, y) for x in xs] for y in ys])  # [y, x, 3]
    best = fine.argmin(-1)
    # Each boundary is the zero of the loss difference of the two phases that meet there;
    # elsewhere that difference is masked, so no line runs through a third phase's region.
    boundary = Line2D([], [], color="black", ls="--", lw=1.5)
    for a, b in ((0, 1), (0, 2), (1, 2)):
        meet = (best == a) | (best == b)
        if not (meet & (best == a)).any() or not (meet & (best == b)).any():
            continue
        diff = np.ma.masked_where(~meet, fine[..., a] - fine[..., b])
        contour = ax.contour(xs, ys, diff, levels=[0.0], colors="black", linestyles="--")
        contour.set_gid("optimum-boundary")
    handles: list[Line2D] = [boundary]
    names = ["lowest closed-form loss: boundary"]

    expected = np.array([[losses(pp, rr).argmin() for pp in p] for rr in imp])
    wrong_r, wrong_p = np.nonzero(expected != grid)
    if len(wrong_r):
        (cross,) = ax.plot(
            1.0 / p[wrong_p], imp[wrong_r], "X", color="white", mec="black",
            ms=12, mew=1.5, ls="none", gid="disagreement",
        )  # fmt: skip
        handles.append(cross)
        names.append("learned ≠ lowest-loss phase")
    ax.legend(handles, names, loc="upper center", bbox_to_anchor=(0.5, -0.16),
              fontsize="small", ncols=2, frameon=False)  # fmt: skip


# --------------------------------------------------------------------------- fluent accessors


class ToyModelPlots:
    """Figures of one toy model, reached as ``model.plot``.

    Args:
        model: anything with ``W`` (``[instances, n_hidden, n_features]``) and ``b``
            (``[instances, n_features]``); parameters are detached, never modified.

    Examples:
        >>> import torch
        >>> from types import SimpleNamespace
        >>> model = SimpleNamespace(W=torch.randn(3, 2, 5), b=torch.zeros(3, 5))
        >>> len(ToyModelPlots(model).directions().axes)
        3
    """

    def __init__(self, model: ToyModelLike) -> None:
        _require(model, "ToyModelPlots", "a model with .W and .b tensors", ("W", "b"))
        self._model = model

    def __repr__(self) -> str:
        return f"ToyModelPlots(W shape {tuple(self._model.W.shape)})"

    def weights(self, *, titles: Sequence[str] | None = None) -> Figure:
        """:func:`toy_weights` of the model."""
        return toy_weights(self._model.W.detach(), self._model.b.detach(), titles=titles)

    def directions(self, *, ax: Axes | None = None) -> Figure:
        """:func:`feature_directions` of the model (``n_hidden`` must be 2)."""
        return feature_directions(self._model.W.detach(), ax=ax)

    def geometry(
        self,
        feature_probability: Sequence[float] | Tensor | NDArray[np.floating],
        *,
        min_norm: float = 0.5,
        ax: Axes | None = None,
    ) -> Figure:
        """:func:`feature_geometry` of the model, one ``feature_probability`` per instance."""
        return feature_geometry(
            self._model.W.detach(), feature_probability, min_norm=min_norm, ax=ax
        )
