"""Per-neuron statistics, and the mergeable moments a streaming accumulator shares with them.

Neuron statistics take activations ``X: [tokens, neurons]`` (one column per neuron) or the
summaries a streaming accumulator keeps: central moments (:func:`block_moments`,
:func:`merge_moments`, :func:`statistics_from_moments`) and the centred co-moment matrix
(:func:`accumulate_comoment`, :func:`merge_comoments`; read as correlations by
:func:`~superposition.metrics.cosine_similarity_from_comoment`), so that the in-memory and the
streaming paths share one formula. Nothing is computed from raw power sums, which cancel
catastrophically for a neuron with a large mean and a small spread.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from superposition.metrics._common import _X_DOC, _check_count, check_tensor

__all__ = [
    "NeuronStatistics",
    "accumulate_comoment",
    "activation_frequency",
    "activation_kurtosis",
    "activation_mean",
    "activation_variance",
    "block_moments",
    "central_moments",
    "merge_comoments",
    "merge_moments",
    "neuron_statistics",
    "statistics_from_moments",
]

# --------------------------------------------------------------------------- stable moments
# Moments are never formed from raw power sums (sum x, sum x^2, ...): for a neuron with a large
# mean and a small spread those agree in all but their last digits, and the central moments
# computed from them cancel to noise (excess kurtosis -3 for a Gaussian at mean 100, spread
# 0.01). Each block of rows is instead centred on its own mean, and blocks are combined with the
# pairwise updates of Chan, Golub & LeVeque (1979) and Pébay (2008). Those are exact in real
# arithmetic, so any split of the rows (in-memory blocks, streamed batches, shards on other
# machines) merges to the same result up to round-off.

# Rows per block when a whole [tokens, neurons] matrix is reduced in memory: the float64
# temporaries (about 4 x rows x neurons x 8 bytes, 25 MB for 3072 neurons) stay small whatever
# the number of tokens. The same as StreamingStatistics' blocks.
_BLOCK_ROWS = 256
_BLOCK_ELEMENTS = _BLOCK_ROWS * 1536  # a block of a narrow matrix takes more rows: see below


def _block_rows(n_cols: int) -> int:
    """Rows per block of a ``[rows, n_cols]`` matrix: 256 at a model's width, more for narrow
    ones (a ``[1.2M, 1]`` column of pair distances went by in 4,600 blocks of Python-sized
    work; 3 blocks now), so a block is never smaller than 256 x 1536 elements."""
    return max(_BLOCK_ROWS, _BLOCK_ELEMENTS // max(n_cols, 1))


# A neuron counts as constant when its spread is within this many units of round-off of its
# magnitude, sum (x - mean)^2 <= (_CONSTANT_ULPS * eps)^2 * sum x^2, with the eps of the data's
# dtype. Stable centring leaves a constant column a centred sum of exactly 0 (or of a few ulps
# squared), so every path (in memory, streamed, float32, float64) draws the same line.
_CONSTANT_ULPS = 16


def _varies(centred_sq: Tensor, raw_sq: Tensor, precision: torch.dtype) -> Tensor:
    """Columns with a real spread: above ``precision``'s round-off of their magnitude, and not
    underflowed in the dtype they were summed in."""
    eps = torch.finfo(precision).eps
    underflow = torch.finfo(centred_sq.dtype).tiny
    return (centred_sq > underflow) & (centred_sq > raw_sq * (_CONSTANT_ULPS * eps) ** 2)


def _centre_block(X: Tensor) -> tuple[Tensor, Tensor]:
    """``(moments [4, neurons], X - mean [rows, neurons])`` in float64 for a validated block."""
    dev = X.to(torch.float64, copy=True)
    mean = dev.mean(0)
    dev -= mean
    # The first mean is off by a few ulps of |mean|; skewness and kurtosis are first-order in
    # that error, so a second pass corrects it (and a constant column centres to exactly 0).
    residual = dev.mean(0)
    mean += residual
    dev -= residual
    sq = dev * dev
    m2, m3 = sq.sum(0), (sq * dev).sum(0)
    m4 = sq.square_().sum(0)
    return torch.stack([mean, m2, m3, m4]), dev


def block_moments(X: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and central moment sums of one block of rows, and its deviations from that mean.

    The step a streaming accumulator takes per batch: it folds the moments in with
    :func:`merge_moments` (and the block into its co-moment with :func:`accumulate_comoment`).
    Computed in float64, centred in two passes (the second removes the first mean's round-off),
    so the result does not depend on how large the mean is next to the spread.

    Args:
        X: ``[rows, neurons]`` activations (at least one row). Every row is held in float64
            at once: pass a few hundred rows at a time.

    Returns:
        ``(moments, deviations)``: ``moments`` is ``[4, neurons]`` float64 with rows ``mean``,
        ``M2``, ``M3``, ``M4`` where ``M_k = sum (x - mean)^k``; ``deviations`` is
        ``X - mean``, ``[rows, neurons]`` float64.

    Examples:
        >>> import torch
        >>> moments, dev = block_moments(torch.tensor([[1.0], [3.0]]))
        >>> moments[:, 0].tolist(), dev[:, 0].tolist()
        ([2.0, 2.0, 0.0, 2.0], [-1.0, 1.0])
    """
    X = check_tensor(X, "X", 2, _X_DOC, exact=True)
    if X.shape[0] == 0:
        raise ValueError("X must have at least one row, got shape (0, ...)")
    return _centre_block(X)


