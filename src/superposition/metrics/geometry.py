"""Toy-model geometry: how a weight matrix stores its features (and a model its data points).

The functions here take a weight matrix in the convention of Elhage et al. (2022),
``W: [..., n_hidden, n_features]``: column ``i`` is feature ``i``'s embedding ``W_i`` and any
leading dimensions are model instances. Feature norms, interference, feature dimensionality and
dimensions per feature read it; :func:`data_dimensionality` applies the dimensionality formula
to the hidden vectors of training points instead (Henighan et al. 2023); :func:`classify_phase`
reads what an ``n = 2, m = 1`` model learned.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from superposition.metrics._common import _TINY, _W_DOC, check_tensor

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = [
    "PHASE_NAMES",
    "classify_phase",
    "data_dimensionality",
    "dimensions_per_feature",
    "feature_dimensionality",
    "feature_norms",
    "interference",
]


def feature_norms(W: Tensor) -> Tensor:
    """Length ``||W_i||`` of each feature's embedding: whether feature ``i`` is represented.

    Args:
        W: ``[..., n_hidden, n_features]`` weights; column ``i`` embeds feature ``i``.

    Returns:
        ``[..., n_features]``.

    Examples:
        >>> import torch
        >>> feature_norms(torch.tensor([[3.0, 0.0], [4.0, 1.0]]))
        tensor([5., 1.])
    """
    W = check_tensor(W, "W", 2, _W_DOC)
    norms: Tensor = torch.linalg.vector_norm(W, dim=-2)
    return norms


def _gram(W: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(W^T W, ||W_i||^2, mask of non-zero columns)`` of a validated ``W``."""
    G = W.mT @ W  # [..., f, f], G_ij = W_i . W_j
    sq = torch.diagonal(G, dim1=-2, dim2=-1)
    return G, sq, sq > _TINY


def interference(W: Tensor) -> Tensor:
    """Superposition of each feature: ``sum_{j != i} (Ŵ_i · W_j)^2`` with ``Ŵ_i = W_i/||W_i||``.

    Elhage et al.'s measure of how much the other features project onto feature ``i``'s
    direction. It is 0 when ``W_i`` is orthogonal to every other column, and defined as 0 for a
    zero column (a feature that is not represented has no direction to interfere along).

    Args:
        W: ``[..., n_hidden, n_features]``.

    Returns:
        ``[..., n_features]``.

    Examples:
        >>> import torch
        >>> interference(torch.eye(2))  # orthogonal features do not interfere
        tensor([0., 0.])
        >>> interference(torch.tensor([[1.0, -1.0]]))  # an antipodal pair
        tensor([1., 1.])
    """
    W = check_tensor(W, "W", 2, _W_DOC)
    G, sq, alive = _gram(W)
    off = (G**2).sum(-1) - sq**2  # sum over j != i of (W_i . W_j)^2
    return torch.where(alive, off.clamp_min(0) / sq.clamp_min(_TINY), torch.zeros_like(sq))


def feature_dimensionality(W: Tensor) -> Tensor:
    """Fraction of a dimension each feature gets: ``D_i = ||W_i||^2 / sum_j (Ŵ_i · W_j)^2``.

    From Elhage et al., section "Feature Dimensionality". An orthogonal, represented feature has
    ``D_i = 1``; ``k`` features of equal norm sharing one direction have ``1/k`` each; the
    pentagon gives ``2/5``. A zero column gets 0. ``sum_i D_i <= n_hidden``.

    Args:
        W: ``[..., n_hidden, n_features]``.

    Returns:
        ``[..., n_features]``.

    Examples:
        >>> import torch
        >>> feature_dimensionality(torch.tensor([[1.0, -1.0]]))  # antipodal pair
        tensor([0.5000, 0.5000])
    """
    return _dimensionality(check_tensor(W, "W", 2, _W_DOC))


def _dimensionality(V: Tensor) -> Tensor:
    """``||V_i||^2 / sum_j (V̂_i · V_j)^2`` of each column of a validated ``[..., dim, count]``.

    The one home of the dimensionality formula, for features (columns of ``W``) and for data
    points (hidden vectors, :func:`data_dimensionality`).
    """
    G, sq, alive = _gram(V)
    # ||V_i||^2 / (sum_j G_ij^2 / ||V_i||^2) = ||V_i||^4 / sum_j G_ij^2
    denom = (G**2).sum(-1)
    return torch.where(alive, sq**2 / denom.clamp_min(_TINY**2), torch.zeros_like(sq))


