"""The training loop of :class:`~superposition.toy.model.ToyModel`: the library's hottest loop.

The toy models are so small that a step of the textbook loop (sample, forward, autograd
backward, ``torch.optim.AdamW``) spends most of its time on per-operation overhead and on
memory traffic of batch-sized temporaries, not on arithmetic. This loop does the same
mathematics with far less of both:

* **Sampling** writes into a preallocated buffer with one uniform draw per feature, as
  :meth:`~superposition.SparseFeatureDataset.fill_` does; on the CPU each instance draws its
  own random bits from its own numpy SFC64 stream (seeded by one draw of the ``generator``),
  about 60% faster than PyTorch's generator, and on a second thread while the step runs.
* **Threads per group of instances.** Instances are independent models, so from about 0.5M
  batch elements per step each thread trains its own group of instances start to finish
  (its own batches, gradients and AdamW), with no synchronisation between them. Because every
  instance has its own stream, an instance trains to the same bits alone, in a sweep, on
  one thread or on several.
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

The closed-form gradients live in :mod:`superposition.toy.gradients`, checked against autograd in
``tests/test_toy_model.py``; the speed against the plain loop in ``benchmarks/bench_toy.py``.
"""

from __future__ import annotations

import itertools
import math
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import Tensor

from superposition._checks import positive_int
from superposition.toy.gradients import _Buffers, gradients

if TYPE_CHECKING:
    from superposition.toy.data import FiniteFeatureDataset, SparseFeatureDataset
    from superposition.toy.model import ToyModel

__all__ = ["Schedule", "TrainConfig", "TrainHistory", "gradients", "lr_multiplier", "train"]

Schedule = Literal["constant", "linear", "cosine"] | Callable[[int, int], float]
_SCHEDULES = ("constant", "linear", "cosine")
_SINGLE_THREAD_BELOW = 1 << 22  # batch elements (instances x batch x features)
_CHUNK_ELEMENTS = 1 << 17  # elements of one instance's batches drawn per call of the sampler
_BACKGROUND_MIN_STEPS = 50  # shorter runs do not pay for starting a thread
_SPLIT_MIN_ELEMENTS = 1 << 19  # batch elements from which each thread trains its own instances


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
            positive_int(v, name)
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

    from superposition.toy.data import FiniteFeatureDataset

    P = model.params.data
    cpu = P.device.type == "cpu"
    finite = data if isinstance(data, FiniteFeatureDataset) else None
    if finite is not None and config.batch_size != finite.n_points:
        raise ValueError(
            f"a finite training set of {finite.n_points} points trains full-batch, got "
            f"batch_size={config.batch_size}"
        )
    sparse = None if finite is not None else data
    assert not isinstance(sparse, FiniteFeatureDataset)
    streams = None
    if sparse is not None and cpu and not sparse._grouped:
        streams = sparse._streams(generator)
    elif generator.device != P.device:
        seed = int(torch.randint(2**62, (), generator=generator))
        generator = torch.Generator(P.device).manual_seed(seed)
    imp = data.importance.to(P.device, P.dtype)
    steps = config.steps
    log_steps = [
        s
        for s in range(steps)
        if s == steps - 1 or (config.log_every is not None and s % config.log_every == 0)
    ]
    losses = torch.empty(len(log_steps), P.shape[0], device=P.device, dtype=P.dtype)

    threads = torch.get_num_threads()
    inst, _, feats = P.shape
    numel = inst * config.batch_size * feats
    n_groups = 1
    own_batches = finite is not None or streams is not None  # no generator shared by instances
    if cpu and threads > 1 and numel >= _SPLIT_MIN_ELEMENTS and own_batches:
        n_groups = min(threads, inst)
    background = n_groups == 1 and finite is None and cpu and threads > 1
    background = background and steps >= _BACKGROUND_MIN_STEPS
    if n_groups > 1 or background or (cpu and numel < _SINGLE_THREAD_BELOW):
        # Each thread (a group of instances, or the sampler beside the step) runs its ops
        # alone. Otherwise (finite training sets, short runs), below ~4M elements per batch an
        # op is over before worker threads pay off, and each OpenMP barrier spins: with a busy
        # core (CI, other jobs) a full-batch sweep at 1.2M elements ran 20x slower on two
        # threads than on one.
        torch.set_num_threads(1)

    groups: list[_Group] = []
    bar = tqdm(total=steps, disable=not progress, desc="ToyModel.fit", leave=False)
    act, hid = model.activation, model.n_hidden
    try:
        for lo, hi in _group_bounds(inst, n_groups):
            buf = _Buffers(P[lo:hi], act, hid, imp[lo:hi], config.batch_size)
            batches: _Batches | _FixedBatch
            if finite is not None:
                batches = _FixedBatch(finite.x[:, lo:hi], buf)
            else:
                assert sparse is not None
                batches = _Batches(
                    sparse, buf, generator, streams, lo, steps, background=background
                )
            groups.append(_Group(lo, hi, buf, _AdamW(P[lo:hi], buf.G, config), batches))
        run = _Run(config, log_steps, losses, bar if progress else None)
        workers = [threading.Thread(target=run.worker, args=(g,), daemon=True) for g in groups[1:]]
        for w in workers:
            w.start()
        try:
            run.steps(groups[0])
        except BaseException:
            run.stop = True  # the other groups stop at their next step
            raise
        finally:
            for w in workers:
                w.join()
        if run.error is not None:
            raise run.error
    finally:
        bar.close()
        for g in groups:
            g.batches.close()
        torch.set_num_threads(threads)
    return TrainHistory(steps=log_steps, losses=losses, config=config)