def _check_moments(m: object, name: str, n: int | None = None) -> Tensor:
    m = check_tensor(m, name, 2, "[4, neurons]", exact=True)
    if m.shape[0] != 4 or (n is not None and m.shape[1] != n):
        want = "[4, neurons]" if n is None else f"[4, {n}]"
        raise ValueError(
            f"{name} must have shape {want} (rows mean, M2, M3, M4), got {tuple(m.shape)}"
        )
    return m


def merge_moments(count_a: int, a: Tensor, count_b: int, b: Tensor) -> Tensor:
    """Moments of two disjoint sets of rows combined: Pébay's (2008) pairwise update.

    With ``n = n_a + n_b`` and ``δ = mean_b - mean_a``::

        mean = mean_a + δ n_b / n
        M2 = M2_a + M2_b + δ² n_a n_b / n
        M3 = M3_a + M3_b + δ³ n_a n_b (n_a - n_b) / n² + 3 δ (n_a M2_b - n_b M2_a) / n
        M4 = M4_a + M4_b + δ⁴ n_a n_b (n_a² - n_a n_b + n_b²) / n³
             + 6 δ² (n_a² M2_b + n_b² M2_a) / n² + 4 δ (n_a M3_b - n_b M3_a) / n

    Exact in real arithmetic, so merging in any order or split gives the moments of all rows.

    Args:
        count_a: rows behind ``a`` (0: ``a`` is ignored).
        a: ``[4, neurons]`` rows ``mean``, ``M2``, ``M3``, ``M4`` (see :func:`block_moments`).
        count_b: rows behind ``b``.
        b: ``[4, neurons]``, as ``a``.

    Returns:
        ``[4, neurons]`` float64 moments of the ``count_a + count_b`` rows.

    Examples:
        >>> import torch
        >>> a, _ = block_moments(torch.tensor([[1.0]]))
        >>> b, _ = block_moments(torch.tensor([[3.0], [5.0]]))
        >>> merge_moments(1, a, 2, b)[:, 0].tolist()  # the moments of [1, 3, 5]
        [3.0, 8.0, 0.0, 32.0]
    """
    na, nb = _check_count(count_a, "count_a"), _check_count(count_b, "count_b")
    a = _check_moments(a, "a").double()
    b = _check_moments(b, "b", a.shape[1]).double()
    if nb == 0:
        return a.clone()
    if na == 0:
        return b.clone()
    # Counts as floats: n_a n_b (n_a^2 - n_a n_b + n_b^2) passes 2^63 at a few million rows,
    # beyond which torch cannot take a Python int as a scalar.
    fa, fb = float(na), float(nb)
    n = fa + fb
    delta = b[0] - a[0]
    d = delta / n
    mean = a[0] + d * fb
    m2 = a[1] + b[1] + delta * d * (fa * fb)
    m3 = a[2] + b[2] + delta * d * d * (fa * fb * (fa - fb)) + 3 * d * (fa * b[1] - fb * a[1])
    m4 = (
        a[3]
        + b[3]
        + delta * d**3 * (fa * fb * (fa * fa - fa * fb + fb * fb))
        + 6 * d * d * (fa * fa * b[1] + fb * fb * a[1])
        + 4 * d * (fa * b[2] - fb * a[2])
    )
    return torch.stack([mean, m2, m3, m4])


