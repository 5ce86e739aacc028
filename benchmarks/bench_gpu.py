"""Benchmark: the probe and SAE training on a CUDA GPU, float32 against bfloat16.

Not in :mod:`benchmarks.run`'s suites (CI has no GPU). On a CUDA machine run
``python -m benchmarks.bench_gpu`` (``--quick`` for a smoke run); without a GPU it prints a
message on stderr and returns no rows. It takes about a minute on an H100 or H200. Nothing is
downloaded: the model is built from its config with random weights and fed random token ids.

Rows, each named with the GPU (``torch.cuda.get_device_name()``):

* **probe**: tokens/s of :class:`~superposition.ActivationProbe` on ``GPT2Model(GPT2Config())``
  (124M parameters, MLP width 3072), layer 6, batches of 32 sequences of 256 random ids, with
  the model in float32 and in bfloat16, for ``run`` (rows copied to the CPU as float32) and
  ``stream`` (moments and the float64 Gram accumulated on the CPU).
* **SAE**: samples/s of :meth:`~superposition.SparseAutoencoder.fit` with ``d_in=3072`` (GPT-2's
  MLP width), ``d_sae=8·3072``, TopK ``k=32``, batch 4096, on random rows kept on the GPU, in
  float32 and with ``autocast=torch.bfloat16``; then the same SAE on the CPU for a few steps, and
  the ratio of GPU to CPU samples/s.

Every GPU timing is bracketed by ``torch.cuda.synchronize()`` after a warm-up.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import Row, row
from superposition import ActivationProbe, SparseAutoencoder

D_IN = 3072
D_SAE = 8 * D_IN
K = 32
BATCH = 4096
SEQ = 256
PROBE_BATCH = 32


def _timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Wall seconds of ``fn()``, the GPU drained before and after."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def _gpt2(device: torch.device, dtype: torch.dtype, *, tiny: bool = False) -> Any:
    """GPT-2 small (or a tiny GPT-2 for a CPU check of this file) with random weights."""
    from transformers import GPT2Config, GPT2Model

    config = GPT2Config(n_layer=2, n_embd=32, n_head=2) if tiny else GPT2Config()
    return GPT2Model(config).eval().to(device, dtype)


def probe_rate(
    model: Any, layer: int, n_seqs: int, mode: str, device: torch.device, *, seq: int = SEQ
) -> float:
    """Tokens/s of ``ActivationProbe(model, layer=layer).<mode>`` on ``n_seqs`` random
    sequences of ``seq`` ids (after one warm-up batch)."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (n_seqs, seq), generator=g)
    texts = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    warm = {k: v[:PROBE_BATCH] for k, v in texts.items()}
    probe = ActivationProbe(model, layer=layer, batch_size=PROBE_BATCH)
    go = probe.run if mode == "run" else probe.stream
    go(warm)
    return n_seqs * seq / _timed(lambda: go(texts), device)


def sae_rate(
    device: torch.device,
    steps: int,
    autocast: torch.dtype | None,
    *,
    d_in: int = D_IN,
    d_sae: int = D_SAE,
    k: int = K,
    batch: int = BATCH,
) -> float:
    """Samples/s of ``fit`` over ``steps`` steps on ``device`` (after a 2-step warm-up)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4 * batch, d_in, generator=g).to(device)
    sae = SparseAutoencoder(d_in, d_sae, k=k, seed=0, device=device)
    sae.fit(x, samples=2 * batch, batch_size=batch, autocast=autocast)
    seconds = _timed(
        lambda: sae.fit(x, samples=steps * batch, batch_size=batch, autocast=autocast), device
    )
    return steps * batch / seconds


def run(quick: bool = False) -> list[Row]:
    """The rows of the module docstring; ``[]`` (and a note on stderr) without a CUDA GPU."""
    if not torch.cuda.is_available():
        print("bench_gpu: no CUDA GPU here; nothing measured", file=sys.stderr)
        return []
    cuda = torch.device("cuda")
    gpu = torch.cuda.get_device_name()
    rows: list[Row] = []
    n_seqs = 64 if quick else 512
    for dtype, label in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        model = _gpt2(cuda, dtype)
        for mode in ("run", "stream"):
            seqs = n_seqs if mode == "run" else n_seqs // 4  # stream's Gram runs on the CPU
            rate = probe_rate(model, 6, seqs, mode, cuda)
            rows.append(row(f"probe.{mode} GPT-2 124M {label} tokens/s [{gpu}]", rate, "tokens/s"))
        del model
        torch.cuda.empty_cache()
    steps = 5 if quick else 30
    rates = {}
    for autocast, label in ((None, "fp32"), (torch.bfloat16, "bf16 autocast")):
        rates[label] = sae_rate(cuda, steps, autocast)
        name = f"SAE fit d_in={D_IN} d_sae={D_SAE} k={K} {label} samples/s [{gpu}]"
        rows.append(row(name, rates[label], "samples/s"))
    cpu_rate = sae_rate(torch.device("cpu"), 1 if quick else 3, None)
    rows.append(
        row(
            f"SAE fit same SAE on the CPU ({torch.get_num_threads()} threads)",
            cpu_rate,
            "samples/s",
        )
    )
    for label, rate in rates.items():
        rows.append(row(f"SAE fit GPU {label} / CPU fp32 [{gpu}]", rate / cpu_rate, "x"))
    rows.append(
        row(f"SAE fit bf16 autocast / fp32 [{gpu}]", rates["bf16 autocast"] / rates["fp32"], "x")
    )
    return rows


if __name__ == "__main__":
    for r in run(quick="--quick" in sys.argv):
        print(f"{r['name']:<80} {r['value']:>12.4g} {r['unit']}")
