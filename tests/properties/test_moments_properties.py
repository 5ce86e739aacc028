"""Property tests: neuron moments and correlations against exact rational arithmetic.

The references here share no code with the library: every float64 value is converted exactly to
a :class:`fractions.Fraction`, so means, central moments, co-moments and Gram entries are exact,
and only the final division and square root are rounded. The data include neurons with a large
mean and a small spread, where moments computed from raw power sums (``sum x^k``) cancel to
noise.
"""

from __future__ import annotations

import math
import random
from fractions import Fraction

import numpy as np
import torch
from hypothesis import assume, example, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from superposition import metrics
from superposition.probe import StreamingStatistics

# The documented rule: a neuron is constant when its centred sum of squares sum (x - mean)^2 is
# at most (16 eps)^2 sum x^2 (its spread within 16 units of round-off of its magnitude) or below
# a floor where squares lose their precision (the dtype's smallest normal number; for skewness
# and kurtosis also sqrt of float64's, where the square of that sum underflows). Data within a
# factor _MARGIN^2 of either line are assumed away, so that the exact reference and the
# floating-point computation agree on which side a neuron is.
_CONSTANT_ULPS = 16
_MARGIN = 100


# --------------------------------------------------------------------------- exact references


def _fractions(X: torch.Tensor) -> list[list[Fraction]]:
    """Columns of ``X`` as exact fractions (float32 and float64 values are exact in float64)."""
    return [[Fraction(v) for v in col] for col in X.double().T.tolist()]


def _centred(col: list[Fraction]) -> tuple[Fraction, list[Fraction]]:
    mean = sum(col, Fraction(0)) / len(col)
    return mean, [x - mean for x in col]


def _sums_of_squares(col: list[Fraction]) -> tuple[Fraction, Fraction]:
    """``(sum (x - mean)^2, sum x^2)`` exactly."""
    _, dev = _centred(col)
    return sum((d * d for d in dev), Fraction(0)), sum((x * x for x in col), Fraction(0))


def _floor(dtype: torch.dtype, moments: bool) -> Fraction:
    tiny = torch.finfo(dtype).tiny
    return Fraction(max(tiny, torch.finfo(torch.float64).tiny ** 0.5) if moments else tiny)


def _is_constant(col: list[Fraction], dtype: torch.dtype, moments: bool, margin: int = 1) -> bool:
    centred, raw = _sums_of_squares(col)
    line = Fraction(_CONSTANT_ULPS * torch.finfo(dtype).eps) ** 2
    return centred <= _floor(dtype, moments) * margin**2 or centred <= line * raw * margin**2


def _clear_of_the_constant_line(X: torch.Tensor, dtype: torch.dtype) -> bool:
    """Every column exactly constant, or with a spread far above both constant lines, and
    every column zero or far above the floor of the raw (uncentred) cosine."""
    for col in _fractions(X):
        centred, raw = _sums_of_squares(col)
        if centred != 0 and _is_constant(col, dtype, moments=True, margin=_MARGIN):
            return False
        if raw != 0 and raw <= _floor(dtype, moments=False) * _MARGIN**2:
            return False
    return True


def exact_statistics(X: torch.Tensor, dtype: torch.dtype) -> dict[str, list[float]]:
    """Mean, population variance, skewness and excess kurtosis of each column, exactly, then
    rounded to ``dtype``."""
    out: dict[str, list[float]] = {"mean": [], "variance": [], "skewness": [], "kurtosis": []}
    for col in _fractions(X):
        n = len(col)
        mean, dev = _centred(col)
        m2 = sum((d**2 for d in dev), Fraction(0))
        m3 = sum((d**3 for d in dev), Fraction(0))
        m4 = sum((d**4 for d in dev), Fraction(0))
        out["mean"].append(float(mean))
        out["variance"].append(float(m2 / n))
        if _is_constant(col, dtype, moments=True):  # defined as 0
            out["skewness"].append(0.0)
            out["kurtosis"].append(0.0)
            continue
        skew_sq = n * m3 * m3 / m2**3
        out["skewness"].append(math.copysign(math.sqrt(float(skew_sq)), float(m3)))
        out["kurtosis"].append(float(n * m4 / (m2 * m2) - 3))
    return {k: torch.tensor(v, dtype=torch.float64).to(dtype).tolist() for k, v in out.items()}


