"""The training loop of :class:`~superposition.SparseAutoencoder`: gradients by hand, fused Adam.

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
are renormalised.

**Adam fused** on the one packed parameter (``SparseAutoencoder.params``), five in-place
operations per step. Training runs on a copy that is written back only when the run succeeds,
so an error halfway (a NaN batch from an iterator) leaves the model as it was.

The gradients are checked against autograd in ``tests/test_sae_train.py``.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor

if TYPE_CHECKING:
    from superposition.sae.model import SparseAutoencoder

__all__ = [
    "FitConfig",
    "FitHistory",
    "Schedule",
    "default_dead_after",
    "default_lr",
    "gradients",
    "lr_multiplier",
    "train",
]

Schedule = Literal["constant", "linear", "cosine"]
_SCHEDULES = ("constant", "linear", "cosine")
_SINGLE_THREAD_BELOW = 1 << 16  # pre-activations per batch (batch x d_sae)
_CHECKPOINT_FORMAT = 1


@dataclass(frozen=True)
class FitConfig:
    """Validated settings of :meth:`~superposition.SparseAutoencoder.fit`.

    Examples:
        >>> FitConfig(samples=1000).steps
        1
        >>> FitConfig(samples=0)
        Traceback (most recent call last):
        ValueError: samples must be a positive int, got 0
    """

    samples: int
    batch_size: int = 4096
    lr: float = 4e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    schedule: Schedule = "linear"
    warmup: float = 0.02
    decay: float = 0.2
    aux_k: int | None = None
    aux_coef: float = 1.0
    dead_after: int | None = None
    bandwidth: float = 0.5
    penalty_warmup: float = 0.1
    log_every: int = 50

    def __post_init__(self) -> None:
        for name in ("samples", "batch_size", "log_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if self.dead_after is not None and (
            isinstance(self.dead_after, bool)
            or not isinstance(self.dead_after, int)
            or self.dead_after < 1
        ):
            raise ValueError(f"dead_after must be a positive int or None, got {self.dead_after!r}")
        if self.aux_k is not None and (
            isinstance(self.aux_k, bool) or not isinstance(self.aux_k, int) or self.aux_k < 1
        ):
            raise ValueError(f"aux_k must be a positive int or None, got {self.aux_k!r}")
        for name in ("lr", "eps", "bandwidth"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive finite float, got {v!r}")
        for name in ("warmup", "decay", "penalty_warmup"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0 <= v <= 1):
                raise ValueError(f"{name} must be a fraction of training in [0, 1], got {v!r}")
        if not (isinstance(self.aux_coef, (int, float)) and self.aux_coef >= 0):
            raise ValueError(f"aux_coef must be a non-negative float, got {self.aux_coef!r}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two floats in [0, 1), got {self.betas!r}")
        if self.schedule not in _SCHEDULES:
            raise ValueError(f"schedule must be one of {_SCHEDULES}, got {self.schedule!r}")

    @property
    def steps(self) -> int:
        """Optimizer steps: ``ceil(samples / batch_size)``."""
        return -(-self.samples // self.batch_size)


def default_dead_after(model: SparseAutoencoder) -> int:
    """Samples without firing after which a latent counts as dead, when not given.

    200 times the mean gap between firings of a latent if all fired equally often
    (``d_sae // k`` samples for TopK; ``d_sae`` for the other kinds): 20,400 samples for
    ``d_sae=512, k=5``. A latent that fires at all regularly is never caught by it.

    Examples:
        >>> from superposition.sae.model import SparseAutoencoder
        >>> default_dead_after(SparseAutoencoder(128, 512, k=5))
        20400
    """
    return 200 * max(1, model.d_sae // (model.k or 1))


def default_lr(d_sae: int) -> float:
    """Adam's peak learning rate when none is given: ``4e-3 · min(1, sqrt(512 / d_sae))``.

    Gao et al. (2024, "Scaling and evaluating sparse autoencoders") find the best learning
    rate falls as ``1 / sqrt(n_latents)``. Measured here on MiniLM's layer 0 (6,144 latents,
    k = 32, 100 steps of 4,096 tokens): 4e-3 left 42 % of latents dead (FVU 0.106), 2e-3
    13 % (0.122), 1.2e-3 5 % (0.146), 5e-4 3 % (0.233); the rule gives 1.15e-3. Up to 512
    latents it keeps 4e-3, where synthetic features are recovered at MCC 0.99.

    Examples:
        >>> default_lr(512), round(default_lr(6144), 6)
        (0.004, 0.001155)
    """
    return 4e-3 * min(1.0, math.sqrt(512 / d_sae))


def lr_multiplier(schedule: Schedule, step: int, steps: int, warmup: float, decay: float) -> float:
    """Learning-rate multiplier at 0-based ``step``: linear warm-up over the first ``warmup``
    fraction, then constant, then ``schedule`` ("linear" or "cosine") to 0 over the last
    ``decay`` fraction.

    Examples:
        >>> [lr_multiplier("linear", s, 10, 0.2, 0.5) for s in (0, 1, 4, 5, 9)]
        [0.5, 1.0, 1.0, 1.0, 0.2]
    """
    mult = 1.0
    warm = round(warmup * steps)
    if step < warm:
        mult = (step + 1) / warm
    tail = round(decay * steps)
    if schedule != "constant" and tail and step >= steps - tail:
        frac = (steps - step) / tail  # 1 at the start of the decay, 1/tail at the last step
        mult *= frac if schedule == "linear" else 0.5 * (1 - math.cos(math.pi * frac))
    return mult


@dataclass
class FitHistory:
    """What :meth:`~superposition.SparseAutoencoder.fit` recorded.

    Attributes:
        steps: the (0-based) steps at which values were recorded; always includes the last.
        samples: training samples seen at those steps.
        mse: ``(1/B) Σ_b ‖x̂_b - x_b‖²`` of that step's batch, in the normalised space.
        fvu: that batch's fraction of variance unexplained.
        l0: mean number of active latents per sample on that batch.
        dead: number of latents that had not fired for ``dead_after`` samples.
        config: the settings of the run.
    """

    steps: list[int] = field(default_factory=list)
    samples: list[int] = field(default_factory=list)
    mse: list[float] = field(default_factory=list)
    fvu: list[float] = field(default_factory=list)
    l0: list[float] = field(default_factory=list)
    dead: list[int] = field(default_factory=list)
    config: FitConfig | None = field(default=None, repr=False)


class _Step:
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
        :func:`_batch_stats` turns them into the recorded numbers, on the steps that record
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


def _batch_stats(xn: Tensor, err: Tensor, l0: float) -> tuple[float, float, float]:
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
        step = _Step(model, model.params.data, config)
        step.gradients(x * model.input_scale, dead)
        return step.G.clone()


def _batches(
    source: Tensor | Iterable[Tensor], batch_size: int, generator: torch.Generator, skip: int = 0
) -> Iterator[Tensor]:
    """Batches of exactly ``batch_size`` rows (the last may be short if the source runs dry).

    A tensor source passes over its first ``skip`` batches without gathering their rows (the
    permutations are still drawn, so the generator ends where it would have); other sources
    ignore ``skip`` (the caller reads and discards their batches).
    """
    if isinstance(source, Tensor):
        n = source.shape[0]
        while True:
            perm = torch.randperm(n, generator=generator)
            for start in range(0, n - batch_size + 1, batch_size):
                if skip:
                    skip -= 1
                    continue
                yield source[perm[start : start + batch_size]]
            if n < batch_size:
                if skip:
                    skip -= 1
                    continue
                yield source[perm]
    else:
        pending: list[Tensor] = []
        have = 0
        for chunk in source:
            pending.append(chunk)
            have += chunk.shape[0]
            while have >= batch_size:
                whole = torch.cat(pending) if len(pending) > 1 else pending[0]
                yield whole[:batch_size]
                rest = whole[batch_size:]
                pending, have = ([rest], rest.shape[0]) if rest.shape[0] else ([], 0)
        if have:
            yield torch.cat(pending)


Pending = tuple[int, int, float, float, float, int]  # (step, seen, mse, fvu, l0, dead)


# What a checkpoint keeps of the FitHistory (all but its config, which the run passes again).
_HISTORY_FIELDS = ("steps", "samples", "mse", "fvu", "l0", "dead")


@dataclass
class _Resume:
    """A run's state between two steps, read back by :func:`_read_checkpoint`.

    ``step`` steps are done (``seen`` samples); the tensors are on the CPU.
    ``generator_state`` is the state of the run's generator when the run began (the data
    stream is rebuilt from it and fast-forwarded ``step`` batches). ``pending`` holds the
    numbers of the last step done when ``history`` did not record them (they are recorded
    only if the run ends right there, as an uninterrupted run would).
    """

    step: int
    seen: int
    params: Tensor
    m: Tensor
    v: Tensor
    since_fired: Tensor
    threshold: Tensor
    scale: Tensor
    generator_state: Tensor
    history: FitHistory
    pending: Pending | None


@dataclass(frozen=True)
class _CheckpointPlan:
    """Where and how often :func:`train` writes its state.

    ``every``: steps between checkpoints (``None``: only at the end). ``identity``: what a
    resumed run must match (:func:`_run_identity`). ``generator_state``: the run's generator
    before its first draw.
    """

    path: str | os.PathLike[str]
    every: int | None
    identity: dict[str, Any]
    generator_state: Tensor


def _run_identity(
    model: SparseAutoencoder,
    config: FitConfig,
    world_size: int,
    source: object,
    autocast: torch.dtype | None,
) -> dict[str, Any]:
    """What a checkpoint records of the run that wrote it, and a resumed run must match:
    the SAE's constructor arguments and dtype, the fit's settings, the number of ranks, the
    source's type (and rows, for a tensor) and the autocast dtype. JSON values.

    Examples:
        >>> from superposition.sae.model import SparseAutoencoder
        >>> sae = SparseAutoencoder(4, 8, k=2, seed=0)
        >>> _run_identity(sae, FitConfig(samples=64), 1, torch.zeros(10, 4), None)["source"]
        {'type': 'Tensor', 'rows': 10}
    """
    about: dict[str, Any] = {"type": type(source).__name__}
    if isinstance(source, Tensor):
        about["rows"] = int(source.shape[0])
    identity = {
        "sae": {**model.config(), "dtype": str(model.params.dtype)},
        "fit": {**asdict(config), "world_size": world_size, "autocast": str(autocast)},
        "source": about,
    }
    # Through JSON, so that it compares equal to what a checkpoint read back holds.
    return dict(json.loads(json.dumps(identity)))


def _write_checkpoint(
    path: str | os.PathLike[str], tensors: dict[str, Tensor], meta: dict[str, Any]
) -> None:
    """Write a checkpoint: ``path.safetensors`` (tensors, and ``meta`` in its header) then
    ``path.json`` (``meta`` again, for people and tools), each replaced atomically.

    The tensor file alone is what :func:`_read_checkpoint` reads, so a run killed between
    the two writes leaves a whole, usable checkpoint (the JSON one step behind).
    """
    from safetensors.torch import save_file

    from superposition import _io

    text = json.dumps(meta, indent=1)
    weights, sidecar = _io.saved_paths(path)
    with _io.atomic_path(weights) as temp:
        save_file(
            {k: t.detach().cpu().contiguous() for k, t in tensors.items()},
            str(temp),
            metadata={"checkpoint": text},
        )
    _io.atomic_write(sidecar, text + "\n")


def _differences(theirs: dict[str, Any], ours: dict[str, Any]) -> str:
    keys = [k for k in {**theirs, **ours} if theirs.get(k) != ours.get(k)]
    return ", ".join(f"{k}={theirs.get(k)!r} there but {ours.get(k)!r} here" for k in keys)


def _read_checkpoint(path: str | os.PathLike[str], identity: dict[str, Any]) -> _Resume:
    """The state in the checkpoint at ``path``, checked against this run's ``identity``
    (:func:`_run_identity`) before anything is changed.

    Raises:
        FileNotFoundError: there is no checkpoint at ``path``.
        ValueError: it was written by another format version, or by a run with another
            SAE, other fit arguments, another number of ranks or another kind of source.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    from superposition import _io

    weights, _ = _io.saved_paths(path)
    if not weights.exists():
        raise FileNotFoundError(
            f"cannot resume from {str(path)!r}: {str(weights)!r} does not exist; pass the "
            "checkpoint= path of the run to resume"
        )
    with safe_open(str(weights), "pt") as f:
        header = f.metadata() or {}
    try:
        meta = json.loads(header["checkpoint"])
    except (KeyError, ValueError) as err:
        raise ValueError(
            f"{str(weights)!r} is not a checkpoint of SparseAutoencoder.fit (its header holds "
            "no checkpoint state); pass the checkpoint= path of the run to resume"
        ) from err
    if meta.get("format_version") != _CHECKPOINT_FORMAT:
        raise ValueError(
            f"{str(weights)!r} has checkpoint format_version {meta.get('format_version')!r}, "
            f"expected {_CHECKPOINT_FORMAT}; it was written by another version of superposition"
        )
    for part, what in (("sae", "an SAE with"), ("fit", "a fit with"), ("source", "a source")):
        if meta[part] != identity[part]:
            raise ValueError(
                f"cannot resume from {str(path)!r}: it was written by {what} "
                f"{_differences(meta[part], identity[part])}; resume with the SAE, fit "
                "arguments and source of the run that wrote it (or start afresh without resume=)"
            )
    t = load_file(str(weights))
    history = FitHistory(**{k: meta["history"][k] for k in _HISTORY_FIELDS})
    pending = meta["pending"]
    return _Resume(
        step=meta["step"],
        seen=meta["seen"],
        params=t["params"],
        m=t["m"],
        v=t["v"],
        since_fired=t["since_fired"],
        threshold=t["threshold"],
        scale=t["input_scale"],
        generator_state=t["generator_state"],
        history=history,
        pending=None if pending is None else tuple(pending),
    )


