"""The feature hierarchy of :class:`~superposition.sae.synthbench.SynthBench`: a forest of
complete trees over the first features, numbered breadth first as SAELens numbers them.

With ``roots`` trees, ``branching`` children per parent and ``depth`` levels below the roots,
level ``L`` holds ``roots * branching**L`` features, starting where level ``L - 1`` ends; the
children of the ``k``-th feature of a level are the ``branching`` consecutive features from
``start[L + 1] + k * branching``. Arithmetic on those ranges replaces any tree walk.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Hierarchy"]


def _count(value: object, name: str, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")


@dataclass(frozen=True)
class Hierarchy:
    """A forest of complete trees over the first features (SAELens's ``HierarchyConfig``).

    A child fires only when its parent fires. With ``mutually_exclusive`` the children of
    one parent that drew a firing compete and one of them, chosen uniformly, survives. With
    ``scale_children`` a child's value is multiplied by ``parent value / parent mean
    magnitude``. With ``compensate`` the firing probability of a child is raised as SAELens
    raises it, ``p_child / p_parent * (1 + Σ p_siblings / p_parent)`` (the second factor
    with ``mutually_exclusive`` only), capped at 1.

    Args:
        roots: number of trees (their roots are features ``0 .. roots - 1``).
        branching: children per parent.
        depth: levels below the roots (1: roots with leaf children).
        mutually_exclusive: at most one child of a parent fires.
        scale_children: children scaled by their parent's value over its mean magnitude.
        compensate: raise children's probabilities for the parent gate and the competition.

    Examples:
        >>> tree = Hierarchy(roots=2, branching=3, depth=2)
        >>> tree.size, tree.parents(30)[:10].tolist(), tree.parents(30)[-5:].tolist()
        (26, [-1, -1, 0, 0, 0, 1, 1, 1, 2, 2], [7, -1, -1, -1, -1])
    """

    roots: int
    branching: int
    depth: int
    mutually_exclusive: bool = True
    scale_children: bool = True
    compensate: bool = True

    def __post_init__(self) -> None:
        _count(self.roots, "roots", 1)
        _count(self.branching, "branching", 2)
        _count(self.depth, "depth", 1)
        for name in ("mutually_exclusive", "scale_children", "compensate"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")

    def start(self, level: int) -> int:
        """Index of the first feature of ``level`` (0: the roots)."""
        return self.roots * sum(int(self.branching**k) for k in range(level))

    def width(self, level: int) -> int:
        """Number of features at ``level``."""
        return self.roots * int(self.branching**level)

    @property
    def size(self) -> int:
        """Features in the forest: ``roots * (1 + branching + ... + branching**depth)``."""
        return self.start(self.depth + 1)

    def children(self, level: int, parents: Tensor) -> Tensor:
        """``[k, branching]`` children of ``parents: [k]``, features at ``level``."""
        first = self.start(level + 1) + (parents - self.start(level)) * self.branching
        return first[:, None] + torch.arange(self.branching)

    def parents(self, n_features: int) -> Tensor:
        """``[n_features]`` parent of each feature (long), ``-1`` for roots and free features."""
        out = torch.full((n_features,), -1, dtype=torch.long)
        for level in range(1, self.depth + 1):
            lo = self.start(level)
            out[lo : lo + self.width(level)] = torch.arange(
                self.width(level)
            ) // self.branching + self.start(level - 1)
        return out

    def compensated(self, base: Tensor) -> Tensor:
        """Per-draw probabilities from the wanted ones ``base: [n_features]``, as SAELens's
        ``compute_probability_correction_factors``: a child's ``p`` is divided by its
        parent's (uncompensated) ``p`` and, with mutual exclusion, multiplied by one plus its
        siblings' ``p`` over the parent's; capped at 1."""
        out = base.double().clone()
        if not self.compensate:
            return out
        b = base.double()
        for level in range(1, self.depth + 1):
            lo, hi = self.start(level - 1), self.start(level)
            parent = b[lo:hi, None]
            kids = b[hi : hi + self.width(level)].view(-1, self.branching)
            factor = 1 / parent
            if self.mutually_exclusive:
                factor = factor * (1 + (kids.sum(1, keepdim=True) - kids).clamp_min(0) / parent)
            out[hi : hi + self.width(level)] = (kids * factor).clamp_max(1).flatten()
        return out

    def marginals(self, active: Tensor) -> Tensor:
        """Exact rate at which each feature is active when draws are independent.

        ``active[i]`` is the probability that feature ``i``'s own draw fires with a positive
        magnitude. A root keeps it; a child is active when its parent is, its draw is, and
        (with mutual exclusion) it wins the uniform draw among its siblings whose draws
        fired: ``E[1 / (1 + K)]`` for ``K`` the number of those siblings, a Poisson-binomial
        count computed exactly. The three events involve disjoint features, so they
        multiply.
        """
        out = active.double().clone()
        for level in range(1, self.depth + 1):
            lo, hi = self.start(level - 1), self.start(level)
            kids = out[hi : hi + self.width(level)].view(-1, self.branching)
            win = kids * _share(kids) if self.mutually_exclusive else kids
            out[hi : hi + self.width(level)] = (win * out[lo:hi, None]).flatten()
        return out


def _share(a: Tensor) -> Tensor:
    """``[groups, b]``: ``E[1 / (1 + K_j)]`` with ``K_j`` the number of the other ``b - 1``
    independent ``Bernoulli(a)`` that fire (exact, by the Poisson-binomial recursion)."""
    groups, b = a.shape
    out = torch.empty_like(a)
    for j in range(b):
        dist = torch.zeros(groups, b, dtype=a.dtype)
        dist[:, 0] = 1
        for c in range(b):
            if c != j:
                q = a[:, c : c + 1]
                dist = dist * (1 - q) + torch.nn.functional.pad(dist[:, :-1], (1, 0)) * q
        out[:, j] = (dist / torch.arange(1, b + 1, dtype=a.dtype)).sum(1)
    return out


def expand(
    tree: Hierarchy,
    level: int,
    rows: Tensor,
    feats: Tensor,
    values: Tensor,
    fire_probability: Callable[[Tensor, Tensor], Tensor],
    magnitude: Callable[[Tensor], Tensor],
    mean: Tensor,
    generator: torch.Generator | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """The active children of the active parents ``(rows, feats, values)`` at ``level - 1``.

    ``fire_probability(rows, kids)`` gives, for ``kids: [k, branching]``, the probability
    that each child's draw fires with a positive magnitude (a zero magnitude is no firing,
    as in SAELens); ``magnitude(kids)`` draws the positive magnitude of the children that
    end up active. Mutual exclusion keeps one uniformly chosen winner among the children
    that fired; then the scaling by the parent applies. Returns the active children as
    ``(rows, feats, values)``, in the order of their parents.
    """
    kids = tree.children(level - 1, feats)
    k, b = kids.shape
    p = fire_probability(rows, kids)
    u = torch.rand(k, b, generator=generator)
    fired = u < p
    if tree.mutually_exclusive:
        # Given that a child fired, u / p is uniform on [0, 1) and independent of its
        # siblings': the largest 1 + u / p among the children that fired (0 elsewhere) is
        # a uniform choice among them, with no more random numbers.
        best, col = torch.where(fired, 1 + u / p, 0.0).max(1)
        parent = (best > 0).nonzero().squeeze(1)
        at = parent * b + col.index_select(0, parent)
    else:
        at = fired.flatten().nonzero().squeeze(1)
        parent = at // b
    kid = kids.flatten().index_select(0, at)
    value = magnitude(kid)
    if tree.scale_children:
        value *= (values / torch.take(mean, feats)).index_select(0, parent)
    return rows.index_select(0, parent), kid, value


def levels_of(tree: Hierarchy | None, n_features: int) -> Tensor:
    """``[n_features]`` level of each feature (0 for roots and free features)."""
    out = torch.zeros(n_features, dtype=torch.long)
    if tree is not None:
        for level in range(1, tree.depth + 1):
            out[tree.start(level) : tree.start(level) + tree.width(level)] = level
    return out


def check_fits(tree: Hierarchy | None, n_features: int) -> None:
    """A ValueError unless ``tree`` fits in ``n_features`` features."""
    if tree is not None and not isinstance(tree, Hierarchy):
        raise ValueError(f"hierarchy must be a Hierarchy or None, got {tree!r}")
    if tree is not None and tree.size > n_features:
        raise ValueError(
            f"hierarchy {tree} needs {tree.size} features but n_features={n_features}; "
            f"use fewer roots, a smaller branching or depth, or more features"
        )
