"""Benchmark: transcoder training beside SAE training at the same sizes, and beside sparsify's
transcoder on the CPU.

The rows: MiniLM's layer-0 MLP, what it reads (``mlp_in``, 384 wide) and what it writes
(``mlp_out``, 384), captured once over paragraphs of the default corpus's train split and
shuffled; batches of 4,096 tokens; ``d_sae`` 6,144 (4 x the MLP's 1,536 neurons) and ``k`` 32,
on 2 CPU threads, interleaved (medians):

* **SAE**: :meth:`SparseAutoencoder.fit` on ``mlp_in`` alone (``d_in`` 384): the same encoder
  and sparse decoder, the baseline of the ratio.
* **transcoder** and **skip transcoder**: :meth:`Transcoder.fit` on the pairs (bar: at most
  1.3x the SAE's time per sample). The transcoder's rows are twice as wide (``[x | y]``) and a
  skip transcoder adds a dense ``d_out x d_in`` product and its gradient.
* **sparsify**: its ``SparseCoder`` with ``transcode=True, skip_connection=True`` stepped as its
  trainer steps it, with Adam (as in :mod:`benchmarks.bench_sae_real`), on the same pairs:
  information, and the ratio ours / sparsify.

Quality at equal samples (the FVU of ``mlp_out`` on the first tokens of the test split) is
reported for each transcoder.

Run ``python benchmarks/bench_transcoder.py`` (``--quick`` for a short smoke run).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_sae_real import activations
from benchmarks.common import Row, row, side_by_side
from superposition import SparseAutoencoder, Transcoder

BATCH = 4096
K = 32
D_SAE = 6144
BAR = 1.3


def _sparsify(batches: list[torch.Tensor], d_in: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """sparsify's skip transcoder trained on ``batches``; returns its prediction of ``y``."""
    from sparsify import SparseCoder, SparseCoderConfig

    torch.manual_seed(0)
    cfg = SparseCoderConfig(num_latents=D_SAE, k=K, transcode=True, skip_connection=True)
    tc = SparseCoder(d_in, cfg, device="cpu")
    with torch.no_grad():
        tc.b_dec.copy_(batches[0][:, d_in:].mean(0))
    opt = torch.optim.Adam(tc.parameters(), lr=2e-4 / (D_SAE / 2**14) ** 0.5)
    for rows in batches:
        tc.set_decoder_norm_to_unit_norm()
        tc(rows[:, :d_in], rows[:, d_in:]).fvu.backward()
        tc.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        opt.zero_grad()
    tc.set_decoder_norm_to_unit_norm()

    def predict(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out: torch.Tensor = tc(x).sae_out
            return out

    return predict


def _fvu(y: torch.Tensor, yhat: torch.Tensor) -> float:
    y, yhat = y.double(), yhat.double()
    return float((y - yhat).square().sum() / (y - y.mean(0)).square().sum())


def run(quick: bool = False) -> list[Row]:
    steps = 3 if quick else 20
    repeat = 1 if quick else 3
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        train, test = activations(
            steps * BATCH, 8192 if not quick else 2048, sites=("mlp_in", "mlp_out")
        )
        d = train.shape[1] // 2
        batches = [train[i : i + BATCH] for i in range(0, len(train), BATCH)]
        xt, yt = test[:, :d], test[:, d:]
        made: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}

        def ours(skip: bool | None) -> Callable[[], object]:
            def fit() -> object:
                if skip is None:
                    sae = SparseAutoencoder(d, D_SAE, k=K, seed=0)
                    return sae.fit(iter([b[:, :d] for b in batches]), samples=len(train))
                tc = Transcoder(d, d, D_SAE, k=K, skip=skip, seed=0)
                tc.fit(iter(batches), samples=len(train), batch_size=BATCH)
                made["skip transcoder" if skip else "transcoder"] = tc
                return tc

            return fit

        def theirs() -> object:
            made["sparsify"] = _sparsify(batches, d)
            return made["sparsify"]

        times = side_by_side(
            {
                "SAE": ours(None),
                "transcoder": ours(False),
                "skip transcoder": ours(True),
                "sparsify": theirs,
            },
            repeat=repeat,
            warmup=0 if quick else 1,
        )
    finally:
        torch.set_num_threads(threads)
    n = len(train)
    rows = [
        row(f"{name}: samples/s (d_in {d}, d_sae {D_SAE}, k {K})", n / t, "samples/s")
        for name, t in times.items()
    ]
    for name in ("transcoder", "skip transcoder"):
        ratio = times[name] / times["SAE"]
        rows.append(row(f"{name} / SAE: time per sample", ratio, "x", f"<= {BAR}x", ratio <= BAR))
    rows.append(
        row(
            "skip transcoder: ours / sparsify speed",
            times["sparsify"] / times["skip transcoder"],
            "x",
        )
    )
    with torch.no_grad():
        for name, predict in made.items():
            rows.append(row(f"{name}: FVU of mlp_out, held-out", _fvu(yt, predict(xt)), ""))
    return rows


if __name__ == "__main__":
    for r in run(quick="--quick" in sys.argv):
        print(f"{r['name']:<60} {r['value']:>12.4g} {r['unit']:<10} {r['bar']}")