class _Ranks:
    """Data parallelism over a ``torch.distributed`` group: each rank computes the gradient
    of its own rows, and one ``all_reduce`` per step sums, weighted by rows, the gradients,
    which latents fired, BatchTopK's threshold and whether any rank failed or ran dry. Every
    rank then takes the same Adam step, so the parameters stay equal without being sent."""

    def __init__(self, rank: int, size: int, per_rank: int, same_source: bool) -> None:
        self.rank, self.size, self.per_rank, self.same_source = rank, size, per_rank, same_source

    def local(self, batch: Tensor) -> Tensor:
        """This rank's rows of a batch: its slice of a batch every rank drew alike, else all."""
        if not self.same_source:
            return batch
        return batch[self.rank * self.per_rank : (self.rank + 1) * self.per_rank]

    def gradients(
        self,
        step_: _Step,
        batch: Tensor | None,
        check: Callable[[Tensor], Tensor],
        scale: float,
        dead: Tensor | None,
    ) -> tuple[Tensor, Tensor, float, int] | None:
        """``(xn, err, l0, rows of all ranks)`` with ``step_.G`` the mean gradient over every
        rank's rows and ``step_.fired_any`` whether a latent fired on any rank; ``None`` when
        a rank's source ran dry (every rank stops)."""
        import torch.distributed as dist

        from superposition.distributed import check_all_ranks

        G = step_.G
        G.zero_()
        error: Exception | None = None
        xn = err = torch.empty(0, step_.d_in, dtype=G.dtype, device=G.device)
        l0, rows = 0.0, 0
        try:
            if batch is not None:
                xn = check(self.local(batch)).to(G.device, G.dtype, non_blocking=True) * scale
                rows = int(xn.shape[0])
                if rows:
                    err, n_active = step_.gradients(xn, dead)
                    l0 = float(n_active) / rows
        except Exception as e:  # every rank hears of it below
            error = e
        # On the parameters' device: NCCL reduces CUDA tensors only.
        flags = torch.tensor(
            [rows, float(error is not None), float(batch is None)], dtype=G.dtype, device=G.device
        )
        buf = torch.cat(
            [
                G.view(-1) * rows,
                step_.fired_any.to(G.dtype),
                flags,
                step_.threshold.view(1).to(G.dtype),
            ]
        )
        dist.all_reduce(buf)
        total, failed, dry, threshold = buf[-4:].tolist()
        if failed:
            check_all_ranks(error)
        if dry:
            return None
        n = G.numel()
        G.view(-1).copy_(buf[:n]).div_(total)
        step_.fired_any.copy_(buf[n : n + step_.d_sae] > 0)
        # BatchTopK's threshold follows each rank's own batches; the ranks keep their mean.
        step_.threshold.fill_(threshold / self.size)
        return xn, err, l0, int(total)

    def stats(self, xn: Tensor, err: Tensor, l0: float) -> tuple[float, float, float]:
        """:func:`_batch_stats` of the batch of all ranks together."""
        import torch.distributed as dist

        B = xn.shape[0]
        buf = torch.cat(
            [
                torch.stack([err.double().square().sum(), xn.double().square().sum()]),
                torch.tensor([l0 * B, B], dtype=torch.float64, device=xn.device),
                xn.double().sum(0),
            ]
        )
        dist.all_reduce(buf)
        e2, x2, l0_sum, n = buf[:4].tolist()
        mean = buf[4:] / n
        centred = x2 - n * float(mean.square().sum())
        mse = e2 / n
        return mse, mse / centred * n if centred > 0 else math.nan, l0_sum / n