def _group_bounds(n_instances: int, n_groups: int) -> list[tuple[int, int]]:
    """``(lo, hi)`` of each group of instances when ``fit`` trains them on ``n_groups``
    threads: contiguous, sizes within one of each other."""
    edges = [round(k * n_instances / n_groups) for k in range(n_groups + 1)]
    return list(itertools.pairwise(edges))


@dataclass
class _Group:
    """Instances ``lo .. hi - 1``: their buffers, optimizer state and batches. Instances train
    independently, so a large model trains as one group per thread, each start to finish."""

    lo: int
    hi: int
    buf: _Buffers
    adam: _AdamW
    batches: _Batches | _FixedBatch


class _Run:
    """The training loop, run by each thread on its group of instances."""

    def __init__(
        self, config: TrainConfig, log_steps: list[int], losses: Tensor, bar: Any | None
    ) -> None:
        self.config, self.log_steps, self.losses, self.bar = config, log_steps, losses, bar
        self.stop = False
        self.error: BaseException | None = None

    def worker(self, group: _Group) -> None:
        try:
            _one_op_thread()
            self.steps(group)
        except BaseException as err:  # re-raised on the calling thread
            self.error = err
            self.stop = True

    def steps(self, group: _Group) -> None:
        c = self.config
        steps = c.steps
        bar = self.bar if group.lo == 0 else None
        tick = max(1, steps // 100)
        logs = iter(enumerate(self.log_steps))
        row, next_log = next(logs)
        buf, batches, adam = group.buf, group.batches, group.adam
        with torch.no_grad():
            for step in range(steps):
                if self.stop:
                    return
                x = batches.get()
                buf.gradients(x)
                if step == next_log:
                    self.losses[row, group.lo : group.hi] = buf.losses(x)
                    if bar is not None and group.hi == self.losses.shape[1]:  # one group
                        bar.set_postfix(loss=f"{float(self.losses[row].sum()):.4g}", refresh=False)
                    row, next_log = next(logs, (row + 1, -1))
                batches.done()
                adam.step(c.lr * lr_multiplier(c.schedule, step, steps, c.warmup_steps))
                if bar is not None and ((step + 1) % tick == 0 or step == steps - 1):
                    bar.update(step + 1 - bar.n)


def _one_op_thread() -> None:
    """Make this (new) thread's ops single-threaded. ``torch.set_num_threads`` sets OpenMP's
    and MKL's counts for the calling thread only: a fresh thread whose first op is a matrix
    product runs it on MKL's default team, so two such threads on two cores run four, and
    their throughput halves."""
    torch.set_num_threads(1)


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
    """The training batches of one group of instances, in order, drawn ``chunk`` at a time.

    On the CPU each instance draws from its own bit stream (``SparseFeatureDataset._streams``),
    so its batches do not depend on the other instances; elsewhere (and for data with feature
    groups) one generator fills all instances. With ``background`` the chunks are drawn on a
    second thread into one of two buffers while the step runs, so the handoff between the
    threads happens once per chunk; each source is used by one thread only, in the same order
    as without the thread, so the batches (and the trained model) do not depend on it.
    """

    def __init__(
        self,
        data: SparseFeatureDataset,
        buf: _Buffers,
        generator: torch.Generator,
        streams: list[np.random.SFC64] | None,
        first: int,
        steps: int,
        *,
        background: bool,
    ) -> None:
        self.data, self.generator, self.steps = data, generator, steps
        inst = buf.batch_shape[0]
        self.streams = None if streams is None else streams[first : first + inst]
        self.first = first
        per_batch = math.prod(buf.batch_shape)
        grouped = self.streams is None and data._grouped
        # sized per instance, so that a chunk stays within the caches however many instances
        self.chunk = 1 if grouped else max(1, min(steps, _CHUNK_ELEMENTS * inst // per_batch))
        shape = (self.chunk, *buf.batch_shape)
        dev, dt = buf.P.device, buf.P.dtype
        n_buffers = 2 if background else 1
        self.buffers = [torch.empty(shape, device=dev, dtype=dt) for _ in range(n_buffers)]
        self.words: list[Tensor] = []  # scratch of the random bits (none for feature groups)
        self.words_per_batch = inst * ((per_batch // inst + 1) // 2)
        self.affine = data._affine(first, inst, self.buffers[0])
        if not grouped:
            words = self.chunk * self.words_per_batch
            self.words = [torch.empty(words, dtype=torch.int64, device=dev) for _ in self.buffers]
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
        if self.words:
            words = self.words[i][: count * self.words_per_batch]
            if self.streams is not None:
                self.data._fill_from_streams_(out, self.streams, self.first, words, self.affine)
            else:
                self.data._fill_independent_(out, self.generator, words, self.affine)
        else:
            view = out[0].transpose(1, 2) if self.feature_major else out[0]
            self.data.fill_(view, self.generator)

    def _produce(self) -> None:
        try:
            _one_op_thread()
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
