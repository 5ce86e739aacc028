"""sparsify checkpoints (EleutherAI; ``cfg.json`` + ``sae.safetensors``), read and written.

A sparsify ``SparseCoder`` with ``activation="topk"`` encodes ``top-k(ReLU((x - b_dec)
encoder.weightᵀ + encoder.bias))`` and decodes ``z W_dec + b_dec``: this library's ``"topk"``
SAE with ``W_enc = encoder.weightᵀ``. Its folder's name is the hook point it was trained on
(a module path such as ``layers.3.mlp`` or ``h.3``): the output of a block's MLP is
``mlp_out``, the output of a block ``resid_post``, and the SAE gets that layer and site.

A transcoder (``transcode=True``: no ``b_dec`` subtracted before encoding, output as wide as
the input) with or without a skip connection (``W_skip [d_in, d_in]``, ``ŷ += x W_skipᵀ``) is
a TopK :class:`~superposition.Transcoder` (:func:`load_sparsify_transcoder`,
:func:`save_sparsify_transcoder`).

An SAE with a skip connection (``skip_connection=true``, ``transcode=false``) encodes ``x -
b_dec`` and outputs ``x̂ + x W_skipᵀ``: a skip transcoder with ``d_out = d_in``, ``b_dec W_enc``
folded into ``b_enc``; it loads with :meth:`superposition.Transcoder.load`. Not read:
``activation="groupmax"`` (a clear error).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

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
    from superposition.sae.transcoder import Transcoder

__all__ = [
    "hook_of_folder",
    "load_sparsify",
    "load_sparsify_transcoder",
    "save_sparsify",
    "save_sparsify_transcoder",
]

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


def _read(folder: Path, transcoder: bool) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(cfg, tensors)`` of a sparsify folder of TopK coders, checked: an SAE, or with
    ``transcoder`` a transcoder (each refused where the other is asked for)."""
    cfg_path = folder / "cfg.json"
    cfg = read_config(cfg_path)
    if cfg.get("activation", "topk") != "topk":
        raise ValueError(
            f"{str(cfg_path)!r} has activation={cfg.get('activation')!r}; this library reads "
            "sparsify's TopK coders only"
        )
    # A skip connection makes any coder a skip transcoder (its output x̂ + x W_skipᵀ).
    maps = bool(cfg.get("transcode") or cfg.get("skip_connection"))
    if maps != transcoder:
        what = (
            "a transcoder (transcode=true)"
            if cfg.get("transcode")
            else "an SAE with a skip connection, a skip transcoder with d_out = d_in,"
            if cfg.get("skip_connection")
            else "an SAE"
        )
        use = "superposition.Transcoder.load" if maps else "SparseAutoencoder.load"
        raise ValueError(f"{str(cfg_path)!r} holds {what}; load it with {use}")
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
    shapes = {
        "encoder.weight": (d_sae, d_in),
        "encoder.bias": (d_sae,),
        "W_dec": (d_sae, d_in),
        "b_dec": (d_in,),
    }
    if cfg.get("skip_connection"):
        shapes["W_skip"] = (d_in, d_in)
    check_shapes(tensors, shapes, weights_path)
    if k > d_sae:
        raise ValueError(f"{str(cfg_path)!r} has k={k} above its {d_sae} latents")
    wide = any(t.dtype == torch.float64 for t in tensors.values())
    return cfg, {n: v.to(torch.float64 if wide else torch.float32) for n, v in tensors.items()}


def load_sparsify(folder: Path, device: torch.device | None) -> SparseAutoencoder:
    """The TopK SAE in a sparsify folder (module docstring)."""
    cfg, t = _read(folder, transcoder=False)
    k = int(cfg["k"])
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
    if sae.row_norm != "none":
        raise ValueError(
            f"sparsify has no per-row normalisation; this SAE has row_norm={sae.row_norm!r} "
            "(save it with format='saelens' instead)"
        )
    return _write(sae, folder)


def _write(model: SparseAutoencoder, folder: Path) -> Path:
    """``model`` (a TopK SAE or transcoder, scales folded in) as a sparsify folder."""
    w = plain_weights(model)
    tensors = {
        "encoder.weight": w["W_enc"].T.contiguous(),
        "encoder.bias": w["b_enc"],
        "W_dec": w["W_dec"],
        "b_dec": w["b_dec"],
        **({"W_skip": w["W_skip"]} if "W_skip" in w else {}),
    }
    # Unit decoder rows are what sparsify keeps while training (normalize_decoder); a loaded
    # SAE whose rows are not unit is written as it is, and says so.
    norms = w["W_dec"].norm(dim=1)
    unit = bool(torch.allclose(norms, torch.ones_like(norms), atol=1e-4))
    cfg: dict[str, Any] = {
        "activation": "topk",
        "expansion_factor": max(1, model.d_sae // model.d_in),
        "normalize_decoder": unit,
        "num_latents": model.d_sae,
        "k": model.k,
        "multi_topk": False,
        "skip_connection": "W_skip" in w,
        "transcode": model.transcoder,
        "d_in": model.d_in,
    }
    return write_folder(folder, WEIGHTS, tensors, cfg)


def load_sparsify_transcoder(folder: Path, device: torch.device | None) -> Transcoder:
    """The TopK transcoder in a sparsify folder with ``transcode=true``, or the skip
    transcoder (``d_out = d_in``, ``b_dec W_enc`` folded into ``b_enc``) that an SAE with
    ``skip_connection=true`` is (module docstring); its layer from the folder's name."""

    cfg, t = _read(folder, transcoder=True)
    weights = {
        "W_enc": t["encoder.weight"].T,
        "b_enc": t["encoder.bias"],
        "W_dec": t["W_dec"],
        "b_dec": t["b_dec"],
    }
    if "W_skip" in t:
        weights["W_skip"] = t["W_skip"]
    if not cfg.get("transcode"):  # an SAE subtracts b_dec before encoding: fold it in
        weights["b_enc"] = weights["b_enc"] - t["encoder.weight"] @ t["b_dec"]
    layer = hook_of_folder(folder.resolve().name)[0]
    tc = build_sae(
        "topk", {"k": int(cfg["k"])}, weights, layer=layer, device=device, transcoder=True
    )
    return cast("Transcoder", tc)


def save_sparsify_transcoder(tc: Transcoder, folder: Path) -> Path:
    """Write a TopK transcoder whose output is as wide as its input as a sparsify folder
    (``transcode=true``) that ``SparseCoder.load_from_disk`` opens; both scales are folded
    into the weights."""
    if tc.kind != "topk" or tc.d_out != tc.d_in:
        raise ValueError(
            f"sparsify's transcoders are TopK with an output as wide as the input; this one has "
            f"kind={tc.kind!r}, d_in={tc.d_in}, d_out={tc.d_out} (save it with format='native' "
            "or, for ReLU and JumpReLU, 'saelens')"
        )
    return _write(tc, folder)
