"""The training loop of :class:`~superposition.toy.model.ToyModel`: the library's hottest loop.

The toy models are so small that a step of the textbook loop (sample, forward, autograd
backward, ``torch.optim.AdamW``) spends most of its time on per-operation overhead and on
memory traffic of batch-sized temporaries, not on arithmetic. This loop does the same
mathematics with far less of both:

* **Sampling** writes into a preallocated buffer with one uniform draw per feature
  (:meth:`~superposition.SparseFeatureDataset.fill_`).
* **Gradients in closed form.** With ``h = Wx`` (``ReLU`` for the hidden-ReLU variants),
  ``o = W_outᵀh + b`` and the per-instance loss ``mean_{batch,features} I_f (y - target)^2``,
  ``y = o`` or ``ReLU(o)``::

      t      = (o - target) * [o > 0 for ReLU outputs]            # [I, B, F]
      dL/do  = t * w,          w = 2 I / (B F)                     # per feature: a column scale
      dW_out = hᵀ (t w) = (hᵀ t) * w,   db = (Σ_batch t) * w
      dh     = (t w) W_outᵀ = t (W_out * w)ᵀ     (* [h > 0] for a ReLU hidden layer)
      dW    += dhᵀ x

  The bias rides along as an extra row of the weights times a column of ones in ``h``, so one
  batched matmul yields both ``dW_out`` and ``db``, and for the linear model ``o - x`` is one
  ``baddbmm``. Every batch-sized result lands in a preallocated buffer.
* **AdamW fused** on the single packed parameter tensor (``ToyModel.params``): seven in-place
  operations per step for all parameters of all instances, same update as
  ``torch.optim.AdamW`` (weight decay on every parameter, bias-corrected moments).

The closed-form gradients are checked against autograd in ``tests/test_toy_model.py`` and the
speed against the plain loop in ``benchmarks/bench_toy.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor

if TYPE_CHECKING:
    from superposition.toy.data import SparseFeatureDataset
    from superposition.toy.model import ToyModel

__all__ = ["Schedule", "TrainConfig", "TrainHistory", "gradients", "lr_multiplier", "train"]

Schedule = Literal["constant", "linear", "cosine"] | Callable[[int, int], float]
_SCHEDULES = ("constant", "linear", "cosine")
_threshold_backward = torch.ops.aten.threshold_backward.grad_input
_SINGLE_THREAD_BELOW = 1 << 20  # batch elements (instances x batch x features)


@dataclass(frozen=True)
class TrainConfig:
    """Validated settings of :meth:`~superposition.ToyModel.fit` (the TMS notebook's defaults).

    Examples:
        >>> TrainConfig(steps=100)
        TrainConfig(steps=100, batch_size=1024, lr=0.001, weight_decay=0.01, betas=(0.9, 0.999), \
eps=1e-08, schedule='constant', warmup_steps=0, log_every=None)
        >>> TrainConfig(lr=-1.0)
        Traceback (most recent call last):
        ValueError: lr must be a positive finite float, got -1.0
    """

    steps: int = 10_000
    batch_size: int = 1024
    lr: float = 1e-3
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    schedule: Schedule = "constant"
    warmup_steps: int = 0
    log_every: int | None = None

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if (
            isinstance(self.warmup_steps, bool)
            or not isinstance(self.warmup_steps, int)
            or (self.warmup_steps < 0)
        ):
            raise ValueError(f"warmup_steps must be a non-negative int, got {self.warmup_steps!r}")
        if self.log_every is not None and (
            isinstance(self.log_every, bool)
            or not isinstance(self.log_every, int)
            or self.log_every < 1
        ):
            raise ValueError(f"log_every must be a positive int or None, got {self.log_every!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive finite float, got {self.lr!r}")
        wd = self.weight_decay
        if not (isinstance(wd, (int, float)) and math.isfinite(wd) and wd >= 0):
            raise ValueError(f"weight_decay must be a non-negative float, got {wd!r}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two floats in [0, 1), got {self.betas!r}")
        if not self.eps > 0:
            raise ValueError(f"eps must be positive, got {self.eps!r}")
        if not callable(self.schedule) and self.schedule not in _SCHEDULES:
            raise ValueError(
                f"schedule must be one of {_SCHEDULES} or a function (step, steps) -> multiplier, "
                f"got {self.schedule!r}"
            )


def lr_multiplier(schedule: Schedule, step: int, steps: int, warmup_steps: int = 0) -> float:
    """Learning-rate multiplier at 0-based ``step`` of ``steps`` (the TMS notebook's schedules).

    Examples:
        >>> [round(lr_multiplier("cosine", s, 4), 3) for s in range(4)]
        [1.0, 0.854, 0.5, 0.146]
        >>> lr_multiplier("constant", 0, 10, warmup_steps=4)
        0.25
    """
    if callable(schedule):
        mult = float(schedule(step, steps))
    elif schedule == "constant":
        mult = 1.0
    elif schedule == "linear":
        mult = 1.0 - step / steps
    else:
        mult = 0.5 * (1.0 + math.cos(math.pi * step / steps))
    if step < warmup_steps:
        mult *= (step + 1) / warmup_steps
    return mult


@dataclass
class TrainHistory:
    """Per-instance training losses recorded by :meth:`~superposition.ToyModel.fit`.

    Attributes:
        steps: the (0-based) steps at which losses were recorded; always includes the last.
        losses: ``[len(steps), instances]`` loss of each instance on that step's batch.
        config: the settings of the run.

    Examples:
        >>> h = TrainHistory(steps=[0, 9], losses=torch.ones(2, 3), config=TrainConfig(steps=10))
        >>> h.final.shape
        torch.Size([3])
    """

    steps: list[int]
    losses: Tensor
    config: TrainConfig = field(repr=False)

    @property
    def final(self) -> Tensor:
        """``[instances]`` loss at the last recorded step."""
        return self.losses[-1]


class _Buffers:
    """Preallocated batch-sized tensors and the gradient rule of one model variant."""

    def __init__(self, model: ToyModel, importance: Tensor, batch_size: int) -> None:
        P = model.params.data
        inst, _, feats = P.shape
        hid = model.n_hidden
        dev, dt = P.device, P.dtype
        self.activation = model.activation
        self.hid = hid
        self.P = P
        self.W = P[:, :hid]
        self.Pout = P[:, hid:]  # [W_out; b] for "abs", [b] for tied models
        tied = model.activation != "abs"
        self.Pout_full = P if tied else P[:, hid:]  # [I, hid+1, F]: output weights and bias
        self.Wout = P[:, :hid] if tied else P[:, hid : 2 * hid]
        self.G = torch.zeros_like(P)
        self.Gout = self.G if tied else self.G[:, hid:]
        self.GW = self.G[:, :hid]
        self.x = torch.empty(inst, batch_size, feats, device=dev, dtype=dt)
        self.bits = torch.empty(inst, batch_size, feats, dtype=torch.int32, device=P.device)
        self.target = self.x if tied else torch.empty_like(self.x)
        self.h_aug = torch.empty(inst, batch_size, hid + 1, device=dev, dtype=dt)
        self.h_aug[..., hid] = 1.0
        self.h = self.h_aug[..., :hid]
        self.t = torch.empty_like(self.x)
        self.o = torch.empty_like(self.x) if model.activation != "linear" else self.t
        self.dh = torch.empty(inst, batch_size, hid, device=dev, dtype=dt)
        self.w = (2.0 / (batch_size * feats)) * importance.to(dev, dt)[:, None, :]
        self.Ww = torch.empty(inst, hid, feats, device=dev, dtype=dt)

    def gradients(self) -> Tensor:
        """Loss gradient w.r.t. the packed parameters for the batch in ``x``, into ``G``."""
        x, h, t, o = self.x, self.h, self.t, self.o
        torch.bmm(x, self.W.mT, out=h)
        if self.activation in ("relu_hidden", "abs"):
            h.relu_()
        if self.activation == "abs":
            torch.abs(x, out=self.target)
        if self.activation == "linear":
            torch.baddbmm(x, self.h_aug, self.P, beta=-1, out=t)  # o - x in one matmul
        else:
            torch.bmm(self.h_aug, self.Pout_full, out=o)
            torch.sub(o, self.target, out=t)
            _threshold_backward(t, o, 0, grad_input=t)  # ReLU output: no gradient where o <= 0
        torch.bmm(self.h_aug.mT, t, out=self.Gout)  # [hᵀt; Σ_batch t]
        self.Gout.mul_(self.w)
        torch.mul(self.Wout, self.w, out=self.Ww)
        torch.bmm(t, self.Ww.mT, out=self.dh)
        if self.activation in ("relu_hidden", "abs"):
            _threshold_backward(self.dh, h, 0, grad_input=self.dh)
        if self.activation == "abs":
            torch.bmm(self.dh.mT, x, out=self.GW)
        else:
            self.GW.baddbmm_(self.dh.mT, x)
        return self.G


def gradients(model: ToyModel, x: Tensor, importance: Tensor | float = 1.0) -> Tensor:
    """Closed-form gradient of ``model.loss(x, importance)`` w.r.t. ``model.params``.

    The gradient the training loop uses, exposed so that it can be checked against autograd.

    Args:
        model: the model.
        x: ``[batch, instances, n_features]``.
        importance: ``[instances, n_features]`` or a float.

    Returns:
        ``[instances, rows, n_features]``, laid out like ``model.params``.

    Examples:
        >>> from superposition.toy.model import ToyModel
        >>> model = ToyModel(4, 2, n_instances=2, seed=0)
        >>> x = torch.rand(8, 2, 4)
        >>> model.loss(x).backward()
        >>> torch.allclose(gradients(model, x), model.params.grad, atol=1e-6)
        True
    """
    x = model._check_x(x)
    imp = torch.as_tensor(importance, dtype=x.dtype).expand(model.n_instances, model.n_features)
    with torch.no_grad():
        buf = _Buffers(model, imp, x.shape[0])
        buf.x.copy_(x.transpose(0, 1))
        return buf.gradients().clone()


def train(
    model: ToyModel,
    data: SparseFeatureDataset,
    config: TrainConfig,
    *,
    generator: torch.Generator,
    progress: bool = True,
) -> TrainHistory:
    """Train ``model`` in place on ``data``; the engine of :meth:`~superposition.ToyModel.fit`.

    Args:
        model: the model; its packed ``params`` are updated in place.
        data: input distribution matching the model's instances and features.
        config: optimisation settings.
        generator: randomness of the batches.
        progress: show a tqdm progress bar.

    Returns:
        The loss history (also stored as ``model.history`` by ``fit``).

    Examples:
        >>> from superposition.toy.data import SparseFeatureDataset
        >>> from superposition.toy.model import ToyModel
        >>> model = ToyModel(3, 2, seed=0)
        >>> hist = train(model, SparseFeatureDataset(3, 0.5), TrainConfig(steps=5, log_every=2),
        ...              generator=torch.Generator().manual_seed(0), progress=False)
        >>> hist.steps
        [0, 2, 4]
    """
    from tqdm.auto import tqdm

    P = model.params.data
    if generator.device != P.device:
        seed = int(torch.randint(2**62, (), generator=generator))
        generator = torch.Generator(P.device).manual_seed(seed)
    imp = data.importance.to(P.device, P.dtype)
    buf = _Buffers(model, imp, config.batch_size)
    G = buf.G
    m = torch.zeros_like(P)
    v = torch.zeros_like(P)
    denom = torch.empty_like(P)
    beta1, beta2 = config.betas
    steps = config.steps
    log_steps: list[int] = []
    log_losses: list[Tensor] = []

    def record(step: int) -> Tensor:
        losses = model.losses(buf.x.transpose(0, 1), imp)
        log_steps.append(step)
        log_losses.append(losses)
        return losses

    bar = tqdm(total=steps, disable=not progress, desc="ToyModel.fit", leave=False)
    tick = max(1, steps // 100)
    threads = torch.get_num_threads()
    if P.device.type == "cpu" and buf.x.numel() < _SINGLE_THREAD_BELOW:
        # Below ~1M elements per batch an op is over before worker threads pay off, and each
        # OpenMP barrier spins: with a busy core (CI, other jobs) steps got 5-20x slower.
        torch.set_num_threads(1)
    try:
        with torch.no_grad():
            for step in range(steps):
                data.fill_(buf.x, generator, bits=buf.bits)
                buf.gradients()
                last = step == steps - 1
                if last or (config.log_every is not None and step % config.log_every == 0):
                    losses = record(step)
                    if progress:
                        bar.set_postfix(loss=f"{float(losses.sum()):.4g}", refresh=False)
                lr = config.lr * lr_multiplier(config.schedule, step, steps, config.warmup_steps)
                k = step + 1
                bc1 = 1.0 - beta1**k
                sqrt_bc2 = math.sqrt(1.0 - beta2**k)
                # torch.optim.AdamW: p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps), times sqrt(bc2)
                P.mul_(1.0 - lr * config.weight_decay)
                m.lerp_(G, 1.0 - beta1)
                v.mul_(beta2).addcmul_(G, G, value=1.0 - beta2)
                torch.sqrt(v, out=denom).add_(config.eps * sqrt_bc2)
                P.addcdiv_(m, denom, value=-lr * sqrt_bc2 / bc1)
                if k % tick == 0 or last:
                    bar.update(k - bar.n)
    finally:
        torch.set_num_threads(threads)
    bar.close()
    return TrainHistory(steps=log_steps, losses=torch.stack(log_losses), config=config)
