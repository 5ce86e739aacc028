"""Tests of the metrics that judge an SAE against ground truth: best matches and uniqueness
(metrics/recovery.py), latents as detectors (metrics/detection.py) and feature absorption
(metrics/feature_absorption.py), against SAELens's own functions and closed forms of hand-built
SAEs; the comparisons with the definitions written as loops are property tests
(tests/properties/test_truth_properties.py)."""

from __future__ import annotations

import math

import pytest
import torch

from superposition import metrics
from superposition.metrics import feature_absorption, recovery
from superposition.sae.synthbench import Hierarchy, SynthBench


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_case(seed: int, n: int = 40, n_features: int = 9, n_latents: int = 7, d: int = 6):
    """A random SAE on a random forest: features active with probability 1/2, latents active
    with probability 1/2 and of either sign, a decoder with one copy of a true row and one
    zero row."""
    g = seeded(seed)
    parent = torch.tensor(
        [int(torch.randint(-1, i, (), generator=g)) if i else -1 for i in range(n_features)]
    )
    true = torch.randn(n_features, d, generator=g, dtype=torch.float64)
    W_dec = torch.randn(n_latents, d, generator=g, dtype=torch.float64)
    W_dec[0] = 2 * true[int(parent.max())]
    W_dec[-1] = 0
    on = torch.rand(n, n_features, generator=g) < 0.5
    features = torch.where(on, torch.rand(n, n_features, generator=g) + 0.5, 0.0).double()
    on = torch.rand(n, n_latents, generator=g) < 0.5
    latents = torch.where(on, torch.randn(n, n_latents, generator=g), 0.0).double()
    return latents, features, W_dec, true, parent


# --------------------------------------------------------------------------- best matches


def test_best_matches_chunked_equals_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    g = seeded(5)
    true = torch.randn(13, 6, generator=g)
    learned = torch.randn(29, 6, generator=g)
    whole = metrics.best_matches(true, learned)
    monkeypatch.setattr(recovery, "_CHUNK", 13 * 3)  # three learned rows per step
    assert torch.equal(metrics.best_matches(true, learned), whole)


def test_orthogonal_learned_row_matches_nothing() -> None:
    true = torch.eye(4)[:2]
    learned = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 1.0, 0.0, 0.0]])
    assert metrics.best_matches(true, learned).tolist() == [-1, 1]


@pytest.mark.parametrize(("n_true", "n_learned", "seed"), [(20, 8, 0), (8, 20, 1), (50, 50, 2)])
def test_uniqueness_equals_saelens(n_true: int, n_learned: int, seed: int) -> None:
    evals = pytest.importorskip("sae_lens.synthetic.evals")
    g = seeded(seed)
    true = torch.randn(n_true, 7, generator=g)
    learned = torch.randn(n_learned, 7, generator=g)
    learned[1::3] = true[torch.randint(0, n_true, (len(learned[1::3]),), generator=g)]
    expected = evals.feature_uniqueness(learned, true)
    assert metrics.uniqueness(true, learned) == pytest.approx(expected, abs=1e-12)
    # and the matches are SAELens's argmax
    reference = evals.cosine_similarities(learned, true).abs().argmax(1)
    assert torch.equal(metrics.best_matches(true, learned), reference)


