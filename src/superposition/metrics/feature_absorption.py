"""Feature absorption on a known hierarchy: does a child's latent take over its parent's job?

After Chanin et al. 2024 ("A is for Absorption", arXiv 2409.14507) and SAEBench's
full-absorption and absorption-fraction scores, measured against the ground truth instead of
a probe. How :func:`absorption` goes:

1. Each parent feature ``p`` (one that is some feature's parent) gets its *main latent*
   ``m(p) = argmax_j |cos(W_dec_j, true_p)|``, from one ``[n_latents, n_parents]`` product
   (computed in column chunks for the argmax).
2. An *opportunity* is a sample where ``p`` fires and at least one child of ``p`` fires: found
   from the active entries of ``features`` (sparse or dense), as keys ``s · n_features + p``.
3. On each opportunity only the latents active on that sample are read (their projections on
   ``p``'s unit direction, ``proj_j = latents[s, j] (W_dec_j · true_p) / |true_p|``), never a
   dense ``[n, n_parents, n_latents]`` tensor; inactive latents project to 0.
4. Per parent: the number of opportunities, of fully absorbed ones and the sum of the
   absorption fractions, which add across batches (:meth:`Absorption.merge`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from superposition.metrics._common import (
    _TINY,
    _check_dense,
    _check_features,
    _check_index,
    _positive_entries,
    _unit_rows,
    _work_dtype,
    check_tensor,
)

__all__ = ["Absorption", "absorption"]

# Cosines per step of the main-latent argmax (as recovery's chunked argmax), and (opportunity,
# active latent) pairs per step: each pair holds about ten 8-byte temporaries (indices,
# projections), so 2**21 pairs are about 170 MiB; SynthSAEBench's 4,096 samples make ~6M pairs
# (91k opportunities, 64 active latents each), three steps.
_CHUNK = 2**24
_PAIRS = 2**21


@dataclass(frozen=True, eq=False)
class Absorption:
    """Per-parent absorption counts (:func:`absorption`); they add across batches.

    Attributes:
        parents: ``[n_parents]`` int64, the parent features (ascending).
        main: ``[n_parents]`` int64, each parent's main latent (``-1`` when no latent's decoder
            row has a nonzero cosine with the parent's direction).
        opportunities: ``[n_parents]`` int64, samples where the parent and a child of it fire.
        absorbed: ``[n_parents]`` int64, opportunities fully absorbed.
        fraction_sum: ``[n_parents]`` float64, the absorption fractions summed over them.
        threshold: the full-absorption threshold used.
    """

    parents: Tensor
    main: Tensor
    opportunities: Tensor
    absorbed: Tensor
    fraction_sum: Tensor
    threshold: float

    def __post_init__(self) -> None:
        fields = ("parents", "main", "opportunities", "absorbed", "fraction_sum")
        shapes = {name: tuple(getattr(self, name).shape) for name in fields}
        if len(set(shapes.values())) != 1 or len(shapes["parents"]) != 1:
            raise ValueError(f"Absorption's fields must all have shape [n_parents], got {shapes}")

    @property
    def rate(self) -> float:
        """Full-absorption rate: ``Σ absorbed / Σ opportunities`` over all parents (nan if
        there was no opportunity)."""
        total = int(self.opportunities.sum())
        return int(self.absorbed.sum()) / total if total else math.nan

    @property
    def mean_fraction(self) -> float:
        """Mean absorption fraction: ``Σ fraction_sum / Σ opportunities`` (nan if none)."""
        total = int(self.opportunities.sum())
        return float(self.fraction_sum.sum()) / total if total else math.nan

    def merge(self, other: Absorption) -> Absorption:
        """The counts of both (two batches of one SAE and one hierarchy) added together.

        Examples:
            >>> import torch
            >>> one = Absorption(torch.tensor([0]), torch.tensor([0]), torch.tensor([2]),
            ...                  torch.tensor([1]), torch.tensor([0.5], dtype=torch.float64), 0.4)
            >>> one.merge(one).rate, one.merge(one).opportunities
            (0.5, tensor([4]))
        """
        if not isinstance(other, Absorption):
            raise TypeError(f"can only merge an Absorption, got {type(other).__name__}")
        if not (
            torch.equal(self.parents, other.parents)
            and torch.equal(self.main, other.main)
            and self.threshold == other.threshold
        ):
            raise ValueError(
                f"can only merge the absorption of one SAE on one hierarchy at one threshold "
                f"(the same parents, main latents and threshold), got {self!r} and {other!r}"
            )
        return Absorption(
            self.parents,
            self.main,
            self.opportunities + other.opportunities,
            self.absorbed + other.absorbed,
            self.fraction_sum + other.fraction_sum,
            self.threshold,
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n_parents={self.parents.numel()}, "
            f"opportunities={int(self.opportunities.sum())}, rate={self.rate:.4g}, "
            f"mean_fraction={self.mean_fraction:.4g}, threshold={self.threshold})"
        )


def absorption(
    latents: Tensor,
    features: Tensor,
    W_dec: Tensor,
    true: Tensor,
    parent: Tensor,
    threshold: float = 0.4,
) -> Absorption:
    """How often, and how much, other latents absorb a parent feature when a child fires.

    For each parent feature ``p`` with main latent ``m = argmax_j |cos(W_dec_j, true_p)|``,
    on each sample ``s`` where ``p`` and at least one child of ``p`` are active (> 0):

    - ``proj_j = latents[s, j] · (W_dec_j · true_p) / |true_p|``, latent ``j``'s contribution
      along ``p``'s unit direction, and ``a = features[s, p] · |true_p|``, ``p``'s own;
    - **full absorption**: ``latents[s, m] = 0`` and ``max_{j≠m} proj_j ≥ threshold · a``
      (the main latent is silent and another latent carries at least ``threshold`` of the
      parent; the max runs over all latents, an inactive one's ``proj`` being 0);
    - **absorption fraction**: ``A / (A + max(proj_m, 0))`` with ``A = Σ_{j≠m} max(proj_j, 0)``,
      0 when the denominator is 0 — the share of the parent's recovered direction that other
      latents carry.

    A parent whose direction has cosine 0 with every decoder row has no main latent
    (``main = -1``): every latent is then an "other" and the main activation counts as 0. The
    cost grows with the opportunities times the latents active on them, plus one
    ``[n_latents, d] × [d, n_parents]`` product: about 1 s on 2 CPU cores at SynthSAEBench's
    size (4,096 samples, 16,384 features, 4,096 latents, 2,688 parents).

    After Chanin et al. 2024 ("A is for Absorption", arXiv 2409.14507) and SAEBench's
    full-absorption and absorption-fraction scores, on ground truth rather than a probe. The
    decoder products run in the inputs' precision (float32 at least), the rest in float64.

    Args:
        latents: ``[n, n_latents]`` dense latent activations.
        features: ``[n, n_features]`` true feature activations, dense or sparse COO.
        W_dec: ``[n_latents, d]`` the SAE's decoder rows.
        true: ``[n_features, d]`` the true feature directions (a parent's must be nonzero).
        parent: ``[n_features]`` integer, each feature's parent, ``-1`` for none
            (:attr:`superposition.sae.synthbench.SynthBench.parent`).
        threshold: the share of ``a`` another latent must carry for full absorption, ``>= 0``.

    Returns:
        An :class:`Absorption`; ``.rate`` and ``.mean_fraction`` summarise it.

    Examples:
        >>> import torch
        >>> # feature 1 is a child of feature 0; latent 1 decodes parent + child
        >>> W_dec, true = torch.tensor([[1.0, 0], [1, 1]]), torch.eye(2)
        >>> parent = torch.tensor([-1, 0])
        >>> features = torch.tensor([[1.0, 0], [1, 1]])  # the parent alone, then with its child
        >>> latents = torch.tensor([[1.0, 0], [0, 1]])  # the child's latent fires instead
        >>> result = absorption(latents, features, W_dec, true, parent)
        >>> result.main.tolist(), result.opportunities.tolist(), result.rate, result.mean_fraction
        ([0], [1], 1.0, 1.0)
    """
    latents = _check_dense(latents, "latents", "[n, n_latents]")
    features = _check_features(features)
    W_dec = check_tensor(W_dec, "W_dec", 2, "[n_latents, d]", exact=True)
    true = check_tensor(true, "true", 2, "[n_features, d]", exact=True)
    n_features = features.shape[1]
    _check_shapes(latents, features, W_dec, true)
    parent = _check_index(
        parent, "parent", n_features, n_features, "[n_features]", "each feature's parent"
    )
    own = (parent == torch.arange(n_features)).nonzero().flatten()
    if own.numel():
        raise ValueError(
            f"parent must not make a feature its own parent, got parent[{int(own[0])}] = "
            f"{int(own[0])}; use -1 for a feature without a parent"
        )
    ok = isinstance(threshold, (int, float)) and not isinstance(threshold, bool)
    if not ok or not math.isfinite(threshold) or threshold < 0:
        raise ValueError(f"threshold must be a finite float >= 0, got {threshold!r}")

    parents = torch.unique(parent[parent >= 0])
    t_norm = true.detach().to("cpu", torch.float64).index_select(0, parents).norm(dim=1)
    if bool((t_norm == 0).any()):
        bad = int(parents[(t_norm == 0).nonzero()[0, 0]])
        raise ValueError(
            f"true[{bad}] is a zero row, but feature {bad} is the parent of other features: a "
            f"parent needs a direction to project on; give it one or set its children's parent "
            f"to -1"
        )
    device = latents.device
    coef, main = _coefficients(W_dec, true.index_select(0, parents.to(true.device)), device)
    sample, slot, value = _opportunities(features, parent.to(device), parents.to(device), device)
    a = value.double() * t_norm.to(device).index_select(0, slot)
    full, fraction = _judge(latents.detach(), coef, main.to(device), sample, slot, a, threshold)
    slot, n_parents = slot.cpu(), parents.numel()
    return Absorption(
        parents,
        main,
        torch.bincount(slot, minlength=n_parents),
        torch.bincount(slot.index_select(0, full.cpu().nonzero().flatten()), minlength=n_parents),
        torch.zeros(n_parents, dtype=torch.float64).index_add_(0, slot, fraction.cpu()),
        float(threshold),
    )


def _check_shapes(latents: Tensor, features: Tensor, W_dec: Tensor, true: Tensor) -> None:
    """That the four arrays describe one SAE on one ground truth, else a ValueError."""
    shapes = (
        f"latents {tuple(latents.shape)}, features {tuple(features.shape)}, W_dec "
        f"{tuple(W_dec.shape)}, true {tuple(true.shape)}"
    )
    rules = [
        (
            features.shape[0] == latents.shape[0],
            "latents and features must have one row per sample (the same n)",
        ),
        (
            W_dec.shape[0] == latents.shape[1],
            "W_dec must have one row per latent (a column of latents); pass the decoder as "
            "[n_latents, d]",
        ),
        (
            true.shape[0] == features.shape[1],
            "true must have one row per feature (a column of features)",
        ),
        (
            W_dec.shape[1] == true.shape[1],
            "W_dec and true must be directions in one space (the same d)",
        ),
        (latents.shape[1] > 0, "there must be at least one latent"),
    ]
    for holds, rule in rules:
        if not holds:
            raise ValueError(f"{rule}; got shapes {shapes}")


def _coefficients(
    W_dec: Tensor, true_parents: Tensor, device: torch.device
) -> tuple[Tensor, Tensor]:
    """``(coef, main)``: ``coef[j, q] = W_dec_j · true_p / |true_p|`` for the ``q``-th parent
    ``p``, ``[n_latents, n_parents]`` on ``device``, and each parent's main latent ``[n_parents]``
    (CPU int64; ``-1`` where every cosine is 0), from that one product."""
    dtype = _work_dtype(W_dec, true_parents)
    W = W_dec.detach().to(device, dtype)
    coef = W @ _unit_rows(true_parents, dtype, device).T
    sq = W.square().sum(1, keepdim=True)
    inverse_norm = torch.where(sq > _TINY, sq.clamp_min(_TINY).rsqrt(), 0.0)
    main = torch.empty(coef.shape[1], dtype=torch.int64)
    step = max(1, _CHUNK // coef.shape[0])
    for start in range(0, coef.shape[1], step):
        cos = coef[:, start : start + step].abs() * inverse_norm
        idx = cos.argmax(0)
        idx[cos.gather(0, idx[None]).squeeze(0) == 0] = -1
        main[start : start + step] = idx.cpu()
    return coef, main


def _opportunities(
    features: Tensor, parent: Tensor, parents: Tensor, device: torch.device
) -> tuple[Tensor, Tensor, Tensor]:
    """``(sample, slot, value)`` of every opportunity: a sample where parent ``parents[slot]``
    is active with value ``value`` and at least one of its children is active too."""
    rows, cols, values = _positive_entries(features, device)
    n_features = parent.numel()
    slot_of = torch.full((n_features,), -1, dtype=torch.int64, device=device)
    slot_of[parents] = torch.arange(parents.numel(), device=device)
    up = parent.index_select(0, cols)
    child = (up >= 0).nonzero().flatten()
    with_child = torch.unique(rows.index_select(0, child) * n_features + up.index_select(0, child))
    at = (slot_of.index_select(0, cols) >= 0).nonzero().flatten()
    rows, cols, values = (
        rows.index_select(0, at),
        cols.index_select(0, at),
        values.index_select(0, at),
    )
    # A binary search in the sorted keys: torch.isin took 0.64 s of the whole call's 2.1 s at
    # SynthSAEBench's size (4,096 samples, 91k opportunities; 2 CPU cores).
    key = rows * n_features + cols
    pos = torch.searchsorted(with_child, key).clamp_max(max(with_child.numel() - 1, 0))
    found = with_child.index_select(0, pos) == key if with_child.numel() else key < 0
    at = found.nonzero().flatten()
    cols = cols.index_select(0, at)
    return rows.index_select(0, at), slot_of.index_select(0, cols), values.index_select(0, at)


def _judge(
    latents: Tensor,
    coef: Tensor,
    main: Tensor,
    sample: Tensor,
    slot: Tensor,
    a: Tensor,
    threshold: float,
) -> tuple[Tensor, Tensor]:
    """``(full, fraction)`` per opportunity (bool and float64), reading only the latents that
    are active on each opportunity's sample, :data:`_PAIRS` (opportunity, latent) pairs at a
    time."""
    n_opp, n_latents = sample.numel(), latents.shape[1]
    device = latents.device
    m = main.index_select(0, slot)
    has_main = m >= 0
    mc = m.clamp_min(0)
    z_main = torch.where(has_main, latents[sample, mc].double(), 0.0)
    proj_main = z_main * coef[mc, slot].double()

    rows, row_of = torch.unique(sample, return_inverse=True)
    sub = latents.index_select(0, rows)
    r, j = (sub != 0).nonzero().unbind(1)
    z = sub[r, j].double()
    per_row = torch.bincount(r, minlength=rows.numel())
    row_start = per_row.cumsum(0) - per_row
    k = per_row.index_select(0, row_of)  # active latents on each opportunity's sample
    ends = k.cumsum(0)

    others = torch.zeros(n_opp, dtype=torch.float64, device=device)  # A = Σ_{j≠m} max(proj_j, 0)
    top = torch.full((n_opp,), -math.inf, dtype=torch.float64, device=device)
    n_active = torch.zeros(n_opp, dtype=torch.int64, device=device)
    begin = 0
    while begin < n_opp:
        done = int(ends[begin - 1]) if begin else 0
        limit = torch.tensor([done + _PAIRS], device=device)
        end = max(begin + 1, int(torch.searchsorted(ends, limit, right=True)))
        kk = k[begin:end]
        owner = torch.repeat_interleave(torch.arange(end - begin, device=device), kk)
        first = (kk.cumsum(0) - kk).index_select(0, owner)
        start = row_start.index_select(0, row_of[begin:end]).index_select(0, owner)
        entry = start + torch.arange(owner.numel(), device=device) - first
        jj = j.index_select(0, entry)
        proj = z.index_select(0, entry) * coef[jj, slot[begin:end].index_select(0, owner)].double()
        keep = (jj != m[begin:end].index_select(0, owner)).nonzero().flatten()
        owner, proj = owner.index_select(0, keep), proj.index_select(0, keep)
        others[begin:end].index_add_(0, owner, proj.clamp_min(0))
        top[begin:end].scatter_reduce_(0, owner, proj, "amax")
        n_active[begin:end] += torch.bincount(owner, minlength=end - begin)
        begin = end

    # The max over j ≠ m includes the inactive latents, whose projection is 0.
    inactive_other = n_active < n_latents - has_main.long()
    top = torch.where(inactive_other, top.clamp_min(0), top)
    full = (z_main == 0) & (top >= threshold * a)
    total = others + proj_main.clamp_min(0)
    fraction = torch.where(total > 0, others / total.clamp_min(_TINY), 0.0)
    return full, fraction
