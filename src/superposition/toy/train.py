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
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor

if TYPE_CHECKING:
    from superposition.toy.data import FiniteFeatureDataset, SparseFeatureDataset
    from superposition.toy.model import ToyModel

__all__ = ["Schedule", "TrainConfig", "TrainHistory", "gradients", "lr_multiplier", "train"]

Schedule = Literal["constant", "linear", "cosine"] | Callable[[int, int], float]
_SCHEDULES = ("constant", "linear", "cosine")
_threshold_backward = torch.ops.aten.threshold_backward.grad_input
_SINGLE_THREAD_BELOW = 1 << 22  # batch elements (instances x batch x features)
_FEATURE_MAJOR_BELOW = 16  # features
_CHUNK_ELEMENTS = 1 << 18  # batch elements drawn per call of the sampler
_BACKGROUND_MIN_STEPS = 50  # shorter runs do not pay for starting a thread


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


def _feature_major(n_features: int) -> bool:
    """Whether batches are stored ``[instances, features, batch]`` rather than batch-major.

    Tall-skinny products with a handful of features (``[1024, 5] @ [5, 2]``) are several times
    slower in MKL than the same products laid out wide (``[2, 5] @ [5, 1024]``); from about
    16 features the batch-major layout is faster again (``benchmarks/bench_toy.py``).
    """
    return n_features < _FEATURE_MAJOR_BELOW


class _Buffers:
    """Preallocated batch-sized tensors and the gradient rule of one model variant.

    The hidden activations are stored transposed, ``hT: [instances, hidden + 1, batch]`` (the
    last row is the ones that carry the bias), and the batch either batch-major
    (``[instances, batch, features]``) or, for few features, feature-major
    (``[instances, features, batch]``): the layouts in which the products are fastest.
    """

    def __init__(self, model: ToyModel, importance: Tensor, batch_size: int) -> None:
        P = model.params.data
        inst, _, feats = P.shape
        hid = model.n_hidden
        dev, dt = P.device, P.dtype
        self.activation = model.activation
        self.feature_major = _feature_major(feats)
        self.batch_shape = (
            (inst, feats, batch_size)
            if self.feature_major
            else (
                inst,
                batch_size,
                feats,
            )
        )
        self.hid = hid
        self.P = P
        self.W = P[:, :hid]
        tied = model.activation != "abs"
        self.Pout_full = P if tied else P[:, hid:]  # [I, hid+1, F]: output weights and bias
        self.Wout = P[:, :hid] if tied else P[:, hid : 2 * hid]
        self.G = torch.zeros_like(P)
        self.Gout = self.G if tied else self.G[:, hid:]
        self.GW = self.G[:, :hid]
        self.target = None if tied else torch.empty(self.batch_shape, device=dev, dtype=dt)
        self.hT_aug = torch.empty(inst, hid + 1, batch_size, device=dev, dtype=dt)
        self.hT_aug[:, hid] = 1.0
        self.hT = self.hT_aug[:, :hid]
        self.t = torch.empty(self.batch_shape, device=dev, dtype=dt)
        self.o = torch.empty_like(self.t) if model.activation != "linear" else self.t
        self.dhT = torch.empty(inst, hid, batch_size, device=dev, dtype=dt)
        self.w = (2.0 / (batch_size * feats)) * importance.to(dev, dt)[:, None, :]
        self.Ww = torch.empty(inst, hid, feats, device=dev, dtype=dt)

    def new_batch(self) -> Tensor:
        """An empty batch buffer in this layout (``[instances, batch, features]`` view)."""
        x = torch.empty(self.batch_shape, device=self.P.device, dtype=self.P.dtype)
        return x.transpose(1, 2) if self.feature_major else x

    def gradients(self, x: Tensor) -> Tensor:
        """Loss gradient w.r.t. the packed parameters for the batch ``x``, into ``G``.

        ``x`` is a buffer from :meth:`new_batch` (``[instances, batch, features]`` view).
        """
        fm = self.feature_major
        xs = x.transpose(1, 2) if fm else x  # the batch in its storage layout
        hT, t, o = self.hT, self.t, self.o
        torch.bmm(self.W, xs if fm else xs.mT, out=hT)
        if self.activation in ("relu_hidden", "abs"):
            hT.relu_()
        target = xs
        if self.target is not None:
            target = torch.abs(xs, out=self.target)
        if fm:
            lhs, rhs = self.Pout_full.mT, self.hT_aug  # o: [F, B] = Poutᵀ h_aug
        else:
            lhs, rhs = self.hT_aug.mT, self.Pout_full  # o: [B, F] = h_aug Pout
        if self.activation == "linear":
            torch.baddbmm(xs, lhs, rhs, beta=-1, out=t)  # o - x in one matmul
        else:
            torch.bmm(lhs, rhs, out=o)
            torch.sub(o, target, out=t)
            _threshold_backward(t, o, 0, grad_input=t)  # ReLU output: no gradient where o <= 0
        torch.bmm(self.hT_aug, t.mT if fm else t, out=self.Gout)  # [hᵀt; Σ_batch t]
        self.Gout.mul_(self.w)
        torch.mul(self.Wout, self.w, out=self.Ww)
        torch.bmm(self.Ww, t if fm else t.mT, out=self.dhT)
        if self.activation in ("relu_hidden", "abs"):
            _threshold_backward(self.dhT, hT, 0, grad_input=self.dhT)
        if self.activation == "abs":
            torch.bmm(self.dhT, x, out=self.GW)
        else:
            self.GW.baddbmm_(self.dhT, x)
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
    imp = torch.as_tensor(importance, dtype=x.dtype, device=x.device).expand(
        model.n_instances, model.n_features
    )
    with torch.no_grad():
        buf = _Buffers(model, imp, x.shape[0])
        xb = buf.new_batch()
        xb.copy_(x.transpose(0, 1))
        return buf.gradients(xb).clone()


