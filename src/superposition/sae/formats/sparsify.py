"""sparsify checkpoints (EleutherAI; ``cfg.json`` + ``sae.safetensors``), read and written.

A sparsify ``SparseCoder`` with ``activation="topk"`` encodes ``top-k(ReLU((x - b_dec)
encoder.weightᵀ + encoder.bias))`` and decodes ``z W_dec + b_dec``: this library's ``"topk"``
SAE with ``W_enc = encoder.weightᵀ``. Its folder's name is the hook point it was trained on
(a module path such as ``layers.3.mlp`` or ``h.3``): the output of a block's MLP is
``mlp_out``, the output of a block ``resid_post``, and the SAE gets that layer and site.

Not read (each a clear error): ``activation="groupmax"``, transcoders (``transcode=True``)
and skip connections (``W_skip``), which this library's SAE has no place for.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from superposition.sae.formats.convert import (
    build_sae,
    check_dtype,
    check_shapes,
    config_int,
    plain_weights,
    read_config,
    read_tensors,
    write_folder,
)

if TYPE_CHECKING:
    from superposition.probe.sites import Site
    from superposition.sae.model import SparseAutoencoder

__all__ = ["hook_of_folder", "load_sparsify", "save_sparsify"]

WEIGHTS = "sae.safetensors"
_HOOKPOINT = re.compile(r"(?:^|\.)(?:layers|h|layer|blocks)\.(\d+)(\.mlp)?$")


def hook_of_folder(name: str) -> tuple[int | None, Site | None]:
    """``(layer, site)`` of a sparsify hook point, ``(None, None)`` when it is neither a
    block's output nor its MLP's.

    Examples:
        >>> hook_of_folder("layers.3.mlp"), hook_of_folder("h.0"), hook_of_folder("embed")
        ((3, 'mlp_out'), (0, 'resid_post'), (None, None))
    """
    match = _HOOKPOINT.search(name)
    if match is None:
        return None, None
    return int(match.group(1)), ("mlp_out" if match.group(2) else "resid_post")


def load_sparsify(folder: Path, device: torch.device | None) -> SparseAutoencoder:
    """The TopK SAE in a sparsify folder (module docstring)."""
    cfg_path = folder / "cfg.json"
    cfg = read_config(cfg_path)
    if cfg.get("activation", "topk") != "topk":
        raise ValueError(
            f"{str(cfg_path)!r} has activation={cfg.get('activation')!r}; this library reads "
            "sparsify's TopK coders only"
        )
    if cfg.get("transcode") or cfg.get("skip_connection"):
        raise ValueError(
            f"{str(cfg_path)!r} is a sparsify transcoder or has a skip connection "
            f"(transcode={cfg.get('transcode')}, skip_connection={cfg.get('skip_connection')}); "
            "this library's SAE reconstructs its own input and has no skip path"
        )
    d_in = config_int(cfg, "d_in", cfg_path)
    k = config_int(cfg, "k", cfg_path)
    weights_path = folder / WEIGHTS
    tensors = read_tensors(weights_path)
    check_dtype(tensors, weights_path)
    if "encoder.weight" not in tensors:
        check_shapes(tensors, {"encoder.weight": (0, d_in)}, weights_path)
    d_sae = tensors["encoder.weight"].shape[0]
    latents = cfg.get("num_latents") or d_in * cfg.get("expansion_factor", 32)
    if d_sae != latents:
        raise ValueError(
            f"encoder.weight in {str(weights_path)!r} has {d_sae} latents, but the config says "
            f"{latents}; the config and the weights disagree"
        )
    check_shapes(
        tensors,
        {
            "encoder.weight": (d_sae, d_in),
            "encoder.bias": (d_sae,),
            "W_dec": (d_sae, d_in),
            "b_dec": (d_in,),
        },
        weights_path,
    )
    if k > d_sae:
        raise ValueError(f"{str(cfg_path)!r} has k={k} above its {d_sae} latents")
    wide = any(t.dtype == torch.float64 for t in tensors.values())
    t = {n: v.to(torch.float64 if wide else torch.float32) for n, v in tensors.items()}
    weights = {
        "W_enc": t["encoder.weight"].T,
        "b_enc": t["encoder.bias"],
        "W_dec": t["W_dec"],
        "b_dec": t["b_dec"],
    }
    layer, site = hook_of_folder(folder.resolve().name)
    return build_sae("topk", {"k": k}, weights, layer=layer, site=site, device=device)


def save_sparsify(sae: SparseAutoencoder, folder: Path) -> Path:
    """Write a ``"topk"`` SAE as a sparsify folder that ``SparseCoder.load_from_disk`` opens."""
    if sae.kind != "topk" or sae.k is None:
        raise ValueError(
            f"sparsify holds TopK coders only; this SAE has kind={sae.kind!r} (save it with "
            "format='saelens' instead)"
        )
    w = plain_weights(sae)
    tensors = {
        "encoder.weight": w["W_enc"].T.contiguous(),
        "encoder.bias": w["b_enc"],
        "W_dec": w["W_dec"],
        "b_dec": w["b_dec"],
    }
    # Unit decoder rows are what sparsify keeps while training (normalize_decoder); a loaded
    # SAE whose rows are not unit is written as it is, and says so.
    norms = w["W_dec"].norm(dim=1)
    unit = bool(torch.allclose(norms, torch.ones_like(norms), atol=1e-4))
    cfg: dict[str, Any] = {
        "activation": "topk",
        "expansion_factor": max(1, sae.d_sae // sae.d_in),
        "normalize_decoder": unit,
        "num_latents": sae.d_sae,
        "k": sae.k,
        "multi_topk": False,
        "skip_connection": False,
        "transcode": False,
        "d_in": sae.d_in,
    }
    return write_folder(folder, WEIGHTS, tensors, cfg)
