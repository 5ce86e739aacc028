"""Models of other libraries, probed like Hugging Face ones: TransformerLens's
``HookedTransformer`` and ``TransformerBridge``, and nnsight's ``LanguageModel``.

Nothing here imports those libraries: a model is recognised by what it is made of.

* **nnsight** ``LanguageModel`` wraps a Hugging Face model (``._model``) and its tokenizer:
  the probe, edits and fidelity work on the wrapped model, so the numbers are those of the
  bare model.
* **TransformerLens** ``HookedTransformer`` has its own modules; the sites are its hook
  points (:func:`hook_point_sites`): ``neurons`` is ``blocks.{layer}.mlp.hook_post``,
  ``mlp_out`` ``blocks.{layer}.hook_mlp_out``, ``resid_pre``/``resid_post``
  ``blocks.{layer}.hook_resid_pre``/``hook_resid_post``, and ``mlp_in``, what the MLP reads,
  the input of ``blocks.{layer}.mlp`` (``ln2.hook_normalized`` when the layer norm's weights
  are folded, as ``from_pretrained`` does by default). It takes token ids as its first
  argument and an ``attention_mask``; its tokenizer (``.tokenizer``) prepends BOS as
  TransformerLens's own ``to_tokens`` does.
* **TransformerLens** ``TransformerBridge`` (3.x) wraps a Hugging Face model's modules in
  components with hook points of their own, and answers to the same hook names (aliases in
  its ``hook_dict``); ``mlp_in`` is ``blocks.{layer}.mlp.hook_in``. It is called like a
  ``HookedTransformer``.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

__all__ = [
    "BRIDGE_SITES",
    "HOOKED_TRANSFORMER_SITES",
    "HookedTransformerCall",
    "hook_point_sites",
    "is_hooked_transformer",
    "model_tokenizer",
    "unwrap",
]

HOOKED_TRANSFORMER_SITES: dict[str, str] = {
    "neurons": "blocks.{layer}.mlp.hook_post",
    "mlp_in": "blocks.{layer}.mlp",
    "mlp_out": "blocks.{layer}.hook_mlp_out",
    "resid_pre": "blocks.{layer}.hook_resid_pre",
    "resid_post": "blocks.{layer}.hook_resid_post",
}
"""Where each site of a ``HookedTransformer`` is read (inputs of the ``neurons``, ``mlp_in``
and ``resid_pre`` modules, outputs of the others; a hook point's input is its output)."""

BRIDGE_SITES: dict[str, str] = {**HOOKED_TRANSFORMER_SITES, "mlp_in": "blocks.{layer}.mlp.hook_in"}
"""The same for a ``TransformerBridge`` (names from its ``hook_dict``)."""


def _library(obj: object) -> str:
    return type(obj).__module__.split(".", 1)[0]


def _is(model: object, name: str) -> bool:
    return any(
        cls.__name__ == name and cls.__module__.startswith("transformer_lens")
        for cls in type(model).__mro__
    )


def is_hooked_transformer(model: object) -> bool:
    """Whether ``model`` is run through TransformerLens hook points: a ``HookedTransformer``
    (or a subclass, such as SAELens's ``HookedSAETransformer``) or a ``TransformerBridge``."""
    return _is(model, "HookedTransformer") or _is(model, "TransformerBridge")


def hook_point_sites(model: object) -> dict[str, str] | None:
    """The site -> module-name templates of a TransformerLens model, else ``None``."""
    if _is(model, "TransformerBridge"):
        return BRIDGE_SITES
    if _is(model, "HookedTransformer"):
        return HOOKED_TRANSFORMER_SITES
    return None


def unwrap(model: Any) -> nn.Module:
    """The ``nn.Module`` whose modules are hooked and run: the Hugging Face model inside an
    nnsight ``LanguageModel``, else ``model``.

    Raises:
        TypeError: ``model`` is none of these and not an ``nn.Module``.
    """
    if _library(model) == "nnsight":
        for name in ("_module", "_model"):  # nnsight 0.8, earlier releases
            inner = getattr(model, name, None)
            if isinstance(inner, nn.Module):
                return inner
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model must be a torch.nn.Module (a Hugging Face model, a TransformerLens "
            f"HookedTransformer or TransformerBridge, an nnsight LanguageModel), got "
            f"{type(model).__name__}"
        )
    return model


def model_tokenizer(model: Any) -> Any:
    """The tokenizer a wrapper carries (nnsight, TransformerLens), else ``None``."""
    if _library(model) in ("nnsight", "transformer_lens"):
        return getattr(model, "tokenizer", None)
    return None


class HookedTransformerCall(nn.Module):
    """Calls a ``HookedTransformer`` or ``TransformerBridge`` as the probe calls a Hugging
    Face model:
    ``forward(input_ids, attention_mask)``; ``logits=False`` skips the unembedding."""

    def __init__(self, model: nn.Module, *, logits: bool = False) -> None:
        super().__init__()
        self.model = model
        self.logits = logits

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Any:
        return self.model(
            input_ids, attention_mask=attention_mask, return_type="logits" if self.logits else None
        )
