"""Dictionary recovery: how well learned directions (an SAE's ``W_dec``) match the true ones.

Directions are rows, ``[n, d]``, of any norm and either sign. :func:`mean_max_cosine_similarity`
lets several true directions share a learned one; :func:`match_directions` pairs them one to one
(the Hungarian algorithm), which :func:`matched_cosines` and :func:`mean_correlation_coefficient`
read. :func:`best_matches` gives each learned direction its most similar true one (many to
one), which :func:`uniqueness` counts and :mod:`~superposition.metrics.detection` uses.
:func:`fraction_of_variance_unexplained` scores the reconstruction itself.
"""

from __future__ import annotations

import torch
from torch import Tensor

from superposition.metrics._common import _unit_rows, _work_dtype, check_tensor

__all__ = [
    "best_matches",
    "fraction_of_variance_unexplained",
    "match_directions",
    "matched_cosines",
    "mean_correlation_coefficient",
    "mean_max_cosine_similarity",
    "uniqueness",
]

_DIR_DOC = "[n, d]"

# Products per step of the chunked argmax: 2**24 float32 values are 64 MiB, so SynthSAEBench's
# 16,384 true rows are read against 1,024 learned rows at a time, never a [16384, 4096] matrix.
_CHUNK = 2**24


def _check_directions(true: Tensor, learned: Tensor) -> tuple[Tensor, Tensor]:
    """``(true, learned)`` if both are ``[n, d]`` sets of directions in one space, else an error."""
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
    return true, learned


def _abs_cosines(true: Tensor, learned: Tensor) -> Tensor:
    """``|cos|`` between every true row and every learned row, ``[n_true, n_learned]`` float64.

    A zero row has cosine 0 with everything (it points nowhere), not NaN.
    """
    true, learned = _check_directions(true, learned)
    cpu = torch.device("cpu")
    t, u = _unit_rows(true, torch.float64, cpu), _unit_rows(learned, torch.float64, cpu)
    return (t @ u.T).abs_()


def best_matches(true: Tensor, learned: Tensor) -> Tensor:
    """For each learned direction, the true direction it is most like: ``argmax_i |cos|``.

    ``m_j = argmax_i |cos(true_i, learned_j)|``, as SAELens's ``feature_uniqueness`` and
    ``ClassificationMetricsCalculator`` match an SAE latent to a ground-truth feature
    (``sae_lens/synthetic/evals.py``). Several learned rows may match one true row. A learned
    row with cosine 0 to every true row (a zero row, or one orthogonal to them all) matches
    nothing: ``-1``. Ties go to the lowest index.

    The cosines are computed ``2**24 // n_true`` learned rows at a time (1,024 at
    SynthSAEBench's 16,384 true rows, 64 MiB of float32 per step instead of a float64
    ``[16384, 4096]`` matrix), in the inputs' precision (float32 at least) on the device of
    whichever input is not on the CPU: float32 products pick the same argmax as float64 except
    between true rows whose cosines agree to about ``1e-7``.

    Args:
        true: ``[n_true, d]`` ground-truth directions (rows; any norms).
        learned: ``[n_learned, d]`` learned directions, e.g. an SAE's ``W_dec``.

    Returns:
        ``[n_learned]`` int64 on the CPU: a true row's index, or ``-1``.

    Examples:
        >>> import torch
        >>> learned = torch.tensor([[2.0, 0.1, 0], [0, -1, 0], [1, 0, 0], [0, 0, 0]])
        >>> best_matches(torch.eye(3), learned)
        tensor([ 0,  1,  0, -1])
    """
    true, learned = _check_directions(true, learned)
    device = learned.device if learned.device.type != "cpu" else true.device
    dtype = _work_dtype(true, learned)
    t, u = _unit_rows(true, dtype, device), _unit_rows(learned, dtype, device)
    out = torch.empty(u.shape[0], dtype=torch.int64)
    step = max(1, _CHUNK // t.shape[0])
    for start in range(0, u.shape[0], step):
        cos = (u[start : start + step] @ t.T).abs_()
        idx = cos.argmax(1)
        idx[cos.gather(1, idx[:, None]).squeeze(1) == 0] = -1
        out[start : start + step] = idx.cpu()
    return out


def uniqueness(true: Tensor, learned: Tensor) -> float:
    """Share of learned directions that track a true direction no other one tracks.

    ``|{m_j : m_j ≥ 0}| / n_learned`` with ``m`` from :func:`best_matches`: the number of
    distinct true directions that are some learned direction's best match, over the number of
    learned directions (SAELens's ``feature_uniqueness``, SynthSAEBench, Chanin &
    Garriga-Alonso 2026). 1 when every learned direction has its own true direction; ``k``
    copies of one direction count once. A learned row that matches nothing (zero, or
    orthogonal to every true row) still counts in ``n_learned``, so dead rows lower it.

    Args:
        true: ``[n_true, d]`` ground-truth directions (rows; any norms).
        learned: ``[n_learned, d]`` learned directions, e.g. an SAE's ``W_dec``.

    Returns:
        A float in ``[0, 1]``, at most ``n_true / n_learned``.

    Examples:
        >>> import torch
        >>> uniqueness(torch.eye(3), torch.eye(3)[[2, 0, 1]])
        1.0
        >>> # two copies of one direction and a zero row: 2 distinct matches out of 4 rows
        >>> uniqueness(torch.eye(3), torch.tensor([[1.0, 0, 0], [2, 0, 0], [0, 1, 0], [0, 0, 0]]))
        0.5
    """
    match = best_matches(true, learned)
    return int(torch.unique(match[match >= 0]).numel()) / match.numel()


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
