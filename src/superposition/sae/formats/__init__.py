"""Dictionaries in other libraries' formats: SAELens and sparsify folders, read and written.

:meth:`SparseAutoencoder.load <superposition.SparseAutoencoder.load>` opens a folder in either
format (it looks at the files inside) and :meth:`SparseAutoencoder.save
<superposition.SparseAutoencoder.save>` writes one with ``format="saelens"`` or
``format="sparsify"``; this package does the work. Nothing here imports SAELens or sparsify:
the files are plain JSON and safetensors, read and written by their documented layout, and
the tests check the result against those libraries' own classes.

Each format's conventions are converted exactly (up to float round-off) into this library's
parameterisation ``pre = (x · input_scale - b_dec) W_enc + b_enc``, ``x̂ = (z W_dec + b_dec) /
input_scale``:

* SAELens ``apply_b_dec_to_input=False`` moves ``b_dec W_enc`` into ``b_enc``;
  ``rescale_acts_by_decoder_norm=True`` folds the decoder norms into the encoder (the latents
  are unchanged); a ``norm_scaling_factor`` becomes ``input_scale``.
* sparsify's ``encoder.weight [d_sae, d_in]`` is ``W_encᵀ``.

Where a dictionary was read from (``blocks.3.hook_mlp_out`` in SAELens's metadata, a
sparsify hook point such as ``layers.3.mlp``) becomes the SAE's :attr:`layer` and
:attr:`site`, and is written back out.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch

if TYPE_CHECKING:
    from superposition.sae.model import SparseAutoencoder

__all__ = ["FORMATS", "Format", "detect", "load_folder", "save_folder"]

Format = Literal["native", "saelens", "sparsify"]
FORMATS: tuple[Format, ...] = ("native", "saelens", "sparsify")

_FILES = {
    "saelens": ("cfg.json", "sae_weights.safetensors"),
    "sparsify": ("cfg.json", "sae.safetensors"),
}


def detect(folder: Path) -> Literal["saelens", "sparsify"]:
    """Which format the folder holds, from its files; a FileNotFoundError saying what a
    folder of each format holds when it is neither."""
    for name, files in _FILES.items():
        if all((folder / f).is_file() for f in files):
            return name  # type: ignore[return-value]
    present = sorted(p.name for p in folder.iterdir())[:10]
    raise FileNotFoundError(
        f"cannot load an SAE from the folder {str(folder)!r}: it holds {present}, not an SAELens "
        "folder (cfg.json + sae_weights.safetensors) nor a sparsify one (cfg.json + "
        "sae.safetensors); for a file saved by this library pass its path, e.g. 'run/sae'"
    )


def load_folder(folder: Path, device: torch.device | None) -> SparseAutoencoder:
    """The SAE in an SAELens or sparsify folder (see :func:`detect`)."""
    if detect(folder) == "saelens":
        from superposition.sae.formats.saelens import load_saelens

        return load_saelens(folder, device)
    from superposition.sae.formats.sparsify import load_sparsify

    return load_sparsify(folder, device)


def save_folder(sae: SparseAutoencoder, folder: Path, format: str) -> Path:
    """Write ``sae`` as a ``format`` folder (created if missing); returns the weights' path."""
    if format == "saelens":
        from superposition.sae.formats.saelens import save_saelens

        return save_saelens(sae, folder)
    if format == "sparsify":
        from superposition.sae.formats.sparsify import save_sparsify

        return save_sparsify(sae, folder)
    raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
