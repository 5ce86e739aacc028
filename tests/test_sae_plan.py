"""Sizing an SAE run (sae/plan.py) and measuring one on a corpus (sae/evaluate.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import superposition.sae.plan as plan
from conftest import tiny_model
from superposition import SparseAutoencoder
from superposition.sae import (
    count_tokens,
    evaluate_on_corpus,
    split_corpus,
    store_buffer_rows,
    store_epochs,
)

TEXTS = ["The cat sat on the mat.", "Hi", "Call me Ishmael.", "It was the best of times."]


def test_a_users_corpus_is_judged_on_its_first_texts_not_held_out(tmp_path: Path) -> None:
    corpus = tmp_path / "t.jsonl"
    corpus.write_text("".join(json.dumps({"body": t}) + "\n" for t in TEXTS))
    split = split_corpus(corpus, text_column="body", eval_texts=2)
    assert list(split.train) == TEXTS
    assert list(split.held_out) == TEXTS[:2]
    assert split.disjoint is False
    with pytest.raises(ValueError, match="eval_texts must be a positive int, got 0"):
        split_corpus(corpus, eval_texts=0)


def test_the_default_corpus_is_judged_on_its_test_split() -> None:
    split = split_corpus("gutenberg", eval_texts=5)
    assert split.disjoint is True
    assert not set(split.held_out) & set(split.train.head(2000))


def test_count_tokens_in_chunks_counts_what_one_call_does(
    tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = sum(len(ids) for ids in tokenizer(TEXTS)["input_ids"])
    monkeypatch.setattr(plan, "_TOKENIZE_TEXTS", 3)  # a full chunk and a partial one
    assert count_tokens(iter(TEXTS), tokenizer) == whole
    cut = tokenizer(TEXTS, truncation=True, max_length=5)["input_ids"]
    assert count_tokens(TEXTS, tokenizer, max_length=5) == sum(len(ids) for ids in cut)
    assert count_tokens([], tokenizer) == 0


def test_store_sizes() -> None:
    assert store_buffer_rows(64, 48) == 16 * 64  # a small layer: 16 batches
    assert store_buffer_rows(4096, 2**20) == 2 * 4096  # a huge one: the store's minimum
    assert store_epochs(1, 10) == 2
    assert store_epochs(21, 10) == 4
    with pytest.raises(ValueError, match="tokens_per_epoch must be a positive int, got 0"):
        store_epochs(10, 0)


def test_evaluate_on_corpus_reports_what_evaluate_and_fidelity_do(tokenizer: Any) -> None:
    model, width = tiny_model("bert")
    sae = SparseAutoencoder(width, 2 * width, k=4, seed=0)
    ev = evaluate_on_corpus(sae, model, iter(TEXTS), 0, tokenizer=tokenizer)
    assert ev.n_texts == len(TEXTS)
    from superposition.probe import ActivationProbe

    acts = ActivationProbe(model, 0, tokenizer=tokenizer, progress=False).run(TEXTS)
    assert ev.n_tokens == acts.n_tokens
    # The same rows in another order (the capture's batches): equal up to float summation.
    whole = sae.evaluate(acts.values)
    assert (ev.quality.samples, ev.quality.l0) == (whole.samples, whole.l0)
    for name in ("fvu", "mse", "dead_fraction", "shrinkage"):
        assert getattr(ev.quality, name) == pytest.approx(getattr(whole, name), rel=1e-12)
    d = ev.to_dict()
    assert list(d) == [
        "n_texts",
        "n_tokens",
        "l0",
        "fvu",
        "mse",
        "dead_fraction",
        "shrinkage",
        "fidelity",
    ]
    torch.testing.assert_close(d["fidelity"]["loss_recovered"], ev.fidelity.loss_recovered)
    assert ev.summary().startswith(f"on {ev.n_tokens:,} held-out tokens: L0 ")
    assert "training (not held-out) tokens" in ev.summary(held_out=False)


def test_evaluate_on_corpus_shows_no_bar_unless_asked(
    tokenizer: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """progress=False (what `sae train --no-progress` passes) hides the probe's bar even for
    a corpus long enough that the probe would show one by itself; progress=True shows it."""
    model, width = tiny_model("bert")
    sae = SparseAutoencoder(width, 2 * width, k=4, seed=0)
    many = TEXTS * 40  # 160 texts: 5 batches of 32, past the probe's own threshold for a bar
    evaluate_on_corpus(sae, model, many, 0, tokenizer=tokenizer, progress=False)
    assert "probe" not in capsys.readouterr().err
    evaluate_on_corpus(sae, model, many, 0, tokenizer=tokenizer, progress=True)
    assert "probe" in capsys.readouterr().err