def test_uniqueness_counts_duplicates_once_and_dead_rows_as_nothing() -> None:
    true = torch.eye(4)
    learned = torch.tensor(
        [[1.0, 0.1, 0, 0], [2, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    )
    # rows 0 and 1 both match feature 0, row 2 matches feature 2, rows 3 and 4 nothing
    assert metrics.uniqueness(true, learned) == 2 / 5


# --------------------------------------------------------------------------- detection


def test_detection_counts_add_across_batches() -> None:
    latents, features, *_ = random_case(7, n=50)
    match = torch.arange(latents.shape[1]) % features.shape[1]
    whole = metrics.detection_counts(latents, features, match)
    parts = metrics.detection_counts(latents[:17], features[:17].to_sparse(), match)
    parts += metrics.detection_counts(latents[17:], features[17:], match)
    assert torch.equal(parts, whole)


def test_detection_counts_read_an_uncoalesced_sparse_tensor_as_its_sum() -> None:
    # two entries at (0, 1) that sum to a negative value: feature 1 is not active on sample 0
    idx = torch.tensor([[0, 0, 1, 1], [1, 1, 0, 1]])
    values = torch.tensor([0.5, -1.0, 2.0, 3.0])
    features = torch.sparse_coo_tensor(idx, values, (2, 2), check_invariants=True)
    latents = torch.ones(2, 2)
    counts = metrics.detection_counts(latents, features, torch.tensor([0, 1]))
    # feature 0 is active on sample 1 only, feature 1 (summed to -0.5 on sample 0) too
    assert counts.tolist() == [[1, 1], [1, 1], [0, 0], [0, 0]]


def test_detection_on_synthbench_sparse_features_equals_dense() -> None:
    bench = SynthBench(60, 12, firing_probability=0.2, hierarchy=Hierarchy(2, 3, 1), seed=0)
    x, features = bench.sample(200, seeded(1), return_features=True)
    assert features.layout == torch.sparse_coo
    W_dec = bench.directions[:20] + 0.1 * torch.randn(20, 12, generator=seeded(2))
    latents = torch.relu(x @ W_dec.T - 0.5)
    match = metrics.best_matches(bench.directions, W_dec)
    sparse = metrics.detection_counts(latents, features, match)
    assert torch.equal(sparse, metrics.detection_counts(latents, features.to_dense(), match))


def test_detection_scores_equal_definitions_with_undefined_ratios() -> None:
    counts = torch.tensor(
        [
            [3, 0, 0, 0, 5, 2],  # tp
            [1, 0, 4, 0, 0, 2],  # fp
            [2, 3, 0, 0, 0, 2],  # fn
            [4, 7, 6, 0, 5, 4],  # tn
        ]
    )
    scores = metrics.detection_scores(counts)
    # by hand: (3, 1, 2, 4) gives P 3/4, R 3/5, F1 2/3; a latent that never fires has P 0; one
    # whose feature never fires R 0; an empty column is 0 throughout
    expected = [
        [3 / 4, 0, 0, 0, 1, 1 / 2],
        [3 / 5, 0, 0, 0, 1, 1 / 2],
        [2 / 3, 0, 0, 0, 1, 1 / 2],
        [7 / 10, 7 / 10, 6 / 10, 0, 1, 6 / 10],
    ]
    for got, want in zip(
        (scores.precision, scores.recall, scores.f1, scores.accuracy), expected, strict=True
    ):
        assert got.dtype == torch.float64
        torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64))
    assert scores.mean_f1 == pytest.approx((2 / 3 + 1 + 1 / 2) / 6)
    assert scores.means() == {
        "precision": scores.mean_precision,
        "recall": scores.mean_recall,
        "f1": scores.mean_f1,
        "accuracy": scores.mean_accuracy,
    }
    assert "n_latents=6" in repr(scores)


