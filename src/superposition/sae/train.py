"""The training loop of :class:`~superposition.SparseAutoencoder`: gradients by hand, fused Adam.

A step draws a batch, scales it to the model's normalised space, computes the gradients by
hand (:mod:`superposition.sae.gradients`, the formulas and the per-kind rules), averages them
over ranks under ``torch.distributed`` (:mod:`superposition.sae.parallel`), removes each
decoder row's gradient along the row, takes a fused Adam step on the one packed parameter
(``SparseAutoencoder.params``, five in-place operations) and renormalises the decoder rows.
Every ``checkpoint_every`` steps the whole state is written (:mod:`superposition.sae.checkpoint`).
Training runs on a copy that is written back only when the run succeeds, so an error halfway
(a NaN batch from an iterator) leaves the model as it was.

The fit's settings and defaults live in :mod:`superposition.sae.config`; the names of this
module's ``__all__`` are importable from here as they always were.
"""

from __future__ import annotations

import itertools
import math
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, NamedTuple, cast

import torch
from torch import Tensor

from superposition import distributed as _distributed
from superposition._checks import positive_int as _positive_int
from superposition._io import saved_paths
from superposition.sae.checkpoint import (
    CHECKPOINT_FORMAT,
    HISTORY_FIELDS,
    CheckpointPlan,
    Resume,
    read_checkpoint,
    run_identity,
)
from superposition.sae.checkpoint import (
    write_checkpoint as _write_checkpoint,  # looked up here at each write: tests stand in for it
)
from superposition.sae.config import (
    FitConfig,
    FitHistory,
    Schedule,
    StepNumbers,
    default_dead_after,
    default_lr,
    lr_multiplier,
)
from superposition.sae.gradients import Step, batch_stats, gradients
from superposition.sae.parallel import Ranks
from superposition.sae.synthbench import SynthBench
from superposition.sae.synthetic import SyntheticFeatures, SyntheticMLP

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

_SINGLE_THREAD_BELOW = 1 << 16  # pre-activations per batch (batch x d_sae)
_AUTOCAST_DTYPES = (torch.bfloat16, torch.float16)
_SYNTHETIC = (SyntheticFeatures, SyntheticMLP, SynthBench)