def train(
    model: ToyModel,
    data: SparseFeatureDataset | FiniteFeatureDataset,
    config: TrainConfig,
    *,
    generator: torch.Generator,
    progress: bool = True,
) -> TrainHistory:
    """Train ``model`` in place on ``data``; the engine of :meth:`~superposition.ToyModel.fit`.

    Args:
        model: the model; its packed ``params`` are updated in place.
        data: input distribution matching the model's instances and features, or a finite
            training set (then ``config.batch_size`` must be its size: every step is full-batch).
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
    from superposition.toy.data import FiniteFeatureDataset

    finite = data if isinstance(data, FiniteFeatureDataset) else None
    if finite is not None and config.batch_size != finite.n_points:
        raise ValueError(
            f"a finite training set of {finite.n_points} points trains full-batch, got "
            f"batch_size={config.batch_size}"
        )
    imp = data.importance.to(P.device, P.dtype)
    buf = _Buffers(model, imp, config.batch_size)
    steps = config.steps
    log_steps: list[int] = []
    log_losses: list[Tensor] = []
    adam = _AdamW(P, buf.G, config)

    bar = tqdm(total=steps, disable=not progress, desc="ToyModel.fit", leave=False)
    tick = max(1, steps // 100)
    threads = torch.get_num_threads()
    numel = P.shape[0] * config.batch_size * P.shape[2]
    background = (
        finite is None and P.device.type == "cpu" and threads > 1 and steps >= _BACKGROUND_MIN_STEPS
    )
    if background or (P.device.type == "cpu" and numel < _SINGLE_THREAD_BELOW):
        # With sampling on a second thread each thread runs its ops alone. Without it (finite
        # training sets, short runs), below ~4M elements per batch an op is over before worker
        # threads pay off, and each OpenMP barrier spins: with a busy core (CI, other jobs) a
        # full-batch sweep at 1.2M elements ran 20x slower on two threads than on one.
        torch.set_num_threads(1)
    batches: _Batches | _FixedBatch
    if finite is not None:
        batches = _FixedBatch(finite.x, buf)
    else:
        assert not isinstance(data, FiniteFeatureDataset)
        batches = _Batches(data, buf, generator, steps, background=background)
    try:
        with torch.no_grad():
            for step in range(steps):
                x = batches.get()
                buf.gradients(x)
                last = step == steps - 1
                if last or (config.log_every is not None and step % config.log_every == 0):
                    losses = model.losses(x.transpose(0, 1), imp)
                    log_steps.append(step)
                    log_losses.append(losses)
                    if progress:
                        bar.set_postfix(loss=f"{float(losses.sum()):.4g}", refresh=False)
                batches.done()
                adam.step(
                    config.lr * lr_multiplier(config.schedule, step, steps, config.warmup_steps)
                )
                k = step + 1
                if k % tick == 0 or last:
                    bar.update(k - bar.n)
    finally:
        batches.close()
        torch.set_num_threads(threads)
    bar.close()
    return TrainHistory(steps=log_steps, losses=torch.stack(log_losses), config=config)


class _AdamW:
    """``torch.optim.AdamW`` (weight decay on every parameter, bias-corrected moments) on one
    packed tensor: PyTorch's fused kernel where it has one, else seven in-place operations."""

    def __init__(self, P: Tensor, G: Tensor, config: TrainConfig) -> None:
        self.P, self.G, self.config = P, G, config
        self.m = torch.zeros_like(P)
        self.v = torch.zeros_like(P)
        self.k = 0
        self.fused = _has_fused_adamw(P.device.type)
        self.count = torch.zeros((), dtype=torch.float32, device=P.device)
        self.denom = None if self.fused else torch.empty_like(P)

    def step(self, lr: float) -> None:
        c = self.config
        beta1, beta2 = c.betas
        self.k += 1
        if self.fused:
            self.count.fill_(self.k)
            torch._fused_adamw_(
                [self.P],
                [self.G],
                [self.m],
                [self.v],
                [],
                [self.count],
                lr=lr,
                beta1=beta1,
                beta2=beta2,
                weight_decay=c.weight_decay,
                eps=c.eps,
                amsgrad=False,
                maximize=False,
            )
            return
        assert self.denom is not None
        bc1 = 1.0 - beta1**self.k
        sqrt_bc2 = math.sqrt(1.0 - beta2**self.k)
        # torch.optim.AdamW: p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps), times sqrt(bc2)
        self.P.mul_(1.0 - lr * c.weight_decay)
        self.m.lerp_(self.G, 1.0 - beta1)
        self.v.mul_(beta2).addcmul_(self.G, self.G, value=1.0 - beta2)
        torch.sqrt(self.v, out=self.denom).add_(c.eps * sqrt_bc2)
        self.P.addcdiv_(self.m, self.denom, value=-lr * sqrt_bc2 / bc1)


