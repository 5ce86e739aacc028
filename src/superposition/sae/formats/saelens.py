"""SAELens folders (``cfg.json`` + ``sae_weights.safetensors``), read and written.

Read: the inference architectures ``standard`` (a ``"relu"`` SAE here), ``topk`` and
``jumprelu``, and the training folders of ``batchtopk`` and ``matryoshka_batchtopk`` (this
library's ``"batchtopk"`` and ``"matryoshka"``: latents above one learned threshold at
inference, and the same training loss if fitted further). SAELens's conventions are honoured:

* ``W_enc [d_in, d_sae]``, ``W_dec [d_sae, d_in]`` as stored (decoder rows need not be unit);
* ``apply_b_dec_to_input=False``: ``b_dec`` is not subtracted before encoding, so ``b_dec
  W_enc`` moves into ``b_enc``;
* ``rescale_acts_by_decoder_norm=True``: the decoder norms are folded into the encoder, as
  SAELens's own inference export does; the latents stay the same;
* ``threshold`` (JumpReLU) becomes ``log_threshold`` (a threshold at or below 0 lets every
  positive pre-activation through, in both libraries); ``topk_threshold`` (BatchTopK) the
  SAE's ``threshold``;
* ``normalize_activations``: ``"none"``; ``"expected_average_only_in"`` with the
  ``norm_scaling_factor`` of the release (in the config, or passed by
  :meth:`~superposition.SparseAutoencoder.from_pretrained`) becomes ``input_scale``, and
  without one, like ``"covariance_whitening"``, acts as SAELens's own ``load_from_disk``
  does: not at all (a warning says so); ``"layer_norm"`` and ``"constant_norm_rescale"``
  normalise each row by its own statistics before encoding and undo it after decoding: the
  SAE's :attr:`~superposition.SparseAutoencoder.row_norm` (:mod:`superposition.sae.rownorm`;
  ``decode`` then needs the input, ``decode(z, x)``);
* ``metadata.hook_name`` (or the older top-level ``hook_name`` / ``hook_point``) such as
  ``blocks.3.hook_mlp_out`` gives :attr:`layer` and :attr:`site`.

Written: ``"topk"`` as ``topk``, ``"relu"`` as ``standard``, ``"jumprelu"``,
``"batchtopk"`` and ``"matryoshka"`` as ``jumprelu`` (SAELens saves its BatchTopK SAEs for
inference that way),
``input_scale`` folded in, ``apply_b_dec_to_input=True``, ``normalize_activations`` the
SAE's ``row_norm`` (``"none"`` for every SAE trained here);
this library's own config rides along in ``metadata.superposition`` so that loading the
folder back gives the same kind and settings.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from superposition.sae.formats.convert import (
    Weights,
    build_sae,
    check_dtype,
    check_shapes,
    config_int,
    dtype_name,
    plain_weights,
    read_config,
    read_tensors,
    write_folder,
)
from superposition.sae.formats.saelens_transcoder import TRANSCODER_ARCHITECTURES

if TYPE_CHECKING:
    from superposition.probe.sites import Site
    from superposition.sae.model import SparseAutoencoder

__all__ = ["ARCHITECTURES", "NORMALIZATIONS", "load_saelens", "save_saelens"]

WEIGHTS = "sae_weights.safetensors"
ARCHITECTURES = ("standard", "topk", "jumprelu", "batchtopk", "matryoshka_batchtopk")
NORMALIZATIONS = (
    "none",
    "expected_average_only_in",
    "covariance_whitening",
    "layer_norm",
    "constant_norm_rescale",
)
_PER_ROW = ("layer_norm", "constant_norm_rescale")
SAELENS_LAYOUT = "6.0.0"
"""The SAELens version whose folder layout :func:`save_saelens` writes (6.x's)."""


def load_saelens(
    folder: Path, device: torch.device | None, *, norm_scaling_factor: float | None = None
) -> SparseAutoencoder:
    """The SAE in an SAELens folder (module docstring for the conventions)."""
    cfg_path = folder / "cfg.json"
    cfg = read_config(cfg_path)
    raw_meta = cfg.get("metadata")
    meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
    arch = cfg.get("architecture", "standard")
    if cfg.get("activation_fn", cfg.get("activation_fn_str")) == "topk" and arch == "standard":
        arch = "topk"  # SAELens before 6.0 wrote TopK SAEs as standard + activation_fn
        cfg.setdefault("k", (cfg.get("activation_fn_kwargs") or {}).get("k"))
    if arch in TRANSCODER_ARCHITECTURES:
        raise ValueError(
            f"{str(cfg_path)!r} holds an SAELens {arch}, which maps one site to another; "
            "load it with superposition.Transcoder.load"
        )
    if arch not in ARCHITECTURES:
        raise ValueError(
            f"{str(cfg_path)!r} has architecture {arch!r}; this library reads {ARCHITECTURES}"
        )
    norm = cfg.get("normalize_activations", "none")
    if isinstance(norm, bool):  # SAELens before 6.0
        norm = "expected_average_only_in" if norm else "none"
    if norm not in NORMALIZATIONS:
        raise ValueError(
            f"{str(cfg_path)!r} has normalize_activations {norm!r}; SAELens writes one of "
            f"{NORMALIZATIONS}"
        )
    reshape = cfg.get("reshape_activations", "none")
    if reshape not in (None, "none"):
        raise ValueError(
            f"{str(cfg_path)!r} has reshape_activations={reshape!r} (attention heads' hook_z); "
            "this library reads the sites of the MLP and the residual stream only"
        )
    d_in, d_sae = config_int(cfg, "d_in", cfg_path), config_int(cfg, "d_sae", cfg_path)

    weights_path = folder / WEIGHTS
    tensors = read_tensors(weights_path)
    check_dtype(tensors, weights_path)
    shapes: dict[str, tuple[int, ...]] = {
        "W_enc": (d_in, d_sae),
        "W_dec": (d_sae, d_in),
        "b_enc": (d_sae,),
        "b_dec": (d_in,),
    }
    if arch == "jumprelu":
        shapes["threshold"] = (d_sae,)
    if arch in ("batchtopk", "matryoshka_batchtopk"):
        shapes["topk_threshold"] = ()
    check_shapes(tensors, shapes, weights_path)

    wide = torch.float64 if any(t.dtype == torch.float64 for t in tensors.values()) else None
    t = {name: tensors[name].to(wide or torch.float32) for name in shapes}
    w: Weights = {name: t[name] for name in ("W_enc", "W_dec", "b_enc", "b_dec")}
    rescale = bool(cfg.get("rescale_acts_by_decoder_norm", False)) and arch != "standard"
    if rescale and arch != "jumprelu":
        norms = w["W_dec"].norm(dim=1)
        w["W_enc"] = w["W_enc"] * norms
        w["b_enc"] = w["b_enc"] * norms
        w["W_dec"] = w["W_dec"] / norms[:, None]
    if not cfg.get("apply_b_dec_to_input", True):
        w["b_enc"] = w["b_enc"] + w["b_dec"] @ w["W_enc"]

    # A norm scaling factor s means SAELens's SAE sees x·s and returns x̂/s: exactly this
    # library's input_scale, with the weights as stored.
    scale = _input_scale(cfg, norm, norm_scaling_factor, cfg_path)
    kind, settings, threshold = _kind(arch, cfg, t, w, cfg_path)
    ours = meta.get("superposition")
    batch = isinstance(ours, dict) and ours.get("kind") in ("batchtopk", "matryoshka")
    if batch and arch == "jumprelu":
        assert isinstance(ours, dict)
        th = t["threshold"]
        if bool((th == th[0]).all()):  # written from a BatchTopK SAE of this library
            kind, settings = str(ours["kind"]), {"k": ours.get("k")}
            threshold = float(th[0])
            w.pop("log_threshold", None)
    if isinstance(ours, dict) and ours.get("kind") == kind:
        settings.update({k: v for k, v in ours.items() if k in _settings_of(kind)})
    layer, site = _hook(cfg, meta, cfg_path)
    sae = build_sae(
        kind,
        settings,
        w,
        input_scale=scale,
        threshold=threshold,
        layer=layer,
        site=site,
        device=device,
    )
    if isinstance(ours, dict) and isinstance(ours.get("seed"), int):
        sae.seed = ours["seed"]
    if norm in _PER_ROW:  # each row by its own statistics, undone after decoding
        sae.row_norm = norm
    return sae


def _settings_of(kind: str) -> tuple[str, ...]:
    from superposition.sae.kinds import kind_class

    return kind_class(kind).hyperparameters()


def _input_scale(cfg: dict[str, Any], norm: str, factor: float | None, cfg_path: Path) -> float:
    if norm == "expected_average_only_in":
        factor = factor if factor is not None else cfg.get("norm_scaling_factor")
        if factor is None:
            warnings.warn(
                f"{str(cfg_path)!r} says its activations were scaled to an expected norm "
                "(normalize_activations='expected_average_only_in') but gives no "
                "norm_scaling_factor; loaded as SAELens's load_from_disk loads it, unscaled. "
                "Pass the release's factor (SparseAutoencoder.from_pretrained does) if you "
                "have it",
                stacklevel=4,
            )
            return 1.0
        if not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor > 0):
            raise ValueError(f"norm_scaling_factor must be a positive number, got {factor!r}")
        return float(factor)
    if norm == "covariance_whitening":
        warnings.warn(
            f"{str(cfg_path)!r} was trained on whitened activations and saved before SAELens "
            "folded the whitening into its weights; loaded as SAELens's load_from_disk loads "
            "it, without the whitening",
            stacklevel=4,
        )
    return 1.0