@pytest.mark.parametrize("seed", range(3))
def test_detection_equals_saelens_classification_metrics(seed: int) -> None:
    evals = pytest.importorskip("sae_lens.synthetic.evals")
    g = seeded(seed)
    true = torch.randn(30, 8, generator=g)
    W_dec = torch.randn(25, 8, generator=g)
    W_dec[::4] = true[:7] * 3  # some latents that are true features
    calc = evals.ClassificationMetricsCalculator(W_dec, true)
    match = metrics.best_matches(true, W_dec)
    assert torch.equal(match, calc.best_matches)
    counts = torch.zeros(4, 25, dtype=torch.int64)
    for _ in range(3):  # three batches, as a caller streams them
        on = torch.rand(64, 30, generator=g) < 0.3
        features = torch.where(on, torch.rand(64, 30, generator=g) + 0.1, 0.0)
        on = torch.rand(64, 25, generator=g) < 0.3
        latents = torch.where(on, torch.randn(64, 25, generator=g), 0.0)
        calc.add_batch(latents, features)
        counts += metrics.detection_counts(latents, features.to_sparse(), match)
    for row, theirs in zip(counts, (calc.tp, calc.fp, calc.fn, calc.tn), strict=True):
        assert row.tolist() == theirs.long().tolist()
    reference = calc.compute()
    scores = metrics.detection_scores(counts)
    assert scores.mean_precision == pytest.approx(reference.precision, rel=1e-6)
    assert scores.mean_recall == pytest.approx(reference.recall, rel=1e-6)
    assert scores.mean_f1 == pytest.approx(reference.f1_score, rel=1e-6)
    assert scores.mean_accuracy == pytest.approx(reference.accuracy, rel=1e-6)


def test_detection_scores_of_no_latents_are_zero_as_in_saelens() -> None:
    scores = metrics.detection_scores(torch.zeros(4, 0, dtype=torch.int64))
    assert scores.means() == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "accuracy": 0.0}


# --------------------------------------------------------------------------- absorption


def test_absorption_in_small_steps_equals_one_step(monkeypatch: pytest.MonkeyPatch) -> None:
    latents, features, W_dec, true, parent = random_case(5, n=60)
    whole = metrics.absorption(latents, features, W_dec, true, parent)
    monkeypatch.setattr(feature_absorption, "_PAIRS", 3)
    monkeypatch.setattr(feature_absorption, "_CHUNK", W_dec.shape[0])  # one parent per step
    steps = metrics.absorption(latents, features, W_dec, true, parent)
    for name in ("main", "opportunities", "absorbed"):
        assert torch.equal(getattr(steps, name), getattr(whole, name))
    torch.testing.assert_close(steps.fraction_sum, whole.fraction_sum)


