"""edit_neurons and the edits built on it, checked against an independent mechanism.

The independent computation replaces the MLP output projection *module* by a wrapper that
applies the edit to its input (no hooks involved) and runs the same forward pass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from conftest import ARCHS, EditedModule, _build, replaced_module, tiny_model
from superposition import ActivationProbe, SparseAutoencoder
from superposition.probe import locate_mlp
from superposition.sae.edit import (
    ablate_latents,
    ablate_neurons,
    edit_neurons,
    mean_ablation,
    splice,
    steer,
    top_k_neurons,
    zero_ablation,
)

IDS = torch.tensor([[101, 7592, 2088, 2003, 1037, 3231, 102], [101, 2023, 2003, 2460, 102, 0, 0]])
MASK = (IDS != 0).long()


def _inputs(model: nn.Module) -> dict[str, Tensor]:
    if getattr(model.config, "is_encoder_decoder", False):
        return {"input_ids": IDS, "attention_mask": MASK, "decoder_input_ids": IDS[:, :3]}
    return {"input_ids": IDS, "attention_mask": MASK}


def _out(model: nn.Module) -> Tensor:
    with torch.no_grad():
        return model(**_inputs(model)).last_hidden_state


def _by_replacement(
    model: nn.Module, layer: int, fn: Callable[[Tensor], Tensor], shared: bool = False
) -> Tensor:
    (site,) = locate_mlp(model, layer)
    wrapper = EditedModule(site.module, fn, site.call_index if shared else None)
    with replaced_module(model, site.module_name, wrapper):
        return _out(model)


def _no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_pre_hooks and not m._forward_hooks for m in model.modules())


@pytest.mark.parametrize("name", ARCHS)
def test_edit_equals_replacing_the_module(name: str) -> None:
    model, width = tiny_model(name)
    shift = torch.linspace(-1, 1, width)

    def fn(x: Tensor) -> Tensor:
        return x * 0.5 + shift.to(x.dtype)

    layer = 1
    with edit_neurons(model, layer, fn) as site:
        got = _out(model)
    assert site.layer == layer
    expected = _by_replacement(model, layer, fn, shared=name == "albert")
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert not torch.equal(got, _out(model))  # the edit did something
    assert _no_hooks(model)


@pytest.mark.parametrize("name", ["gpt2", "llama", "bert", "albert"])
def test_identity_edits_change_nothing(name: str) -> None:
    model, width = tiny_model(name)
    clean = _out(model)
    with edit_neurons(model, 0, lambda x: x):
        torch.testing.assert_close(_out(model), clean, rtol=0, atol=0)
    # An SAE that reconstructs exactly: relu(x) - relu(-x) with W_enc = [I, -I], W_dec = [I; -I].
    sae = SparseAutoencoder(width, 2 * width, kind="relu", l1=1e-3, seed=0)
    eye = torch.eye(width, dtype=sae.params.dtype)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], 1))
        sae.W_dec.copy_(torch.cat([eye, -eye], 0))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    with edit_neurons(model, 0, splice(sae)):
        torch.testing.assert_close(_out(model), clean, rtol=1e-5, atol=1e-5)
    assert _no_hooks(model)


def test_albert_edits_only_the_requested_call_of_its_shared_mlp() -> None:
    model, _ = tiny_model("albert")
    with edit_neurons(model, 2, zero_ablation):
        last = _out(model)
    with edit_neurons(model, 0, zero_ablation):
        first = _out(model)
    assert not torch.equal(last, first)
    torch.testing.assert_close(
        last, _by_replacement(model, 2, zero_ablation, shared=True), rtol=0, atol=0
    )


def test_hooks_are_removed_when_the_edit_or_the_forward_raises() -> None:
    model = _build("gpt2")[0]
    wrong = edit_neurons(model, 0, lambda x: x[..., :3])
    with pytest.raises(RuntimeError, match=r"must return a tensor of the input's shape"), wrong:
        _out(model)
    assert _no_hooks(model)

    def boom(x: Tensor) -> Tensor:
        raise KeyError("inside the edit")

    with pytest.raises(KeyError, match="inside the edit"), edit_neurons(model, 0, boom):
        _out(model)
    assert _no_hooks(model)


def test_bad_arguments_fail_before_any_hook() -> None:
    model = _build("gpt2")[0]
    with pytest.raises(TypeError, match="fn must be a function"):
        edit_neurons(model, 0, "zero").__enter__()  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="layer must be one int"):
        edit_neurons(model, [0, 1], zero_ablation).__enter__()  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="out of range"):
        edit_neurons(model, 5, zero_ablation).__enter__()
    assert _no_hooks(model)


def test_ablations_against_their_definitions() -> None:
    model, width = tiny_model("bert")
    (site,) = locate_mlp(model, 0)
    captured: list[Tensor] = []

    def spy(x: Tensor) -> Tensor:
        captured.append(x.clone())
        return x

    with edit_neurons(model, 0, spy):
        _out(model)
    x = captured[0]
    mean = torch.linspace(0, 1, width)

    # zero and mean ablation, one neuron, a few neurons at their means, a steering vector
    cases: list[tuple[Callable[[Tensor], Tensor], Tensor]] = [
        (zero_ablation, torch.zeros_like(x)),
        (mean_ablation(mean), mean.expand_as(x)),
        (ablate_neurons(3), x.clone().index_fill_(-1, torch.tensor([3]), 0.0)),
        (steer(mean, 2.0), x + 2.0 * mean),
    ]
    some = torch.tensor([1, 5])
    at_mean = x.clone()
    at_mean[..., some] = mean[some]
    cases.append((ablate_neurons([1, 5], value=mean), at_mean))
    for fn, expected in cases:
        torch.testing.assert_close(fn(x), expected)
        with edit_neurons(model, 0, fn):
            got = _out(model)
        torch.testing.assert_close(got, _by_replacement(model, 0, lambda _, e=expected: e))
    assert site.module_name == "encoder.layer.0.output.dense"


def test_ablate_latents_removes_exactly_their_decoder_terms() -> None:
    torch.manual_seed(0)
    sae = SparseAutoencoder(6, 12, kind="relu", l1=1e-3, seed=1)
    with torch.no_grad():
        sae.b_enc.fill_(0.1)
        sae.scale.fill_(2.0)
    x = torch.randn(4, 6)
    z = sae.encode(x)
    latents = [2, 7]
    expected = x - sum(z[:, i : i + 1] * sae.W_dec[i] for i in latents) / 2.0
    torch.testing.assert_close(ablate_latents(sae, latents)(x), expected.detach())
    # every latent: what is left is the SAE's error plus its decoder bias
    rest = ablate_latents(sae, range(12))(x)
    torch.testing.assert_close(rest, (x - sae(x) + sae.b_dec / 2.0).detach(), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match=r"latents must be in \[0, 12\)"):
        ablate_latents(sae, [12])


def test_edit_errors_name_the_mismatch() -> None:
    model, width = tiny_model("gpt2")
    narrow = edit_neurons(model, 0, mean_ablation(torch.zeros(3)))
    with pytest.raises(RuntimeError, match=f"mean has 3 entries but the layer has {width}"), narrow:
        _out(model)
    beyond = edit_neurons(model, 0, ablate_neurons(width + 1))
    with pytest.raises(RuntimeError, match="out of range for a layer of"), beyond:
        _out(model)
    with pytest.raises(ValueError, match="must be a float vector"):
        steer(torch.zeros(2, 2))
    assert _no_hooks(model)


def test_mean_ablation_with_the_probes_mean_matches_a_manual_mean(tokenizer: Any) -> None:
    model, _ = tiny_model("bert")
    texts = ["the cat sat on the mat", "a second, rather longer sentence than the first"]
    acts = ActivationProbe(model, layer=0, tokenizer=tokenizer, progress=False).run(texts)
    stats = ActivationProbe(model, layer=0, tokenizer=tokenizer, progress=False).stream(texts)
    mean = stats.finalise().mean.float()
    torch.testing.assert_close(mean, acts.values.mean(0), rtol=1e-5, atol=1e-6)
    fn = mean_ablation(mean)
    with edit_neurons(model, 0, fn):
        got = _out(model)
    expected = _by_replacement(model, 0, lambda x: acts.values.mean(0).expand_as(x))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_top_k_neurons_keeps_the_largest_magnitudes() -> None:
    x = torch.randn(3, 5, 48)
    kept = top_k_neurons(4)(x)
    assert ((kept != 0).sum(-1) == 4).all()
    # every kept value is the input's, and no dropped neuron is larger than a kept one
    torch.testing.assert_close(kept[kept != 0], x[kept != 0])
    smallest_kept = kept.abs().masked_fill(kept == 0, float("inf")).amin(-1)
    largest_dropped = x.abs().masked_fill(kept != 0, 0.0).amax(-1)
    assert (largest_dropped <= smallest_kept).all()
    assert torch.equal(top_k_neurons(48)(x), x)
    with pytest.raises(ValueError, match="k must be a positive int"):
        top_k_neurons(0)
