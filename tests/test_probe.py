"""ActivationProbe: captured values against an independent computation, padding, hooks, errors."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import superposition as sp
from conftest import ARCHS, FFN, tiny_model
from superposition.probe import ActivationProbe, Activations, StreamingStatistics

TEXTS = [
    "The cat sat on the mat.",
    "What is 25 plus 17?",
    "Harry Potter defeated Voldemort in the Battle of Hogwarts, long ago.",
    "Hi",
    "Water boils at 100 degrees Celsius under standard conditions.",
]


def gelu_tanh(x: Tensor) -> Tensor:
    return F.gelu(x, approximate="tanh")


def lin(layer: Any, h: Tensor) -> Tensor:
    """``h W^T + b`` of an nn.Linear, written out."""
    out = h @ layer.weight.T
    return out + layer.bias if layer.bias is not None else out


# name -> (the module whose *input* h feeds layer i's MLP, neurons computed from h)
Ref = tuple[Callable[[Any, int], nn.Module], Callable[[Any, Tensor], Tensor]]
REFERENCE: dict[str, Ref] = {
    "bert": (lambda m, i: m.encoder.layer[i].intermediate, lambda b, h: F.gelu(lin(b.dense, h))),
    "roberta": (lambda m, i: m.encoder.layer[i].intermediate, lambda b, h: F.gelu(lin(b.dense, h))),
    "electra": (lambda m, i: m.encoder.layer[i].intermediate, lambda b, h: F.gelu(lin(b.dense, h))),
    "deberta-v2": (
        lambda m, i: m.encoder.layer[i].intermediate,
        lambda b, h: F.gelu(lin(b.dense, h)),
    ),
    "distilbert": (lambda m, i: m.transformer.layer[i].ffn, lambda b, h: F.gelu(lin(b.lin1, h))),
    # ALBERT's one shared layer: the i-th *call* of ffn is layer i (handled in reference()).
    "albert": (
        lambda m, i: m.encoder.albert_layer_groups[0].albert_layers[0].ffn,
        lambda b, h: gelu_tanh(lin(b, h)),
    ),
    "gpt2": (lambda m, i: m.h[i].mlp, lambda b, h: gelu_tanh(h @ b.c_fc.weight + b.c_fc.bias)),
    "gptj": (lambda m, i: m.h[i].mlp, lambda b, h: gelu_tanh(lin(b.fc_in, h))),
    "gpt_neox": (lambda m, i: m.layers[i].mlp, lambda b, h: F.gelu(lin(b.dense_h_to_4h, h))),
    "opt": (lambda m, i: m.decoder.layers[i].fc1, lambda b, h: F.relu(lin(b, h))),
    "bloom": (lambda m, i: m.h[i].mlp, lambda b, h: gelu_tanh(lin(b.dense_h_to_4h, h))),
    "falcon": (lambda m, i: m.h[i].mlp, lambda b, h: F.gelu(lin(b.dense_h_to_4h, h))),
    "llama": (
        lambda m, i: m.layers[i].mlp,
        lambda b, h: F.silu(lin(b.gate_proj, h)) * lin(b.up_proj, h),
    ),
    "mistral": (
        lambda m, i: m.layers[i].mlp,
        lambda b, h: F.silu(lin(b.gate_proj, h)) * lin(b.up_proj, h),
    ),
    "qwen2": (
        lambda m, i: m.layers[i].mlp,
        lambda b, h: F.silu(lin(b.gate_proj, h)) * lin(b.up_proj, h),
    ),
    "gemma": (
        lambda m, i: m.layers[i].mlp,
        lambda b, h: gelu_tanh(lin(b.gate_proj, h)) * lin(b.up_proj, h),
    ),
    "phi": (lambda m, i: m.layers[i].mlp, lambda b, h: gelu_tanh(lin(b.fc1, h))),
    "t5": (
        lambda m, i: m.encoder.block[i].layer[1].DenseReluDense,
        lambda b, h: F.relu(lin(b.wi, h)),
    ),
}


def reference(name: str, model: Any, ids: list[int], layer: int) -> Tensor:
    """Neurons of ``layer`` for one unpadded text, from the MLP's input, by a hand-made hook."""
    block = REFERENCE[name][0](model, layer)
    seen: list[Tensor] = []
    handle = block.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach()))
    try:
        x = torch.tensor([ids])
        with torch.no_grad():
            if name == "t5":
                model.encoder(input_ids=x)
            else:
                model(input_ids=x, attention_mask=torch.ones_like(x))
    finally:
        handle.remove()
    h = seen[layer if name == "albert" else 0]
    with torch.no_grad():
        return REFERENCE[name][1](block, h).reshape(len(ids), -1)