def central_moments(X: Tensor) -> Tensor:
    """Mean and central moment sums of every neuron, stable for any mean-to-spread ratio.

    Blocks of rows are centred on their own means (:func:`block_moments`) and merged with
    :func:`merge_moments`: the same arithmetic a streaming accumulator does, in memory that
    does not grow with the number of tokens.

    Args:
        X: ``[tokens, neurons]`` activations (at least one token).

    Returns:
        ``[4, neurons]`` float64, rows ``mean``, ``M2``, ``M3``, ``M4`` (``M_k = sum (x -
        mean)^k``).

    Examples:
        >>> import torch
        >>> central_moments(torch.tensor([[1.0], [3.0], [5.0]]))[:, 0].tolist()
        [3.0, 8.0, 0.0, 32.0]
    """
    X = check_tensor(X, "X", 2, _X_DOC, exact=True)
    if X.shape[0] == 0:
        raise ValueError("X must have at least one token (row), got shape (0, ...)")
    out: Tensor | None = None
    count = 0
    for block in torch.split(X, _block_rows(X.shape[1])):
        moments, _ = _centre_block(block)
        out = moments if out is None else merge_moments(count, out, block.shape[0], moments)
        count += block.shape[0]
    assert out is not None
    return out


def accumulate_comoment(
    comoment: Tensor, count: int, mean: Tensor, block: Tensor, block_mean: Tensor
) -> Tensor:
    """Fold a block of rows into a running co-moment matrix, in place (Chan et al., 1979).

    The co-moment of ``n`` rows is ``C = sum (x - mean)(x - mean)^T``, the centred Gram
    matrix (``C / n`` is the covariance). Adding a block with ``n_b`` rows and mean ``mean_b``::

        C = C_a + (X_b - mean_b)^T (X_b - mean_b) + (n_a n_b / n) δ δ^T,   δ = mean_b - mean_a

    is exact, and never subtracts two large numbers, unlike ``X^T X - n mean mean^T`` which
    loses every digit for a neuron with a large mean and a small spread. The last term rides
    along as one extra row of the block's product, so the update costs one matrix product.

    Args:
        comoment: ``[neurons, neurons]`` float64 co-moment of the ``count`` rows so far;
            updated in place. Squares are summed in its dtype unscaled: float32 activations
            can never underflow there, float64 ones below about 1e-154 do (and such a neuron
            then reads as silent or constant).
        count: rows accumulated so far (0 for an empty accumulator).
        mean: ``[neurons]`` mean of those rows (ignored when ``count`` is 0).
        block: ``[rows, neurons]`` the new rows.
        block_mean: ``[neurons]`` the new rows' mean (``block_moments(block)[0][0]``).

    Returns:
        ``comoment``, updated.

    Examples:
        >>> import torch
        >>> X = torch.tensor([[1.0, 2.0], [3.0, 0.0], [5.0, 1.0]], dtype=torch.float64)
        >>> C = torch.zeros(2, 2, dtype=torch.float64)
        >>> m = X[:1].mean(0)
        >>> C = accumulate_comoment(C, 0, m, X[:1], m)
        >>> C = accumulate_comoment(C, 1, m, X[1:], X[1:].mean(0))
        >>> torch.allclose(C, (X - X.mean(0)).T @ (X - X.mean(0)))
        True
    """
    # The running matrix is only shape-checked: scanning all of it for NaN on every block would
    # cost a tenth of the update, and it is built from blocks that were checked.
    if not isinstance(comoment, Tensor) or not comoment.is_floating_point():
        got = comoment.dtype if isinstance(comoment, Tensor) else type(comoment).__name__
        raise ValueError(f"comoment must be a floating-point [neurons, neurons] tensor, got {got}")
    block = check_tensor(block, "block", 2, _X_DOC, exact=True)
    d = comoment.shape[0] if comoment.ndim else 0
    if comoment.shape != (d, d) or block.shape[1] != d:
        raise ValueError(
            f"comoment must be square and block must have as many columns, got comoment "
            f"{tuple(comoment.shape)} and block {tuple(block.shape)}"
        )
    for name, v in (("mean", mean), ("block_mean", block_mean)):
        if not isinstance(v, Tensor) or tuple(v.shape) != (d,):
            shape = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
            raise ValueError(f"{name} must have shape [{d}] to match comoment, got {shape}")
    count = _check_count(count)
    nb = block.shape[0]
    if nb == 0:
        return comoment
    centre = block_mean.to(comoment.dtype)
    rows = torch.empty(nb + 1, d, dtype=comoment.dtype, device=comoment.device)
    torch.sub(block.to(comoment.dtype), centre, out=rows[:nb])
    # (n_a n_b / n) δ δ^T as one more row, sqrt(n_a n_b / n) δ; zero for the first block.
    rows[nb] = (centre - mean.to(comoment.dtype)) * (count * nb / (count + nb)) ** 0.5
    return comoment.addmm_(rows.mT, rows)