def exact_cosine(X: torch.Tensor, center: bool, dtype: torch.dtype) -> np.ndarray:
    """Cosine similarity (Pearson if ``center``) between columns; a silent or constant column
    has 0 with the others and 1 with itself."""
    cols = _fractions(X)
    vecs = [_centred(c)[1] if center else c for c in cols]
    d = len(cols)

    def dot_(u: list[Fraction], v: list[Fraction]) -> Fraction:
        return sum((a * b for a, b in zip(u, v, strict=True)), Fraction(0))

    dot = [[dot_(vecs[i], vecs[j]) for j in range(d)] for i in range(d)]
    if center:
        alive = [not _is_constant(c, dtype, moments=False) for c in cols]
    else:
        alive = [dot[i][i] > _floor(dtype, moments=False) for i in range(d)]
    S = np.eye(d)
    for i in range(d):
        for j in range(d):
            if i != j and alive[i] and alive[j]:
                # The squared cosine is an exact fraction in [0, 1]: rounding it once keeps the
                # reference free of the underflow of float(dot_ii) * float(dot_jj) (1e-178 each
                # for entries near 1e-89).
                squared = dot[i][j] ** 2 / (dot[i][i] * dot[j][j])
                S[i, j] = math.copysign(math.sqrt(float(squared)), dot[i][j])
    return S


# --------------------------------------------------------------------------- data

_unit = st.floats(-1.0, 1.0, width=64).filter(lambda z: z == 0 or abs(z) > 1e-30)


@st.composite
def offset_activations(draw: st.DrawFn, max_rows: int = 30) -> torch.Tensor:
    """``[rows, neurons]`` float64: per neuron an offset (up to 1e6) plus a spread that can be
    a millionth of it, the regime where raw power sums cancel."""
    rows = draw(st.integers(2, max_rows))
    cols = draw(st.integers(1, 4))
    Z = draw(arrays(np.float64, (rows, cols), elements=_unit))
    offsets = draw(
        arrays(np.float64, (cols,), elements=st.one_of(st.just(0.0), st.floats(-1e6, 1e6)))
    )
    log_spread = draw(arrays(np.float64, (cols,), elements=st.floats(-6.0, 1.0)))
    spread = 10.0**log_spread * np.maximum(np.abs(offsets), 1e-3)
    return torch.from_numpy(offsets + spread * Z)


def _close(got: torch.Tensor, want: list[float] | np.ndarray, rtol: float, atol: float) -> None:
    torch.testing.assert_close(
        got.double(), torch.as_tensor(np.asarray(want), dtype=torch.float64), rtol=rtol, atol=atol
    )


def _check_statistics(
    s: metrics.NeuronStatistics, X: torch.Tensor, dtype: torch.dtype, rtol: float
) -> None:
    want = exact_statistics(X, dtype)
    scale = X.double().abs().amax(0)
    assert s.count == X.shape[0]
    for name in ("mean", "variance", "skewness", "kurtosis"):
        got = getattr(s, name)
        assert got.dtype == dtype, f"{name} came back as {got.dtype}, expected {dtype}"
    # The mean is good to round-off of the largest value; the rest to a relative tolerance.
    err = (s.mean.double() - torch.tensor(want["mean"], dtype=torch.float64)).abs()
    assert bool((err <= rtol * scale).all()), (s.mean, want["mean"])
    _close(s.variance, want["variance"], rtol=100 * rtol, atol=0.0)
    _close(s.skewness, want["skewness"], rtol=100 * rtol, atol=100 * rtol)
    _close(s.kurtosis, want["kurtosis"], rtol=100 * rtol, atol=100 * rtol)


# --------------------------------------------------------------------------- statistics