@pytest.mark.parametrize("name", ARCHS)
def test_captured_values_equal_an_independent_computation(name: str, tokenizer: Any) -> None:
    model, width = tiny_model(name)
    probe = ActivationProbe(model, layer=[0, -1], tokenizer=tokenizer, batch_size=3)
    first, last = probe.run(TEXTS)
    ids = tokenizer(TEXTS)["input_ids"]
    n_layers = 3 if name == "albert" else 2
    assert first.n_neurons == last.n_neurons == width
    assert (first.layer, last.layer) == (0, n_layers - 1)
    for i, text_ids in enumerate(ids):
        for acts, layer in ((first, 0), (last, n_layers - 1)):
            got = acts.for_text(i)
            assert got.token_ids.tolist() == text_ids
            expected = reference(name, model, text_ids, layer)
            torch.testing.assert_close(got.values, expected, atol=2e-5, rtol=1e-4)


def test_names_the_neuron_count_of_every_architecture() -> None:
    assert len(ARCHS) >= 14
    assert FFN not in (32, 128)  # the neuron width differs from hidden size and 4 * hidden


# --------------------------------------------------------------------------- padding & batching


@pytest.mark.parametrize("name", ["bert", "gpt2", "llama", "opt"])
@pytest.mark.parametrize("side", ["left", "right"])
def test_a_text_alone_equals_it_inside_a_padded_batch(name: str, side: str, tokenizer: Any) -> None:
    model, _ = tiny_model(name)
    enc = tokenizer(
        TEXTS, padding=True, padding_side=side, return_tensors="pt", return_token_type_ids=False
    )
    assert int((enc["attention_mask"] == 0).sum()) > 0
    batched = ActivationProbe(model, tokenizer=tokenizer, batch_size=8).run(enc)
    assert batched.n_tokens == int(enc["attention_mask"].sum())
    for i, text in enumerate(TEXTS):
        alone = ActivationProbe(model, tokenizer=tokenizer).run([text])
        torch.testing.assert_close(batched.for_text(i).values, alone.values, atol=2e-5, rtol=1e-4)
        assert batched.for_text(i).tokens == alone.tokens


def test_batch_size_does_not_change_values(tokenizer: Any) -> None:
    model, _ = tiny_model("bert")
    one = ActivationProbe(model, layer="all", tokenizer=tokenizer, batch_size=1).run(TEXTS)
    seven = ActivationProbe(model, layer="all", tokenizer=tokenizer, batch_size=7).run(TEXTS)
    for a, b in zip(one, seven, strict=True):
        torch.testing.assert_close(a.values, b.values, atol=2e-5, rtol=1e-4)
        assert torch.equal(a.text_index, b.text_index)
        assert torch.equal(a.position, b.position)


