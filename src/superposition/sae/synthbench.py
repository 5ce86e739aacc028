"""SynthSAEBench's ground truth (Chanin & Garriga-Alonso 2026, ``sae_lens.synthetic``), drawn
at a cost that grows with the active features rather than with all of them.

A sample is ``x = f @ directions + bias`` with ``f: [n_features]`` sparse. How a batch of ``n``
samples is drawn:

1. **Factors.** With correlation, ``⌈n / samples_per_factor⌉`` factor vectors
   ``z ~ N(0, I_rank)`` are drawn; sample ``s`` uses factor ``s mod`` their number. Given
   its factor, feature ``i`` draws a firing with probability
   ``q_i(z) = Φ((F_i · z - t_i) / σ_i)`` independently of the others (the Gaussian copula
   of SAELens: ``F_i · z + σ_i η_i > t_i`` with ``σ_i² = 1 - |F_i|²`` and
   ``t_i = Φ⁻¹(1 - p_i)``), so over ``z`` each feature keeps its probability ``p_i``.
2. **Top-level features** (roots and features outside the hierarchy). A firing with
   probability ``q`` is "at least one point of a Poisson process of rate
   ``h = -log(1 - q)``" — exactly. So the points of every (sample, feature) pair are
   drawn at once: a Poisson count per factor group, each point's feature from the
   group's cumulative rates (one ``searchsorted``) and its sample uniformly in the group;
   duplicates are merged. The cost is the number of points (≈ the active features) plus
   ``groups × features`` rates, never a uniform per feature per sample.
3. **Magnitudes.** Each firing takes ``relu(mean_i + std_i ε)``; a zero is no firing (as
   in SAELens, whose hierarchy treats a zero value as inactive).
4. **Hierarchy, level by level.** Only the children of active parents draw: a child's
   draw, its magnitude, the uniform choice of one winner among siblings whose draws fired,
   and the scaling by ``parent value / parent mean``. A child of an inactive parent could
   never fire, so skipping its draw changes nothing in the distribution.
5. ``x`` is a sum of dictionary rows weighted by the values (``embedding_bag``), plus the
   bias.

Every step is exact for the model it states. The one departure from independent samples is
step 1: samples ``s`` and ``s + k·groups`` of one batch share their factor (each sample's
own distribution is exactly SAELens's; ``samples_per_factor=1`` makes samples independent,
at the cost of ``n × n_features`` rates per batch).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, overload

import torch
from torch import Tensor

from superposition._checks import generator
from superposition._checks import positive_int as _positive_int
from superposition.sae._hierarchy import Hierarchy, check_fits, expand, levels_of
from superposition.sae.synthetic import SampleStream, per_feature

__all__ = ["Hierarchy", "SynthBench"]

_Parts = list[tuple[Tensor, Tensor, Tensor]]  # (rows, features, values), rows sorted


def _number(value: object, name: str, *, positive: bool = False) -> float:
    """A finite float ``>= 0`` (``> 0`` with ``positive``), else a ValueError."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(float(value)) or float(value) < 0:  # type: ignore[arg-type]
        raise ValueError(f"{name} must be a non-negative finite float, got {value!r}")
    if positive and float(value) == 0:  # type: ignore[arg-type]
        raise ValueError(f"{name} must be positive, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def _orthogonalize(v: Tensor, steps: int, lr: float) -> Tensor:
    """Unit rows pushed apart as SAELens's ``orthogonalize_embeddings``: Adam on
    ``Σ_{i≠j} (v_i·v_j)² + n Σ_i (|v_i|² - 1)²``, then renormalised.

    The gradient is written in closed form, ``4 V (VᵀV) - 4|v_i|² v_i + 4n(|v_i|² - 1) v_i``,
    which costs two ``[n, d] × [d, d]`` products where the pairwise loss costs ``[n, n]``.
    """
    v = v / torch.linalg.vector_norm(v, dim=1, keepdim=True).clamp_min(1e-8)
    if steps:
        n = v.shape[0]
        p = v.clone().requires_grad_(True)
        opt = torch.optim.Adam([p], lr=lr)
        with torch.no_grad():
            for _ in range(steps):
                sq = p.square().sum(1, keepdim=True)
                p.grad = 4 * (p @ (p.T @ p)) + (4 * n * (sq - 1) - 4 * sq) * p
                opt.step()
        v = p.detach()
    out: Tensor = v / torch.linalg.vector_norm(v, dim=1, keepdim=True).clamp_min(1e-8)
    return out


class SynthBench(SampleStream):
    """SynthSAEBench's synthetic activations: features with Zipfian rates, a hierarchy,
    correlated firing and varied magnitudes, along near-orthogonal directions plus a bias.

    Args:
        n_features: number of true features.
        d: dimension of the activations.
        firing_probability: the wanted rate of each feature, one for all or
            ``[n_features]`` (:meth:`zipf` gives SynthSAEBench's profile). With a
            compensating hierarchy the children's per-draw probabilities are raised
            (``firing_probability`` attribute) and the resulting rates are
            ``marginal_probability``.
        hierarchy: a :class:`Hierarchy` over the first features, or None.
        correlation_rank: rank of the Gaussian copula's factors (0: independent firing).
        correlation_scale: entries of the loadings ``F: [n_features, rank]`` are
            ``N(0, scale²)`` (rows capped at ``|F_i|² = 0.99``, as SAELens).
        samples_per_factor: samples of a batch that share one draw of the factors (see the
            module docstring); 1 makes every sample independent but costs
            ``n × n_features`` per batch.
        magnitude_mean: mean value of a firing feature (positive), one or ``[n_features]``.
        magnitude_std: its standard deviation (values are ``relu(mean + std ε)``).
        bias_norm: norm of the bias added to every sample (a random direction).
        orthogonalize_steps: Adam steps that push the directions apart (0: random unit
            vectors); they run the first time :attr:`directions` is needed.
        orthogonalize_lr: their learning rate.
        seed: seed of every random choice of the model and of the default sample stream.
        batch_size: rows per batch when iterated.

    Examples:
        >>> bench = SynthBench(40, 8, firing_probability=0.1, hierarchy=Hierarchy(2, 3, 1),
        ...                    correlation_rank=2, magnitude_std=0.2, bias_norm=0.5, seed=0)
        >>> x, f = bench.sample(5, torch.Generator().manual_seed(0), return_features=True)
        >>> x.shape, f.shape, bench.parent[:6].tolist()
        (torch.Size([5, 8]), torch.Size([5, 40]), [-1, -1, 0, 0, 0, 1])
        >>> torch.allclose(x, f @ bench.directions + bench.bias, atol=1e-5)
        True
    """

    def __init__(
        self,
        n_features: int,
        d: int,
        *,
        firing_probability: float | Sequence[float] | Tensor,
        hierarchy: Hierarchy | None = None,
        correlation_rank: int = 0,
        correlation_scale: float = 0.1,
        samples_per_factor: int = 64,
        magnitude_mean: float | Sequence[float] | Tensor = 1.0,
        magnitude_std: float | Sequence[float] | Tensor = 0.0,
        bias_norm: float = 0.0,
        orthogonalize_steps: int = 0,
        orthogonalize_lr: float = 3e-4,
        seed: int | None = None,
        batch_size: int = 4096,
    ) -> None:
        n = self.n_features = _positive_int(n_features, "n_features")
        self.d = _positive_int(d, "d")
        self.batch_size = _positive_int(batch_size, "batch_size")
        self.samples_per_factor = _positive_int(samples_per_factor, "samples_per_factor")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an int or None, got {seed!r}")
        check_fits(hierarchy, n)
        base = per_feature(firing_probability, "firing_probability", n, 0.0, low_ok=False, high=1.0)
        mean = per_feature(magnitude_mean, "magnitude_mean", n, 0.0, low_ok=False)
        std = per_feature(magnitude_std, "magnitude_std", n, 0.0, low_ok=True)
        if isinstance(correlation_rank, bool) or not isinstance(correlation_rank, int):
            raise ValueError(f"correlation_rank must be an int >= 0, got {correlation_rank!r}")
        if correlation_rank < 0:
            raise ValueError(f"correlation_rank must be an int >= 0, got {correlation_rank!r}")
        self.correlation_scale = _number(correlation_scale, "correlation_scale")
        self.bias_norm = _number(bias_norm, "bias_norm")
        self.orthogonalize_lr = _number(orthogonalize_lr, "orthogonalize_lr", positive=True)
        if isinstance(orthogonalize_steps, bool) or not isinstance(orthogonalize_steps, int):
            raise ValueError(
                f"orthogonalize_steps must be an int >= 0, got {orthogonalize_steps!r}"
            )
        if orthogonalize_steps < 0:
            raise ValueError(
                f"orthogonalize_steps must be an int >= 0, got {orthogonalize_steps!r}"
            )
        self.orthogonalize_steps = orthogonalize_steps
        self.hierarchy, self.seed, self.correlation_rank = hierarchy, seed, correlation_rank

        g = generator(seed)
        self._stream_seed = int(torch.randint(2**62, (), generator=g))
        self._dictionary_seed = int(torch.randint(2**62, (), generator=g))
        b = torch.randn(self.d, generator=g, dtype=torch.float64)
        self.bias: Tensor = (b / b.norm() * self.bias_norm).float()
        self.correlation_factor: Tensor | None = None
        if correlation_rank and self.correlation_scale:
            f = torch.randn(n, correlation_rank, generator=g, dtype=torch.float64)
            f *= self.correlation_scale
            sq = f.square().sum(1, keepdim=True)
            f = torch.where(sq > 0.99, f * (0.99 / sq).sqrt(), f)
            self.correlation_factor = f.float()

        #: ``[n_features]`` rate wanted for each feature, as passed.
        self.base_probability: Tensor = base.float()
        raw = base if hierarchy is None else hierarchy.compensated(base)
        #: ``[n_features]`` probability of each feature's own draw (after compensation).
        self.firing_probability: Tensor = raw.float()
        #: ``[n_features]`` mean and std of a firing's magnitude.
        self.magnitude_mean, self.magnitude_std = mean.float(), std.float()
        positive = torch.where(std > 0, torch.special.ndtr(mean / std.clamp_min(1e-300)), 1.0)
        active = raw * positive
        #: ``[n_features]`` rate at which each feature is active (nonzero), exact without
        #: correlation; with it each draw keeps its rate but siblings' draws are correlated.
        self.marginal_probability: Tensor = (
            active if hierarchy is None else hierarchy.marginals(active)
        ).float()
        #: ``[n_features]`` parent of each feature, ``-1`` for roots and free features.
        self.parent: Tensor = (
            torch.full((n,), -1, dtype=torch.long) if hierarchy is None else hierarchy.parents(n)
        )
        top = levels_of(hierarchy, n) == 0
        self._always = (top & (active >= 1)).nonzero().flatten()
        self._top = (top & (active < 1)).nonzero().flatten()
        self._hazard = -torch.log1p(-active[self._top])  # [top], float64
        self._positive = positive.float()  # P(magnitude > 0): folded into the firing draws
        self._threshold = -torch.special.ndtri(raw.clamp_max(1.0)).float()  # -inf where p = 1
        self._sigma = torch.ones(n)
        if self.correlation_factor is not None:
            self._sigma = (1 - self.correlation_factor.double().square().sum(1)).sqrt().float()
        self._directions: Tensor | None = None

    def __repr__(self) -> str:
        p = self.base_probability
        prob = f"{float(p[0]):.4g}" if bool((p == p[0]).all()) else f"<{self.n_features} values>"
        args = f"{self.n_features}, {self.d}, firing_probability={prob}"
        if self.hierarchy is not None:
            args += f", hierarchy={self.hierarchy}"
        if self.correlation_factor is not None:
            args += f", correlation_rank={self.correlation_rank}"
            args += f", correlation_scale={self.correlation_scale}"
        if self.seed is not None:
            args += f", seed={self.seed}"
        return f"{type(self).__name__}({args})"

    @classmethod
    def synthsaebench_16k(
        cls,
        seed: int | None = 42,
        *,
        samples_per_factor: int = 64,
        batch_size: int = 4096,
        orthogonalize_steps: int = 100,
    ) -> SynthBench:
        """SynthSAEBench-16k: 16,384 features in 768 dimensions (SAELens's
        ``docs/synth_sae_bench.md``).

        Zipfian rates (exponent 0.5, from 0.4 to 5e-4); 128 trees of branching 4 and depth 3
        with exclusive, parent-scaled, compensated children; copula factors of rank 25 and
        scale 0.1; mean magnitudes linear from 5 to 4, their stds folded normal
        ``|N(0.5, 0.5²)|`` (drawn from ``seed + 1``, as SAELens); a bias of norm 0.5;
        directions orthogonalised by ``orthogonalize_steps`` (100) Adam steps at lr 3e-4.
        Its true L0 is about 34.

        Examples:
            >>> bench = SynthBench.synthsaebench_16k(seed=0)
            >>> bench.n_features, bench.d, bench.hierarchy.size
            (16384, 768, 10880)
        """
        n = 16_384
        std = 0.5 + 0.5 * torch.randn(n, generator=generator(None if seed is None else seed + 1))
        return cls(
            n,
            768,
            firing_probability=cls.zipf(n, exponent=0.5, max_prob=0.4, min_prob=5e-4),
            hierarchy=Hierarchy(roots=128, branching=4, depth=3),
            correlation_rank=25,
            correlation_scale=0.1,
            samples_per_factor=samples_per_factor,
            magnitude_mean=torch.linspace(5.0, 4.0, n),
            magnitude_std=std.abs(),
            bias_norm=0.5,
            orthogonalize_steps=orthogonalize_steps,
            orthogonalize_lr=3e-4,
            seed=seed,
            batch_size=batch_size,
        )

    @staticmethod
    def zipf(
        n_features: int, exponent: float = 1.0, max_prob: float = 0.3, min_prob: float = 0.01
    ) -> Tensor:
        """SAELens's Zipfian profile: ``(i + 1)^-exponent`` mapped linearly onto
        ``[min_prob, max_prob]``, decreasing (float32, as SAELens computes it).

        Examples:
            >>> [round(p, 4) for p in SynthBench.zipf(3, 1.0, max_prob=0.4, min_prob=0.1).tolist()]
            [0.4, 0.175, 0.1]
        """
        n = _positive_int(n_features, "n_features")
        if not _number(exponent, "exponent") > 0:
            raise ValueError(f"exponent must be positive, got {exponent!r}")
        if not 0 < min_prob < max_prob <= 1:
            raise ValueError(
                f"expected 0 < min_prob < max_prob <= 1, got min_prob={min_prob!r}, "
                f"max_prob={max_prob!r}"
            )
        if n == 1:
            return torch.tensor([float(max_prob)])
        w = torch.arange(1, n + 1, dtype=torch.float32) ** -float(exponent)
        return min_prob + (max_prob - min_prob) * (w - w.min()) / (w.max() - w.min())

    @property
    def directions(self) -> Tensor:
        """``[n_features, d]`` unit directions, orthogonalised on first use (the 16k preset's
        100 steps take a few tens of seconds on 2 CPU cores)."""
        if self._directions is None:
            g = torch.Generator().manual_seed(self._dictionary_seed)
            v = torch.randn(self.n_features, self.d, generator=g)
            self._directions = _orthogonalize(v, self.orthogonalize_steps, self.orthogonalize_lr)
        return self._directions

    # ------------------------------------------------------------------ sampling

    def _draw(self, n: int, g: torch.Generator | None) -> _Parts:
        """The active features of ``n`` samples, one part per hierarchy level."""
        groups, z = 1, None
        if self.correlation_factor is not None:
            groups = -(-n // self.samples_per_factor)
            z = torch.randn(groups, self.correlation_rank, generator=g)
        size = torch.full((groups,), n // groups, dtype=torch.float64)
        size[: n % groups] += 1
        keys = [self._always + self.n_features * torch.arange(n)[:, None]]
        chance: Tensor | None = None  # [groups, n_features]: P(draw fires | z)
        if z is not None:
            assert self.correlation_factor is not None
            # One product for every feature: the top level needs the rates of all of them,
            # and a table lookup is cheaper for the children than a dot product each.
            u = (self.correlation_factor @ z.T).T
            chance = torch.special.ndtr((u - self._threshold) / self._sigma)
        if self._top.numel():
            if chance is None:
                rate = self._hazard[None]
            else:
                # A rate of 17 is a firing probability of 1 - 4e-8, below float32's step.
                q = chance.index_select(1, self._top) * self._positive.index_select(0, self._top)
                rate = (-torch.log1p(-q)).clamp_max(17.0).double()
            rows, feats = _points(rate, size, g)
            keys.append(rows * self.n_features + self._top.index_select(0, feats))
        # torch sorts int32 keys some 100 times faster than int64 ones (measured: 1 ms
        # against 190 ms for 60k keys below 2**26).
        small = n * self.n_features < 2**31
        key = torch.cat([k.flatten() for k in keys]).to(torch.int32 if small else torch.int64)
        key = torch.unique(key).long()
        rows, feats = key // self.n_features, key % self.n_features
        parts = [(rows, feats, self._magnitudes(feats, g))]
        tree = self.hierarchy
        if tree is None:
            return parts

        def probability(r: Tensor, kids: Tensor) -> Tensor:
            if chance is None:
                p = torch.take(self.firing_probability, kids)
            else:
                p = torch.take(chance, (r % groups * self.n_features)[:, None] + kids)
            return p * torch.take(self._positive, kids)

        rows, feats, values = _where(feats < tree.roots, *parts[0])
        for level in range(1, tree.depth + 1):
            rows, feats, values = expand(
                tree,
                level,
                rows,
                feats,
                values,
                probability,
                lambda f: self._magnitudes(f, g),
                self.magnitude_mean,
                g,
            )
            parts.append((rows, feats, values))
        return parts

    def _magnitudes(self, feats: Tensor, g: torch.Generator | None) -> Tensor:
        """Magnitudes ``mean + std ε`` of firings known to be positive: redrawn until they
        are (the draws that were not are the firings folded out by ``_positive``)."""
        mean = torch.take(self.magnitude_mean, feats)
        std = torch.take(self.magnitude_std, feats)
        out = mean + std * torch.randn(feats.shape[0], generator=g)
        redo = (out <= 0).nonzero().squeeze(1)
        while redo.numel():
            again = mean.index_select(0, redo) + std.index_select(0, redo) * torch.randn(
                redo.shape[0], generator=g
            )
            out.index_copy_(0, redo, again)
            redo = redo.index_select(0, (again <= 0).nonzero().squeeze(1))
        return out

    def features(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Feature activations of ``n`` samples: a sparse COO tensor ``[n, n_features]``
        (coalesced; ``.to_dense()`` for a small ``n``).

        Examples:
            >>> bench = SynthBench(6, 3, firing_probability=1.0, magnitude_mean=2.0)
            >>> bench.features(2).to_dense()
            tensor([[2., 2., 2., 2., 2., 2.],
                    [2., 2., 2., 2., 2., 2.]])
        """
        n = _positive_int(n, "n")
        return _coo(self._draw(n, generator), n, self.n_features)

    @overload
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        *,
        return_features: Literal[False] = False,
    ) -> Tensor: ...

    @overload
    def sample(
        self, n: int, generator: torch.Generator | None = None, *, return_features: Literal[True]
    ) -> tuple[Tensor, Tensor]: ...

    def sample(
        self, n: int, generator: torch.Generator | None = None, *, return_features: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """``n`` samples ``x = f @ directions + bias``, ``[n, d]``; with
        ``return_features=True`` also ``f`` as :meth:`features` gives it.

        Examples:
            >>> bench = SynthBench(10, 4, firing_probability=0.3, seed=0)
            >>> g = lambda: torch.Generator().manual_seed(1)
            >>> torch.equal(bench.sample(5, g()), bench.sample(5, g()))
            True
        """
        n = _positive_int(n, "n")
        rows, feats, values = _by_row(self._draw(n, generator), n)
        # One bag of dictionary rows per sample: ``f @ directions`` at the cost of the
        # active features (a dense product would cost n_features per sample).
        offsets = torch.zeros(n, dtype=torch.long)
        offsets[1:] = torch.bincount(rows, minlength=n)[:-1].cumsum(0)
        x = torch.nn.functional.embedding_bag(
            feats, self.directions, offsets, mode="sum", per_sample_weights=values
        ).add_(self.bias)
        if return_features:
            return x, _coo([(rows, feats, values)], n, self.n_features)
        return x

    def rows(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` training rows: :meth:`sample`."""
        return self.sample(n, generator)


def _points(rate: Tensor, size: Tensor, g: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """Points of a Poisson process of rate ``rate[m, j]`` on every (sample, column ``j``)
    pair of group ``m`` (``size[m]`` samples: ``m, m + groups, ...``), as
    ``(rows, columns)`` with repeats. A pair with at least one point fires with
    probability ``1 - exp(-rate)``, independently of every other pair."""
    groups, width = rate.shape
    total = rate.sum(1)
    count = torch.poisson(size * total, generator=g).long()
    group = torch.repeat_interleave(torch.arange(groups), count)
    flat_rate = rate.flatten()
    cum = flat_rate.cumsum(0)
    start = torch.cat([cum.new_zeros(1), cum[width - 1 :: width][:-1]])
    target = torch.rand(group.shape[0], generator=g, dtype=torch.float64)
    target = target * total.index_select(0, group) + start.index_select(0, group)
    lo = group * width
    flat = torch.searchsorted(cum, target, right=True).clamp(min=lo, max=lo + width - 1)
    # Where the point falls inside its column's interval is uniform and independent of the
    # column: it picks the sample too, which saves a second uniform per point.
    within = (cum.index_select(0, flat) - target) / flat_rate.index_select(0, flat)
    n_in = size.index_select(0, group)
    local = torch.minimum((within * n_in).long(), n_in.long() - 1).clamp_min(0)
    return group + groups * local, flat - lo


def _where(mask: Tensor, *tensors: Tensor) -> tuple[Tensor, ...]:
    """The entries of each 1-D tensor where ``mask`` holds (``index_select`` is far faster
    than boolean indexing on the CPU)."""
    at = mask.nonzero().squeeze(1)
    return tuple(t.index_select(0, at) for t in tensors)


def _by_row(parts: _Parts, n: int) -> tuple[Tensor, Tensor, Tensor]:
    """The parts as one list sorted by row (stable, on int32 keys: see ``_draw``)."""
    rows = torch.cat([p[0] for p in parts])
    order = torch.sort(rows.to(torch.int32 if n < 2**31 else torch.int64), stable=True).indices
    return (
        rows.index_select(0, order),
        torch.cat([p[1] for p in parts]).index_select(0, order),
        torch.cat([p[2] for p in parts]).index_select(0, order),
    )


def _coo(parts: _Parts, n: int, n_features: int) -> Tensor:
    rows = torch.cat([p[0] for p in parts])
    feats = torch.cat([p[1] for p in parts])
    values = torch.cat([p[2] for p in parts]).float()
    return torch.sparse_coo_tensor(
        torch.stack([rows, feats]), values, (n, n_features), check_invariants=False
    ).coalesce()
