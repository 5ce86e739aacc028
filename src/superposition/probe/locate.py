"""Finding the MLP neurons of any Hugging Face architecture: one table and one fallback.

The hidden units of a transformer MLP are the *input of its output projection* (BERT
``output.dense``, GPT-2 ``mlp.c_proj``, LLaMA ``mlp.down_proj``, ...). A forward pre-hook on that
module sees the post-activation values even where the activation is a functional call, and for
gated MLPs it sees ``act(gate(x)) * up(x)``. :data:`ARCHITECTURES` maps each ``model_type`` to
that module; an unknown architecture gets a structural fallback, and failing that a
:class:`LookupError` that says how to name the module by hand with ``module="..."``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from torch import Tensor, nn

__all__ = ["ARCHITECTURES", "LayerSpec", "MLPSite", "linear_weight", "locate_mlp", "n_layers"]

LayerSpec = int | Sequence[int] | Literal["all"]
"""A layer index (negative counts from the end), several, or ``"all"``."""

ARCHITECTURES: dict[str, tuple[str, str]] = {
    "bert": ("encoder.layer", "output.dense"),
    "roberta": ("encoder.layer", "output.dense"),
    "xlm-roberta": ("encoder.layer", "output.dense"),
    "camembert": ("encoder.layer", "output.dense"),
    "electra": ("encoder.layer", "output.dense"),
    "deberta-v2": ("encoder.layer", "output.dense"),
    "deberta": ("encoder.layer", "output.dense"),
    "distilbert": ("transformer.layer", "ffn.lin2"),
    "albert": ("encoder.albert_layer_groups", "albert_layers.0.ffn_output"),
    "gpt2": ("h", "mlp.c_proj"),
    "gptj": ("h", "mlp.fc_out"),
    "gpt_neox": ("layers", "mlp.dense_4h_to_h"),
    "bloom": ("h", "mlp.dense_4h_to_h"),
    "falcon": ("h", "mlp.dense_4h_to_h"),
    "opt": ("decoder.layers", "fc2"),
    "mpt": ("blocks", "ffn.down_proj"),
    "phi": ("layers", "mlp.fc2"),
    "llama": ("layers", "mlp.down_proj"),
    "mistral": ("layers", "mlp.down_proj"),
    "qwen2": ("layers", "mlp.down_proj"),
    "qwen3": ("layers", "mlp.down_proj"),
    "gemma": ("layers", "mlp.down_proj"),
    "gemma2": ("layers", "mlp.down_proj"),
    "phi3": ("layers", "mlp.down_proj"),
    "olmo": ("layers", "mlp.down_proj"),
    # Encoder-decoder: the encoder is probed (the probe runs the encoder alone).
    "t5": ("encoder.block", "layer.1.DenseReluDense.wo"),
    "mt5": ("encoder.block", "layer.1.DenseReluDense.wo"),
}
"""``model_type`` -> (path of the ``ModuleList`` of blocks, path of the MLP output projection
in a block).

