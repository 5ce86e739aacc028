"""SAELens transcoder folders (``cfg.json`` + ``sae_weights.safetensors``), read and written.

SAELens's transcoders (``sae_lens.saes.transcoder``): ``pre = x W_enc + b_enc`` (no ``b_dec``
subtracted: ``apply_b_dec_to_input`` is refused), latents ``ReLU(pre)`` (``transcoder``,
``skip_transcoder``) or ``ReLU(pre) · [pre > threshold]`` (``jumprelu_transcoder``,
``jumprelu_skip_transcoder``), ``ŷ = z W_dec + b_dec`` plus ``x W_skipᵀ`` for the skip ones.
They become a :class:`~superposition.Transcoder` of kind ``"relu"`` or ``"jumprelu"`` with
both scales 1 and the weights as stored (decoder rows need not be unit); a threshold at or
below 0 lets every positive pre-activation through, in both libraries. ``hook_name`` in the
metadata (the input's, such as ``blocks.0.ln2.hook_normalized``) gives :attr:`layer`.

Written: ``"relu"`` as ``transcoder`` / ``skip_transcoder``, ``"jumprelu"`` and
``"batchtopk"`` (at inference one threshold for every latent) as ``jumprelu_transcoder`` /
``jumprelu_skip_transcoder``, with both scales folded into the weights
(``W_enc · s_in``, ``W_dec / s_out``, ``b_dec / s_out``, ``W_skip · s_in / s_out``). SAELens
has no TopK transcoder, so a ``"topk"`` one is refused. This library's config rides along in
``metadata.superposition``, so the folder loads back as the same kind.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch

from superposition.sae.formats.convert import (
    build_sae,
    check_dtype,
    check_shapes,
    config_int,
    dtype_name,
    plain_weights,
    read_tensors,
    write_folder,
)

if TYPE_CHECKING:
    from superposition.sae.transcoder import Transcoder

__all__ = ["TRANSCODER_ARCHITECTURES", "load_saelens_transcoder", "save_saelens_transcoder"]

WEIGHTS = "sae_weights.safetensors"
TRANSCODER_ARCHITECTURES = (
    "transcoder",
    "skip_transcoder",
    "jumprelu_transcoder",
    "jumprelu_skip_transcoder",
)


def load_saelens_transcoder(
    folder: Path, cfg: dict[str, Any], device: torch.device | None
) -> Transcoder:
    """The transcoder in an SAELens folder whose config ``cfg`` has one of
    :data:`TRANSCODER_ARCHITECTURES` (module docstring for the conventions)."""

    cfg_path = folder / "cfg.json"
    arch = cfg["architecture"]
    if cfg.get("apply_b_dec_to_input", False):
        raise ValueError(
            f"{str(cfg_path)!r} has apply_b_dec_to_input=True, which SAELens refuses for "
            "transcoders (b_dec lives in the output's space)"
        )
    norm = cfg.get("normalize_activations", "none")
    if norm not in ("none", None):
        raise ValueError(
            f"{str(cfg_path)!r} has normalize_activations={norm!r}; SAELens applies it to a "
            "transcoder's input but not to its output, which this library cannot hold: "
            "export the transcoder with normalize_activations='none'"
        )
    d_in, d_sae = config_int(cfg, "d_in", cfg_path), config_int(cfg, "d_sae", cfg_path)
    d_out = config_int(cfg, "d_out", cfg_path)
    skip, jump = "skip" in arch, arch.startswith("jumprelu")
    weights_path = folder / WEIGHTS
    tensors = read_tensors(weights_path)
    check_dtype(tensors, weights_path)
    shapes: dict[str, tuple[int, ...]] = {
        "W_enc": (d_in, d_sae),
        "W_dec": (d_sae, d_out),
        "b_enc": (d_sae,),
        "b_dec": (d_out,),
    }
    if skip:
        shapes["W_skip"] = (d_out, d_in)
    if jump:
        shapes["threshold"] = (d_sae,)
    check_shapes(tensors, shapes, weights_path)
    wide = any(tensors[name].dtype == torch.float64 for name in shapes)
    dtype = torch.float64 if wide else torch.float32
    t = {name: tensors[name].to(dtype) for name in shapes}

    raw_meta = cfg.get("metadata")
    meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
    ours = meta.get("superposition")
    kind, settings, threshold = ("jumprelu" if jump else "relu"), {}, 0.0
    if isinstance(ours, dict) and ours.get("kind") == "batchtopk" and jump:
        th = t["threshold"]
        if bool((th == th[0]).all()):  # written from a BatchTopK transcoder of this library
            kind, threshold = "batchtopk", float(th[0])
            settings = {"k": ours.get("k")}
    if isinstance(ours, dict) and ours.get("kind") == kind:
        settings.update({k: ours[k] for k in ("l1", "l0", "k") if ours.get(k) is not None})
    w: dict[str, torch.Tensor] = {
        n: t[n] for n in ("W_enc", "W_dec", "b_enc", "b_dec", "W_skip") if n in t
    }
    if kind == "jumprelu":
        w["log_threshold"] = t["threshold"].clamp_min(0.0).log()
    layer = None
    hook = meta.get("hook_name") or cfg.get("hook_name")
    if isinstance(hook, str):
        from superposition.probe.sites import parse_hook_name

        with contextlib.suppress(ValueError):  # a hook this library does not read: no layer
            layer = parse_hook_name(hook)[0]
    tc = build_sae(
        kind, settings, w, threshold=threshold, layer=layer, device=device, transcoder=True
    )
    if isinstance(ours, dict) and isinstance(ours.get("seed"), int):
        tc.seed = ours["seed"]
    return cast("Transcoder", tc)


def save_saelens_transcoder(tc: Transcoder, folder: Path) -> Path:
    """Write ``tc`` as an SAELens transcoder folder (module docstring)."""
    if tc.kind not in ("relu", "jumprelu", "batchtopk"):
        raise ValueError(
            f"SAELens has no transcoder of kind={tc.kind!r} (it has ReLU and JumpReLU ones); "
            "save it with format='native'"
        )
    tensors = plain_weights(tc)
    if tc.kind == "jumprelu":
        tensors["threshold"] = tc.log_threshold.detach().exp().cpu()
    elif tc.kind == "batchtopk":
        tensors["threshold"] = torch.full_like(tensors["b_enc"], max(float(tc.threshold), 0.0))
    arch = ("jumprelu_" if tc.kind != "relu" else "") + ("skip_" if tc.skip else "") + "transcoder"
    meta: dict[str, Any] = {"sae_lens_version": "6.0.0", "superposition": tc.config()}
    if tc.layer is not None:
        from superposition.probe.sites import hook_name

        meta["hook_name"] = hook_name(tc.layer, "mlp_in")
        meta["hook_name_out"] = hook_name(tc.layer, "mlp_out")
    cfg: dict[str, Any] = {
        "architecture": arch,
        "d_in": tc.d_in,
        "d_sae": tc.d_sae,
        "d_out": tc.d_out,
        "dtype": dtype_name(tc.params.dtype),
        "device": "cpu",
        "apply_b_dec_to_input": False,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": meta,
    }
    return write_folder(folder, WEIGHTS, tensors, cfg)
