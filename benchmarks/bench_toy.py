"""Benchmark: ``ToyModel.fit`` against the plain training loop of the original TMS notebook.

Both loops run side by side in one process with the same configuration, initial weights and
number of steps. The reference is the notebook's loop: batched einsum forward, ``torch.rand``
values and a ``torch.rand`` mask every step, autograd, ``torch.optim.AdamW``. Rows report the
throughput ratio (bar: at least 5x; at the largest size also at least 0.85 of the ceiling
measured in the same run, the reference step over one step of our gradients and batches
alone: what the loop could reach if AdamW and the loop itself were free), that the final
losses agree within 5% (evaluated on one shared held-out batch), and the achieved FLOP/s of
``fit`` against a measured float32 matmul peak.

Run ``python benchmarks/bench_toy.py`` (``--quick`` for a short smoke run).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import einops
import numpy as np
import torch
from torch import Tensor, nn

# Benchmark this checkout even when another copy of the package is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import Row, row, side_by_side
from superposition import SparseFeatureDataset, ToyModel

# (n_features, n_hidden, n_instances)
CONFIGS = [(5, 2, 10), (20, 5, 7), (200, 20, 8)]
BATCH = 1024
SPEEDUP_BAR = 5.0
CEILING_BAR = 0.85  # of the ceiling row: the reference step over our gradients and batches
FLOP_BAR = 0.25  # of the float32 matmul peak, at n=200, m=20
LOSS_TOL = 0.05


class _ReferenceModel(nn.Module):
    """The TMS notebook's model, with autograd."""

    def __init__(self, W: Tensor, b: Tensor) -> None:
        super().__init__()
        self.W = nn.Parameter(W.clone())
        self.b_final = nn.Parameter(b.clone())

    def forward(self, features: Tensor) -> Tensor:
        hidden = torch.einsum("...if,ihf->...ih", features, self.W)
        out = torch.einsum("...ih,ihf->...if", hidden, self.W)
        return torch.relu(out + self.b_final)


def _reference_fit(
    model: _ReferenceModel, prob: Tensor, importance: Tensor, steps: int, seed: int
) -> None:
    """The notebook's ``optimize`` loop (constant lr 1e-3, AdamW default weight decay 0.01)."""
    g = torch.Generator().manual_seed(seed)
    inst, _, feats = model.W.shape
    opt = torch.optim.AdamW(list(model.parameters()), lr=1e-3)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        feat = torch.rand((BATCH, inst, feats), generator=g)
        batch = torch.where(
            torch.rand((BATCH, inst, feats), generator=g) <= prob[:, None], feat, torch.zeros(())
        )
        out = model(batch)
        error = importance * (batch.abs() - out) ** 2
        loss = einops.reduce(error, "b i f -> i", "mean").sum()
        loss.backward()
        opt.step()


def _eval_loss(W: Tensor, b: Tensor, data: SparseFeatureDataset) -> float:
    model = ToyModel(W.shape[2], W.shape[1], n_instances=W.shape[0], seed=0)
    with torch.no_grad():
        model.W.copy_(W)
        model.b.copy_(b)
        x = data.sample(16_384, generator=torch.Generator().manual_seed(12345))
        return float(model.loss(x, data.importance))


