"""The seed paper's neuron figures (Figures 4–7): cosine heatmaps and histograms, traces, sums."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np
import torch
from torch import Tensor

from superposition import metrics

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from numpy.typing import NDArray

from superposition._checks import positive_int as _positive_int
from superposition.plot._common import (
    _activations,
    _float_tensor,
    _panel,
    _require,
)

# Beyond this many tick labels the token axis is unreadable: show every k-th token instead.
_MAX_TOKEN_TICKS = 60


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
    stay sharp and vector output stays small. The title says which neurons are shown
    (``"neurons 0–767 (the first half) of 1536"``); for one pixel per neuron, make the figure
    large enough (``fig.set_size_inches``) for the PNG's resolution.

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
    ax.set_title(f"{label}, {_which_neurons(index, neurons, n_total)}")
    fig.colorbar(image, ax=ax, label=label)
    return fig


def _which_neurons(
    index: Tensor, neurons: Literal["half", "all"] | int | Sequence[int], n_total: int
) -> str:
    """Which neurons a heatmap shows, in words: a count alone hides which ones they are."""
    k = len(index)
    if isinstance(neurons, str) and neurons == "all":
        return f"all {n_total} neurons"
    if isinstance(neurons, (str, int, np.integer)):
        first = " (the first half)" if neurons == "half" and k < n_total else ""
        span = "neuron 0" if k == 1 else f"neurons 0–{k - 1}"
        return f"{span}{first} of {n_total}"
    return f"{k} chosen neurons of {n_total}"


def cosine_histogram(
    X: Tensor | NDArray[np.floating],
    *,
    center: bool = False,
    bins: int = 100,
    ax: Axes | None = None,
) -> Figure:
    """The seed paper's Figure 5: histogram of the cosine distances between neuron pairs.

    Each unordered pair ``i < j`` counts once (the upper triangle of
    :func:`superposition.metrics.cosine_distance`); a dotted line marks 1, orthogonal. The
    title names the number of neurons.

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
    bins = _positive_int(bins, "bins", numpy_ok=True)
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
    return _histogram(D, _positive_int(bins, "bins", numpy_ok=True), label, ax)


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
    ax.set_title(f"{label} between every pair of {n:,} neurons")
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
    n = _positive_int(n, "n", numpy_ok=True)
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

    Titled; the axis labels give the number of tokens and neurons.

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
    bins = _positive_int(bins, "bins", numpy_ok=True)
    sums = X.double().sum(0).numpy()  # float64: a 3072-neuron layer over many tokens
    fig, ax = _panel(ax)
    ax.hist(sums, bins=bins, color="tab:blue")
    ax.set_xlabel(f"activation summed over {X.shape[0]:,} tokens")
    ax.set_ylabel(f"neurons (of {X.shape[1]:,})")
    ax.set_title("each neuron's activation summed over all tokens")
    return fig


# --------------------------------------------------------------------------- fluent accessors


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