_FUSED_ADAMW: dict[str, bool] = {}


def _has_fused_adamw(device: str) -> bool:
    """Whether ``torch._fused_adamw_`` runs on ``device`` (CPU support came in PyTorch 2.4)."""
    if device not in _FUSED_ADAMW:
        try:
            p = torch.zeros(2, device=device)
            torch._fused_adamw_(
                [p],
                [p.clone()],
                [p.clone()],
                [p.clone()],
                [],
                [torch.ones((), device=device)],
                lr=1e-3,
                beta1=0.9,
                beta2=0.999,
                weight_decay=0.0,
                eps=1e-8,
                amsgrad=False,
                maximize=False,
            )
            _FUSED_ADAMW[device] = True
        except (AttributeError, RuntimeError, NotImplementedError):
            _FUSED_ADAMW[device] = False
    return _FUSED_ADAMW[device]


class _FixedBatch:
    """Full-batch training on a finite training set: the same batch every step."""

    def __init__(self, x: Tensor, buf: _Buffers) -> None:
        self.x = buf.new_batch()
        self.x.copy_(x.transpose(0, 1))

    def get(self) -> Tensor:
        return self.x

    def done(self) -> None:
        pass

    def close(self) -> None:
        pass


class _Batches:
    """The training batches, in order: drawn on a background thread while the step runs.

    Batches are drawn ``chunk`` at a time into one of two buffers, so the handoff between the
    threads happens once per chunk; the generator is used by one thread only, in the same order
    as without the thread, so the batches (and the trained model) do not depend on it. Data with
    feature groups is drawn one batch at a time by :meth:`SparseFeatureDataset.fill_`.
    """

    def __init__(
        self,
        data: SparseFeatureDataset,
        buf: _Buffers,
        generator: torch.Generator,
        steps: int,
        *,
        background: bool,
    ) -> None:
        self.data, self.generator, self.steps = data, generator, steps
        per_batch = math.prod(buf.batch_shape)
        self.chunk = 1 if data._grouped else max(1, min(steps, _CHUNK_ELEMENTS // per_batch))
        shape = (self.chunk, *buf.batch_shape)
        dev, dt = buf.P.device, buf.P.dtype
        n_buffers = 2 if background else 1
        self.buffers = [torch.empty(shape, device=dev, dtype=dt) for _ in range(n_buffers)]
        inst, words = data._words_shape(per_batch // buf.batch_shape[0] // data.n_features)
        self.words_per_batch = inst * words
        self.words = [
            torch.empty(self.chunk * self.words_per_batch, dtype=torch.int64, device=dev)
            for _ in range(n_buffers)
        ]
        self.feature_major = buf.feature_major
        self.step = 0
        self.current = -1
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None
        if background:
            self.ready: queue.SimpleQueue[int] = queue.SimpleQueue()
            self.free: queue.SimpleQueue[int] = queue.SimpleQueue()
            for i in range(n_buffers):
                self.free.put(i)
            self.stop = False
            self.thread = threading.Thread(target=self._produce, daemon=True)
            self.thread.start()

    def _n_chunks(self) -> int:
        return -(-self.steps // self.chunk)

    def _fill(self, i: int, count: int) -> None:
        out = self.buffers[i][:count]
        if self.chunk == 1 and self.data._grouped:
            view = out[0].transpose(1, 2) if self.feature_major else out[0]
            self.data.fill_(view, self.generator)
        else:
            words = self.words[i][: count * self.words_per_batch]
            self.data._fill_independent_(out, self.generator, words)

    def _produce(self) -> None:
        try:
            for c in range(self._n_chunks()):
                i = self.free.get()
                if self.stop:
                    return
                self._fill(i, min(self.chunk, self.steps - c * self.chunk))
                self.ready.put(i)
        except BaseException as err:  # re-raised on the training thread
            self.error = err
            self.ready.put(-1)

    def get(self) -> Tensor:
        """The next batch, ``[instances, batch, features]`` (a view into a buffer)."""
        j = self.step % self.chunk
        if j == 0:
            if self.thread is None:
                self.current = 0
                self._fill(0, min(self.chunk, self.steps - self.step))
            else:
                self.current = self.ready.get()
                if self.current < 0:
                    assert self.error is not None
                    raise self.error
        x = self.buffers[self.current][j]
        self.step += 1
        return x.transpose(1, 2) if self.feature_major else x

    def done(self) -> None:
        """The current batch is no longer needed."""
        if self.thread is not None and self.step % self.chunk == 0:
            self.free.put(self.current)

    def close(self) -> None:
        if self.thread is not None:
            self.stop = True
            self.free.put(0)
            self.thread.join()
