"""Property tests of the ground-truth judges of an SAE (best matches, uniqueness, detection
counts and scores, feature absorption) against their definitions written as Python loops, and
the invariances every input must keep."""

from __future__ import annotations

import math
from typing import NamedTuple

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from superposition import metrics
from superposition.sae.synthbench import Hierarchy, SynthBench


class Case(NamedTuple):
    """An SAE's activations and decoder beside the ground truth they are judged against."""

    latents: torch.Tensor  # [n, n_latents]
    features: torch.Tensor  # [n, n_features], dense
    W_dec: torch.Tensor  # [n_latents, d]
    true: torch.Tensor  # [n_features, d]
    parent: torch.Tensor  # [n_features]


@st.composite
def cases(draw: st.DrawFn, max_latents: int = 7) -> Case:
    """A random forest of features (each feature's parent has a lower index) in ``d >= 2``
    dimensions, firing at one of three rates and optionally only under their parent; latents
    of either sign (or ReLU), some always active; optionally a decoder row that copies a true
    row and a zero decoder row."""
    n, n_features = draw(st.integers(1, 30)), draw(st.integers(2, 8))
    n_latents, d = draw(st.integers(1, max_latents)), draw(st.integers(2, 5))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    parent = torch.tensor(
        [-1] + [int(torch.randint(-1, i, (), generator=g)) for i in range(1, n_features)]
    )
    true = torch.randn(n_features, d, generator=g, dtype=torch.float64)
    W_dec = torch.randn(n_latents, d, generator=g, dtype=torch.float64)
    if draw(st.booleans()):
        W_dec[0] = -1.5 * true[int(torch.randint(0, n_features, (), generator=g))]
    if n_latents > 1 and draw(st.booleans()):
        W_dec[-1] = 0
    on = torch.rand(n, n_features, generator=g) < draw(st.sampled_from([0.2, 0.5, 0.9]))
    if draw(st.booleans()):  # children fire only with their parent, as in SynthBench
        for i in range(n_features):
            if parent[i] >= 0:
                on[:, i] &= on[:, parent[i]]
    features = torch.where(on, torch.rand(n, n_features, generator=g, dtype=torch.float64), 0.0)
    on = torch.rand(n, n_latents, generator=g) < draw(st.sampled_from([0.2, 0.6, 1.0]))
    latents = torch.where(on, torch.randn(n, n_latents, generator=g, dtype=torch.float64), 0.0)
    if draw(st.booleans()):
        latents = latents.abs()
    return Case(latents, features, W_dec, true, parent)


thresholds = st.sampled_from([0.0, 0.1, 0.4, 0.9, 1.5])


def dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def loop_best_matches(true: torch.Tensor, learned: torch.Tensor) -> list[int]:
    """argmax_i |cos(true_i, learned_j)| per learned row (first on ties); -1 if all are 0."""
    out = []
    for w in learned.tolist():
        cos = [
            abs(dot(t, w)) / math.sqrt(dot(t, t) * dot(w, w)) if dot(t, t) * dot(w, w) else 0.0
            for t in true.tolist()
        ]
        best = max(range(len(cos)), key=cos.__getitem__)
        out.append(best if cos[best] > 0 else -1)
    return out


def loop_counts(latents: torch.Tensor, features: torch.Tensor, match: list[int]) -> list[list[int]]:
    """[tp, fp, fn, tn] per latent by loops over samples."""
    lat, feat = latents.tolist(), features.to_dense().tolist()
    counts = [[0] * len(match) for _ in range(4)]
    for s in range(len(lat)):
        for j, m in enumerate(match):
            fire, should = lat[s][j] != 0, m >= 0 and feat[s][m] > 0
            row = 0 if fire and should else 1 if fire else 2 if should else 3
            counts[row][j] += 1
    return counts


def loop_scores(counts: list[list[int]]) -> list[list[float]]:
    """[precision, recall, f1, accuracy] per latent, 0 where undefined."""
    out: list[list[float]] = [[], [], [], []]
    for tp, fp, fn, tn in zip(*counts, strict=True):
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        out[0].append(p)
        out[1].append(r)
        out[2].append(2 * p * r / (p + r) if p + r else 0.0)
        out[3].append((tp + tn) / (tp + fp + fn + tn) if tp + fp + fn + tn else 0.0)
    return out


