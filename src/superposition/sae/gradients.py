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
import warnings
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from superposition.sae.config import FitConfig

if TYPE_CHECKING:
    from superposition.sae.model import SparseAutoencoder

__all__ = ["Step", "batch_stats", "gradients"]

_GATHER_FLOATS = 2**24  # gathered decoder floats per chunk on the GPU route (64 MiB)


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
        # A transcoder's rows are [x | y]: it reads x (uncentred) and reconstructs y.
        self.transcoder, self.d_out = model.transcoder, model.d_out
        self.width = self.d_in + self.d_out if self.transcoder else self.d_in
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
        self.W_skip, self.G_skip = views.get("W_skip"), g.get("W_skip")
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
        self._pre = torch.empty(0, self.d_sae, device=P.device, dtype=P.dtype)

    def mark_fired(self, cols: Tensor, active: Tensor) -> None:
        """Mark latents ``cols`` where ``active`` (same shape) as fired this step."""
        self._fired[torch.where(active, cols, self.d_sae)] = True

    def sparse_gradients(
        self, crow: Tensor, cols: Tensor, vals: Tensor, xn: Tensor, xc: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Decode latents given as coordinates and accumulate their gradients (decoder, and
        the encoder columns ``cols``, ``db_enc``) into the step's views.

        The latents are in compressed-row form: row ``b``'s nonzeros are ``cols[crow[b] :
        crow[b + 1]]`` with values ``vals[...]`` (columns ascending within a row). Returns
        ``(err, δ)``: ``x̂ - xn`` and ``dL/dx̂``.

        On a CPU the four products are sparse-dense ones (``z W_dec``, ``zᵀ δ``, ``δ W_decᵀ``
        sampled at the nonzeros, ``dpreᵀ x_c``), which read ``W_dec`` once each; gathering
        ``W_dec[cols]`` instead moves ``nnz x d_in`` floats (805 MB at 4096 x 32 x 1536)
        several times and took 2-3 s of a 4 s step. Elsewhere (a GPU) the rows are gathered,
        a chunk of rows at a time.
        """
        B = xn.shape[0]
        if xn.device.type != "cpu":
            return self._gathered_gradients(crow, cols, vals, xn, xc)
        z = _csr(crow, cols, vals, (B, self.d_sae))
        err = torch.addmm(xn, z, self.W_dec, beta=-1.0).add_(self.b_dec)
        delta = err * (2.0 / B)
        _sparse_t_mm(z, delta, out=self.G_dec)
        dz = torch.sparse.sampled_addmm(z, delta, self.W_dec.T, beta=0.0).values()
        dpre = dz.mul_(vals > 0)
        _sparse_t_mm(_csr(crow, cols, dpre, (B, self.d_sae)), xc, out=self.G_encT)
        self.G_benc.index_add_(0, cols, dpre)
        return err, delta

    def _gathered_gradients(
        self, crow: Tensor, cols: Tensor, vals: Tensor, xn: Tensor, xc: Tensor
    ) -> tuple[Tensor, Tensor]:
        """:meth:`sparse_gradients` by gathering ``W_dec[cols]``, a chunk of rows at a time
        (each chunk's gathered rows near 64 MiB). Chunks go in order, so every ``index_add_``
        adds the same terms in the same order as one call would."""
        B, d_in = xn.shape
        nnz = cols.shape[0]
        n_parts = min(B, max(1, -(-nnz * d_in // _GATHER_FLOATS)))
        starts = [B * p // n_parts for p in range(n_parts + 1)]
        bounds = crow[starts].tolist()
        rows = torch.repeat_interleave(torch.arange(B, device=xn.device), crow.diff())
        err = torch.empty_like(xn)
        delta = torch.empty_like(xn)
        for r0, r1, c0, c1 in zip(starts, starts[1:], bounds, bounds[1:], strict=False):
            r, c, v = rows[c0:c1], cols[c0:c1], vals[c0:c1]
            Wc = self.W_dec[c]
            xhat = self.b_dec.expand(r1 - r0, -1).clone().index_add_(0, r - r0, Wc * v[:, None])
            torch.sub(xhat, xn[r0:r1], out=err[r0:r1])
            torch.mul(err[r0:r1], 2.0 / B, out=delta[r0:r1])
            dr = delta[r]
            self.G_dec.index_add_(0, c, dr * v[:, None])
            dpre = (Wc * dr).sum(1) * (v > 0)
            self.G_encT.index_add_(0, c, xc[r] * dpre[:, None])
            self.G_benc.index_add_(0, c, dpre)
        return err, delta

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
        if self.transcoder:
            # The sparse part reconstructs what the linear path leaves: y - x W_skipᵀ.
            xc, target = xn[:, : self.d_in], xn[:, self.d_in :]
            if self.W_skip is not None:
                target = torch.addmm(target, xc, self.W_skip.T, alpha=-1.0)
        else:
            xc, target = xn - self.b_dec, xn
        if self.autocast is None:
            # Into the same buffer every step: a fresh [batch, d_sae] output is new pages
            # from the kernel each time (glibc maps anything this large afresh), and
            # faulting them in cost 50 ms of a 0.9 s step at 4096 x 16384.
            pre = self._pre
            if pre.shape != (xc.shape[0], self.d_sae):
                pre = self._pre = xc.new_empty(xc.shape[0], self.d_sae)
            torch.addmm(self.b_enc, xc, self.encT.T, out=pre)
        else:
            pre = self.mm_low(xc, self.encT.T, self.b_enc)
        err, delta, n_active = self.rule.gradients(self, target, xc, pre)
        if dead is not None:
            self.rule.aux_gradients(self, pre, dead, err, xc)
        self.G_bdec.add_(delta.sum(0))
        if not self.transcoder:  # b_dec is also subtracted before an SAE's encoder
            self.G_bdec.sub_(self.G_benc @ self.encT)
        if self.G_skip is not None:
            torch.mm(delta.T, xc, out=self.G_skip)
        return err, n_active

    def target(self, xn: Tensor) -> Tensor:
        """What the model reconstructs of normalised rows ``xn``: ``xn`` itself for an SAE,
        the ``y`` of a transcoder's rows ``[x | y]``."""
        return xn[:, self.d_in :] if self.transcoder else xn


def _csr(crow: Tensor, cols: Tensor, vals: Tensor, size: tuple[int, int]) -> Tensor:
    """A sparse CSR matrix (PyTorch warns once that its CSR support is in beta: not news
    to the user of a training loop)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, cols, vals, size, check_invariants=False)


def _sparse_t_mm(a: Tensor, b: Tensor, *, out: Tensor) -> Tensor:
    """``out = aᵀ b`` for a sparse CSR ``a``, written over ``out`` (its contents ignored).

    ``addmm`` with ``beta=0`` into ``out`` is 3-4x faster on a CPU than ``out.copy_(aᵀ @ b)``
    (which zero-fills a fresh result, multiplies, then copies it over): 10-14 ms instead of
    32-45 ms at a 16,384 x 768 gradient."""
    return torch.addmm(out, a.t(), b, beta=0.0, out=out)


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
        model: the SAE (or :class:`~superposition.Transcoder`).
        x: ``[batch, d_in]`` in the user's units (a transcoder's rows ``[x | y]``,
            ``[batch, d_in + d_out]``).
        dead: ``[d_sae]`` bool mask of latents treated as dead by AuxK (not ``"relu"``).
        aux_k, aux_coef, bandwidth: as in :class:`FitConfig`.

    Examples:
        >>> from superposition.sae.model import SparseAutoencoder
        >>> sae = SparseAutoencoder(4, 8, k=2, seed=0)
        >>> gradients(sae, torch.randn(5, 4)).shape == sae.params.shape
        True
    """
    x = model._check_input(x, "x", rows=True)
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
        step.gradients(x * model._row_scale(model._scales()), dead)
        return step.G.clone()
