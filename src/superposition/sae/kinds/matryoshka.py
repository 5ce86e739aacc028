"""``"matryoshka"``: Matryoshka BatchTopK (Bussmann, Nabeshima, Karvonen & Nanda, ICML 2025,
"Learning multi-level features with Matryoshka sparse autoencoders").

The latents are BatchTopK's (the ``k·B`` largest pre-activations of the batch while training, a
learned threshold at inference), but the loss asks every *prefix* of the dictionary to
reconstruct the input on its own: with nested widths ``w_0 < w_1 < ... < w_{L-1} = d_sae``,

    x̂⁽ˡ⁾ = b_dec + Σ_{j < w_l} z_j W_dec,j,      loss = (1/B) Σ_b Σ_l ‖x̂⁽ˡ⁾_b - x_b‖²

(SAELens's ``matryoshka_batchtopk`` sums the levels the same way). The first latents must
stand for the input alone, so they learn the general features (a parent) and cannot leave them
to the later, more specific ones (its children): the pressure that causes feature absorption
in a plain SAE is gone for them.

**Gradient.** A latent in level ``g`` (``w_{g-1} <= j < w_g``) appears in every reconstruction
from level ``g`` on, so with ``δ_l = 2 (x̂⁽ˡ⁾ - x) / B`` and ``D_g = Σ_{l >= g} δ_l``::

    dW_dec,j = Σ_b z_bj D_g,b        dz_bj = W_dec,j · D_g,b        db_dec = Σ_b D_0,b

the plain SAE's formulas (:mod:`superposition.sae.gradients`) with ``δ`` replaced by the
level's ``D_g``. The step works level by level on the kept latents' coordinates, so it costs
about what BatchTopK's does plus ``L`` reconstructions. AuxK on dead latents reconstructs the
full SAE's residual (SAELens's default).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from superposition.sae.gradients import _csr, _sparse_t_mm
from superposition.sae.kinds.batchtopk import BatchTopK
from superposition.sae.kinds.topk import check_k

if TYPE_CHECKING:
    from superposition.sae.gradients import Step

__all__ = ["Matryoshka", "default_widths"]


def default_widths(d_sae: int) -> tuple[int, ...]:
    """Nested widths growing four times a level from ``d_sae / 32`` up to ``d_sae``: this
    library's default, as SynthSAEBench does not state its levels.

    Examples:
        >>> default_widths(4096), default_widths(40), default_widths(3)
        ((128, 512, 2048, 4096), (1, 5, 20, 40), (1, 3))
    """
    widths = sorted({max(1, d_sae // 32), max(1, d_sae // 8), max(1, d_sae // 2), d_sae})
    return tuple(widths)


def check_widths(d_sae: int, widths: object) -> tuple[int, ...]:
    """``matryoshka_widths`` as a tuple of strictly increasing positive ints ending at
    ``d_sae`` (added when missing: the whole dictionary is always the last level)."""
    if widths is None:
        return default_widths(d_sae)
    hint = f"e.g. matryoshka_widths={list(default_widths(d_sae))} for d_sae={d_sae}"
    try:
        values = list(widths)  # type: ignore[call-overload]
    except TypeError:
        raise ValueError(
            f"matryoshka_widths must be a sequence of increasing ints, got {widths!r} ({hint})"
        ) from None
    bad = [w for w in values if isinstance(w, bool) or not isinstance(w, int)]
    if not values or bad:
        raise ValueError(
            f"matryoshka_widths must be a non-empty sequence of ints, got {widths!r} ({hint})"
        )
    if values[-1] != d_sae:
        values.append(d_sae)
    if values[0] < 1 or any(b <= a for a, b in itertools.pairwise(values)):
        raise ValueError(
            f"matryoshka_widths must increase strictly from at least 1 to d_sae={d_sae}, got "
            f"{list(widths)!r} ({hint})"  # type: ignore[call-overload]
        )
    return tuple(values)


@dataclass(frozen=True)
class Matryoshka(BatchTopK):
    """``k`` active latents per sample on average over each training batch; every prefix of
    ``matryoshka_widths`` latents reconstructs the input."""

    name = "matryoshka"

    k: int
    matryoshka_widths: tuple[int, ...]

    @classmethod
    def create(cls, d_in: int, d_sae: int, **given: Any) -> Matryoshka:
        return cls(
            k=check_k(cls.name, d_sae, given.get("k")),
            matryoshka_widths=check_widths(d_sae, given.get("matryoshka_widths")),
        )

    def settings(self) -> dict[str, Any]:
        return {"k": self.k, "matryoshka_widths": list(self.matryoshka_widths)}

    def gradients(
        self, step: Step, xn: Tensor, xc: Tensor, pre: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        crow, cols, vals = self.select(step, pre)
        err, delta = nested_gradients(step, self.matryoshka_widths, crow, cols, vals, xn, xc)
        active = vals > 0
        step.mark_fired(cols, active)
        return err, delta, active.sum()


def nested_gradients(
    step: Step,
    widths: tuple[int, ...],
    crow: Tensor,
    cols: Tensor,
    vals: Tensor,
    xn: Tensor,
    xc: Tensor,
) -> tuple[Tensor, Tensor]:
    """:meth:`~superposition.sae.gradients.Step.sparse_gradients` for the nested loss (module
    docstring): decode level by level, accumulate the gradients into ``step``'s views.
    Returns ``(err, δ)``: the full dictionary's ``x̂ - xn`` and ``dL/db_dec`` per row."""
    B, d_sae = xn.shape[0], step.d_sae
    device = xn.device
    rows = torch.repeat_interleave(torch.arange(B, device=device), crow.diff())
    bounds = torch.tensor(widths[:-1], device=device, dtype=cols.dtype)
    level = torch.bucketize(cols, bounds, right=True)
    parts = []
    for g in range(len(widths)):
        sel = (level == g).nonzero().squeeze(1)
        crow_g = torch.zeros(B + 1, dtype=crow.dtype, device=device)
        crow_g[1:] = torch.bincount(rows[sel], minlength=B).cumsum(0)
        parts.append((sel, _csr(crow_g, cols[sel], vals[sel], (B, d_sae))))
    # x̂⁽ˡ⁾ - x for every level: each adds its latents to the one before.
    errs = []
    err = step.b_dec - xn
    for _, z in parts:
        err = torch.addmm(err, z, step.W_dec)
        errs.append(err)
    dpre = torch.empty_like(vals)
    D = torch.zeros_like(xn)
    for g in reversed(range(len(widths))):
        D.add_(errs[g], alpha=2.0 / B)  # D_g = Σ_{l >= g} δ_l
        sel, z = parts[g]
        torch.addmm(step.G_dec, z.t(), D, out=step.G_dec)
        dz = torch.sparse.sampled_addmm(z, D, step.W_dec.T, beta=0.0).values()
        dpre[sel] = dz
    dpre.mul_(vals > 0)
    _sparse_t_mm(_csr(crow, cols, dpre, (B, d_sae)), xc, out=step.G_encT)
    step.G_benc.index_add_(0, cols, dpre)
    return errs[-1], D