def loop_absorption(case: Case, threshold: float) -> dict[int, tuple[int, int, int, float]]:
    """{parent: (main, opportunities, absorbed, fraction_sum)} straight from the definitions."""
    lat, feat = case.latents.tolist(), case.features.to_dense().tolist()
    W, T, par = case.W_dec.tolist(), case.true.tolist(), case.parent.tolist()
    out = {}
    for p in sorted({q for q in par if q >= 0}):
        tn = math.sqrt(dot(T[p], T[p]))
        cos = [abs(dot(w, T[p])) / (math.sqrt(dot(w, w)) * tn) if dot(w, w) else 0.0 for w in W]
        m = max(range(len(W)), key=cos.__getitem__)
        m = m if cos[m] > 0 else -1
        children = [c for c, q in enumerate(par) if q == p]
        opp = absorbed = 0
        fraction = 0.0
        for s in range(len(lat)):
            if not (feat[s][p] > 0 and any(feat[s][c] > 0 for c in children)):
                continue
            opp += 1
            proj = [lat[s][j] * dot(W[j], T[p]) / tn for j in range(len(W))]
            others = [proj[j] for j in range(len(W)) if j != m]
            silent = m < 0 or lat[s][m] == 0
            if silent and others and max(others) >= threshold * feat[s][p] * tn:
                absorbed += 1
            carried = sum(max(x, 0.0) for x in others)
            total = carried + (max(proj[m], 0.0) if m >= 0 else 0.0)
            fraction += carried / total if total > 0 else 0.0
        out[p] = (m, opp, absorbed, fraction)
    return out


def assert_absorption_is(result: metrics.Absorption, expected: dict[int, tuple]) -> None:
    rows = list(expected.values())
    assert result.parents.tolist() == list(expected)
    assert result.main.tolist() == [r[0] for r in rows]
    assert result.opportunities.tolist() == [r[1] for r in rows]
    assert result.absorbed.tolist() == [r[2] for r in rows]
    want = torch.tensor([r[3] for r in rows], dtype=torch.float64)
    torch.testing.assert_close(result.fraction_sum, want, rtol=1e-9, atol=1e-9)


# --------------------------------------------------------------------------- best matches


@given(cases(), st.booleans())
def test_best_matches_are_the_loops_argmax(case: Case, zero_row: bool) -> None:
    learned = case.W_dec.clone()
    if zero_row:
        learned[0] = 0
    got = metrics.best_matches(case.true, learned)
    assert got.tolist() == loop_best_matches(case.true, learned)


