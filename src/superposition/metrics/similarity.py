"""Cosine similarity and distance between neurons, from activations or their summaries.

Column ``j`` of ``X: [tokens, neurons]`` is neuron ``j``'s activation over all tokens:
:func:`cosine_similarity` and :func:`cosine_distance` compare those columns (raw, or centred:
the Pearson correlation), :func:`cosine_similarity_from_gram` and
:func:`cosine_similarity_from_comoment` normalise the Gram or co-moment matrix a streaming
accumulator keeps, and :func:`share_below` counts the pairs closer than a distance.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from superposition.metrics._common import _X_DOC, _check_count, check_tensor
from superposition.metrics.moments import _varies

__all__ = [
    "cosine_distance",
    "cosine_similarity",
    "cosine_similarity_from_comoment",
    "cosine_similarity_from_gram",
    "share_below",
]


def _normalise_gram(gram: Tensor, alive: Tensor) -> Tensor:
    """Divide a (possibly centred) Gram matrix by its columns' norms; dead columns get 0."""
    sq = torch.diagonal(gram).clamp_min(0)
    inv = torch.where(alive, torch.where(alive, sq, 1).rsqrt(), 0)
    # One [N, N] allocation: for 3072+ neurons the temporaries of an out-of-place chain cost
    # more than the Gram matrix itself.
    sim = gram * inv[:, None]
    sim.mul_(inv[None, :]).clamp_(-1.0, 1.0)
    sim.diagonal().fill_(1.0)
    return sim


def _check_square(m: object, name: str) -> Tensor:
    m = check_tensor(m, name, 2, "[neurons, neurons]", exact=True)
    if m.shape[0] != m.shape[1]:
        raise ValueError(f"{name} must be square [neurons, neurons], got shape {tuple(m.shape)}")
    return m


def cosine_similarity_from_gram(gram: Tensor) -> Tensor:
    """Raw (uncentred) cosine similarity between neurons from their Gram matrix ``X^T X``.

    The normalisation shared by :func:`cosine_similarity` and the streaming accumulator. A
    neuron whose vector is zero (it never fires) has similarity 0 with every other neuron and 1
    with itself, so its cosine *distance* to the others is 1, "orthogonal", and the matrix
    keeps its unit diagonal. For Pearson correlation use
    :func:`cosine_similarity_from_comoment`: centring a raw Gram matrix afterwards
    (``X^T X - n μ μ^T``) cancels catastrophically.

    Args:
        gram: ``[neurons, neurons]`` symmetric Gram matrix. A squared norm below the smallest
            normal number of its dtype (zero, or underflowed) counts as a silent neuron; sum
            float32 activations in float64 and none but an all-zero neuron does.

    Returns:
        ``[neurons, neurons]`` similarities in ``[-1, 1]``, in ``gram``'s dtype.

    Examples:
        >>> import torch
        >>> cosine_similarity_from_gram(torch.tensor([[4.0, 2.0], [2.0, 4.0]]))
        tensor([[1.0000, 0.5000],
                [0.5000, 1.0000]])
    """
    gram = _check_square(gram, "gram")
    return _normalise_gram(gram, torch.diagonal(gram) > torch.finfo(gram.dtype).tiny)


