"""``"batchtopk"``: while training, the ``k·B`` largest pre-activations of the whole batch of
``B`` rows (through ReLU); at inference, ``pre`` where above a threshold learned during
training (Bussmann et al. 2024, "BatchTopK sparse autoencoders"). No penalty; AuxK on dead
latents.

The threshold is the SAE's ``threshold`` buffer: the running average of the smallest
activation each training batch kept (the training step's ``threshold``, saved in
checkpoints and averaged over ranks under data parallelism).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from superposition.sae.kinds.base import SAEKind, auxk_gradients
from superposition.sae.kinds.topk import check_k, gather_rows

if TYPE_CHECKING:
    from superposition.sae.gradients import Step
    from superposition.sae.model import SparseAutoencoder

__all__ = ["BatchTopK"]


@dataclass(frozen=True)
class BatchTopK(SAEKind):
    """``k`` active latents per sample on average over each training batch."""

    name = "batchtopk"
    uses_dead_latents = True

    k: int

    @classmethod
    def create(cls, d_in: int, d_sae: int, **given: Any) -> BatchTopK:
        return cls(k=check_k(cls.name, d_sae, given.get("k")))

    def encode(self, sae: SparseAutoencoder, pre: Tensor) -> Tensor:
        return pre * (pre > sae.threshold.clamp_min(0.0))

    def gradients(
        self, step: Step, xn: Tensor, xc: Tensor, pre: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        B = xn.shape[0]
        vals, flat = pre.view(-1).topk(self.k * B, sorted=False)
        rows, cols = flat // step.d_sae, flat % step.d_sae
        vals = vals.relu_()
        # Bussmann et al.: the inference threshold is the running average of the smallest
        # activation the batch kept (unchanged when it kept none), found without boolean
        # indexing, which would wait for a GPU.
        low = torch.where(vals > 0, vals, math.inf).min()
        step.threshold.copy_(
            torch.where(low < math.inf, step.threshold.lerp(low, 0.01), step.threshold)
        )
        # The k·B coordinates a chunk at a time (in order, so every index_add_ adds the same
        # terms in the same order): the gathered decoder rows of a whole batch are k·B x d_in
        # (805 MB at 4096 x 32 x 1536), and the backward makes several more of that size.
        chunk = gather_rows(1, step.d_in)
        parts = [slice(s, s + chunk) for s in range(0, vals.shape[0], chunk)]
        xhat = step.b_dec.expand(B, -1).clone()
        for c in parts:
            xhat.index_add_(0, rows[c], step.W_dec[cols[c]] * vals[c, None])
        err = xhat - xn
        delta = err * (2.0 / B)
        for c in parts:
            step.sparse_backward(rows[c], cols[c], vals[c], step.W_dec[cols[c]], delta, xc)
        active = vals > 0
        step.mark_fired(cols, active)
        return err, delta, active.sum()

    def aux_gradients(self, step: Step, pre: Tensor, dead: Tensor, err: Tensor, xc: Tensor) -> None:
        auxk_gradients(step, pre, dead, err, xc)
