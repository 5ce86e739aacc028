"""``"relu"``: ``z = ReLU(pre)``, trained with an L1 penalty ``l1 · (1/B) Σ_b Σ_i z_bi
‖W_dec,i‖`` scaled by the decoder norms (Anthropic, *Towards Monosemanticity*, 2023). No
dead-latent loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torch import Tensor

from superposition.sae.kinds.base import DenseKind, non_negative_float

if TYPE_CHECKING:
    from superposition.sae.gradients import Step
    from superposition.sae.model import SparseAutoencoder

__all__ = ["DEFAULT_L1", "ReLU"]

DEFAULT_L1 = 1.0


@dataclass(frozen=True)
class ReLU(DenseKind):
    """ReLU latents with an L1 penalty of coefficient ``l1`` (default ``DEFAULT_L1``)."""

    name = "relu"

    l1: float

    @classmethod
    def create(cls, d_in: int, d_sae: int, **given: Any) -> ReLU:
        l1 = given.get("l1")
        return cls(l1=DEFAULT_L1 if l1 is None else non_negative_float(l1, "l1"))

    def encode(self, sae: SparseAutoencoder, pre: Tensor) -> Tensor:
        return pre.relu()

    def gate(self, step: Step, pre: Tensor) -> tuple[Tensor, Tensor]:
        return pre > 0, pre.relu()

    def penalty_gradients(self, step: Step, pre: Tensor, z: Tensor, dz: Tensor) -> None:
        B = pre.shape[0]
        norms = step.W_dec.norm(dim=1)
        l1_now = self.l1 * step.penalty_scale
        dz.add_(norms * (l1_now / B))
        # d/dW_dec of l1 Σ z ‖W_dec,i‖ is parallel to the row (removed by the projection in
        # the loop), but it is part of the gradient.
        step.G_dec.addcmul_(step.W_dec, (z.sum(0) * (l1_now / B) / norms.clamp_min(1e-12))[:, None])