def _kind(
    arch: str,
    cfg: dict[str, Any],
    t: Weights,
    w: Weights,
    cfg_path: Path,
) -> tuple[str, dict[str, Any], float]:
    """``(kind, settings, threshold)`` of an architecture; JumpReLU's ``log_threshold``
    goes into ``w``."""
    if arch == "standard":
        l1 = cfg.get("l1_coefficient")
        return "relu", ({"l1": float(l1)} if isinstance(l1, (int, float)) else {}), 0.0
    if arch == "jumprelu":
        # SAELens: relu(pre) · (pre > θ); a θ at or below 0 acts as 0, whose log is -inf.
        w["log_threshold"] = t["threshold"].clamp_min(0.0).log()
        return "jumprelu", {}, 0.0
    k = config_int(cfg, "k", cfg_path)
    if arch == "topk":
        return "topk", {"k": k}, 0.0
    if arch == "matryoshka_batchtopk":
        widths = cfg.get("matryoshka_widths")
        return "matryoshka", {"k": k, "matryoshka_widths": widths}, float(t["topk_threshold"])
    return "batchtopk", {"k": k}, float(t["topk_threshold"])


def _hook(
    cfg: dict[str, Any], meta: dict[str, Any], cfg_path: Path
) -> tuple[int | None, Site | None]:
    from superposition.probe.sites import parse_hook_name

    name = meta.get("hook_name") or cfg.get("hook_name") or cfg.get("hook_point")
    if not isinstance(name, str):
        return None, None
    try:
        return parse_hook_name(name)
    except ValueError:
        warnings.warn(
            f"{str(cfg_path)!r} reads {name!r}, which is not a site of this library; the "
            "SAE loads without a layer and site",
            stacklevel=4,
        )
        return None, None


