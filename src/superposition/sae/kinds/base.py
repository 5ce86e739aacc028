"""What every kind of SAE fills in (:class:`SAEKind`), and the pieces several kinds share:
the AuxK loss on dead latents and the dense forward/backward of the kinds without TopK.

A kind is a small frozen dataclass whose fields are its hyperparameters (``k``, ``l1``...).
:meth:`SAEKind.create` validates what the user passed to
:class:`~superposition.SparseAutoencoder` and fills in defaults; the instance then answers
every question the model, the training step and the saved files ask of the kind:

* :meth:`~SAEKind.extra_parameters` / :meth:`~SAEKind.init_parameters`: slots the kind adds
  to the packed parameter after the common ``W_enc, W_dec, b_dec, b_enc`` (JumpReLU's
  ``log_threshold``); they are saved and loaded under their names.
* :meth:`~SAEKind.encode`: the latents of pre-activations, at inference.
* :meth:`~SAEKind.gradients`: the hand-written gradient of the reconstruction loss and the
  kind's own penalty, accumulated into the training step's gradient views.
* :meth:`~SAEKind.aux_gradients` with :attr:`~SAEKind.uses_dead_latents`: a loss on dead
  latents (AuxK), given the mask of latents that have not fired lately.
* :meth:`~SAEKind.settings`: the hyperparameters, as saved in the config and shown by repr.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

if TYPE_CHECKING:
    from collections.abc import Mapping

    from superposition.sae.gradients import Step
    from superposition.sae.model import SparseAutoencoder

__all__ = ["DenseKind", "SAEKind", "auxk_gradients", "non_negative_float"]


@dataclass(frozen=True)
class SAEKind:
    """The rules of one kind of SAE; subclasses are frozen dataclasses of its hyperparameters.

    Class attributes:
        name: the ``kind=`` string it is registered under.
        uses_dead_latents: whether training passes :meth:`aux_gradients` the dead-latent mask.
    """

    name: ClassVar[str]
    uses_dead_latents: ClassVar[bool] = False

    @classmethod
    def hyperparameters(cls) -> tuple[str, ...]:
        """The constructor arguments this kind takes (its dataclass fields)."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def create(cls, d_in: int, d_sae: int, **given: Any) -> SAEKind:
        """The kind with the hyperparameters a user passed (``None`` where not passed),
        validated, with defaults filled in; ``ValueError`` for a bad value."""
        return cls(**given)

    def settings(self) -> dict[str, Any]:
        """Hyperparameter values by name, as the saved config and ``repr`` show them."""
        return {name: getattr(self, name) for name in self.hyperparameters()}

    def extra_parameters(self, d_in: int, d_sae: int) -> dict[str, int]:
        """Sizes of the slots this kind adds to the packed parameter, by name (in order)."""
        return {}

    def init_parameters(self, views: Mapping[str, Tensor]) -> None:
        """Initialise this kind's extra slots in ``views`` (the common ones are set)."""

    def encode(self, sae: SparseAutoencoder, pre: Tensor) -> Tensor:
        """Latents ``z: [batch, d_sae]`` of pre-activations ``pre: [batch, d_sae]``."""
        raise NotImplementedError

    def gradients(
        self, step: Step, xn: Tensor, xc: Tensor, pre: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Accumulate into ``step``'s gradient views (zeroed) the gradient of the
        reconstruction loss and of this kind's penalty on the normalised batch ``xn``
        (``xc = xn - b_dec``, ``pre`` its pre-activations), and mark the latents that fired
        in ``step.fired_any``; all but ``db_dec``, which the step adds from ``δ``.

        Returns ``(err, δ, n_active)``: ``x̂ - xn``, ``dL/dx̂`` and the number of active
        latents (a 0-d tensor left on the device).
        """
        raise NotImplementedError

    def aux_gradients(self, step: Step, pre: Tensor, dead: Tensor, err: Tensor, xc: Tensor) -> None:
        """Accumulate the gradient of a loss on the ``dead: [d_sae]`` latents (called only
        when :attr:`uses_dead_latents`)."""


def non_negative_float(value: object, name: str) -> float:
    """``value`` as a float if it is a non-negative finite number, else a ValueError."""
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a non-negative finite float, got {value!r}")
    return float(value)


def auxk_gradients(step: Step, pre: Tensor, dead: Tensor, err: Tensor, xc: Tensor) -> None:
    """AuxK (Gao et al. 2024): the ``aux_k`` largest pre-activations among the ``dead``
    latents reconstruct the (detached) residual ``x - x̂``, weight ``aux_coef · min(1, dead
    / aux_k)``; nothing when ``aux_coef`` is 0 or no latent is dead.

    Works densely on the dead latents only: their count, not ``d_sae``, sets the cost.
    """
    if not step.aux_coef > 0:
        return
    n_dead = int(dead.sum())
    if not n_dead:
        return
    B = pre.shape[0]
    ka = min(step.aux_k, n_dead)
    cols = dead.nonzero().squeeze(1)
    pre_d = pre[:, cols]
    vals, idx = pre_d.topk(ka, dim=1, sorted=False)
    z = torch.zeros_like(pre_d).scatter_(1, idx, vals.relu_())
    W = step.W_dec[cols]
    # Reconstruct the residual x - x̂ (a constant here) from dead latents alone.
    delta = torch.addmm(err, z, W).mul_(2.0 * step.aux_coef * min(1.0, n_dead / step.aux_k) / B)
    step.G_dec.index_add_(0, cols, z.T @ delta)
    dpre = (delta @ W.T).mul_(z > 0)
    step.G_encT.index_add_(0, cols, dpre.T @ xc)
    step.G_benc.index_add_(0, cols, dpre.sum(0))


@dataclass(frozen=True)
class DenseKind(SAEKind):
    """A kind whose latents are ``pre`` through a gate, trained with dense products:
    ``x̂ = z W_dec + b_dec`` and its backward as full matrices, plus the kind's penalty."""

    def gate(self, step: Step, pre: Tensor) -> tuple[Tensor, Tensor]:
        """``(gate, z)`` of the pre-activations while training: where each latent is open
        (bool) and the latents."""
        raise NotImplementedError

    def penalty_gradients(self, step: Step, pre: Tensor, z: Tensor, dz: Tensor) -> None:
        """Add the penalty's gradient: to ``dz = dL/dz`` (in place, before the gate) and to
        the step's gradient views."""

    def gradients(
        self, step: Step, xn: Tensor, xc: Tensor, pre: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        B = xn.shape[0]
        gate, z = self.gate(step, pre)
        if step.autocast is None:
            xhat = torch.addmm(step.b_dec, z, step.W_dec)
        else:
            xhat = step.mm_low(z, step.W_dec, step.b_dec)
        err = xhat - xn
        delta = err * (2.0 / B)
        torch.mm(z.T, delta, out=step.G_dec)
        dz = delta @ step.W_dec.T
        self.penalty_gradients(step, pre, z, dz)
        dpre = dz * gate
        torch.mm(dpre.T, xc, out=step.G_encT)
        torch.sum(dpre, 0, out=step.G_benc)
        step.fired_any |= gate.any(0)
        return err, delta, gate.sum()
