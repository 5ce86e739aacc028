"""ActivationStore: every token once per epoch, mixed across texts, cached bit-identically."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

from conftest import tiny_model
from superposition import ActivationProbe, SparseAutoencoder
from superposition.sae.store import ActivationStore

WORDS = "the cat sat on a mat while rain fell over quiet hills and old towns slept".split()  # noqa: SIM905
# Forty distinct texts of 3 to 12 words.
TEXTS = [" ".join(WORDS[(i * 7) % 11 : (i * 7) % 11 + 3 + i % 10]) + f" {i}" for i in range(40)]
CHUNK = 6


def _probe(tokenizer: Any, layer: int = 0) -> ActivationProbe[Any, Any]:
    model, _ = tiny_model("bert")
    return ActivationProbe(model, layer=layer, tokenizer=tokenizer, progress=False)


def _corpus_order(probe: ActivationProbe[Any, Any]) -> tuple[Tensor, Tensor]:
    """Rows and their text numbers, chunk by chunk as the store asks the probe."""
    values, owner = [], []
    for start in range(0, len(TEXTS), CHUNK):
        acts = probe.run(TEXTS[start : start + CHUNK])
        values.append(acts.values)
        owner.append(acts.text_index + start)
    return torch.cat(values), torch.cat(owner)


def _key(rows: Tensor) -> list[bytes]:
    return [r.numpy().tobytes() for r in rows]


def _store(probe: ActivationProbe[Any, Any], **kw: Any) -> ActivationStore:
    args: dict[str, Any] = {"batch_size": 16, "buffer_rows": 64, "chunk_texts": CHUNK, "seed": 3}
    return ActivationStore(probe, TEXTS, **{**args, **kw})


def test_each_epoch_yields_every_token_once_in_mixed_batches(tokenizer: Any) -> None:
    probe = _probe(tokenizer)
    rows, owner = _corpus_order(probe)
    text_of = dict(zip(_key(rows), owner.tolist(), strict=True))
    assert len(text_of) == rows.shape[0]  # every row distinct, so rows identify tokens

    batches = list(_store(probe, epochs=2))
    n = rows.shape[0]
    per_epoch = [16] * (n // 16) + ([n % 16] if n % 16 else [])
    assert [b.shape[0] for b in batches] == per_epoch * 2  # only an epoch's last batch is short
    got = torch.cat(batches)
    assert got.shape[0] == 2 * n
    for epoch in (got[:n], got[n:]):
        assert sorted(_key(epoch)) == sorted(_key(rows))
    assert not torch.equal(got[:n], got[n:])  # each epoch shuffled anew

    # Consecutive rows come from different texts far more often than in corpus order.
    def switches(order: list[int]) -> float:
        return sum(a != b for a, b in itertools.pairwise(order)) / (len(order) - 1)

    stored = [text_of[k] for k in _key(got[:n])]
    assert switches(owner.tolist()) < 0.2
    assert switches(stored) > 0.8


def test_the_same_seed_gives_the_same_batches(tokenizer: Any) -> None:
    probe = _probe(tokenizer)
    a, b = list(_store(probe)), list(_store(probe))
    c = list(_store(probe, seed=4))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))


def _train(source: Any) -> Tensor:
    sae = SparseAutoencoder(48, 96, k=4, seed=0)
    sae.fit(source, samples=10_000, batch_size=32, log_every=1)
    return sae.params.detach().clone()


def test_training_from_the_cache_is_bit_identical(tokenizer: Any, tmp_path: Path) -> None:
    probe = _probe(tokenizer)
    cache = tmp_path / "cache"
    with pytest.warns(RuntimeWarning, match="the source ran out"):
        memory = _train(_store(probe))
    first = _store(probe, cache_dir=cache)
    assert not first.cached
    with pytest.warns(RuntimeWarning, match="the source ran out"):
        written = _train(first)
    assert first.cached
    manifest = json.loads((cache / "manifest.json").read_text())
    assert manifest["complete"]
    assert len(manifest["shards"]) == -(-len(TEXTS) // CHUNK)
    assert sum(s["texts"] for s in manifest["shards"]) == len(TEXTS)

    class Refuse:
        def run(self, texts: Any) -> Any:
            raise AssertionError("the model ran although the cache is complete")

    again = _store(probe, cache_dir=cache)
    again.probe = Refuse()  # type: ignore[assignment]
    with pytest.warns(RuntimeWarning, match="the source ran out"):
        read = _train(again)
    assert torch.equal(memory, written)
    assert torch.equal(memory, read)


def test_an_interrupted_cache_resumes(tokenizer: Any, tmp_path: Path) -> None:
    probe = _probe(tokenizer)
    cache = tmp_path / "cache"
    expected = list(_store(probe))
    partial = iter(_store(probe, cache_dir=cache))
    next(partial)
    partial.close()  # stopped after the first batch: some shards written, not complete
    manifest = json.loads((cache / "manifest.json").read_text())
    assert not manifest["complete"]
    assert 0 < len(manifest["shards"]) < -(-len(TEXTS) // CHUNK)
    resumed = list(_store(probe, cache_dir=cache))
    assert all(torch.equal(x, y) for x, y in zip(expected, resumed, strict=True))
    assert json.loads((cache / "manifest.json").read_text())["complete"]
    assert sorted(p.name for p in cache.iterdir() if p.name.startswith(".")) == []


def test_bad_arguments_fail_before_any_work(tokenizer: Any, tmp_path: Path) -> None:
    model, _ = tiny_model("bert")
    with pytest.raises(ValueError, match=r"reads layers \[0, 1\]; make one ActivationProbe"):
        ActivationStore(ActivationProbe(model, layer="all", tokenizer=tokenizer), TEXTS)
    padded = ActivationProbe(model, layer=0, tokenizer=tokenizer, keep_padding=True)
    with pytest.raises(ValueError, match="keeps padding rows"):
        ActivationStore(padded, TEXTS)
    probe = _probe(tokenizer)
    with pytest.raises(ValueError, match=r"buffer_rows must be at least 2 x batch_size = 32"):
        ActivationStore(probe, TEXTS, batch_size=16, buffer_rows=20)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        ActivationStore(probe, TEXTS, batch_size=0)
    with pytest.raises(TypeError, match="probe must be an ActivationProbe"):
        ActivationStore("bert", TEXTS)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="distributed=True needs an initialised"):
        ActivationStore(probe, TEXTS, distributed=True)
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(ValueError, match="exists and is not a folder"):
        ActivationStore(probe, TEXTS, cache_dir=a_file)
    cache = tmp_path / "cache"
    list(_store(probe, cache_dir=cache))
    with pytest.raises(ValueError, match=r"holds other activations.*'module'"):
        _store(_probe(tokenizer, layer=1), cache_dir=cache)
    with pytest.raises(ValueError, match=r"holds other activations.*'corpus'"):
        ActivationStore(probe, TEXTS[:5], chunk_texts=CHUNK, cache_dir=cache)


def test_the_cache_knows_the_texts_and_the_weights(tokenizer: Any, tmp_path: Path) -> None:
    from conftest import _build

    probe = _probe(tokenizer)
    cache = tmp_path / "cache"
    list(_store(probe, cache_dir=cache))
    same_count = [t.upper() for t in TEXTS]  # same name ("list of 40 texts"), other texts
    with pytest.raises(ValueError, match="'corpus_fingerprint'"):
        ActivationStore(probe, same_count, chunk_texts=CHUNK, cache_dir=cache)
    other_model = _build("bert")[0]
    with torch.no_grad():
        next(other_model.parameters()).add_(1.0)  # same architecture and name, other weights
    other = ActivationProbe(other_model, layer=0, tokenizer=tokenizer, progress=False)
    with pytest.raises(ValueError, match="'weights'"):
        _store(other, cache_dir=cache)
    assert _store(probe, cache_dir=cache).cached  # the same model and texts still reuse it


@pytest.mark.parametrize("seed", range(4))
def test_one_pass_yields_every_row_once_in_whole_batches(seed: int) -> None:
    """Chunks of any size (some larger than the buffer): every row comes out exactly once,
    in batches of batch_size but the last, shuffled (not in the order it went in), and the
    same generator gives the same batches."""
    g = torch.Generator().manual_seed(seed)
    sizes = torch.randint(1, 700, (25,), generator=g).tolist()
    # Each row is its own index: which rows came out, and in what order, is readable.
    ids = torch.arange(sum(sizes), dtype=torch.float32)
    chunks = [c[:, None].expand(-1, 5).clone() for c in ids.split(sizes)]
    store = ActivationStore.__new__(ActivationStore)
    store._chunks = lambda: iter(chunks)  # type: ignore[method-assign]
    store.buffer_rows, store.batch_size = 500, 48
    got = list(store._epoch(torch.Generator().manual_seed(seed + 10)))
    assert all(b.shape == (48, 5) for b in got[:-1])
    assert 0 < got[-1].shape[0] <= 48
    order = torch.cat(got)[:, 0]
    assert torch.equal(order.sort().values, ids)  # every row once
    assert not torch.equal(order, ids)
    again = list(store._epoch(torch.Generator().manual_seed(seed + 10)))
    assert all(torch.equal(a, b) for a, b in zip(got, again, strict=True))
