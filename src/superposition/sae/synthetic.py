"""Ground truth for dictionary learning: sparse features along known directions.

A sample is ``x = f @ directions`` where ``directions: [n_features, d]`` are fixed unit vectors
and ``f: [n_features]`` is sparse: feature ``i`` fires with probability ``p_i`` (independently,
or with correlated firing through a Gaussian copula) and then takes its magnitude. An SAE trained
on these samples should find ``directions`` among its decoder rows
(:func:`superposition.metrics.mean_correlation_coefficient`).

:class:`SyntheticMLP` is the ground truth of a transcoder: a sparse MLP whose latents are such
features, read along one set of directions and written along another, plus an optional linear
part (what a skip transcoder's ``W_skip`` should find).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

from superposition._checks import generator
from superposition._checks import positive_int as _positive_int

__all__ = ["SampleStream", "SyntheticFeatures", "SyntheticMLP", "per_feature"]


def per_feature(
    value: object, name: str, n: int, low: float, high: float = math.inf, *, low_ok: bool = False
) -> Tensor:
    """A finite float or ``[n]`` sequence/tensor in ``[low, high]`` (``low`` excluded unless
    ``low_ok``), as ``[n]`` float64; a clear ``ValueError`` otherwise."""
    try:
        t = torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(
            f"{name} must be a float or a sequence of {n} floats, got {value!r}"
        ) from err
    if t.ndim == 0:
        t = t.expand(n)
    if t.shape != (n,):
        raise ValueError(
            f"{name} must be a float or have one value per feature (shape ({n},)), "
            f"got shape {tuple(t.shape)}"
        )
    above = t >= low if low_ok else t > low
    if not bool((above & (t <= high) & t.isfinite()).all()):
        bracket = "[" if low_ok else "("
        raise ValueError(f"{name} must lie in {bracket}{low}, {high}], got {value!r}")
    return t.clone()


class SampleStream:
    """What a synthetic source gives :meth:`~superposition.SparseAutoencoder.fit`: a seeded
    default stream and endless batches of its training rows (:meth:`rows`)."""

    batch_size: int
    _stream_seed: int

    def generator(self) -> torch.Generator:
        """A fresh generator of this object's default sample stream (seeded from ``seed``)."""
        return torch.Generator().manual_seed(self._stream_seed)

    def rows(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` training rows."""
        raise NotImplementedError

    def batches(
        self, batch_size: int | None = None, generator: torch.Generator | None = None
    ) -> Iterator[Tensor]:
        """An endless stream of ``[batch_size, width]`` training rows (default: this object's
        stream)."""
        size = self.batch_size if batch_size is None else _positive_int(batch_size, "batch_size")
        g = self.generator() if generator is None else generator
        while True:
            yield self.rows(size, g)

    def __iter__(self) -> Iterator[Tensor]:
        return self.batches()


class SyntheticFeatures(SampleStream):
    """Sparse features along known unit directions: the ground truth an SAE should recover.

    Each sample ``x = Σ_i f_i directions_i``; feature ``i`` fires with probability
    ``firing_probability[i]`` and then equals ``magnitude[i]`` (else 0). With ``correlation``
    the firing events are correlated through a Gaussian copula: feature ``i`` fires when
    ``z_i < Φ⁻¹(p_i)`` for ``z ~ N(0, C)``, so each feature keeps its own probability.

    Args:
        n_features: number of true features.
        d: dimension of the space they live in.
        firing_probability: one probability for all features, or ``[n_features]`` of them
            (see :meth:`zipf` for a heavy-tailed profile as in SAELens's SynthSAEBench).
        magnitude: the value of a firing feature, one for all or ``[n_features]``.
        correlation: ``None`` (independent firing), a float ``ρ`` in ``[0, 1)`` (every pair
            equally correlated), or a ``[n_features, n_features]`` correlation matrix.
        seed: seed of the directions and of the default sample stream.
        batch_size: rows per batch when iterated.

    Examples:
        >>> truth = SyntheticFeatures(8, 4, firing_probability=0.25, seed=0)
        >>> truth.directions.shape, truth.directions.norm(dim=1).allclose(torch.ones(8))
        (torch.Size([8, 4]), True)
        >>> truth.sample(3, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([3, 4])
        >>> next(iter(SyntheticFeatures(8, 4, firing_probability=0.25, batch_size=5))).shape
        torch.Size([5, 4])
    """

    def __init__(
        self,
        n_features: int,
        d: int,
        *,
        firing_probability: float | Sequence[float] | Tensor,
        magnitude: float | Sequence[float] | Tensor = 1.0,
        correlation: float | Tensor | None = None,
        seed: int | None = None,
        batch_size: int = 4096,
    ) -> None:
        self.n_features = _positive_int(n_features, "n_features")
        self.d = _positive_int(d, "d")
        self.batch_size = _positive_int(batch_size, "batch_size")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an int or None, got {seed!r}")
        self.firing_probability = per_feature(
            firing_probability, "firing_probability", n_features, 0.0, 1.0
        ).float()
        self.magnitude = per_feature(magnitude, "magnitude", n_features, 0.0).float()
        self._chol: Tensor | None = None
        self._rho: float | None = None
        if correlation is not None:
            if isinstance(correlation, Tensor):
                C = correlation.to(torch.float64)
                if C.shape != (n_features, n_features) or not torch.allclose(C, C.T):
                    raise ValueError(
                        f"correlation must be a symmetric [{n_features}, {n_features}] matrix, "
                        f"got shape {tuple(C.shape)}"
                    )
                L, info = torch.linalg.cholesky_ex(C)
                if int(info) != 0 or not torch.allclose(
                    C.diagonal(), torch.ones(n_features, dtype=C.dtype)
                ):
                    raise ValueError(
                        "correlation must be a positive-definite correlation matrix (unit "
                        "diagonal); add a small multiple of the identity if it is singular"
                    )
                self._chol = L.float()
            elif (
                isinstance(correlation, (int, float))
                and not isinstance(correlation, bool)
                and 0 <= correlation < 1
            ):
                self._rho = float(correlation)
            else:
                raise ValueError(
                    f"correlation must be None, a float in [0, 1) or a correlation matrix, "
                    f"got {correlation!r}"
                )
        self.correlation = correlation
        self.seed = seed
        g = generator(seed)
        self._stream_seed = int(torch.randint(2**62, (), generator=g))
        dirs = torch.randn(n_features, d, generator=g, dtype=torch.float64)
        self.directions: Tensor = (dirs / dirs.norm(dim=1, keepdim=True)).float()
        self._threshold = torch.special.ndtri(self.firing_probability.double()).float()

    def __repr__(self) -> str:
        p = self.firing_probability
        prob = f"{float(p[0]):.4g}" if bool((p == p[0]).all()) else f"<{self.n_features} values>"
        args = f"{self.n_features}, {self.d}, firing_probability={prob}"
        if self.correlation is not None:
            args += (
                ", correlation=..."
                if isinstance(self.correlation, Tensor)
                else f", correlation={self.correlation}"
            )
        if self.seed is not None:
            args += f", seed={self.seed}"
        return f"{type(self).__name__}({args})"

    @staticmethod
    def zipf(n_features: int, mean: float, exponent: float = 1.0) -> Tensor:
        """Zipf-like firing probabilities ``p_i ∝ (i + 1)^-exponent`` with average ``mean``.

        Probabilities are capped at 1 (the excess is not redistributed), so the average is
        exactly ``mean`` unless the head would exceed 1.

        Examples:
            >>> p = SyntheticFeatures.zipf(4, mean=0.1)
            >>> round(float(p.mean()), 6), bool((p[:-1] >= p[1:]).all())
            (0.1, True)
        """
        _positive_int(n_features, "n_features")
        if not 0 < mean <= 1:
            raise ValueError(f"mean must be in (0, 1], got {mean!r}")
        if not exponent >= 0:
            raise ValueError(f"exponent must be non-negative, got {exponent!r}")
        w = torch.arange(1, n_features + 1, dtype=torch.float64).pow(-float(exponent))
        return (w * (mean * n_features / w.sum())).clamp_max(1.0).float()

    def features(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Feature activations ``f: [n, n_features]`` (sparse: most entries are 0).

        Examples:
            >>> truth = SyntheticFeatures(3, 2, firing_probability=1.0, magnitude=[1.0, 2.0, 3.0])
            >>> truth.features(2)
            tensor([[1., 2., 3.],
                    [1., 2., 3.]])
        """
        n = _positive_int(n, "n")
        if self._chol is None and self._rho is None:
            u = torch.rand(n, self.n_features, generator=generator)
            fires = u < self.firing_probability
        else:
            z = torch.randn(n, self.n_features, generator=generator)
            if self._chol is not None:
                z = z @ self._chol.T
            else:
                assert self._rho is not None
                shared = torch.randn(n, 1, generator=generator)
                z = math.sqrt(self._rho) * shared + math.sqrt(1 - self._rho) * z
            fires = z < self._threshold
        return fires * self.magnitude

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` samples ``x = f @ directions``, ``[n, d]``.

        Examples:
            >>> truth = SyntheticFeatures(4, 2, firing_probability=0.5, seed=0)
            >>> g = torch.Generator().manual_seed(1)
            >>> torch.equal(truth.sample(5, g), truth.sample(5, torch.Generator().manual_seed(1)))
            True
        """
        return _along(self.features(n, generator), self.directions)

    def rows(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` training rows: :meth:`sample`."""
        return self.sample(n, generator)


def _along(f: Tensor, directions: Tensor) -> Tensor:
    """``f @ directions`` for a sparse ``f``: adding the firing directions beats a dense
    ``[n, n_features]`` product."""
    rows, cols = f.nonzero(as_tuple=True)
    out = torch.zeros(f.shape[0], directions.shape[1])
    return out.index_add_(0, rows, directions[cols] * f[rows, cols][:, None])


class SyntheticMLP(SampleStream):
    """A sparse MLP with known latents: the ground truth a transcoder should recover.

    The latents ``f`` are the features of a :class:`SyntheticFeatures` (``inputs``), which
    also gives the input ``x = f @ input_directions`` (plus dense noise with ``noise``); the
    output is ``y = f @ output_directions + x @ skip_matrixᵀ``. A transcoder trained on pairs
    ``(x, y)`` should find ``input_directions`` among its encoder columns,
    ``output_directions`` among its decoder rows and, with ``skip=True``, ``skip_matrix`` as
    its ``W_skip``.

    Args:
        n_features: number of true latents.
        d_in: input width.
        d_out: output width.
        firing_probability, magnitude, correlation: as for :class:`SyntheticFeatures`.
        skip: size of the linear part: ``skip_matrix`` has i.i.d. ``N(0, skip² / d_in)``
            entries (so ``‖x skip_matrixᵀ‖ ≈ skip · ‖x‖``); 0 (default): none.
        orthogonal: draw the input directions orthonormal (needs ``n_features <= d_in``):
            each latent is then read exactly by one encoder direction, its own, which an
            encoder can recover (in superposition no linear read is exact).
        noise: a dense part of the input, ``x = f @ input_directions + noise · ε`` with
            ``ε ~ N(0, I / d_in)`` (``‖ε‖ ≈ 1``), which reaches the output through the linear
            part alone. It is what makes the linear part identifiable: without it ``x`` is
            made of the latents only, and a decoder row ``output_directions_i + input_directions_i
            skip_matrixᵀ`` with no linear part explains the data as well.
        seed: seed of the directions, the linear part and the default sample stream.
        batch_size: rows per batch when iterated.

    Examples:
        >>> mlp = SyntheticMLP(16, 8, 6, firing_probability=0.1, skip=0.5, seed=0)
        >>> x, y = mlp.sample(4)
        >>> x.shape, y.shape, mlp.width
        (torch.Size([4, 8]), torch.Size([4, 6]), 14)
    """

    def __init__(
        self,
        n_features: int,
        d_in: int,
        d_out: int,
        *,
        firing_probability: float | Sequence[float] | Tensor,
        magnitude: float | Sequence[float] | Tensor = 1.0,
        correlation: float | Tensor | None = None,
        skip: float = 0.0,
        noise: float = 0.0,
        orthogonal: bool = False,
        seed: int | None = None,
        batch_size: int = 4096,
    ) -> None:
        self.inputs = SyntheticFeatures(
            n_features,
            d_in,
            firing_probability=firing_probability,
            magnitude=magnitude,
            correlation=correlation,
            seed=seed,
            batch_size=batch_size,
        )
        self.d_out = _positive_int(d_out, "d_out")
        for name, value in (("skip", skip), ("noise", noise)):
            if not (
                isinstance(value, (int, float))
                and not isinstance(value, bool)
                and math.isfinite(value)
                and value >= 0
            ):
                raise ValueError(f"{name} must be a non-negative finite float, got {value!r}")
        self.skip, self.noise = float(skip), float(noise)
        if orthogonal:
            if n_features > d_in:
                raise ValueError(
                    f"orthogonal=True needs n_features <= d_in, got {n_features} features in "
                    f"d_in={d_in} dimensions"
                )
            Q, R = torch.linalg.qr(self.inputs.directions.double().T)
            self.inputs.directions = (Q * R.diagonal().sign()).T.float().contiguous()
        self.orthogonal = orthogonal
        self.n_features, self.d_in, self.seed = n_features, d_in, seed
        self.batch_size = self.inputs.batch_size
        g = generator(None if seed is None else seed + 1)
        out = torch.randn(n_features, d_out, generator=g, dtype=torch.float64)
        self.output_directions: Tensor = (out / out.norm(dim=1, keepdim=True)).float()
        linear = torch.randn(d_out, d_in, generator=g) * (self.skip / math.sqrt(d_in))
        self.skip_matrix: Tensor = linear

    def __repr__(self) -> str:
        seed = "" if self.seed is None else f", seed={self.seed}"
        sizes = f"{self.n_features}, {self.d_in}, {self.d_out}"
        return f"SyntheticMLP({sizes}, skip={self.skip}, noise={self.noise}{seed})"

    @property
    def input_directions(self) -> Tensor:
        """``[n_features, d_in]``: where each latent is read from."""
        return self.inputs.directions

    @property
    def width(self) -> int:
        """Width of a training row ``[x | y]``: ``d_in + d_out``."""
        return self.d_in + self.d_out

    def generator(self) -> torch.Generator:
        """A fresh generator of this object's default sample stream (seeded from ``seed``)."""
        return self.inputs.generator()

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``n`` pairs ``(x: [n, d_in], y: [n, d_out])``.

        Examples:
            >>> mlp = SyntheticMLP(4, 3, 2, firing_probability=1.0, seed=0)
            >>> x, y = mlp.sample(1)
            >>> torch.allclose(y, mlp.output_directions.sum(0, keepdim=True))  # no skip
            True
        """
        f = self.inputs.features(n, generator)
        x = _along(f, self.input_directions)
        if self.noise:
            eps = torch.randn(n, self.d_in, generator=generator)
            x.add_(eps, alpha=self.noise / math.sqrt(self.d_in))
        y = _along(f, self.output_directions)
        if self.skip:
            y.addmm_(x, self.skip_matrix.T)
        return x, y

    def rows(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` training rows ``[x | y]``, ``[n, d_in + d_out]``."""
        return torch.cat(self.sample(n, generator), 1)
