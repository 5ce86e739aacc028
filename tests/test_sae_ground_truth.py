"""evaluate_on_truth: an SAE judged against the features that made its data."""

from __future__ import annotations

import math

import pytest
import torch

from superposition import metrics
from superposition.sae import (
    Hierarchy,
    SparseAutoencoder,
    SynthBench,
    SyntheticFeatures,
    Transcoder,
    evaluate_on_truth,
)


def _perfect(truth: SyntheticFeatures) -> SparseAutoencoder:
    """A ReLU SAE that is the generator: encoder and decoder the true (orthonormal)
    directions, no biases, so z = f and x̂ = x exactly."""
    n, d = truth.directions.shape
    sae = SparseAutoencoder(d, n, kind="relu", seed=0, dtype=torch.float64)
    with torch.no_grad():
        sae.W_dec.copy_(truth.directions)
        sae.W_enc.copy_(truth.directions.T)
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


def test_the_generator_itself_scores_perfectly_on_every_metric() -> None:
    seed = int(torch.randint(0, 2**31 - 1, ()))
    truth = SyntheticFeatures(6, 8, firing_probability=0.3, seed=seed)
    truth.directions = torch.eye(8)[torch.randperm(8)[:6]]
    m = evaluate_on_truth(_perfect(truth), truth, samples=3000, batch_size=700, seed=seed)
    assert m.samples == 3000
    for name in ("mcc", "uniqueness", "precision", "recall", "f1", "shrinkage"):
        assert getattr(m, name) == pytest.approx(1.0, abs=1e-6), name
    assert m.explained_variance == pytest.approx(1.0, abs=1e-9)
    assert m.l0 == pytest.approx(m.true_l0)
    assert m.true_l0 == pytest.approx(6 * 0.3, rel=0.1)
    assert m.dead_fraction == 0.0
    assert math.isnan(m.absorption_rate)
    assert math.isnan(m.absorption_fraction)


def test_batches_add_up_to_the_metrics_of_one_pass_computed_directly() -> None:
    """Measured in batches of 500, the numbers are those computed at once on the same 2,000
    samples with the metrics themselves (an independent assembly of the same formulas)."""
    bench = SynthBench(
        48,
        12,
        firing_probability=0.15,
        hierarchy=Hierarchy(3, 3, 2),
        magnitude_std=0.3,
        orthogonalize_steps=0,
        seed=1,
    )
    sae = SparseAutoencoder(12, 32, kind="batchtopk", k=4, seed=0).fit(bench, samples=30_000)
    m = evaluate_on_truth(sae, bench, samples=2000, batch_size=500, seed=5)
    g = torch.Generator().manual_seed(5)
    parts = [bench.sample(500, g, return_features=True) for _ in range(4)]
    x = torch.cat([p[0] for p in parts])
    f = torch.cat([p[1].to_dense() for p in parts])
    with torch.no_grad():
        z = sae.encode(x) / sae.input_scale
        xhat = sae(x)
    W = sae.W_dec.detach()
    match = metrics.best_matches(bench.directions, W)
    scores = metrics.detection_scores(metrics.detection_counts(z, f, match))
    absorbed = metrics.absorption(z, f, W, bench.directions, bench.parent)
    assert m.true_l0 == pytest.approx(float((f > 0).sum()) / 2000)
    assert m.l0 == pytest.approx(float((z != 0).sum()) / 2000)
    fvu = metrics.fraction_of_variance_unexplained(x, xhat)
    assert m.explained_variance == pytest.approx(1 - fvu, rel=1e-4)
    assert m.f1 == pytest.approx(scores.mean_f1)
    assert m.precision == pytest.approx(scores.mean_precision)
    assert m.recall == pytest.approx(scores.mean_recall)
    assert m.mcc == pytest.approx(metrics.mean_correlation_coefficient(W, bench.directions))
    assert m.uniqueness == pytest.approx(metrics.uniqueness(bench.directions, W))
    assert m.absorption_rate == pytest.approx(absorbed.rate)
    assert m.absorption_fraction == pytest.approx(absorbed.mean_fraction)
    assert int(absorbed.opportunities.sum()) > 0  # the hierarchy was exercised


def test_bad_input_is_refused_before_any_sample_is_drawn() -> None:
    truth = SyntheticFeatures(6, 8, firing_probability=0.3, seed=0)
    with pytest.raises(ValueError, match=r"d_in=4 dimensions but the generator's samples have 8"):
        evaluate_on_truth(SparseAutoencoder(4, 8, k=2), truth)
    with pytest.raises(ValueError, match="a transcoder has no ground truth"):
        evaluate_on_truth(Transcoder(8, 8, 16, k=2), truth)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="truth must be a SynthBench or a SyntheticFeatures"):
        evaluate_on_truth(SparseAutoencoder(8, 16, k=2), torch.randn(4, 8))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="samples must be at least 2"):
        evaluate_on_truth(SparseAutoencoder(8, 16, k=2), truth, samples=1)
