"""The probe suite's floors: what its layer-0 rows divide by must be the probe's own work.

The ceiling floor (the work layer 0 cannot skip, tokenizing, and writing every real token's row
into a fresh output in text order) is a second implementation of ``ActivationProbe.run`` at
layer 0 of a BERT; if it computed something else, its row would compare unlike work.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import torch

from superposition.probe import ActivationProbe

ROOT = Path(__file__).resolve().parent.parent


def test_the_ceiling_floor_returns_what_the_probe_returns(
    bert: torch.nn.Module, tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks.bench_probe import bert_layer0_minimum, sentences

    # More than one batch of 32, lengths drawn afresh each run, so the text order matters.
    texts = sentences(tokenizer, random.randint(40, 90), seed=random.randrange(2**31))
    bert.eval()
    want = ActivationProbe(bert, 0, tokenizer=tokenizer, progress=False).run(texts).values
    got = bert_layer0_minimum(bert, tokenizer, texts, output=True)()
    assert got is not None
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert bert_layer0_minimum(bert, tokenizer, texts)() is None
