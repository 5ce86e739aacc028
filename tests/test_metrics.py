"""Input validation of superposition.metrics: one pytest.raises per message."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from superposition import metrics

W_FNS: list[Callable[[torch.Tensor], torch.Tensor]] = [
    metrics.feature_norms,
    metrics.interference,
    metrics.feature_dimensionality,
    metrics.dimensions_per_feature,
]
X_FNS: list[Callable[[torch.Tensor], object]] = [
    metrics.cosine_similarity,
    metrics.cosine_distance,
    metrics.neuron_statistics,
    metrics.activation_mean,
    metrics.activation_variance,
    metrics.activation_frequency,
    metrics.activation_kurtosis,
]


@pytest.mark.parametrize("fn", W_FNS)
def test_weight_metrics_reject_bad_input(fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    with pytest.raises(
        ValueError,
        match=r"W must have shape \[\.\.\., n_hidden, n_features\].*"
        r"got shape \(5,\)",
    ):
        fn(torch.ones(5))
    with pytest.raises(ValueError, match=r"W must be a floating-point tensor.*torch\.int64"):
        fn(torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="W must be finite"):
        fn(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(TypeError, match=r"W must be a torch\.Tensor.*got list"):
        fn([[1.0]])  # type: ignore[arg-type]


@pytest.mark.parametrize("fn", X_FNS)
def test_activation_metrics_reject_bad_input(fn: Callable[[torch.Tensor], object]) -> None:
    with pytest.raises(ValueError, match=r"X must have shape \[tokens, neurons\] \(exactly 2"):
        fn(torch.ones(2, 3, 4))
    with pytest.raises(ValueError, match=r"X must be finite"):
        fn(torch.tensor([[1.0, float("inf")]]))
    with pytest.raises(ValueError, match="floating-point"):
        fn(torch.ones(3, 2, dtype=torch.int32))


def test_statistics_need_tokens() -> None:
    with pytest.raises(ValueError, match="at least one token"):
        metrics.neuron_statistics(torch.ones(0, 3))
    with pytest.raises(ValueError, match="count must be positive"):
        metrics.statistics_from_sums(0, torch.zeros(4, 3), torch.zeros(3))
    with pytest.raises(ValueError, match=r"power_sums must have shape \[4, neurons\]"):
        metrics.statistics_from_sums(3, torch.zeros(2, 3), torch.zeros(3))


def test_gram_validation() -> None:
    with pytest.raises(ValueError, match=r"gram must be square.*\(2, 3\)"):
        metrics.cosine_similarity_from_gram(torch.ones(2, 3))
    with pytest.raises(ValueError, match="pass both sums and count"):
        metrics.cosine_similarity_from_gram(torch.eye(2), sums=torch.ones(2))
    with pytest.raises(ValueError, match=r"sums must have shape \[2\]"):
        metrics.cosine_similarity_from_gram(torch.eye(2), sums=torch.ones(3), count=4)
    with pytest.raises(ValueError, match="count must be positive"):
        metrics.cosine_similarity_from_gram(torch.eye(2), sums=torch.ones(2), count=0)


def test_zero_matrix_has_infinite_dimensions_per_feature() -> None:
    assert metrics.dimensions_per_feature(torch.zeros(3, 4)).item() == float("inf")


def test_cosine_of_many_tokens_is_chunked_but_exact() -> None:
    g = torch.Generator().manual_seed(1)
    X = torch.randn(40_000, 5, generator=g, dtype=torch.float64)  # > one 16k-row chunk
    Y = X - X.mean(0)
    Yn = Y / Y.norm(dim=0)
    torch.testing.assert_close(metrics.cosine_similarity(X, center=True), Yn.T @ Yn)


def test_quiet_neuron_beside_a_loud_one_is_not_silenced() -> None:
    """Regression: a global threshold zeroed real neurons whose variance was tiny next to
    another neuron's (seen on MiniLM: variance 3e-5 beside 24)."""
    g = torch.Generator().manual_seed(0)
    loud = 1000.0 * torch.randn(500, 1, generator=g)
    quiet = 0.1 + 1e-3 * torch.randn(500, 1, generator=g)
    X = torch.cat([loud, quiet, quiet * 2 + 1e-4 * torch.randn(500, 1, generator=g)], 1)
    expected = torch.from_numpy(np.corrcoef(X.double().numpy(), rowvar=False))
    got = metrics.cosine_similarity(X, center=True)
    torch.testing.assert_close(got.double(), expected, atol=1e-3, rtol=0)
    sums, gram = X.double().sum(0), X.double().T @ X.double()
    torch.testing.assert_close(
        metrics.cosine_similarity_from_gram(gram, sums=sums, count=500), expected, atol=1e-6, rtol=0
    )