def cosine_similarity_from_comoment(
    comoment: Tensor,
    mean: Tensor,
    count: int,
    *,
    precision: torch.dtype | None = None,
) -> Tensor:
    """Pearson correlation between neurons from their co-moment ``sum (x - μ)(x - μ)^T``.

    The centred counterpart of :func:`cosine_similarity_from_gram`, for the co-moment a
    streaming accumulator keeps (:func:`accumulate_comoment`). A neuron that is constant
    (its spread within 16 units of round-off of its magnitude, in ``precision``) has
    similarity 0 with every other neuron and 1 with itself.

    Args:
        comoment: ``[neurons, neurons]`` centred Gram matrix.
        mean: ``[neurons]`` the neurons' means (to tell a constant neuron from a quiet one).
        count: number of rows behind ``comoment``.
        precision: dtype of the activations (default ``comoment.dtype``); its round-off sets
            which neurons count as constant, so a float64 accumulator of float32 activations
            agrees with the in-memory float32 computation.

    Returns:
        ``[neurons, neurons]`` correlations in ``[-1, 1]``, in ``comoment``'s dtype.

    Examples:
        >>> import torch
        >>> C = torch.tensor([[4.0, -2.0], [-2.0, 4.0]])
        >>> cosine_similarity_from_comoment(C, torch.tensor([100.0, 5.0]), 3)
        tensor([[ 1.0000, -0.5000],
                [-0.5000,  1.0000]])
    """
    comoment = _check_square(comoment, "comoment")
    mean = check_tensor(mean, "mean", 1, "[neurons]", exact=True)
    if mean.shape[0] != comoment.shape[0]:
        raise ValueError(
            f"mean must have shape [{comoment.shape[0]}] to match comoment, got {tuple(mean.shape)}"
        )
    count = _check_count(count)
    if count == 0:
        raise ValueError("count must be positive, got 0; no rows were accumulated")
    sq = torch.diagonal(comoment)
    raw_sq = sq + count * mean.to(comoment.dtype).square()  # sum x^2, for the round-off scale
    alive = _varies(sq, raw_sq, precision or comoment.dtype)
    return _normalise_gram(comoment, alive)


def _column_scale(X: Tensor, chunk: int) -> Tensor:
    """A power of two per column that brings its largest ``|x|`` into ``[0.5, 1)`` (1 if zero).

    Scaling by a power of two is exact, so a cosine computed from the scaled columns is the
    cosine of the columns themselves, but no square underflows or overflows on the way: a
    neuron whose activations are all near 1e-155 (float64) or 1e-20 (float32, deep in a GELU's
    tail) keeps its direction instead of counting as silent, and one near 1e200 stays finite.
    """
    n, d = X.shape
    top = X.new_zeros(d)
    for start in range(0, n, chunk):
        lo, hi = torch.aminmax(X[start : start + chunk], dim=0)
        top = torch.maximum(top, torch.maximum(lo.neg(), hi))
    # At most 2^(maxexp - 2), which is finite: a column of subnormals still lands far above
    # underflow (float64: 5e-324 becomes 2^-52).
    lowest = 2 - math.frexp(torch.finfo(X.dtype).max)[1]
    return torch.ldexp(torch.ones_like(top), -torch.frexp(top).exponent.clamp_min(lowest))


def _gram_of(X: Tensor, center: bool, chunk: int = 16_384) -> tuple[Tensor, Tensor]:
    """``(S X^T X S, per-column sum of squares of the raw X S)``, centred first if asked.

    ``S`` is the identity unless a column's sum of squares (raw, or centred and not exactly
    zero) comes out within ``2^p`` of underflow, or overflows, while the column is not all
    zero; then it is :func:`_column_scale`'s diagonal of powers of two, which normalising
    leaves out.
    """
    gram, raw_sq = _gram_pass(X, center, chunk, None)
    info = torch.finfo(X.dtype)
    low = info.tiny / info.eps
    suspect = ~((raw_sq >= low) & (raw_sq <= info.max))
    if center:
        # A spread that underflowed only in part (a truly constant column centres to 0).
        sq = torch.diagonal(gram)
        suspect |= (sq > 0) & (sq < low)
    if bool(suspect.any()):
        # A silent neuron sums to 0 too, and it is common (dead ReLU units, SAE latents).
        cols = suspect.nonzero().squeeze(1)
        if bool(X[:, cols].any()):
            gram, raw_sq = _gram_pass(X, center, chunk, _column_scale(X, chunk))
    return gram, raw_sq


def _gram_pass(X: Tensor, center: bool, chunk: int, scale: Tensor | None) -> tuple[Tensor, Tensor]:
    """One pass of :func:`_gram_of`, with each column multiplied by ``scale`` if given.

    Accumulated in row chunks, so no copy of ``X`` is made. Centring uses a first estimate
    ``c`` of the mean and corrects for its error ``s = sum (x - c)`` at the end,
    ``sum (x - c)(x - c)^T - s s^T / n``: a shift that is tiny next to the spread, so nothing
    cancels, and a constant column comes out as (close to) exactly zero.
    """
    n, d = X.shape

    def block(start: int) -> Tensor:
        rows = X[start : start + chunk]
        return rows if scale is None else rows * scale

    gram = X.new_zeros(d, d)
    if not center or not n:
        for start in range(0, n, chunk):
            b = block(start)
            gram.addmm_(b.mT, b)
        return gram, torch.diagonal(gram)
    c = X.mean(0) if scale is None else sum(block(s).sum(0) for s in range(0, n, chunk)) / n
    raw_sq = X.new_zeros(d)
    shift = X.new_zeros(d)
    for start in range(0, n, chunk):
        b = block(start)
        raw_sq += b.square().sum(0)
        b = b - c
        shift += b.sum(0)
        gram.addmm_(b.mT, b)
    gram.addr_(shift, shift, alpha=-1.0 / n)
    return gram, raw_sq


