"""Pure functions on tensors: the single home of every formula in the library.

Two families live here.

*Toy-model geometry* takes a weight matrix in the convention of Elhage et al. (2022),
``W: [..., n_hidden, n_features]``: column ``i`` is feature ``i``'s embedding ``W_i`` and any
leading dimensions are model instances.

*Neuron statistics* take activations ``X: [tokens, neurons]`` (one column per neuron) or the
running sums a streaming accumulator keeps (:func:`statistics_from_sums`,
:func:`cosine_similarity_from_gram`), so that the in-memory and the streaming paths share one
formula.

Every function validates its input and raises :class:`ValueError` naming the argument, the
expected shape and what arrived.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "NeuronStatistics",
    "activation_frequency",
    "activation_kurtosis",
    "activation_mean",
    "activation_variance",
    "cosine_distance",
    "cosine_similarity",
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
    "neuron_statistics",
    "power_sums",
    "statistics_from_sums",
]

# Squared norms below this count as zero: a column (feature or neuron) that is numerically
# absent gets a defined value instead of a division by ~0.
_TINY = 1e-12


def _check(x: object, name: str, min_ndim: int, shape_doc: str, *, exact: bool = False) -> Tensor:
    """Validate a floating-point, finite tensor of at least (or exactly) ``min_ndim`` dims."""
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
    W = _check(W, "W", 2, _W_DOC)
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
    W = _check(W, "W", 2, _W_DOC)
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
    return _dimensionality(_check(W, "W", 2, _W_DOC))


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
    W = _check(W, "W", 2, _W_DOC)
    return W.shape[-2] / W.square().sum((-2, -1))


# --------------------------------------------------------------------------- neuron geometry


def cosine_similarity_from_gram(
    gram: Tensor,
    *,
    sums: Tensor | None = None,
    count: int | float | Tensor | None = None,
) -> Tensor:
    """Cosine similarity between neurons from their Gram matrix ``X^T X``.

    The single home of the normalisation used by :func:`cosine_similarity` and by the streaming
    accumulator. With ``sums`` (``X.sum(0)``) and ``count`` (rows of ``X``) the Gram matrix is
    mean-centred first, ``X^T X - n μ μ^T``, which turns cosine similarity into Pearson
    correlation.

    A neuron whose vector is zero (it never fires, or is constant when centred) has similarity
    0 with every other neuron and 1 with itself, so its cosine *distance* to the others is 1,
    "orthogonal", and the matrix keeps its unit diagonal.

    Args:
        gram: ``[neurons, neurons]`` symmetric Gram matrix.
        sums: ``[neurons]`` column sums, for centring.
        count: number of rows summed, for centring.

    Returns:
        ``[neurons, neurons]`` similarities in ``[-1, 1]``, in ``gram``'s dtype.

    Examples:
        >>> import torch
        >>> cosine_similarity_from_gram(torch.tensor([[4.0, 2.0], [2.0, 4.0]]))
        tensor([[1.0000, 0.5000],
                [0.5000, 1.0000]])
    """
    gram = _check(gram, "gram", 2, "[neurons, neurons]", exact=True)
    if gram.shape[0] != gram.shape[1]:
        raise ValueError(f"gram must be square [neurons, neurons], got shape {tuple(gram.shape)}")
    if (sums is None) != (count is None):
        raise ValueError("pass both sums and count to centre the Gram matrix, or neither")
    if sums is not None:
        sums = _check(sums, "sums", 1, "[neurons]", exact=True)
        if sums.shape[0] != gram.shape[0]:
            raise ValueError(
                f"sums must have shape [{gram.shape[0]}] to match gram, got {tuple(sums.shape)}"
            )
        n = float(count)  # type: ignore[arg-type]
        if not n > 0:
            raise ValueError(f"count must be positive to centre the Gram matrix, got {count!r}")
        sums = sums.to(gram.dtype)
        raw_sq = torch.diagonal(gram).clone()
        gram = gram - torch.outer(sums, sums) / n
        return _normalise_gram(gram, raw_sq)
    return _normalise_gram(gram, torch.diagonal(gram))


def _normalise_gram(gram: Tensor, raw_sq: Tensor) -> Tensor:
    """Divide a (possibly centred) Gram matrix by its columns' norms; silent columns get 0.

    ``raw_sq`` is each column's *uncentred* sum of squares: centring a constant column leaves
    round-off of order ``eps * raw_sq``, so a column counts as silent when its centred square
    norm is below that (per neuron: a quiet but real neuron beside a loud one stays alive).
    """
    sq = torch.diagonal(gram).clamp_min(0)
    eps = torch.finfo(gram.dtype).eps
    alive = (sq > _TINY) & (sq > raw_sq.to(gram.dtype) * (16 * eps))
    inv = torch.where(alive, sq.clamp_min(_TINY).rsqrt(), torch.zeros_like(sq))
    # One [N, N] allocation: for 3072+ neurons the temporaries of an out-of-place chain cost
    # more than the Gram matrix itself.
    sim = gram * inv[:, None]
    sim.mul_(inv[None, :]).clamp_(-1.0, 1.0)
    sim.diagonal().fill_(1.0)
    return sim


def _gram_of(X: Tensor, center: bool, chunk: int = 16_384) -> tuple[Tensor, Tensor]:
    """``(X^T X, per-column sum of squares of the raw X)``, centred first if asked.

    Accumulated in row chunks, so no copy of ``X`` is made.
    """
    n, d = X.shape
    mean = X.mean(0) if center and n else None
    gram = X.new_zeros(d, d)
    raw_sq = X.new_zeros(d)
    for start in range(0, n, chunk):
        block = X[start : start + chunk]
        if mean is not None:
            raw_sq += block.square().sum(0)
            block = block - mean
        gram.addmm_(block.mT, block)
    return gram, (raw_sq if mean is not None else torch.diagonal(gram))


def cosine_similarity(X: Tensor, *, center: bool = False) -> Tensor:
    """Cosine similarity between the activation vectors of every pair of neurons.

    Column ``j`` of ``X`` is neuron ``j``'s activation over all tokens; the result compares
    those columns, as in Figure 4 of the seed paper. With ``center=True`` each column is
    mean-centred first, which is the Pearson correlation between neurons (raw cosine is
    dominated by a shared positive offset of the activations, see the docs).

    A neuron that never fires (a zero column, or a constant one with ``center=True``) has
    similarity 0 with every other neuron and 1 with itself.

    Args:
        X: ``[tokens, neurons]`` activations.
        center: subtract each neuron's mean first.

    Returns:
        ``[neurons, neurons]``, symmetric, unit diagonal, values in ``[-1, 1]``.

    Examples:
        >>> import torch
        >>> X = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 1.0]])
        >>> cosine_similarity(X)
        tensor([[1., 1., 0.],
                [1., 1., 0.],
                [0., 0., 1.]])
    """
    X = _check(X, "X", 2, _X_DOC, exact=True)
    gram, raw_sq = _gram_of(X, center)
    return _normalise_gram(gram, raw_sq)


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
    """Per-neuron activation statistics, each a ``[neurons]`` float tensor.

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


