"""Benchmark: TopK SAE training on real activations, ours beside SAELens and sparsify.

All three trainers see the same batches: the shipped MiniLM's layer-0 MLP neurons (``d_in``
1536) over paragraphs of the default corpus's train split, captured once and shuffled, cut in
batches of 4,096 tokens; the held-out rows are the first tokens of the test split. Every
trainer trains a TopK SAE with ``d_sae`` 6,144 and ``k`` 32 on the same 409,600 samples (100
steps; one run each, in turn), on 2 CPU threads:

* **ours**: :meth:`SparseAutoencoder.fit` with its defaults (Adam, lr ``2e-4 / sqrt(d_sae /
  2^14)``, AuxK on dead latents).
* **SAELens**: its ``TopKTrainingSAE`` under its own ``SAETrainer`` (Adam, lr 3e-4 constant,
  AuxK coefficient 1, the settings of ``sae_lens.synthetic.train_toy_sae``).
* **sparsify**: its ``SparseCoder`` (fused TopK encoder, sparse decoder backward) stepped as
  its ``Trainer`` steps it (decoder rows unit-norm, the gradient along them removed,
  ``b_dec`` started at the mean), with Adam at sparsify's own Adam learning rate, also
  ``2e-4 / sqrt(d_sae / 2^14)``. Its default optimizer is signum (schedule-free sign SGD);
  Adam is used so that the three differ in implementation, not in the optimizer.

Rows: samples/s of each, the ratios (bars: at least 3x SAELens and 1.5x sparsify), and the
quality each reached at equal samples. The trained SAELens and sparsify SAEs are saved by
their own code and opened by this library's loaders (tested to give the same latents), so one
function measures all three: on the held-out rows, the fraction of variance unexplained
(FVU; bar: ours at most the best peer's) and the share of latents that never fire; on 200
held-out paragraphs, the loss recovered with the SAE spliced into the layer (against
zero-ablation of the neurons it replaces; for MiniLM the loss is ``1 - cos`` of the output
embeddings; bar: ours at least the best peer's). The same rows at ``d_in`` 768 (the first 768
neurons, the others passed through) and ``d_sae`` 16,384.

How close to the machine: the share of the fp32 matmul peak (``torch.mm`` of the encoder's
shape, timed in the same run) that our whole training step reaches, counting only the
encoder's dense product (``2 B d_in d_sae`` FLOPs; bar: at least 0.5). The rest of the step is
top-k, the sparse decode and backward, AuxK and Adam.

Run ``python benchmarks/bench_sae_real.py`` (``--quick`` for a short smoke run).
"""

from __future__ import annotations

import contextlib
import io
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import Row, cli_peak_gb, row, side_by_side
from superposition import SparseAutoencoder

BATCH = 4096
K = 32
# 409,600 samples: after 20 steps (82k) every trainer's SAE was still worse than zeroing the
# layer by loss recovered (ours -1.8, sparsify -0.2, FVU 0.44 and 0.66), a regime where that
# number says nothing; by 50 steps ours recovered 0.38 and by 100 steps 0.64.
STEPS = 100
SAELENS_BAR = 3.0
SPARSIFY_BAR = 1.5
PEAK_BAR = 0.5


def activations(
    n_train: int, n_test: int, sites: tuple[str, ...] = ("neurons",)
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(train, test)`` rows of MiniLM's layer 0 at ``sites`` (side by side: ``("mlp_in",
    "mlp_out")`` gives a transcoder's rows): ``n_train`` shuffled tokens of the train split
    and the first ``n_test`` tokens of the test split."""
    from superposition import ActivationProbe, default_corpus, load_model

    model, tokenizer = load_model()
    probe = ActivationProbe(
        model, 0, site=list(sites), tokenizer=tokenizer, batch_size=64, progress=False
    )

    def take(split: str, n: int) -> torch.Tensor:
        texts = default_corpus(split)
        rows, got, start = [], 0, 0
        while got < n:
            chunk = list(texts.head(start + 256))[start:]
            if not chunk:
                raise RuntimeError(f"the {split} split has fewer than {n} tokens")
            values = torch.cat([a.values for a in probe.run(chunk)], 1)
            rows.append(values)
            got += values.shape[0]
            start += 256
        return torch.cat(rows)[:n]

    train = take("train", n_train)
    train = train[torch.randperm(train.shape[0], generator=torch.Generator().manual_seed(0))]
    return train, take("test", n_test)


def held_out_texts(n: int) -> list[str]:
    """The first ``n`` paragraphs of the default corpus's test split (loss recovered)."""
    from superposition import default_corpus

    return list(default_corpus("test").head(n))


