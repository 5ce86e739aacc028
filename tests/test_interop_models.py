"""TransformerLens and nnsight models probed, edited and scored like Hugging Face ones, checked
against those libraries' own machinery: TransformerLens's ``run_with_cache`` and
``run_with_hooks``, SAELens's ``HookedSAETransformer`` splice, and nnsight's wrapped model.

The models are built from small configs with random weights (nothing is downloaded) and read
the ids of the shipped MiniLM tokenizer. Each text is also run alone, unpadded, by the other
library, so the probe's batching and padding are checked too.
"""

from __future__ import annotations

import copy
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

from superposition import ActivationProbe, SparseAutoencoder
from superposition.probe.sites import SITES, hook_name
from superposition.sae.edit import edit, splice
from superposition.sae.fidelity import sae_fidelity

transformer_lens = pytest.importorskip("transformer_lens")
from transformer_lens import HookedTransformer, HookedTransformerConfig  # noqa: E402


@pytest.fixture
def tokenizer(tokenizer: Any) -> Any:
    """A copy of the shared MiniLM tokenizer: TransformerLens and nnsight set attributes of the
    tokenizer they are given (nnsight pads on the left), which must not leak into other tests."""
    return copy.deepcopy(tokenizer)


TEXTS = [
    "The cat sat on the mat.",
    "A much longer sentence about dogs, their owners and the parks they walk in.",
    "Short one.",
]
LAYER = 1


def _hooked(tokenizer: Any, cls: Any = HookedTransformer, normalization: str = "LN") -> Any:
    config = HookedTransformerConfig(
        n_layers=2,
        d_model=32,
        n_ctx=64,
        d_head=8,
        n_heads=4,
        d_mlp=64,
        d_vocab=tokenizer.vocab_size,
        act_fn="gelu",
        normalization_type=normalization,
        seed=0,
    )
    with warnings.catch_warnings():  # TransformerLens 3 deprecates HookedTransformer
        warnings.simplefilter("ignore", DeprecationWarning)
        model = cls(config, tokenizer=tokenizer)
    with torch.no_grad():  # non-trivial norm weights and biases, so mlp_in's affine matters
        for name, p in model.named_parameters():
            if "ln" in name:
                p.add_(torch.randn_like(p) * 0.3)
    return model.eval()


def _ids(model: Any, text: str) -> Tensor:
    return torch.tensor([model.tokenizer(text)["input_ids"]])


def _expected(model: Any, cache: Any, site: str) -> Tensor:
    """What TransformerLens's cache holds at a site; ``mlp_in`` is what the MLP reads: the
    normalised residual through ln2's weight and bias."""
    if site == "mlp_in":
        ln2 = model.blocks[LAYER].ln2
        return cache[f"blocks.{LAYER}.ln2.hook_normalized"] * ln2.w + ln2.b
    return cache[hook_name(LAYER, site)]


def test_probe_on_a_hooked_transformer_equals_run_with_cache(tokenizer: Any) -> None:
    model = _hooked(tokenizer)
    acts = ActivationProbe(model, layer=LAYER, site=list(SITES), batch_size=2).run(TEXTS)
    expected: dict[str, list[Tensor]] = {s: [] for s in SITES}
    for text in TEXTS:
        _, cache = model.run_with_cache(_ids(model, text))
        for s in SITES:
            expected[s].append(_expected(model, cache, s)[0])
    for a in acts:
        want = torch.cat(expected[a.site])
        torch.testing.assert_close(a.values, want, atol=1e-5, rtol=1e-5)


def test_with_folded_norms_mlp_in_is_ln2_hook_normalized(tokenizer: Any) -> None:
    """With the norms' weights folded (LNPre, as from_pretrained leaves a model),
    TransformerLens's ln2.hook_normalized is what the MLP reads: the alias holds."""
    model = _hooked(tokenizer, normalization="LNPre")
    a = ActivationProbe(model, layer=LAYER, site="ln2.hook_normalized").run(TEXTS[:1])
    _, cache = model.run_with_cache(_ids(model, TEXTS[0]))
    torch.testing.assert_close(a.values, cache[f"blocks.{LAYER}.ln2.hook_normalized"][0])


@pytest.mark.parametrize("site", SITES)
def test_edits_on_a_hooked_transformer_equal_its_own_hooks(tokenizer: Any, site: str) -> None:
    model = _hooked(tokenizer)
    g = torch.Generator().manual_seed(0)
    noise: dict[int, Tensor] = {}

    def fn(x: Tensor) -> Tensor:
        # a fixed, shape-dependent change: scale and shift every feature differently
        width = x.shape[-1]
        if width not in noise:
            noise[width] = torch.randn(width, generator=g)
        return x * 0.5 + noise[width]

    ids = _ids(model, TEXTS[1])
    with torch.no_grad(), edit(model, LAYER, fn, site=site):
        ours = model(ids)
    if site == "mlp_in":
        # what the MLP reads has no hook point of its own: replace the MLP's input by hand
        mlp = model.blocks[LAYER].mlp
        original = mlp.forward
        mlp.forward = lambda x, *a, **k: original(fn(x), *a, **k)  # type: ignore[method-assign]
        try:
            with torch.no_grad():
                theirs = model(ids)
        finally:
            del mlp.forward
    else:
        with torch.no_grad():
            theirs = model.run_with_hooks(
                ids, fwd_hooks=[(hook_name(LAYER, site), lambda act, hook: fn(act))]
            )
    clean = model(ids)
    assert not torch.allclose(ours, clean), "the edit must change the output"
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def _saelens_sae(folder: Path, d_in: int, site: str) -> Any:
    from sae_lens.saes import TopKSAE, TopKSAEConfig

    cfg = TopKSAEConfig(d_in=d_in, d_sae=96, k=6)
    cfg.metadata.hook_name = hook_name(LAYER, site)
    sae = TopKSAE(cfg)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    sae.save_model(folder)
    return sae