def _matmul_peak() -> float:
    """Best float32 FLOP/s of a 1024^3 matmul on this machine."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * 1024**3 / best


def _two_thread_gain(quick: bool) -> float:
    """Throughput of two threads running independent in-cache 128x128 matmuls (one op thread
    each) over one thread's: what a second core adds to arithmetic on this machine (2.0 on two
    full cores; less where the two share a physical core)."""
    a, b = torch.randn(128, 128), torch.randn(128, 128)
    n = 500 if quick else 5000

    def loop() -> None:
        # Per thread: a new thread's first matmul would otherwise run on MKL's default team
        # (set_num_threads is thread-local in OpenMP and MKL), four threads on two cores.
        torch.set_num_threads(1)
        for _ in range(n):
            torch.mm(a, b)

    threads = torch.get_num_threads()
    try:
        loop()
        t0 = time.perf_counter()
        loop()
        one = time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)
    return 2 * one / _concurrently([loop, loop])


def _concurrently(fns: list[Callable[[], None]]) -> float:
    """Seconds to run ``fns``, each on its own thread, all at once."""
    workers = [threading.Thread(target=fn) for fn in fns]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return time.perf_counter() - t0


def run(quick: bool = False) -> list[Row]:
    """Time ``fit`` against the reference loop on each configuration; one row per measurement.

    Both loops train fresh copies of the same initial weights, interleaved three times (once in
    ``quick`` mode); the medians are compared.
    """
    peak = _matmul_peak()
    gain = _two_thread_gain(quick)
    rows = [
        row(
            "machine: matmul throughput of 2 threads / 1 thread (2.0 = two full cores)",
            gain,
            "x",
        )
    ]
    return rows + [r for n, m, inst in CONFIGS for r in _compare(n, m, inst, quick, peak)]


def _compare(n: int, m: int, inst: int, quick: bool, peak: float) -> list[Row]:
    rows: list[Row] = []
    steps = 200 if quick else (2000 if n < 100 else 600)
    prob = (20.0 ** -torch.linspace(0, 1, inst)).clamp(max=1.0)
    data = SparseFeatureDataset(n, prob.tolist(), importance=0.9, seed=1)
    init = ToyModel(n, m, n_instances=inst, seed=0)
    W0, b0 = init.W.detach().clone(), init.b.detach().clone()
    trained: dict[str, tuple[Tensor, Tensor]] = {}

    def fit_once() -> None:
        model = ToyModel(n, m, n_instances=inst, seed=0).fit(data, steps=steps, progress=False)
        trained["fit"] = (model.W.detach(), model.b.detach())

    def reference_once() -> None:
        ref = _ReferenceModel(W0, b0)
        _reference_fit(ref, data.feature_probability, data.importance, steps, seed=2)
        trained["reference"] = (ref.W.detach(), ref.b_final.detach())

    t = side_by_side(
        {"reference": reference_once, "fit": fit_once}, repeat=1 if quick else 3, warmup=int(quick)
    )
    t_ref, t_fit = t["reference"], t["fit"]
    tag = f"n={n},m={m},I={inst}"
    ratio = t_ref / t_fit
    rows.append(
        row(
            f"toy fit vs TMS reference loop [{tag}]: speed-up",
            ratio,
            "x",
            f">= {SPEEDUP_BAR}x",
            ratio >= SPEEDUP_BAR,
        )
    )
    rows.append(
        row(
            f"toy fit throughput [{tag}] (reference {inst * steps / t_ref:,.0f})",
            inst * steps / t_fit,
            "instance-steps/s",
        )
    )
    l_fit = _eval_loss(*trained["fit"], data)
    l_ref = _eval_loss(*trained["reference"], data)
    rel = abs(l_fit - l_ref) / l_ref
    rows.append(
        row(
            f"toy final loss, fit vs reference [{tag}] ({l_fit:.5f} vs {l_ref:.5f})",
            rel,
            "rel. diff",
            f"<= {LOSS_TOL}",
            rel <= LOSS_TOL,
        )
    )
    flops = 10 * inst * BATCH * n * m * steps  # 2 matmuls forward, 3 backward
    fraction = flops / t_fit / peak
    # Only the largest configuration is big enough for arithmetic to dominate.
    bar = f">= {FLOP_BAR}" if n >= 100 else ""
    rows.append(
        row(
            f"toy fit FLOP/s / float32 matmul peak ({peak / 1e9:.0f} GFLOP/s) [{tag}]",
            fraction,
            "fraction",
            bar,
            fraction >= FLOP_BAR or not bar,
        )
    )
    if n >= 100:
        rows += _medium_precision(n, m, inst, steps, quick, data, fit_once, reference_once, trained)
        step_ref = t_ref / steps
        threads = torch.get_num_threads()
        ceiling = step_ref / _gradient_step_time(init, data, quick)
        drawn = step_ref / _gradient_step_time(init, data, quick, draw=True)
        rows.append(
            row(
                f"toy fit ceiling [{tag}]: reference step / one step's gradients alone on "
                f"{threads} threads (batches free)",
                ceiling,
                "x",
            )
        )
        rows.append(
            row(
                f"toy fit ceiling [{tag}]: reference step / one step's gradients and batches "
                f"on {threads} threads (AdamW and the loop free)",
                drawn,
                "x",
            )
        )
        share = ratio / drawn
        rows.append(
            row(
                f"toy fit speed-up / its ceiling [{tag}]",
                share,
                "share",
                f">= {CEILING_BAR}",
                share >= CEILING_BAR,
            )
        )
    return rows


def _with_precision(precision: str, fn: Callable[[], None]) -> Callable[[], None]:
    """``fn`` run under ``torch.set_float32_matmul_precision(precision)``."""

    def run() -> None:
        before = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision(precision)
        try:
            fn()
        finally:
            torch.set_float32_matmul_precision(before)

    return run


def _medium_precision(
    n: int,
    m: int,
    inst: int,
    steps: int,
    quick: bool,
    data: SparseFeatureDataset,
    fit_once: Callable[[], None],
    reference_once: Callable[[], None],
    trained: dict[str, tuple[Tensor, Tensor]],
) -> list[Row]:
    """Both loops again under PyTorch's ``torch.set_float32_matmul_precision("medium")``, the
    user's opt-in to faster float32 products: on CPUs with bfloat16 units oneDNN then computes
    them from bfloat16 parts (about 16 bits of each operand, float32 sums). Rows: the speed-up
    over the reference under the same setting, ``fit``'s own gain over full precision, and
    that the trained model's loss still matches the reference's."""
    tag = f"n={n},m={m},I={inst}"
    t = side_by_side(
        {  # in this order, so that ``trained`` ends with the 'medium' models
            "fit highest": fit_once,
            "reference": _with_precision("medium", reference_once),
            "fit": _with_precision("medium", fit_once),
        },
        repeat=1 if quick else 3,
        warmup=int(quick),
    )
    l_fit = _eval_loss(*trained["fit"], data)
    l_ref = _eval_loss(*trained["reference"], data)
    rel = abs(l_fit - l_ref) / l_ref
    return [
        row(
            f"toy fit vs TMS reference loop, both at matmul precision 'medium' [{tag}]: speed-up",
            t["reference"] / t["fit"],
            "x",
        ),
        row(
            f"toy fit at matmul precision 'medium' vs 'highest' [{tag}]: speed-up",
            t["fit highest"] / t["fit"],
            "x",
        ),
        row(
            f"toy final loss at matmul precision 'medium', fit vs reference [{tag}] "
            f"({l_fit:.5f} vs {l_ref:.5f})",
            rel,
            "rel. diff",
            f"<= {LOSS_TOL}",
            rel <= LOSS_TOL,
        ),
    ]


def _gradient_step_time(
    init: ToyModel, data: SparseFeatureDataset, quick: bool, *, draw: bool = False
) -> float:
    """Seconds per step of ``fit``'s gradient computation alone (the five batched products and
    the elementwise passes, on a fixed batch), its instances split over the threads as ``fit``
    splits them: what a step would cost if drawing batches and AdamW were free. With ``draw``,
    each thread also draws its instances' batch every step, as ``fit`` does at this size (with
    ``fit``'s sampler, a chunk of one batch): what a step would cost if AdamW and everything
    around the two were free."""
    from superposition.toy.gradients import _Buffers
    from superposition.toy.train import _group_bounds, _one_op_thread

    inst = init.n_instances
    x = data.sample(BATCH, generator=torch.Generator().manual_seed(3))  # [batch, inst, n]
    P = init.params.detach().clone()
    streams = data._streams(torch.Generator().manual_seed(4))
    reps = 20 if quick else 200
    loops: list[Callable[[], None]] = []
    for lo, hi in _group_bounds(inst, max(1, min(torch.get_num_threads(), inst))):
        buf = _Buffers(P[lo:hi], init.activation, init.n_hidden, data.importance[lo:hi], BATCH)
        xb = buf.new_batch()
        xb.copy_(x[:, lo:hi].transpose(0, 1))
        fresh = xb[None]  # a chunk of one batch: the next step trains on what it drew
        words = torch.empty((hi - lo) * ((BATCH * init.n_features + 1) // 2), dtype=torch.int64)
        affine = data._affine(lo, hi - lo, fresh)

        def loop(
            buf: _Buffers = buf,
            xb: Tensor = xb,
            fresh: Tensor = fresh,
            words: Tensor = words,
            affine: tuple[Tensor, Tensor] = affine,
            own: list[np.random.SFC64] = streams[lo:hi],
            lo: int = lo,
        ) -> None:
            _one_op_thread()  # as fit's workers do
            for _ in range(reps):
                if draw:
                    data._fill_from_streams_(fresh, own, lo, words, affine)
                buf.gradients(xb)

        loops.append(loop)
    before = torch.get_num_threads()
    try:
        for fn in loops:
            fn()  # warm-up
        return _concurrently(loops) / reps
    finally:
        torch.set_num_threads(before)


if __name__ == "__main__":
    for r in run(quick="--quick" in sys.argv):
        print(r)
