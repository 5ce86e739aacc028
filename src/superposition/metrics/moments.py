"""Pure functions on tensors: the single home of every formula in the library.

Two families live here.

*Toy-model geometry* takes a weight matrix in the convention of Elhage et al. (2022),
``W: [..., n_hidden, n_features]``: column ``i`` is feature ``i``'s embedding ``W_i`` and any
leading dimensions are model instances.

*Neuron statistics* take activations ``X: [tokens, neurons]`` (one column per neuron) or the
mergeable summaries a streaming accumulator keeps: central moments (:func:`block_moments`,
:func:`merge_moments`, :func:`statistics_from_moments`) and the centred co-moment matrix
(:func:`accumulate_comoment`, :func:`merge_comoments`, :func:`cosine_similarity_from_comoment`),
so that the in-memory and the streaming paths share one formula. Nothing is computed from raw
power sums, which cancel catastrophically for a neuron with a large mean and a small spread.

Every function validates its input and raises :class:`ValueError` naming the argument, the
expected shape and what arrived.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "NeuronStatistics",
    "accumulate_comoment",
    "activation_frequency",
    "activation_kurtosis",
    "activation_mean",
    "activation_variance",
    "block_moments",
    "bootstrap_median",
    "category_spread",
    "central_moments",
    "check_tensor",
    "context_coherence",
    "cosine_distance",
    "cosine_similarity",
    "cosine_similarity_from_comoment",
    "cosine_similarity_from_gram",
    "data_dimensionality",
    "dimensions_per_feature",
    "feature_dimensionality",
    "feature_norms",
    "fraction_of_variance_unexplained",
    "interference",
    "match_directions",
    "matched_cosines",
    "mean_correlation_coefficient",
    "mean_max_cosine_similarity",
    "merge_comoments",
    "merge_moments",
    "neuron_statistics",
    "resampled_medians",
    "statistics_from_moments",
    "token_diversity",
]

# Squared norms below this count as zero: a column (feature or neuron) that is numerically
# absent gets a defined value instead of a division by ~0.
_TINY = 1e-12


def check_tensor(
    x: object, name: str, min_ndim: int, shape_doc: str, *, exact: bool = False
) -> Tensor:
    """``x`` itself if it is a finite floating-point tensor of at least ``min_ndim`` dimensions.

    The input check of every metric, public so that other rooms (the plots) word their
    refusals alike: a :class:`TypeError` for a non-tensor, a :class:`ValueError` naming
    ``name``, the expected ``shape_doc`` and what arrived for a wrong shape, an integer dtype
    or a NaN/inf.

    Args:
        x: the value to check.
        name: the argument's name, for the message.
        min_ndim: the fewest dimensions allowed (exactly this many with ``exact=True``).
        shape_doc: the expected shape as the message shows it, e.g. ``"[tokens, neurons]"``.
        exact: require exactly ``min_ndim`` dimensions.

    Returns:
        ``x``, unchanged.

    Examples:
        >>> import torch
        >>> check_tensor(torch.ones(2, 3), "X", 2, "[tokens, neurons]").shape
        torch.Size([2, 3])
        >>> check_tensor(torch.ones(3), "X", 2, "[tokens, neurons]")
        Traceback (most recent call last):
        ...
        ValueError: X must have shape [tokens, neurons] (at least 2 dimensions), got shape (3,)
    """
    if not isinstance(x, Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of shape {shape_doc}, got {type(x).__name__}; "
            f"convert it with torch.as_tensor({name}, dtype=torch.float32)"
        )
    if (x.ndim != min_ndim) if exact else (x.ndim < min_ndim):
        need = f"exactly {min_ndim}" if exact else f"at least {min_ndim}"
        raise ValueError(
            f"{name} must have shape {shape_doc} ({need} dimensions), got shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise ValueError(
            f"{name} must be a floating-point tensor of shape {shape_doc}, got dtype {x.dtype}; "
            f"use {name}.float()"
        )
    # aminmax propagates NaN and surfaces ±inf in one pass with O(1) memory; isfinite(x) would
    # allocate a mask (and temporaries) as large as x, which matters for [1M, 3072] activations.
    if x.numel() and not bool(torch.isfinite(torch.stack(torch.aminmax(x))).all()):
        raise ValueError(
            f"{name} must be finite, got NaN or inf in a tensor of shape {tuple(x.shape)}"
        )
    return x


_W_DOC = "[..., n_hidden, n_features]"
_X_DOC = "[tokens, neurons]"


# --------------------------------------------------------------------------- toy-model geometry


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


def _check_count(count: object, name: str = "count") -> int:
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"{name} must be a non-negative int (a number of rows), got {count!r}")
    return count


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
    for block in torch.split(X, _BLOCK_ROWS):
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


# --------------------------------------------------------------------------- neuron geometry


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
        ((block > threshold).sum(0) for block in torch.split(X, 16 * _BLOCK_ROWS)),
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


# --------------------------------------------------------------------------- ground-truth recovery

_DIR_DOC = "[n, d]"


def _abs_cosines(true: Tensor, learned: Tensor) -> Tensor:
    """``|cos|`` between every true row and every learned row, ``[n_true, n_learned]`` float64.

    A zero row has cosine 0 with everything (it points nowhere), not NaN.
    """
    true = check_tensor(true, "true", 2, _DIR_DOC, exact=True)
    learned = check_tensor(learned, "learned", 2, _DIR_DOC, exact=True)
    if true.shape[1] != learned.shape[1]:
        raise ValueError(
            f"true and learned must be directions in the same space [n, d], got true of shape "
            f"{tuple(true.shape)} and learned of shape {tuple(learned.shape)} "
            f"(d={true.shape[1]} vs d={learned.shape[1]})"
        )
    if true.shape[0] == 0 or learned.shape[0] == 0:
        raise ValueError(
            f"true and learned must each hold at least one direction, got true of shape "
            f"{tuple(true.shape)} and learned of shape {tuple(learned.shape)}"
        )

    def unit(x: Tensor) -> Tensor:
        x = x.detach().to("cpu", torch.float64)
        sq = x.square().sum(1, keepdim=True)
        return torch.where(sq > _TINY, x / sq.clamp_min(_TINY).sqrt(), torch.zeros_like(x))

    return (unit(true) @ unit(learned).T).abs_()


def mean_max_cosine_similarity(true: Tensor, learned: Tensor) -> float:
    """Mean max cosine similarity (MMCS, Sharkey et al. 2022) of learned to true directions.

    ``(1/n) Σ_i max_j |cos(true_i, learned_j)|``: how well each true direction is matched by
    its best learned direction, several true directions may share one learned direction. Signs
    are ignored (a direction and its negative are the same feature); a zero row has cosine 0.

    Args:
        true: ``[n_true, d]`` ground-truth directions (rows; any norms).
        learned: ``[n_learned, d]`` learned directions, e.g. an SAE's ``W_dec``.

    Returns:
        A float in ``[0, 1]``; 1 when every true direction appears among the learned ones.

    Examples:
        >>> import torch
        >>> mean_max_cosine_similarity(torch.eye(3), -2 * torch.eye(3)[[2, 0, 1]])
        1.0
        >>> round(mean_max_cosine_similarity(torch.eye(2), torch.tensor([[1.0, 1.0]])), 4)
        0.7071
    """
    return float(_abs_cosines(true, learned).amax(1).mean())


def match_directions(true: Tensor, learned: Tensor) -> Tensor:
    """The best one-to-one matching of learned to true directions (Hungarian algorithm).

    Maximises the total ``|cos|`` of the pairs (:func:`scipy.optimize.linear_sum_assignment`).

    Args:
        true: ``[n_true, d]`` ground-truth directions.
        learned: ``[n_learned, d]`` learned directions.

    Returns:
        ``[n_true]`` int64: the learned row matched to each true row, ``-1`` where none is
        (only when ``n_learned < n_true``).

    Examples:
        >>> import torch
        >>> match_directions(torch.eye(3), torch.eye(3)[[2, 0, 1]])
        tensor([1, 2, 0])
    """
    from scipy.optimize import linear_sum_assignment

    cos = _abs_cosines(true, learned)
    rows, cols = linear_sum_assignment(cos.numpy(), maximize=True)
    match = torch.full((cos.shape[0],), -1, dtype=torch.int64)
    match[torch.as_tensor(rows, dtype=torch.int64)] = torch.as_tensor(cols, dtype=torch.int64)
    return match


def matched_cosines(true: Tensor, learned: Tensor) -> Tensor:
    """``|cos|`` between true and learned directions, learned reordered by the matching.

    The matched learned directions come first, in the order of the true directions they match
    (:func:`match_directions`), so with ``n_learned >= n_true`` column ``i`` is true direction
    ``i``'s match and a perfect recovery shows an identity diagonal; unmatched learned
    directions follow in their original order. For
    ``n_learned >= n_true`` the diagonal's mean is :func:`mean_correlation_coefficient`.

    Args:
        true: ``[n_true, d]`` ground-truth directions.
        learned: ``[n_learned, d]`` learned directions.

    Returns:
        ``[n_true, n_learned]`` float64 in ``[0, 1]``.

    Examples:
        >>> import torch
        >>> matched_cosines(torch.eye(2), torch.tensor([[0.0, -3.0], [1.0, 0.0]]))
        tensor([[1., 0.],
                [0., 1.]], dtype=torch.float64)
    """
    cos = _abs_cosines(true, learned)
    match = match_directions(true, learned)
    matched = match[match >= 0]
    rest = torch.ones(cos.shape[1], dtype=torch.bool)
    rest[matched] = False
    return cos[:, torch.cat([matched, rest.nonzero().squeeze(1)])]


def mean_correlation_coefficient(true: Tensor, learned: Tensor) -> float:
    """Mean correlation coefficient (MCC): the best one-to-one matching of learned to true.

    Each true direction is paired with at most one learned direction and vice versa, so as to
    maximise the total ``|cos|`` (the Hungarian algorithm, :func:`match_directions`); MCC is
    that total divided by ``n_true``. With fewer learned than true directions the unmatched
    true directions count 0, so ``MCC <= MMCS`` always, and MCC is 1 only when every true
    direction has its own learned copy.

    Args:
        true: ``[n_true, d]`` ground-truth directions (rows; any norms).
        learned: ``[n_learned, d]`` learned directions, e.g. an SAE's ``W_dec``.

    Returns:
        A float in ``[0, 1]``.

    Examples:
        >>> import torch
        >>> mean_correlation_coefficient(torch.eye(3), -torch.eye(3)[[2, 0, 1]])
        1.0
        >>> # one learned direction cannot stand for two true ones: MMCS 1, MCC 0.5
        >>> mean_correlation_coefficient(torch.eye(2), torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
        0.5
    """
    cos = _abs_cosines(true, learned)
    match = match_directions(true, learned)
    hit = match >= 0
    return float(cos[hit.nonzero().squeeze(1), match[hit]].sum()) / cos.shape[0]


def fraction_of_variance_unexplained(x: Tensor, x_hat: Tensor) -> float:
    """Fraction of variance unexplained (FVU) of a reconstruction, centred.

    ``Σ‖x - x̂‖² / Σ‖x - mean(x)‖²`` over samples (rows), with the mean over samples: 0 for a
    perfect reconstruction, 1 for predicting the mean. (SAELens measured the variance from
    zero instead of the mean until v6.45.1, which flatters data with a large mean.)

    Args:
        x: ``[samples, d]`` data.
        x_hat: ``[samples, d]`` its reconstruction.

    Returns:
        A float ``>= 0`` (``nan`` when ``x`` has no variance).

    Examples:
        >>> import torch
        >>> x = torch.tensor([[1.0, 0.0], [3.0, 2.0]])
        >>> fraction_of_variance_unexplained(x, x.mean(0).expand(2, 2))
        1.0
        >>> fraction_of_variance_unexplained(x, x)
        0.0
    """
    x = check_tensor(x, "x", 2, "[samples, d]", exact=True)
    x_hat = check_tensor(x_hat, "x_hat", 2, "[samples, d]", exact=True)
    if x.shape != x_hat.shape:
        raise ValueError(
            f"x and x_hat must have the same shape [samples, d], got {tuple(x.shape)} and "
            f"{tuple(x_hat.shape)}"
        )
    xd = x.detach().double()
    resid = float((xd - x_hat.detach().double()).square().sum())
    total = float((xd - xd.mean(0)).square().sum())
    return resid / total if total > 0 else float("nan")


# --------------------------------------------------------------------------- memorization


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


# ------------------------------------------------------------------------ per-unit polysemanticity
# A *unit* is a neuron, an SAE latent or any direction over the neurons. These scores read what
# makes a unit fire from its top activating contexts (or its activation mass), with no language
# model as a judge. Weights are activations clamped at 0: a context where the unit is silent
# says nothing about what it responds to.


def _unit_weights(weights: object, shape: tuple[int, ...], name: str = "weights") -> Tensor:
    w = check_tensor(weights, name, 2, "[units, n]", exact=True)
    if tuple(w.shape) != shape:
        raise ValueError(f"{name} must have shape {shape} to match, got {tuple(w.shape)}")
    return w.to(torch.float64).clamp_min(0.0)


def token_diversity(token_ids: Tensor, weights: Tensor) -> Tensor:
    """Effective number of distinct tokens a unit fires on: ``exp`` of the entropy of its
    activation-weighted token distribution, ``[units]``.

    With ``p_t`` the share of a unit's (non-negative) activation mass over its top contexts
    that falls on token ``t``, the score is ``exp(-sum_t p_t log p_t)``, the Hill number of
    order 1 (Hill 1973, "Diversity and evenness"): 1 for a unit that fires on one token only,
    2 for one that splits its mass evenly over two, up to ``n``. It counts tokens, not
    meanings, so a unit for one concept spelled many ways scores high; read it beside
    :func:`context_coherence`.

    Args:
        token_ids: ``[units, n]`` the token at the centre of each top context; negative ids
            (no context) are ignored.
        weights: ``[units, n]`` the unit's activation there; values ``<= 0`` carry no weight.

    Returns:
        ``[units]`` float64 in ``[1, n]``; NaN for a unit with no positive weight.

    Examples:
        >>> import torch
        >>> ids = torch.tensor([[5, 5, 5, 5], [5, 9, 5, 9], [1, 2, 3, 4]])
        >>> token_diversity(ids, torch.ones(3, 4))
        tensor([1., 2., 4.], dtype=torch.float64)
    """
    if not isinstance(token_ids, Tensor) or token_ids.ndim != 2 or token_ids.is_floating_point():
        got = (
            f"shape {tuple(token_ids.shape)}, dtype {token_ids.dtype}"
            if isinstance(token_ids, Tensor)
            else type(token_ids).__name__
        )
        raise ValueError(f"token_ids must be an integer [units, n] tensor, got {got}")
    w = _unit_weights(weights, tuple(token_ids.shape))
    w = w * (token_ids >= 0)
    total = w.sum(1, keepdim=True)
    p = w / total.clamp_min(_TINY)
    # The mass of each entry's own token, summed over the entries that share it: the entropy
    # sums p_j log(mass of token_j) over entries j, which groups into sum_t p_t log p_t.
    same = token_ids[:, :, None] == token_ids[:, None, :]
    mass = (same * p[:, None, :]).sum(2)
    entropy = -(p * torch.where(p > 0, mass, 1.0).log()).sum(1)
    return torch.where(total.squeeze(1) > 0, entropy.exp(), torch.nan)


def context_coherence(embeddings: Tensor, weights: Tensor) -> Tensor:
    """Activation-weighted mean pairwise cosine similarity of a unit's top contexts, ``[units]``.

    The MonoSemanticity score of Pach et al. (2025), "Sparse Autoencoders Learn Monosemantic
    Features in Vision-Language Models": ``sum_{i != j} w_i w_j cos(e_i, e_j) / sum_{i != j}
    w_i w_j`` over the embeddings ``e`` of the contexts that make the unit fire most, weighted
    by its (non-negative) activations ``w`` there. A unit whose contexts all mean the same
    thing scores near the similarity of near-paraphrases; one that answers to unrelated
    things scores near the similarity of unrelated texts. Compare units under one embedding
    model only: the scale is the embedding's.

    Args:
        embeddings: ``[units, n, d]`` an embedding of each top context (e.g. the mean-pooled
            output of a sentence-embedding model over the context window).
        weights: ``[units, n]`` the unit's activation at each context; values ``<= 0`` and
            all-zero embeddings carry no weight.

    Returns:
        ``[units]`` float64 in ``[-1, 1]``; NaN for a unit with fewer than two weighted contexts.

    Examples:
        >>> import torch
        >>> e = torch.tensor([[[1.0, 0.0], [2.0, 0.0], [1.0, 0.0]],
        ...                   [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]])
        >>> context_coherence(e, torch.ones(2, 3))
        tensor([1., 0.], dtype=torch.float64)
    """
    e = check_tensor(embeddings, "embeddings", 3, "[units, n, d]", exact=True)
    w = _unit_weights(weights, tuple(e.shape[:2]))
    norms = e.to(torch.float64).norm(dim=2)
    w = w * (norms > 0)
    u = e.to(torch.float64) / norms.clamp_min(_TINY)[:, :, None]
    # sum_{i != j} w_i w_j cos_ij = |sum_i w_i u_i|^2 - sum_i w_i^2 (|u_i| = 1 where w_i > 0).
    pooled = torch.einsum("un,und->ud", w, u)
    num = pooled.square().sum(1) - w.square().sum(1)
    den = w.sum(1).square() - w.square().sum(1)
    return torch.where(den > _TINY * w.sum(1).square(), num / den.clamp_min(_TINY), torch.nan)


def category_spread(mass: Tensor, tokens: Tensor) -> Tensor:
    """How evenly a unit fires across categories of text, relative to their size, ``[units]``.

    With ``r_c = mass_c / tokens_c`` a unit's mean (non-negative) activation per token of
    category ``c`` and ``p_c = r_c / sum r``, the score is the normalised entropy
    ``-sum_c p_c log p_c / log C`` (Pielou's evenness, Pielou 1966) over the ``C`` categories
    that have tokens: 0 for a unit that fires in one category only, 1 for one that fires at the
    same rate in every category. Dividing by the token counts first keeps a large category from
    looking like a preference.

    Args:
        mass: ``[units, C]`` the sum of each unit's activation (clamped at 0) over the tokens of
            each category.
        tokens: ``[C]`` the number of tokens of each category.

    Returns:
        ``[units]`` float64 in ``[0, 1]``; NaN for a unit with no positive mass.

    Raises:
        ValueError: fewer than two categories have tokens.

    Examples:
        >>> import torch
        >>> mass = torch.tensor([[5.0, 0.0], [1.0, 3.0], [0.0, 0.0]])
        >>> category_spread(mass, torch.tensor([10, 30]))
        tensor([0., 1., nan], dtype=torch.float64)
    """
    m = check_tensor(mass, "mass", 2, "[units, categories]", exact=True)
    if (
        not isinstance(tokens, Tensor)
        or tuple(tokens.shape) != (m.shape[1],)
        or bool((tokens < 0).any())
    ):
        got = (
            f"shape {tuple(tokens.shape)}" if isinstance(tokens, Tensor) else type(tokens).__name__
        )
        raise ValueError(
            f"tokens must be a non-negative [{m.shape[1]}] tensor (one count per category), "
            f"got {got}"
        )
    present = tokens > 0
    C = int(present.sum())
    if C < 2:
        raise ValueError(
            f"category_spread needs at least two categories with tokens, got {C}; label the "
            "texts with two or more categories"
        )
    rate = m.to(torch.float64)[:, present].clamp_min(0.0) / tokens[present].to(torch.float64)
    total = rate.sum(1, keepdim=True)
    p = rate / total.clamp_min(_TINY)
    # 0.0 - x, not -x: a unit in one category gets +0, not -0.
    entropy = (0.0 - (p * torch.where(p > 0, p, 1.0).log()).sum(1)).clamp_min_(0.0)
    return torch.where(total.squeeze(1) > 0, entropy / math.log(C), torch.nan)


def _finite_values(x: object) -> Tensor:
    """A 1-D float tensor as float64 with its NaNs dropped (NaN marks a missing score)."""
    if not isinstance(x, Tensor) or x.ndim != 1 or not x.is_floating_point():
        got = f"shape {tuple(x.shape)}, dtype {x.dtype}" if isinstance(x, Tensor) else type(x)
        raise ValueError(f"x must be a 1-D floating-point tensor, got {got}")
    v = x.to(torch.float64)
    v = v[~v.isnan()]
    if bool(v.isinf().any()):
        raise ValueError("x must not contain inf (NaN marks a missing value and is dropped)")
    return v


def _check_boot(n_boot: object) -> None:
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive int, got {n_boot!r}")


def bootstrap_median(
    x: Tensor, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """The median of ``x`` and a percentile bootstrap confidence interval for it.

    Resamples ``x`` with replacement ``n_boot`` times (Efron & Tibshirani 1993, ch. 13) and
    returns ``(median, low, high)`` with ``low``/``high`` the ``(1 ± level) / 2`` quantiles of
    the resampled medians. NaNs are dropped first. Medians are the lower median of an even
    count (``torch.median``), for resamples and the estimate alike.

    Args:
        x: ``[n]`` values (e.g. one score over the units of a basis).
        n_boot: resamples.
        level: coverage of the interval.
        seed: seeds the resampling.

    Returns:
        ``(median, low, high)``; NaNs when no value is finite.

    Examples:
        >>> import torch
        >>> m, lo, hi = bootstrap_median(torch.arange(101.0))
        >>> m, lo < 50 < hi
        (50.0, True)
    """
    v = _finite_values(x)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    _check_boot(n_boot)
    if v.numel() == 0:
        return (math.nan, math.nan, math.nan)
    q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    low, high = torch.quantile(resampled_medians(v, n_boot=n_boot, seed=seed), q).tolist()
    return (float(v.median()), low, high)


def resampled_medians(x: Tensor, *, n_boot: int = 2000, seed: int = 0) -> Tensor:
    """``[n_boot]`` medians of ``x`` resampled with replacement (NaNs dropped first): the
    bootstrap distribution behind :func:`bootstrap_median`, for intervals of derived
    quantities such as a difference of two medians.

    Examples:
        >>> import torch
        >>> resampled_medians(torch.full((7,), 3.0), n_boot=4).tolist()
        [3.0, 3.0, 3.0, 3.0]
    """
    v = _finite_values(x)
    _check_boot(n_boot)
    meds = torch.full((n_boot,), math.nan, dtype=torch.float64)
    if v.numel() == 0:
        return meds
    g = torch.Generator().manual_seed(seed)
    # Resample in blocks so n_boot x n indices never exceed ~8M at once.
    block = max(1, 8_000_000 // v.numel())
    for start in range(0, n_boot, block):
        m = min(block, n_boot - start)
        idx = torch.randint(v.numel(), (m, v.numel()), generator=g)
        meds[start : start + m] = v[idx].median(1).values
    return meds
