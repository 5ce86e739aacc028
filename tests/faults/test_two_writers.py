"""Two writers of one activation cache (issue 26): a store whose folder another live process
is writing is refused before it writes anything; a lock left by a killed writer is taken over;
two processes started together on one folder never interleave shards, and the cache they
leave reads back as one uncached pass gives it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import superposition as sp

TEXTS = [f"The cat number {i} sat on mat {i % 7} while it rained on the hills." for i in range(120)]

CHILD = r"""
import sys, torch
import superposition as sp
folder, cache, texts = sys.argv[1], sys.argv[2], sys.argv[3:]
model, tok = sp.load_model(folder)
probe = sp.ActivationProbe(model, layer=0, tokenizer=tok, batch_size=2, progress=False)
store = sp.ActivationStore(probe, texts, batch_size=16, buffer_rows=64, chunk_texts=3,
                           seed=0, cache_dir=cache)
try:
    rows = sum(b.shape[0] for b in store)
    print("ok", rows)
except RuntimeError as err:
    print("refused", err)
"""


def _store(folder: Path, cache: Path | None) -> sp.ActivationStore:
    model, tok = sp.load_model(str(folder))
    probe = sp.ActivationProbe(model, layer=0, tokenizer=tok, batch_size=2, progress=False)
    return sp.ActivationStore(
        probe, TEXTS, batch_size=16, buffer_rows=64, chunk_texts=3, seed=0, cache_dir=cache
    )


def _rows_in_order(store: sp.ActivationStore) -> torch.Tensor:
    return torch.cat(list(store._chunks()))


def test_a_live_writer_is_refused_and_a_dead_ones_lock_taken_over(
    tmp_path: Path, tiny_bert_folder: Path
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        (cache / "writer.lock").write_text(str(other.pid))
        with pytest.raises(RuntimeError, match=f"being written by process {other.pid}"):
            next(iter(_store(tiny_bert_folder, cache)))
        assert sorted(p.name for p in cache.iterdir()) == ["writer.lock"]  # nothing written
    finally:
        other.kill()
        other.wait()
    store = _store(tiny_bert_folder, cache)  # the writer is gone: its lock is taken over
    got = _rows_in_order(store)
    assert store.cached
    assert not (cache / "writer.lock").exists()
    torch.testing.assert_close(got, _rows_in_order(_store(tiny_bert_folder, None)), rtol=0, atol=0)


def test_two_processes_on_one_cache_never_interleave(
    tmp_path: Path, tiny_bert_folder: Path
) -> None:
    cache = tmp_path / "cache"
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tiny_bert_folder), str(cache), *TEXTS],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = []
    for run in runs:
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err[-2000:]
        outs.append(out.strip())
    whole = _rows_in_order(_store(tiny_bert_folder, None))
    assert any(o == f"ok {whole.shape[0]}" for o in outs), outs
    for o in outs:  # the other finished too, or was refused in one line
        assert o == f"ok {whole.shape[0]}" or (
            o.startswith("refused the activation cache") and "is being written by process" in o
        ), outs
    manifest = json.loads((cache / "manifest.json").read_text())
    assert manifest["complete"]
    assert [s["file"] for s in manifest["shards"]] == [
        f"shard-{i:05d}.safetensors" for i in range(len(manifest["shards"]))
    ]
    assert sum(s["texts"] for s in manifest["shards"]) == len(TEXTS)
    store = _store(tiny_bert_folder, cache)
    assert store.cached
    torch.testing.assert_close(_rows_in_order(store), whole, rtol=0, atol=0)