def train(
    model: SparseAutoencoder,
    source: Tensor | Iterable[Tensor],
    config: FitConfig,
    *,
    generator: torch.Generator,
    check: Callable[[Tensor], Tensor],
    progress: bool = False,
    share: tuple[int, int] | None = None,
    same_source: bool = False,
    autocast: torch.dtype | None = None,
    checkpoint: _CheckpointPlan | None = None,
    resume: _Resume | None = None,
) -> FitHistory:
    """Train ``model`` in place; the engine of :meth:`~superposition.SparseAutoencoder.fit`.

    ``source`` is a ``[n, d_in]`` tensor (reshuffled each epoch) or an iterable of
    ``[batch, d_in]`` tensors (re-batched to ``config.batch_size``); ``check`` validates each
    incoming batch. The model's normalisation must already be set.

    With ``share=(rank, world_size)`` (an initialised process group) the step's batch is
    ``world_size * config.batch_size`` rows, ``config.batch_size`` from each rank:
    ``same_source`` means every rank draws the same batches of that size (the same tensor or
    synthetic stream, the same generator) and keeps its slice; otherwise each rank's source
    is its own. ``config.samples`` counts the rows of all ranks.

    Training runs on the parameters' device: every buffer is allocated there and each batch
    is moved there as it arrives. ``autocast`` (``torch.bfloat16`` or ``torch.float16``)
    runs the dense forward products (the encoder's, and the decoder's of the dense kinds) in
    that dtype; their results, the gradients and Adam stay in the parameters' dtype.

    ``checkpoint`` writes the state after every ``checkpoint.every`` steps and at the end
    (rank 0 alone under ``share``); ``resume`` continues from such a state, read by
    :func:`_read_checkpoint`: the source (rebuilt by the caller as it was at the start of the
    run, from the generator's saved state) is fast-forwarded by the steps already done, and
    the run then takes exactly the steps the uninterrupted run took.
    """
    from tqdm.auto import tqdm

    P = model.params.data.clone()
    if resume is not None:
        P.copy_(resume.params)
    step_ = _Step(model, P, config, autocast)
    G = step_.G
    m = torch.zeros_like(P)
    v = torch.zeros_like(P)
    start = 0
    if resume is not None:
        m.copy_(resume.m)
        v.copy_(resume.v)
        step_.threshold.copy_(resume.threshold)
        start = resume.step
    denom = torch.empty_like(P)
    beta1, beta2 = config.betas
    steps = config.steps
    ranks: _Ranks | None = None
    if share is not None and share[1] > 1:
        import torch.distributed as dist

        ranks = _Ranks(share[0], share[1], config.batch_size, same_source)
        steps = -(-config.samples // (config.batch_size * ranks.size))
        dist.broadcast(P, src=0)  # every rank starts from rank 0's parameters
    since_fired = torch.zeros(model.d_sae, dtype=torch.long, device=P.device)
    dead_after = config.dead_after or default_dead_after(model)
    history = FitHistory(config=config)
    scale_t = model.scale.clone()
    seen = 0
    pending: Pending | None = None
    if resume is not None:
        since_fired.copy_(resume.since_fired)
        history = replace(resume.history, config=config)
        scale_t.copy_(resume.scale)
        seen = resume.seen
        pending = resume.pending
    scale = float(scale_t)
    aux_kind = model.kind in ("topk", "batchtopk", "jumprelu")
    writes = checkpoint is not None and (ranks is None or ranks.rank == 0)
    # The last step's (step, seen, batch, error, l0, dead): its numbers are computed only on
    # the steps that record them. L0 and the dead count stay tensors until then, so that a
    # step on a GPU does not wait for them.
    last: tuple[int, int, Tensor, Tensor, Tensor | float, Tensor] | None = None

    def numbers(
        step: int, seen: int, xn: Tensor, err: Tensor, active: Tensor | float, n_dead: Tensor
    ) -> Pending:
        dead = int(n_dead)
        if ranks is None:
            mse, fvu, l0 = _batch_stats(xn, err, float(active) / xn.shape[0])
        else:
            assert isinstance(active, float)  # _Ranks.gradients gives the L0 itself
            mse, fvu, l0 = ranks.stats(xn, err, active)
        return step, seen, mse, fvu, l0, dead

    def record(
        step: int, seen: int, xn: Tensor, err: Tensor, active: Tensor | float, n_dead: Tensor
    ) -> None:
        append(numbers(step, seen, xn, err, active, n_dead))

    def append(row: Pending) -> None:
        step, seen, mse, fvu, l0, dead = row
        history.steps.append(step)
        history.samples.append(seen)
        history.mse.append(mse)
        history.fvu.append(fvu)
        history.l0.append(l0)
        history.dead.append(dead)
        bar.set_postfix(fvu=f"{fvu:.3g}", l0=f"{l0:.3g}", refresh=False)

    def save(done: int) -> None:
        """Write the state after ``done`` steps (every rank computes the pending numbers,
        a collective under ``share``; rank 0 alone writes)."""
        assert checkpoint is not None
        late = pending
        if last is not None and history.steps[-1:] != [last[0]]:
            late = numbers(*last)
        elif last is not None:
            late = None
        error: Exception | None = None
        if writes:
            try:
                write(done, late)
            except Exception as err:  # the other ranks hear of it below
                error = err
        if ranks is not None:
            # A failed write on rank 0 stops every rank now, not at a collective's timeout.
            from superposition.distributed import check_all_ranks

            check_all_ranks(error)
        elif error is not None:
            raise error

    def write(done: int, late: Pending | None) -> None:
        assert checkpoint is not None
        tensors = {
            "params": P,
            "m": m,
            "v": v,
            "since_fired": since_fired,
            "threshold": step_.threshold,
            "input_scale": scale_t,
            "generator_state": checkpoint.generator_state,
        }
        meta = {
            "format_version": _CHECKPOINT_FORMAT,
            **checkpoint.identity,
            "step": done,
            "seen": seen,
            "history": {k: getattr(history, k) for k in _HISTORY_FIELDS},
            "pending": None if late is None else list(late),
        }
        _write_checkpoint(checkpoint.path, tensors, meta)

    bar = tqdm(
        total=steps,
        initial=start,
        disable=not progress or (ranks is not None and ranks.rank != 0),
        desc="SparseAutoencoder.fit",
        leave=False,
    )
    threads = torch.get_num_threads()
    if config.batch_size * model.d_sae < _SINGLE_THREAD_BELOW:
        # Below ~65k pre-activations per batch an op is over before a second thread pays off
        # (TopK on 2 idle cores, 2 threads vs 1: the same speed at 16k and 32k, 1.5x at 131k,
        # 1.65x at 262k and 524k, 1.57x at 2M). A busy machine makes the spinning OpenMP
        # barriers cost more; torch.set_num_threads(1) before fit opts out.
        torch.set_num_threads(1)
    try:
        per_step = config.batch_size
        if ranks is not None and same_source:
            per_step *= ranks.size
        batches = _batches(source, per_step, generator, skip=start)
        if start and not isinstance(source, Tensor):
            # Fast-forward: read and discard the batches of the steps already done.
            error: Exception | None = None
            for done in range(start):
                if next(batches, None) is None:
                    error = ValueError(
                        f"the source ran out after {done} batches while fast-forwarding to the "
                        f"checkpoint's step {start}; resume with the same source as the run "
                        "that wrote the checkpoint"
                    )
                    break
            if ranks is not None:
                from superposition.distributed import check_all_ranks

                check_all_ranks(error)
            elif error is not None:
                raise error
        every = checkpoint.every if checkpoint is not None else None
        done = start
        with torch.no_grad():
            ran_dry = False
            for step in range(start, steps + 1):
                batch = next(batches, None)
                if step >= steps or (batch is None and ranks is None):
                    # One batch past the last step tells a source that ran dry just then.
                    ran_dry = batch is None
                    break
                dead = since_fired >= dead_after if aux_kind else None
                step_.fired_any.zero_()
                ramp = round(config.penalty_warmup * steps)
                step_.penalty_scale = min(1.0, (step + 1) / ramp) if ramp else 1.0
                l0: Tensor | float
                if ranks is None:
                    assert batch is not None
                    xn = check(batch).to(P.device, P.dtype, non_blocking=True) * scale
                    err, l0 = step_.gradients(xn, dead)
                    rows = xn.shape[0]
                else:
                    # Ranks must agree to stop: the step's all_reduce says whether any ran dry.
                    shared = ranks.gradients(step_, batch, check, scale, dead)
                    if shared is None:
                        ran_dry = True
                        break
                    xn, err, l0, rows = shared
                seen += rows
                since_fired += rows
                since_fired.masked_fill_(step_.fired_any, 0)
                last = (step, seen, xn, err, l0, (since_fired >= dead_after).sum())
                if step == steps - 1 or step % config.log_every == 0:
                    record(*last)
                # Keep decoder rows unit-norm: drop each row's gradient along the row.
                W, Gd = step_.W_dec, step_.G_dec
                Gd.sub_(W * (Gd * W).sum(1, keepdim=True))
                lr = config.lr * lr_multiplier(
                    config.schedule, step, steps, config.warmup, config.decay
                )
                t = step + 1
                bc1 = 1.0 - beta1**t
                sqrt_bc2 = math.sqrt(1.0 - beta2**t)
                m.lerp_(G, 1.0 - beta1)
                v.mul_(beta2).addcmul_(G, G, value=1.0 - beta2)
                torch.sqrt(v, out=denom).add_(config.eps * sqrt_bc2)
                P.addcdiv_(m, denom, value=-lr * sqrt_bc2 / bc1)
                W.div_(W.norm(dim=1, keepdim=True).clamp_min(1e-12))
                bar.update(1)
                done = step + 1
                if every is not None and done % every == 0 and done < steps:
                    save(done)
            if ran_dry and seen < config.samples:
                warnings.warn(
                    f"the source ran out after {seen} of samples={config.samples} samples; "
                    f"training stopped there",
                    RuntimeWarning,
                    stacklevel=3,
                )
            if last is not None and history.steps[-1:] != [last[0]]:
                record(*last)
            elif last is None and pending is not None and history.steps[-1:] != [pending[0]]:
                append(pending)  # resumed at the very end of a run whose last step went unrecorded
            if checkpoint is not None:
                save(done)
            model.params.data.copy_(P)
            model.threshold.copy_(step_.threshold)
            model.scale.copy_(scale_t)
    finally:
        torch.set_num_threads(threads)
    bar.close()
    return history