@given(offset_activations())
@example(torch.tensor([[1.19e-07], [0.0]], dtype=torch.float64))  # hypothesis found: -3, not -2
@example(100 + 0.01 * torch.tensor([[0.3], [-1.2], [0.8], [2.1], [-0.4]], dtype=torch.float64))
def test_statistics_match_exact_arithmetic(X: torch.Tensor) -> None:
    """float64 in, float64 out, equal to exact rational arithmetic, in memory and streamed."""
    assume(_clear_of_the_constant_line(X, torch.float64))
    _check_statistics(metrics.neuron_statistics(X), X, torch.float64, rtol=1e-9)
    _check_statistics(StreamingStatistics().update(X).finalise(), X, torch.float64, rtol=1e-9)


@given(offset_activations())
def test_float32_statistics_are_float32_and_exact_to_float32(X: torch.Tensor) -> None:
    X32 = X.float()
    assume(bool(torch.isfinite(X32).all()) and _clear_of_the_constant_line(X32, torch.float32))
    _check_statistics(metrics.neuron_statistics(X32), X32, torch.float32, rtol=1e-6)
    _check_statistics(StreamingStatistics().update(X32).finalise(), X32, torch.float32, rtol=1e-6)


def test_large_mean_small_spread_gaussian_and_uniform() -> None:
    """The issue's examples: a Gaussian at mean 100 with spread 0.01 has kurtosis ~0 (raw power
    sums gave -3), and at mean 5, spread 1e-3, float32, memory and stream agree."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(200_000, 1, generator=g, dtype=torch.float64)
    u = torch.rand(200_000, 1, generator=g, dtype=torch.float64)
    for offset, spread in [(0.0, 1.0), (100.0, 0.01), (1e6, 1e-3)]:
        gauss, uniform = offset + spread * z, offset + spread * u
        # Both paths against the unshifted sample: shifting and scaling leave these unchanged.
        for stats in (
            metrics.neuron_statistics,
            lambda x: StreamingStatistics().update(x).finalise(),
        ):
            assert abs(float(stats(gauss).kurtosis) - float(metrics.activation_kurtosis(z))) < 1e-4
            assert abs(float(stats(uniform).kurtosis) + 1.2) < 0.02
    x32 = (5 + 1e-3 * torch.randn(100_000, 3, generator=g)).float()
    mem, stream = metrics.neuron_statistics(x32), StreamingStatistics().update(x32).finalise()
    torch.testing.assert_close(stream.kurtosis, mem.kurtosis, atol=1e-5, rtol=0)
    assert bool((mem.kurtosis.abs() < 0.1).all()), mem.kurtosis


@given(st.floats(-1e6, 1e6), st.integers(1, 600), st.sampled_from([torch.float32, torch.float64]))
def test_constant_neuron_has_zero_moments(c: float, n: int, dtype: torch.dtype) -> None:
    X = torch.full((n, 2), c, dtype=dtype)
    X[:, 1] = torch.linspace(-1, 1, n, dtype=dtype) if n > 1 else 1.0
    for s in (metrics.neuron_statistics(X), StreamingStatistics().update(X).finalise()):
        assert float(s.skewness[0]) == 0.0
        assert float(s.kurtosis[0]) == 0.0
        assert float(s.variance[0]) <= (_CONSTANT_ULPS * torch.finfo(dtype).eps * c) ** 2
    for S in (metrics.cosine_similarity(X, center=True), StreamingStatistics().update(X).pearson()):
        assert S[0].tolist() == [1.0, 0.0], S


# --------------------------------------------------------------------------- correlations


@given(offset_activations(), st.booleans())
@example(
    torch.tensor([[100.0, 0.3, 1.0], [100.01, 0.1, 2.0], [99.98, -0.2, 0.5]], dtype=torch.float64),
    True,
)
@example(torch.full((2, 4), 8.213e-90, dtype=torch.float64), False)  # dot_ii * dot_jj underflows
def test_cosine_matches_exact_arithmetic(X: torch.Tensor, center: bool) -> None:
    """Pearson of a neuron with a large mean is as accurate as of one centred at 0, in memory
    and streamed (a raw Gram centred afterwards, X^T X - n mu mu^T, loses every digit)."""
    assume(_clear_of_the_constant_line(X, torch.float64))
    want = exact_cosine(X, center, torch.float64)
    mem = metrics.cosine_similarity(X, center=center)
    stream = StreamingStatistics().update(X).cosine_similarity(center=center)
    assert mem.dtype == stream.dtype == torch.float64
    _close(mem, want, rtol=0, atol=1e-8)
    _close(stream, want, rtol=0, atol=1e-8)


@given(offset_activations(), st.booleans())
def test_float32_cosine_streamed_is_float32_and_exact(X: torch.Tensor, center: bool) -> None:
    X32 = X.float()
    assume(bool(torch.isfinite(X32).all()) and _clear_of_the_constant_line(X32, torch.float32))
    stream = StreamingStatistics().update(X32).cosine_similarity(center=center)
    assert stream.dtype == torch.float32
    _close(stream, exact_cosine(X32, center, torch.float32), rtol=0, atol=1e-6)


# --------------------------------------------------------------------------- merging


@given(offset_activations(max_rows=40), st.data())
def test_merge_in_any_split_and_order_equals_one_pass(X: torch.Tensor, data: st.DataObject) -> None:
    """Shards cut anywhere, streamed in batches of any size and merged in any order give the
    one-pass accumulator and the in-memory result."""
    assume(_clear_of_the_constant_line(X, torch.float64))
    n = X.shape[0]
    cuts = sorted(data.draw(st.sets(st.integers(1, n - 1), max_size=min(5, n - 1))))
    shards = [X[a:b] for a, b in zip([0, *cuts], [*cuts, n], strict=True)]
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = random.Random(seed)
    rng.shuffle(shards)
    parts = []
    for shard in shards:
        acc = StreamingStatistics()
        start = 0
        while start < len(shard):  # batches of random sizes within a shard
            step = rng.randint(1, len(shard))
            acc.update(shard[start : start + step])
            start += step
        parts.append(acc)
    while len(parts) > 1:  # merge random pairs: a random tree, not a left fold
        i, j = sorted(rng.sample(range(len(parts)), 2))
        merged = parts[i].merge(parts.pop(j))
        parts[i] = merged
    merged = parts[0]
    one = StreamingStatistics().update(X)
    assert merged.count == one.count == n
    got, want, mem = merged.finalise(), one.finalise(), metrics.neuron_statistics(X)
    scale = float(X.abs().max())
    for name in ("mean", "variance", "frequency", "skewness", "kurtosis"):
        for other in (want, mem):
            atol = 1e-12 * scale if name == "mean" else 1e-7
            torch.testing.assert_close(
                getattr(got, name), getattr(other, name), rtol=1e-7, atol=atol
            )
    for center in (False, True):
        torch.testing.assert_close(
            merged.cosine_similarity(center=center),
            one.cosine_similarity(center=center),
            rtol=0,
            atol=1e-9,
        )
        torch.testing.assert_close(
            merged.cosine_similarity(center=center),
            metrics.cosine_similarity(X, center=center),
            rtol=0,
            atol=1e-9,
        )


@given(offset_activations(max_rows=12), st.data())
def test_moment_merges_equal_exact_arithmetic(X: torch.Tensor, data: st.DataObject) -> None:
    """Pébay's and Chan's updates, row by row in a random order, against exact moments."""
    assume(_clear_of_the_constant_line(X, torch.float64))
    order = data.draw(st.permutations(range(X.shape[0])))
    d = X.shape[1]
    count, moments = 0, torch.zeros(4, d, dtype=torch.float64)
    comoment = torch.zeros(d, d, dtype=torch.float64)
    for i in order:
        row = X[i : i + 1]
        m, dev = metrics.block_moments(row)
        assert bool((dev == 0).all())
        assert bool((m[1:] == 0).all())
        metrics.accumulate_comoment(comoment, count, moments[0], row, m[0])
        moments = metrics.merge_moments(count, moments, 1, m)
        count += 1
    stats = metrics.statistics_from_moments(count, moments, torch.zeros(d), dtype=torch.float64)
    _check_statistics(stats, X, torch.float64, rtol=1e-9)
    want = exact_cosine(X, True, torch.float64)
    _close(metrics.cosine_similarity_from_comoment(comoment, moments[0], count), want, 0, 1e-8)