def statistics_from_sums(
    count: int,
    power_sums: Tensor,
    active: Tensor,
    *,
    threshold: float = 0.0,
) -> NeuronStatistics:
    """Neuron statistics from running sums: the formula shared by memory and streaming paths.

    Also the way to summarise any 1-D sample ``v`` (a histogram's skew, say):
    ``neuron_statistics(v[:, None])``.

    Args:
        count: number of tokens summed.
        power_sums: ``[4, neurons]``, rows ``sum x``, ``sum x^2``, ``sum x^3``, ``sum x^4``
            (accumulate them in float64: the central moments are differences of these).
        active: ``[neurons]`` number of tokens with ``x > threshold``.
        threshold: the threshold ``active`` was counted with.

    Returns:
        :class:`NeuronStatistics` in float32.

    Examples:
        >>> import torch
        >>> x = torch.tensor([1.0, 3.0], dtype=torch.float64)
        >>> s = statistics_from_sums(2, torch.stack([x.sum(), (x**2).sum(), (x**3).sum(),
        ...                          (x**4).sum()])[:, None], torch.tensor([2.0]))
        >>> s.mean, s.variance, s.kurtosis
        (tensor([2.]), tensor([1.]), tensor([-2.]))
    """
    power_sums = _check(power_sums, "power_sums", 2, "[4, neurons]", exact=True)
    if power_sums.shape[0] != 4:
        raise ValueError(
            f"power_sums must have shape [4, neurons], got shape {tuple(power_sums.shape)}"
        )
    if count <= 0:
        raise ValueError(f"count must be positive, got {count!r}; no tokens were accumulated")
    raw = power_sums.double() / count  # E[x], E[x^2], E[x^3], E[x^4]
    mu = raw[0]
    m2 = (raw[1] - mu**2).clamp_min(0)
    m3 = raw[2] - 3 * mu * raw[1] + 2 * mu**3
    m4 = raw[3] - 4 * mu * raw[2] + 6 * mu**2 * raw[1] - 3 * mu**4
    scale = raw[1].clamp_min(_TINY)  # round-off of m2 is relative to E[x^2]
    varies = m2 > scale * 1e-10
    safe_m2 = m2.clamp_min(_TINY)
    zero = torch.zeros_like(m2)
    skew = torch.where(varies, m3 / safe_m2**1.5, zero)
    kurt = torch.where(varies, m4.clamp_min(0) / safe_m2**2 - 3, zero)
    return NeuronStatistics(
        count=int(count),
        mean=mu.float(),
        variance=m2.float(),
        frequency=(active.double() / count).float(),
        skewness=skew.float(),
        kurtosis=kurt.float(),
        threshold=float(threshold),
    )


def power_sums(X: Tensor) -> Tensor:
    """``[4, neurons]`` float64 sums of ``X``, ``X^2``, ``X^3``, ``X^4`` over tokens."""
    Xd = X.double()
    sq = Xd * Xd
    return torch.stack([Xd.sum(0), sq.sum(0), (sq * Xd).sum(0), (sq * sq).sum(0)])


def neuron_statistics(X: Tensor, *, threshold: float = 0.0) -> NeuronStatistics:
    """Mean, variance, activation frequency and excess kurtosis of every neuron.

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
    X = _check(X, "X", 2, _X_DOC, exact=True)
    if X.shape[0] == 0:
        raise ValueError("X must have at least one token (row), got shape (0, ...)")
    return statistics_from_sums(
        X.shape[0], power_sums(X), (X > threshold).sum(0), threshold=threshold
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
    true = _check(true, "true", 2, _DIR_DOC, exact=True)
    learned = _check(learned, "learned", 2, _DIR_DOC, exact=True)
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
    x = _check(x, "x", 2, "[samples, d]", exact=True)
    x_hat = _check(x_hat, "x_hat", 2, "[samples, d]", exact=True)
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
    H = _check(H, "H", 2, "[..., n_points, n_hidden]")
    return _dimensionality(H.mT)