def save_saelens(sae: SparseAutoencoder, folder: Path) -> Path:
    """Write ``sae`` as an SAELens inference folder (module docstring)."""
    w = plain_weights(sae)
    arch = {
        "topk": "topk",
        "relu": "standard",
        "jumprelu": "jumprelu",
        "batchtopk": "jumprelu",
        "matryoshka": "jumprelu",
    }
    if sae.kind not in arch:
        raise ValueError(f"SAELens has no architecture for kind={sae.kind!r}")
    tensors = dict(w)
    # The pre-activations are the same in both parameterisations, and so are thresholds.
    if sae.kind == "jumprelu":
        tensors["threshold"] = sae.log_threshold.detach().exp().cpu()
    elif sae.kind in ("batchtopk", "matryoshka"):
        tensors["threshold"] = torch.full_like(w["b_enc"], max(float(sae.threshold), 0.0))
    # SAELens reads a config without sae_lens_version >= 6 as its older layout.
    meta: dict[str, Any] = {"sae_lens_version": SAELENS_LAYOUT, "superposition": sae.config()}
    if sae.layer is not None and sae.site is not None:
        from superposition.probe.sites import hook_name

        meta["hook_name"] = hook_name(sae.layer, sae.site)
    cfg: dict[str, Any] = {
        "architecture": arch[sae.kind],
        "d_in": sae.d_in,
        "d_sae": sae.d_sae,
        "dtype": dtype_name(sae.params.dtype),
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": sae.row_norm,
        "reshape_activations": "none",
        "metadata": meta,
    }
    if sae.kind == "topk":
        cfg["k"] = sae.k
        cfg["rescale_acts_by_decoder_norm"] = False
    return write_folder(folder, WEIGHTS, tensors, cfg)
