"""The published results of Toy Models of Superposition, reproduced (issue 3, items 2-8).

Item 1 (the dataset's statistics) lives in ``tests/test_toy_data.py``. Every model here is
trained with the TMS notebook's recipe (AdamW, lr 1e-3, weight decay 0.01, batch 1024, constant
lr, values uniform on [0, 1)); where a test trains for fewer than its 10,000 steps it says so and
why that is enough. Tolerances come from runs of this code with the seeds used here and with
other seeds (noted next to each).
"""

from __future__ import annotations

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
    assert all(a <= b for a, b in zip(n_represented, n_represented[1:])), n_represented
    assert 11 <= n_represented[-1] <= 16, n_represented
    assert n_represented[-1] > n_represented[0] + 5
    # at S=0.7 at least 4 features already share dimensions
    assert int((relu20.interference()[1] > 0.05).sum()) >= 4
    # a negative bias filters the interference of sparse features (runs: -0.20 to -0.26)
    min_bias = relu20.b.detach().min(-1).values
    assert bool((min_bias[4:] < -0.15).all()), min_bias
