"""Tests of :mod:`superposition.sae.synthbench`: each statistic is checked against its exact
value with a tolerance of 6 binomial (or CLT) standard errors, so that a test fails for a
seed with probability below 1e-8 per comparison (below 1e-5 over all of them)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from superposition.sae.synthbench import Hierarchy, SynthBench, _orthogonalize

Z = 6.0  # standard errors allowed


def _rates(bench: SynthBench, n: int, seed: int) -> torch.Tensor:
    f = bench.features(n, torch.Generator().manual_seed(seed)).to_dense()
    return (f > 0).double().mean(0)


def _binomial_ok(rate: torch.Tensor, p: torch.Tensor, n: int) -> bool:
    p = p.double()
    return bool(((rate - p).abs() <= Z * (p * (1 - p) / n).sqrt() + 1e-12).all())


@pytest.mark.parametrize("exclusive", [True, False])
@pytest.mark.parametrize("scale", [True, False])
def test_rates_match_the_exact_marginals(exclusive: bool, scale: bool) -> None:
    tree = Hierarchy(4, 3, 2, mutually_exclusive=exclusive, scale_children=scale)
    # std ~ mean: some magnitudes come out <= 0, which SAELens counts as no firing.
    bench = SynthBench(
        80,
        4,
        firing_probability=SynthBench.zipf(80, 0.5, 0.4, 0.02),
        hierarchy=tree,
        magnitude_mean=torch.linspace(2.0, 1.0, 80),
        magnitude_std=1.0,
        seed=0,
    )
    assert bool((bench.marginal_probability < bench.base_probability * 0.999).any())
    n = 100_000
    assert _binomial_ok(_rates(bench, n, seed=1), bench.marginal_probability, n)


def test_hierarchy_gates_excludes_and_scales() -> None:
    tree = Hierarchy(3, 3, 2)
    std = torch.zeros(60)
    std[:3] = 1.0  # roots vary, children are their mean times the parent's ratio
    bench = SynthBench(
        60,
        4,
        firing_probability=0.5,
        hierarchy=tree,
        correlation_rank=2,
        correlation_scale=0.4,
        magnitude_mean=torch.linspace(3.0, 2.0, 60),
        magnitude_std=std,
        seed=0,
    )
    f = bench.features(20_000, torch.Generator().manual_seed(2)).to_dense()
    parent = bench.parent
    child = parent >= 0
    on = f[:, child] > 0
    assert on.any()
    assert bool((f[:, parent[child]][on] > 0).all())  # never without the parent
    kids = f[:, tree.roots : tree.size].view(f.shape[0], -1, tree.branching)
    assert int((kids > 0).sum(-1).max()) == 1  # siblings never together
    mean = bench.magnitude_mean
    want = mean[child] * f[:, parent[child]] / mean[parent[child]]
    torch.testing.assert_close(f[:, child][on], want[on])
    assert bench.parent[:6].tolist() == [-1, -1, -1, 0, 0, 0]


def test_correlated_firing_matches_the_copula() -> None:
    """Rank 1: P(i and j) = E_z[q_i(z) q_j(z)], integrated by Gauss-Hermite quadrature."""
    p = torch.full((6,), 0.2)
    bench = SynthBench(
        6,
        3,
        firing_probability=p,
        correlation_rank=1,
        correlation_scale=0.7,
        samples_per_factor=1,
        seed=0,
    )
    assert bench.correlation_factor is not None
    n = 100_000
    f = bench.features(n, torch.Generator().manual_seed(3)).to_dense() > 0
    both = (f[:, :, None] & f[:, None, :]).double().mean(0)
    x, w = np.polynomial.hermite_e.hermegauss(200)
    x_t, w_t = torch.from_numpy(x), torch.from_numpy(w) / math.sqrt(2 * math.pi)
    load = bench.correlation_factor.double()[:, 0]
    t = -torch.special.ndtri(p.double())
    sigma = (1 - load.square()).sqrt()
    q = torch.special.ndtr((load[:, None] * x_t - t[:, None]) / sigma[:, None])  # [6, nodes]
    want = torch.einsum("in,jn,n->ij", q, q, w_t)
    want.diagonal().copy_(torch.einsum("in,n->i", q, w_t))  # = p: the copula keeps it
    torch.testing.assert_close(want.diagonal(), p.double(), atol=1e-4, rtol=0)
    assert _binomial_ok(both, want, n)
    # The test has power: the strongest pair departs from independence by > 10 errors.
    off = (want - 0.04).abs().fill_diagonal_(0)
    i, j = divmod(int(off.argmax()), 6)
    assert float(off[i, j]) > 10 * math.sqrt(0.04 / n)
    sign = torch.sign(load[i] * load[j])
    assert float(sign * (both[i, j] - f[:, i].double().mean() * f[:, j].double().mean())) > 0


def test_shared_factors_keep_each_marginal() -> None:
    p = torch.linspace(0.3, 0.01, 20)
    bench = SynthBench(
        20, 3, firing_probability=p, correlation_rank=3, correlation_scale=0.3, seed=0
    )
    g = torch.Generator().manual_seed(4)
    # Samples share factors within a batch, so batches are the independent units.
    per_batch = torch.stack(
        [(bench.features(1024, g).to_dense() > 0).double().mean(0) for _ in range(60)]
    )
    se = per_batch.std(0) / math.sqrt(60)
    assert bool(((per_batch.mean(0) - p).abs() <= Z * se + 1e-9).all())


def test_magnitudes_per_feature() -> None:
    mean = torch.tensor([3.0, 4.0, 5.0, 1.0])
    std = torch.tensor([0.5, 1.0, 0.0, 1.0])
    bench = SynthBench(4, 2, firing_probability=0.5, magnitude_mean=mean, magnitude_std=std)
    n = 40_000
    f = bench.features(n, torch.Generator().manual_seed(5)).to_dense()
    for i in range(3):  # far from zero: plain normal magnitudes
        v = f[:, i][f[:, i] > 0].double()
        assert abs(float(v.mean()) - float(mean[i])) <= Z * float(std[i]) / math.sqrt(len(v)) + 1e-6
        assert abs(float(v.std()) - float(std[i])) <= Z * float(std[i]) / math.sqrt(2 * len(v))
    # N(1, 1) is <= 0 with probability Φ(-1): those draws are no firing, as in SAELens.
    want = 0.5 * torch.special.ndtr(torch.tensor(1.0, dtype=torch.float64))
    assert _binomial_ok((f[:, 3] > 0).double().mean(), want, n)
    assert float(f[:, 3][f[:, 3] > 0].min()) > 0


def test_bias_and_reconstruction_from_features() -> None:
    bench = SynthBench(
        50,
        6,
        firing_probability=0.2,
        hierarchy=Hierarchy(2, 2, 2),
        correlation_rank=2,
        magnitude_std=0.3,
        bias_norm=0.5,
        orthogonalize_steps=5,
        seed=1,
    )
    torch.testing.assert_close(bench.bias.norm(), torch.tensor(0.5))
    x, f = bench.sample(300, torch.Generator().manual_seed(6), return_features=True)
    assert x.dtype == torch.float32
    assert f.shape == (300, 50)
    torch.testing.assert_close(x, torch.sparse.mm(f, bench.directions) + bench.bias)


def test_orthogonalization_matches_saelens_and_spreads_directions() -> None:
    from sae_lens.synthetic.feature_dictionary import orthogonalize_embeddings

    v = torch.randn(300, 16, generator=torch.Generator().manual_seed(0))
    ours = _orthogonalize(v, 30, 1e-2)
    theirs = orthogonalize_embeddings(v, num_steps=30, lr=1e-2, chunk_size=128)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)

    def max_cos(d: torch.Tensor) -> float:
        return float((d @ d.T).fill_diagonal_(0).abs().max())

    plain = SynthBench(40, 16, firing_probability=0.1, seed=3)
    pushed = SynthBench(
        40, 16, firing_probability=0.1, orthogonalize_steps=100, orthogonalize_lr=1e-2, seed=3
    )

    def mean_sq(d: torch.Tensor) -> float:
        return float((d @ d.T).fill_diagonal_(0).square().mean())

    assert max_cos(pushed.directions) < max_cos(plain.directions)
    assert mean_sq(pushed.directions) < 0.9 * mean_sq(plain.directions)
    torch.testing.assert_close(pushed.directions.norm(dim=1), torch.ones(40))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_features": 0}, "n_features must be a positive int"),
        ({"firing_probability": 1.5}, r"firing_probability must lie in \(0.0, 1.0\]"),
        ({"firing_probability": [0.1, 0.2]}, r"one value per feature \(shape \(20,\)\)"),
        ({"magnitude_mean": 0.0}, "magnitude_mean must lie in"),
        ({"magnitude_std": -1.0}, r"magnitude_std must lie in \[0.0"),
        ({"hierarchy": Hierarchy(4, 3, 2)}, "needs 52 features but n_features=20"),
        ({"hierarchy": "tree"}, "hierarchy must be a Hierarchy or None"),
        ({"correlation_rank": -1}, "correlation_rank must be an int >= 0"),
        ({"correlation_scale": float("nan")}, "correlation_scale must be a non-negative"),
        ({"samples_per_factor": 0}, "samples_per_factor must be a positive int"),
        ({"bias_norm": -0.5}, "bias_norm must be a non-negative finite float"),
        ({"orthogonalize_steps": 1.5}, "orthogonalize_steps must be an int >= 0"),
        ({"orthogonalize_lr": 0.0}, "orthogonalize_lr must be positive"),
        ({"seed": True}, "seed must be an int or None"),
    ],
)
def test_bad_arguments_raise(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"n_features": 20, "d": 4, "firing_probability": 0.1} | kwargs
    with pytest.raises(ValueError, match=match):
        SynthBench(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"roots": 0, "branching": 2, "depth": 1}, "roots must be an int >= 1"),
        ({"roots": 1, "branching": 1, "depth": 1}, "branching must be an int >= 2"),
        ({"roots": 1, "branching": 2, "depth": 0}, "depth must be an int >= 1"),
        ({"roots": 1, "branching": 2, "depth": 1, "compensate": 1}, "compensate must be a bool"),
    ],
)
def test_bad_hierarchy_raises(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Hierarchy(**kwargs)  # type: ignore[arg-type]


def test_bad_sample_size_raises() -> None:
    bench = SynthBench(5, 2, firing_probability=0.1)
    with pytest.raises(ValueError, match="n must be a positive int, got 0"):
        bench.sample(0)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        next(bench.batches(-1))
    with pytest.raises(ValueError, match="expected 0 < min_prob < max_prob <= 1"):
        SynthBench.zipf(5, 1.0, 0.1, 0.2)


def test_same_seed_same_stream_and_iteration() -> None:
    def make() -> SynthBench:
        return SynthBench(
            30,
            5,
            firing_probability=0.1,
            correlation_rank=2,
            hierarchy=Hierarchy(2, 2, 1),
            seed=7,
            batch_size=64,
        )

    a, b = iter(make()), iter(make())
    for _ in range(3):
        xa, xb = next(a), next(b)
        assert xa.shape == (64, 5)
        assert torch.equal(xa, xb)


def test_fit_trains_on_it_as_an_iterable() -> None:
    from superposition.sae.model import SparseAutoencoder

    bench = SynthBench(16, 8, firing_probability=0.1, seed=0, batch_size=128)
    sae = SparseAutoencoder(8, 16, k=2, seed=0).fit(bench, samples=1024, batch_size=128)
    assert sae.fitted
    assert sae.evaluate(bench.sample(256)).l0 <= 2


def test_matches_saelens_on_a_small_model() -> None:
    from sae_lens.synthetic import (
        FoldedNormalMagnitudeConfig,
        HierarchyConfig,
        LinearMagnitudeConfig,
        SyntheticModel,
        SyntheticModelConfig,
        ZipfianFiringProbabilityConfig,
    )

    n, seed = 200, 11
    cfg = SyntheticModelConfig(
        num_features=n,
        hidden_dim=16,
        firing_probability=ZipfianFiringProbabilityConfig(
            exponent=0.5, max_prob=0.4, min_prob=0.01
        ),
        hierarchy=HierarchyConfig(
            total_root_nodes=5,
            branching_factor=3,
            max_depth=2,
            mutually_exclusive_portion=1.0,
            compensate_probabilities=True,
            scale_children_by_parent=True,
        ),
        mean_firing_magnitudes=LinearMagnitudeConfig(start=2.0, end=1.0),
        std_firing_magnitudes=FoldedNormalMagnitudeConfig(mean=0.8, std=0.4),
        bias=0.5,
        seed=seed,
    )
    theirs = SyntheticModel(cfg)
    gen = theirs.activation_generator
    std = (0.8 + 0.4 * torch.randn(n, generator=torch.Generator().manual_seed(seed + 1))).abs()
    ours = SynthBench(
        n,
        16,
        firing_probability=SynthBench.zipf(n, 0.5, 0.4, 0.01),
        hierarchy=Hierarchy(5, 3, 2),
        magnitude_mean=torch.linspace(2.0, 1.0, n),
        magnitude_std=std,
        seed=seed,
    )
    # The same model, parameter by parameter ...
    torch.testing.assert_close(ours.firing_probability, gen.firing_probabilities)
    torch.testing.assert_close(ours.magnitude_std, gen.std_firing_magnitudes)
    torch.testing.assert_close(ours.magnitude_mean, gen.mean_firing_magnitudes)
    assert theirs.hierarchy is not None
    for root in theirs.hierarchy.roots:
        for child in root.children:
            assert int(ours.parent[child.feature_index]) == root.feature_index
    # ... and the same statistics: per-feature rates and L0, as two-sample z-tests. (Without
    # correlation: each side draws its own loadings, and how siblings share their parent's
    # firings depends on them; test_correlated_firing_matches_the_copula covers the copula.)
    torch.manual_seed(12)
    m = 30_000
    f_theirs = theirs.activation_generator.sample(m) > 0
    f_ours = ours.features(m, torch.Generator().manual_seed(13)).to_dense() > 0
    r1, r2 = f_theirs.double().mean(0), f_ours.double().mean(0)
    pooled = (r1 + r2) / 2
    assert bool(((r1 - r2).abs() <= Z * (pooled * (1 - pooled) * 2 / m).sqrt() + 1e-12).all())
    l1, l2 = f_theirs.sum(1).double(), f_ours.sum(1).double()
    se = math.sqrt(float(l1.var() + l2.var()) / m)
    assert abs(float(l1.mean() - l2.mean())) <= Z * se


@pytest.fixture(scope="module")
def bench16k() -> SynthBench:
    return SynthBench.synthsaebench_16k(seed=0)


def test_synthsaebench_16k_headline_statistics(bench16k: SynthBench) -> None:
    bench = bench16k
    assert (bench.n_features, bench.d, bench.correlation_rank) == (16_384, 768, 25)
    p = bench.base_probability
    assert math.isclose(float(p.max()), 0.4, rel_tol=1e-6)
    assert math.isclose(float(p.min()), 5e-4, rel_tol=1e-4)
    assert bench.hierarchy is not None
    assert bench.hierarchy.size == 10_880
    assert int((bench.parent >= 0).sum()) == 10_880 - 128
    torch.testing.assert_close(bench.bias.norm(), torch.tensor(0.5))
    # Without correlation the true L0 is exactly 34.49; the copula moves it by ~0.1.
    assert abs(float(bench.marginal_probability.sum()) - 34.49) < 0.01
    g = torch.Generator().manual_seed(14)
    l0 = torch.tensor([bench.features(4096, g)._nnz() / 4096 for _ in range(8)])
    # Batches share their 64 factor draws: batch L0s spread with SD 0.66 (measured over 60
    # batches, true mean 34.63 +- 0.09 at seed 42), so 1.5 is 6 errors of an 8-batch mean.
    assert abs(float(l0.mean()) - 34.6) <= 1.5
