"""Figures of both halves: toy-model geometry and the seed paper's neuron plots (Figures 4–7).

Every function takes plain tensors (or NumPy arrays), validates them before drawing, computes
its numbers with :mod:`superposition.metrics` (the single home of every formula) and returns a
:class:`matplotlib.figure.Figure`. Functions that draw one panel take ``ax=`` to draw into an
existing :class:`~matplotlib.axes.Axes` instead, and then return that axes' figure.

Figures are built with :class:`matplotlib.figure.Figure` directly, never through ``pyplot``: no
global state, nothing to close, no GUI backend needed. Matplotlib is imported inside the
functions, so ``import superposition`` stays light.

:class:`ToyModelPlots` and :class:`ActivationPlots` are the fluent accessors behind
``model.plot`` and ``acts.plot``; they only need the duck types :class:`ToyModelLike` and
:class:`ActivationsLike`, so this module never imports the toy or probe code.
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np
import torch
from torch import Tensor

from superposition import metrics

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Colormap, Normalize
    from matplotlib.figure import Figure
    from numpy.typing import NDArray

__all__ = [
    "DIMENSION_FRACTIONS",
    "PHASE_NAMES",
    "ActivationPlots",
    "ActivationsLike",
    "ToyModelLike",
    "ToyModelPlots",
    "activation_sums",
    "classify_phase",
    "cosine_heatmap",
    "cosine_histogram",
    "distance_heatmap",
    "distance_histogram",
    "feature_directions",
    "feature_geometry",
    "neuron_traces",
    "phase_diagram",
    "save_figure",
    "toy_weights",
]

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

#: Names of the codes returned by :func:`classify_phase` and drawn by :func:`phase_diagram`.
PHASE_NAMES: tuple[str, str, str] = (
    "feature 1 only",
    "feature 2 only",
    "antipodal (superposition)",
)

_W_DOC = "[instances, n_hidden, n_features]"
_X_DOC = "[tokens, neurons]"
# Beyond this many tick labels the token axis is unreadable: show every k-th token instead.
_MAX_TOKEN_TICKS = 60


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


class ActivationsLike(Protocol):
    """What :class:`ActivationPlots` needs of collected activations.

    Attributes:
        values: ``[tokens, neurons]`` float activations.
        tokens: the token strings, one per row of ``values``.

    An optional ``text_index`` (``[tokens]`` ints) is used when present to mark where each
    text starts in :meth:`ActivationPlots.neuron_traces`.
    """

    @property
    def values(self) -> Tensor: ...

    @property
    def tokens(self) -> Sequence[str]: ...


# --------------------------------------------------------------------------- validation helpers


def _float_tensor(x: object, name: str, ndim: int, shape_doc: str) -> Tensor:
    """``x`` as a detached CPU float tensor of exactly ``ndim`` dims, or a ValueError."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor or numpy.ndarray of shape {shape_doc}, "
            f"got {type(x).__name__}"
        )
    # metrics owns the shape/dtype/finiteness messages, so both modules word them alike.
    x = metrics._check(x.detach().cpu(), name, ndim, shape_doc, exact=True)
    # Half precision has no NumPy twin (bfloat16) and too little range for Gram matrices.
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _toy_weights(W: object, min_instances: int = 1) -> Tensor:
    """Validate toy weights; a single ``[n_hidden, n_features]`` matrix becomes one instance."""
    if isinstance(W, (Tensor, np.ndarray)) and W.ndim == 2:
        W = W[None]
    W = _float_tensor(W, "W", 3, _W_DOC)
    if W.shape[0] < min_instances or W.shape[-1] == 0 or W.shape[-2] == 0:
        raise ValueError(
            f"W must have shape {_W_DOC} with at least one instance, hidden dimension and "
            f"feature, got shape {tuple(W.shape)}"
        )
    return W


def _probabilities(p: object, n: int, name: str = "feature_probability") -> NDArray[np.float64]:
    """``n`` values in (0, 1] as a float64 array, or a ValueError naming ``name``."""
    arr = np.asarray(p.detach().cpu() if isinstance(p, Tensor) else p, dtype=np.float64)
    arr = np.atleast_1d(arr)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), one value per entry, got {arr.shape}")
    if not bool(np.all((arr > 0) & (arr <= 1))):
        raise ValueError(f"{name} must be in (0, 1], got {arr.tolist()!r}")
    return arr


