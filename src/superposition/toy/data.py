"""Synthetic sparse features: the input distribution of the toy models.

Each feature is 0 with probability ``S`` (the sparsity) and otherwise drawn uniformly from
``[0, 1)`` (or ``[-1, 1)`` for the "computation in superposition" model). A *model instance* is
one setting of sparsity and importance; a dataset holds several and samples them together, so a
whole sweep trains in one set of tensors.

Sampling uses one uniform draw per feature: with ``u ~ U[0, 1)``, ``x = max(u - S, 0) / p``
(``p = 1 - S``) is 0 exactly when ``u <= S`` (probability ``S``) and, conditioned on that not
happening, uniform on ``(0, 1)``. That halves the random numbers and the memory traffic of the
usual "values times Bernoulli mask" recipe, which matters because sampling is most of the cost
of a training step. ``u`` comes from 23 random bits: PyTorch's CPU generator costs about as
much per call for 64 bits as for 32, so one ``int64`` draw (63 random bits) feeds two features,
each taking 23 bits of one half as the mantissa of a float in ``[1, 2)`` (integer passes that
vectorize, unlike an int-to-float conversion), then a subtraction and a product apply the sparsity.
So ``P(x = 0)`` is ``S`` to within ``2**-23`` and active values are uniform on a grid of
``2**23 * p`` points (16 bits of resolution at ``p = 2**-7``, 13 at ``p = 10**-3``).

``ToyModel.fit`` on the CPU draws the same way but takes its bits from one numpy SFC64 stream
per instance (seeded by one draw of its generator), which writes 64 random bits in about 60%
of the time of PyTorch's generator and makes each instance's batches independent of the
others.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from superposition._checks import positive_int

__all__ = ["Distribution", "FiniteFeatureDataset", "SparseFeatureDataset"]

Distribution = Literal["uniform", "signed"]
_DISTRIBUTIONS = ("uniform", "signed")
_BELOW_ONE = 1.0 - 2.0**-24  # largest float32 below 1


def _as_groups(groups: Sequence[Sequence[int]] | None, name: str, n: int) -> list[list[int]]:
    """Validate feature groups: each has >= 2 distinct in-range indices."""
    if groups is None:
        return []
    out: list[list[int]] = []
    for g in groups:
        idx = [int(i) for i in g]
        if len(idx) < 2:
            raise ValueError(f"{name} must contain groups of at least 2 features, got {list(g)!r}")
        if len(set(idx)) != len(idx):
            raise ValueError(f"{name} has a group with a repeated feature: {idx!r}")
        bad = [i for i in idx if not 0 <= i < n]
        if bad:
            raise ValueError(
                f"{name} indexes feature {bad[0]!r}, outside range(0, {n}) "
                f"for n_features={n}: {idx!r}"
            )
        out.append(idx)
    return out


class SparseFeatureDataset:
    """Sparse, importance-weighted synthetic features for one or more model instances.

    Args:
        n_features: number of features ``n``.
        feature_probability: probability ``p = 1 - S`` that a feature is active; a float, or a
            sequence with one value per model instance. Exclusive with ``sparsity``.
        importance: a float ``r`` meaning ``I_i = r**i`` (1.0 gives uniform importance), a
            sequence of ``n_features`` importances, or a ``[n_instances, n_features]`` tensor.
        n_instances: number of instances; inferred from ``feature_probability`` or
            ``importance`` when omitted (a scalar everywhere gives 1).
        distribution: ``"uniform"`` (active values in ``[0, 1)``, the TMS default) or
            ``"signed"`` (active values in ``[-1, 1)``, for ``activation="abs"``).
        correlated_groups: groups of feature indices that are all active or all inactive
            together (each group is active with probability ``p``).
        anticorrelated_groups: groups of which at most one feature is active; each member keeps
            its marginal probability ``p``, so ``len(group) * p`` must be at most 1.
        sparsity: the paper's parameter ``S = 1 - p``; exclusive with ``feature_probability``.
        seed: seed of the generator used by :meth:`sample` (and by ``ToyModel.fit``) when no
            generator is passed.

    Examples:
        >>> data = SparseFeatureDataset(5, feature_probability=[1.0, 0.1], importance=0.9)
        >>> data.n_instances, data.importance.shape
        (2, torch.Size([2, 5]))
        >>> data.sample(4, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([4, 2, 5])
        >>> SparseFeatureDataset(3, sparsity=0.9)
        SparseFeatureDataset(n_features=3, sparsity=0.9)
    """

    def __init__(
        self,
        n_features: int,
        feature_probability: float | Sequence[float] | Tensor | None = None,
        importance: float | Sequence[float] | Tensor = 1.0,
        *,
        n_instances: int | None = None,
        distribution: Distribution = "uniform",
        correlated_groups: Sequence[Sequence[int]] | None = None,
        anticorrelated_groups: Sequence[Sequence[int]] | None = None,
        sparsity: float | Sequence[float] | Tensor | None = None,
        seed: int | None = None,
    ) -> None:
        self._args: dict[str, object] = {"n_features": n_features}
        for key, val, default in (
            ("feature_probability", feature_probability, None),
            ("sparsity", sparsity, None),
            ("importance", importance, 1.0),
            ("n_instances", n_instances, None),
            ("distribution", distribution, "uniform"),
            ("correlated_groups", correlated_groups, None),
            ("anticorrelated_groups", anticorrelated_groups, None),
            ("seed", seed, None),
        ):
            if val is not default:
                self._args[key] = val

        positive_int(n_features, "n_features")
        if n_instances is not None and (
            isinstance(n_instances, bool) or not isinstance(n_instances, int) or n_instances < 1
        ):
            raise ValueError(f"n_instances must be a positive int or None, got {n_instances!r}")
        if distribution not in _DISTRIBUTIONS:
            raise ValueError(f"distribution must be one of {_DISTRIBUTIONS}, got {distribution!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an int or None, got {seed!r}")

        if (feature_probability is None) == (sparsity is None):
            raise ValueError(
                "pass exactly one of feature_probability and sparsity (= 1 - feature_probability), "
                f"got feature_probability={feature_probability!r}, sparsity={sparsity!r}"
            )
        if sparsity is not None:
            s = torch.as_tensor(sparsity, dtype=torch.float64).flatten()
            if not bool(((s >= 0) & (s < 1)).all()):
                raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")
            prob = 1 - s
        else:
            prob = torch.as_tensor(feature_probability, dtype=torch.float64).flatten()
            if not bool(((prob > 0) & (prob <= 1)).all()):
                raise ValueError(
                    f"feature_probability must be in (0, 1], got {feature_probability!r}"
                )
        if prob.numel() == 0:
            raise ValueError("feature_probability must not be empty")

        if isinstance(importance, (int, float)) and not isinstance(importance, bool):
            r = float(importance)
            if not r > 0:
                raise ValueError(f"importance must be positive (I_i = r**i), got {importance!r}")
            imp = (r ** torch.arange(n_features, dtype=torch.float64))[None]
        else:
            imp = torch.as_tensor(importance, dtype=torch.float64)
            if imp.ndim == 1:
                imp = imp[None]
            if imp.ndim != 2 or imp.shape[-1] != n_features:
                raise ValueError(
                    f"importance must be a float, a sequence of n_features={n_features} values or "
                    f"a [n_instances, {n_features}] tensor, got shape {tuple(imp.shape)}"
                )
            if not bool((imp >= 0).all() & torch.isfinite(imp).all()):
                raise ValueError(f"importance must be finite and non-negative, got {importance!r}")

        sizes = {int(prob.numel()), int(imp.shape[0])} - {1}
        if n_instances is not None:
            sizes.add(n_instances)
        if len(sizes) > 1:
            raise ValueError(
                f"n_instances disagree: feature_probability has {prob.numel()}, importance has "
                f"{imp.shape[0]}, n_instances={n_instances!r}; give each 1 or the same number"
            )
        inst = sizes.pop() if sizes else 1

        self.n_features = n_features
        self.n_instances = inst
        self.distribution: Distribution = distribution
        self.seed = seed
        self.feature_probability: Tensor = prob.expand(inst).float().contiguous()
        """``[n_instances]`` probability that a feature is active."""
        self.importance: Tensor = imp.expand(inst, n_features).float().contiguous()
        """``[n_instances, n_features]`` importance of each feature."""

        self.correlated_groups = _as_groups(correlated_groups, "correlated_groups", n_features)
        self.anticorrelated_groups = _as_groups(
            anticorrelated_groups, "anticorrelated_groups", n_features
        )
        seen: set[int] = set()
        for g in self.correlated_groups + self.anticorrelated_groups:
            overlap = seen.intersection(g)
            if overlap:
                raise ValueError(
                    f"feature groups must not overlap; feature {min(overlap)} is in two groups "
                    f"(correlated_groups={correlated_groups!r}, "
                    f"anticorrelated_groups={anticorrelated_groups!r})"
                )
            seen.update(g)
        for g in self.anticorrelated_groups:
            worst = float(self.feature_probability.max()) * len(g)
            if worst > 1 + 1e-6:
                raise ValueError(
                    f"anticorrelated_groups: a group of {len(g)} features with "
                    f"feature_probability={float(self.feature_probability.max())} would need "
                    f"probability {worst:.3g} > 1 that one is active; use "
                    f"feature_probability <= {1 / len(g):.3g}"
                )
        self._grouped = sorted(seen)

    @property
    def sparsity(self) -> Tensor:
        """``[n_instances]`` probability ``S = 1 - p`` that a feature is zero."""
        return 1 - self.feature_probability

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self._args.items())
        return f"{type(self).__name__}({inner})"

    def generator(self) -> torch.Generator:
        """A fresh CPU generator seeded with ``seed`` (or from entropy when ``seed`` is None).

        Examples:
            >>> g = SparseFeatureDataset(2, 0.5, seed=1).generator()
            >>> g.initial_seed()
            1
        """
        g = torch.Generator()
        if self.seed is None:
            g.seed()
        else:
            g.manual_seed(self.seed)
        return g

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw a batch of feature vectors.

        Args:
            batch_size: number of samples.
            generator: source of randomness; defaults to :meth:`generator` (so a seeded dataset
                returns the same batch each call).

        Returns:
            ``[batch_size, n_instances, n_features]`` float32 tensor.

        Examples:
            >>> data = SparseFeatureDataset(3, feature_probability=1.0, seed=0)
            >>> x = data.sample(1000)
            >>> bool((x >= 0).all() and (x < 1).all())
            True
        """
        positive_int(batch_size, "batch_size")
        g = self.generator() if generator is None else generator
        out = torch.empty(self.n_instances, batch_size, self.n_features, device=g.device)
        self.fill_(out, g)
        return out.transpose(0, 1).contiguous()

    def fill_(
        self, out: Tensor, generator: torch.Generator, *, bits: Tensor | None = None
    ) -> Tensor:
        """Fill ``out`` (``[n_instances, batch, n_features]``, instance-major) with a fresh batch.

        The allocation-free path used by the training loop. Independent features are filled in
        ``out``'s memory order, so ``out`` may be contiguous or the ``transpose(1, 2)`` of a
        contiguous ``[n_instances, n_features, batch]`` tensor (the layout the training loop
        uses for few features); the same generator state gives the same numbers in the same
        memory positions either way.

        Args:
            out: float tensor, ``[n_instances, batch, n_features]``.
            generator: source of randomness, on ``out``'s device.
            bits: optional ``int64`` scratch tensor of ``[n_instances, ceil(batch * n_features
                / 2)]`` elements for the random bits.

        Returns:
            ``out``.

        Examples:
            >>> data = SparseFeatureDataset(2, feature_probability=0.5)
            >>> data.fill_(torch.empty(1, 3, 2), torch.Generator().manual_seed(0)).shape
            torch.Size([1, 3, 2])
        """
        inst, _, feats = out.shape
        if inst != self.n_instances or feats != self.n_features:
            raise ValueError(
                f"out must have shape [{self.n_instances}, batch, {self.n_features}], "
                f"got {tuple(out.shape)}"
            )
        base = out if out.is_contiguous() else out.transpose(1, 2)
        if not base.is_contiguous():
            raise ValueError(
                "out must be contiguous or the transpose(1, 2) of a contiguous tensor, got "
                f"strides {out.stride()} for shape {tuple(out.shape)}"
            )
        self._fill_independent_(base[None], generator, bits)
        if self._grouped:
            p = self.feature_probability.to(out.device, out.dtype)[:, None, None]
            self._fill_groups(out, p, generator)
        return out

    def _fill_independent_(
        self,
        out: Tensor,
        generator: torch.Generator,
        words: Tensor | None = None,
        affine: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """Fill ``out: [chunks, n_instances, a, b]`` (contiguous) ignoring feature groups.

        Each ``[a, b]`` block takes ``ceil(a * b / 2)`` 64-bit draws in order, so a chunk of
        ``k`` batches is the same as ``k`` calls with one. ``affine`` as in
        :meth:`_fill_from_streams_`.
        """
        k, inst, a, b = out.shape
        n = a * b
        shape = (k, inst, (n + 1) // 2)
        if words is None or words.numel() != shape[0] * shape[1] * shape[2]:
            words = torch.empty(shape, dtype=torch.int64, device=out.device)
        words = words.view(shape)
        words.random_(generator=generator)  # 63 random bits: [0, 2**63)
        return self._from_words_(out, words, affine or self._affine(0, inst, out))

    def _streams(self, generator: torch.Generator) -> list[np.random.SFC64]:
        """One SFC64 bit stream per instance, seeded by a single draw of ``generator``.

        The CPU training batches of :meth:`~superposition.ToyModel.fit` come from these:
        instance ``i`` draws from its own stream (seeded by ``(draw, i)``), so it trains the same
        whatever the other instances are and however the instances are split across threads.
        """
        seed = int(torch.randint(2**62, (), generator=generator))
        return [np.random.SFC64(np.random.SeedSequence((seed, i))) for i in range(self.n_instances)]

    def _fill_from_streams_(
        self,
        out: Tensor,
        streams: Sequence[np.random.SFC64],
        first: int = 0,
        words: Tensor | None = None,
        affine: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """Fill ``out: [chunks, k, a, b]`` (CPU) for instances ``first .. first + k - 1``, each
        from its own stream in ``streams``: ``ceil(a * b / 2)`` 64-bit words per ``[a, b]``
        block, in order, so a chunk of ``c`` batches is the same as ``c`` calls with one.

        numpy's SFC64 writes 64 random bits in about 60% of the time of torch's generator.
        The bits of all instances are gathered into ``words`` (int64 scratch of ``chunks * k *
        ceil(a * b / 2)`` elements, allocated if absent) and turned into features by one set of
        passes for the whole chunk, with ``affine`` (:meth:`_affine`, computed if absent): a
        sampler on a second thread then holds the GIL a few times per chunk rather than a few
        times per instance, and the training thread's operations seldom wait for it. (Drawing
        only the active features of sparse instances, by geometric gaps, cost more per active
        feature than this per feature above p = 0.12, and saved nothing measurable in ``fit``
        below.)
        """
        chunks, k, a, b = out.shape
        per = (a * b + 1) // 2
        if words is None or words.numel() != chunks * k * per:
            words = torch.empty(chunks * k * per, dtype=torch.int64)
        words = words.view(chunks, k, per)
        dest = words.numpy()
        for j, bits in enumerate(streams):
            dest[:, j] = bits.random_raw(chunks * per).reshape(chunks, per)
        return self._from_words_(out, words, affine or self._affine(first, k, out))

    def _affine(self, first: int, k: int, like: Tensor) -> tuple[Tensor, Tensor]:
        """``(2 - p, 1 / p)`` of instances ``first .. first + k - 1``, ``[k, 1, 1]`` in the
        dtype and on the device of ``like``: :meth:`_from_words_` maps ``1 + u`` to a feature
        with them (rounded from float64, so the same for every caller)."""
        p = self.feature_probability[first : first + k].to(like.device, torch.float64)
        p = p[:, None, None]
        return (2 - p).to(like.dtype), (1 / p).to(like.dtype)

    def _from_words_(self, out: Tensor, words: Tensor, affine: tuple[Tensor, Tensor]) -> Tensor:
        """Features from random ``words: [chunks, k, ceil(a * b / 2)]`` (int64, consumed) into
        ``out: [chunks, k, a, b]``, with ``affine`` the instances' ``(2 - p, 1 / p)``
        (:meth:`_affine`)."""
        chunks, k, a, b = out.shape
        halves = words.view(torch.int32)[..., : a * b]
        # 23 random bits of each half as the mantissa of a float in [1, 2): integer passes that
        # vectorize, where an int-to-float conversion does not.
        halves.bitwise_and_(0x007FFFFF).bitwise_or_(0x3F800000)
        u1 = halves.view(torch.float32).view(chunks, k, a, b)  # 1 + u, u ~ U[0, 1)
        # x = max(u - S, 0) / p = max((1 + u) - (1 + S), 0) / p; two binary passes (a ternary
        # addcmul with per-instance factors does not vectorize), and the upper clamp keeps
        # round-off from producing exactly 1.0. For p = 1 the result is u, exactly.
        shift, scale = affine
        torch.sub(u1, shift, out=out).mul_(scale).clamp_(0.0, _BELOW_ONE)
        if self.distribution == "signed":
            # Active values x in (0, 1) map to 2x - 1 in (-1, 1); zeros stay zero.
            torch.where(out > 0, out * 2 - 1, out, out=out)
        return out

    def finite(self, n_points: int, *, seed: int | None = None) -> FiniteFeatureDataset:
        """A fixed training set of ``n_points`` samples (per instance) from this distribution.

        :meth:`~superposition.ToyModel.fit` trains full-batch on those points (the setting of
        Henighan et al., 2023, "Superposition, Memorization, and Double Descent"), and
        :meth:`FiniteFeatureDataset.test_set` draws fresh points from the same distribution.

        Args:
            n_points: the training-set size ``T``.
            seed: seed of the draw; ``None`` uses this dataset's :meth:`generator`.

        Returns:
            A new :class:`FiniteFeatureDataset`; this dataset is unchanged.

        Examples:
            >>> train = SparseFeatureDataset(5, sparsity=0.9, n_instances=2).finite(8, seed=0)
            >>> train
            SparseFeatureDataset(n_features=5, sparsity=0.9, n_instances=2).finite(8, seed=0)
            >>> train.x.shape
            torch.Size([8, 2, 5])
        """
        positive_int(n_points, "n_points")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an int or None, got {seed!r}")
        g = self.generator() if seed is None else torch.Generator().manual_seed(seed)
        return FiniteFeatureDataset(self, self.sample(n_points, generator=g), seed=seed)

    def _values(self, like: Tensor, generator: torch.Generator) -> Tensor:
        v = torch.rand(like.shape, generator=generator, device=like.device, dtype=like.dtype)
        return v.mul_(2).sub_(1) if self.distribution == "signed" else v

    def _fill_groups(self, out: Tensor, p: Tensor, generator: torch.Generator) -> None:
        inst, batch, _ = out.shape
        shape = (inst, batch, 1)
        for g in self.correlated_groups:
            u = torch.rand(shape, generator=generator, device=out.device, dtype=out.dtype)
            active = u < p
            vals = self._values(out[..., g], generator)
            out[..., g] = vals * active
        for g in self.anticorrelated_groups:
            # One uniform picks the member: member j is active iff j*p <= u < (j+1)*p, so at
            # most one is, each with probability p.
            u = torch.rand(shape, generator=generator, device=out.device, dtype=out.dtype)
            which = torch.floor(u / p)
            members = torch.arange(len(g), device=out.device, dtype=out.dtype)
            active = which == members
            vals = self._values(out[..., g], generator)
            out[..., g] = vals * active


class FiniteFeatureDataset:
    """A fixed training set drawn from a :class:`SparseFeatureDataset`, for full-batch training.

    Made by :meth:`SparseFeatureDataset.finite`. :meth:`~superposition.ToyModel.fit` takes it
    in place of the infinite stream: every step is one full batch of the ``n_points`` training
    points, so a model can memorize them. The distribution's attributes (``n_features``,
    ``n_instances``, ``importance``, ``feature_probability``, ``distribution``) are forwarded.

    Attributes:
        source: the distribution the points were drawn from.
        x: ``[n_points, n_instances, n_features]`` the training points (each instance has its
            own).
        seed: the seed of the draw.

    Examples:
        >>> train = SparseFeatureDataset(4, sparsity=0.5).finite(3, seed=1)
        >>> train.n_points, train.test_set(10, seed=2).shape
        (3, torch.Size([10, 1, 4]))
    """

    def __init__(self, source: SparseFeatureDataset, x: Tensor, *, seed: int | None) -> None:
        self.source = source
        self.x = x
        self.seed = seed
        self.n_features = source.n_features
        self.n_instances = source.n_instances
        self.distribution: Distribution = source.distribution
        self.feature_probability = source.feature_probability
        self.importance = source.importance

    @property
    def n_points(self) -> int:
        """The training-set size ``T``."""
        return int(self.x.shape[0])

    def __repr__(self) -> str:
        return f"{self.source!r}.finite({self.n_points}, seed={self.seed!r})"

    def test_set(self, n_points: int, *, seed: int | None = None) -> Tensor:
        """Fresh points from the same distribution, ``[n_points, n_instances, n_features]``.

        Args:
            n_points: how many.
            seed: seed of the draw; ``None`` draws from fresh entropy.

        Examples:
            >>> SparseFeatureDataset(3, sparsity=0.5).finite(2).test_set(4, seed=0).shape
            torch.Size([4, 1, 3])
        """
        g = torch.Generator()
        if seed is None:
            g.seed()
        else:
            g.manual_seed(seed)
        return self.source.sample(n_points, generator=g)