def orthogonal_forest(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two roots (0, 1) with three children each (2-4, 5-7) and two free features (8, 9):
    exactly orthogonal true directions (scaled, permuted basis vectors) of random norms, and
    features drawn so that children fire only with their parent, with values in [1, 2)."""
    g = seeded(seed)
    parent = torch.tensor([-1, -1, 0, 0, 0, 1, 1, 1, -1, -1])
    norms = torch.rand(10, generator=g, dtype=torch.float64) + 0.5
    true = torch.diag(norms) @ torch.eye(10, dtype=torch.float64)[torch.randperm(10, generator=g)]
    on = torch.rand(80, 10, generator=g) < 0.5
    on[:, 2:8] &= on[:, parent[2:8]]
    features = torch.where(on, torch.rand(80, 10, generator=g, dtype=torch.float64) + 1, 0.0)
    return features, true, parent


def test_an_sae_that_is_the_truth_absorbs_nothing() -> None:
    features, true, parent = orthogonal_forest(0)
    result = metrics.absorption(features, features, true * 3, true, parent)
    assert result.parents.tolist() == [0, 1]
    assert result.main.tolist() == [0, 1]
    assert int(result.opportunities.sum()) > 0
    assert result.rate == 0.0
    assert result.mean_fraction == 0.0


def test_a_child_latent_that_carries_its_parent_absorbs_it_fully() -> None:
    features, true, parent = orthogonal_forest(1)
    unit = true / true.norm(dim=1, keepdim=True)
    W_dec = unit.clone()
    W_dec[2:8] += unit[parent[2:8]]  # a child's latent writes child + parent
    a = features[:, :2] * true[:2].norm(dim=1)  # each root's own contribution, [n, 2]
    child_on = features[:, 2:8] > 0
    any_child = torch.stack([child_on[:, :3].any(1), child_on[:, 3:].any(1)], 1)
    latents = features.clone()
    # an active child's latent carries all of its parent, whose own latent is then silent
    latents[:, 2:8] = torch.where(child_on, a[:, parent[2:8]], 0.0)
    latents[:, :2] = torch.where(any_child, 0.0, a)
    result = metrics.absorption(latents, features, W_dec, true, parent)
    assert result.main.tolist() == [0, 1]
    assert result.opportunities.tolist() == any_child.sum(0).tolist()
    assert int(result.opportunities.sum()) > 0
    assert result.rate == 1.0
    assert result.mean_fraction == 1.0
    # the parents' latents left on: never fully absorbed, and with k active children each
    # carrying a, the fraction is k a / (k a + a) = k / (k + 1)
    latents[:, :2] = a
    kept = metrics.absorption(latents, features, W_dec, true, parent)
    k = torch.stack([child_on[:, :3].sum(1), child_on[:, 3:].sum(1)], 1)[any_child].double()
    assert kept.rate == 0.0
    assert kept.mean_fraction == pytest.approx(float((k / (k + 1)).mean()), abs=1e-12)


def edge_case(main_value: float, other_coefficient: float, n_latents: int = 3):
    """One opportunity: parent 0 (value 1, unit direction e0) with child 1 active; latent 0
    is e0 (the main latent), latent 1 has ``W_dec_1 · e0 = other_coefficient`` and value 1."""
    true = torch.eye(3, dtype=torch.float64)
    parent = torch.tensor([-1, 0, -1])
    features = torch.tensor([[1.0, 1.0, 0.0]], dtype=torch.float64)
    W_dec = torch.tensor([[1.0, 0, 0], [other_coefficient, 1, 0], [0, 0, 1]], dtype=torch.float64)[
        :n_latents
    ]
    latents = torch.tensor([[main_value, 1.0, 0.0]], dtype=torch.float64)[:, :n_latents]
    return latents, features, W_dec, true, parent


@pytest.mark.parametrize(
    ("threshold", "absorbed"), [(0.5, 1), (0.5 + 1e-12, 0), (0.0, 1), (0.25, 1)]
)
def test_full_absorption_at_the_threshold(threshold: float, absorbed: int) -> None:
    result = metrics.absorption(*edge_case(0.0, 0.5), threshold=threshold)
    assert result.opportunities.tolist() == [1]
    assert result.absorbed.tolist() == [absorbed]
    assert result.mean_fraction == 1.0  # nothing on the main latent


def test_an_active_main_latent_is_never_fully_absorbed() -> None:
    result = metrics.absorption(*edge_case(0.1, 0.5), threshold=0.0)
    assert result.rate == 0.0
    assert result.mean_fraction == pytest.approx(0.5 / (0.5 + 0.1), abs=1e-15)


def test_threshold_zero_and_negative_projections() -> None:
    # latent 1 points against the parent (proj -0.5); latent 2 is inactive (proj 0): the max
    # over the other latents is 0 >= 0 · a, so absorbed at threshold 0 but not at 0.1
    assert metrics.absorption(*edge_case(0.0, -0.5), threshold=0.0).rate == 1.0
    assert metrics.absorption(*edge_case(0.0, -0.5), threshold=0.1).rate == 0.0
    # with no inactive latent left the max is -0.5 < 0
    assert metrics.absorption(*edge_case(0.0, -0.5, n_latents=2), threshold=0.0).rate == 0.0
    # and negative projections count 0 in the fraction: 0 / (0 + 0) is 0
    assert metrics.absorption(*edge_case(0.0, -0.5), threshold=0.0).mean_fraction == 0.0


def test_a_parent_firing_without_a_child_is_no_opportunity() -> None:
    latents, features, W_dec, true, parent = edge_case(0.0, 0.5)
    features[0, 1] = 0
    result = metrics.absorption(latents, features, W_dec, true, parent)
    assert result.opportunities.tolist() == [0]
    assert math.isnan(result.rate)
    assert math.isnan(result.mean_fraction)


def test_absorption_merges_batches_into_the_whole() -> None:
    latents, features, W_dec, true, parent = random_case(6, n=50)
    whole = metrics.absorption(latents, features, W_dec, true, parent)
    first = metrics.absorption(latents[:20], features[:20], W_dec, true, parent)
    second = metrics.absorption(latents[20:], features[20:].to_sparse(), W_dec, true, parent)
    merged = first.merge(second)
    for name in ("parents", "main", "opportunities", "absorbed"):
        assert torch.equal(getattr(merged, name), getattr(whole, name))
    torch.testing.assert_close(merged.fraction_sum, whole.fraction_sum)
    assert merged.rate == pytest.approx(whole.rate)
    assert "rate=" in repr(merged)
    other = metrics.absorption(latents, features, W_dec, true, parent, threshold=0.5)
    with pytest.raises(ValueError, match="same parents, main latents and threshold"):
        whole.merge(other)
    with pytest.raises(ValueError, match="same parents, main latents and threshold"):
        whole.merge(metrics.absorption(latents, features, W_dec.flip(0), true, parent))
    with pytest.raises(TypeError, match="can only merge an Absorption, got int"):
        whole.merge(3)  # type: ignore[arg-type]


def test_absorption_without_parents_is_empty() -> None:
    latents, features, W_dec, true, _ = edge_case(0.0, 0.5)
    result = metrics.absorption(latents, features, W_dec, true, torch.full((3,), -1))
    assert result.parents.numel() == 0
    assert math.isnan(result.rate)


def test_absorption_on_synthbench_sparse_equals_dense() -> None:
    bench = SynthBench(40, 16, firing_probability=0.3, hierarchy=Hierarchy(3, 3, 2), seed=0)
    x, features = bench.sample(300, seeded(3), return_features=True)
    W_dec = bench.directions[:30] + 0.2 * torch.randn(30, 16, generator=seeded(4))
    latents = torch.relu(x @ W_dec.T - 0.3)
    sparse = metrics.absorption(latents, features, W_dec, bench.directions, bench.parent)
    dense = metrics.absorption(latents, features.to_dense(), W_dec, bench.directions, bench.parent)
    assert int(sparse.opportunities.sum()) > 0
    for name in ("parents", "main", "opportunities", "absorbed"):
        assert torch.equal(getattr(sparse, name), getattr(dense, name))
    torch.testing.assert_close(sparse.fraction_sum, dense.fraction_sum)


# --------------------------------------------------------------------------- input checks


def test_best_matches_and_uniqueness_reject_bad_input() -> None:
    for f in (metrics.best_matches, metrics.uniqueness):
        with pytest.raises(ValueError, match=r"same space .*\(d=2 vs d=3\)"):
            f(torch.eye(2), torch.eye(3))
        with pytest.raises(ValueError, match="at least one direction"):
            f(torch.eye(2), torch.empty(0, 2))
        with pytest.raises(TypeError, match=r"learned must be a torch\.Tensor"):
            f(torch.eye(2), [[1.0, 0.0]])  # type: ignore[arg-type]


DETECTION_ERRORS = [
    (torch.ones(3, 2).to_sparse(), torch.ones(3, 2), [0, 1], "latents must be a dense tensor"),
    (torch.ones(3, 2), torch.ones(4, 2), [0, 1], "the same samples"),
    (torch.ones(3, 2), torch.ones(3, 2, 1).to_sparse(), [0, 1], "exactly 2 sparse dimensions"),
    (torch.ones(3, 2), torch.ones(3, 2, dtype=torch.int64).to_sparse(), [0, 1], "floating"),
    (torch.ones(3, 2), torch.full((3, 2), math.nan).to_sparse(), [0, 1], "must be finite"),
    (torch.ones(3, 2), torch.ones(3, 2), [0, 2], r"values in \[-1, 2\).*from 0 to 2"),
    (torch.ones(3, 2), torch.ones(3, 2), [0], r"match must have shape \[n_latents\] = \(2,\)"),
    (torch.ones(3, 2), torch.ones(3, 2), [0.0, 1.0], "match must be an integer tensor"),
]


@pytest.mark.parametrize(("latents", "features", "match", "message"), DETECTION_ERRORS)
def test_detection_counts_reject_bad_input(
    latents: torch.Tensor, features: torch.Tensor, match: list[float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        metrics.detection_counts(latents, features, torch.tensor(match))


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
def test_detection_counts_reject_other_sparse_layouts() -> None:
    features = torch.ones(3, 2).to_sparse_csr()
    with pytest.raises(ValueError, match=r"layout torch\.sparse_csr; use features\.to_sparse_coo"):
        metrics.detection_counts(torch.ones(3, 2), features, torch.tensor([0, 1]))


def test_detection_counts_reject_a_match_that_is_not_a_tensor() -> None:
    with pytest.raises(TypeError, match=r"match must be a torch\.Tensor.*got list"):
        metrics.detection_counts(torch.ones(3, 2), torch.ones(3, 2), [0, 1])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("counts", "error", "message"),
    [
        ([[1, 2]], TypeError, r"counts must be a torch\.Tensor"),
        (torch.ones(3, 2), ValueError, r"shape \[4, n_latents\].*got shape \(3, 2\)"),
        (torch.ones(4, 2, dtype=torch.bool), ValueError, "integer or float counts"),
        (-torch.ones(4, 2), ValueError, "finite and non-negative"),
        (torch.full((4, 2), math.inf), ValueError, "finite and non-negative"),
    ],
)
def test_detection_scores_reject_bad_counts(counts: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        metrics.detection_scores(counts)  # type: ignore[arg-type]


def absorption_args(**change: object) -> dict[str, object]:
    latents, features, W_dec, true, parent = edge_case(0.0, 0.5)
    args: dict[str, object] = {
        "latents": latents,
        "features": features,
        "W_dec": W_dec,
        "true": true,
        "parent": parent,
    }
    return {**args, **change}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"features": torch.ones(2, 3)}, "one row per sample"),
        ({"W_dec": torch.ones(2, 3)}, r"one row per latent.*\[n_latents, d\]"),
        ({"true": torch.ones(4, 3)}, "one row per feature"),
        ({"true": torch.ones(3, 2)}, "one space"),
        ({"latents": torch.ones(1, 0), "W_dec": torch.ones(0, 3)}, "at least one latent"),
        ({"W_dec": torch.ones(3, 3, 1)}, r"W_dec must have shape \[n_latents, d\]"),
        ({"parent": torch.tensor([-1, 1, -1])}, r"own parent, got parent\[1\] = 1"),
        ({"parent": torch.tensor([-1, 3, -1])}, r"parent must hold values in \[-1, 3\)"),
        ({"parent": torch.tensor([-1, 0])}, r"parent must have shape \[n_features\]"),
        ({"true": torch.tensor([[0.0, 0, 0], [0, 1, 0], [0, 0, 1]])}, r"true\[0\] is a zero row"),
        ({"threshold": -0.1}, r"threshold must be a finite float >= 0, got -0\.1"),
        ({"threshold": math.nan}, "threshold must be a finite float >= 0, got nan"),
        ({"threshold": True}, "threshold must be a finite float >= 0, got True"),
        ({"latents": torch.ones(1, 3).to_sparse()}, "latents must be a dense tensor"),
        ({"features": torch.ones(1, 3, dtype=torch.int64)}, "features must be a floating"),
    ],
)
def test_absorption_rejects_bad_input(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        metrics.absorption(**absorption_args(**change))  # type: ignore[arg-type]


def test_absorption_fields_must_agree() -> None:
    with pytest.raises(ValueError, match=r"shape \[n_parents\]"):
        metrics.Absorption(
            torch.tensor([0, 1]),
            torch.tensor([0]),
            torch.tensor([1]),
            torch.tensor([0]),
            torch.tensor([0.0]),
            0.4,
        )
