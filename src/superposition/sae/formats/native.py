"""This library's own format: ``path.safetensors`` (the weights, in the normalised space, with
``input_scale`` and ``threshold``; a transcoder's ``output_scale`` and ``W_skip`` too) and
``path.json`` (the constructor's config, whether it was fitted, and where it reads)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, cast

import torch

from superposition._io import load_saved, save_with_config
from superposition.sae.rownorm import check_row_norm

if TYPE_CHECKING:
    from pathlib import Path

    from superposition.sae.model import SparseAutoencoder
    from superposition.sae.transcoder import Transcoder

__all__ = ["FORMAT_VERSION", "load_native", "save_native"]

FORMAT_VERSION = 1


def save_native(sae: SparseAutoencoder, path: str | os.PathLike[str]) -> Path:
    """Write ``sae`` to ``path.safetensors`` and ``path.json``; returns the weights' path."""
    tensors = {
        "W_enc": sae.W_enc,
        "W_dec": sae.W_dec,
        "b_enc": sae.b_enc,
        "b_dec": sae.b_dec,
        "input_scale": sae.scale,
        "threshold": sae.threshold,
    }
    if sae.transcoder:
        tensors["output_scale"] = cast("Transcoder", sae).output_scale
    views = sae._views(sae.params)
    for name in sae._extra_slots():
        tensors[name] = views[name]
    meta: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "config": sae.config(),
        "fitted": sae.fitted,
    }
    if sae.layer is not None:
        meta["reads"] = {"layer": sae.layer, "site": sae.site}
    if sae.row_norm != "none":
        meta["row_norm"] = sae.row_norm
    return save_with_config(path, tensors, meta)


def load_native(
    cls: type[SparseAutoencoder], path: str | os.PathLike[str], device: torch.device | None
) -> SparseAutoencoder:
    """The SAE written by :func:`save_native`, onto ``device``, in its saved dtype."""
    tensors, meta = load_saved(path, cls.__name__, FORMAT_VERSION)
    saved = "Transcoder" if "d_out" in meta["config"] else "SparseAutoencoder"
    if cls.transcoder != (saved == "Transcoder"):
        raise ValueError(
            f"{str(path)!r} holds a {saved}, not a {cls.__name__}; load it with {saved}.load"
        )
    # Built in the saved weights' dtype, so that a float64 SAE comes back float64.
    model = cls(**meta["config"], device=device, dtype=tensors["W_enc"].dtype)
    with torch.no_grad():
        model.W_enc.copy_(tensors["W_enc"])
        model.W_dec.copy_(tensors["W_dec"])
        model.b_enc.copy_(tensors["b_enc"])
        model.b_dec.copy_(tensors["b_dec"])
        model.scale.copy_(tensors["input_scale"])
        model.threshold.copy_(tensors["threshold"])
        if model.transcoder:
            cast("Transcoder", model).output_scale.copy_(tensors["output_scale"])
        views = model._views(model.params)
        for name in model._extra_slots():
            views[name].copy_(tensors[name])
    model.fitted = bool(meta.get("fitted", False))
    model.row_norm = check_row_norm(meta.get("row_norm", "none"))
    reads = meta.get("reads")
    if isinstance(reads, dict):
        model.layer, model.site = reads.get("layer"), reads.get("site")
    return model