class LastStep(NamedTuple):
    """The last step done, kept until its numbers are needed: L0 and the dead count stay
    tensors until then, so that a step on a GPU does not wait for them."""

    step: int
    seen: int  # samples seen after it
    xn: Tensor  # its batch, normalised (this rank's rows)
    err: Tensor  # its reconstruction error x̂ - xn
    active: Tensor | float  # active latents (a tensor), or under ranks the L0 of all of them
    n_dead: Tensor  # latents dead after it (a 0-d tensor)


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
    checkpoint: CheckpointPlan | None = None,
    resume: Resume | None = None,
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
    :func:`~superposition.sae.checkpoint.read_checkpoint`: the source (rebuilt by the caller
    as it was at the start of the run, from the generator's saved state) is fast-forwarded by
    the steps already done, and the run then takes exactly the steps the uninterrupted run
    took.
    """
    from tqdm.auto import tqdm

    P = model.params.data.clone()
    if resume is not None:
        P.copy_(resume.params)
    step_ = Step(model, P, config, autocast)
    G = step_.G
    m = torch.zeros_like(P)
    v = torch.zeros_like(P)
    start = 0
    if resume is not None:
        m.copy_(resume.m)
        v.copy_(resume.v)
        step_.threshold.copy_(resume.threshold)
        start = resume.step
    beta1, beta2 = config.betas
    steps = config.steps
    ranks: Ranks | None = None
    if share is not None and share[1] > 1:
        import torch.distributed as dist

        ranks = Ranks(share[0], share[1], config.batch_size, same_source)
        steps = -(-config.samples // (config.batch_size * ranks.size))
        dist.broadcast(P, src=0)  # every rank starts from rank 0's parameters
    since_fired = torch.zeros(model.d_sae, dtype=torch.long, device=P.device)
    dead_after = config.dead_after or default_dead_after(model)
    history = FitHistory(config=config)
    scale_t = model._scales()
    seen = 0
    pending: StepNumbers | None = None
    if resume is not None:
        since_fired.copy_(resume.since_fired)
        history = replace(resume.history, config=config)
        scale_t.copy_(resume.scale)
        seen = resume.seen
        pending = resume.pending
    scale = model._row_scale(scale_t)
    aux_kind = model.rule.uses_dead_latents
    writes = checkpoint is not None and (ranks is None or ranks.rank == 0)
    # The last step done: its numbers are computed only on the steps that record them.
    last: LastStep | None = None

    def numbers(last: LastStep) -> StepNumbers:
        dead = int(last.n_dead)
        if ranks is None:
            mse, fvu, l0 = batch_stats(last.xn, last.err, float(last.active) / last.xn.shape[0])
        else:
            assert isinstance(last.active, float)  # Ranks.gradients gives the L0 itself
            mse, fvu, l0 = ranks.stats(last.xn, last.err, last.active)
        return StepNumbers(last.step, last.seen, mse, fvu, l0, dead)

    def record(last: LastStep) -> None:
        append(numbers(last))

    def append(row: StepNumbers) -> None:
        row.append_to(history)
        bar.set_postfix(fvu=f"{row.fvu:.3g}", l0=f"{row.l0:.3g}", refresh=False)

    def save(done: int) -> None:
        """Write the state after ``done`` steps (every rank computes the pending numbers,
        a collective under ``share``; rank 0 alone writes)."""
        assert checkpoint is not None
        late = pending
        if last is not None and history.steps[-1:] != [last.step]:
            late = numbers(last)
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

    def write(done: int, late: StepNumbers | None) -> None:
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
            "format_version": CHECKPOINT_FORMAT,
            **checkpoint.identity,
            "step": done,
            "seen": seen,
            "history": {k: getattr(history, k) for k in HISTORY_FIELDS},
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
                dead_now = (since_fired >= dead_after).sum()
                last = LastStep(step, seen, step_.target(xn), err, l0, dead_now)
                if step == steps - 1 or step % config.log_every == 0:
                    record(last)
                # Keep decoder rows unit-norm: drop each row's gradient along the row.
                # The update in place (a second [d_sae, d_in] temporary is fresh pages every
                # step). Not bmm for the row dot products, though 3x faster (6 ms against 18
                # at 16384 x 768): with it, 2 data-parallel ranks and one process drifted 5e-4
                # apart on the "relu" kind in tests/test_distributed.py (4e-7 with this); why,
                # is not pinned down.
                W, Gd = step_.W_dec, step_.G_dec
                Gd.addcmul_(W, torch.linalg.vecdot(Gd, W).unsqueeze(1), value=-1.0)
                lr = config.lr * lr_multiplier(
                    config.schedule, step, steps, config.warmup, config.decay
                )
                t = step + 1
                bc1 = 1.0 - beta1**t
                sqrt_bc2 = math.sqrt(1.0 - beta2**t)
                m.lerp_(G, 1.0 - beta1)
                v.mul_(beta2).addcmul_(G, G, value=1.0 - beta2)
                # Adam's denominator goes where the gradient was: the moments hold what the
                # step needs of it, and the next step zeroes it (one parameter-sized tensor less).
                denom = torch.sqrt(v, out=G).add_(config.eps * sqrt_bc2)
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
            if last is not None and history.steps[-1:] != [last.step]:
                record(last)
            elif last is None and pending is not None and history.steps[-1:] != [pending.step]:
                append(pending)  # resumed at the very end of a run whose last step went unrecorded
            if checkpoint is not None:
                save(done)
            model.params.data.copy_(P)
            model.threshold.copy_(step_.threshold)
            model._set_scales(scale_t)
    finally:
        torch.set_num_threads(threads)
    bar.close()
    return history


def fit(
    model: SparseAutoencoder,
    source: Tensor | Iterable[Tensor] | SyntheticFeatures | SyntheticMLP | SynthBench,
    *,
    samples: int,
    batch_size: int,
    lr: float | None,
    schedule: Schedule,
    warmup: float,
    decay: float,
    betas: tuple[float, float],
    aux_k: int | None,
    aux_coef: float,
    dead_after: int | None,
    bandwidth: float,
    penalty_warmup: float,
    log_every: int,
    progress: bool,
    generator: torch.Generator | None,
    distributed: bool | None,
    autocast: torch.dtype | None,
    checkpoint: str | os.PathLike[str] | None,
    checkpoint_every: int | None,
    resume: str | os.PathLike[str] | None,
) -> None:
    """The body of :meth:`~superposition.SparseAutoencoder.fit` (whose docstring says what
    each argument does): check the arguments and the source before any work, read a
    checkpoint to resume from, set the input scale and ``b_dec`` from the first batch on a
    first fit, then :func:`train` and record the history on ``model``."""
    if model.row_norm != "none":
        raise ValueError(
            f"this SAE normalises each row by its own statistics (SAELens's "
            f"normalize_activations={model.row_norm!r}), which training here does not do (it "
            "scales every row by one input_scale); train a new SparseAutoencoder instead"
        )
    config = FitConfig(
        samples=samples,
        batch_size=batch_size,
        lr=default_lr(model.d_sae) if lr is None else lr,
        betas=betas,
        schedule=schedule,
        warmup=warmup,
        decay=decay,
        aux_k=aux_k,
        aux_coef=aux_coef,
        dead_after=dead_after,
        bandwidth=bandwidth,
        penalty_warmup=penalty_warmup,
        log_every=log_every,
    )
    if autocast is not None and autocast not in _AUTOCAST_DTYPES:
        raise ValueError(
            f"autocast must be None, torch.bfloat16 or torch.float16, got {autocast!r}"
        )
    if checkpoint_every is not None:
        _positive_int(checkpoint_every, "checkpoint_every")
        if checkpoint is None:
            raise ValueError(
                f"checkpoint_every={checkpoint_every} needs checkpoint=, the path to write "
                "the checkpoints to (e.g. checkpoint='run/ckpt')"
            )
    if checkpoint is not None:
        folder = saved_paths(checkpoint)[0].parent
        if not folder.is_dir():
            raise FileNotFoundError(
                f"cannot write checkpoints to {str(checkpoint)!r}: its folder "
                f"{str(folder)!r} does not exist; create it first"
            )
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if generator is None:
        if isinstance(source, _SYNTHETIC) and source.seed is not None:
            generator = source.generator()
        elif model.seed is not None:
            generator = torch.Generator().manual_seed(model.seed + 1)
        else:
            generator = torch.Generator()
            generator.seed()
    stream: Tensor | Iterable[Tensor]
    if isinstance(cast(object, source), (str, bytes)) or not isinstance(
        source, (Tensor, SyntheticFeatures, SynthBench, Iterable)
    ):
        raise TypeError(
            f"source must be a tensor [n, {model.d_in}], an iterable of [batch, {model.d_in}] "
            f"tensors, a SyntheticFeatures or a SynthBench, got {type(source).__name__}"
        )
    share = _distributed.resolve(distributed)
    size = 1 if share is None else share[1]
    same_source = isinstance(source, (Tensor, *_SYNTHETIC))
    state: Resume | None = None
    plan: CheckpointPlan | None = None
    if checkpoint is not None or resume is not None:
        identity = run_identity(model, config, size, source, autocast)
        if resume is not None:
            state = read_checkpoint(resume, identity)  # checked before any work
            # Replay the stream from the start of the checkpointed run.
            generator.set_state(state.generator_state)
        if checkpoint is not None:
            plan = CheckpointPlan(checkpoint, checkpoint_every, identity, generator.get_state())
    if isinstance(source, _SYNTHETIC):
        if isinstance(source, SyntheticMLP) != model.transcoder:
            want = "SyntheticMLP" if model.transcoder else "SyntheticFeatures"
            raise TypeError(
                f"a {type(model).__name__} trains on a {want}, got a {type(source).__name__}"
            )
        if isinstance(source, (SyntheticFeatures, SynthBench)) and source.d != model.d_in:
            raise ValueError(
                f"source has d={source.d} but the SAE has d_in={model.d_in}; build the SAE "
                f"with d_in={source.d}"
            )
        if isinstance(source, SyntheticMLP) and (source.d_in, source.d_out) != (
            model.d_in,
            model.d_out,
        ):
            raise ValueError(
                f"source has d_in={source.d_in}, d_out={source.d_out} but the transcoder has "
                f"d_in={model.d_in}, d_out={model.d_out}; build it with those widths"
            )
        stream = source.batches(batch_size * size, generator)
        first = next(iter(stream))
        stream = itertools.chain([first], stream)
    elif isinstance(source, Tensor):
        # Left where it is: each batch is moved to the SAE's device as it is drawn.
        source = model._check_input(source, "source", move=False, rows=True)
        if source.shape[0] == 0:
            raise ValueError("source must hold at least one sample, got shape (0, d_in)")
        stream = source
        perm = torch.randperm(source.shape[0], generator=generator)
        first = source[perm[: batch_size * size]]
    else:
        it = iter(source)
        try:
            first = model._check_input(next(it), "source batch", move=False, rows=True)
        except StopIteration:
            raise ValueError("source is an empty iterable: it yielded no batch") from None
        stream = itertools.chain([first], it)
    with torch.no_grad():
        # A resumed run takes its input scale and b_dec from the checkpoint.
        if not model.fitted and state is None:
            first = first.to(model.params.device, model.params.dtype)
            sums = torch.cat(
                [
                    torch.tensor([first.shape[0]], dtype=torch.float64, device=first.device),
                    first.double().square().sum(0),
                    first.double().sum(0),
                ]
            )
            if share is not None and not same_source:
                # Each rank read its own first batch: the statistics of all of them.
                import torch.distributed as dist

                dist.all_reduce(sums)
            width = first.shape[1]
            model._normalise(float(sums[0]), sums[1 : 1 + width], sums[1 + width :])
    check = (
        (lambda b: b)
        if isinstance(source, (Tensor, *_SYNTHETIC))
        else (lambda b: model._check_input(b, "source batch", move=False, rows=True))
    )
    model.history = train(
        model,
        stream,
        config,
        generator=generator,
        check=check,
        progress=progress,
        share=share,
        same_source=same_source,
        autocast=autocast,
        checkpoint=plan,
        resume=state,
    )
    model.fitted = True
