"""Memorization and double descent (Henighan et al., 2023): finite training sets.

The sweep behind these tests takes about 10 seconds per seed on an idle machine. Margins
measured on seeds 0-5 are noted beside each check.
"""

from __future__ import annotations

import pytest
import torch

from superposition import SparseFeatureDataset, ToyModel, metrics
from superposition.report.double_descent import QUICK_SIZES, dimensionality_share, sweep


@pytest.fixture(scope="module", params=[0, 1])
def result(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    return sweep(QUICK_SIZES, seed=request.param)


def test_test_loss_descends_twice(result) -> None:  # type: ignore[no-untyped-def]
    med = result.median_test_loss
    T = result.sizes
    # the peak lies strictly inside the grid (T = 100 on seeds 0-7), well above the curve on
    # both sides: T = 10 (after the first descent) and T = 1000 (1.36-2.7x on seeds 0-7)
    assert 10 < result.peak < 1000, (T, med)
    sides = float(torch.maximum(med[T.index(10)], med[T.index(1000)]))
    assert float(med.max()) > 1.15 * sides, (T, med)
    # large T generalizes: better than the zero output (0.955-0.964 of it on seeds 0-7)
    assert float(med[-1]) < result.baseline, (T, med)


def test_small_T_memorizes_and_large_T_learns_features(result) -> None:  # type: ignore[no-untyped-def]
    data = result.data_dimensionality.median(-1).values
    feat = result.feature_dimensionality.median(-1).values
    T = result.sizes
    # the training set is memorized at T = 3 (worst instance 0.0025 of the baseline) ...
    assert float(result.train_loss[0].max()) < 1e-2 * result.baseline
    # ... with its points, not features, stored in superposition (5.5-7.1x); the reverse at
    # T = 1000 (11.4-12.4x)
    assert float(data[0]) > 3 * float(feat[0]), (data, feat)
    assert float(feat[-1]) > 3 * float(data[-1]), (data, feat)
    # and the two cross once, at the peak of the test loss (T = 100 on seeds 0-7)
    cross = [t for t, d, f in zip(T, data, feat, strict=True) if f > d]
    assert 30 <= cross[0] <= 300, (data, feat)
    assert cross == [t for t in T if t >= cross[0]], (data, feat)


def test_finite_dataset_is_fixed_and_trained_full_batch() -> None:
    source = SparseFeatureDataset(6, sparsity=0.5, n_instances=2)
    train = source.finite(7, seed=3)
    assert torch.equal(train.x, source.finite(7, seed=3).x)
    assert train.x.shape == (7, 2, 6)
    # full batch: one step of fit == one AdamW step on the autograd gradient of all 7 points
    model = ToyModel(6, 3, n_instances=2, seed=0).fit(train, steps=1, lr=0.1, progress=False)
    ref = ToyModel(6, 3, n_instances=2, seed=0)
    opt = torch.optim.AdamW(ref.parameters(), lr=0.1, weight_decay=0.01)
    ref.loss(train.x, train.importance).backward()
    opt.step()
    torch.testing.assert_close(model.params, ref.params)
    with pytest.raises(ValueError, match="full-batch"):
        ToyModel(6, 3, n_instances=2).fit(train, steps=1, batch_size=4, progress=False)
    test = train.test_set(1000, seed=0)
    assert test.shape == (1000, 2, 6)
    assert abs(float((test == 0).float().mean()) - 0.5) < 0.05


def test_finite_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="n_points must be a positive int"):
        SparseFeatureDataset(3, 0.5).finite(0)


def test_data_dimensionality_is_feature_dimensionality_of_the_hidden_vectors() -> None:
    # a triangle of equal points: 2/3 each; a point alone on its axis: 1
    angles = torch.tensor([0.0, 2.0944, 4.18879])
    H = torch.stack([angles.cos(), angles.sin()], -1)
    torch.testing.assert_close(metrics.data_dimensionality(H), torch.full((3,), 2 / 3))
    G = torch.randn(4, 9, 2)
    torch.testing.assert_close(metrics.data_dimensionality(G), metrics.feature_dimensionality(G.mT))
    with pytest.raises(ValueError, match="n_points, n_hidden"):
        metrics.data_dimensionality(torch.ones(3))


def test_dimensionality_share_of_a_polygon() -> None:
    angles = torch.arange(5) * (2 * torch.pi / 5)
    pentagon = torch.stack([angles.cos(), angles.sin()])  # [2, 5]
    tiny = 1e-4 * torch.randn(2, 50)
    torch.testing.assert_close(
        dimensionality_share(torch.cat([pentagon, tiny], -1)), torch.tensor(0.4), atol=1e-3, rtol=0
    )