@given(cases(), st.integers(0, 2**31 - 1))
def test_best_matches_ignore_norms_signs_and_order(case: Case, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    true, learned = case.true, case.W_dec
    base = metrics.best_matches(true, learned)
    scale = (torch.rand(len(learned), 1, generator=g, dtype=torch.float64) + 0.1) * (
        torch.randint(0, 2, (len(learned), 1), generator=g) * 2 - 1
    )
    assert torch.equal(metrics.best_matches(true, learned * scale), base)
    perm = torch.randperm(len(true), generator=g)  # true row perm[k] moves to position k
    moved = metrics.best_matches(true[perm], learned)
    position = torch.argsort(perm)
    assert torch.equal(moved, torch.where(base >= 0, position[base.clamp_min(0)], -1))


@given(cases())
def test_uniqueness_bounds_and_copies(case: Case) -> None:
    true, learned = case.true, case.W_dec
    u = metrics.uniqueness(true, learned)
    assert 0.0 <= u <= min(1.0, len(true) / len(learned))
    # every learned row twice: the same distinct matches over twice the rows
    assert metrics.uniqueness(true, torch.cat([learned, learned])) == pytest.approx(u / 2)
    match = loop_best_matches(true, learned)
    assert u == pytest.approx(len({m for m in match if m >= 0}) / len(learned))


# --------------------------------------------------------------------------- detection


@given(cases(), st.integers(0, 2**31 - 1))
def test_detection_counts_are_the_loops_counts(case: Case, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    n, n_features = case.features.shape
    match = torch.randint(-1, n_features, (case.latents.shape[1],), generator=g)
    expected = loop_counts(case.latents, case.features, match.tolist())
    dense = metrics.detection_counts(case.latents, case.features, match)
    assert dense.tolist() == expected
    assert metrics.detection_counts(case.latents, case.features.to_sparse(), match).tolist() == (
        expected
    )
    assert (dense.sum(0) == n).all()
    # a latent's scale and sign do not change when it fires
    scale = torch.rand(case.latents.shape[1], generator=g, dtype=torch.float64) + 0.1
    flipped = case.latents * scale * -1
    assert torch.equal(metrics.detection_counts(flipped, case.features, match), dense)


@given(cases(), st.integers(0, 30))
def test_detection_counts_add_over_any_split(case: Case, cut: int) -> None:
    match = metrics.best_matches(case.true, case.W_dec)
    cut = min(cut, case.latents.shape[0])
    whole = metrics.detection_counts(case.latents, case.features, match)
    first = metrics.detection_counts(case.latents[:cut], case.features[:cut], match)
    second = metrics.detection_counts(case.latents[cut:], case.features[cut:].to_sparse(), match)
    assert torch.equal(first + second, whole)


@given(st.lists(st.tuples(*[st.integers(0, 6)] * 4), min_size=1, max_size=8))
def test_detection_scores_are_the_definitions(columns: list[tuple[int, int, int, int]]) -> None:
    counts = torch.tensor(columns).T
    scores = metrics.detection_scores(counts)
    expected = loop_scores(counts.tolist())
    got = (scores.precision, scores.recall, scores.f1, scores.accuracy)
    for value, want in zip(got, expected, strict=True):
        torch.testing.assert_close(value, torch.tensor(want, dtype=torch.float64))
        assert ((value >= 0) & (value <= 1)).all()
    low = torch.minimum(scores.precision, scores.recall)
    high = torch.maximum(scores.precision, scores.recall)
    assert ((low - 1e-12 <= scores.f1) & (scores.f1 <= high + 1e-12)).all()
    assert scores.mean_recall == pytest.approx(sum(expected[1]) / len(columns))


# --------------------------------------------------------------------------- absorption


@given(cases(), thresholds)
def test_absorption_is_the_loops_absorption(case: Case, threshold: float) -> None:
    expected = loop_absorption(case, threshold)
    for features in (case.features, case.features.to_sparse()):
        result = metrics.absorption(
            case.latents, features, case.W_dec, case.true, case.parent, threshold
        )
        assert_absorption_is(result, expected)


@given(cases(), thresholds, st.integers(0, 2**31 - 1))
def test_absorption_ignores_how_a_latent_splits_scale_with_its_decoder_row(
    case: Case, threshold: float, seed: int
) -> None:
    # z_j -> c_j z_j with W_dec_j -> W_dec_j / c_j (c_j > 0) is the same SAE
    g = torch.Generator().manual_seed(seed)
    c = torch.rand(case.latents.shape[1], generator=g, dtype=torch.float64) * 4 + 0.25
    args = (case.features, case.W_dec, case.true, case.parent, threshold)
    base = metrics.absorption(case.latents, *args)
    moved = metrics.absorption(case.latents * c, case.features, case.W_dec / c[:, None], *args[2:])
    for name in ("parents", "main", "opportunities", "absorbed"):
        assert torch.equal(getattr(moved, name), getattr(base, name))
    torch.testing.assert_close(moved.fraction_sum, base.fraction_sum)


@given(cases(), st.integers(0, 30))
def test_absorption_merges_over_any_split(case: Case, cut: int) -> None:
    cut = min(cut, case.latents.shape[0])
    rest = (case.W_dec, case.true, case.parent)
    whole = metrics.absorption(case.latents, case.features, *rest)
    first = metrics.absorption(case.latents[:cut], case.features[:cut], *rest)
    second = metrics.absorption(case.latents[cut:], case.features[cut:].to_sparse(), *rest)
    merged = first.merge(second)
    for name in ("parents", "main", "opportunities", "absorbed"):
        assert torch.equal(getattr(merged, name), getattr(whole, name))
    torch.testing.assert_close(merged.fraction_sum, whole.fraction_sum)
    assert 0.0 <= float(merged.fraction_sum.sum()) <= int(merged.opportunities.sum())


# --------------------------------------------------------------------------- on SynthBench


def synthbench_sae(seed: int) -> tuple[SynthBench, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A small SynthBench with a hierarchy, its sparse features, and a noisy SAE of it."""
    bench = SynthBench(40, 16, firing_probability=0.3, hierarchy=Hierarchy(3, 3, 2), seed=seed)
    x, features = bench.sample(200, torch.Generator().manual_seed(seed), return_features=True)
    noise = torch.randn(30, 16, generator=torch.Generator().manual_seed(seed + 1))
    W_dec = bench.directions[:30] + 0.2 * noise
    return bench, features, torch.relu(x @ W_dec.T - 0.3), W_dec


@pytest.mark.parametrize("seed", [0, 1])
def test_synthbench_sparse_features_give_the_loops_results(seed: int) -> None:
    bench, features, latents, W_dec = synthbench_sae(seed)
    assert features.layout == torch.sparse_coo
    match = metrics.best_matches(bench.directions, W_dec)
    assert match.tolist() == loop_best_matches(bench.directions.double(), W_dec.double())
    counts = metrics.detection_counts(latents, features, match)
    assert counts.tolist() == loop_counts(latents, features, match.tolist())
    result = metrics.absorption(latents, features, W_dec, bench.directions, bench.parent)
    assert int(result.opportunities.sum()) > 0
    case = Case(latents.double(), features, W_dec.double(), bench.directions.double(), bench.parent)
    expected = loop_absorption(case, 0.4)
    # float32 inputs: the counts are exact, the fractions agree to float32 rounding
    rows = list(expected.values())
    assert result.main.tolist() == [r[0] for r in rows]
    assert result.opportunities.tolist() == [r[1] for r in rows]
    assert result.absorbed.tolist() == [r[2] for r in rows]
    want = torch.tensor([r[3] for r in rows], dtype=torch.float64)
    torch.testing.assert_close(result.fraction_sum, want, rtol=1e-5, atol=1e-5)
