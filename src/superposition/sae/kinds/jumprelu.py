"""``"jumprelu"``: ``z = pre`` where above a learned per-latent threshold ``θ_i =
exp(log_threshold_i)``, else 0, trained with an L0 penalty ``l0 · (1/B) Σ_b Σ_i H(pre_bi -
θ_i)`` (Rajamanoharan et al. 2024, "Jumping ahead"); AuxK on dead latents, whose thresholds
otherwise strand them for good.

The gradients of ``H`` and of the jump with respect to ``θ`` use the straight-through
estimator with a rectangle kernel of width ``bandwidth`` (a fit argument). The thresholds are
an extra ``[d_sae]`` slot of the packed parameter, ``log_threshold``, starting at
``log(0.5)`` (in the normalised space, where ``‖x‖²`` averages ``d_in``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torch import Tensor

from superposition.sae.kinds.base import DenseKind, auxk_gradients, non_negative_float

if TYPE_CHECKING:
    from superposition.sae.gradients import Step
    from superposition.sae.model import SparseAutoencoder

__all__ = ["DEFAULT_L0", "JumpReLU"]

DEFAULT_L0 = 1.0
_INIT_THRESHOLD = 0.5


@dataclass(frozen=True)
class JumpReLU(DenseKind):
    """Latents above learned thresholds, with an L0 penalty of coefficient ``l0`` (default
    ``DEFAULT_L0``)."""

    name = "jumprelu"
    uses_dead_latents = True

    l0: float

    @classmethod
    def create(cls, d_in: int, d_sae: int, **given: Any) -> JumpReLU:
        l0 = given.get("l0")
        return cls(l0=DEFAULT_L0 if l0 is None else non_negative_float(l0, "l0"))

    def extra_parameters(self, d_in: int, d_sae: int) -> dict[str, int]:
        return {"log_threshold": d_sae}

    def init_parameters(self, views: Mapping[str, Tensor]) -> None:
        views["log_threshold"].fill_(math.log(_INIT_THRESHOLD))

    def encode(self, sae: SparseAutoencoder, pre: Tensor) -> Tensor:
        return pre * (pre > sae.log_threshold.exp())

    def gate(self, step: Step, pre: Tensor) -> tuple[Tensor, Tensor]:
        gate = pre > step.extra["log_threshold"].exp()
        return gate, pre * gate

    def penalty_gradients(self, step: Step, pre: Tensor, z: Tensor, dz: Tensor) -> None:
        # Straight-through estimator (rectangle kernel): d/dθ of the jump z·H and of the L0
        # term H, then times θ for the log parameterisation.
        B = pre.shape[0]
        theta = step.extra["log_threshold"].exp()
        eps = step.bandwidth
        kern = ((pre - theta).abs() < eps / 2).to(pre.dtype) * (1.0 / eps)
        l0_now = self.l0 * step.penalty_scale
        dtheta = -(kern * (dz * theta + l0_now / B)).sum(0)
        step.G_extra["log_threshold"].copy_(dtheta * theta)

    def aux_gradients(self, step: Step, pre: Tensor, dead: Tensor, err: Tensor, xc: Tensor) -> None:
        auxk_gradients(step, pre, dead, err, xc)