def test_splicing_an_sae_equals_saelens_hooked_sae_transformer(tokenizer: Any) -> None:
    pytest.importorskip("sae_lens")
    from sae_lens import HookedSAETransformer

    model = _hooked(tokenizer, cls=HookedSAETransformer)
    with tempfile.TemporaryDirectory() as d:
        theirs = _saelens_sae(Path(d), 32, "mlp_out")
        ours = SparseAutoencoder.load(d)
    assert (ours.layer, ours.site) == (LAYER, "mlp_out")
    ids = _ids(model, TEXTS[1])
    with torch.no_grad():
        want = model.run_with_saes(ids, saes=[theirs])
        with edit(model, ours.layer, splice(ours), site=ours.site):
            got = model(ids)
        assert not torch.allclose(got, model(ids))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def _by_hand_loss(model: Any, run: Callable[[Tensor], Tensor]) -> float:
    """Next-token cross-entropy over every real token of TEXTS, each text alone."""
    total, count = 0.0, 0
    for text in TEXTS:
        ids = _ids(model, text)
        with torch.no_grad():
            logp = run(ids)[0, :-1].log_softmax(-1)
        total += float(-logp.gather(-1, ids[0, 1:, None]).sum())
        count += ids.shape[1] - 1
    return total / count


def test_fidelity_on_a_hooked_transformer_equals_a_by_hand_computation(tokenizer: Any) -> None:
    model = _hooked(tokenizer)
    with tempfile.TemporaryDirectory() as d:
        _saelens_sae(Path(d), 32, "mlp_out")
        sae = SparseAutoencoder.load(d)
    f = sae_fidelity(sae, model, TEXTS, batch_size=2)  # layer and site from the SAE
    assert f.metric == "next-token cross-entropy"
    assert f.clean == pytest.approx(_by_hand_loss(model, model), rel=1e-5)

    def spliced(ids: Tensor) -> Tensor:
        return model.run_with_hooks(
            ids,
            fwd_hooks=[
                (
                    hook_name(LAYER, "mlp_out"),
                    lambda act, hook: sae(act.reshape(-1, 32)).reshape(act.shape),
                )
            ],
        )

    def zeroed(ids: Tensor) -> Tensor:
        return model.run_with_hooks(
            ids, fwd_hooks=[(hook_name(LAYER, "mlp_out"), lambda act, hook: act * 0)]
        )

    assert f.effects["sae"].loss == pytest.approx(_by_hand_loss(model, spliced), rel=1e-5)
    assert f.effects["zero"].loss == pytest.approx(_by_hand_loss(model, zeroed), rel=1e-5)


# ---------------------------------------------------------------------------- wrappers


def _tiny_gpt2(tokenizer: Any) -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        n_layer=2,
        n_embd=32,
        n_head=4,
        vocab_size=tokenizer.vocab_size,
        n_positions=64,
        attn_implementation="eager",
    )
    torch.manual_seed(0)
    return GPT2LMHeadModel(config).eval()


def test_nnsight_language_model_probes_as_the_bare_model(tokenizer: Any) -> None:
    nnsight = pytest.importorskip("nnsight")
    hf = _tiny_gpt2(tokenizer)
    bare = ActivationProbe(hf, layer=LAYER, site=list(SITES), tokenizer=tokenizer).run(TEXTS)
    with warnings.catch_warnings():  # nnsight 0.8 deprecates LanguageModel for TransformersModel
        warnings.simplefilter("ignore")
        lm = nnsight.LanguageModel(hf, tokenizer=tokenizer)
    wrapped = ActivationProbe(lm, layer=LAYER, site=list(SITES)).run(TEXTS)
    for a, b in zip(bare, wrapped, strict=True):
        assert a.site == b.site
        assert torch.equal(a.values, b.values)


def test_transformer_bridge_probes_as_the_bare_model(tokenizer: Any, tmp_path: Path) -> None:
    from transformer_lens.model_bridge import TransformerBridge

    hf = _tiny_gpt2(tokenizer)
    bare = ActivationProbe(hf, layer=LAYER, site=list(SITES), tokenizer=tokenizer).run(TEXTS)
    hf.save_pretrained(tmp_path)  # the bridge reads the config from a folder: nothing downloads
    bridge = TransformerBridge.boot_transformers(str(tmp_path), hf_model=hf, tokenizer=tokenizer)
    bridged = ActivationProbe(bridge, layer=LAYER, site=list(SITES)).run(TEXTS)
    for a, b in zip(bare, bridged, strict=True):
        assert a.site == b.site
        torch.testing.assert_close(a.values, b.values, atol=1e-5, rtol=1e-5)


def test_an_sae_of_a_layer_the_model_lacks_is_refused_before_any_work(tokenizer: Any) -> None:
    model = _hooked(tokenizer)
    sae = SparseAutoencoder(32, 64, k=4, seed=0)
    sae.layer, sae.site = 5, "mlp_out"
    with pytest.raises(ValueError, match="layer"):
        sae.fidelity(model, TEXTS)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
