"""An SAE judged against the ground truth that made its data, as SynthSAEBench judges one.

:func:`evaluate_on_truth` draws fresh samples from the generator (a :class:`SynthBench` or a
:class:`SyntheticFeatures`), with their true feature activations, and measures the SAE on them
batch by batch in bounded memory (every formula is in :mod:`superposition.metrics`; the docs'
concepts page explains each with its source):

* reconstruction: L0, dead latents, shrinkage ``‖x̂‖/‖x‖`` and explained variance ``1 - FVU``
  (:class:`~superposition.sae.evaluate.Quality`);
* the dictionary: MCC (Hungarian matching of the decoder rows to the true directions, averaged
  over the matched pairs: SAELens's ``mean_correlation_coefficient``, which is this library's
  :func:`~superposition.metrics.mean_correlation_coefficient` with the decoder rows as its
  first argument) and :func:`~superposition.metrics.uniqueness`;
* the latents as detectors of their best-matching feature: mean precision, recall and F1
  (:func:`~superposition.metrics.detection_counts`);
* on a hierarchy, feature absorption: how often a parent's main latent is silent while a
  child fires and another latent carries the parent's direction, and the mean share of the
  parent's direction carried by other latents (:func:`~superposition.metrics.absorption`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from superposition import metrics
from superposition._checks import positive_int
from superposition.sae.evaluate import Quality
from superposition.sae.synthbench import SynthBench
from superposition.sae.synthetic import SyntheticFeatures

if TYPE_CHECKING:
    from superposition.sae.model import SparseAutoencoder

__all__ = ["TruthMetrics", "evaluate_on_truth"]


@dataclass(frozen=True)
class TruthMetrics:
    """An SAE measured against the ground truth (:func:`evaluate_on_truth`).

    Attributes:
        samples: samples measured on.
        true_l0: mean number of true features active per sample.
        l0: mean number of active latents per sample.
        dead_fraction: fraction of latents that fired on none of the samples.
        shrinkage: mean ``‖x̂‖ / ‖x‖`` (1: none).
        explained_variance: ``1 - FVU`` of the reconstruction (centred).
        mcc: mean ``|cos|`` over the one-to-one matching of decoder rows to true directions.
        uniqueness: distinct best-matching true features over latents (1: no two latents
            track the same feature).
        precision, recall, f1: means over latents of each as a detector of its best-matching
            feature (fires when it is active).
        absorption_rate: fully absorbed share of the opportunities (a parent and a child of
            it active); ``nan`` without a hierarchy.
        absorption_fraction: mean share of the parent's direction carried by latents other
            than its main one, over the opportunities; ``nan`` without a hierarchy.
    """

    samples: int
    true_l0: float
    l0: float
    dead_fraction: float
    shrinkage: float
    explained_variance: float
    mcc: float
    uniqueness: float
    precision: float
    recall: float
    f1: float
    absorption_rate: float
    absorption_fraction: float

    def as_dict(self) -> dict[str, float]:
        """The metrics by name (JSON-ready)."""
        return {k: float(v) for k, v in asdict(self).items()}


def _draw(
    truth: SynthBench | SyntheticFeatures, n: int, g: torch.Generator
) -> tuple[Tensor, Tensor]:
    """``(x, features)`` of ``n`` fresh samples."""
    if isinstance(truth, SynthBench):
        return truth.sample(n, g, return_features=True)
    f = truth.features(n, g)
    return f @ truth.directions, f


@torch.no_grad()
def evaluate_on_truth(
    sae: SparseAutoencoder,
    truth: SynthBench | SyntheticFeatures,
    samples: int = 100_000,
    *,
    batch_size: int = 4096,
    seed: int = 0,
    absorption_threshold: float = 0.4,
) -> TruthMetrics:
    """Measure ``sae`` against the features that generated its data (module docstring).

    Args:
        sae: an SAE (not a transcoder) with ``d_in`` the generator's dimension.
        truth: the generator, a :class:`SynthBench` or a :class:`SyntheticFeatures`.
        samples: fresh samples to measure on (SynthSAEBench uses 100,000).
        batch_size: samples drawn and measured at a time.
        seed: seed of the samples drawn.
        absorption_threshold: share of a parent's contribution another single latent must
            carry for an opportunity to count as fully absorbed (SAEBench's 0.4).

    Returns:
        :class:`TruthMetrics`.

    Examples:
        >>> from superposition.sae import SparseAutoencoder, SyntheticFeatures
        >>> truth = SyntheticFeatures(16, 8, firing_probability=0.1, seed=0)
        >>> sae = SparseAutoencoder(8, 16, k=2, seed=0).fit(truth, samples=20_000)
        >>> m = evaluate_on_truth(sae, truth, samples=2_000)
        >>> 0 <= m.f1 <= 1 and 0 <= m.mcc <= 1, math.isnan(m.absorption_rate)
        (True, True)
    """
    from superposition.sae.model import SparseAutoencoder

    if not isinstance(sae, SparseAutoencoder) or sae.transcoder:
        raise ValueError(
            f"sae must be a SparseAutoencoder (a transcoder has no ground truth of this kind), "
            f"got {type(sae).__name__}"
        )
    if not isinstance(truth, (SynthBench, SyntheticFeatures)):
        raise ValueError(
            f"truth must be a SynthBench or a SyntheticFeatures, got {type(truth).__name__}"
        )
    d = truth.directions.shape[1]
    if sae.d_in != d:
        raise ValueError(
            f"the SAE reads d_in={sae.d_in} dimensions but the generator's samples have {d}: "
            f"train or load an SAE of d_in={d} for this generator"
        )
    if sae.row_norm != "none":
        raise ValueError(
            f"an SAE with row_norm={sae.row_norm!r} has no fixed scale per latent; "
            f"evaluate_on_truth needs one with row_norm='none'"
        )
    samples = positive_int(samples, "samples")
    batch_size = positive_int(batch_size, "batch_size")
    if samples < 2:
        raise ValueError(f"samples must be at least 2 to measure variance, got {samples}")
    true = truth.directions
    W_dec = sae.W_dec.detach().float().cpu()
    parent = truth.parent if isinstance(truth, SynthBench) and truth.hierarchy else None
    match = metrics.best_matches(true, W_dec)
    quality = Quality(sae)
    counts = torch.zeros(4, sae.d_sae, dtype=torch.int64)
    absorbed: metrics.Absorption | None = None
    active = 0
    g = torch.Generator().manual_seed(seed)
    for start in range(0, samples, batch_size):
        x, f = _draw(truth, min(batch_size, samples - start), g)
        quality.add(x)
        # Latents in the user's units: a latent's contribution to x̂ is z_j W_dec,j / scale.
        z = sae.encode(x).float().cpu() / sae.input_scale
        counts += metrics.detection_counts(z, f, match)
        active += int((f.coalesce().values() > 0).sum()) if f.is_sparse else int((f > 0).sum())
        if parent is not None:
            batch = metrics.absorption(z, f, W_dec, true, parent, absorption_threshold)
            absorbed = batch if absorbed is None else absorbed.merge(batch)
    q = quality.result()
    scores = metrics.detection_scores(counts)
    # SAELens's MCC: the mean over the matched pairs, of which there are min(d_sae, n); ours
    # averages over its first argument, so the smaller set goes first.
    fewer, more = (W_dec, true) if sae.d_sae <= true.shape[0] else (true, W_dec)
    return TruthMetrics(
        samples=samples,
        true_l0=active / samples,
        l0=q.l0,
        dead_fraction=q.dead_fraction,
        shrinkage=q.shrinkage,
        explained_variance=1.0 - q.fvu,
        mcc=metrics.mean_correlation_coefficient(fewer, more),
        uniqueness=metrics.uniqueness(true, W_dec),
        precision=scores.mean_precision,
        recall=scores.mean_recall,
        f1=scores.mean_f1,
        absorption_rate=math.nan if absorbed is None else absorbed.rate,
        absorption_fraction=math.nan if absorbed is None else absorbed.mean_fraction,
    )