def dimensions_per_feature(W: Tensor) -> Tensor:
    """Hidden dimensions per represented feature: ``n_hidden / ||W||_F^2``.

    ``||W||_F^2`` counts the features the model represents (a represented, orthogonal feature
    contributes ``||W_i||^2 ≈ 1``). A zero matrix represents nothing and gives ``inf``.

    Args:
        W: ``[..., n_hidden, n_features]``.

    Returns:
        ``[...]`` (a 0-d tensor for a single matrix).

    Examples:
        >>> import torch
        >>> dimensions_per_feature(torch.eye(2, 4))  # 2 dimensions, 2 features represented
        tensor(1.)
    """
    W = check_tensor(W, "W", 2, _W_DOC)
    return W.shape[-2] / W.square().sum((-2, -1))


def data_dimensionality(H: Tensor) -> Tensor:
    """Fraction of a dimension each data point gets: ``D_i = ||h_i||^2 / sum_j (ĥ_i · h_j)^2``.

    Henighan et al. (2023), "Superposition, Memorization, and Double Descent": the
    :func:`feature_dimensionality` formula applied to the hidden vectors ``h_i = W x_i`` of the
    training points instead of the columns of ``W``. A model that memorizes stores its ``T``
    training points in superposition (high data dimensionality, e.g. ``2/5`` each for a
    pentagon of five points); one that generalizes stores features and maps many points onto
    few directions (low data dimensionality).

    Args:
        H: ``[..., n_points, n_hidden]`` hidden vectors, e.g. ``model.hidden(x_train)``
            transposed to ``[instances, T, n_hidden]``.

    Returns:
        ``[..., n_points]``; 0 for a zero vector.

    Examples:
        >>> import torch
        >>> data_dimensionality(torch.tensor([[1.0, 0.0], [-2.0, 0.0], [0.0, 3.0]]))
        tensor([0.2000, 0.8000, 1.0000])
    """
    H = check_tensor(H, "H", 2, "[..., n_points, n_hidden]")
    return _dimensionality(H.mT)


#: Names of the codes returned by :func:`classify_phase`, in code order (the phase diagram's
#: colorbar labels).
PHASE_NAMES: tuple[str, str, str] = (
    "feature 1 only",
    "feature 2 only",
    "antipodal (superposition)",
)


def classify_phase(W: Tensor | NDArray[np.floating], *, threshold: float = 0.5) -> Tensor:
    """What an ``n = 2, m = 1`` model learned: feature 1, feature 2, or both antipodally.

    Both features represented (``||W_i|| > threshold``) and pointing in opposite directions
    (``W_1 · W_2 < 0``) is superposition, code 2 (:data:`PHASE_NAMES`). Otherwise the model is
    read as keeping the feature with the longer embedding: code 0 for feature 1 (also on a
    tie), 1 for feature 2.

    Args:
        W: ``[instances, 1, 2]`` weights (or one ``[1, 2]``), a tensor or a NumPy array.
        threshold: the norm above which a feature counts as represented.

    Returns:
        ``[instances]`` int64 codes in ``{0, 1, 2}``, on the CPU.

    Examples:
        >>> import torch
        >>> classify_phase(torch.tensor([[[1.0, -1.0]], [[1.0, 0.0]], [[0.1, 0.9]]]))
        tensor([2, 0, 1])
    """
    if isinstance(W, np.ndarray):
        W = torch.from_numpy(W)
    if not isinstance(W, Tensor):
        raise TypeError(
            f"W must be a torch.Tensor or numpy.ndarray of shape [instances, 1, 2], "
            f"got {type(W).__name__}"
        )
    if W.ndim == 2:
        W = W[None]
    W = check_tensor(W, "W", 3, "[instances, 1, 2]", exact=True)
    if tuple(W.shape[1:]) != (1, 2) or W.shape[0] == 0:
        raise ValueError(
            f"classify_phase reads the n=2, m=1 model: W must have shape [instances, 1, 2], "
            f"got shape {tuple(W.shape)}"
        )
    # The codes index CPU tensors in the phase diagram and the report; two numbers per
    # instance cost nothing to move, and half precision has too little range for the norms.
    W = W.detach().cpu().to(torch.promote_types(W.dtype, torch.float32))
    norms = feature_norms(W)  # [instances, 2]
    antipodal = (norms > threshold).all(-1) & (W[:, 0, 0] * W[:, 0, 1] < 0)
    larger = (norms[:, 1] > norms[:, 0]).long()
    return torch.where(antipodal, torch.full_like(larger, 2), larger)
