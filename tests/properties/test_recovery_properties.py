"""Property tests of the ground-truth recovery metrics (MMCS and MCC) against closed forms and an
independent brute-force matching."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from superposition import metrics

MMCS = metrics.mean_max_cosine_similarity
MCC = metrics.mean_correlation_coefficient


@st.composite
def directions(draw: st.DrawFn, max_n: int = 6, max_d: int = 5) -> torch.Tensor:
    """A float64 ``[n, d]`` set of Gaussian directions (rows), never zero."""
    n = draw(st.integers(1, max_n))
    d = draw(st.integers(1, max_d))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    return torch.randn(n, d, generator=g, dtype=torch.float64) + 1e-3


@st.composite
def pairs(draw: st.DrawFn, max_n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """``(true [n, d], learned [m, d])``: two Gaussian direction sets in one space."""
    n, m, d = draw(st.integers(1, max_n)), draw(st.integers(1, max_n)), draw(st.integers(1, 5))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    true = torch.randn(n, d, generator=g, dtype=torch.float64) + 1e-3
    return true, torch.randn(m, d, generator=g, dtype=torch.float64) + 1e-3


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def brute_force_mcc(true: torch.Tensor, learned: torch.Tensor) -> float:
    """Best one-to-one matching by trying every injection of the smaller set into the larger."""
    t = true / true.norm(dim=1, keepdim=True)
    lrn = learned / learned.norm(dim=1, keepdim=True)
    cos = (t @ lrn.T).abs().tolist()
    n, m = len(cos), len(cos[0])
    if n <= m:
        best = max(
            sum(cos[i][j] for i, j in enumerate(p)) for p in itertools.permutations(range(m), n)
        )
    else:
        best = max(
            sum(cos[i][j] for j, i in enumerate(p)) for p in itertools.permutations(range(n), m)
        )
    return best / n


@given(directions(), st.integers(0, 2**31 - 1))
def test_identical_sets_score_one(true: torch.Tensor, seed: int) -> None:
    scale = torch.rand(true.shape[0], 1, generator=seeded(seed), dtype=torch.float64) + 0.1
    assert MMCS(true, true * scale) == pytest.approx(1.0, abs=1e-12)
    assert MCC(true, true * scale) == pytest.approx(1.0, abs=1e-12)


@given(pairs(), st.integers(0, 2**31 - 1))
def test_permutation_and_sign_invariance(
    pair: tuple[torch.Tensor, torch.Tensor], seed: int
) -> None:
    true, learned = pair
    g = seeded(seed)
    perm = torch.randperm(learned.shape[0], generator=g)
    signs = torch.randint(0, 2, (learned.shape[0], 1), generator=g).double() * 2 - 1
    tperm = torch.randperm(true.shape[0], generator=g)
    for f in (MMCS, MCC):
        base = f(true, learned)
        assert f(true, learned[perm] * signs) == pytest.approx(base, abs=1e-12)
        assert f(true[tperm], learned) == pytest.approx(base, abs=1e-12)


@given(st.integers(1, 8), st.integers(0, 8), st.integers(0, 2**31 - 1))
def test_orthogonal_sets_score_zero(n: int, extra: int, seed: int) -> None:
    # Columns of one orthogonal matrix, split between the two sets: every cross cosine is 0.
    d = n + max(extra, 1)
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=seeded(seed), dtype=torch.float64))
    true, learned = Q.T[:n], Q.T[n:]
    assert MMCS(true, learned) == pytest.approx(0.0, abs=1e-12)
    assert MCC(true, learned) == pytest.approx(0.0, abs=1e-12)


@given(pairs())
def test_mcc_at_most_mmcs_and_both_in_unit_interval(
    pair: tuple[torch.Tensor, torch.Tensor],
) -> None:
    true, learned = pair
    mcc, mmcs = MCC(true, learned), MMCS(true, learned)
    assert 0.0 <= mcc <= mmcs + 1e-12
    assert mmcs <= 1.0 + 1e-12


@given(pairs(max_n=5))
def test_mcc_equals_brute_force_matching(pair: tuple[torch.Tensor, torch.Tensor]) -> None:
    true, learned = pair
    assert MCC(true, learned) == pytest.approx(brute_force_mcc(true, learned), abs=1e-12)


@given(pairs())
def test_mmcs_is_the_mean_of_row_maxima(pair: tuple[torch.Tensor, torch.Tensor]) -> None:
    true, learned = pair
    expected = sum(
        max(abs(float(t @ w) / float(t.norm() * w.norm())) for w in learned) for t in true
    ) / len(true)
    assert MMCS(true, learned) == pytest.approx(expected, abs=1e-12)


def test_zero_rows_count_as_unmatched() -> None:
    true = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    learned = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    assert MMCS(true, learned) == 0.5
    assert MCC(true, learned) == 0.5


@pytest.mark.parametrize(
    ("true", "learned", "error", "match"),
    [
        ([[1.0, 0.0]], torch.eye(2), TypeError, r"true must be a torch\.Tensor"),
        (torch.eye(2), torch.ones(2, 2, 1), ValueError, r"learned must have shape \[n, d\]"),
        (torch.eye(2), torch.eye(3), ValueError, r"same space .*\(d=2 vs d=3\)"),
        (torch.eye(2), torch.eye(2, dtype=torch.int64), ValueError, "floating-point"),
        (torch.tensor([[float("nan"), 0.0]]), torch.eye(2), ValueError, "finite"),
        (torch.empty(0, 2), torch.eye(2), ValueError, "at least one direction"),
    ],
)
def test_bad_input_is_rejected(true: object, learned: object, error: type, match: str) -> None:
    for f in (MMCS, MCC):
        with pytest.raises(error, match=match):
            f(true, learned)  # type: ignore[arg-type]


@given(pairs())
def test_matching_is_one_to_one_and_its_diagonal_gives_mcc(
    pair: tuple[torch.Tensor, torch.Tensor],
) -> None:
    true, learned = pair
    match = metrics.match_directions(true, learned)
    hit = match[match >= 0]
    assert len(set(hit.tolist())) == len(hit) == min(true.shape[0], learned.shape[0])
    cos = metrics.matched_cosines(true, learned)
    assert cos.shape == (true.shape[0], learned.shape[0])
    n = min(cos.shape)
    if learned.shape[0] >= true.shape[0]:
        assert float(cos.diagonal()[:n].mean()) == pytest.approx(MCC(true, learned), abs=1e-12)
    # the reordering is a permutation of the columns of the plain |cos| matrix
    t = true / true.norm(dim=1, keepdim=True)
    lrn = learned / learned.norm(dim=1, keepdim=True)
    plain = (t @ lrn.T).abs()
    torch.testing.assert_close(cos.sum(0).sort().values, plain.sum(0).sort().values)
