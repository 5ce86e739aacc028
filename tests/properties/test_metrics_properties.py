"""Property tests: every metric against closed forms and invariances that must hold for any W."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from hypothesis import assume, example, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from superposition import metrics

finite = st.floats(-3.0, 3.0, allow_nan=False, allow_infinity=False, width=64)


@st.composite
def weights(draw: st.DrawFn, min_hidden: int = 1, max_hidden: int = 6) -> torch.Tensor:
    """A float64 ``[instances, hidden, features]`` matrix with columns far from zero."""
    inst = draw(st.integers(1, 3))
    hidden = draw(st.integers(min_hidden, max_hidden))
    feats = draw(st.integers(1, 8))
    W = torch.from_numpy(draw(arrays(np.float64, (inst, hidden, feats), elements=finite)))
    # Keep every column away from zero: the zero column is a separate, defined case.
    norms = W.norm(dim=-2, keepdim=True)
    return torch.where(norms < 0.1, W + 0.5, W)


@st.composite
def orthonormal(draw: st.DrawFn, n: int) -> torch.Tensor:
    """A random ``[n, n]`` orthogonal matrix (QR of a Gaussian, sign-fixed)."""
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    Q, R = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    return Q * torch.sign(torch.diagonal(R))


def naive_per_feature(W: torch.Tensor, formula: Callable[..., torch.Tensor]) -> torch.Tensor:
    """``formula(i, W_i_hat, ||W_i||, w)`` for every non-zero column of every instance, as loops
    (0 for a zero column)."""
    *lead, _h, f = W.shape
    flat = W.reshape(-1, *W.shape[-2:])
    out = torch.zeros(flat.shape[0], f, dtype=W.dtype)
    for k, w in enumerate(flat):
        for i in range(f):
            n = w[:, i].norm()
            if n != 0:
                out[k, i] = formula(i, w[:, i] / n, n, w)
    return out.reshape(*lead, f)


def naive_interference(W: torch.Tensor) -> torch.Tensor:
    """The definition: sum_{j != i} (W_i/||W_i|| . W_j)^2."""
    f = W.shape[-1]
    return naive_per_feature(
        W, lambda i, wi, n, w: sum((wi @ w[:, j]) ** 2 for j in range(f) if j != i)
    )


def naive_dimensionality(W: torch.Tensor) -> torch.Tensor:
    """The definition: D_i = ||W_i||^2 / sum_j (W_i_hat . W_j)^2."""
    f = W.shape[-1]
    return naive_per_feature(
        W, lambda i, wi, n, w: n**2 / sum((wi @ w[:, j]) ** 2 for j in range(f))
    )


@given(weights())
def test_interference_and_dimensionality_match_the_definition(W: torch.Tensor) -> None:
    torch.testing.assert_close(metrics.interference(W), naive_interference(W))
    torch.testing.assert_close(metrics.feature_dimensionality(W), naive_dimensionality(W))
    torch.testing.assert_close(
        metrics.feature_norms(W), torch.sqrt((W**2).sum(-2)), rtol=1e-12, atol=1e-12
    )


@given(st.integers(1, 8), st.data())
def test_orthonormal_columns(n: int, data: st.DataObject) -> None:
    Q = data.draw(orthonormal(n))
    k = data.draw(st.integers(1, n))
    W = Q[:, :k]  # k orthonormal features in n dimensions
    ones = torch.ones(k, dtype=W.dtype)
    torch.testing.assert_close(metrics.feature_norms(W), ones)
    torch.testing.assert_close(metrics.interference(W), torch.zeros_like(ones), atol=1e-12, rtol=0)
    torch.testing.assert_close(metrics.feature_dimensionality(W), ones)
    torch.testing.assert_close(
        metrics.dimensions_per_feature(W), torch.tensor(n / k, dtype=W.dtype)
    )


@given(st.integers(1, 6), st.integers(1, 6), st.floats(0.1, 5.0), st.data())
def test_k_features_sharing_one_direction(
    k: int, n: int, length: float, data: st.DataObject
) -> None:
    u = data.draw(orthonormal(n))[:, 0]
    signs = torch.tensor(data.draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=k, max_size=k)))
    W = length * u[:, None] * signs.to(u.dtype)[None, :]  # k equal-norm features on one line
    D = metrics.feature_dimensionality(W)
    torch.testing.assert_close(D, torch.full((k,), 1 / k, dtype=W.dtype))
    # Each of the other k-1 features projects its full length onto feature i's direction.
    torch.testing.assert_close(
        metrics.interference(W), torch.full((k,), (k - 1) * length**2, dtype=W.dtype)
    )


def test_antipodal_pair_and_pentagon() -> None:
    pair = torch.tensor([[1.0, -1.0]], dtype=torch.float64)
    torch.testing.assert_close(metrics.feature_dimensionality(pair), torch.full((2,), 0.5).double())
    angles = torch.arange(5, dtype=torch.float64) * 2 * math.pi / 5
    pentagon = torch.stack([angles.cos(), angles.sin()])  # [2, 5], unit vectors 72° apart
    torch.testing.assert_close(
        metrics.feature_dimensionality(pentagon), torch.full((5,), 0.4, dtype=torch.float64)
    )
    torch.testing.assert_close(
        metrics.dimensions_per_feature(pentagon), torch.tensor(0.4, dtype=torch.float64)
    )


@given(weights(), st.data())
def test_invariant_to_rotating_the_hidden_space(W: torch.Tensor, data: st.DataObject) -> None:
    Q = data.draw(orthonormal(W.shape[-2]))
    QW = Q @ W
    torch.testing.assert_close(metrics.feature_norms(QW), metrics.feature_norms(W))
    torch.testing.assert_close(metrics.interference(QW), metrics.interference(W))
    torch.testing.assert_close(
        metrics.feature_dimensionality(QW), metrics.feature_dimensionality(W)
    )
    torch.testing.assert_close(
        metrics.dimensions_per_feature(QW), metrics.dimensions_per_feature(W)
    )


@given(weights(), st.data())
def test_equivariant_to_permuting_features(W: torch.Tensor, data: st.DataObject) -> None:
    f = W.shape[-1]
    perm = torch.tensor(data.draw(st.permutations(range(f))))
    Wp = W[..., perm]
    for fn in (metrics.feature_norms, metrics.interference, metrics.feature_dimensionality):
        torch.testing.assert_close(fn(Wp), fn(W)[..., perm])


@given(weights(), st.floats(0.1, 10.0), st.sampled_from([-1.0, 1.0]))
def test_scaling(W: torch.Tensor, c: float, sign: float) -> None:
    c = c * sign
    cW = c * W
    torch.testing.assert_close(metrics.feature_norms(cW), abs(c) * metrics.feature_norms(W))
    torch.testing.assert_close(metrics.interference(cW), c**2 * metrics.interference(W))
    torch.testing.assert_close(
        metrics.feature_dimensionality(cW), metrics.feature_dimensionality(W)
    )


@given(weights())
def test_dimensionality_bounds(W: torch.Tensor) -> None:
    D = metrics.feature_dimensionality(W)
    assert bool((D >= 0).all())
    assert bool((D <= 1 + 1e-9).all()), "a feature cannot get more than one dimension"
    assert bool((D.sum(-1) <= W.shape[-2] + 1e-9).all()), "sum_i D_i <= n_hidden"
    assert bool((metrics.interference(W) >= 0).all())


@given(weights())
def test_zero_column_is_defined_not_nan(W: torch.Tensor) -> None:
    W = W.clone()
    W[..., 0] = 0.0
    for fn in (metrics.interference, metrics.feature_dimensionality, metrics.feature_norms):
        out = fn(W)
        assert not bool(out.isnan().any())
        assert bool((out[..., 0] == 0).all())


# --------------------------------------------------------------------------- cosine


@st.composite
def activations(draw: st.DrawFn) -> torch.Tensor:
    tokens = draw(st.integers(2, 12))
    neurons = draw(st.integers(1, 7))
    return torch.from_numpy(draw(arrays(np.float64, (tokens, neurons), elements=finite)))


@given(activations(), st.booleans())
def test_cosine_similarity_is_a_correlation_matrix(X: torch.Tensor, center: bool) -> None:
    S = metrics.cosine_similarity(X, center=center)
    n = X.shape[1]
    assert S.shape == (n, n)
    torch.testing.assert_close(S, S.T)
    torch.testing.assert_close(torch.diagonal(S), torch.ones(n, dtype=X.dtype))
    assert bool((S.abs() <= 1).all())
    torch.testing.assert_close(metrics.cosine_distance(X, center=center), 1 - S)


@given(activations(), st.booleans())
def test_cosine_similarity_matches_pairwise_definition(X: torch.Tensor, center: bool) -> None:
    Y = X - X.mean(0) if center else X
    S = metrics.cosine_similarity(X, center=center)
    norms = Y.norm(dim=0)
    scale = float(norms.max())
    for i in range(X.shape[1]):
        for j in range(X.shape[1]):
            if i == j:
                continue
            if norms[i] <= 1e-6 * max(scale, 1.0) or norms[j] <= 1e-6 * max(scale, 1.0):
                continue  # a (near-)silent neuron: its own defined case below
            expected = float(Y[:, i] @ Y[:, j] / (norms[i] * norms[j]))
            assert math.isclose(float(S[i, j]), expected, rel_tol=1e-6, abs_tol=1e-6)


@given(activations())
def test_centred_cosine_is_pearson(X: torch.Tensor) -> None:
    X = X + torch.linspace(0, 1, X.shape[0], dtype=X.dtype)[:, None] * torch.arange(
        1, X.shape[1] + 1, dtype=X.dtype
    )  # make every column vary ...
    # ... which the shift can undo (X[:, j] = -t (j + 1) + c): np.corrcoef is then nan.
    assume(bool((X.std(0) > 1e-6 * X.abs().amax(0)).all()))
    expected = torch.from_numpy(np.atleast_2d(np.corrcoef(X.numpy(), rowvar=False)))
    torch.testing.assert_close(metrics.cosine_similarity(X, center=True), expected)


@given(activations(), st.floats(0.1, 10.0))
# Squares of 4.4e-155 sum below float64's smallest normal number: this neuron once read as
# silent, and its scaled twin not.
@example(X=torch.full((3, 2), 8.8998e-155, dtype=torch.float64), c=0.5)
def test_cosine_is_scale_invariant_per_neuron(X: torch.Tensor, c: float) -> None:
    top = float(X[:, 0].abs().max())
    # Scaling subnormals rounds them (5e-324 * 0.5 is 0): the neuron itself would change.
    assume(top == 0 or top * c > 2.0**-960)
    scaled = X.clone()
    scaled[:, 0] *= c
    torch.testing.assert_close(metrics.cosine_similarity(scaled), metrics.cosine_similarity(X))


@given(activations(), st.integers(-1000, 1000), st.booleans())
@example(
    X=torch.tensor([[1.0, 2.0], [3.0, -1.0], [0.5, 0.25]], dtype=torch.float64),
    k=-600,
    center=False,
)
@example(
    X=torch.tensor([[1.0, 2.0], [3.0, -1.0], [0.5, 0.25]], dtype=torch.float64), k=520, center=True
)
def test_cosine_is_invariant_to_any_representable_scale(
    X: torch.Tensor, k: int, center: bool
) -> None:
    """Scaling a neuron by 2^k, across float64's whole range, changes none of its cosines."""
    top = float(X[:, 0].abs().max())
    # Entries of the scaled neuron keep their 53 bits where its largest is above 2^-960.
    assume(top == 0 or top * 2.0**k > 2.0**-960)
    scaled = X.clone()
    scaled[:, 0] *= 2.0**k
    torch.testing.assert_close(
        metrics.cosine_similarity(scaled, center=center),
        metrics.cosine_similarity(X, center=center),
    )


