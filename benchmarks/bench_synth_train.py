"""Benchmark: SAEs trained on SynthSAEBench-16k, ours beside SAELens's on the same batches,
judged against the ground truth beside the published table.

The data: :meth:`~superposition.sae.SynthBench.synthsaebench_16k` (seed 0, its dictionary
orthogonalised by the published 100 steps). One pool of fresh batches of 1,024 (no batch seen
twice) is drawn once and fed to both trainers, so the comparison is the trainers', not the
generators'. The SAEs: width 4,096, ``k = 25`` (the published table's L0), for each kind:

* ``batchtopk``: ours (``kind="batchtopk"``) and SAELens's ``BatchTopKTrainingSAE``;
* ``matryoshka``: ours (``kind="matryoshka"``) and SAELens's
  ``MatryoshkaBatchTopKTrainingSAE``, both with nested widths 128, 512, 2048, 4096.

SAELens trains under its own ``SAETrainer`` with the published recipe (lr 3e-4, constant,
Adam, AuxK coefficient 1; :func:`benchmarks.bench_sae.train_saelens`); ours with its
defaults (peak lr ``4e-3 sqrt(512 / width)``, 1.4e-3 here, warm-up and decay). A third SAE
per kind, SAELens's trainer at a constant lr equal to our peak, shows how much of the
difference in quality is the learning rate rather than the trainer (its F1 and MCC rows).
SAELens's trained SAEs are opened by this library's SAELens loader (tested to give the same
latents) and both are measured by :func:`~superposition.sae.evaluate_on_truth` on the
same 100,000 fresh samples: F1, MCC, uniqueness, explained variance, L0 and absorption.

The published numbers (Chanin & Garriga-Alonso 2026, SAE width 4,096) come after 200M samples
on a GPU; on 2 CPU cores the budget is :data:`SAMPLES` (1M by default; ``SYNTH_SAMPLES`` in
the environment changes it). Rows: each metric for ours and SAELens with the published value
in the row's name; bars: ours at least SAELens's F1 and MCC, ours at least 3x SAELens's
training samples/s, and Matryoshka's absorption rate below BatchTopK's (ours).

Run ``python benchmarks/bench_synth_train.py`` (``--quick`` for a short smoke run).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import Row, row
from superposition.sae import SparseAutoencoder, SynthBench, TruthMetrics, evaluate_on_truth
from superposition.sae.config import default_lr

SAMPLES = int(os.environ.get("SYNTH_SAMPLES", 1_000_000))
SPEEDUP_BAR = 3.0
# SynthSAEBench's Table (width 4096, 200M samples, L0 = 25).
PUBLISHED = {
    "batchtopk": {"f1": 0.732, "mcc": 0.757, "uniqueness": 0.984, "explained_variance": 0.792},
    "matryoshka": {"f1": 0.879, "mcc": 0.793, "uniqueness": 0.999, "explained_variance": 0.779},
}
SHOWN = ("f1", "mcc", "uniqueness", "explained_variance", "l0", "absorption_rate")


@dataclass(frozen=True)
class Setup:
    """What :func:`compare` trains: SAEs of ``width`` latents and ``k``, Matryoshka's nested
    ``widths``, on ``samples`` samples in batches of ``batch``, judged on ``eval_samples``."""

    samples: int
    eval_samples: int = 100_000
    width: int = 4096
    k: int = 25
    widths: tuple[int, ...] = (128, 512, 2048, 4096)
    batch: int = 1024


def _saelens_sae(kind: str, d_in: int, setup: Setup) -> Any:
    if kind == "batchtopk":
        from sae_lens.saes.batchtopk_sae import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig

        return BatchTopKTrainingSAE(
            BatchTopKTrainingSAEConfig(d_in=d_in, d_sae=setup.width, k=setup.k, device="cpu")
        )
    from sae_lens.saes.matryoshka_batchtopk_sae import (
        MatryoshkaBatchTopKTrainingSAE,
        MatryoshkaBatchTopKTrainingSAEConfig,
    )

    return MatryoshkaBatchTopKTrainingSAE(
        MatryoshkaBatchTopKTrainingSAEConfig(
            d_in=d_in,
            d_sae=setup.width,
            k=setup.k,
            matryoshka_widths=list(setup.widths),
            device="cpu",
        )
    )


def _train_ours(
    kind: str, pool: list[torch.Tensor], setup: Setup
) -> tuple[float, SparseAutoencoder]:
    extra = {"matryoshka_widths": list(setup.widths)} if kind == "matryoshka" else {}
    d_in = pool[0].shape[1]
    sae = SparseAutoencoder(d_in, setup.width, kind=kind, k=setup.k, seed=0, **extra)  # type: ignore[arg-type]
    t0 = time.perf_counter()
    sae.fit(iter(pool), samples=len(pool) * setup.batch, batch_size=setup.batch)
    return time.perf_counter() - t0, sae


def _train_saelens(
    kind: str, pool: list[torch.Tensor], setup: Setup, lr: float
) -> tuple[float, SparseAutoencoder]:
    """SAELens's training SAE of ``kind`` on the pool at constant ``lr``, opened by our
    SAELens loader."""
    from benchmarks.bench_sae import train_saelens

    d_in = pool[0].shape[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seconds, theirs = train_saelens(
            d_in,
            setup.width,
            setup.k,
            iter(pool),
            len(pool) * setup.batch,
            setup.batch,
            sae=_saelens_sae(kind, d_in, setup),
            lr=lr,
        )
        with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stderr(io.StringIO()):
            theirs.save_model(Path(tmp) / "sae")
            return seconds, SparseAutoencoder.load(Path(tmp) / "sae")


def _rows(
    label: str,
    ours: TruthMetrics,
    theirs: TruthMetrics,
    tuned: TruthMetrics,
    our_lr: float,
    published: dict[str, float],
) -> list[Row]:
    rows = []
    for name in SHOWN:
        note = f"; published {published[name]} at 200M" if name in published else ""
        rows.append(row(f"{label}: {name}, ours{note}", getattr(ours, name), name))
        rows.append(row(f"{label}: {name}, SAELens", getattr(theirs, name), name))
    for name in ("f1", "mcc"):
        value = getattr(tuned, name)
        rows.append(row(f"{label}: {name}, SAELens at lr {our_lr:.3g}", value, name))
        diff = getattr(ours, name) - getattr(theirs, name)
        rows.append(row(f"{label}: {name} ours - SAELens", diff, "diff", ">= 0", diff >= 0))
    return rows


def compare(
    bench: SynthBench,
    setup: Setup,
    name: str,
    published: dict[str, dict[str, float]] | None = None,
) -> list[Row]:
    """Train both kinds, ours and SAELens's, on one pool of ``bench``'s batches; the rows
    (with ``published[kind][metric]`` in a row's name where given)."""
    g = torch.Generator().manual_seed(1)
    pool = [bench.sample(setup.batch, g) for _ in range(setup.samples // setup.batch)]
    samples = len(pool) * setup.batch
    label = f"{name} {{kind}} (width {setup.width}, k {setup.k}, {samples:,} samples)"
    our_lr = default_lr(setup.width)
    rows: list[Row] = []
    absorption: dict[str, float] = {}
    for kind in ("batchtopk", "matryoshka"):
        t_ours, ours = _train_ours(kind, pool, setup)
        t_theirs, theirs = _train_saelens(kind, pool, setup, 3e-4)
        # The same trainer at our learning rate: how much of the gap the recipe makes.
        tuned = _train_saelens(kind, pool, setup, our_lr)[1]
        m_ours, m_theirs, m_tuned = (
            evaluate_on_truth(s, bench, setup.eval_samples, seed=2) for s in (ours, theirs, tuned)
        )
        absorption[kind] = m_ours.absorption_rate
        rows += _rows(
            label.format(kind=kind),
            m_ours,
            m_theirs,
            m_tuned,
            our_lr,
            (published or {}).get(kind, {}),
        )
        ratio = t_theirs / t_ours
        rows += [
            row(f"{name} {kind}: training samples/s, ours", samples / t_ours, "samples/s"),
            row(f"{name} {kind}: training samples/s, SAELens", samples / t_theirs, "samples/s"),
            row(
                f"{name} {kind}: training throughput ours / SAELens",
                ratio,
                "x",
                f">= {SPEEDUP_BAR}x",
                ratio >= SPEEDUP_BAR,
            ),
        ]
    ratio = absorption["matryoshka"] / max(absorption["batchtopk"], 1e-12)
    rows.append(
        row(f"{name} absorption rate: Matryoshka / BatchTopK (ours)", ratio, "x", "< 1", ratio < 1)
    )
    return rows


def run(quick: bool = False) -> list[Row]:
    try:
        import sae_lens  # noqa: F401
    except ImportError:
        return []
    bench = SynthBench.synthsaebench_16k(seed=0, orthogonalize_steps=5 if quick else 100)
    setup = Setup(samples=8 * 1024, eval_samples=4096) if quick else Setup(samples=SAMPLES)
    return compare(bench, setup, "SynthSAEBench-16k", PUBLISHED)


if __name__ == "__main__":
    for r in run(quick="--quick" in sys.argv):
        print(r)
