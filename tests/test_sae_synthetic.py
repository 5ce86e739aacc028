"""SyntheticFeatures: the ground-truth generator's statistics against closed forms."""

from __future__ import annotations

import pytest
import torch

from superposition import SyntheticFeatures


def g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_directions_are_unit_rows_fixed_by_the_seed() -> None:
    a = SyntheticFeatures(50, 10, firing_probability=0.1, seed=3)
    b = SyntheticFeatures(50, 10, firing_probability=0.1, seed=3)
    assert a.directions.shape == (50, 10)
    torch.testing.assert_close(a.directions.norm(dim=1), torch.ones(50))
    assert torch.equal(a.directions, b.directions)
    assert not torch.equal(
        a.directions, SyntheticFeatures(50, 10, firing_probability=0.1, seed=4).directions
    )


def test_samples_are_sums_of_firing_directions() -> None:
    truth = SyntheticFeatures(
        20, 6, firing_probability=0.3, magnitude=torch.linspace(1, 2, 20), seed=0
    )
    f = truth.features(500, g(1))
    x = truth.sample(500, g(1))
    torch.testing.assert_close(x, f @ truth.directions)
    assert set(torch.unique(f[:, 0]).tolist()) <= {0.0, 1.0}
    assert set(torch.unique(f[:, -1]).tolist()) <= {0.0, 2.0}


def test_firing_frequencies_match_the_probabilities() -> None:
    p = torch.tensor([0.5, 0.1, 0.01, 0.3])
    truth = SyntheticFeatures(4, 3, firing_probability=p, seed=0)
    n = 200_000
    freq = (truth.features(n, g(2)) != 0).double().mean(0)
    # within 5 binomial standard deviations
    assert ((freq - p.double()).abs() <= 5 * (p.double() * (1 - p.double()) / n).sqrt()).all()


def test_correlated_firing_keeps_marginals_and_correlates_events() -> None:
    n = 100_000
    p = 0.2
    indep = SyntheticFeatures(6, 3, firing_probability=p, seed=0).features(n, g(0)) != 0
    corr = (
        SyntheticFeatures(6, 3, firing_probability=p, correlation=0.8, seed=0).features(n, g(0))
        != 0
    )
    for fires in (indep, corr):
        assert (fires.double().mean(0) - p).abs().max() < 0.01
    both_indep = float((indep[:, 0] & indep[:, 1]).double().mean())
    both_corr = float((corr[:, 0] & corr[:, 1]).double().mean())
    assert both_indep == pytest.approx(p * p, abs=0.005)
    assert both_corr > 2 * p * p
    # a full correlation matrix: features 0 and 1 correlated, 2 independent of both
    C = torch.eye(3)
    C[0, 1] = C[1, 0] = 0.9
    fires = (
        SyntheticFeatures(3, 2, firing_probability=p, correlation=C, seed=0).features(n, g(1)) != 0
    )
    assert float((fires[:, 0] & fires[:, 1]).double().mean()) > 2 * p * p
    assert float((fires[:, 0] & fires[:, 2]).double().mean()) == pytest.approx(p * p, abs=0.005)


def test_zipf_probabilities() -> None:
    p = SyntheticFeatures.zipf(100, mean=0.05, exponent=1.0)
    assert float(p.mean()) == pytest.approx(0.05, rel=1e-6)
    torch.testing.assert_close(p[0] / p[9], torch.tensor(10.0))


def test_iteration_yields_batches_from_the_seeded_stream() -> None:
    truth = SyntheticFeatures(20, 6, firing_probability=0.3, seed=0, batch_size=7)
    a = [b for _, b in zip(range(3), truth, strict=False)]
    b = [b for _, b in zip(range(3), truth, strict=False)]
    assert all(x.shape == (7, 6) for x in a)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"firing_probability": 1.5}, r"firing_probability must lie in \(0.0, 1.0\]"),
        (
            {"firing_probability": [0.1, 0.2]},
            r"firing_probability must be a float or have one value per feature \(shape \(4,\)\)",
        ),
        ({"firing_probability": 0.1, "magnitude": 0.0}, r"magnitude must lie in \(0.0, inf\]"),
        (
            {"firing_probability": 0.1, "correlation": 1.0},
            r"correlation must be None, a float in \[0, 1\)",
        ),
        (
            {"firing_probability": 0.1, "correlation": torch.ones(4, 4)},
            r"positive-definite correlation matrix",
        ),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SyntheticFeatures(4, 3, **kwargs)  # type: ignore[arg-type]
