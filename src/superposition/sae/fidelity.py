"""Fidelity: how much of the model's behaviour survives an edit of one layer's neurons.

An SAE can reconstruct activations well and still break the model. The field's test splices
it in (:func:`~superposition.sae.edit.splice`) and compares the model's output with the clean
run and with the layer ablated:

* **Causal language models** (those that can generate): next-token cross-entropy ``L`` over
  the texts' real tokens, and the KL divergence of the next-token distributions from the
  clean ones.
* **Other models** (encoders such as the shipped MiniLM): the distance ``1 - cos`` between
  the edited and the clean output embedding (the mask-weighted mean of the last hidden state)
  of each text, averaged; the clean run's distance is 0.

**Loss recovered** (SAELens, dictionary_learning): ``(L_ablated - L_edit) / (L_ablated -
L_clean)``: 1 when the edit changes nothing, 0 when it is as bad as ablating the layer. It is
reported against zero-ablation (the convention, and the one to judge by) and against
mean-ablation; for MiniLM's layer 0 mean-ablation is far more destructive than zero-ablation,
so a ratio against it flatters any edit.

:func:`edit_effects` measures any set of edits in one pass over the texts (each batch runs
once clean and once per edit); :func:`sae_fidelity` is the SAE case.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from superposition.probe.adapters import is_hooked_transformer
from superposition.probe.capture import forward_function, model_device
from superposition.probe.corpus import Corpus, load_corpus
from superposition.probe.probe import ActivationProbe
from superposition.sae.edit import NeuronEdit, edit, mean_ablation, splice, zero_ablation

if TYPE_CHECKING:
    from superposition.sae.model import SparseAutoencoder

__all__ = ["EditEffect", "Fidelity", "edit_effects", "loss_recovered", "sae_fidelity"]


@dataclass(frozen=True)
class EditEffect:
    """What one edit did to the model's output, averaged over the texts.

    Attributes:
        loss: cross-entropy (causal LMs) or embedding distance ``1 - cos`` (others).
        kl: mean KL divergence of next-token distributions from the clean ones (causal LMs;
            ``nan`` otherwise).
    """

    loss: float
    kl: float


@dataclass(frozen=True)
class Fidelity:
    """Fidelity of a spliced SAE (see the module docstring).

    Attributes:
        metric: ``"next-token cross-entropy"`` or ``"embedding distance (1 - cos)"``.
        clean: the unedited model's loss (0 for the embedding distance).
        effects: :class:`EditEffect` per edit: ``"sae"``, ``"zero"``, ``"mean"`` and any
            extra edits that were passed.
        loss_recovered: ``(L_zero - L_sae) / (L_zero - L_clean)``, the number to judge by.
        loss_recovered_mean: the same against mean-ablation.
        n_texts, n_tokens: what it was measured on.
    """

    metric: str
    clean: float
    effects: dict[str, EditEffect] = field(repr=False)
    loss_recovered: float
    loss_recovered_mean: float
    n_texts: int
    n_tokens: int

    def recovered(self, edit: str, against: str = "zero") -> float:
        """Loss recovered by ``edit`` against the ablation ``against`` ("zero" or "mean")."""
        return loss_recovered(self.clean, self.effects[edit].loss, self.effects[against].loss)

    def to_dict(self) -> dict[str, Any]:
        """Plain numbers, for JSON."""
        return {
            "metric": self.metric,
            "clean": self.clean,
            "loss_recovered": self.loss_recovered,
            "loss_recovered_mean": self.loss_recovered_mean,
            "n_texts": self.n_texts,
            "n_tokens": self.n_tokens,
            "effects": {k: {"loss": v.loss, "kl": v.kl} for k, v in self.effects.items()},
        }


def loss_recovered(clean: float, edited: float, ablated: float) -> float:
    """``(ablated - edited) / (ablated - clean)``; ``nan`` when ablation changes nothing.

    Examples:
        >>> loss_recovered(clean=2.0, edited=2.5, ablated=4.0)
        0.75
    """
    gap = ablated - clean
    return (ablated - edited) / gap if gap != 0 else float("nan")


def _is_causal_lm(model: nn.Module) -> bool:
    if is_hooked_transformer(model):
        return True
    can_generate = getattr(model, "can_generate", None)
    config = getattr(model, "config", None)
    return bool(
        callable(can_generate)
        and can_generate()
        and not getattr(config, "is_encoder_decoder", False)
    )


def _probe(
    model: nn.Module,
    layer: int,
    site: str,
    tokenizer: Any,
    module: str | Mapping[str, str] | None,
    batch_size: int,
    max_length: int | None,
) -> ActivationProbe[Any, Any]:
    return ActivationProbe(
        model,
        layer=layer,
        site=site,
        tokenizer=tokenizer,
        module=module,
        batch_size=batch_size,
        max_length=max_length,
        progress=False,
    )


def _embedding(hidden: Tensor, mask: Tensor) -> Tensor:
    w = mask.to(hidden.dtype)[..., None]
    return (hidden * w).sum(1) / w.sum(1).clamp_min(1.0)


def edit_effects(
    model: nn.Module,
    texts: Corpus | Iterable[str] | Any,
    layer: int,
    edits: Mapping[str, NeuronEdit],
    *,
    site: str = "neurons",
    tokenizer: Any = None,
    module: str | Mapping[str, str] | None = None,
    batch_size: int = 16,
    max_length: int | None = None,
) -> tuple[str, float, dict[str, EditEffect], int, int]:
    """The clean loss and each edit's :class:`EditEffect` on ``texts``.

    Args:
        model: a Hugging Face model, a TransformerLens ``HookedTransformer`` or an nnsight
            ``LanguageModel`` (:mod:`superposition.probe.adapters`); a causal LM (with its
            head) is scored by next-token cross-entropy, anything else by the distance of its
            output embeddings.
        texts: anything :func:`~superposition.load_corpus` takes.
        layer: the layer whose ``site`` the edits replace.
        edits: name -> edit (:mod:`superposition.sae.edit`).
        site: the place of the block edited (:mod:`superposition.probe.sites`).
        tokenizer, module, batch_size, max_length: as in
            :class:`~superposition.ActivationProbe`.

    Returns:
        ``(metric, clean, effects, n_texts, n_tokens)``.

    Examples:
        >>> from superposition import load_model
        >>> from superposition.sae.edit import zero_ablation
        >>> model, tok = load_model()
        >>> metric, clean, effects, _, _ = edit_effects(
        ...     model, ["The cat sat on the mat."], 0, {"zero": zero_ablation}, tokenizer=tok)
        >>> metric, clean, effects["zero"].loss > 0
        ('embedding distance (1 - cos)', 0.0, True)
    """
    if not edits:
        raise ValueError("edits must name at least one edit, got none")
    probe = _probe(model, layer, site, tokenizer, module, batch_size, max_length)
    model = probe.model  # the module itself, inside a wrapper (nnsight)
    call = forward_function(model, logits=True) if is_hooked_transformer(model) else model
    takes = set(inspect.signature(call.forward).parameters)
    texts = list(load_corpus(texts))
    if not texts:
        raise ValueError("texts is empty: fidelity needs at least one text")
    batches = probe.batches(texts)
    causal = _is_causal_lm(model)
    metric = "next-token cross-entropy" if causal else "embedding distance (1 - cos)"
    device = model_device(model)
    sums = {name: [0.0, 0.0] for name in ("clean", *edits)}  # loss, kl
    count = 0
    training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for batch in batches:
                inputs = {
                    k: v.to(device)
                    for k, v in batch.inputs.items()
                    if k in takes or k in ("input_ids", "attention_mask") or "kwargs" in takes
                }
                mask = inputs["attention_mask"]

                def run(inputs: dict[str, Tensor] = inputs) -> Tensor:
                    out = call(**inputs)
                    if isinstance(out, Tensor):  # a HookedTransformer's logits
                        return out[:, :-1].float()
                    result: Tensor = out.logits[:, :-1] if causal else out.last_hidden_state
                    return result.float()

                clean = run()
                if causal:
                    target = inputs["input_ids"][:, 1:]
                    real = mask[:, 1:].bool()
                    logp_clean = clean.log_softmax(-1)
                    n = int(real.sum())
                    sums["clean"][0] += float(
                        -logp_clean.gather(-1, target[..., None]).squeeze(-1)[real].sum()
                    )
                else:
                    emb_clean = _embedding(clean, mask)
                    n = clean.shape[0]
                count += n
                for name, fn in edits.items():
                    with edit(model, layer, fn, site=site, module=module):
                        edited = run()
                    if causal:
                        logp = edited.log_softmax(-1)
                        nll = -logp.gather(-1, target[..., None]).squeeze(-1)
                        kl = (logp_clean.exp() * (logp_clean - logp)).sum(-1)
                        sums[name][0] += float(nll[real].sum())
                        sums[name][1] += float(kl[real].sum())
                    else:
                        cos = torch.cosine_similarity(_embedding(edited, mask), emb_clean, dim=-1)
                        sums[name][0] += float((1 - cos).sum())
    finally:
        model.train(training)
    n_tokens = sum(b.n_tokens for b in batches)
    effects = {
        name: EditEffect(loss=v[0] / count, kl=v[1] / count if causal else float("nan"))
        for name, v in sums.items()
        if name != "clean"
    }
    return metric, sums["clean"][0] / count, effects, len(texts), n_tokens


def sae_fidelity(
    sae: SparseAutoencoder,
    model: nn.Module,
    texts: Corpus | Iterable[str] | Any,
    layer: int | None = None,
    *,
    site: str | None = None,
    mean: Tensor | None = None,
    extra: Mapping[str, NeuronEdit] | None = None,
    tokenizer: Any = None,
    module: str | Mapping[str, str] | None = None,
    batch_size: int = 16,
    max_length: int | None = None,
) -> Fidelity:
    """Fidelity of ``sae`` spliced into ``site`` of ``layer`` of ``model`` on ``texts``; a
    :class:`~superposition.Transcoder` replaces the MLP's output (``mlp_out``, by default) by
    its prediction from the MLP's input, against the MLP's output zeroed or held at its mean.

    Args:
        sae: an SAE trained on that site of that layer.
        layer, site: where it is spliced; default: where the SAE reads
            (:attr:`~superposition.SparseAutoencoder.layer` and ``site``, known for SAEs
            loaded from SAELens or sparsify folders), else ``layer`` is required and the site
            is ``"neurons"``.
        model, texts, tokenizer, module, batch_size, max_length: as in
            :func:`edit_effects`.
        mean: each neuron's mean for mean-ablation; default: streamed over ``texts``.
        extra: more edits to measure beside the SAE (baselines), by name.

    Examples:
        >>> from superposition import SparseAutoencoder, load_model
        >>> model, tok = load_model()
        >>> sae = SparseAutoencoder(1536, 64, k=8, seed=0)  # untrained: a random dictionary
        >>> f = sae_fidelity(sae, model, ["The cat sat on the mat."], 0, tokenizer=tok)
        >>> f.metric, f.n_texts, sorted(f.effects)
        ('embedding distance (1 - cos)', 1, ['mean', 'sae', 'zero'])
    """
    layer = sae.layer if layer is None else layer
    if layer is None:
        raise ValueError(
            "layer is required: this SAE does not record the layer it reads; pass layer=..."
        )
    site = site or sae.site or ("mlp_out" if sae.transcoder else "neurons")
    texts = list(load_corpus(texts))  # read once: a generator cannot be read twice
    if mean is None:
        probe = _probe(model, layer, site, tokenizer, module, batch_size, max_length)
        # Everything here runs in this process alone (one rank may call it by itself).
        mean = probe.stream(texts, distributed=False).finalise().mean
    n, width = (sae.d_out, "d_out") if sae.transcoder else (sae.d_in, "d_in")
    if mean.shape != (n,):
        raise ValueError(f"mean must have shape [{n}] (the SAE's {width}), got {tuple(mean.shape)}")
    edits: dict[str, NeuronEdit] = {
        "sae": splice(sae),
        "zero": zero_ablation,
        "mean": mean_ablation(mean.float()),
        **(extra or {}),
    }
    metric, clean, effects, n_texts, n_tokens = edit_effects(
        model,
        texts,
        layer,
        edits,
        site=site,
        tokenizer=tokenizer,
        module=module,
        batch_size=batch_size,
        max_length=max_length,
    )
    return Fidelity(
        metric=metric,
        clean=clean,
        effects=effects,
        loss_recovered=loss_recovered(clean, effects["sae"].loss, effects["zero"].loss),
        loss_recovered_mean=loss_recovered(clean, effects["sae"].loss, effects["mean"].loss),
        n_texts=n_texts,
        n_tokens=n_tokens,
    )
