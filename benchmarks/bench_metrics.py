"""Metrics: ``cosine_similarity`` on a large activation matrix against normalise-and-matmul.

The library accumulates ``X^T X`` in row chunks and normalises the small ``[N, N]`` result, so it
never copies ``X``; the direct form ``Xn = X / ||X||; Xn.T @ Xn`` copies the whole matrix.
"""

from __future__ import annotations

import gc

import torch

from benchmarks.common import Row, peak_extra_mb, row, side_by_side
from superposition import metrics


def direct(X: torch.Tensor) -> torch.Tensor:
    """The textbook computation: normalise every column, then one matmul."""
    Xn = X / X.norm(dim=0).clamp_min(1e-12)
    return Xn.T @ Xn


def run(quick: bool = False) -> list[Row]:
    tokens, neurons = (20_000, 1536) if quick else (100_000, 3072)
    g = torch.Generator().manual_seed(0)
    X = torch.nn.functional.gelu(torch.randn(tokens, neurons, generator=g))
    size_mb = X.numel() * 4 / 2**20

    times = side_by_side(
        {"library": lambda: metrics.cosine_similarity(X), "direct": lambda: direct(X)},
        repeat=1 if not quick else 2,
        warmup=0,
    )
    gc.collect()
    mem_lib, ours = peak_extra_mb(lambda: metrics.cosine_similarity(X))
    gc.collect()
    mem_direct, ref = peak_extra_mb(lambda: direct(X))
    err = float((ours - ref).abs().max())
    shape = f"[{tokens // 1000}k, {neurons}]"
    return [
        row(
            f"cosine_similarity {shape}: time vs direct",
            times["library"] / times["direct"],
            "x",
            "<= 1.2x",
            times["library"] <= 1.2 * times["direct"],
        ),
        row(f"cosine_similarity {shape}: time", times["library"], "s"),
        row(
            f"cosine_similarity {shape}: extra memory vs direct",
            mem_lib / max(mem_direct, 1e-9),
            "x",
            "< 1x",
            mem_lib < mem_direct,
        ),
        row(
            f"cosine_similarity {shape}: extra memory / size of X",
            mem_lib / size_mb,
            "x",
            "<= 0.25x",
            mem_lib <= 0.25 * size_mb,
        ),
        row(f"cosine_similarity {shape}: max |library - direct|", err, "", "<= 1e-4", err <= 1e-4),
    ]


if __name__ == "__main__":
    for r in run():
        print(r)
