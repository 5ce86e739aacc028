"""The places of a transformer block the field reads, for every architecture of the table.

A block has five places that interpretability tools read and edit:

============== ============================================ ===================================
site           what it is                                   TransformerLens names (aliases)
============== ============================================ ===================================
``neurons``    the MLP's hidden units: the input of its     ``mlp.hook_post``, ``hook_post``
               output projection (the default)
``mlp_in``     what the MLP reads (after its norm)          ``ln2.hook_normalized``
``mlp_out``    what the MLP writes, before the residual add ``hook_mlp_out``
``resid_pre``  the residual stream entering the block       ``hook_resid_pre``
``resid_post`` the residual stream leaving the block        ``hook_resid_post``
============== ============================================ ===================================

Each site of each layer is a :class:`SitePoint`: a module, whether its *input* or its *output*
is read, and which of its calls in one forward pass (ALBERT shares modules between layers).
``neurons`` come from :mod:`superposition.probe.locate`; :data:`MLP_PATHS` says, per
``model_type``, which modules take the MLP's input and give its output; the residual stream is
the block's own input and output. A block whose MLP writes through a norm of its own before the
residual add (Gemma 2's ``post_feedforward_layernorm``) has that norm's output as ``mlp_out``.

TransformerLens's ``hook_mlp_in`` is not an alias of ``mlp_in``: it is the residual stream
*before* the MLP's norm (``resid_mid``), a place this library does not read; asking for it is
an error that says so. Its ``ln2.hook_normalized`` is what the MLP reads when the norm's
weights are folded in (TransformerLens's default for pretrained models). TransformerLens and
nnsight models are read at the same sites (:mod:`superposition.probe.adapters`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from torch import nn

from superposition.probe.adapters import hook_point_sites, unwrap
from superposition.probe.locate import (
    ARCHITECTURES,
    LayerSpec,
    MLPSite,
    albert_layout,
    find_blocks,
    locate_mlp,
    model_type,
    normalise_layers,
    structural_blocks,
)

__all__ = [
    "MLP_PATHS",
    "SITES",
    "SITE_ALIASES",
    "Site",
    "SitePoint",
    "hook_name",
    "locate_sites",
    "parse_hook_name",
    "site_name",
]

Site = Literal["neurons", "mlp_in", "mlp_out", "resid_pre", "resid_post"]
"""One of the five places of a block (see the module's table)."""

SITES: tuple[Site, ...] = get_args(Site)

SITE_ALIASES: dict[str, Site] = {
    "mlp.hook_post": "neurons",
    "hook_post": "neurons",
    "ln2.hook_normalized": "mlp_in",
    "hook_mlp_out": "mlp_out",
    "hook_resid_pre": "resid_pre",
    "hook_resid_post": "resid_post",
}
"""TransformerLens hook names (within a block) -> the site they name."""

MLP_PATHS: dict[str, tuple[str, str]] = {
    **{
        mt: ("intermediate", "output.dense")
        for mt in ("bert", "roberta", "xlm-roberta", "camembert", "electra", "deberta-v2")
    },
    "deberta": ("intermediate", "output.dense"),
    "distilbert": ("ffn", "ffn"),
    "albert": ("albert_layers.0.ffn", "albert_layers.0.ffn_output"),
    **{
        mt: ("mlp", "mlp")
        for mt in (
            "gpt2",
            "gptj",
            "gpt_neox",
            "falcon",
            "phi",
            "llama",
            "mistral",
            "qwen2",
            "qwen3",
            "gemma",
            "phi3",
            "olmo",
        )
    },
    # Bloom's and MPT's MLP modules add the residual inside: read their own projections.
    "bloom": ("mlp.dense_h_to_4h", "mlp.dense_4h_to_h"),
    "mpt": ("ffn.up_proj", "ffn.down_proj"),
    "gemma2": ("mlp", "post_feedforward_layernorm"),
    "opt": ("fc1", "fc2"),
    "t5": ("layer.1.DenseReluDense", "layer.1.DenseReluDense"),
    "mt5": ("layer.1.DenseReluDense", "layer.1.DenseReluDense"),
}
"""``model_type`` -> (module whose *input* is ``mlp_in``, module whose *output* is ``mlp_out``),
as paths inside a block (the blocks are found as for :data:`ARCHITECTURES`)."""

_DIRECTION: dict[Site, Literal["input", "output"]] = {
    "neurons": "input",
    "mlp_in": "input",
    "mlp_out": "output",
    "resid_pre": "input",
    "resid_post": "output",
}


@dataclass(frozen=True)
class SitePoint:
    """Where one site of one layer is read: the ``call_index``-th call of ``module``.

    Attributes:
        layer: the layer index, counted from 0.
        site: which place of the block (:data:`Site`).
        module_name: dotted path of the hooked module inside the model.
        module: that module.
        direction: ``"input"`` (a forward pre-hook reads what the module receives) or
            ``"output"`` (a forward hook reads what it returns; the first element of a tuple).
        call_index: which of the module's calls within one forward pass is this layer's
            (0 except where one module serves several layers, as in ALBERT).
        shared: whether ``module`` serves several layers (its calls must then be counted).
    """

    layer: int
    site: Site
    module_name: str
    module: nn.Module
    direction: Literal["input", "output"]
    call_index: int = 0
    shared: bool = False


def site_name(site: str) -> Site:
    """The site a name means: one of :data:`SITES` or a TransformerLens alias.

    Raises:
        ValueError: an unknown name (the message lists the valid ones).

    Examples:
        >>> site_name("hook_resid_post"), site_name("mlp_out")
        ('resid_post', 'mlp_out')
    """
    if not isinstance(site, str):
        raise TypeError(f"site must be a string such as 'neurons' or 'mlp_out', got {site!r}")
    if site in SITES:
        return site
    if site in SITE_ALIASES:
        return SITE_ALIASES[site]
    if site.endswith("hook_mlp_in"):
        raise ValueError(
            f"site {site!r}: TransformerLens's hook_mlp_in is the residual stream before the "
            "MLP's norm, which this library does not read; what the MLP reads, after its "
            "norm, is 'mlp_in' (TransformerLens's 'ln2.hook_normalized')"
        )
    raise ValueError(
        f"site must be one of {list(SITES)} or a TransformerLens hook name "
        f"{sorted(SITE_ALIASES)}, got {site!r}"
    )


_HOOK_NAME = re.compile(r"^blocks\.(\d+)\.(.+)$")


def parse_hook_name(name: str) -> tuple[int, Site]:
    """``(layer, site)`` of a full TransformerLens hook name such as ``blocks.3.hook_mlp_out``
    (SAELens's ``hook_name``).

    Raises:
        ValueError: the name is not ``blocks.<layer>.<hook>`` with a hook this library reads.

    Examples:
        >>> parse_hook_name("blocks.3.hook_resid_pre"), parse_hook_name("blocks.0.mlp.hook_post")
        ((3, 'resid_pre'), (0, 'neurons'))
    """
    match = _HOOK_NAME.match(name) if isinstance(name, str) else None
    if match is None or match.group(2) not in SITE_ALIASES:
        raise ValueError(
            f"hook name must look like 'blocks.<layer>.<hook>' with <hook> one of "
            f"{sorted(SITE_ALIASES)}, got {name!r}"
        )
    return int(match.group(1)), SITE_ALIASES[match.group(2)]


_HOOK_OF: dict[Site, str] = {
    "neurons": "mlp.hook_post",
    "mlp_in": "ln2.hook_normalized",
    "mlp_out": "hook_mlp_out",
    "resid_pre": "hook_resid_pre",
    "resid_post": "hook_resid_post",
}


def hook_name(layer: int, site: str) -> str:
    """The TransformerLens hook name of a site of a layer (SAELens's ``hook_name``); the
    inverse of :func:`parse_hook_name`.

    Examples:
        >>> hook_name(3, "mlp_out"), hook_name(0, "neurons")
        ('blocks.3.hook_mlp_out', 'blocks.0.mlp.hook_post')
        >>> all(parse_hook_name(hook_name(2, s)) == (2, s) for s in SITES)
        True
    """
    return f"blocks.{layer}.{_HOOK_OF[site_name(site)]}"


def _sites(site: str | Sequence[str]) -> list[Site]:
    items = [site] if isinstance(site, str) else list(site)
    if not items:
        raise ValueError("site must name at least one site, got []; e.g. site='neurons'")
    out: list[Site] = []
    for item in items:
        s = site_name(item)
        if s in out:
            raise ValueError(f"site {item!r} is requested twice in site={site!r}")
        out.append(s)
    return out


def _template(module: Mapping[str, str], site: Site) -> str | None:
    for key, path in module.items():
        if site_name(key) == site:
            return path
    return None


def _explicit_points(
    model: nn.Module, layers: LayerSpec, sites: list[Site], module: Mapping[str, str]
) -> list[SitePoint]:
    """Sites named by hand: ``module={"mlp_out": "h.{layer}.mlp", ...}``."""
    for key, path in module.items():
        site_name(key)
        if not isinstance(path, str) or "{layer}" not in path:
            raise ValueError(
                f"module[{key!r}] must be a dotted path with {{layer}} where the index goes, "
                f"got {path!r}"
            )
    names = dict(model.named_modules())
    hook_dict = getattr(model, "hook_dict", None)  # TransformerLens: hook names and aliases
    if isinstance(hook_dict, Mapping):
        names = {**hook_dict, **names}
    count: int | None = None
    for s in sites:
        found = _template(module, s)
        if found is None:
            raise LookupError(
                f"site {s!r} is not in module={dict(module)!r}; add it, e.g. "
                f'module={{"{s}": "path.to.layers.{{layer}}.<module>"}}'
            )
        path = found
        n = 0
        while path.format(layer=n) in names:
            n += 1
        if n == 0:
            raise LookupError(
                f"module[{s!r}]={path!r} matches no submodule of {type(model).__name__} "
                f"(tried {path.format(layer=0)!r}); pass a path from model.named_modules()"
            )
        count = n if count is None else min(count, n)
    assert count is not None
    indices = normalise_layers(layers, count, type(model).__name__)
    out = []
    for layer in indices:
        for s in sites:
            name = str(_template(module, s)).format(layer=layer)
            out.append(SitePoint(layer, s, name, names[name], _DIRECTION[s]))
    return out


def _block_paths(model: nn.Module) -> list[tuple[str, int]]:
    """Every layer's block ``(name, call index)``: the module whose input and output are the
    residual stream."""
    mt = model_type(model)
    if mt == "albert":
        return albert_layout(model, "albert_layers.0")
    if mt in ARCHITECTURES:
        found = find_blocks(model, ARCHITECTURES[mt][0])
        if found is not None:
            name, blocks = found
            return [(f"{name}.{i}" if name else str(i), 0) for i in range(len(blocks))]
    return [(b, 0) for b in structural_blocks(model)]


def _mlp_paths(model: nn.Module, which: int) -> list[tuple[str, int]]:
    mt = model_type(model)
    if mt not in MLP_PATHS:
        site = ("mlp_in", "mlp_out")[which]
        raise LookupError(
            f"cannot find the {site} site of {type(model).__name__} (model_type={mt!r}): "
            f"its MLP modules are not in MLP_PATHS; pass "
            f'module={{"{site}": "path.to.layers.{{layer}}.<module>", ...}} naming the module '
            f"whose {'input' if which == 0 else 'output'} it is"
        )
    inner = MLP_PATHS[mt][which]
    if mt == "albert":
        return albert_layout(model, inner)
    found = find_blocks(model, ARCHITECTURES[mt][0])
    if found is None:
        raise LookupError(
            f"cannot find the blocks {ARCHITECTURES[mt][0]!r} of {type(model).__name__}; pass "
            "module={site: path} by hand"
        )
    name, blocks = found
    return [(f"{name}.{i}.{inner}" if name else f"{i}.{inner}", 0) for i in range(len(blocks))]


def locate_sites(
    model: nn.Module,
    layer: LayerSpec = 0,
    site: str | Sequence[str] = "neurons",
    *,
    module: str | Mapping[str, str] | None = None,
) -> list[SitePoint]:
    """Where each requested site of each requested layer is read, layer by layer.

    Args:
        model: a Hugging Face model (any head), a TransformerLens ``HookedTransformer`` or
            ``TransformerBridge``, an nnsight ``LanguageModel``
            (:mod:`superposition.probe.adapters`), or any ``nn.Module`` with ``module``.
        layer: an index (negative counts from the end), a list of indices, or ``"all"``.
        site: a site or TransformerLens alias, or a list of them (see the module's table).
        module: a string names the MLP output projection, as in
            :func:`~superposition.probe.locate_mlp` (then only ``site="neurons"``); a mapping
            names each site's module by hand, ``{"mlp_out": "h.{layer}.mlp", ...}`` (inputs
            of ``neurons``/``mlp_in``/``resid_pre`` modules, outputs of ``mlp_out``/
            ``resid_post`` modules).

    Returns:
        One :class:`SitePoint` per (layer, site), layers in the order asked, sites in the
        order asked within a layer.

    Raises:
        LookupError: a site's module cannot be found; the message says how to name it.
        ValueError: a bad layer index or site name.

    Examples:
        >>> from transformers import GPT2Config, GPT2Model
        >>> gpt2 = GPT2Model(GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=50))
        >>> [(p.module_name, p.direction) for p in locate_sites(gpt2, 1, ["mlp_in", "resid_post"])]
        [('h.1.mlp', 'input'), ('h.1', 'output')]
    """
    sites = _sites(site)
    model = unwrap(model)
    if module is None:
        module = hook_point_sites(model)
    if isinstance(module, Mapping):
        return _explicit_points(model, layer, sites, module)
    if module is not None and sites != ["neurons"]:
        raise ValueError(
            f"module={module!r} names the neurons' module only, but site={site!r}; pass "
            'module={"neurons": ..., "mlp_out": ...} naming each site\'s module'
        )
    layouts: dict[Site, list[tuple[str, int]]] = {}
    for s in sites:
        if s in ("resid_pre", "resid_post"):
            layouts[s] = _block_paths(model)
        elif s == "mlp_in":
            layouts[s] = _mlp_paths(model, 0)
        elif s == "mlp_out":
            layouts[s] = _mlp_paths(model, 1)
    neurons: dict[int, MLPSite] = {}
    if "neurons" in sites:
        neurons = {p.layer: p for p in locate_mlp(model, "all", module=module)}
        indices = [p.layer for p in locate_mlp(model, layer, module=module)]
    else:
        count = min(len(v) for v in layouts.values())
        indices = normalise_layers(layer, count, type(model).__name__)
    names = dict(model.named_modules())
    out: list[SitePoint] = []
    for i in indices:
        for s in sites:
            if s == "neurons":
                p = neurons[i]
                shared = sum(q.module is p.module for q in neurons.values()) > 1
                out.append(SitePoint(i, s, p.module_name, p.module, "input", p.call_index, shared))
                continue
            layout = layouts[s]
            name, call = layout[i]
            if name not in names:
                raise LookupError(
                    f"cannot find {name!r} ({s} of layer {i}) in {type(model).__name__}; pass "
                    f'module={{"{s}": "path.to.layers.{{layer}}.<module>"}}'
                )
            shared = sum(n == name for n, _ in layout) > 1
            out.append(SitePoint(i, s, name, names[name], _DIRECTION[s], call, shared))
    return out
