"""The ``synth`` benchmark suite at a small size: both kinds, ours and SAELens's trainers on the
same batches, judged by evaluate_on_truth, the rows consistent with each other.

The full suite (SynthSAEBench-16k, width 4096, 1M samples) runs with
``python -m benchmarks.run --only synth``; this runs its code on a 128-feature hierarchy.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from superposition.sae import Hierarchy, SynthBench

ROOT = Path(__file__).resolve().parent.parent


def test_the_synth_suite_trains_and_judges_both_kinds_side_by_side(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("sae_lens")
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks.bench_synth_train import Setup, compare

    bench = SynthBench(
        128,
        16,
        firing_probability=SynthBench.zipf(128, exponent=0.5, max_prob=0.4, min_prob=0.01),
        hierarchy=Hierarchy(4, 3, 2),
        magnitude_std=0.3,
        orthogonalize_steps=0,
        seed=0,
    )
    setup = Setup(samples=4096, eval_samples=2048, width=32, k=3, widths=(4, 16), batch=256)
    rows = compare(bench, setup, "tiny")
    by = {r["name"]: r["value"] for r in rows}
    assert len(by) == len(rows)  # no row named twice
    for kind in ("batchtopk", "matryoshka"):
        label = f"tiny {kind} (width 32, k 3, 4,096 samples)"
        for name in ("f1", "mcc", "uniqueness"):
            for who in ("ours", "SAELens"):
                assert 0 <= by[f"{label}: {name}, {who}"] <= 1
        for name in ("f1", "mcc"):
            diff = by[f"{label}: {name}, ours"] - by[f"{label}: {name}, SAELens"]
            assert by[f"{label}: {name} ours - SAELens"] == pytest.approx(diff)
            assert 0 <= by[f"{label}: {name}, SAELens at lr 0.004"] <= 1
        rate = {w: by[f"tiny {kind}: training samples/s, {w}"] for w in ("ours", "SAELens")}
        ratio = by[f"tiny {kind}: training throughput ours / SAELens"]
        assert ratio == pytest.approx(rate["ours"] / rate["SAELens"])
        assert math.isfinite(by[f"{label}: absorption_rate, ours"])
    ratio = by["tiny absorption rate: Matryoshka / BatchTopK (ours)"]
    batch = by["tiny batchtopk (width 32, k 3, 4,096 samples): absorption_rate, ours"]
    nested = by["tiny matryoshka (width 32, k 3, 4,096 samples): absorption_rate, ours"]
    assert ratio == pytest.approx(nested / max(batch, 1e-12))