Block paths are matched as a suffix of the module name, so task heads (BertForMaskedLM's
``bert.encoder.layer``) and bare models (``encoder.layer``) both resolve. Other architectures
go through the structural fallback of :func:`locate_mlp`.
"""


@dataclass(frozen=True)
class MLPSite:
    """Where one layer's neurons are: the ``call_index``-th call of ``module`` in a forward pass.

    ``call_index`` is 0 except where one module serves several layers (ALBERT shares its MLP).

    Attributes:
        layer: the layer index, counted from 0.
        module_name: dotted path of the MLP output projection inside the model.
        module: that module.
        call_index: which of the module's calls within one forward pass is this layer.
    """

    layer: int
    module_name: str
    module: nn.Module
    call_index: int = 0


def model_type(model: nn.Module) -> str | None:
    config = getattr(model, "config", None)
    mt = getattr(config, "model_type", None)
    return mt if isinstance(mt, str) and mt else None


def _hidden_size(model: nn.Module) -> int | None:
    config = getattr(model, "config", None)
    for name in ("hidden_size", "d_model", "n_embd", "dim"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    return None


def find_blocks(model: nn.Module, suffix: str) -> tuple[str, nn.ModuleList] | None:
    """The shortest-named ModuleList whose name is ``suffix`` or ends in ``.suffix``."""
    found = [
        (name, mod)
        for name, mod in model.named_modules()
        if isinstance(mod, nn.ModuleList) and (name == suffix or name.endswith("." + suffix))
    ]
    if not found:
        return None
    return min(found, key=lambda item: len(item[0]))


def _features(mod: nn.Module) -> tuple[int, int] | None:
    """``(in, out)`` of a Linear or a GPT-2 style Conv1D (weight ``[in, out]``), else None."""
    if isinstance(mod, nn.Linear):
        return mod.in_features, mod.out_features
    nx, nf = getattr(mod, "nx", None), getattr(mod, "nf", None)
    if type(mod).__name__ == "Conv1D" and isinstance(nx, int) and isinstance(nf, int):
        return nx, nf
    return None


def linear_weight(mod: nn.Module) -> Tensor | None:
    """The ``[out, in]`` weight of an ``nn.Linear`` or a GPT-2 style ``Conv1D`` (whose own
    weight is ``[in, out]``), detached; ``None`` for any other module. For the module the
    neurons feed, this is the MLP's output projection ``W_out``.

    Examples:
        >>> linear_weight(nn.Linear(3, 2)).shape
        torch.Size([2, 3])
        >>> linear_weight(nn.ReLU()) is None
        True
    """
    if _features(mod) is None:
        return None
    weight = getattr(mod, "weight", None)
    if not isinstance(weight, Tensor):
        return None
    w = weight.detach()
    return w if isinstance(mod, nn.Linear) else w.T


def _join(*parts: str) -> str:
    return ".".join(p for p in parts if p)


def _block_lists(model: nn.Module) -> list[tuple[str, nn.ModuleList]]:
    return [
        (name, mod)
        for name, mod in model.named_modules()
        if isinstance(mod, nn.ModuleList)
        and len(mod) > 0
        and len({type(child) for child in mod}) == 1
    ]


def structural_blocks(model: nn.Module) -> list[str]:
    """The fallback's blocks: the names of the largest ``ModuleList`` of same-class modules.

    Raises:
        LookupError: the model has no such list.
    """
    lists = _block_lists(model)
    if not lists:
        raise LookupError(
            f"cannot find the blocks of {type(model).__name__}: it has no nn.ModuleList of "
            'transformer blocks; pass module={"resid_pre": "path.to.layers.{layer}", ...}'
        )
    name, blocks = max(lists, key=lambda item: len(item[1]))
    return [_join(name, str(i)) for i in range(len(blocks))]


def _structural(model: nn.Module) -> tuple[list[str], str]:
    """Fallback: largest ModuleList of same-class blocks, one Linear with out == hidden < in."""
    lists = _block_lists(model)
    cls = type(model).__name__
    if not lists:
        raise LookupError(
            f"cannot find the MLP of {cls}: it has no nn.ModuleList of transformer blocks; "
            f'pass module="path.to.layers.{{layer}}.mlp.output_projection" naming the MLP\'s '
            "output projection (its input is the neurons), with {layer} where the index goes"
        )
    list_name, blocks = max(lists, key=lambda item: len(item[1]))
    hint = f'pass module="{_join(list_name, "{layer}")}.<path to the MLP output projection>"'
    hidden = _hidden_size(model)
    if hidden is None:
        raise LookupError(
            f"cannot find the MLP of {cls}: its config has no hidden size to recognise the MLP "
            f"output projection by; {hint}"
        )
    candidates = []
    for name, mod in blocks[0].named_modules():
        shape = _features(mod)
        if shape is not None and shape[1] == hidden and shape[0] > hidden:
            candidates.append(name)
    if len(candidates) != 1:
        what = "no layer" if not candidates else f"{len(candidates)} layers ({candidates})"
        raise LookupError(
            f"cannot find the MLP of {cls} (model_type={model_type(model)!r}): found {what} "
            f"mapping more than {hidden} features to {hidden} inside {list_name}.0, expected "
            f"exactly one; {hint}"
        )
    return [_join(list_name, str(i)) for i in range(len(blocks))], candidates[0]


def normalise_layers(layer: LayerSpec, count: int, cls: str) -> list[int]:
    """Layer spec -> sorted-as-given list of non-negative indices, validated against ``count``."""
    if isinstance(layer, str):
        if layer != "all":
            raise ValueError(
                f'layer must be an int, a list of ints or "all", got {layer!r}; '
                f'use layer="all" for every layer'
            )
        return list(range(count))
    if isinstance(layer, bool) or not isinstance(layer, (int, Sequence)):
        raise TypeError(
            f'layer must be an int, a list of ints or "all", got {type(layer).__name__}; '
            "e.g. layer=0, layer=-1 or layer=[0, 5, -1]"
        )
    items = [layer] if isinstance(layer, int) else list(layer)
    if not items:
        raise ValueError('layer must name at least one layer, got []; e.g. layer=[0] or "all"')
    out: list[int] = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int):
            raise TypeError(f"layer indices must be ints, got {item!r} in layer={layer!r}")
        if not -count <= item < count:
            raise ValueError(
                f"layer {item} is out of range for {cls} with {count} layers "
                f"(valid: {-count}..{count - 1})"
            )
        index = item % count
        if index in out:
            raise ValueError(f"layer {item} is requested twice in layer={layer!r}")
        out.append(index)
    return out


def _explicit(model: nn.Module, module: str) -> tuple[list[str], str]:
    """``module="a.{layer}.b"`` -> per-layer names; without ``{layer}`` a single site."""
    names = dict(model.named_modules())
    if "{layer}" not in module:
        if module not in names:
            raise LookupError(
                f"module={module!r} is not a submodule of {type(model).__name__}; "
                "pass a dotted path from model.named_modules()"
            )
        return [module], ""
    paths: list[str] = []
    while module.format(layer=len(paths)) in names:
        paths.append(module.format(layer=len(paths)))
    if not paths:
        raise LookupError(
            f"module={module!r} matches no submodule of {type(model).__name__} "
            f"(tried {module.format(layer=0)!r}); pass a dotted path from model.named_modules() "
            "with {layer} where the layer index goes"
        )
    return paths, ""


def _layout(model: nn.Module, module: str | None) -> list[tuple[str, int]]:
    """Every layer's ``(module name, call index)`` in order."""
    if module is not None:
        paths, _ = _explicit(model, module)
        return [(p, 0) for p in paths]
    mt = model_type(model)
    if mt == "albert":
        return albert_layout(model)
    if mt in ARCHITECTURES:
        blocks_path, inner = ARCHITECTURES[mt]
        found = find_blocks(model, blocks_path)
        if found is not None:
            name, blocks = found
            return [(_join(name, str(i), inner), 0) for i in range(len(blocks))]
    if not any(True for _ in model.named_modules()):  # pragma: no cover - nn.Module has itself
        raise LookupError(f"{type(model).__name__} has no submodules")
    block_names, inner = _structural(model)
    return [(_join(b, inner), 0) for b in block_names]