def merge_comoments(
    count_a: int,
    mean_a: Tensor,
    comoment_a: Tensor,
    count_b: int,
    mean_b: Tensor,
    comoment_b: Tensor,
) -> Tensor:
    """Co-moment of two disjoint sets of rows: ``C_a + C_b + (n_a n_b / n) δ δ^T`` (Chan et al.).

    Args:
        count_a: rows behind ``comoment_a``.
        mean_a: ``[neurons]`` their mean.
        comoment_a: ``[neurons, neurons]`` their co-moment ``sum (x - mean_a)(x - mean_a)^T``.
        count_b: rows behind ``comoment_b``.
        mean_b: ``[neurons]`` their mean.
        comoment_b: ``[neurons, neurons]``.

    Returns:
        A new ``[neurons, neurons]`` co-moment of all ``count_a + count_b`` rows.

    Examples:
        >>> import torch
        >>> one = torch.zeros(1, 1)
        >>> merge_comoments(1, torch.tensor([1.0]), one, 1, torch.tensor([3.0]), one)
        tensor([[2.]])
    """
    na, nb = _check_count(count_a, "count_a"), _check_count(count_b, "count_b")
    comoment_a = check_tensor(comoment_a, "comoment_a", 2, "[neurons, neurons]", exact=True)
    comoment_b = check_tensor(comoment_b, "comoment_b", 2, "[neurons, neurons]", exact=True)
    if comoment_a.shape != comoment_b.shape or comoment_a.shape[0] != comoment_a.shape[1]:
        raise ValueError(
            f"comoment_a and comoment_b must be square and of one shape, got "
            f"{tuple(comoment_a.shape)} and {tuple(comoment_b.shape)}"
        )
    out = comoment_a + comoment_b
    if na and nb:
        delta = (mean_b - mean_a).to(out.dtype)
        out.addr_(delta, delta, alpha=float(na) * float(nb) / float(na + nb))
    return out


# --------------------------------------------------------------------------- neuron statistics


@dataclass(frozen=True)
class NeuronStatistics:
    """Per-neuron activation statistics, each a ``[neurons]`` tensor in the activations' dtype.

    Attributes:
        count: number of tokens the statistics cover.
        mean: mean activation.
        variance: population variance (divides by ``count``).
        frequency: fraction of tokens on which the neuron is active (``> threshold``).
        skewness: ``m3 / m2^(3/2)`` (0 for a symmetric distribution or a constant neuron).
        kurtosis: excess kurtosis ``m4 / m2^2 - 3`` (0 for a Gaussian; 0 for a constant neuron).
        threshold: the activity threshold used for ``frequency``.
    """

    count: int
    mean: Tensor
    variance: Tensor
    frequency: Tensor
    skewness: Tensor
    kurtosis: Tensor
    threshold: float

    @property
    def std(self) -> Tensor:
        """Population standard deviation, ``variance ** 0.5``."""
        return self.variance.sqrt()


