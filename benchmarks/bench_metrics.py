"""Metrics: ``cosine_similarity`` on a large activation matrix against normalise-and-matmul.

The library accumulates ``X^T X`` in row chunks and normalises the small ``[N, N]`` result, so it
never copies ``X``; the direct form ``Xn = X / ||X||; Xn.T @ Xn`` copies the whole matrix.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

import torch

from benchmarks.common import Row, peak_extra_mb, row, side_by_side
from superposition import metrics


def direct(X: torch.Tensor) -> torch.Tensor:
    """The textbook computation: normalise every column, then one matmul."""
    Xn = X / X.norm(dim=0).clamp_min(1e-12)
    out: torch.Tensor = Xn.T @ Xn
    return out


def _matrix(tokens: int, neurons: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.nn.functional.gelu(torch.randn(tokens, neurons, generator=g))


def _memory_in_fresh_process(which: str, tokens: int, neurons: int) -> float:
    """Peak extra RSS of one computation, MiB, measured in a new interpreter.

    In-process numbers depend on what the allocator kept from earlier runs; a fresh process
    starts every measurement from the same state.
    """
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "src"), str(root)])}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.bench_metrics",
            "--memory",
            which,
            str(tokens),
            str(neurons),
        ],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=root,
    )
    return float(out.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> list[Row]:
    tokens, neurons = (20_000, 1536) if quick else (100_000, 3072)
    X = _matrix(tokens, neurons)
    size_mb = X.numel() * 4 / 2**20

    times = side_by_side(
        {"library": lambda: metrics.cosine_similarity(X), "direct": lambda: direct(X)},
        repeat=2 if quick else 3,
        warmup=0,
    )
    err = float((metrics.cosine_similarity(X) - direct(X)).abs().max())
    gc.collect()
    mem_lib = _memory_in_fresh_process("library", tokens, neurons)
    mem_direct = _memory_in_fresh_process("direct", tokens, neurons)
    shape = f"[{tokens // 1000}k, {neurons}]"
    ratio = times["library"] / times["direct"]
    return [
        row(
            f"cosine_similarity {shape}: time vs normalise-and-matmul",
            ratio,
            "x",
            "<= 1.2x",
            ratio <= 1.2,
        ),
        row(f"cosine_similarity {shape}: time", times["library"], "s"),
        row(
            f"cosine_similarity {shape}: peak extra memory vs normalise-and-matmul",
            mem_lib / mem_direct,
            "x",
            "< 1x",
            mem_lib < mem_direct,
        ),
        row(
            f"cosine_similarity {shape}: peak extra memory / size of X",
            mem_lib / size_mb,
            "x",
            "<= 0.25x",
            mem_lib <= 0.25 * size_mb,
        ),
        row(
            f"cosine_similarity {shape}: max |library - direct|", err, "abs", "<= 1e-4", err <= 1e-4
        ),
    ]


if __name__ == "__main__":
    if sys.argv[1:2] == ["--memory"]:
        which, tokens, neurons = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        X = _matrix(tokens, neurons)
        fn = metrics.cosine_similarity if which == "library" else direct
        fn(X[:2048])  # BLAS allocates its work buffers on first use: not the method's memory
        print(peak_extra_mb(lambda: fn(X))[0])
    else:
        for r in run(quick="--quick" in sys.argv):
            print(r)
