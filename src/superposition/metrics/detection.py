"""SAE latents as detectors of ground-truth features (SynthSAEBench; Chanin & Garriga-Alonso
2026, arXiv 2602.14687), as SAELens's ``ClassificationMetricsCalculator`` computes them.

How a score comes about:

1. Each latent ``j`` is matched to the true feature its decoder row is most like,
   ``match = best_matches(true, W_dec)`` (:func:`~superposition.metrics.best_matches`).
2. Over a batch, latent ``j`` *fires* on sample ``s`` when ``latents[s, j] != 0`` (so a
   negative activation of a bidirectional SAE counts) and *should fire* when its feature is
   active, ``features[s, match[j]] > 0``. :func:`detection_counts` tallies the four outcomes
   (tp, fp, fn, tn) per latent; counts of batches add, which is how millions of samples are
   streamed.
3. :func:`detection_scores` turns the totals into per-latent precision, recall, F1 and
   accuracy, 0 where a ratio is undefined.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from superposition.metrics._common import (
    _check_dense,
    _check_features,
    _check_index,
    _positive_entries,
)

__all__ = ["DetectionScores", "detection_counts", "detection_scores"]


def detection_counts(latents: Tensor, features: Tensor, match: Tensor) -> Tensor:
    """Per latent, how often it fires with, without and against its matched feature.

    With ``fire[s, j] = latents[s, j] ≠ 0`` and ``should[s, j] = features[s, match[j]] > 0``:
    ``tp_j = Σ_s fire ∧ should``, ``fp_j = Σ_s fire ∧ ¬should``, ``fn_j = Σ_s ¬fire ∧ should``,
    ``tn_j = Σ_s ¬fire ∧ ¬should`` (SAELens's ``ClassificationMetricsCalculator.add_batch``).
    ``match[j] = -1`` (a latent that matches nothing) never should fire: its firings are all
    false positives. Sparse ``features`` are read entry by entry (the active ones), never
    densified.

    Args:
        latents: ``[n, n_latents]`` dense latent activations of ``n`` samples.
        features: ``[n, n_features]`` true feature activations, dense or sparse COO (what
            :meth:`superposition.sae.synthbench.SynthBench.sample` returns with
            ``return_features=True``).
        match: ``[n_latents]`` integer: the feature each latent detects, ``-1`` for none;
            usually ``best_matches(true, W_dec)``.

    Returns:
        ``[4, n_latents]`` int64 on the CPU, rows tp, fp, fn, tn; each column sums to ``n``.
        Add the counts of several batches before :func:`detection_scores`.

    Examples:
        >>> import torch
        >>> latents = torch.tensor([[1.0, 0.0], [0.5, 2.0], [0.0, 0.0]])
        >>> features = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
        >>> match = torch.tensor([0, 1])
        >>> counts = detection_counts(latents, features, match)
        >>> counts
        tensor([[1, 1],
                [1, 0],
                [1, 0],
                [0, 2]])
        >>> torch.equal(counts, detection_counts(latents, features.to_sparse(), match))
        True
    """
    latents = _check_dense(latents, "latents", "[n, n_latents]")
    features = _check_features(features)
    n, n_latents = latents.shape
    if features.shape[0] != n:
        raise ValueError(
            f"latents and features must describe the same samples (rows), got latents of shape "
            f"{tuple(latents.shape)} and features of shape {tuple(features.shape)}"
        )
    match = _check_index(
        match, "match", n_latents, features.shape[1], "[n_latents]", "a feature per latent"
    )
    device = latents.device
    fires = latents.detach() != 0
    if features.layout == torch.sparse_coo or features.shape[1] == 0:
        rows, latent = _matched_entries(features, match.to(device), device)
        n_should = torch.bincount(latent, minlength=n_latents)
        tp = torch.zeros(n_latents, dtype=torch.int64, device=device)
        tp.index_add_(0, latent, fires[rows, latent].long())
    else:
        should = features.detach().to(device).index_select(1, match.clamp_min(0).to(device)) > 0
        should &= (match >= 0).to(device)
        n_should = should.sum(0)
        tp = (fires & should).sum(0)
    fp = fires.sum(0) - tp
    fn = n_should - tp
    return torch.stack([tp, fp, fn, n - tp - fp - fn]).to("cpu", torch.int64)


def _matched_entries(
    features: Tensor, match: Tensor, device: torch.device
) -> tuple[Tensor, Tensor]:
    """``(rows, latents)``: every ``(s, j)`` with ``features[s, match[j]] > 0``, from the
    active entries of a coalesced COO ``features`` (each entry once per latent matching its
    feature), so the cost is the active entries, not ``n × n_latents``."""
    rows, cols, _ = _positive_entries(features, device)
    order = torch.argsort(match, stable=True)
    ordered = match.index_select(0, order)
    lo = torch.searchsorted(ordered, cols)
    per_entry = torch.searchsorted(ordered, cols, right=True) - lo
    entry = torch.repeat_interleave(per_entry)
    first = (per_entry.cumsum(0) - per_entry).index_select(0, entry)
    slot = lo.index_select(0, entry) + torch.arange(entry.shape[0], device=device) - first
    return rows.index_select(0, entry), order.index_select(0, slot)


@dataclass(frozen=True, eq=False)
class DetectionScores:
    """Per-latent precision, recall, F1 and accuracy, ``[n_latents]`` float64 each
    (:func:`detection_scores`); the ``mean_*`` properties average over latents, as SynthSAEBench
    reports them (0 with no latents, as SAELens)."""

    precision: Tensor
    recall: Tensor
    f1: Tensor
    accuracy: Tensor

    @property
    def mean_precision(self) -> float:
        """Mean precision over latents."""
        return _mean(self.precision)

    @property
    def mean_recall(self) -> float:
        """Mean recall over latents."""
        return _mean(self.recall)

    @property
    def mean_f1(self) -> float:
        """Mean F1 over latents (the mean of per-latent F1, not the F1 of the means)."""
        return _mean(self.f1)

    @property
    def mean_accuracy(self) -> float:
        """Mean accuracy over latents."""
        return _mean(self.accuracy)

    def means(self) -> dict[str, float]:
        """The four means by name, for logging: ``precision``, ``recall``, ``f1``,
        ``accuracy``."""
        return {
            "precision": self.mean_precision,
            "recall": self.mean_recall,
            "f1": self.mean_f1,
            "accuracy": self.mean_accuracy,
        }

    def __repr__(self) -> str:
        means = ", ".join(f"{k}={v:.4g}" for k, v in self.means().items())
        return f"{type(self).__name__}(n_latents={self.precision.numel()}, mean {means})"


def _mean(x: Tensor) -> float:
    return float(x.mean()) if x.numel() else 0.0


def detection_scores(counts: Tensor) -> DetectionScores:
    """Precision, recall, F1 and accuracy of each latent as a detector of its matched feature.

    From :func:`detection_counts` ``[tp, fp, fn, tn]`` (SynthSAEBench, Chanin &
    Garriga-Alonso 2026; SAELens's ``ClassificationMetricsCalculator.compute``):
    ``precision = tp / (tp + fp)``, ``recall = tp / (tp + fn)``,
    ``F1 = 2 precision recall / (precision + recall)``,
    ``accuracy = (tp + tn) / (tp + fp + fn + tn)``, each 0 where its denominator is 0 (a latent
    that never fires has precision 0; one whose feature never fires has recall 0).

    Args:
        counts: ``[4, n_latents]`` rows tp, fp, fn, tn (integers, or floats holding counts),
            e.g. the sum of :func:`detection_counts` over batches.

    Returns:
        A :class:`DetectionScores` of ``[n_latents]`` float64 tensors.

    Examples:
        >>> import torch
        >>> scores = detection_scores(torch.tensor([[3, 0], [1, 0], [0, 0], [4, 8]]))
        >>> scores.precision.tolist(), scores.recall.tolist(), round(float(scores.f1[0]), 4)
        ([0.75, 0.0], [1.0, 0.0], 0.8571)
        >>> scores.mean_accuracy
        0.9375
    """
    if not isinstance(counts, Tensor):
        raise TypeError(
            f"counts must be a torch.Tensor of shape [4, n_latents] (rows tp, fp, fn, tn), got "
            f"{type(counts).__name__}; pass what detection_counts returns"
        )
    if counts.ndim != 2 or counts.shape[0] != 4:
        raise ValueError(
            f"counts must have shape [4, n_latents] (rows tp, fp, fn, tn, as detection_counts "
            f"returns), got shape {tuple(counts.shape)}"
        )
    if counts.dtype == torch.bool or counts.is_complex():
        raise ValueError(f"counts must hold integer or float counts, got dtype {counts.dtype}")
    c = counts.detach().to("cpu", torch.float64)
    if c.numel() and not (bool(c.isfinite().all()) and float(c.min()) >= 0):
        raise ValueError(
            f"counts must be finite and non-negative (numbers of samples), got values from "
            f"{float(c.min())} to {float(c.max())}"
        )
    tp, fp, fn, tn = c.unbind(0)
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    f1 = _ratio(2 * precision * recall, precision + recall)
    return DetectionScores(precision, recall, f1, _ratio(tp + tn, tp + fp + fn + tn))


def _ratio(num: Tensor, den: Tensor) -> Tensor:
    """``num / den``, 0 where ``den`` is 0."""
    return torch.where(den > 0, num / den.clamp_min(torch.finfo(den.dtype).tiny), 0.0)