def statistics_from_moments(
    count: int,
    moments: Tensor,
    active: Tensor,
    *,
    threshold: float = 0.0,
    dtype: torch.dtype = torch.float32,
) -> NeuronStatistics:
    """Neuron statistics from central moments: the formula shared by memory and streaming paths.

    With ``m_k = M_k / n``: variance ``m2``, skewness ``m3 / m2^(3/2)``, excess kurtosis
    ``m4 / m2^2 - 3``. A constant neuron (spread within 16 units of round-off of its magnitude
    in ``dtype``) gets skewness and kurtosis 0.

    Also the way to summarise any 1-D sample ``v`` (a histogram's skew, say):
    ``neuron_statistics(v[:, None])``.

    Args:
        count: number of tokens behind ``moments``.
        moments: ``[4, neurons]`` rows ``mean``, ``M2``, ``M3``, ``M4`` with
            ``M_k = sum (x - mean)^k`` (:func:`central_moments`, :func:`merge_moments`).
        active: ``[neurons]`` number of tokens with ``x > threshold``.
        threshold: the threshold ``active`` was counted with.
        dtype: dtype of the activations, and of the result (float64 in, float64 out).

    Returns:
        :class:`NeuronStatistics` in ``dtype``.

    Examples:
        >>> import torch
        >>> x = torch.tensor([[1.0], [3.0]], dtype=torch.float64)
        >>> s = statistics_from_moments(2, central_moments(x), torch.tensor([2]),
        ...                             dtype=torch.float64)
        >>> s.mean.tolist(), s.variance.tolist(), s.kurtosis.tolist(), s.kurtosis.dtype
        ([2.0], [1.0], [-2.0], torch.float64)
    """
    moments = _check_moments(moments, "moments")
    if isinstance(count, bool) or not isinstance(count, int) or count <= 0:
        raise ValueError(f"count must be positive, got {count!r}; no tokens were accumulated")
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    mean, m2, m3, m4 = moments.double()
    n = float(count)
    # A square of M2 below the smallest normal float64 has no precision left: such a neuron
    # counts as constant whatever its dtype.
    varies = _varies(m2, m2 + n * mean.square(), dtype) & (
        m2 > torch.finfo(torch.float64).tiny ** 0.5
    )
    safe = torch.where(varies, m2, 1.0)
    zero = torch.zeros_like(m2)
    skew = torch.where(varies, n**0.5 * m3 / safe**1.5, zero)
    kurt = torch.where(varies, n * m4 / safe.square() - 3, zero)
    return NeuronStatistics(
        count=count,
        mean=mean.to(dtype),
        variance=(m2 / n).to(dtype),
        frequency=(active.double() / n).to(dtype),
        skewness=skew.to(dtype),
        kurtosis=kurt.to(dtype),
        threshold=float(threshold),
    )


def neuron_statistics(X: Tensor, *, threshold: float = 0.0) -> NeuronStatistics:
    """Mean, variance, activation frequency, skewness and excess kurtosis of every neuron.

    Computed from central moments (:func:`central_moments`), so they stay accurate for a neuron
    with a large mean and a small spread, in float64 whatever ``X``'s dtype, and returned in
    ``X``'s dtype (float64 in, float64 out; lower precisions come back as float32).

    Args:
        X: ``[tokens, neurons]`` activations (at least one token).
        threshold: a neuron counts as active on a token when its value is ``> threshold``.

    Returns:
        :class:`NeuronStatistics`.

    Examples:
        >>> import torch
        >>> s = neuron_statistics(torch.tensor([[0.0, 1.0], [2.0, 1.0]]))
        >>> s.mean, s.frequency
        (tensor([1., 1.]), tensor([0.5000, 1.0000]))
    """
    X = check_tensor(X, "X", 2, _X_DOC, exact=True)
    if X.shape[0] == 0:
        raise ValueError("X must have at least one token (row), got shape (0, ...)")
    active = sum(
        ((block > threshold).sum(0) for block in torch.split(X, 16 * _block_rows(X.shape[1]))),
        torch.zeros(X.shape[1], dtype=torch.int64),
    )
    return statistics_from_moments(
        X.shape[0],
        central_moments(X),
        active,
        threshold=threshold,
        dtype=torch.promote_types(X.dtype, torch.float32),
    )


def activation_mean(X: Tensor) -> Tensor:
    """Mean activation of each neuron, ``[neurons]``.

    Examples:
        >>> import torch
        >>> activation_mean(torch.tensor([[0.0, 1.0], [2.0, 1.0]]))
        tensor([1., 1.])
    """
    return neuron_statistics(X).mean


def activation_variance(X: Tensor) -> Tensor:
    """Population variance of each neuron's activation, ``[neurons]``.

    Examples:
        >>> import torch
        >>> activation_variance(torch.tensor([[0.0, 1.0], [2.0, 1.0]]))
        tensor([1., 0.])
    """
    return neuron_statistics(X).variance


def activation_frequency(X: Tensor, *, threshold: float = 0.0) -> Tensor:
    """Fraction of tokens on which each neuron is active (``> threshold``), ``[neurons]``.

    Examples:
        >>> import torch
        >>> activation_frequency(torch.tensor([[0.0, 1.0], [2.0, 1.0]]))
        tensor([0.5000, 1.0000])
    """
    return neuron_statistics(X, threshold=threshold).frequency


def activation_kurtosis(X: Tensor) -> Tensor:
    """Excess kurtosis of each neuron's activation (0 for a Gaussian or a constant), ``[neurons]``.

    Heavy tails (large kurtosis) mark neurons that are silent on most tokens and fire strongly
    on a few: the signature of sparse, feature-like neurons.

    Examples:
        >>> import torch
        >>> activation_kurtosis(torch.tensor([[1.0], [3.0]]))
        tensor([-2.])
    """
    return neuron_statistics(X).kurtosis
