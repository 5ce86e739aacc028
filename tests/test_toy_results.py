"""The published results of Toy Models of Superposition, reproduced (issue 3, items 2-8).

Item 1 (the dataset's statistics) lives in ``tests/test_toy_data.py``. Every model here is
trained with the TMS notebook's recipe (AdamW, lr 1e-3, weight decay 0.01, batch 1024, constant
lr, values uniform on [0, 1)); where a test trains for fewer than its 10,000 steps it says so and
why that is enough. Tolerances come from runs of this code with the seeds used here and with
other seeds (noted next to each).
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from superposition import SparseFeatureDataset, ToyModel, metrics

SPARSITIES = [0.0, 0.7, 0.9, 0.97, 0.99, 0.997, 0.999]


def _fit_tms20(activation: str) -> ToyModel:
    """n=20 features, m=5 dimensions, I_i = 0.7**i, one instance per sparsity: 10k steps."""
    data = SparseFeatureDataset(20, sparsity=SPARSITIES, importance=0.7, seed=0)
    model = ToyModel(20, 5, n_instances=7, activation=activation, seed=0)  # type: ignore[arg-type]
    return model.fit(data, steps=10_000, progress=False)


@pytest.fixture(scope="module")
def linear20() -> ToyModel:
    return _fit_tms20("linear")


@pytest.fixture(scope="module")
def relu20() -> ToyModel:
    return _fit_tms20("relu")


# --------------------------------------------------------------------- seed paper, result 1


def test_linear_model_learns_exactly_the_top_m_features_without_superposition(
    linear20: ToyModel,
) -> None:
    represented = linear20.feature_norms() > 0.5
    top5 = torch.zeros(20, dtype=torch.bool)
    top5[:5] = True
    for k, s in enumerate(SPARSITIES):
        assert torch.equal(represented[k], top5), (s, represented[k])
    frobenius_sq = linear20.W.detach().square().sum((1, 2))
    torch.testing.assert_close(frobenius_sq, torch.full((7,), 5.0), atol=0.05, rtol=0)
    # no interference among the represented features (runs: below 1e-6)
    assert float(metrics.interference(linear20.W.detach()[:, :, :5]).max()) < 1e-3


# --------------------------------------------------------------------- seed paper, result 2


def test_dense_relu_model_learns_the_top_m_features_orthogonally(relu20: ToyModel) -> None:
    norms = relu20.feature_norms()[0]  # S = 0
    assert (norms > 0.5).nonzero().flatten().tolist() == [0, 1, 2, 3, 4]
    W5 = relu20.W.detach()[0, :, :5]
    gram = W5.T @ W5
    torch.testing.assert_close(gram, torch.eye(5), atol=0.02, rtol=0)  # runs: within 2e-3


# --------------------------------------------------------------------- seed paper, result 3


def test_sparse_relu_model_represents_more_features_in_superposition(relu20: ToyModel) -> None:
    n_represented = (relu20.feature_norms() > 0.5).sum(-1).tolist()
    # Reference runs: [5, 7, 9-10, 10, 11-12, 11-12, 13-15]; this code: [5, 8, 9, 10, 11, 12, 13].
    assert n_represented[0] == 5
    assert all(a <= b for a, b in itertools.pairwise(n_represented)), n_represented
    assert 11 <= n_represented[-1] <= 16, n_represented
    assert n_represented[-1] > n_represented[0] + 5
    # at S=0.7 at least 4 features already share dimensions
    assert int((relu20.interference()[1] > 0.05).sum()) >= 4
    # a negative bias filters the interference of sparse features (runs: -0.20 to -0.26)
    min_bias = relu20.b.detach().min(-1).values
    assert bool((min_bias[4:] < -0.15).all()), min_bias


# --------------------------------------------------------------------- TMS: the pentagon


def test_pentagon_forms_at_sparsity_095() -> None:
    """n=5, m=2, p=0.05: five features as a regular pentagon, each with D_i = 2/5.

    Full 10,000 steps: at 3,000, 24 of 32 instances had settled; at 10,000 seeds 0, 1, 2 gave
    27, 31, 29 of 32. Instances that miss have dropped one feature (a local minimum).
    """
    data = SparseFeatureDataset(5, feature_probability=0.05, n_instances=32, seed=0)
    model = ToyModel(5, 2, n_instances=32, seed=0).fit(data, steps=10_000, progress=False)
    W = model.W.detach()
    angles = torch.atan2(W[:, 1], W[:, 0]).sort(-1).values
    gaps = torch.diff(torch.cat([angles, angles[:, :1] + 2 * math.pi], -1), dim=-1)
    gaps_deg = gaps * 180 / math.pi
    D = model.feature_dimensionality()
    pentagon = (
        (model.feature_norms() > 0.5).all(-1)
        & ((gaps_deg - 72).abs() <= 2).all(-1)
        & ((D - 0.4).abs() <= 0.01).all(-1)
    )
    assert int(pentagon.sum()) >= 26, int(pentagon.sum())


# --------------------------------------------------------------------- TMS: phase diagram

RELATIVE_IMPORTANCE = [0.1, 0.3, 1.0, 3.0, 10.0]
PROBABILITY = [1.0, 0.3, 0.1, 0.03, 0.01]


def _closed_form_losses(r: float, s: float) -> dict[str, float]:
    """Expected loss of each n=2, m=1 configuration (feature 2 has importance r)."""
    return {
        "drop 2": r * (s / 3 - s * s / 4),
        "drop 1": s / 3 - s * s / 4,
        "antipodal": (1 + r) * s * s / 6,
    }


def _configuration(w: torch.Tensor) -> str:
    big = w.abs() > 0.5
    if bool(big.all()) and float(w[0] * w[1]) < 0:
        return "antipodal"
    if bool(big[0]) and not bool(big[1]):
        return "drop 2"
    if bool(big[1]) and not bool(big[0]):
        return "drop 1"
    return "other"


def test_phase_diagram_n2_m1_matches_the_closed_form_optimum() -> None:
    """25 (importance, probability) points x 3 seeds, all in one 75-instance model, 10k steps.

    At 6,000 steps seeds 0 and 1 got 24 and 23 of 25 right; at 10,000 seed 0 got 25 of 25.
    """
    points = [(r, p) for r in RELATIVE_IMPORTANCE for p in PROBABILITY]
    probability = [p for _, p in points for _ in range(3)]
    importance = torch.tensor([[1.0, r] for r, _ in points for _ in range(3)])
    data = SparseFeatureDataset(2, probability, importance, seed=0)
    model = ToyModel(2, 1, n_instances=75, seed=0).fit(data, steps=10_000, progress=False)
    x = data.sample(200_000, generator=torch.Generator().manual_seed(99))
    with torch.no_grad():
        best = model.losses(x, data.importance).view(25, 3).argmin(-1)
    W = model.W.detach().view(25, 3, 2)[torch.arange(25), best]
    right = []
    for k, (r, p) in enumerate(points):
        closed = _closed_form_losses(r, p)
        lowest = min(closed.values())
        optimal = {c for c, v in closed.items() if v <= lowest * (1 + 1e-9)}  # ties at r = 1
        right.append(_configuration(W[k]) in optimal)
    assert sum(right) >= 23, [pt for pt, ok in zip(points, right, strict=True) if not ok]


# --------------------------------------------------------------------- TMS: correlated features


def _cosines(model: ToyModel) -> torch.Tensor:
    W = model.W.detach()
    Wn = W / W.norm(dim=1, keepdim=True).clamp_min(1e-9)
    return Wn.mT @ Wn  # [instances, 4, 4]


def test_correlated_pairs_are_orthogonal_and_antipodal_to_each_other() -> None:
    """Two correlated pairs, p = 0.05, 5,000 steps (converged: 10k steps give the same)."""
    data = SparseFeatureDataset(4, 0.05, n_instances=8, correlated_groups=[[0, 1], [2, 3]], seed=0)
    model = ToyModel(4, 2, n_instances=8, seed=0).fit(data, steps=5_000, progress=False)
    C = _cosines(model)
    represented = (model.feature_norms() > 0.5).all(-1)
    orthogonal_within = (C[:, 0, 1].abs() < 0.1) & (C[:, 2, 3].abs() < 0.1)
    # each feature of pair A has an antipodal partner in pair B
    antipodal_across = (C[:, :2, 2:].amin(-1) < -0.9).all(-1)
    ok = represented & orthogonal_within & antipodal_across
    assert int(ok.sum()) >= 6, (C[:, 0, 1], C[:, :2, 2:].amin((1, 2)))


def test_anticorrelated_pairs_prefer_to_be_antipodal() -> None:
    """Two anticorrelated pairs, p = 0.45 (the pair is active 90% of the time), 5,000 steps.

    Within-pair antipodality is the optimum but not the only stable state: some inits settle
    with each pair orthogonal and antipodal across pairs. That state is clearest to avoid when
    features are dense: at p = 0.45, 13 of 16 instances were antipodal within pairs (10 of 16 at
    p = 0.3; 2 of 8 at p = 0.05, where the two states differ only by an O(p^2) loss), and every
    antipodal instance had lower loss (<= 3e-4) than every other one (>= 0.03).
    """
    data = SparseFeatureDataset(
        4, 0.45, n_instances=16, anticorrelated_groups=[[0, 1], [2, 3]], seed=0
    )
    model = ToyModel(4, 2, n_instances=16, seed=0).fit(data, steps=5_000, progress=False)
    C = _cosines(model)
    antipodal = (C[:, 0, 1] < -0.9) & (C[:, 2, 3] < -0.9)
    assert int(antipodal.sum()) >= 10, C[:, [0, 2], [1, 3]]
    x = data.sample(100_000, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        losses = model.losses(x, data.importance)
    if not bool(antipodal.all()):
        assert float(losses[antipodal].max()) < float(losses[~antipodal].min())


# --------------------------------------------------------------------- TMS: feature geometry


def test_feature_geometry_dimensionality_sits_on_simple_fractions() -> None:
    """n=200, m=20, uniform importance, four levels of the sweep p = 20**-linspace(0, 1, 20).

    Shortened to the levels the claims need (indices 0, 6, 9, 19: 1/p = 1, 2.58, 4.13, 20) and
    3,000 steps. With these seeds: dimensions per feature [1.002, 0.510, 0.415, 0.137], sum of
    D_i >= 19.978 everywhere, 38 of 38 represented features on 1/2 at 1/p = 2.58 and 10 of 46
    on 2/5 at 1/p = 4.13 (the TMS reference: 38 of 38, and 15 after 10,000 steps).
    """
    probability = (20.0 ** -torch.linspace(0, 1, 20))[[0, 6, 9, 19]]
    data = SparseFeatureDataset(200, probability.tolist(), seed=0)
    model = ToyModel(200, 20, n_instances=4, seed=0).fit(data, steps=3_000, progress=False)
    dims_per_feature = model.dimensions_per_feature()
    assert abs(float(dims_per_feature[0]) - 1.0) <= 0.02, dims_per_feature
    assert bool((torch.diff(dims_per_feature) < 0).all()), dims_per_feature
    D = model.feature_dimensionality()
    torch.testing.assert_close(D.sum(-1), torch.full((4,), 20.0), atol=0.1, rtol=0)
    represented = model.feature_norms() > 0.5
    on_half = ((D - 0.5).abs() < 0.02) & represented
    on_two_fifths = ((D - 0.4).abs() < 0.02) & represented
    half_share = on_half.sum(-1) / represented.sum(-1).clamp_min(1)
    level = int(half_share.argmax())
    assert float(half_share[level]) >= 0.9, half_share
    assert int(on_two_fifths[level + 1 :].sum(-1).max()) >= 5, on_two_fifths.sum(-1)
