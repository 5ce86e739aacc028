"""Input validation of superposition.metrics: one pytest.raises per message."""

from __future__ import annotations

import math
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
        metrics.statistics_from_moments(0, torch.zeros(4, 3), torch.zeros(3))
    with pytest.raises(ValueError, match=r"moments must have shape \[4, neurons\]"):
        metrics.statistics_from_moments(3, torch.zeros(2, 3), torch.zeros(3))
    with pytest.raises(ValueError, match=r"dtype must be a floating-point torch\.dtype"):
        metrics.statistics_from_moments(3, torch.zeros(4, 3), torch.zeros(3), dtype=torch.int64)
    with pytest.raises(ValueError, match="X must have at least one row"):
        metrics.block_moments(torch.ones(0, 3))
    with pytest.raises(ValueError, match="X must have at least one token"):
        metrics.central_moments(torch.ones(0, 3))


def test_gram_validation() -> None:
    with pytest.raises(ValueError, match=r"gram must be square.*\(2, 3\)"):
        metrics.cosine_similarity_from_gram(torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"comoment must be square.*\(2, 3\)"):
        metrics.cosine_similarity_from_comoment(torch.ones(2, 3), torch.ones(2), 4)
    with pytest.raises(ValueError, match=r"mean must have shape \[2\]"):
        metrics.cosine_similarity_from_comoment(torch.eye(2), torch.ones(3), 4)
    with pytest.raises(ValueError, match="count must be positive"):
        metrics.cosine_similarity_from_comoment(torch.eye(2), torch.ones(2), 0)
    with pytest.raises(ValueError, match="count must be a non-negative int"):
        metrics.cosine_similarity_from_comoment(torch.eye(2), torch.ones(2), -1)


def test_moment_merge_validation() -> None:
    a = torch.zeros(4, 3)
    with pytest.raises(ValueError, match=r"b must have shape \[4, 3\] \(rows mean, M2, M3, M4\)"):
        metrics.merge_moments(1, a, 1, torch.zeros(4, 2))
    with pytest.raises(ValueError, match="count_b must be a non-negative int"):
        metrics.merge_moments(1, a, 1.5, a)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"comoment_a and comoment_b must be square.*\(2, 2\)"):
        metrics.merge_comoments(1, a[0], torch.eye(3), 1, a[0], torch.eye(2))
    with pytest.raises(ValueError, match=r"block must have as many columns.*\(3, 3\).*\(1, 2\)"):
        metrics.accumulate_comoment(torch.eye(3), 0, a[0], torch.ones(1, 2), a[0, :2])


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
    moments, _ = metrics.block_moments(X)
    comoment = metrics.accumulate_comoment(
        torch.zeros(3, 3, dtype=torch.float64), 0, moments[0], X, moments[0]
    )
    torch.testing.assert_close(
        metrics.cosine_similarity_from_comoment(comoment, moments[0], 500),
        expected,
        atol=1e-6,
        rtol=0,
    )


def test_merging_millions_of_rows_matches_the_bernoulli_closed_form() -> None:
    """Regression: the count polynomial in Pébay's M4 update passed 2^63 at a few million rows
    (OverflowError from torch). 3e6 zeros and 1e6 ones are a Bernoulli(1/4) sample."""
    zeros, _ = metrics.block_moments(torch.zeros(1, 1, dtype=torch.float64))
    ones, _ = metrics.block_moments(torch.ones(1, 1, dtype=torch.float64))
    na, nb, p = 3_000_000, 1_000_000, 0.25
    n = na + nb
    m = metrics.merge_moments(na, zeros, nb, ones)[:, 0].tolist()
    q = p * (1 - p)
    expected = [p, n * q, n * q * (1 - 2 * p), n * q * (1 - 3 * q)]
    for got, want in zip(m, expected, strict=True):
        assert abs(got - want) <= 1e-12 * abs(want), (m, expected)
    s = metrics.statistics_from_moments(
        n, metrics.merge_moments(na, zeros, nb, ones), torch.ones(1)
    )
    assert abs(float(s.kurtosis) - (1 - 6 * q) / q) < 1e-5


def test_bootstrap_median_interval() -> None:
    from superposition.metrics import bootstrap_median, resampled_medians

    assert bootstrap_median(torch.full((9,), 2.5)) == (2.5, 2.5, 2.5)
    x = torch.randn(2001, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    med, low, high = bootstrap_median(x, n_boot=400)
    assert med == float(x.median())
    # The median of n normal draws has standard error about 1.2533 / sqrt(n).
    se = 1.2533 / math.sqrt(2001)
    assert 2.5 * se < high - low < 5.5 * se
    meds = resampled_medians(x, n_boot=400)
    assert meds.shape == (400,)
    assert bool(((meds >= x.min()) & (meds <= x.max())).all())
    assert math.isnan(bootstrap_median(torch.tensor([math.nan]))[0])
    with pytest.raises(ValueError, match="level must be in"):
        bootstrap_median(x, level=1.0)