def _batches(X: torch.Tensor) -> list[torch.Tensor]:
    return [X[i : i + BATCH] for i in range(0, X.shape[0] - BATCH + 1, BATCH)]


def _ours(batches: list[torch.Tensor], d_sae: int) -> SparseAutoencoder:
    d_in = batches[0].shape[1]
    sae = SparseAutoencoder(d_in, d_sae, kind="topk", k=K, seed=0)
    sae.fit(iter(batches), samples=len(batches) * BATCH, batch_size=BATCH)
    return sae


def _saelens(batches: list[torch.Tensor], d_sae: int) -> Any:
    from benchmarks.bench_sae import train_saelens

    d_in = batches[0].shape[1]
    return train_saelens(d_in, d_sae, K, iter(batches), len(batches) * BATCH, BATCH)[1]


def _sparsify(batches: list[torch.Tensor], d_sae: int) -> Any:
    from sparsify import SaeConfig, SparseCoder

    d_in = batches[0].shape[1]
    torch.manual_seed(0)
    sae = SparseCoder(d_in, SaeConfig(num_latents=d_sae, k=K), device="cpu")
    with torch.no_grad():
        sae.b_dec.copy_(batches[0].mean(0))
    opt = torch.optim.Adam(sae.parameters(), lr=2e-4 / (d_sae / 2**14) ** 0.5)
    for x in batches:
        sae.set_decoder_norm_to_unit_norm()
        sae(x).fvu.backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        opt.zero_grad()
    sae.set_decoder_norm_to_unit_norm()
    return sae


TRAINERS = {"ours": _ours, "SAELens": _saelens, "sparsify": _sparsify}


def _opened(name: str, trained: Any) -> SparseAutoencoder:
    """A trained SAE as this library's: ours as it is, SAELens's and sparsify's saved by
    their own code and read by this library's loaders (tested to give the same latents in
    ``tests/test_interop_saelens.py`` and ``tests/test_interop_sparsify.py``), so that one
    function judges all three."""
    if name == "ours":
        return trained  # type: ignore[no-any-return]
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stderr(io.StringIO()):
        if name == "SAELens":
            trained.save_model(Path(tmp) / "sae")
        else:
            trained.save_to_disk(Path(tmp) / "sae")
        return SparseAutoencoder.load(Path(tmp) / "sae")


def _quality(sae: SparseAutoencoder, test: torch.Tensor) -> tuple[float, float]:
    """``(FVU, dead share)`` on the held-out rows, by one formula for every trainer."""
    with torch.no_grad():
        z = sae.encode(test)
        xhat = sae.decode(z)
    fvu = float((test - xhat).square().sum() / (test - test.mean(0)).square().sum())
    return fvu, 1.0 - float(z.gt(0).any(0).float().mean())


def _loss_recovered(saes: dict[str, SparseAutoencoder], texts: list[str]) -> dict[str, float]:
    """Loss recovered of each SAE spliced into MiniLM's layer-0 neurons on held-out
    ``texts``, against zero-ablation of the same neurons, all measured in one pass
    (:func:`~superposition.sae.fidelity.edit_effects`; for this encoder the loss is ``1 - cos``
    of the output embeddings). An SAE of ``d_in`` 768 replaces the first 768 neurons and the
    ablation zeroes those; the others pass through unchanged."""
    from superposition import load_model
    from superposition.sae.edit import NeuronEdit, ablate_neurons, splice
    from superposition.sae.fidelity import edit_effects, loss_recovered

    model, tokenizer = load_model()
    d = next(iter(saes.values())).d_in

    def first(edit: NeuronEdit) -> NeuronEdit:
        def apply(x: torch.Tensor) -> torch.Tensor:
            out = x.clone()
            out[..., :d] = edit(x[..., :d])
            return out

        return apply

    edits = {name: first(splice(sae)) for name, sae in saes.items()}
    edits["zero"] = ablate_neurons(list(range(d)))
    _, clean, effects, _, _ = edit_effects(model, texts, 0, edits, tokenizer=tokenizer)
    zero = effects["zero"].loss
    return {name: loss_recovered(clean, effects[name].loss, zero) for name in saes}


