"""``"topk"``: the ``k`` largest pre-activations of each row, through ReLU; the rest 0
(Gao et al. 2024, "Scaling and evaluating sparse autoencoders"). No penalty; AuxK on dead
latents.

Only the ``k`` selected latents of each row carry gradient, so the step keeps them as ``k``
coordinates per row and works with sparse products
(:meth:`~superposition.sae.gradients.Step.sparse_gradients`; the formulas are in
:mod:`superposition.sae.gradients`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from superposition._checks import positive_int
from superposition.sae.kinds.base import SAEKind, auxk_gradients

if TYPE_CHECKING:
    from superposition.sae.gradients import Step
    from superposition.sae.model import SparseAutoencoder

__all__ = ["TopK", "check_k"]


def check_k(name: str, d_sae: int, k: object) -> int:
    """``k`` checked for a kind that keeps ``k`` latents per sample (required, 1..d_sae)."""
    if k is None:
        raise ValueError(f"kind={name!r} needs k, the number of active latents, e.g. k=32")
    k = positive_int(k, "k")
    if k > d_sae:
        raise ValueError(f"k must be at most d_sae={d_sae} (the number of latents), got k={k}")
    return k


@dataclass(frozen=True)
class TopK(SAEKind):
    """``k`` active latents in every sample."""

    name = "topk"
    uses_dead_latents = True

    k: int

    @classmethod
    def create(cls, d_in: int, d_sae: int, **given: Any) -> TopK:
        return cls(k=check_k(cls.name, d_sae, given.get("k")))

    def encode(self, sae: SparseAutoencoder, pre: Tensor) -> Tensor:
        vals, idx = pre.topk(self.k, dim=1)
        return torch.zeros_like(pre).scatter(1, idx, vals.relu())

    def gradients(
        self, step: Step, xn: Tensor, xc: Tensor, pre: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        B, k = xn.shape[0], self.k
        vals, idx = pre.topk(k, dim=1, sorted=False)
        idx, order = idx.sort(1)  # compressed rows want their columns in order
        vals = vals.gather(1, order).relu_()
        crow = torch.arange(0, B * k + 1, k, device=pre.device)
        cols, vals = idx.view(-1), vals.view(-1)
        err, delta = step.sparse_gradients(crow, cols, vals, xn, xc)
        active = vals > 0
        step.mark_fired(cols, active)
        return err, delta, active.sum()

    def aux_gradients(self, step: Step, pre: Tensor, dead: Tensor, err: Tensor, xc: Tensor) -> None:
        auxk_gradients(step, pre, dead, err, xc)
