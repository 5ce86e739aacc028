"""Fidelity of edits: cross-entropy, KL and embedding distance against computations by hand."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from conftest import EditedModule, replaced_module, tiny_model
from superposition import SparseAutoencoder
from superposition.probe import locate_mlp
from superposition.sae.edit import zero_ablation
from superposition.sae.fidelity import edit_effects, loss_recovered, sae_fidelity

TEXTS = [
    "The cat sat on the mat.",
    "It was the best of times, it was the worst of times.",
    "Call me Ishmael.",
    "A longer sentence, with a comma and several more words than the others have.",
]


def _causal(name: str) -> nn.Module:
    import transformers as tf

    torch.manual_seed(0)
    if name == "gpt2":
        config = tf.GPT2Config(vocab_size=30522, n_embd=32, n_layer=2, n_head=2, n_inner=48)
        return tf.GPT2LMHeadModel(config).eval()
    config = tf.LlamaConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=48,
        max_position_embeddings=128,
    )
    return tf.LlamaForCausalLM(config).eval()


def _by_hand_causal(model: nn.Module, tokenizer: Any, fn: Any) -> tuple[float, float, float]:
    """(clean CE, edited CE, KL) per real next token, one text at a time, module replaced."""
    (site,) = locate_mlp(model, 1)
    nll_clean = nll_edit = kl = 0.0
    count = 0
    for text in TEXTS:
        ids = torch.tensor([tokenizer(text)["input_ids"]])
        with torch.no_grad():
            clean = model(input_ids=ids).logits[0, :-1].double()
            with replaced_module(model, site.module_name, EditedModule(site.module, fn, None)):
                edited = model(input_ids=ids).logits[0, :-1].double()
        target = ids[0, 1:]
        nll_clean += float(F.cross_entropy(clean, target, reduction="sum"))
        nll_edit += float(F.cross_entropy(edited, target, reduction="sum"))
        kl += float(
            F.kl_div(
                edited.log_softmax(-1), clean.log_softmax(-1), log_target=True, reduction="sum"
            )
        )
        count += target.numel()
    return nll_clean / count, nll_edit / count, kl / count


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_causal_lm_cross_entropy_and_kl_match_a_computation_by_hand(
    name: str, tokenizer: Any
) -> None:
    model = _causal(name)

    def halve(x: Tensor) -> Tensor:
        return x * 0.5

    metric, clean, effects, n_texts, n_tokens = edit_effects(
        model,
        TEXTS,
        1,
        {"identity": lambda x: x, "halve": halve, "zero": zero_ablation},
        tokenizer=tokenizer,
        batch_size=3,
    )
    assert metric == "next-token cross-entropy"
    assert n_texts == len(TEXTS)
    assert n_tokens == sum(len(tokenizer(t)["input_ids"]) for t in TEXTS)
    ce_clean, ce_halve, kl_halve = _by_hand_causal(model, tokenizer, halve)
    assert clean == pytest.approx(ce_clean, rel=1e-5)
    assert effects["halve"].loss == pytest.approx(ce_halve, rel=1e-5)
    assert effects["halve"].kl == pytest.approx(kl_halve, rel=1e-3, abs=1e-7)
    assert effects["halve"].kl > 0
    assert effects["identity"].loss == pytest.approx(clean, rel=1e-6)
    assert effects["identity"].kl == pytest.approx(0.0, abs=1e-6)
    _, ce_zero, _ = _by_hand_causal(model, tokenizer, zero_ablation)
    assert effects["zero"].loss == pytest.approx(ce_zero, rel=1e-5)


def test_encoder_embedding_distance_matches_a_computation_by_hand(tokenizer: Any) -> None:
    model, _ = tiny_model("bert")
    (site,) = locate_mlp(model, 0)
    metric, clean, effects, _, _ = edit_effects(
        model, TEXTS, 0, {"zero": zero_ablation, "identity": lambda x: x}, tokenizer=tokenizer
    )
    assert metric == "embedding distance (1 - cos)"
    assert clean == 0.0
    assert effects["identity"].loss == pytest.approx(0.0, abs=1e-6)
    distances = []
    for text in TEXTS:
        ids = torch.tensor([tokenizer(text)["input_ids"]])
        with torch.no_grad():
            a = model(input_ids=ids).last_hidden_state[0].mean(0)
            wrapper = EditedModule(site.module, zero_ablation, None)
            with replaced_module(model, site.module_name, wrapper):
                b = model(input_ids=ids).last_hidden_state[0].mean(0)
        distances.append(1 - float(torch.cosine_similarity(a, b, dim=0)))
    assert effects["zero"].loss == pytest.approx(sum(distances) / len(distances), rel=1e-4)
    assert all(torch.isnan(torch.tensor(e.kl)) for e in effects.values())


def _exact_sae(width: int) -> SparseAutoencoder:
    """relu(x) - relu(-x): an SAE whose reconstruction is its input."""
    sae = SparseAutoencoder(width, 2 * width, kind="relu", l1=1e-3, seed=0)
    eye = torch.eye(width)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], 1))
        sae.W_dec.copy_(torch.cat([eye, -eye], 0))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


def test_an_exact_sae_recovers_everything_and_zero_recovers_nothing(tokenizer: Any) -> None:
    model = _causal("gpt2")
    f = sae_fidelity(
        _exact_sae(48), model, TEXTS, 1, tokenizer=tokenizer, extra={"also zero": zero_ablation}
    )
    assert f.loss_recovered == pytest.approx(1.0, abs=1e-4)
    assert f.loss_recovered_mean == pytest.approx(1.0, abs=1e-4)
    assert f.recovered("also zero") == pytest.approx(0.0, abs=1e-9)
    assert f.effects["sae"].kl == pytest.approx(0.0, abs=1e-6)
    assert set(f.to_dict()["effects"]) == {"sae", "zero", "mean", "also zero"}
    method = _exact_sae(48).fidelity(model, TEXTS, 1, tokenizer=tokenizer)
    assert method.effects["zero"] == f.effects["zero"]
    # the mean for mean-ablation is the neurons' mean over the texts, as streamed
    f2 = sae_fidelity(_exact_sae(48), model, TEXTS, 1, tokenizer=tokenizer, mean=torch.zeros(48))
    assert f2.effects["mean"].loss == pytest.approx(f.effects["zero"].loss, rel=1e-6)


def test_loss_recovered_closed_form() -> None:
    assert loss_recovered(1.0, 1.0, 3.0) == 1.0
    assert loss_recovered(1.0, 3.0, 3.0) == 0.0
    assert loss_recovered(1.0, 5.0, 3.0) == -1.0
    assert torch.isnan(torch.tensor(loss_recovered(1.0, 1.0, 1.0)))


def test_fidelity_arguments(tokenizer: Any) -> None:
    model, _ = tiny_model("bert")
    with pytest.raises(ValueError, match="texts is empty"):
        edit_effects(model, [], 0, {"zero": zero_ablation}, tokenizer=tokenizer)
    with pytest.raises(ValueError, match="edits must name at least one edit"):
        edit_effects(model, TEXTS, 0, {}, tokenizer=tokenizer)
    with pytest.raises(ValueError, match=r"mean must have shape \[48\]"):
        sae_fidelity(_exact_sae(48), model, TEXTS, 0, tokenizer=tokenizer, mean=torch.zeros(3))
    assert all(not m._forward_pre_hooks for m in model.modules())
