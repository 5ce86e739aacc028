"""Time this tree against an earlier commit of the library, side by side in one process.

A refactor must not cost speed. This imports the library twice: as it is here
(``superposition``) and as it was at ``--ref`` (extracted with ``git archive`` and renamed to
``superposition_ref``, its own imports rewritten), then times the same jobs with both, back to
back and alternating, so drifting load cancels out of each ratio::

    python -m benchmarks.against --ref 66d9435          # toy, SAE and probe rows
    python -m benchmarks.against --ref HEAD~5 --repeat 9

A ratio is (time here) / (time at ref): 1.0 is the same speed, below 1 faster.
"""

from __future__ import annotations

import argparse
import importlib
import io
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def load_ref(ref: str, into: Path) -> ModuleType:
    """The library at git revision ``ref``, importable as ``superposition_ref``."""
    blob = subprocess.run(
        ["git", "archive", ref, "src/superposition"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(into, filter="data")
    src = into / "src" / "superposition"
    dst = into / "superposition_ref"
    src.rename(dst)
    pattern = re.compile(r"\bsuperposition(?=[.\s])")
    for path in dst.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        path.write_text(pattern.sub("superposition_ref", text), encoding="utf-8")
    sys.path.insert(0, str(into))
    return importlib.import_module("superposition_ref")


def paired(here: Callable[[], object], ref: Callable[[], object], repeat: int) -> list[float]:
    """``here``'s time over ``ref``'s, alternating which runs first: one ratio per pair."""
    here(), ref()  # warm-up
    ratios = []
    for i in range(repeat):
        first, second = (here, ref) if i % 2 == 0 else (ref, here)
        t0 = time.perf_counter()
        first()
        t1 = time.perf_counter()
        second()
        t2 = time.perf_counter()
        a, b = (t1 - t0, t2 - t1) if i % 2 == 0 else (t2 - t1, t1 - t0)
        ratios.append(a / b)
    return ratios


def jobs(sp: Any, model: Any, tokenizer: Any, texts: list[str]) -> dict[str, Callable[[], object]]:
    """The jobs timed, written once for both versions of the library."""
    data = sp.SparseFeatureDataset(20, [1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001], 0.9, seed=0)
    truth = sp.SyntheticFeatures(512, 128, firing_probability=5 / 512, seed=0)
    probe = sp.ActivationProbe(model, layer=0, tokenizer=tokenizer, progress=False)

    def toy() -> None:
        sp.ToyModel(20, 5, n_instances=7, seed=0).fit(data, steps=1000, progress=False)

    def sae() -> None:
        sae = sp.SparseAutoencoder(128, 512, kind="topk", k=5, seed=0)
        sae.fit(truth, samples=200_000, batch_size=1024, progress=False)

    def run() -> None:
        probe.run(texts)

    def stream() -> None:
        probe.stream(texts, distributed=False)

    def units() -> None:
        sp.collect_units(probe, texts, top_k=10, distributed=False)

    return {
        "toy fit n=20 (7 instances, 1000 steps)": toy,
        "SAE fit topk 128->512 (200k samples)": sae,
        "probe run MiniLM layer 0": run,
        "probe stream MiniLM layer 0": stream,
        "collect_units MiniLM layer 0": units,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", required=True, help="the git revision to compare against")
    parser.add_argument("--repeat", type=int, default=7, help="pairs per job (default: 7)")
    parser.add_argument("--texts", type=int, default=512, help="sentences probed (default: 512)")
    args = parser.parse_args(argv)
    import superposition as sp
    from benchmarks.bench_probe import sentences

    with tempfile.TemporaryDirectory() as tmp:
        ref = load_ref(args.ref, Path(tmp))
        model, tokenizer = sp.load_model()
        texts = sentences(tokenizer, args.texts)
        mine = jobs(sp, model, tokenizer, texts)
        theirs = jobs(ref, model, tokenizer, texts)
        print(f"ratio = time here / time at {args.ref} ({args.repeat} alternating pairs each)")
        for name, fn in mine.items():
            r = paired(fn, theirs[name], args.repeat)
            q1, med, q3 = statistics.quantiles(r, n=4)
            print(f"{name:<42} median {med:.3f}  (quartiles {q1:.3f}-{q3:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