@pytest.mark.parametrize("keep_padding", [False, True])
@pytest.mark.parametrize("max_tokens", [1, 9, 20, 40])
def test_max_tokens_bounds_each_forward_pass_and_changes_no_value(
    tokenizer: Any, max_tokens: int, keep_padding: bool
) -> None:
    model, _ = tiny_model("bert")
    free = ActivationProbe(model, tokenizer=tokenizer, batch_size=4, keep_padding=keep_padding)
    bound = ActivationProbe(
        model, tokenizer=tokenizer, batch_size=4, keep_padding=keep_padding, max_tokens=max_tokens
    )
    lengths = [len(x) for x in tokenizer(TEXTS)["input_ids"]]
    batches = bound.batches(TEXTS)
    placed = sorted(i for b in batches for i in b.texts)
    assert placed == list(range(len(TEXTS)))  # every text once
    for b in batches:
        B, S = b.inputs["input_ids"].shape
        assert B <= 4
        assert S == max(lengths[i] for i in b.texts)  # padded to its longest text, no more
        assert B * S <= max_tokens or B == 1  # a text over the budget goes alone
    # Greedy: no batch could have taken the next text in the plan's order.
    order = [i for b in batches for i in b.texts]
    for b, after in itertools.pairwise(batches):
        grown = [*b.texts, after.texts[0]]
        assert len(grown) > 4 or len(grown) * max(lengths[i] for i in grown) > max_tokens
    assert order == [i for b in free.batches(TEXTS) for i in b.texts]
    a, c = free.run(TEXTS), bound.run(TEXTS)
    # Kept padding follows the batches (as with batch_size); the texts' own rows do not.
    a_real, c_real = ~a.is_pad, ~c.is_pad
    torch.testing.assert_close(c.values[c_real], a.values[a_real], atol=2e-5, rtol=1e-4)
    assert torch.equal(c.text_index[c_real], a.text_index[a_real])


def test_max_tokens_must_be_a_positive_int() -> None:
    model, _ = tiny_model("bert")
    with pytest.raises(ValueError, match="max_tokens"):
        ActivationProbe(model, max_tokens=0)


def test_rows_follow_the_order_of_the_texts(tokenizer: Any) -> None:
    model, _ = tiny_model("bert")
    acts = ActivationProbe(model, tokenizer=tokenizer, batch_size=2).run(TEXTS)
    lengths = [len(x) for x in tokenizer(TEXTS)["input_ids"]]
    assert acts.text_index.tolist() == [i for i, n in enumerate(lengths) for _ in range(n)]
    assert acts.position.tolist() == [p for n in lengths for p in range(n)]
    assert acts.tokens[:2] == ["[CLS]", "the"]


