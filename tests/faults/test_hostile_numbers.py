"""Hostile numbers (issue 26): a model that gives NaN or inf activations (a float16 overflow)
stops the probe, streaming, the activation store and collect_units with one ValueError naming
the site, the layer and the first bad text, not NaN statistics or a NaN-trained SAE."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import superposition as sp

TEXTS = ["the cat sat on the mat", "a dog ran home", "the zebra slept", "birds sang loudly"]


def _poisoned(folder: Path) -> tuple[Any, Any]:
    """The tiny BERT, whose embeddings turn to NaN at every token of the word 'zebra'."""
    model, tok = sp.load_model(str(folder))
    zebra = tok.convert_tokens_to_ids("zebra")

    def hook(module: Any, args: Any, kwargs: dict[str, Any], out: torch.Tensor) -> torch.Tensor:
        ids = kwargs.get("input_ids", args[0] if args else None)
        return out.masked_fill((ids == zebra)[..., None], float("nan"))

    model.embeddings.register_forward_hook(hook, with_kwargs=True)
    return model, tok


RUNS: dict[str, Callable[[Any], object]] = {
    "run": lambda probe: probe.run(TEXTS),
    "stream": lambda probe: probe.stream(TEXTS),
    "store": lambda probe: list(sp.ActivationStore(probe, TEXTS, batch_size=4, buffer_rows=8)),
    "collect_units": lambda probe: sp.collect_units(probe, TEXTS, top_k=2),
}


@pytest.mark.parametrize("how", sorted(RUNS))
def test_nan_activations_stop_every_consumer_naming_the_layer_and_text(
    tiny_bert_folder: Path, how: str
) -> None:
    model, tok = _poisoned(tiny_bert_folder)
    probe = sp.ActivationProbe(model, layer=1, tokenizer=tok, batch_size=2, progress=False)
    with pytest.raises(
        ValueError,
        match=r"NaN or inf activations at the neurons of layer 1 \(encoder\.layer\.1\.output"
        r"\.dense\) in text 2 of the texts passed; .* float32",
    ):
        RUNS[how](probe)
    clean = sp.ActivationProbe(model, layer=1, tokenizer=tok, progress=False)
    assert torch.isfinite(clean.run([t for t in TEXTS if "zebra" not in t]).values).all()
