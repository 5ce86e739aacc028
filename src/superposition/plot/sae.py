"""Figures of dictionary learning: recovered vs true features, latent density, training curves.

The numbers come from :mod:`superposition.metrics` (matching, MCC); this module only draws.
:class:`SAEPlots` is the accessor behind ``sae.plot``; it needs only the duck type
:class:`SAELike`, so this module never imports :mod:`superposition.sae`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
from torch import Tensor

from superposition import metrics
from superposition.plot._common import _float_tensor, _panel, _require

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from numpy.typing import NDArray

__all__ = ["SAELike", "SAEPlots", "latent_density", "matched_cosines", "training_curves"]


class SAELike(Protocol):
    """What :class:`SAEPlots` needs: decoder rows and an encoder."""

    @property
    def W_dec(self) -> Tensor: ...

    def encode(self, x: Tensor) -> Tensor: ...


class _HistoryLike(Protocol):
    samples: Sequence[int]
    l0: Sequence[float]
    fvu: Sequence[float]


def matched_cosines(
    true: Tensor | NDArray[np.floating],
    learned: Tensor | NDArray[np.floating],
    *,
    ax: Axes | None = None,
) -> Figure:
    """``|cos|`` of true (rows) vs learned (columns) directions after the optimal matching.

    Learned directions are reordered by :func:`superposition.metrics.matched_cosines`, so a
    perfect recovery is a bright diagonal; the title gives MCC and MMCS.

    Args:
        true: ``[n_true, d]`` ground-truth directions.
        learned: ``[n_learned, d]`` learned directions, e.g. ``sae.W_dec``.
        ax: draw into this axes instead of a new figure.

    Returns:
        The figure.

    Examples:
        >>> import torch
        >>> fig = matched_cosines(torch.eye(4), torch.eye(4)[[3, 1, 0, 2]])
        >>> fig.axes[0].get_title()
        'MCC 1.000, MMCS 1.000'
    """
    t = _float_tensor(true, "true", 2, "[n_true, d]")
    lrn = _float_tensor(learned, "learned", 2, "[n_learned, d]")
    cos = metrics.matched_cosines(t, lrn).numpy()
    mcc = metrics.mean_correlation_coefficient(t, lrn)
    mmcs = metrics.mean_max_cosine_similarity(t, lrn)
    fig, ax = _panel(ax, 6.0, 5.0)
    image = ax.imshow(
        cos, cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest", aspect="auto"
    )
    ax.set_xlabel("learned direction (matched order)")
    ax.set_ylabel("true feature")
    ax.set_title(f"MCC {mcc:.3f}, MMCS {mmcs:.3f}")
    fig.colorbar(image, ax=ax, label="|cos|")
    return fig


def latent_density(
    frequency: Tensor | NDArray[np.floating], *, bins: int = 50, ax: Axes | None = None
) -> Figure:
    """Histogram of ``log10`` firing frequency of each latent; never-firing latents are
    counted in the title (they have no logarithm).

    Args:
        frequency: ``[d_sae]`` fraction of samples on which each latent is active.
        bins: histogram bins.
        ax: draw into this axes instead of a new figure.

    Examples:
        >>> import torch
        >>> latent_density(torch.tensor([0.0, 0.01, 0.02, 0.1])).axes[0].get_title()
        '4 latents, 1 never fire'
    """
    f = _float_tensor(frequency, "frequency", 1, "[d_sae]").double()
    if bool(((f < 0) | (f > 1)).any()):
        raise ValueError("frequency must be fractions in [0, 1]")
    fig, ax = _panel(ax)
    alive = f[f > 0]
    if alive.numel():
        ax.hist(alive.log10().numpy(), bins=bins, color="tab:blue")
    ax.set_xlabel("log10 firing frequency")
    ax.set_ylabel("latents")
    ax.set_title(f"{f.numel()} latents, {int((f == 0).sum())} never fire")
    return fig


def training_curves(history: _HistoryLike, *, ax: Axes | None = None) -> Figure:
    """L0 (left axis) and FVU (right axis, log scale) over training samples.

    Args:
        history: a :class:`~superposition.sae.FitHistory` (``samples``, ``l0``, ``fvu``).
        ax: draw into this axes instead of a new figure.

    Examples:
        >>> from types import SimpleNamespace
        >>> h = SimpleNamespace(samples=[1, 2], l0=[9.0, 5.0], fvu=[0.9, 0.2])
        >>> len(training_curves(h).axes)
        2
    """
    _require(history, "training_curves", "a fit history", ("samples", "l0", "fvu"))
    fig, ax = _panel(ax)
    ax.plot(history.samples, history.l0, color="tab:blue")
    ax.set_xlabel("training samples")
    ax.set_ylabel("L0", color="tab:blue")
    right = ax.twinx()
    right.plot(history.samples, history.fvu, color="tab:red")
    right.set_yscale("log")
    right.set_ylabel("FVU", color="tab:red")
    return fig


class SAEPlots:
    """Figures of one sparse autoencoder, reached as ``sae.plot``.

    Examples:
        >>> import torch
        >>> from types import SimpleNamespace
        >>> sae = SimpleNamespace(W_dec=torch.eye(3), encode=lambda x: x.relu())
        >>> SAEPlots(sae).matched_cosines(torch.eye(3)).axes[0].get_title()
        'MCC 1.000, MMCS 1.000'
    """

    def __init__(self, sae: SAELike) -> None:
        _require(sae, "SAEPlots", "an SAE with .W_dec and .encode", ("W_dec", "encode"))
        self._sae = sae

    def __repr__(self) -> str:
        return f"SAEPlots(W_dec shape {tuple(self._sae.W_dec.shape)})"

    def matched_cosines(
        self, true: Tensor | NDArray[np.floating], *, ax: Axes | None = None
    ) -> Figure:
        """:func:`matched_cosines` of ``true`` against this SAE's decoder rows."""
        return matched_cosines(true, self._sae.W_dec.detach(), ax=ax)

    def latent_density(self, x: Tensor, *, bins: int = 50, ax: Axes | None = None) -> Figure:
        """:func:`latent_density` of the latents' firing frequencies on ``x: [samples, d_in]``."""
        with torch.no_grad():
            freq = (self._sae.encode(x) != 0).double().mean(0)
        return latent_density(freq, bins=bins, ax=ax)

    def training(self, *, ax: Axes | None = None) -> Figure:
        """:func:`training_curves` of the last ``fit``."""
        history = getattr(self._sae, "history", None)
        if history is None:
            raise ValueError("this SAE has no training history; call .fit(...) first")
        return training_curves(history, ax=ax)