def _activations(X: object) -> Tensor:
    X = _float_tensor(X, "X", 2, _X_DOC)
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(
            f"X must have shape {_X_DOC} with at least one token and one neuron, "
            f"got shape {tuple(X.shape)}"
        )
    return X


def _positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------- figure helpers


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _root(ax: Axes) -> Figure:
    """The top-level figure of ``ax`` (its ``.figure`` is a SubFigure inside subfigures)."""
    from matplotlib.figure import Figure

    fig = ax.figure
    return fig if isinstance(fig, Figure) else fig.figure


def _panel(ax: Axes | None, width: float = 6.0, height: float = 4.5) -> tuple[Figure, Axes]:
    if ax is None:
        fig = _new_figure(width, height)
        return fig, fig.add_subplot()
    return _root(ax), ax


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

    Arrows start at the origin, one colour per feature; five features of equal importance at
    high sparsity form the paper's pentagon. With several instances and no ``ax``, one panel
    per instance.

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
        >>> len(feature_directions(pentagon).axes)
        1
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
        fig = _new_figure(2.8 * n_inst + 0.4, 3.0)
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


def classify_phase(W: Tensor | NDArray[np.floating], *, threshold: float = 0.5) -> Tensor:
    """What an ``n = 2, m = 1`` model learned: feature 1, feature 2, or both antipodally.

    Both features represented (``||W_i|| > threshold``) and pointing in opposite directions
    (``W_1 · W_2 < 0``) is superposition, code 2 (:data:`PHASE_NAMES`). Otherwise the model is
    read as keeping the feature with the longer embedding: code 0 for feature 1 (also on a
    tie), 1 for feature 2.

    Args:
        W: ``[instances, 1, 2]`` weights (or one ``[1, 2]``).
        threshold: the norm above which a feature counts as represented.

    Returns:
        ``[instances]`` int64 codes in ``{0, 1, 2}``.

    Examples:
        >>> import torch
        >>> classify_phase(torch.tensor([[[1.0, -1.0]], [[1.0, 0.0]], [[0.1, 0.9]]]))
        tensor([2, 0, 1])
    """
    W = _toy_weights(W)
    if tuple(W.shape[1:]) != (1, 2):
        raise ValueError(
            f"classify_phase reads the n=2, m=1 model: W must have shape [instances, 1, 2], "
            f"got shape {tuple(W.shape)}"
        )
    norms = metrics.feature_norms(W)  # [instances, 2]
    antipodal = (norms > threshold).all(-1) & (W[:, 0, 0] * W[:, 0, 1] < 0)
    larger = (norms[:, 1] > norms[:, 0]).long()
    return torch.where(antipodal, torch.full_like(larger, 2), larger)


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
    ax: Axes | None = None,
) -> Figure:
    """The ``n = 2, m = 1`` phase diagram: what the model learned at each sparsity and importance.

    A grid of cells on log axes, ``1/(1-S)`` across and feature 2's importance relative to
    feature 1's up, each coloured by its :func:`classify_phase` code, with a colorbar naming
    the three phases.

    Args:
        labels: ``[len(relative_importance), len(feature_probability)]`` ints in ``{0, 1, 2}``.
        feature_probability: ``1 - S`` of each column, in (0, 1].
        relative_importance: importance of feature 2 over feature 1 for each row, positive.
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
    bar = fig.colorbar(mesh, ax=ax, ticks=[0, 1, 2])
    bar.ax.set_yticklabels(PHASE_NAMES)
    return fig


# --------------------------------------------------------------------------- real models


def _neuron_indices(
    n_neurons: int, neurons: Literal["half", "all"] | int | Sequence[int]
) -> Tensor:
    if isinstance(neurons, str):
        if neurons == "all":
            return torch.arange(n_neurons)
        if neurons == "half":
            return torch.arange(max(1, n_neurons // 2))
        raise ValueError(
            f'neurons must be "half", "all", a count or a sequence of indices, got {neurons!r}'
        )
    if isinstance(neurons, bool):
        raise ValueError(f"neurons must be a count, not a bool, got {neurons!r}")
    if isinstance(neurons, (int, np.integer)):
        if not 1 <= neurons <= n_neurons:
            raise ValueError(f"neurons must be a count in 1..{n_neurons}, got {neurons!r}")
        return torch.arange(int(neurons))
    index = torch.as_tensor(list(neurons), dtype=torch.long)
    if index.ndim != 1 or index.numel() == 0:
        raise ValueError(f"neurons must be a non-empty sequence of indices, got {neurons!r}")
    if bool(((index < 0) | (index >= n_neurons)).any()):
        raise ValueError(
            f"neurons must be indices in 0..{n_neurons - 1} (X has {n_neurons} neurons), "
            f"got {index.tolist()!r}"
        )
    return index


def cosine_heatmap(
    X: Tensor | NDArray[np.floating],
    *,
    center: bool = False,
    neurons: Literal["half", "all"] | int | Sequence[int] = "half",
    ax: Axes | None = None,
) -> Figure:
    """The seed paper's Figure 4: the neuron × neuron cosine-distance matrix as a heatmap.

    Distances come from :func:`superposition.metrics.cosine_distance`, drawn on a diverging
    map centred at 1: blue at 0 (neurons fire alike), white at 1 (orthogonal), red at 2
    (opposed). The image is rasterised with ``nearest`` interpolation, so thousands of neurons
    stay sharp and vector output stays small.

    Args:
        X: ``[tokens, neurons]`` activations.
        center: mean-centre each neuron first (distance = 1 − Pearson correlation).
        neurons: ``"half"`` (the first half, as in the paper), ``"all"``, a count of leading
            neurons, or a sequence of neuron indices.
        ax: draw into this axes (a colorbar is added beside it).

    Returns:
        The figure, with the heatmap and its colorbar.

    Raises:
        ValueError: if ``X`` is not a 2-D float array or ``neurons`` selects nothing valid.

    Examples:
        >>> import torch
        >>> fig = cosine_heatmap(torch.rand(30, 8), neurons="all")
        >>> fig.axes[0].images[0].get_array().shape
        (8, 8)
    """
    X = _activations(X)
    index = _neuron_indices(X.shape[1], neurons)
    distance = metrics.cosine_distance(X[:, index], center=center)
    kind = "centred " if center else ""
    return _heatmap(distance, index, neurons, f"{kind}cosine distance", X.shape[1], ax)


def distance_heatmap(
    D: Tensor | NDArray[np.floating],
    *,
    neurons: Literal["half", "all"] | int | Sequence[int] = "half",
    label: str = "cosine distance",
    ax: Axes | None = None,
) -> Figure:
    """Figure 4 from a precomputed ``[neurons, neurons]`` distance matrix.

    For distances that were never a ``[tokens, neurons]`` matrix in memory, such as
    ``StreamingStatistics.cosine_distance()`` over a corpus; same drawing as
    :func:`cosine_heatmap`.

    Args:
        D: ``[neurons, neurons]`` distances in ``[0, 2]``.
        neurons: ``"half"``, ``"all"``, a count of leading neurons, or indices.
        label: what the distances are, for the title and colorbar.
        ax: draw into this axes (a colorbar is added beside it).

    Returns:
        The figure, with the heatmap and its colorbar.

    Examples:
        >>> import torch
        >>> from superposition import metrics
        >>> D = metrics.cosine_distance(torch.rand(30, 6))
        >>> distance_heatmap(D, neurons="all").axes[0].images[0].get_array().shape
        (6, 6)
    """
    D = _square(D, "D")
    index = _neuron_indices(D.shape[0], neurons)
    return _heatmap(D[index][:, index], index, neurons, label, D.shape[0], ax)


def _square(D: object, name: str) -> Tensor:
    D = _float_tensor(D, name, 2, "[neurons, neurons]")
    if D.shape[0] != D.shape[1]:
        raise ValueError(f"{name} must be square [neurons, neurons], got shape {(*D.shape,)}")
    return D


def _heatmap(
    distance: Tensor,
    index: Tensor,
    neurons: Literal["half", "all"] | int | Sequence[int],
    label: str,
    n_total: int,
    ax: Axes | None,
) -> Figure:
    fig, ax = _panel(ax, 6.0, 5.0)
    image = ax.imshow(
        distance.numpy(),
        cmap="RdBu_r",
        vmin=0.0,
        vmax=2.0,
        interpolation="nearest",
        rasterized=True,
    )
    if not isinstance(neurons, (str, int, np.integer)) and len(index) <= 40:
        ticks = np.arange(len(index))
        ax.set_xticks(ticks, [str(i) for i in index.tolist()], rotation=90, fontsize="small")
        ax.set_yticks(ticks, [str(i) for i in index.tolist()], fontsize="small")
    ax.set_xlabel("neuron")
    ax.set_ylabel("neuron")
    ax.set_title(f"{label}, {len(index)} of {n_total} neurons")
    fig.colorbar(image, ax=ax, label=label)
    return fig


def cosine_histogram(
    X: Tensor | NDArray[np.floating],
    *,
    center: bool = False,
    bins: int = 100,
    ax: Axes | None = None,
) -> Figure:
    """The seed paper's Figure 5: histogram of the cosine distances between neuron pairs.

    Each unordered pair ``i < j`` counts once (the upper triangle of
    :func:`superposition.metrics.cosine_distance`); a dotted line marks 1, orthogonal.

    Args:
        X: ``[tokens, neurons]`` activations, at least two neurons.
        center: mean-centre each neuron first.
        bins: number of equal bins over ``[0, 2]``.
        ax: draw into this axes.

    Returns:
        The figure.

    Raises:
        ValueError: if ``X`` is not a 2-D float array with at least two neurons.

    Examples:
        >>> import torch
        >>> fig = cosine_histogram(torch.rand(30, 8), bins=20)
        >>> len(fig.axes[0].patches)
        20
    """
    X = _activations(X)
    bins = _positive_int(bins, "bins")
    n = X.shape[1]
    if n < 2:
        raise ValueError(f"X must have at least 2 neurons to form a pair, got shape {(*X.shape,)}")
    distance = metrics.cosine_distance(X, center=center)
    return _histogram(distance, bins, ("centred " if center else "") + "cosine distance", ax)


def distance_histogram(
    D: Tensor | NDArray[np.floating],
    *,
    bins: int = 100,
    label: str = "cosine distance",
    ax: Axes | None = None,
) -> Figure:
    """Figure 5 from a precomputed ``[neurons, neurons]`` distance matrix.

    Same drawing as :func:`cosine_histogram`, for distances from a streaming accumulator.

    Args:
        D: ``[neurons, neurons]`` distances in ``[0, 2]``, at least two neurons.
        bins: number of equal bins over ``[0, 2]``.
        label: what the distances are, for the axis label.
        ax: draw into this axes.

    Returns:
        The figure.

    Examples:
        >>> import torch
        >>> from superposition import metrics
        >>> D = metrics.cosine_distance(torch.rand(30, 6))
        >>> len(distance_histogram(D, bins=10).axes[0].patches)
        10
    """
    D = _square(D, "D")
    if D.shape[0] < 2:
        raise ValueError(f"D must have at least 2 neurons to form a pair, got shape {(*D.shape,)}")
    return _histogram(D, _positive_int(bins, "bins"), label, ax)


def _histogram(distance: Tensor, bins: int, label: str, ax: Axes | None) -> Figure:
    n = distance.shape[0]
    i, j = torch.triu_indices(n, n, offset=1)
    pairs = distance[i, j].numpy()
    fig, ax = _panel(ax)
    ax.hist(pairs, bins=bins, range=(0.0, 2.0), color="tab:blue")
    ax.axvline(1.0, color="0.3", ls=":", lw=1)
    ax.set_xlim(0.0, 2.0)
    ax.set_xlabel(label)
    ax.set_ylabel(f"neuron pairs (of {len(pairs):,})")
    return fig


def neuron_traces(
    X: Tensor | NDArray[np.floating],
    tokens: Sequence[str],
    *,
    n: int = 50,
    seed: int = 0,
    text_index: Tensor | NDArray[np.integer] | None = None,
    ax: Axes | None = None,
) -> Figure:
    """The seed paper's Figure 6: activations of randomly sampled neurons at each token.

    ``n`` neurons are drawn without replacement by a ``torch.Generator`` seeded with ``seed``
    (all of them when ``X`` has fewer), one line each, in ascending neuron order. Tokens label
    the x axis, every k-th one when there are more than 60. With ``text_index``, dotted lines
    mark where each text starts.

    Args:
        X: ``[tokens, neurons]`` activations.
        tokens: one string per row of ``X``.
        n: number of neurons to sample.
        seed: seed of the sample; the same seed draws the same neurons.
        text_index: ``[tokens]`` index of the text each token came from.
        ax: draw into this axes.

    Returns:
        The figure.

    Raises:
        ValueError: if ``tokens`` or ``text_index`` do not have one entry per row of ``X``.

    Examples:
        >>> import torch
        >>> fig = neuron_traces(torch.randn(4, 100), ["the", "cat", "sat", "."], n=5)
        >>> len(fig.axes[0].lines)
        5
    """
    X = _activations(X)
    n = _positive_int(n, "n")
    if isinstance(tokens, str) or len(tokens) != X.shape[0]:
        got = f"a string {tokens!r}" if isinstance(tokens, str) else f"{len(tokens)} tokens"
        raise ValueError(
            f"tokens must have one string per row of X ({X.shape[0]} tokens, X has shape "
            f"{tuple(X.shape)}), got {got}"
        )
    starts: list[int] = []
    if text_index is not None:
        texts = torch.as_tensor(text_index).detach().cpu()
        if tuple(texts.shape) != (X.shape[0],):
            raise ValueError(
                f"text_index must have shape ({X.shape[0]},), one entry per row of X, "
                f"got shape {tuple(texts.shape)}"
            )
        starts = (torch.nonzero(texts[1:] != texts[:-1]).flatten() + 1).tolist()

    generator = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(X.shape[1], generator=generator)[: min(n, X.shape[1])].sort().values
    positions = np.arange(X.shape[0])
    fig, ax = _panel(ax, max(6.0, min(0.18 * X.shape[0], 16.0)), 4.5)
    ax.plot(positions, X[:, chosen].numpy(), lw=0.8, alpha=0.7)
    for start in starts:
        ax.axvline(start - 0.5, color="0.4", ls=":", lw=1)
    step = math.ceil(len(tokens) / _MAX_TOKEN_TICKS)
    ax.set_xticks(positions[::step], [str(t) for t in tokens[::step]], rotation=90)
    ax.tick_params(axis="x", labelsize="small")
    ax.set_xlim(-0.5, X.shape[0] - 0.5)
    ax.set_xlabel("token")
    ax.set_ylabel("activation")
    ax.set_title(f"{len(chosen)} random neurons of {X.shape[1]} (seed {seed})")
    return fig


def activation_sums(
    X: Tensor | NDArray[np.floating], *, bins: int = 50, ax: Axes | None = None
) -> Figure:
    """The seed paper's Figure 7: histogram of each neuron's activation summed over all tokens.

    Args:
        X: ``[tokens, neurons]`` activations.
        bins: number of bins.
        ax: draw into this axes.

    Returns:
        The figure.

    Raises:
        ValueError: if ``X`` is not a 2-D float array.

    Examples:
        >>> import torch
        >>> fig = activation_sums(torch.rand(30, 64), bins=10)
        >>> len(fig.axes[0].patches)
        10
    """
    X = _activations(X)
    bins = _positive_int(bins, "bins")
    sums = X.double().sum(0).numpy()  # float64: a 3072-neuron layer over many tokens
    fig, ax = _panel(ax)
    ax.hist(sums, bins=bins, color="tab:blue")
    ax.set_xlabel(f"activation summed over {X.shape[0]:,} tokens")
    ax.set_ylabel(f"neurons (of {X.shape[1]:,})")
    return fig


# --------------------------------------------------------------------------- fluent accessors


def _require(obj: object, accessor: str, what: str, names: tuple[str, ...]) -> None:
    """The duck-typing check of the plot accessors, with an error that says what is missing."""
    for name in names:
        if not hasattr(obj, name):
            raise TypeError(f"{accessor} needs {what}, {type(obj).__name__} has no .{name}")


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


class ActivationPlots:
    """The seed paper's Figures 4–7 for one set of activations, reached as ``acts.plot``.

    Args:
        acts: anything with ``values`` (``[tokens, neurons]``) and ``tokens``; an optional
            ``text_index`` marks text boundaries in :meth:`neuron_traces`.

    Examples:
        >>> import torch
        >>> from types import SimpleNamespace
        >>> acts = SimpleNamespace(values=torch.rand(3, 10), tokens=["a", "b", "c"])
        >>> len(ActivationPlots(acts).neuron_traces(n=4).axes[0].lines)
        4
    """

    def __init__(self, acts: ActivationsLike) -> None:
        _require(
            acts, "ActivationPlots", "activations with .values and .tokens", ("values", "tokens")
        )
        self._acts = acts

    def __repr__(self) -> str:
        return f"ActivationPlots(values shape {tuple(self._acts.values.shape)})"

    def cosine_heatmap(
        self,
        *,
        center: bool = False,
        neurons: Literal["half", "all"] | int | Sequence[int] = "half",
        ax: Axes | None = None,
    ) -> Figure:
        """:func:`cosine_heatmap` (Figure 4) of the activations."""
        return cosine_heatmap(self._acts.values, center=center, neurons=neurons, ax=ax)

    def cosine_histogram(
        self, *, center: bool = False, bins: int = 100, ax: Axes | None = None
    ) -> Figure:
        """:func:`cosine_histogram` (Figure 5) of the activations."""
        return cosine_histogram(self._acts.values, center=center, bins=bins, ax=ax)

    def neuron_traces(self, n: int = 50, *, seed: int = 0, ax: Axes | None = None) -> Figure:
        """:func:`neuron_traces` (Figure 6) of the activations, texts marked if known."""
        text_index: Tensor | None = getattr(self._acts, "text_index", None)
        return neuron_traces(
            self._acts.values, self._acts.tokens, n=n, seed=seed, text_index=text_index, ax=ax
        )

    def activation_sums(self, *, bins: int = 50, ax: Axes | None = None) -> Figure:
        """:func:`activation_sums` (Figure 7) of the activations."""
        return activation_sums(self._acts.values, bins=bins, ax=ax)


# --------------------------------------------------------------------------- saving


def save_figure(fig: Figure, path: str | os.PathLike[str], *, dpi: float = 150) -> Path:
    """Write ``fig`` to ``path`` atomically: a failed save leaves no half-written file.

    The figure is written to a hidden temporary file in the same folder and moved into place
    with :func:`os.replace`, so readers see either the old file or the complete new one. The
    format follows the suffix (``.png``, ``.svg``, ``.pdf``, ...).

    Args:
        fig: the figure.
        path: destination; its folder must exist.
        dpi: resolution of raster output.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Examples:
        >>> import tempfile, torch
        >>> fig = activation_sums(torch.rand(10, 20))
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     saved = save_figure(fig, f"{folder}/sums.png")
        ...     saved.stat().st_size > 0
        True
    """
    target = Path(path)
    # Same folder, so os.replace is a rename on one filesystem; same suffix keeps the format.
    temp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp{target.suffix}")
    # Explicit format: without a suffix matplotlib would append ".png" to the temporary name.
    fmt = target.suffix[1:].lower() or "png"
    try:
        fig.savefig(temp, dpi=dpi, format=fmt)
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return target


# --------------------------------------------------------------------------- colour helpers


def _cmap(name: str) -> Colormap:
    import matplotlib

    return matplotlib.colormaps[name]


def _mappable(name: str, norm: Normalize) -> ScalarMappable:
    from matplotlib.cm import ScalarMappable

    return ScalarMappable(norm=norm, cmap=_cmap(name))