def albert_layout(model: nn.Module, inner: str | None = None) -> list[tuple[str, int]]:
    """ALBERT shares its layers' modules: layer ``i`` is a later *call* of a group's module.

    ``inner`` is the module's path inside a group (default: the MLP output projection);
    returns every layer's ``(module name, call index)``."""
    inner = ARCHITECTURES["albert"][1] if inner is None else inner
    config = getattr(model, "config", None)
    n = int(getattr(config, "num_hidden_layers", 0))
    groups = int(getattr(config, "num_hidden_groups", 1))
    per_group = int(getattr(config, "inner_group_num", 1))
    found = find_blocks(model, ARCHITECTURES["albert"][0])
    if found is None or per_group != 1 or n <= 0:
        raise LookupError(
            f"cannot find the MLP of {type(model).__name__} (inner_group_num={per_group}); pass "
            'module="encoder.albert_layer_groups.0.albert_layers.0.ffn_output" by hand'
        )
    name = found[0]
    calls: dict[int, int] = {}
    layout = []
    for i in range(n):
        group = int(i / (n / groups))  # the grouping rule of AlbertTransformer.forward
        layout.append((_join(name, str(group), inner), calls.get(group, 0)))
        calls[group] = calls.get(group, 0) + 1
    return layout


def n_layers(model: nn.Module, *, module: str | None = None) -> int:
    """Number of MLP layers the probe can reach in ``model``.

    Examples:
        >>> from transformers import BertConfig, BertModel
        >>> n_layers(BertModel(BertConfig(hidden_size=32, num_hidden_layers=3,
        ...     num_attention_heads=2, intermediate_size=64, vocab_size=50)))
        3
    """
    return len(_layout(model, module))


def locate_mlp(
    model: nn.Module, layer: LayerSpec = 0, *, module: str | None = None
) -> list[MLPSite]:
    """The MLP output projection(s) whose input holds the neurons of the requested layer(s).

    Args:
        model: a Hugging Face model (any head) or, with ``module``, any ``nn.Module``.
        layer: an index (negative counts from the end), a list of indices, or ``"all"``.
        module: the dotted path of the output projection, with ``{layer}`` where the layer
            index goes (``"encoder.layer.{layer}.output.dense"``); without ``{layer}`` it names
            a single module and ``layer`` must be 0. Overrides the architecture table.

    Returns:
        One :class:`MLPSite` per requested layer, in the order asked.

    Raises:
        LookupError: the architecture is unknown and its structure ambiguous.
        ValueError: a layer index is out of range.

    Examples:
        >>> from transformers import GPT2Config, GPT2Model
        >>> gpt2 = GPT2Model(GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=50))
        >>> [s.module_name for s in locate_mlp(gpt2, "all")]
        ['h.0.mlp.c_proj', 'h.1.mlp.c_proj']
    """
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model must be a torch.nn.Module (e.g. a transformers model), "
            f"got {type(model).__name__}"
        )
    if module is not None and not isinstance(module, str):
        raise TypeError(
            f'module must be a dotted path string such as "encoder.layer.{{layer}}.output.dense", '
            f"got {type(module).__name__}"
        )
    layout = _layout(model, module)
    cls = type(model).__name__
    if module is not None and "{layer}" not in module:
        if layer not in (0, -1, "all", [0], [-1]):
            raise ValueError(
                f"module={module!r} names a single module, so layer must be 0, got {layer!r}; "
                "put {layer} in the path to choose among layers"
            )
        indices = [0]
    else:
        indices = normalise_layers(layer, len(layout), cls)
    modules = dict(model.named_modules())
    return [
        MLPSite(
            layer=i, module_name=layout[i][0], module=modules[layout[i][0]], call_index=layout[i][1]
        )
        for i in indices
    ]
