"""Gradients by hand of the SAE training loss: the rule of one step, checked against autograd.

Everything happens in the model's normalised space (inputs times ``input_scale``). With
``x_c = x - b_dec``, ``pre = x_c W_enc + b_enc``, latents ``z = σ(pre)`` and
``x̂ = z W_dec + b_dec``, the loss is ``(1/B) Σ_b ‖x̂_b - x_b‖²`` plus the kind's penalty:

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
    """Buffers and the gradient rule of one model for one batch size."""

    def __init__(
        self,
        model: SparseAutoencoder,
        P: Tensor,
        config: FitConfig,
        autocast: torch.dtype | None = None,
    ) -> None:
        self.kind = model.kind
        self.autocast = autocast
        self.k = model.k
        self.l1 = model.l1
        self.l0 = model.l0
        self.d_in, self.d_sae = model.d_in, model.d_sae
        views = model._views(P)
        self.encT, self.W_dec, self.b_dec, self.b_enc = (
            views["encT"],
            views["W_dec"],
            views["b_dec"],
            views["b_enc"],
        )
        self.log_threshold = views.get("log_threshold")
        self.G = torch.zeros_like(P)
        g = model._views(self.G)
        self.G_encT, self.G_dec, self.G_bdec, self.G_benc = (
            g["encT"],
            g["W_dec"],
            g["b_dec"],
            g["b_enc"],
        )
        self.G_logt = g.get("log_threshold")
        self.aux_k = min(config.aux_k or max(1, self.d_in // 2), self.d_sae)
        self.aux_coef = config.aux_coef
        self.bandwidth = config.bandwidth
        # BatchTopK's inference threshold.
        self.threshold = model.threshold.to(P.device, copy=True)
        # One spare slot past the latents: the TopK kinds mark the latents that fired by
        # writing True at ``where(active, col, d_sae)``, with no boolean indexing (which
        # waits for a GPU).
        self._fired = torch.zeros(self.d_sae + 1, dtype=torch.bool, device=P.device)
        self.fired_any = self._fired[: self.d_sae]
        self.penalty_scale = 1.0  # ramps the L1 / L0 coefficient up during penalty_warmup

    def _sparse_backward(
        self, rows: Tensor, cols: Tensor, vals: Tensor, Wc: Tensor, delta: Tensor, xc: Tensor
    ) -> None:
        """Accumulate the gradients of ``x̂ = Σ vals · W_dec[cols]`` (decoder) and of the
        encoder columns ``cols`` given ``δ = dL/dx̂``."""
        dr = delta[rows]
        self.G_dec.index_add_(0, cols, dr * vals[:, None])
        dpre = (Wc * dr).sum(1) * (vals > 0)
        self.G_encT.index_add_(0, cols, xc[rows] * dpre[:, None])
        self.G_benc.index_add_(0, cols, dpre)

    def _auxk(self, pre: Tensor, dead: Tensor, err: Tensor, xc: Tensor, n_dead: int) -> None:
        """AuxK: the ``aux_k`` largest dead pre-activations reconstruct the residual.

        Works densely on the dead latents only: their count, not ``d_sae``, sets the cost.
        """
        B = pre.shape[0]
        ka = min(self.aux_k, n_dead)
        cols = dead.nonzero().squeeze(1)
        pre_d = pre[:, cols]
        vals, idx = pre_d.topk(ka, dim=1, sorted=False)
        z = torch.zeros_like(pre_d).scatter_(1, idx, vals.relu_())
        W = self.W_dec[cols]
        # Reconstruct the residual x - x̂ (a constant here) from dead latents alone.
        delta = torch.addmm(err, z, W).mul_(2.0 * self.aux_coef * min(1.0, n_dead / self.aux_k) / B)
        self.G_dec.index_add_(0, cols, z.T @ delta)
        dpre = (delta @ W.T).mul_(z > 0)
        self.G_encT.index_add_(0, cols, dpre.T @ xc)
        self.G_benc.index_add_(0, cols, dpre.sum(0))

    def _mm_low(self, a: Tensor, b: Tensor, bias: Tensor) -> Tensor:
        """``bias + a @ b`` with the product in ``self.autocast``, returned in float32."""
        assert self.autocast is not None
        return torch.mm(a.to(self.autocast), b.to(self.autocast)).to(bias.dtype).add_(bias)

    def gradients(self, xn: Tensor, dead: Tensor | None) -> tuple[Tensor, Tensor]:
        """Gradients of the loss on the normalised batch ``xn`` into ``G``.

        Returns the batch's reconstruction error ``x̂ - x`` and its number of active latents
        (a 0-d tensor, left on the device: reading it would wait for the GPU);
        :func:`batch_stats` turns them into the recorded numbers, on the steps that record
        them.
        """
        B = xn.shape[0]
        self.G.zero_()
        xc = xn - self.b_dec
        if self.autocast is None:
            pre = torch.addmm(self.b_enc, xc, self.encT.T)
        else:
            pre = self._mm_low(xc, self.encT.T, self.b_enc)
        if self.kind in ("topk", "batchtopk"):
            assert self.k is not None
            if self.kind == "topk":
                # k latents in every row: batched [B, k] products instead of coordinates.
                k = self.k
                vals, idx = pre.topk(k, dim=1, sorted=False)
                vals.relu_()
                cols = idx.view(-1)
                Wc = self.W_dec[cols].view(B, k, self.d_in)
                xhat = torch.bmm(vals[:, None, :], Wc).squeeze(1).add_(self.b_dec)
                err = xhat - xn
                delta = err * (2.0 / B)
                dpre = torch.bmm(Wc, delta[:, :, None]).squeeze(2).mul_(vals > 0)
                self.G_dec.index_add_(
                    0, cols, (vals[:, :, None] * delta[:, None, :]).view(-1, self.d_in)
                )
                self.G_encT.index_add_(
                    0, cols, (dpre[:, :, None] * xc[:, None, :]).view(-1, self.d_in)
                )
                self.G_benc.index_add_(0, cols, dpre.view(-1))
                active = (vals > 0).view(-1)
            else:
                vals, flat = pre.view(-1).topk(self.k * B, sorted=False)
                rows, cols = flat // self.d_sae, flat % self.d_sae
                vals = vals.relu_()
                # Bussmann et al.: the inference threshold is the running average of the
                # smallest activation the batch kept (unchanged when it kept none), found
                # without boolean indexing, which would wait for a GPU.
                low = torch.where(vals > 0, vals, math.inf).min()
                self.threshold.copy_(
                    torch.where(low < math.inf, self.threshold.lerp(low, 0.01), self.threshold)
                )
                Wc = self.W_dec[cols]
                xhat = self.b_dec.expand(B, -1).clone().index_add_(0, rows, Wc * vals[:, None])
                err = xhat - xn
                delta = err * (2.0 / B)
                self._sparse_backward(rows, cols, vals, Wc, delta, xc)
                active = vals > 0
            self._fired[torch.where(active, cols, self.d_sae)] = True
            n_active = active.sum()
        else:
            if self.kind == "relu":
                gate = pre > 0
                z = pre.relu()
            else:
                assert self.log_threshold is not None
                theta = self.log_threshold.exp()
                gate = pre > theta
                z = pre * gate
            if self.autocast is None:
                xhat = torch.addmm(self.b_dec, z, self.W_dec)
            else:
                xhat = self._mm_low(z, self.W_dec, self.b_dec)
            err = xhat - xn
            delta = err * (2.0 / B)
            torch.mm(z.T, delta, out=self.G_dec)
            dz = delta @ self.W_dec.T
            if self.kind == "relu":
                assert self.l1 is not None
                norms = self.W_dec.norm(dim=1)
                l1_now = self.l1 * self.penalty_scale
                dz.add_(norms * (l1_now / B))
                # d/dW_dec of l1 Σ z ‖W_dec,i‖ is parallel to the row (removed by the
                # projection in the loop), but it is part of the gradient.
                self.G_dec.addcmul_(
                    self.W_dec, (z.sum(0) * (l1_now / B) / norms.clamp_min(1e-12))[:, None]
                )
            else:
                assert self.l0 is not None
                assert self.G_logt is not None
                # Straight-through estimator (rectangle kernel): d/dθ of the jump z·H and of
                # the L0 term H, then times θ for the log parameterisation.
                eps = self.bandwidth
                kern = ((pre - theta).abs() < eps / 2).to(pre.dtype) * (1.0 / eps)
                l0_now = self.l0 * self.penalty_scale
                dtheta = -(kern * (dz * theta + l0_now / B)).sum(0)
                self.G_logt.copy_(dtheta * theta)
            dpre = dz * gate
            torch.mm(dpre.T, xc, out=self.G_encT)
            torch.sum(dpre, 0, out=self.G_benc)
            n_active = gate.sum()
            self.fired_any |= gate.any(0)
        if dead is not None and self.aux_coef > 0:
            n_dead = int(dead.sum())
            if n_dead:
                self._auxk(pre, dead, err, xc, n_dead)
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
    if dead is not None:
        dead = dead.to(model.params.device)
    config = FitConfig(samples=1, aux_k=aux_k, aux_coef=aux_coef, bandwidth=bandwidth)
    with torch.no_grad():
        step = Step(model, model.params.data, config)
        step.gradients(x * model.input_scale, dead)
        return step.G.clone()