def test_stopping_early_changes_nothing(tokenizer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    model, _ = tiny_model("gpt2")
    early = ActivationProbe(model, layer=0, tokenizer=tokenizer).run(TEXTS)
    monkeypatch.setattr(ActivationProbe, "_stop_early", False)
    full = ActivationProbe(model, layer=0, tokenizer=tokenizer).run(TEXTS)
    assert torch.equal(early.values, full.values)


def test_stopping_early_skips_the_later_layers(tokenizer: Any) -> None:
    model, _ = tiny_model("bert")
    calls: list[int] = []
    handle = model.encoder.layer[1].register_forward_pre_hook(lambda m, a: calls.append(1))
    try:
        ActivationProbe(model, layer=0, tokenizer=tokenizer).run(TEXTS)
        assert calls == []
        ActivationProbe(model, layer=1, tokenizer=tokenizer).run(TEXTS)
        assert calls == [1]
    finally:
        handle.remove()


def test_keep_padding_keeps_pad_rows(tokenizer: Any) -> None:
    model, _ = tiny_model("bert")
    acts = ActivationProbe(model, tokenizer=tokenizer, keep_padding=True, batch_size=8).run(TEXTS)
    lengths = [len(x) for x in tokenizer(TEXTS)["input_ids"]]
    longest = max(lengths)
    assert acts.n_tokens == longest * len(TEXTS)
    # Right padding: text i's rows are its tokens, then longest - len(i) pad rows.
    expected = [p >= n for n in lengths for p in range(longest)]
    assert acts.is_pad.tolist() == expected
    assert [t == "[PAD]" for t in acts.tokens] == expected  # BERT's own pad token labels them
    dropped = ActivationProbe(model, tokenizer=tokenizer).run(TEXTS)
    assert not bool(dropped.is_pad.any())
    torch.testing.assert_close(acts.values[~acts.is_pad], dropped.values, atol=2e-5, rtol=1e-4)
    assert acts.for_text(3).is_pad.tolist() == expected[3 * longest : 4 * longest]


def _tokenizer_without_pad(pad_token: str | None = None) -> Any:
    """A word-level tokenizer shaped like GPT-2's: no pad token, and id 0 is a real token."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["!", "the", "cat", "sat", "on", "mat", "a", "dog", "<unk>", "<|endoftext|>"]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", eos_token="<|endoftext|>"
    )
    if pad_token is not None:
        tok.pad_token = pad_token
    return tok


@pytest.mark.parametrize("pad_token", [None, "<|endoftext|>"])
def test_pad_rows_are_never_labelled_as_a_real_token(pad_token: str | None) -> None:
    # GPT-2 and LLaMA tokenizers have no pad token (or borrow end-of-text as one): their pad
    # rows used to be labelled as the token with id 0 ("!" in GPT-2) or as that borrowed token.
    tok = _tokenizer_without_pad(pad_token)
    texts = ["the cat sat on the mat !", "a dog"]
    model, _ = tiny_model("gpt2")
    acts = ActivationProbe(model, tokenizer=tok, keep_padding=True).run(texts)
    assert acts.is_pad.tolist() == [False] * 7 + [False] * 2 + [True] * 5
    assert acts.tokens == ["the", "cat", "sat", "on", "the", "mat", "!", "a", "dog"] + ["<pad>"] * 5
    fed = 0 if pad_token is None else tok.pad_token_id
    assert acts.token_ids[acts.is_pad].tolist() == [fed] * 5
    dropped = ActivationProbe(model, tokenizer=tok).run(texts)
    torch.testing.assert_close(acts.values[~acts.is_pad], dropped.values, atol=2e-5, rtol=1e-4)


def test_pad_rows_of_pre_tokenized_input(tokenizer: Any) -> None:
    model, _ = tiny_model("llama")
    enc = tokenizer(TEXTS, padding=True, padding_side="left", return_tensors="pt")
    acts = ActivationProbe(model, tokenizer=tokenizer, keep_padding=True).run(enc)
    assert acts.is_pad.tolist() == (enc["attention_mask"] == 0).reshape(-1).tolist()
    no_tokenizer = ActivationProbe(model, keep_padding=True).run(
        {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    )
    assert [t for t, p in zip(no_tokenizer.tokens, no_tokenizer.is_pad, strict=True) if p] == [
        "<pad>"
    ] * int((enc["attention_mask"] == 0).sum())


def test_is_pad_survives_save_and_load_and_old_files_load(tmp_path: Any, tokenizer: Any) -> None:
    from safetensors.torch import load_file, save_file

    model, _ = tiny_model("bert")
    acts = ActivationProbe(model, tokenizer=tokenizer, keep_padding=True).run(TEXTS)
    assert bool(acts.is_pad.any())
    path = acts.save(tmp_path / "acts.safetensors")
    assert torch.equal(Activations.load(path).is_pad, acts.is_pad)
    # A file written before is_pad existed: the same tensors without it, and (older still
    # than checksums) a sidecar without the digest of the tensors.
    tensors = load_file(path)
    del tensors["is_pad"]
    save_file(tensors, path, metadata={"format": "superposition.Activations/1"})
    sidecar = path.with_name("acts.json")
    meta = json.loads(sidecar.read_text())
    del meta["digest"]
    sidecar.write_text(json.dumps(meta))
    old = Activations.load(path)
    assert old.is_pad.dtype == torch.bool
    assert old.is_pad.tolist() == [False] * acts.n_tokens
    assert torch.equal(old.values, acts.values)


def test_is_pad_must_match_the_rows() -> None:
    fields: dict[str, Any] = {
        "tokens": ["a", "b"],
        "token_ids": torch.tensor([1, 2]),
        "text_index": torch.tensor([0, 0]),
        "position": torch.tensor([0, 1]),
    }
    assert Activations(torch.ones(2, 3), **fields).is_pad.tolist() == [False, False]
    with pytest.raises(ValueError, match=r"is_pad must be a \[2\] bool tensor .* got shape \(3,\)"):
        Activations(torch.ones(2, 3), **fields, is_pad=torch.zeros(3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"is_pad must be a \[2\] bool tensor .* torch.int64"):
        Activations(torch.ones(2, 3), **fields, is_pad=torch.zeros(2, dtype=torch.int64))


# --------------------------------------------------------------------------- hooks and state


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.modules())


def test_no_hook_remains_and_mode_is_restored(tokenizer: Any) -> None:
    model, _ = tiny_model("bert")
    model.train()
    model.encoder.layer[1].eval()
    frozen = model.embeddings.word_embeddings.weight
    frozen.requires_grad_(False)
    before = {n: m.training for n, m in model.named_modules()}
    try:
        ActivationProbe(model, layer="all", tokenizer=tokenizer).run(TEXTS)
        assert _hooks(model) == 0
        assert {n: m.training for n, m in model.named_modules()} == before
        assert not frozen.requires_grad
        assert model.encoder.layer[0].output.dense.weight.requires_grad
    finally:
        frozen.requires_grad_(True)
        model.eval()


def test_no_hook_remains_after_an_exception_in_forward(
    tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, _ = tiny_model("bert")

    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom inside the forward pass")

    monkeypatch.setattr(model.encoder.layer[0].attention, "forward", boom)
    with pytest.raises(RuntimeError, match="boom inside the forward pass"):
        ActivationProbe(model, layer=[0, 1], tokenizer=tokenizer).run(TEXTS)
    assert _hooks(model) == 0
    assert not model.training


def test_the_model_output_is_unchanged_afterwards(tokenizer: Any) -> None:
    model, _ = tiny_model("llama")
    x = tokenizer(TEXTS[:2], padding=True, return_tensors="pt")
    with torch.no_grad():
        before = model(input_ids=x["input_ids"], attention_mask=x["attention_mask"])
        ActivationProbe(model, layer="all", tokenizer=tokenizer).run(TEXTS)
        after = model(input_ids=x["input_ids"], attention_mask=x["attention_mask"])
    assert torch.equal(before.last_hidden_state, after.last_hidden_state)


# --------------------------------------------------------------------------- dtypes, tokenizer


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_models_give_float32_on_the_cpu(dtype: torch.dtype, tokenizer: Any) -> None:
    model, _ = tiny_model("bert")
    ref = ActivationProbe(model, tokenizer=tokenizer).run(TEXTS)
    half = ActivationProbe(__import__("copy").deepcopy(model).to(dtype), tokenizer=tokenizer).run(
        TEXTS
    )
    assert half.values.dtype == torch.float32
    assert half.values.device.type == "cpu"
    torch.testing.assert_close(half.values, ref.values, atol=0.05, rtol=0.05)


def test_tokenizer_is_loaded_from_the_model_folder(tmp_path: Any, tokenizer: Any) -> None:
    from transformers import AutoModel

    model, _ = tiny_model("bert")
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path)
    acts = ActivationProbe(loaded).run(TEXTS)
    assert acts.model_name == str(tmp_path)
    assert acts.tokens[:3] == ["[CLS]", "the", "cat"]


def test_a_truncated_text_warns_once(tokenizer: Any) -> None:
    model, _ = tiny_model("bert")
    long = ["word " * 300, "more words " * 200, "short"]
    with pytest.warns(UserWarning, match=r"2 of 3 texts are longer than max_length=16") as rec:
        acts = ActivationProbe(model, tokenizer=tokenizer, max_length=16).run(long)
    assert len([w for w in rec if "truncated" in str(w.message)]) == 1
    assert acts.for_text(0).n_tokens == 16


def test_a_stream_of_many_chunks_warns_once_about_truncation(tokenizer: Any) -> None:
    import warnings

    from superposition.sae.store import ActivationStore

    model, _ = tiny_model("bert")
    # The store reads 2 texts at a time (3 chunks, two of them with a truncated text).
    texts = ["short one", "word " * 40, "short two", "short three", "more " * 30, "end"]
    probe = ActivationProbe(model, tokenizer=tokenizer, max_length=16, batch_size=1)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        probe.stream(iter(texts))
        list(ActivationStore(probe, texts, batch_size=8, chunk_texts=2, seed=0))
    msgs = [str(w.message) for w in rec if "truncated" in str(w.message)]
    assert (
        msgs
        == [
            "2 of 6 texts are longer than max_length=16 tokens and were truncated (first: text 1); "
            "pass a larger max_length= if the model allows it, or split the texts"
        ]
        * 2
    )


def test_progress_bar_for_many_batches(tokenizer: Any, capsys: pytest.CaptureFixture[str]) -> None:
    model, _ = tiny_model("bert")
    ActivationProbe(model, tokenizer=tokenizer, batch_size=1).run(TEXTS)
    assert "probe" in capsys.readouterr().err
    ActivationProbe(model, tokenizer=tokenizer, batch_size=1, progress=False).run(TEXTS)
    assert capsys.readouterr().err == ""


def test_one_progress_bar_over_a_whole_stream(
    tokenizer: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # Streaming works a chunk of 8 batches at a time; the bar used to restart for each chunk.
    model, _ = tiny_model("bert")
    texts = (TEXTS * 4)[:19]  # 19 texts: chunks of 8, 8 and 3 with batch_size=1
    n_tokens = sum(len(x) for x in tokenizer(texts)["input_ids"])
    probe = ActivationProbe(model, tokenizer=tokenizer, batch_size=1, progress=True)
    probe.stream(texts)
    err = capsys.readouterr().err
    assert "19/19" in err
    assert "/8" not in err
    assert "/3" not in err
    probe.stream(iter(texts))  # length unknown: texts and tokens seen
    err = capsys.readouterr().err
    assert "/8" not in err
    assert "/3" not in err
    assert "19text" in err
    assert f"tokens={n_tokens}" in err


def test_a_plain_module_with_an_explicit_module_path() -> None:
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 4))

    class Wrap(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = mlp

        def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
            out: Tensor = self.net(input_ids)
            return out

    ids = torch.tensor([[1, 2, 3], [4, 5, 0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    acts = ActivationProbe(Wrap(), module="net.3").run({"input_ids": ids, "attention_mask": mask})
    expected = torch.relu(mlp[1](mlp[0](torch.tensor([1, 2, 3, 4, 5]))))
    torch.testing.assert_close(acts.values, expected)
    assert acts.tokens == ["1", "2", "3", "4", "5"]


# --------------------------------------------------------------------------- streaming


def test_stream_equals_the_statistics_of_the_materialised_matrix(tokenizer: Any) -> None:
    model, _ = tiny_model("gpt2")
    probe = ActivationProbe(model, layer=[0, 1], tokenizer=tokenizer, batch_size=2)
    materialised = probe.run(TEXTS)
    streamed = probe.stream(iter(TEXTS))
    for acts, acc in zip(materialised, streamed, strict=True):
        assert isinstance(acc, StreamingStatistics)
        assert acc.count == acts.n_tokens
        want, got = acts.stats(), acc.finalise()
        for field in ("mean", "variance", "frequency", "kurtosis"):
            torch.testing.assert_close(
                getattr(got, field), getattr(want, field), atol=1e-4, rtol=1e-3
            )
        for center in (False, True):
            torch.testing.assert_close(
                acc.cosine_similarity(center=center),
                acts.cosine_similarity(center=center),
                atol=1e-4,
                rtol=1e-4,
            )


# --------------------------------------------------------------------------- the real model


def test_the_shipped_minilm_on_the_papers_twelve_texts(minilm: tuple[Any, Any]) -> None:
    model, tokenizer = minilm
    texts = [t for group in sp.PAPER_TEXTS.values() for t in group]
    assert len(texts) == 12
    acts = sp.ActivationProbe(model, layer=0).run(texts)  # tokenizer from the model's folder
    assert isinstance(acts, Activations)
    assert acts.n_neurons == 1536
    n_real = sum(len(x) for x in tokenizer(texts)["input_ids"])
    assert acts.n_tokens == n_real
    assert "[PAD]" not in acts.tokens
    assert acts.n_texts == 12
    assert acts.for_text(0).tokens == [
        "[CLS]",
        "the",
        "cat",
        "sat",
        "on",
        "the",
        "mat",
        ".",
        "[SEP]",
    ]
    # BERT's first MLP: GELU outputs, bounded below by GELU's minimum (about -0.17)
    assert float(acts.values.min()) >= -0.1701


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("texts", "error", "match"),
    [
        ([], ValueError, "texts is empty"),
        ("one string", TypeError, r"wrap it in a list"),
        (["ok", 3], TypeError, r"only strings, got int at index 1"),
        (42, TypeError, "texts must be a list of strings"),
        ({"input_ids": [[1, 2]]}, ValueError, r"missing \['attention_mask'\]"),
        (
            {"input_ids": [[1, 2]], "attention_mask": [[1, 1, 1]]},
            ValueError,
            r"must both have shape \[n_texts, seq\]",
        ),
        (
            {"input_ids": [[1, 2]], "attention_mask": [[0, 0]]},
            ValueError,
            "text 0 has no tokens",
        ),
    ],
)
def test_bad_texts_fail_before_any_forward_pass(
    texts: Any, error: type[Exception], match: str, tokenizer: Any
) -> None:
    model, _ = tiny_model("gpt2")
    calls: list[int] = []
    handle = model.register_forward_pre_hook(lambda m, a: calls.append(1))
    try:
        with pytest.raises(error, match=match):
            ActivationProbe(model, tokenizer=tokenizer).run(texts)
    finally:
        handle.remove()
    assert calls == []


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"batch_size": 0}, ValueError, "batch_size must be a positive int, got 0"),
        ({"max_length": -1}, ValueError, "max_length must be a positive int or None, got -1"),
        ({"progress": "yes"}, TypeError, "progress must be True, False or None"),
        (
            {"layer": 2},
            ValueError,
            r"layer 2 is out of range for BertModel with 2 layers \(valid: -2..1\)",
        ),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    model, _ = tiny_model("bert")
    with pytest.raises(error, match=match):
        ActivationProbe(model, **kwargs)


def test_a_text_without_tokens() -> None:
    class Words:
        """A tokenizer without special tokens: an empty text has no tokens."""

        model_max_length = 100

        def __call__(self, texts: list[str], **kwargs: Any) -> dict[str, list[list[int]]]:
            return {"input_ids": [[len(w) for w in t.split()] for t in texts]}

    model, _ = tiny_model("gpt2")
    with pytest.raises(ValueError, match=r"text 1 \(''\) has no tokens; remove empty texts"):
        ActivationProbe(model, tokenizer=Words()).run(["two words", ""])


def test_no_tokenizer_and_no_name_or_path() -> None:
    model = tiny_model("bert")[0]
    with pytest.raises(ValueError, match="has no name_or_path to load one from"):
        ActivationProbe(model).run(["a text"])


def test_a_tokenizer_that_cannot_be_loaded(tmp_path: Any, bert: nn.Module) -> None:
    bert.config._name_or_path = str(tmp_path / "nowhere")
    with pytest.raises(
        ValueError, match="could not load a tokenizer from the model's name_or_path"
    ):
        ActivationProbe(bert).run(["a text"])


def test_a_module_that_never_runs(tokenizer: Any) -> None:
    model, _ = tiny_model("bert")

    class WithUnused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model
            self.unused = nn.Linear(4, 4)

        def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Any:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask)

    with pytest.raises(RuntimeError, match=r"did not call \['unused'\]"):
        ActivationProbe(WithUnused(), module="unused", tokenizer=tokenizer).run(["a text"])


def test_a_module_input_of_the_wrong_size(tokenizer: Any) -> None:
    model, _ = tiny_model("bert")
    with pytest.raises(RuntimeError, match=r"the input of pooler.dense has shape \(1, 32\)"):
        ActivationProbe(model, module="pooler.dense", tokenizer=tokenizer).run(["a text"])


# --------------------------------------------------------------------------- dtypes and devices


def _captured(model: nn.Module, tokenizer: Any, texts: list[str]) -> Tensor:
    """Layer 1's BERT neurons of each text alone, in the model's dtype, by a hand-made hook."""
    seen: list[Tensor] = []
    block = model.encoder.layer[1].output.dense  # type: ignore[union-attr,index]
    handle = block.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach()))
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            for text in texts:
                x = torch.tensor([tokenizer(text)["input_ids"]], device=device)
                model(input_ids=x, attention_mask=torch.ones_like(x))
    finally:
        handle.remove()
    return torch.cat([s[0] for s in seen])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_half_precision_model_gives_float32_values_of_what_it_computed(
    tokenizer: Any, dtype: torch.dtype
) -> None:
    import copy

    model = copy.deepcopy(tiny_model("bert")[0]).to(dtype)
    expected = _captured(model, tokenizer, TEXTS)
    assert expected.dtype == dtype
    probe = ActivationProbe(model, layer=1, tokenizer=tokenizer, batch_size=1)
    acts = probe.run(TEXTS)
    assert acts.values.dtype == torch.float32
    assert torch.equal(acts.values, expected.float())
    # stream: moments and the Gram accumulated in float64 from the same float32 values.
    stats = probe.stream(TEXTS)
    assert stats.dtype == torch.float32
    X = expected.double()
    torch.testing.assert_close(stats.gram, X.T @ X, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(stats.finalise().mean, X.mean(0).float(), atol=1e-6, rtol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_cuda_model_is_probed_like_the_same_model_on_the_cpu(tmp_path: Path) -> None:
    import copy

    # Pre-tokenized ids with padding: no tokenizer (nor the shipped model) needed on a GPU box.
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 2000, (6, 12), generator=g)
    mask = torch.ones(6, 12, dtype=torch.long)
    mask[1, 7:] = 0
    mask[4, 3:] = 0
    enc = {"input_ids": ids, "attention_mask": mask}
    cpu = tiny_model("bert")[0]
    gpu = copy.deepcopy(cpu).to("cuda")
    a = ActivationProbe(cpu, layer=1, batch_size=2).run(enc)
    b = ActivationProbe(gpu, layer=1, batch_size=2).run(enc)
    assert b.values.device.type == "cpu"
    torch.testing.assert_close(b.values, a.values, atol=1e-4, rtol=1e-4)
    assert torch.equal(a.token_ids, b.token_ids)
    # stream: summed on the GPU, handed back on the CPU
    s_cpu = ActivationProbe(cpu, layer=1).stream(enc)
    s_gpu = ActivationProbe(gpu, layer=1).stream(enc)
    assert s_gpu.device.type == "cpu"
    assert s_gpu.count == s_cpu.count == int(mask.sum())
    torch.testing.assert_close(s_gpu.gram, s_cpu.gram, atol=1e-3, rtol=1e-4)
    # an accumulator fed on the GPU merges with one fed on the CPU, and saves
    X = a.values
    on_gpu = StreamingStatistics().update(X[:20].cuda())
    assert on_gpu.device.type == "cuda"
    both = on_gpu.merge(StreamingStatistics().update(X[20:]))
    torch.testing.assert_close(both.to("cpu").gram, StreamingStatistics().update(X).gram)
    back = StreamingStatistics.load(on_gpu.save(tmp_path / "s"))
    torch.testing.assert_close(back.gram, on_gpu.to("cpu").gram)
    bf16 = ActivationProbe(gpu.to(torch.bfloat16), layer=1).run(enc)
    assert bf16.values.dtype == torch.float32
    torch.testing.assert_close(bf16.values, a.values, atol=0.1, rtol=0.05)