def test_cosine_of_float32_neurons_deep_in_a_gelu_tail() -> None:
    """GELU(-10) is -7.6e-23: float32 squares of such activations underflow to zero, and the
    neuron must still point where it points (here: along its twin at scale 1)."""
    x = torch.tensor([-1.0, -2.0, -0.5, -3.0])
    X = torch.stack([x, x * 7.6e-23, -x], dim=1)
    expected = torch.tensor([[1.0, 1.0, -1.0], [1.0, 1.0, -1.0], [-1.0, -1.0, 1.0]])
    for center in (False, True):
        torch.testing.assert_close(metrics.cosine_similarity(X, center=center), expected)


# tol: the dtype's rounding of each value, relative to the spread (float32: 6e-8 of 1e-5).
@pytest.mark.parametrize(
    ("dtype", "magnitude", "spread", "tol"),
    [(torch.float32, 5e-17, 1e-5, 1e-3), (torch.float64, 5e-147, 1e-8, 1e-6)],
)
def test_centred_cosine_of_a_tiny_neuron_whose_spread_underflows(
    dtype: torch.dtype, magnitude: float, spread: float, tol: float
) -> None:
    """A neuron of tiny magnitude whose relative spread is far above round-off, but whose
    squared spread is subnormal: it varies (as its twin at scale 1 does), it is not constant."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(50, generator=g, dtype=torch.float64)
    twin = 1 + spread * z
    X = torch.stack([magnitude * twin, twin, torch.randn(50, generator=g, dtype=torch.float64)], 1)
    S = metrics.cosine_similarity(X.to(dtype), center=True)
    torch.testing.assert_close(S[0], S[1], atol=tol, rtol=0)
    assert float(S[0, 1]) == pytest.approx(1.0, abs=tol)


def test_silent_neuron_is_orthogonal_to_all() -> None:
    X = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 1.0]])
    S = metrics.cosine_similarity(X)
    assert S[1].tolist() == [0.0, 1.0, 0.0]
    # constant neuron under centring behaves like a silent one
    Sc = metrics.cosine_similarity(torch.tensor([[1.0, 5.0], [2.0, 5.0], [4.0, 5.0]]), center=True)
    assert Sc.tolist() == [[1.0, 0.0], [0.0, 1.0]]


@given(activations(), st.integers(1, 11))
def test_comoment_path_equals_direct_path(X: torch.Tensor, split: int) -> None:
    """Co-moments accumulated over two shards give the in-memory result (the streaming
    contract), centred and raw."""
    # The accumulators sum squares in X's own dtype (float64 here), so a column of entries
    # below ~1e-154 underflows there and counts as silent, as documented, while the in-memory
    # path scales each column first. (The probe sums float32 activations in float64: no
    # activation it sees is that small.) Keep every square far above underflow.
    tiny = 2.0**-480
    for col in (X, X - X.mean(0)):
        top = col.abs().amax(0)
        assume(bool(((top == 0) | (top > tiny)).all()))
    split = min(split, X.shape[0] - 1)
    a, b = X[:split], X[split:]
    (ma, _), (mb, _) = metrics.block_moments(a), metrics.block_moments(b)
    d = X.shape[1]
    ca = metrics.accumulate_comoment(torch.zeros(d, d, dtype=X.dtype), 0, ma[0], a, ma[0])
    cb = metrics.accumulate_comoment(torch.zeros(d, d, dtype=X.dtype), 0, mb[0], b, mb[0])
    comoment = metrics.merge_comoments(len(a), ma[0], ca, len(b), mb[0], cb)
    mean = metrics.merge_moments(len(a), ma, len(b), mb)[0]
    torch.testing.assert_close(
        metrics.cosine_similarity_from_comoment(comoment, mean, X.shape[0]),
        metrics.cosine_similarity(X, center=True),
        atol=1e-6,
        rtol=1e-6,
    )
    gram = comoment + X.shape[0] * torch.outer(mean, mean)
    torch.testing.assert_close(
        metrics.cosine_similarity_from_gram(gram),
        metrics.cosine_similarity(X),
        atol=1e-6,
        rtol=1e-6,
    )


# --------------------------------------------------------------------------- statistics


@given(activations(), st.floats(-1.0, 1.0))
@example(X=torch.tensor([[1.19e-07], [0.0]], dtype=torch.float64), threshold=0.0)
def test_statistics_match_numpy(X: torch.Tensor, threshold: float) -> None:
    s = metrics.neuron_statistics(X, threshold=threshold)
    x = X.numpy()
    np.testing.assert_allclose(s.mean.numpy(), x.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(s.variance.numpy(), x.var(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(s.frequency.numpy(), (x > threshold).mean(0), rtol=0, atol=1e-7)
    dev = x - x.mean(0)
    m2, m3, m4 = (dev**2).mean(0), (dev**3).mean(0), (dev**4).mean(0)
    varies = m2 > 1e-6 * np.maximum((x**2).mean(0), 1e-12)
    safe = np.where(varies, m2, 1)
    kurt = np.where(varies, m4 / safe**2 - 3, 0.0)
    skew = np.where(varies, m3 / safe**1.5, 0.0)
    np.testing.assert_allclose(s.kurtosis.numpy()[varies], kurt[varies], rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(s.skewness.numpy()[varies], skew[varies], rtol=1e-3, atol=1e-3)
    assert s.count == X.shape[0]


def test_kurtosis_closed_forms() -> None:
    g = torch.Generator().manual_seed(0)
    gauss = torch.randn(200_000, 1, generator=g, dtype=torch.float64)
    uniform = torch.rand(200_000, 1, generator=g, dtype=torch.float64)
    assert abs(float(metrics.activation_kurtosis(gauss))) < 0.05  # Gaussian: 0
    assert abs(float(metrics.activation_kurtosis(uniform)) + 1.2) < 0.02  # uniform: -6/5
    # Bernoulli(p): (1 - 6p(1-p)) / (p(1-p))
    p = 0.1
    bern = (torch.rand(200_000, 1, generator=g, dtype=torch.float64) < p).double()
    expected = (1 - 6 * p * (1 - p)) / (p * (1 - p))
    assert abs(float(metrics.activation_kurtosis(bern)) - expected) < 0.3
    # Bernoulli(p) skewness: (1 - 2p) / sqrt(p(1-p)); exponential: 2
    skew = metrics.neuron_statistics(bern).skewness
    assert abs(float(skew) - (1 - 2 * p) / math.sqrt(p * (1 - p))) < 0.05
    expo = -torch.log(torch.rand(200_000, 1, generator=g, dtype=torch.float64))
    assert abs(float(metrics.neuron_statistics(expo).skewness) - 2.0) < 0.1