def cosine_similarity(X: Tensor, *, center: bool = False) -> Tensor:
    """Cosine similarity between the activation vectors of every pair of neurons.

    Column ``j`` of ``X`` is neuron ``j``'s activation over all tokens; the result compares
    those columns, as in Figure 4 of the seed paper. With ``center=True`` each column is
    mean-centred first, which is the Pearson correlation between neurons (raw cosine is
    dominated by a shared positive offset of the activations, see the docs).

    A neuron that never fires (a zero column, or with ``center=True`` a constant one: its
    spread within 16 units of round-off of its magnitude) has similarity 0 with every other
    neuron and 1 with itself. Any other neuron keeps its direction however small or large its
    activations: each column is scaled by a power of two first (exact), so nothing underflows.

    Args:
        X: ``[tokens, neurons]`` activations.
        center: subtract each neuron's mean first.

    Returns:
        ``[neurons, neurons]`` in ``X``'s dtype, symmetric, unit diagonal, values in ``[-1, 1]``.

    Examples:
        >>> import torch
        >>> X = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 1.0]])
        >>> cosine_similarity(X)
        tensor([[1., 1., 0.],
                [1., 1., 0.],
                [0., 0., 1.]])
    """
    X = check_tensor(X, "X", 2, _X_DOC, exact=True)
    gram, raw_sq = _gram_of(X, center)
    sq = torch.diagonal(gram)
    if center:
        return _normalise_gram(gram, _varies(sq, raw_sq, X.dtype))
    return _normalise_gram(gram, sq > torch.finfo(X.dtype).tiny)


def cosine_distance(X: Tensor, *, center: bool = False) -> Tensor:
    """Cosine distance ``1 - cosine_similarity(X)`` between neurons, in ``[0, 2]``.

    0 means two neurons fire identically, 1 orthogonally, 2 in opposition (the seed paper's
    reading of its Figure 4).

    Args:
        X: ``[tokens, neurons]`` activations.
        center: subtract each neuron's mean first (distance = 1 - Pearson correlation).

    Returns:
        ``[neurons, neurons]``.

    Examples:
        >>> import torch
        >>> cosine_distance(torch.tensor([[1.0, -1.0], [2.0, -2.0]]))
        tensor([[0., 2.],
                [2., 0.]])
    """
    return 1.0 - cosine_similarity(X, center=center)


def share_below(X: Tensor, *, center: bool, below: float = 0.5) -> float:
    """Share of neuron pairs ``i < j`` whose cosine distance is below ``below``.

    The statistic behind the seed paper's "most of the heatmap is blue" (its Figure 4 draws a
    pair blue below 0.5), as :func:`superposition.report.analyse` reports it
    (``share_pairs_below_0.5``), for one ``[tokens, neurons]`` matrix.

    Args:
        X: ``[tokens, neurons]`` activations.
        center: subtract each neuron's mean first (distance = 1 - Pearson correlation).
        below: the distance under which a pair counts.

    Returns:
        A float in ``[0, 1]`` (0 for fewer than two neurons).

    Examples:
        >>> import torch
        >>> share_below(torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]), center=False)
        0.3333333333333333
    """
    # distance < below  <=>  similarity > 1 - below, exactly in floating point (Sterbenz:
    # 1 - s is exact for s >= 0.5, and rounding is monotone), and one [N, N] pass cheaper.
    S = cosine_similarity(X, center=center)
    n = S.shape[0]
    return int(torch.count_nonzero((S > 1.0 - below).triu_(1))) / max(n * (n - 1) // 2, 1)
