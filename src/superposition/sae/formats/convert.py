"""The conversions every format shares: plain weights into a :class:`SparseAutoencoder` and
back, checked against the config they came with, and the JSON and safetensors files of a
folder written one at a time, atomically, the config last."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import Tensor

from superposition._io import atomic_path, atomic_write

if TYPE_CHECKING:
    from superposition.probe.sites import Site
    from superposition.sae.model import SparseAutoencoder
    from superposition.sae.transcoder import Transcoder

__all__ = ["Weights", "build_sae", "plain_weights", "read_config", "read_tensors", "write_folder"]

Weights = dict[str, Tensor]


def read_config(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``, or a ValueError naming the file."""
    try:
        cfg = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read {str(path)!r}: {err}; the folder is damaged") from err
    if not isinstance(cfg, dict):
        raise ValueError(f"{str(path)!r} must hold a JSON object, got {type(cfg).__name__}")
    return cfg


def read_tensors(path: Path) -> Weights:
    """The tensors of a safetensors file, or a ValueError naming it."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own error type for damaged files
        raise ValueError(
            f"cannot read the weights in {str(path)!r}: {err}; the file is damaged or not "
            "a safetensors file"
        ) from err


def config_int(cfg: Mapping[str, Any], key: str, path: Path) -> int:
    """``cfg[key]`` as a positive int, or a ValueError naming the file."""
    value = cfg.get(key)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{str(path)!r} must give {key} as a positive integer, got {value!r}")
    return value


def check_shapes(
    tensors: Mapping[str, Tensor], shapes: Mapping[str, tuple[int, ...]], path: Path
) -> None:
    """Each named tensor present with its expected shape, or one ValueError saying which is
    missing or differs from what the config says."""
    for name, shape in shapes.items():
        if name not in tensors:
            raise ValueError(
                f"{str(path)!r} has no tensor {name!r} (it holds {sorted(tensors)}); the "
                "file is not a complete SAE"
            )
        got = tuple(tensors[name].shape)
        if got != shape:
            raise ValueError(
                f"{name} in {str(path)!r} has shape {got}, but the config says {shape}; the "
                "config and the weights disagree"
            )


def build_sae(
    kind: str,
    settings: Mapping[str, Any],
    weights: Mapping[str, Tensor],
    *,
    input_scale: float = 1.0,
    threshold: float = 0.0,
    layer: int | None = None,
    site: Site | None = None,
    device: torch.device | None = None,
    transcoder: bool = False,
) -> SparseAutoencoder:
    """A :class:`SparseAutoencoder` of ``kind`` holding ``weights`` (``W_enc [d_in, d_sae]``,
    ``b_enc``, ``W_dec [d_sae, d_in]``, ``b_dec``, and for JumpReLU ``log_threshold``), all in
    its normalised space, with ``input_scale``; with ``transcoder`` a
    :class:`~superposition.Transcoder` (``W_dec [d_sae, d_out]``, and a skip transcoder when
    ``weights`` hold ``W_skip``). The parameters are float64 if any weight is, else float32
    (bfloat16 and float16 weights are widened exactly)."""
    from superposition.sae.model import SparseAutoencoder
    from superposition.sae.transcoder import Transcoder

    W_enc = weights["W_enc"]
    d_in, d_sae = W_enc.shape
    wide = any(t.dtype == torch.float64 for t in weights.values())
    dtype = torch.float64 if wide else torch.float32
    sae = (
        Transcoder(
            d_in,
            weights["W_dec"].shape[1],
            d_sae,
            skip="W_skip" in weights,
            kind=kind,  # type: ignore[arg-type]
            dtype=dtype,
            **settings,
        )
        if transcoder
        else SparseAutoencoder(d_in, d_sae, kind=kind, dtype=dtype, **settings)  # type: ignore[arg-type]
    )
    with torch.no_grad():
        views = sae._views(sae.params)
        views["encT"].copy_(W_enc.T)
        for name in ("W_dec", "b_enc", "b_dec", *sae._extra_slots()):
            views[name].copy_(weights[name])
        sae.scale.fill_(input_scale)
        sae.threshold.fill_(threshold)
    sae.fitted = True
    sae.layer, sae.site = layer, site
    return sae.to(device) if device is not None else sae


def plain_weights(sae: SparseAutoencoder) -> Weights:
    """``W_enc [d_in, d_sae]``, ``b_enc``, ``W_dec``, ``b_dec`` (and a skip transcoder's
    ``W_skip``) that act on the user's units directly (the scales folded in), as CPU tensors
    in the SAE's dtype: ``pre = (x - b_dec) W_enc + b_enc`` (a transcoder's ``x W_enc +
    b_enc``) and ``x̂ = z W_dec + b_dec`` (``+ x W_skipᵀ``) give what the model gives."""
    s_in = float(sae.scale)
    s_out = float(cast("Transcoder", sae).output_scale) if sae.transcoder else s_in
    for name, s in (("input_scale", s_in), ("output_scale", s_out)):
        if not (math.isfinite(s) and s > 0):
            raise ValueError(f"the SAE's {name} must be a positive finite number, got {s}")
    with torch.no_grad():
        w = {
            "W_enc": (sae.W_enc * s_in).detach().cpu().contiguous(),
            "b_enc": sae.b_enc.detach().cpu().clone(),
            "W_dec": (sae.W_dec / s_out).detach().cpu().contiguous(),
            "b_dec": (sae.b_dec / s_out).detach().cpu().clone(),
        }
        if sae.skip:
            W_skip = cast("Transcoder", sae).W_skip
            w["W_skip"] = (W_skip * (s_in / s_out)).detach().cpu().contiguous()
        return w


def write_folder(
    folder: Path, weights_name: str, tensors: Mapping[str, Tensor], cfg: Mapping[str, Any]
) -> Path:
    """Write ``tensors`` to ``folder/weights_name`` and ``cfg`` to ``folder/cfg.json``, each
    atomically and the config last (a folder with a config is complete); returns the
    weights' path."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / weights_name
    with atomic_path(weights) as temp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(temp))
    atomic_write(folder / "cfg.json", json.dumps(cfg, indent=2) + "\n")
    return weights


def dtype_name(dtype: torch.dtype) -> str:
    """``"float32"`` for ``torch.float32``, as SAELens writes dtypes."""
    return str(dtype).removeprefix("torch.")


def check_dtype(tensors: Mapping[str, Tensor], path: Path) -> None:
    """Floating-point weights only (a ValueError naming the file otherwise); float16 and
    bfloat16 are widened to float32 on load, exactly."""
    for name, t in tensors.items():
        if not t.is_floating_point():
            raise ValueError(f"{name} in {str(path)!r} has dtype {t.dtype}, expected floats")
