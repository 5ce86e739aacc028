"""Benchmark: ``SparseAutoencoder.fit`` against SAELens 6.x on the same TopK SAE and data.

Both trainers see the same batches (one :class:`~superposition.SyntheticFeatures` generator:
512 features in 128 dimensions, firing probability 5/512, magnitude 1; a pool of batches drawn
once and cycled, so sampling time is in neither measurement) with the same architecture
(TopK, ``d_in=128, d_sae=512, k=5``), batch 1024, 2M samples, 2 CPU threads. SAELens runs
its own ``SAETrainer`` with the settings of ``sae_lens.synthetic.train_toy_sae`` (lr 3e-4,
constant, AuxK coefficient 1); ours runs its defaults. Rows: each trainer's throughput, the
ratio (bar: at least 3x; medians of three interleaved runs of each) and the MCC each reaches
(bar for ours: at least 0.99; every run is the same, so the last one is scored). A second
pair of rows times a realistic width, ``d_in=768, d_sae=16384, k=32``, for 50 steps.

The pipeline rows time the real-model path end to end: the shipped MiniLM's layer 0 over 600
paragraphs of the default corpus, probe -> :class:`~superposition.ActivationStore` -> a TopK
SAE (``d_sae=6144, k=32``, batch 4096), against the probe alone on the same texts
(information only: the SAE's encoder costs several times MiniLM's layer 0 per token, so this
ratio says nothing about our overheads), against the probe and the SAE's training on the
captured rows run separately (the store's own cost; bar: at most 1.2x), and the peak memory
of that pipeline over 3,000 paragraphs against 300, each in a fresh process (bar: at most
1.2x). The probe reads at most 4,096 token positions per forward pass, as ``sae train``'s
does.

The suite also runs :mod:`benchmarks.bench_sae_real` (ours, SAELens and sparsify side by side
on real MiniLM activations) and :mod:`benchmarks.bench_transcoder` (transcoders beside an SAE
of the same sizes and beside sparsify's transcoder).

Run ``python benchmarks/bench_sae.py`` (``--quick`` for a short smoke run).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import Row, row, side_by_side
from superposition import SparseAutoencoder, SyntheticFeatures, metrics

BATCH = 1024
SPEEDUP_BAR = 3.0
MCC_BAR = 0.99
POOL = 256  # distinct batches, cycled


def _pool(truth: SyntheticFeatures, n: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [truth.sample(BATCH, g) for _ in range(n)]


def _cycle(pool: list[torch.Tensor], steps: int) -> Iterator[torch.Tensor]:
    return itertools.islice(itertools.cycle(pool), steps)


def train_saelens(
    d_in: int,
    d_sae: int,
    k: int,
    batches: Iterator[torch.Tensor],
    samples: int,
    batch_size: int,
    sae: Any = None,
    lr: float = 3e-4,
) -> tuple[float, Any]:
    """Train SAELens's TopK SAE (or the training SAE ``sae`` given, of any class) under its
    own ``SAETrainer`` with the settings of ``sae_lens.synthetic.train_toy_sae`` (lr 3e-4
    constant, Adam; another constant ``lr`` if given); (seconds, the SAE)."""
    from sae_lens import LoggingConfig
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.training.sae_trainer import SAETrainer, SAETrainerConfig

    torch.manual_seed(0)
    if sae is None:
        sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d_in, d_sae=d_sae, k=k, device="cpu"))
    cfg = SAETrainerConfig(
        n_checkpoints=0,
        checkpoint_path=None,
        save_final_checkpoint=False,
        total_training_samples=samples,
        device="cpu",
        autocast=False,
        lr=lr,
        lr_end=lr,
        lr_scheduler_name="constant",
        lr_warm_up_steps=0,
        adam_beta1=0.9,
        adam_beta2=0.999,
        lr_decay_steps=0,
        n_restart_cycles=1,
        train_batch_size_samples=batch_size,
        dead_feature_window=1000,
        feature_sampling_window=2000,
        logger=LoggingConfig(log_to_wandb=False, eval_every_n_wandb_logs=2**31 - 1),
        n_batches_for_norm_estimate=1,  # unused: activations are not normalised
    )
    trainer = SAETrainer(cfg=cfg, sae=sae, data_provider=batches, save_checkpoint_fn=lambda p: None)
    # SAETrainer's progress bar has no switch of its own: send it to a buffer (that costs
    # less than drawing it on a terminal, and both trainers are timed without display).
    with contextlib.redirect_stderr(io.StringIO()):
        t0 = time.perf_counter()
        trainer.fit()
        seconds = time.perf_counter() - t0
    return seconds, sae


def _saelens(
    d_in: int, d_sae: int, k: int, pool: list[torch.Tensor], samples: int
) -> tuple[float, torch.Tensor]:
    """:func:`train_saelens` on the pool, cycled; (seconds, W_dec)."""
    seconds, sae = train_saelens(d_in, d_sae, k, itertools.cycle(pool), samples, BATCH)
    return seconds, sae.W_dec.detach().clone()


def _ours(
    d_in: int, d_sae: int, k: int, pool: list[torch.Tensor], samples: int
) -> tuple[float, torch.Tensor]:
    sae = SparseAutoencoder(d_in, d_sae, kind="topk", k=k, seed=0)
    t0 = time.perf_counter()
    sae.fit(_cycle(pool, -(-samples // BATCH)), samples=samples, batch_size=BATCH)
    return time.perf_counter() - t0, sae.W_dec.detach().clone()


def _compare(d_in: int, d_sae: int, k: int, samples: int, score: bool, repeat: int) -> list[Row]:
    truth = SyntheticFeatures(d_sae, d_in, firing_probability=k / d_sae, seed=0)
    pool = _pool(truth, min(POOL, -(-samples // BATCH)))
    label = f"sae d_in={d_in} d_sae={d_sae} k={k}"
    W: dict[str, torch.Tensor] = {}

    def ours() -> None:
        W["ours"] = _ours(d_in, d_sae, k, pool, samples)[1]

    def saelens() -> None:
        W["saelens"] = _saelens(d_in, d_sae, k, pool, samples)[1]

    # Interleaved and compared by medians: a noisy machine slows both sides alike.
    t = side_by_side({"ours": ours, "saelens": saelens}, repeat=repeat, warmup=0)
    t_ours, t_ref, W_ours, W_ref = t["ours"], t["saelens"], W["ours"], W["saelens"]
    rate_ours, rate_ref = samples / t_ours, samples / t_ref
    rows = [
        row(f"{label}: fit samples/s", rate_ours, "samples/s"),
        row(f"{label}: SAELens samples/s", rate_ref, "samples/s"),
        row(
            f"{label}: fit / SAELens throughput",
            rate_ours / rate_ref,
            "x",
            f">= {SPEEDUP_BAR}x",
            rate_ours / rate_ref >= SPEEDUP_BAR,
        ),
    ]
    if score:
        mcc_ours = metrics.mean_correlation_coefficient(truth.directions, W_ours)
        mcc_ref = metrics.mean_correlation_coefficient(truth.directions, W_ref)
        rows += [
            row(
                f"{label}: fit MCC after {samples:,} samples",
                mcc_ours,
                "MCC",
                f">= {MCC_BAR}",
                mcc_ours >= MCC_BAR,
            ),
            row(f"{label}: SAELens MCC after {samples:,} samples", mcc_ref, "MCC"),
        ]
    return rows


# --------------------------------------------------------------------------- probe -> store -> SAE

PIPE_DSAE, PIPE_K, PIPE_BATCH = 6144, 32, 4096  # the MiniLM layer-0 SAE


def _pipeline_parts(n_texts: int) -> tuple[Any, Any, Any]:
    from superposition import ActivationProbe, default_corpus, load_model
    from superposition.cli.sae import PROBE_TOKENS

    model, tokenizer = load_model()
    # As `sae train` builds it: at most PROBE_TOKENS positions per forward pass. Without the
    # bound a batch of 64 texts of 512 tokens holds 64 x 12 x 512^2 attention weights (805
    # MB), which only a corpus with 64 such texts has: 3,000 paragraphs did, 300 did not, and
    # that, not the stream, was the 1.26x of the memory row below.
    probe = ActivationProbe(
        model, 0, tokenizer=tokenizer, batch_size=64, max_tokens=PROBE_TOKENS, progress=False
    )
    return model, probe, default_corpus("train").head(n_texts)


def _run_pipeline(probe: Any, texts: Any, n_tokens: int) -> None:
    from superposition import ActivationStore

    store = ActivationStore(probe, texts, batch_size=PIPE_BATCH, buffer_rows=4 * PIPE_BATCH)
    sae = SparseAutoencoder(1536, PIPE_DSAE, kind="topk", k=PIPE_K, seed=0)
    sae.fit(store, samples=n_tokens, batch_size=PIPE_BATCH)


def pipeline_peak_mb(n_texts: int) -> float:
    """Peak extra memory of probe -> store -> SAE over ``n_texts`` texts (fresh process)."""
    from benchmarks.common import peak_extra_mb

    _, probe, texts = _pipeline_parts(n_texts)
    n_tokens = probe.run(list(texts)).n_tokens
    probe.run(list(texts.head(8)))  # warm-up: thread pools and kernels are not per-token memory
    extra, _ = peak_extra_mb(lambda: _run_pipeline(probe, texts, n_tokens))
    return extra


def _peak_in_subprocess(n_texts: int) -> float:
    import subprocess

    root = Path(__file__).resolve().parents[1]
    code = f"from benchmarks.bench_sae import pipeline_peak_mb; print(pipeline_peak_mb({n_texts}))"
    out = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code],
        cwd=root,
        env={**os.environ, "PYTHONPATH": f"{root / 'src'}:{root}"},
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def _pipeline(quick: bool) -> list[Row]:
    """End-to-end tokens/s of probe -> store -> SAE against the probe alone, and memory."""
    import warnings

    _, probe, texts = _pipeline_parts(200 if quick else 600)
    n_tokens = probe.run(list(texts)).n_tokens

    items = list(texts)

    def probe_alone() -> None:  # the store's chunks of 256 texts
        for start in range(0, len(items), 256):
            probe.run(items[start : start + 256])

    def pipeline() -> None:
        _run_pipeline(probe, texts, n_tokens)

    rows_in_memory = probe.run(list(texts)).values

    def sae_alone() -> None:
        sae = SparseAutoencoder(1536, PIPE_DSAE, kind="topk", k=PIPE_K, seed=0)
        sae.fit(rows_in_memory, samples=n_tokens, batch_size=PIPE_BATCH)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a few paragraphs are truncated to 512 tokens
        t = side_by_side(
            {"probe": probe_alone, "pipeline": pipeline, "sae": sae_alone},
            repeat=1 if quick else 3,
        )
    ratio = t["pipeline"] / t["probe"]
    overhead = t["pipeline"] / (t["probe"] + t["sae"])
    label = f"pipeline MiniLM layer 0 -> store -> TopK SAE d_sae={PIPE_DSAE} k={PIPE_K}"
    rows = [
        row(f"{label}: probe alone tokens/s ({n_tokens:,} tokens)", n_tokens / t["probe"], "tok/s"),
        row(f"{label}: end-to-end tokens/s", n_tokens / t["pipeline"], "tok/s"),
        # information, no bar: a 6,144 x 1,536 SAE costs several times MiniLM's layer 0 per
        # token however it is written, so "at most 2x the probe" measured nothing we control
        row(f"{label}: time vs the probe alone", ratio, "x"),
        row(f"{label}: SAE fit alone on captured rows vs the probe", t["sae"] / t["probe"], "x"),
        row(
            f"{label}: time vs probe + SAE fit run separately (the store's overhead)",
            overhead,
            "x",
            "<= 1.2x",
            overhead <= 1.2,
        ),
    ]
    if not quick:
        small, large = 300, 3000
        mem_small, mem_large = _peak_in_subprocess(small), _peak_in_subprocess(large)
        grow = mem_large / mem_small
        rows += [
            row(f"{label}: peak memory, {large} texts", mem_large, "MiB"),
            row(
                f"{label}: peak memory {large} / {small} texts",
                grow,
                "x",
                "<= 1.2x",
                grow <= 1.2,
            ),
        ]
    return rows


def run(quick: bool = False) -> list[Row]:
    """Every row of the suite (module docstring); 2 CPU threads for every trainer."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        small = 200_000 if quick else 2_000_000
        rows = _compare(128, 512, 5, small, score=True, repeat=1 if quick else 3)
        rows += _compare(768, 16384, 32, (10 if quick else 50) * BATCH, score=False, repeat=1)
        rows += _pipeline(quick)
    finally:
        torch.set_num_threads(threads)
    from benchmarks import bench_sae_real, bench_transcoder

    return rows + bench_sae_real.run(quick) + bench_transcoder.run(quick)


if __name__ == "__main__":
    for r in run(quick="--quick" in sys.argv):
        verdict = "" if not r["bar"] else ("met" if r["met"] else "NOT met")
        print(f"{r['name']:<70} {r['value']:>12.4g} {r['unit']:<10} {r['bar']} {verdict}")
