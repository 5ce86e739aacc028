"""Per-row normalisation of an SAE's input, as SAELens's ``normalize_activations`` does it.

Two of SAELens's settings rescale each row by its own statistics before encoding and undo it
after decoding, so a reconstruction needs the input it reconstructs:

* ``"constant_norm_rescale"``: ``x · c`` with ``c = √d_in / ‖x‖``; the output is divided by
  ``c`` again.
* ``"layer_norm"``: ``(x - μ) / (σ + ε)`` with the row's mean ``μ`` and (unbiased) standard
  deviation ``σ``, ``ε = 1e-5``; the output is multiplied by ``σ`` and ``μ`` added back
  (SAELens's convention: ``σ``, not ``σ + ε``, on the way back).

An SAE loaded from such a folder keeps the setting as :attr:`~superposition.
SparseAutoencoder.row_norm`; ``encode`` normalises, and ``decode(z, x)`` / ``forward(x)``
restore. ``"none"`` leaves rows as they are.
"""

from __future__ import annotations

from typing import Literal

import torch  # noqa: F401  (the doctests use it)
from torch import Tensor

__all__ = ["ROW_NORMS", "RowNorm", "check_row_norm", "normalise_rows", "restore_rows"]

RowNorm = Literal["none", "layer_norm", "constant_norm_rescale"]
ROW_NORMS: tuple[RowNorm, ...] = ("none", "layer_norm", "constant_norm_rescale")
_EPS = 1e-5


def normalise_rows(x: Tensor, how: str) -> Tensor:
    """``x: [batch, d]`` with each row normalised as ``how`` says.

    Examples:
        >>> x = torch.tensor([[3.0, 4.0], [1.0, 3.0]])
        >>> normalise_rows(x, "constant_norm_rescale").norm(dim=1)
        tensor([1.4142, 1.4142])
        >>> normalise_rows(x, "layer_norm").mean(dim=1).abs().max() < 1e-6
        tensor(True)
    """
    check_row_norm(how)
    if how == "constant_norm_rescale":
        scaled: Tensor = x * (x.shape[-1] ** 0.5 / x.norm(dim=-1, keepdim=True))
        return scaled
    if how == "layer_norm":
        centred = x - x.mean(dim=-1, keepdim=True)
        return centred / (centred.std(dim=-1, keepdim=True) + _EPS)
    return x


def restore_rows(y: Tensor, x: Tensor, how: str) -> Tensor:
    """Undo :func:`normalise_rows` of ``x`` on ``y`` (a reconstruction of the normalised rows).

    Examples:
        >>> x = torch.tensor([[3.0, 4.0, 0.0]])
        >>> for how in ("constant_norm_rescale", "layer_norm"):
        ...     back = restore_rows(normalise_rows(x, how), x, how)
        ...     print(how, torch.allclose(back, x, atol=1e-4))
        constant_norm_rescale True
        layer_norm True
    """
    check_row_norm(how)
    if how == "constant_norm_rescale":
        back: Tensor = y / (x.shape[-1] ** 0.5 / x.norm(dim=-1, keepdim=True))
        return back
    if how == "layer_norm":
        mu = x.mean(dim=-1, keepdim=True)
        return y * (x - mu).std(dim=-1, keepdim=True) + mu
    return y


def check_row_norm(how: object) -> RowNorm:
    """``how`` if it is one of :data:`ROW_NORMS`, else a ``ValueError`` that lists them."""
    if not isinstance(how, str) or how not in ROW_NORMS:
        raise ValueError(f"row_norm must be one of {ROW_NORMS}, got {how!r}")
    return how
