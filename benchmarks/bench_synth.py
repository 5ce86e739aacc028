"""Benchmark: drawing SynthSAEBench-16k's activations, ours against SAELens's generator.

The configuration is the published one (16,384 features in 768 dimensions, Zipfian firing
from 0.4 to 5e-4 with exponent 0.5, 128 trees of branching 4 and depth 3 with exclusive,
parent-scaled and compensated children, a rank-25 copula of scale 0.1, magnitudes linear from
5 to 4 with folded-normal stds, a bias of norm 0.5), built by each library. The dictionary is
left unorthogonalised in both (100 Adam steps on 16,384 directions cost a minute here and do
not change what a sample costs). Rows: samples/s of :class:`~superposition.sae.SynthBench`
in batches of 4,096 (bar: at least 50,000, issue 25), SAELens's ``SyntheticModel.sample`` in
batches of 1,024 (it draws a uniform per feature per sample), and the ratio.

The suite also trains SAEs on this data, ours beside SAELens's
(:mod:`benchmarks.bench_synth_train`).

Run ``python benchmarks/bench_synth.py`` (``--quick`` for a short smoke run).
"""

from __future__ import annotations

import sys
from typing import Any

import torch

from benchmarks.common import Row, row, side_by_side
from superposition.sae import SynthBench

BATCH_OURS, BATCH_SAELENS = 4096, 1024


def _rate(sample: Any, batch: int, repeat: int) -> float:
    """Samples/s: the median of ``repeat`` timed batches after one warm-up batch."""
    return batch / side_by_side({"sample": lambda: sample(batch)}, repeat=repeat)["sample"]


def _saelens_16k() -> Any:
    from sae_lens.synthetic import (
        FoldedNormalMagnitudeConfig,
        HierarchyConfig,
        LinearMagnitudeConfig,
        LowRankCorrelationConfig,
        SyntheticModel,
        SyntheticModelConfig,
        ZipfianFiringProbabilityConfig,
    )

    cfg = SyntheticModelConfig(
        num_features=16_384,
        hidden_dim=768,
        firing_probability=ZipfianFiringProbabilityConfig(
            exponent=0.5, max_prob=0.4, min_prob=5e-4
        ),
        hierarchy=HierarchyConfig(
            total_root_nodes=128,
            branching_factor=4,
            max_depth=3,
            mutually_exclusive_portion=1.0,
            compensate_probabilities=True,
            scale_children_by_parent=True,
        ),
        correlation=LowRankCorrelationConfig(rank=25, correlation_scale=0.1),
        mean_firing_magnitudes=LinearMagnitudeConfig(start=5.0, end=4.0),
        std_firing_magnitudes=FoldedNormalMagnitudeConfig(mean=0.5, std=0.5),
        bias=0.5,
        seed=0,
    )
    return SyntheticModel(cfg)


def _sampling(quick: bool) -> list[Row]:
    ours = SynthBench.synthsaebench_16k(seed=0, orthogonalize_steps=0)
    g = torch.Generator().manual_seed(1)
    mine = _rate(lambda n: ours.sample(n, g), BATCH_OURS, 3 if quick else 20)
    label = "SynthSAEBench-16k sampling"
    rows = [
        row(
            f"{label}, ours: samples/s (batches of 4096)",
            mine,
            "samples/s",
            ">= 50000",
            mine >= 50_000,
        )
    ]
    try:
        theirs_model = _saelens_16k()
    except ImportError:
        return rows
    theirs = _rate(theirs_model.sample, BATCH_SAELENS, 1 if quick else 3)
    rows += [
        row(f"{label}, SAELens SyntheticModel: samples/s (batches of 1024)", theirs, "samples/s"),
        row(f"{label}: ours / SAELens", mine / theirs, "x"),
    ]
    return rows


def run(quick: bool = False) -> list[Row]:
    from benchmarks import bench_synth_train

    return _sampling(quick) + bench_synth_train.run(quick)


if __name__ == "__main__":
    for r in run(quick="--quick" in sys.argv):
        print(r)
