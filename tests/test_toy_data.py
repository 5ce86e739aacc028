"""SparseFeatureDataset: the sampled distribution (result 1 of issue 3) and its validation."""

from __future__ import annotations

import pytest
import torch

from superposition import SparseFeatureDataset

PROBS = [1.0, 0.3, 0.1, 0.03, 0.01]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_active_frequency_and_values() -> None:
    data = SparseFeatureDataset(20, PROBS)
    x = data.sample(100_000, generator=_gen())
    assert x.shape == (100_000, 5, 20)
    active = x > 0
    freq = active.float().mean((0, 2))
    torch.testing.assert_close(freq, torch.tensor(PROBS), atol=0.002, rtol=0)
    assert bool((x >= 0).all())
    assert bool((x < 1).all())
    for i in range(len(PROBS)):
        vals = x[:, i][active[:, i]]
        assert abs(float(vals.mean()) - 0.5) <= 0.005, (PROBS[i], float(vals.mean()))
        # uniform on [0, 1): the variance is 1/12
        assert abs(float(vals.var()) - 1 / 12) <= 0.003


def test_signed_distribution_is_uniform_on_minus_one_one() -> None:
    data = SparseFeatureDataset(10, 0.2, distribution="signed")
    x = data.sample(50_000, generator=_gen())
    active = x != 0
    assert abs(float(active.float().mean()) - 0.2) <= 0.002
    vals = x[active]
    assert float(vals.min()) >= -1
    assert float(vals.max()) < 1
    assert abs(float(vals.mean())) <= 0.01
    assert abs(float(vals.var()) - 1 / 3) <= 0.01


def test_correlated_groups_co_occur() -> None:
    data = SparseFeatureDataset(6, [0.3, 0.05], correlated_groups=[[0, 1, 2], [4, 5]])
    x = data.sample(100_000, generator=_gen())
    active = x > 0
    for g in ([0, 1, 2], [4, 5]):
        assert bool((active[..., g].all(-1) == active[..., g].any(-1)).all())
    freq = active.float().mean(0)  # [instances, features]
    torch.testing.assert_close(freq, torch.tensor([[0.3] * 6, [0.05] * 6]), atol=0.004, rtol=0)
    # values inside a group are still independent uniforms
    both = active[:, 0, 0]
    assert abs(float(torch.corrcoef(x[both, 0, :2].T)[0, 1])) < 0.02


def test_anticorrelated_groups_never_co_occur_and_keep_marginals() -> None:
    data = SparseFeatureDataset(5, [0.3, 0.1], anticorrelated_groups=[[0, 1], [2, 3, 4]])
    x = data.sample(100_000, generator=_gen())
    active = x > 0
    assert int(active[..., :2].sum(-1).max()) <= 1
    assert int(active[..., 2:].sum(-1).max()) <= 1
    freq = active.float().mean(0)
    torch.testing.assert_close(freq, torch.tensor([[0.3] * 5, [0.1] * 5]), atol=0.004, rtol=0)
    vals = x[active]
    assert abs(float(vals.mean()) - 0.5) <= 0.005


def test_sparsity_is_one_minus_probability() -> None:
    a = SparseFeatureDataset(4, sparsity=[0.0, 0.9])
    torch.testing.assert_close(a.feature_probability, torch.tensor([1.0, 0.1]))
    torch.testing.assert_close(a.sparsity, torch.tensor([0.0, 0.9]))


def test_importance_forms() -> None:
    assert SparseFeatureDataset(3, 1.0, importance=0.5).importance.tolist() == [[1, 0.5, 0.25]]
    d = SparseFeatureDataset(3, [1.0, 0.5], importance=[3.0, 2.0, 1.0])
    assert d.importance.tolist() == [[3, 2, 1], [3, 2, 1]]
    per = torch.tensor([[1.0, 1.0], [1.0, 10.0]])
    d = SparseFeatureDataset(2, 0.5, importance=per)
    assert d.n_instances == 2
    torch.testing.assert_close(d.importance, per)
    assert SparseFeatureDataset(2, 0.5, n_instances=4).feature_probability.shape == (4,)


def test_seeded_dataset_is_reproducible() -> None:
    a = SparseFeatureDataset(4, 0.5, seed=3).sample(8)
    b = SparseFeatureDataset(4, 0.5, seed=3).sample(8)
    assert torch.equal(a, b)


def test_repr_shows_what_was_passed() -> None:
    d = SparseFeatureDataset(20, [1, 0.1], importance=0.9, seed=1)
    want = "n_features=20, feature_probability=[1, 0.1], importance=0.9, seed=1"
    assert repr(d) == f"SparseFeatureDataset({want})"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"feature_probability": 1.5}, r"feature_probability must be in \(0, 1\], got 1.5"),
        (
            {"feature_probability": [0.5, 0.0]},
            r"feature_probability must be in \(0, 1\], got \[0.5, 0.0\]",
        ),
        ({"sparsity": 1.0}, r"sparsity must be in \[0, 1\), got 1.0"),
        (
            {"feature_probability": 0.5, "sparsity": 0.5},
            "pass exactly one of feature_probability and sparsity",
        ),
        ({}, "pass exactly one of feature_probability and sparsity"),
        (
            {"feature_probability": 0.5, "importance": -0.5},
            r"importance must be positive .* got -0.5",
        ),
        (
            {"feature_probability": 0.5, "importance": [1.0, -1.0, 1.0, 1.0]},
            "importance must be finite and non-negative",
        ),
        (
            {"feature_probability": 0.5, "importance": [1.0, 2.0]},
            r"importance must be .* n_features=4 .* got shape \(1, 2\)",
        ),
        ({"feature_probability": [0.5, 0.1], "n_instances": 3}, "n_instances disagree"),
        (
            {"feature_probability": 0.5, "n_instances": 0},
            "n_instances must be a positive int or None, got 0",
        ),
        (
            {"feature_probability": 0.5, "distribution": "normal"},
            "distribution must be one of .* got 'normal'",
        ),
        (
            {"feature_probability": 0.1, "correlated_groups": [[0, 4]]},
            r"correlated_groups indexes feature 4, outside range\(0, 4\)",
        ),
        ({"feature_probability": 0.1, "correlated_groups": [[0]]}, "at least 2 features"),
        (
            {
                "feature_probability": 0.1,
                "correlated_groups": [[0, 1]],
                "anticorrelated_groups": [[1, 2]],
            },
            "feature 1 is in two groups",
        ),
        (
            {"feature_probability": 0.8, "anticorrelated_groups": [[0, 1]]},
            r"feature_probability <= 0.5",
        ),
    ],
)
def test_bad_parameters_name_parameter_and_value(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SparseFeatureDataset(4, **kwargs)  # type: ignore[arg-type]


def test_bad_n_features_and_batch_size() -> None:
    with pytest.raises(ValueError, match="n_features must be a positive int, got 0"):
        SparseFeatureDataset(0, 0.5)
    with pytest.raises(ValueError, match="batch_size must be a positive int, got -1"):
        SparseFeatureDataset(3, 0.5).sample(-1)
