"""Gradients by hand of the SAE training loss: the rule of one step, checked against autograd.

Everything happens in the model's normalised space (inputs times ``input_scale``). With
``x_c = x - b_dec``, ``pre = x_c W_enc + b_enc``, latents ``z = σ(pre)`` and
``x̂ = z W_dec + b_dec``, the loss is ``(1/B) Σ_b ‖x̂_b - x_b‖²`` plus the kind's penalty (each
kind's rule is written in its file of :mod:`superposition.sae.kinds`; :class:`Step` runs it):

* ``"topk"`` / ``"batchtopk"``: no penalty; the AuxK loss of Gao et al. (2024) on dead latents
  (also applied to ``"jumprelu"``, whose thresholds otherwise strand latents for good):
  the ``aux_k`` largest pre-activations among latents that have not fired for ``dead_after``
  samples reconstruct the (detached) residual ``x - x̂``, weight ``aux_coef · min(1, dead /
  aux_k)``.
* ``"relu"``: ``l1 · (1/B) Σ_b Σ_i z_bi ‖W_dec,i‖``.
* ``"jumprelu"``: ``l0 · (1/B) Σ_b Σ_i H(pre_bi - θ_i)``, with ``θ = exp(log_threshold)`` and
  the straight-through estimator of Rajamanoharan et al. (2024) (rectangle kernel of width
  ``bandwidth``) for the gradients of ``H`` and of the jump with respect to ``θ``.

**Sparse gradients for the TopK kinds.** Only the ``nnz`` selected latents (``k`` per row for
TopK, ``k·B`` in the batch for BatchTopK) carry gradient, so the step keeps the latents as
coordinates ``(rows, cols, vals)`` and writes::

    x̂        = b_dec + Σ_nnz vals · W_dec[cols]                     (index_add over rows)
    δ        = 2 (x̂ - x) / B
    dW_dec   = Σ_nnz vals · δ[rows]        into rows ``cols``
    dpre     = (W_dec[cols] · δ[rows]) · [vals > 0]                  [nnz]
    dW_enc   = Σ_nnz dpre · x_c[rows]      into columns ``cols``
    db_enc   = Σ_nnz dpre,   db_dec = Σ_b δ - W_enc db_enc

The only dense product left is the encoder's forward ``x_c W_enc``; autograd would add three
more of that size (decode, ``dW_dec``, ``dz``) plus the encoder's backward. The dense kinds
(``"relu"``, ``"jumprelu"``) use the same formulas with dense matrices.

**Decoder rows stay unit-norm.** Before each update the component of each decoder row's
gradient parallel to the row is removed (it would only change the norm), and after it the rows
are renormalised (by the loop, :mod:`superposition.sae.train`).

The gradients are checked against autograd in ``tests/test_sae_train.py``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from superposition.sae.config import FitConfig

if TYPE_CHECKING:
    from superposition.sae.model import SparseAutoencoder

__all__ = ["Step", "batch_stats", "gradients"]


class Step:
    """Buffers of one model's training step, and the step's gradient; what differs between
    kinds is the kind's (``model.rule``, :mod:`superposition.sae.kinds`).

    The views a kind reads and writes: the parameters ``encT`` (``W_enc`` transposed),
    ``W_dec``, ``b_dec``, ``b_enc`` and the kind's own ``extra[name]``; their gradients
    ``G_encT``, ``G_dec``, ``G_bdec``, ``G_benc`` and ``G_extra[name]`` (views of ``G``, the
    packed gradient); ``threshold`` (a learned inference threshold, BatchTopK's);
    ``fired_any`` (latents that fired this step); ``penalty_scale`` (the penalty's warm-up
    ramp); and the fit's ``aux_k``, ``aux_coef``, ``bandwidth`` and ``autocast``.
    """

    def __init__(
        self,
        model: SparseAutoencoder,
        P: Tensor,
        config: FitConfig,
        autocast: torch.dtype | None = None,
    ) -> None:
        self.rule = model.rule
        self.autocast = autocast
        self.d_in, self.d_sae = model.d_in, model.d_sae
        views = model._views(P)
        self.encT, self.W_dec, self.b_dec, self.b_enc = (
            views["encT"],
            views["W_dec"],
            views["b_dec"],
            views["b_enc"],
        )
        self.G = torch.zeros_like(P)
        g = model._views(self.G)
        self.G_encT, self.G_dec, self.G_bdec, self.G_benc = (
            g["encT"],
            g["W_dec"],
            g["b_dec"],
            g["b_enc"],
        )
        extra = self.rule.extra_parameters(self.d_in, self.d_sae)
        self.extra = {name: views[name] for name in extra}
        self.G_extra = {name: g[name] for name in extra}
        self.aux_k = min(config.aux_k or max(1, self.d_in // 2), self.d_sae)
        self.aux_coef = config.aux_coef
        self.bandwidth = config.bandwidth
        self.threshold = model.threshold.to(P.device, copy=True)
        # One spare slot past the latents: the TopK kinds mark the latents that fired by
        # writing True at ``where(active, col, d_sae)``, with no boolean indexing (which
        # waits for a GPU).
        self._fired = torch.zeros(self.d_sae + 1, dtype=torch.bool, device=P.device)
        self.fired_any = self._fired[: self.d_sae]
        self.penalty_scale = 1.0  # ramps the L1 / L0 coefficient up during penalty_warmup

    def mark_fired(self, cols: Tensor, active: Tensor) -> None:
        """Mark latents ``cols`` where ``active`` (same shape) as fired this step."""
        self._fired[torch.where(active, cols, self.d_sae)] = True

    def sparse_backward(
        self, rows: Tensor, cols: Tensor, vals: Tensor, Wc: Tensor, delta: Tensor, xc: Tensor
    ) -> None:
        """Accumulate the gradients of ``x̂ = Σ vals · W_dec[cols]`` (decoder) and of the
        encoder columns ``cols`` given ``δ = dL/dx̂`` (coordinates ``(rows, cols, vals)``,
        ``Wc = W_dec[cols]``)."""
        dr = delta[rows]
        self.G_dec.index_add_(0, cols, dr * vals[:, None])
        dpre = (Wc * dr).sum(1) * (vals > 0)
        self.G_encT.index_add_(0, cols, xc[rows] * dpre[:, None])
        self.G_benc.index_add_(0, cols, dpre)

    def mm_low(self, a: Tensor, b: Tensor, bias: Tensor) -> Tensor:
        """``bias + a @ b`` with the product in ``self.autocast``, returned in float32."""
        assert self.autocast is not None
        return torch.mm(a.to(self.autocast), b.to(self.autocast)).to(bias.dtype).add_(bias)

    def gradients(self, xn: Tensor, dead: Tensor | None) -> tuple[Tensor, Tensor]:
        """Gradients of the loss on the normalised batch ``xn`` into ``G``; ``dead``: the
        mask of dead latents for the kind's dead-latent loss (``None``: none).

        Returns the batch's reconstruction error ``x̂ - x`` and its number of active latents
        (a 0-d tensor, left on the device: reading it would wait for the GPU);
        :func:`batch_stats` turns them into the recorded numbers, on the steps that record
        them.
        """
        self.G.zero_()
        xc = xn - self.b_dec
        if self.autocast is None:
            pre = torch.addmm(self.b_enc, xc, self.encT.T)
        else:
            pre = self.mm_low(xc, self.encT.T, self.b_enc)
        err, delta, n_active = self.rule.gradients(self, xn, xc, pre)
        if dead is not None:
            self.rule.aux_gradients(self, pre, dead, err, xc)
        self.G_bdec.add_(delta.sum(0)).sub_(self.G_benc @ self.encT)
        return err, n_active


def batch_stats(xn: Tensor, err: Tensor, l0: float) -> tuple[float, float, float]:
    """``(mse, fvu, l0)`` of a normalised batch ``xn``, its reconstruction error ``err`` and
    its L0."""
    B = xn.shape[0]
    mse = float(err.square().sum()) / B
    centred = float((xn - xn.mean(0)).square().sum()) / B
    return mse, mse / centred if centred > 0 else math.nan, l0


def gradients(
    model: SparseAutoencoder,
    x: Tensor,
    *,
    dead: Tensor | None = None,
    aux_k: int | None = None,
    aux_coef: float = 1.0,
    bandwidth: float = 0.5,
) -> Tensor:
    """The training loop's gradient of the loss on ``x`` w.r.t. ``model.params`` (before the
    decoder projection), exposed so that it can be checked against autograd.

    Args:
        model: the SAE.
        x: ``[batch, d_in]`` in the user's units.
        dead: ``[d_sae]`` bool mask of latents treated as dead by AuxK (not ``"relu"``).
        aux_k, aux_coef, bandwidth: as in :class:`FitConfig`.

    Examples:
        >>> from superposition.sae.model import SparseAutoencoder
        >>> sae = SparseAutoencoder(4, 8, k=2, seed=0)
        >>> gradients(sae, torch.randn(5, 4)).shape == sae.params.shape
        True
    """
    x = model._check_input(x, "x")
    if dead is not None and not model.rule.uses_dead_latents:
        from superposition.sae.kinds import REGISTRY

        users = [name for name, cls in REGISTRY.items() if cls.uses_dead_latents]
        raise ValueError(
            f"dead only applies to kinds with a loss on dead latents ({', '.join(users)}), "
            f"not {model.kind!r}; pass dead=None"
        )
    if dead is not None:
        dead = dead.to(model.params.device)
    config = FitConfig(samples=1, aux_k=aux_k, aux_coef=aux_coef, bandwidth=bandwidth)
    with torch.no_grad():
        step = Step(model, model.params.data, config)
        step.gradients(x * model.input_scale, dead)
        return step.G.clone()