def _matmul_peak(d_in: int, d_sae: int, repeat: int = 5) -> float:
    """FLOP/s of ``torch.mm`` at the encoder's shape (the best of ``repeat``)."""
    a, b = torch.randn(BATCH, d_in), torch.randn(d_in, d_sae)
    torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b)) for _ in range(repeat))
    return 2 * BATCH * d_in * d_sae / best


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _compare(
    train: torch.Tensor, test: torch.Tensor, texts: list[str], d_sae: int, repeat: int
) -> list[Row]:
    d_in = train.shape[1]
    batches = _batches(train)
    samples = len(batches) * BATCH
    label = f"sae real d_in={d_in} d_sae={d_sae} k={K}"
    made: dict[str, Any] = {}

    def trainer(name: str) -> Callable[[], None]:
        def go() -> None:
            made[name] = TRAINERS[name](batches, d_sae)

        return go

    t = side_by_side({name: trainer(name) for name in TRAINERS}, repeat=repeat, warmup=0)
    rate = {name: samples / t[name] for name in TRAINERS}
    rows = [row(f"{label}: {name} samples/s", rate[name], "samples/s") for name in TRAINERS]
    for peer, bar in (("SAELens", SAELENS_BAR), ("sparsify", SPARSIFY_BAR)):
        ratio = rate["ours"] / rate[peer]
        rows.append(
            row(f"{label}: ours / {peer} throughput", ratio, "x", f">= {bar}x", ratio >= bar)
        )
    saes = {name: _opened(name, made[name]) for name in TRAINERS}
    quality = {name: _quality(sae, test[:, :d_in]) for name, sae in saes.items()}
    recovered = _loss_recovered(saes, texts)
    for name, (fvu, dead) in quality.items():
        rows.append(row(f"{label}: {name} held-out FVU after {samples:,}", fvu, "FVU"))
        rows.append(row(f"{label}: {name} dead latents after {samples:,}", 100 * dead, "%"))
        rows.append(
            row(
                f"{label}: {name} loss recovered on {len(texts)} held-out texts",
                recovered[name],
                "frac",
            )
        )
    peers = ("SAELens", "sparsify")
    best_peer = min(quality[p][0] for p in peers)
    rows.append(
        row(
            f"{label}: ours FVU / best peer's",
            quality["ours"][0] / best_peer,
            "ratio",
            "<= 1.0",
            quality["ours"][0] <= best_peer,
        )
    )
    best_recovered = max(recovered[p] for p in peers)
    diff = recovered["ours"] - best_recovered
    rows.append(row(f"{label}: ours loss recovered - best peer's", diff, "diff", ">= 0", diff >= 0))
    peak = _matmul_peak(d_in, d_sae)
    step_flops = 2 * BATCH * d_in * d_sae * len(batches)
    share = step_flops / t["ours"] / peak
    rows.append(row(f"{label}: fp32 matmul peak (torch.mm)", peak / 1e9, "GFLOP/s"))
    rows.append(
        row(
            f"{label}: ours share of matmul peak",
            share,
            "share",
            f">= {PEAK_BAR}",
            share >= PEAK_BAR,
        )
    )
    return rows


MEMORY_BAR_GB = 2.0


def _train_peak_gb(samples: int) -> float:
    """Peak RSS (GB: KiB / 1e6, as ``/usr/bin/time`` is read) of ``superposition sae train``
    with its defaults (MiniLM layer 0, 6,144 latents, k 32, batch 4,096, the default corpus,
    no cache) on ``samples`` tokens, in a fresh process. The peak is reached once the
    shuffling buffer is full and training runs (after ~65k tokens); the rest of the run holds
    it flat."""
    import tempfile

    with tempfile.TemporaryDirectory() as out:
        argv = ["sae", "train", "--samples", str(samples), "--eval-texts", "50"]
        return cli_peak_gb([*argv, "--no-progress", "--out", str(Path(out) / "sae")])


def run(quick: bool = False) -> list[Row]:
    """Every row (module docstring), on 2 CPU threads; then the peak memory of the default
    ``sae train`` (bar: at most 2 GB)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        steps = 3 if quick else STEPS
        train, test = activations(steps * BATCH, 2 * BATCH if quick else 8 * BATCH)
        texts = held_out_texts(20 if quick else 200)
        rows = _compare(train, test, texts, 6144, repeat=1)
        rows += _compare(train[:, :768].contiguous(), test, texts, 16384, repeat=1)
    finally:
        torch.set_num_threads(threads)
    samples = 100_000 if quick else 400_000
    peak = _train_peak_gb(samples)
    rows.append(
        row(
            f"superposition sae train (defaults, {samples:,} tokens): peak RSS",
            peak,
            "GB",
            f"<= {MEMORY_BAR_GB:g} GB",
            peak <= MEMORY_BAR_GB,
        )
    )
    return rows


if __name__ == "__main__":
    for r in run(quick="--quick" in sys.argv):
        verdict = "" if not r["bar"] else ("met" if r["met"] else "NOT met")
        print(f"{r['name']:<70} {r['value']:>12.4g} {r['unit']:<10} {r['bar']} {verdict}")
