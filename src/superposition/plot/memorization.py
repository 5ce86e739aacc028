"""Figures of memorization and double descent (Henighan et al., 2023).

Test loss against the training-set size ``T``, data vs feature dimensionality against ``T``,
and the hidden vectors of the training points beside the feature directions for a few ``T``.
They take plain tensors (as :func:`superposition.report.double_descent.sweep` returns them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from torch import Tensor

from superposition.plot._common import _float_tensor

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["dimensionality_curve", "loss_curve", "memorization_geometry"]


def _sizes(sizes: Sequence[int], rows: int) -> list[int]:
    out = [int(t) for t in sizes]
    if len(out) != rows or any(t < 1 for t in out):
        raise ValueError(
            f"sizes must hold {rows} positive training-set sizes (one per row), got {sizes!r}"
        )
    return out


def _axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        fig = ax.get_figure()
        assert fig is not None
        return fig, ax  # type: ignore[return-value]
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def loss_curve(
    sizes: Sequence[int],
    test_loss: Tensor,
    train_loss: Tensor | None = None,
    *,
    baseline: float | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Test (and train) loss against the training-set size, log-log: the double descent.

    Args:
        sizes: training-set sizes ``T``.
        test_loss: ``[len(sizes), instances]``; the median is drawn, each instance faintly.
        train_loss: optional, the same shape.
        baseline: optional loss of the zero output, drawn as a dashed line.
        ax: draw into this axes.

    Examples:
        >>> import torch
        >>> fig = loss_curve([3, 30, 300], torch.tensor([[1.0], [3.0], [0.5]]))
        >>> fig.axes[0].get_xscale()
        'log'
    """
    test = _float_tensor(test_loss, "test_loss", 2, "[sizes, instances]")
    T = _sizes(sizes, test.shape[0])
    fig, ax = _axes(ax, (5.5, 3.8))
    ax.plot(T, test.numpy(), color="tab:red", alpha=0.25, linewidth=0.8)
    ax.plot(T, test.median(-1).values.numpy(), "o-", color="tab:red", label="test (median)")
    if train_loss is not None:
        train = _float_tensor(train_loss, "train_loss", 2, "[sizes, instances]")
        if train.shape != test.shape:
            raise ValueError(
                f"train_loss must have test_loss's shape {tuple(test.shape)}, "
                f"got {tuple(train.shape)}"
            )
        # a memorized training set has loss ~0: keep it on the log axis
        med = train.median(-1).values.clamp_min(float(test.min()) * 1e-3)
        ax.plot(T, med.numpy(), "s--", color="tab:blue", label="train (median)")
    if baseline is not None:
        ax.axhline(baseline, color="0.4", linestyle=":", label="zero output")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training-set size T")
    ax.set_ylabel("loss")
    ax.set_title("Double descent")
    ax.legend(fontsize=8)
    return fig


def dimensionality_curve(
    sizes: Sequence[int],
    data_dimensionality: Tensor,
    feature_dimensionality: Tensor,
    *,
    ax: Axes | None = None,
) -> Figure:
    """Data vs feature dimensionality against the training-set size (log ``T``).

    Args:
        sizes: training-set sizes ``T``.
        data_dimensionality: ``[len(sizes), instances]``, e.g. the norm-weighted mean of
            :func:`superposition.metrics.data_dimensionality`.
        feature_dimensionality: the same for the features.
        ax: draw into this axes.

    Examples:
        >>> import torch
        >>> fig = dimensionality_curve([3, 300], torch.tensor([[0.6], [0.01]]),
        ...                            torch.tensor([[0.1], [0.4]]))
        >>> len(fig.axes[0].lines)
        4
    """
    data = _float_tensor(data_dimensionality, "data_dimensionality", 2, "[sizes, instances]")
    feat = _float_tensor(feature_dimensionality, "feature_dimensionality", 2, "[sizes, instances]")
    if data.shape != feat.shape:
        raise ValueError(
            f"data_dimensionality {tuple(data.shape)} and feature_dimensionality "
            f"{tuple(feat.shape)} must have the same shape"
        )
    T = _sizes(sizes, data.shape[0])
    fig, ax = _axes(ax, (5.5, 3.8))
    for vals, colour, label in ((data, "tab:purple", "data"), (feat, "tab:green", "features")):
        lo, hi = vals.min(-1).values, vals.max(-1).values
        ax.plot(T, vals.median(-1).values.numpy(), "o-", color=colour, label=label)
        ax.plot(T, lo.numpy(), color=colour, alpha=0.3, linewidth=0.8)
        ax.fill_between(T, lo.numpy(), hi.numpy(), color=colour, alpha=0.15)
    ax.set_xscale("log")
    ax.set_xlabel("training-set size T")
    ax.set_ylabel("dimensionality (norm-weighted mean)")
    ax.set_title("What the model stores: data points or features")
    ax.legend(fontsize=8)
    return fig


def memorization_geometry(
    sizes: Sequence[int], hidden: Sequence[Tensor], W: Sequence[Tensor]
) -> Figure:
    """For each ``T``: the training points' hidden vectors (top) and the feature directions.

    Args:
        sizes: training-set sizes, one per column.
        hidden: per size, ``[T, 2]`` hidden vectors ``h_i = W x_i`` of the training points.
        W: per size, ``[2, n_features]`` weights (columns: features).

    Examples:
        >>> import torch
        >>> fig = memorization_geometry([3], [torch.randn(3, 2)], [torch.randn(2, 10)])
        >>> len(fig.axes)
        2
    """
    T = [int(t) for t in sizes]
    if not (len(T) == len(hidden) == len(W)) or not T:
        raise ValueError(
            f"sizes, hidden and W must have one entry per size, got {len(T)}, {len(hidden)} "
            f"and {len(W)}"
        )
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3.0 * len(T), 6.0), layout="constrained")
    axes = fig.subplots(2, len(T), squeeze=False)
    for j, (t, h, w) in enumerate(zip(T, hidden, W, strict=True)):
        h = _float_tensor(h, "hidden", 2, "[T, 2]")
        w = _float_tensor(w, "W", 2, "[2, n_features]")
        if h.shape[-1] != 2 or w.shape[0] != 2:
            raise ValueError(
                f"only 2 hidden dimensions can be drawn, got hidden {tuple(h.shape)} "
                f"and W {tuple(w.shape)}"
            )
        for ax, vecs, colour, what in (
            (axes[0][j], h, "tab:purple", "training points h = Wx"),
            (axes[1][j], w.T, "tab:green", "features W_i"),
        ):
            lim = float(vecs.norm(dim=-1).max().clamp_min(1e-12)) * 1.1
            for v in vecs:
                ax.plot([0, float(v[0])], [0, float(v[1])], color=colour, alpha=0.5, lw=0.8)
            ax.scatter(vecs[:, 0].numpy(), vecs[:, 1].numpy(), s=8, color=colour)
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"T = {t}: {what}", fontsize=8)
    return fig
