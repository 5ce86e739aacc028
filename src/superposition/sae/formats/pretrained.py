"""Pretrained dictionaries by name: SAELens's release registry, fetched through the Hugging
Face cache.

``SparseAutoencoder.from_pretrained("gpt2-small-res-jb", "blocks.8.hook_resid_pre")`` looks
the release up in SAELens's registry (``sae-lens`` installed: the ``interop`` extra), which
names the Hugging Face repository and the folder inside it; the folder's ``cfg.json`` and
weights come through ``huggingface_hub`` (its cache first: offline, a cached release loads),
and the release's ``norm_scaling_factor``, where the registry gives one, becomes
``input_scale``. Without SAELens, or for a name the registry does not hold, ``release`` is
read as a repository id and ``sae_id`` as the folder in it.

Releases stored in SAELens's own layout (the registry's ``conversion_func: null``) and in
sparsify's load; those that need one of SAELens's converters (Gemma Scope's ``params.npz``,
Llama Scope...) are refused in one line that names the converter.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from superposition.sae.model import SparseAutoencoder

__all__ = ["load_pretrained", "resolve_release"]


def resolve_release(release: str, sae_id: str) -> tuple[str, str, float | None]:
    """``(repo_id, folder, norm_scaling_factor)`` of a release's SAE from SAELens's registry;
    ``(release, sae_id, None)`` when SAELens is not installed or does not know ``release``.

    Raises:
        ValueError: the registry knows the release but not ``sae_id`` (the message lists a
            few it has), or the release needs a converter this library does not have.
    """
    try:
        from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory
    except ImportError:
        return release, sae_id, None
    lookup: Any = get_pretrained_saes_directory().get(release)
    if lookup is None:
        return release, sae_id, None
    if sae_id not in lookup.saes_map:
        some = list(lookup.saes_map)[:5]
        raise ValueError(
            f"SAELens's release {release!r} has no SAE {sae_id!r}; it has "
            f"{len(lookup.saes_map)}, e.g. {some}"
        )
    if lookup.conversion_func is not None:
        raise ValueError(
            f"SAELens's release {release!r} is stored in another layout (its converter "
            f"{lookup.conversion_func!r}); load it with SAELens, save it with its save_model, "
            "and open that folder with SparseAutoencoder.load"
        )
    factor = lookup.norm_scaling_factor.get(sae_id)
    return lookup.repo_id, lookup.saes_map[sae_id], factor


def load_pretrained(
    release: str,
    sae_id: str,
    device: torch.device | None,
    *,
    cache_dir: str | Path | None = None,
    local_files_only: bool = False,
) -> SparseAutoencoder:
    """The SAE ``sae_id`` of ``release`` (module docstring), downloaded or from the cache."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    from superposition.sae.formats import detect, load_folder
    from superposition.sae.formats.saelens import load_saelens

    repo_id, folder, factor = resolve_release(release, sae_id)
    where = folder.strip("/")

    def fetch(name: str) -> Path:
        return Path(
            hf_hub_download(
                repo_id,
                f"{where}/{name}" if where else name,
                cache_dir=cache_dir,
                local_files_only=local_files_only,
            )
        )

    try:
        cfg = fetch("cfg.json")
        for weights in ("sae_weights.safetensors", "sae.safetensors"):
            try:
                fetch(weights)
                break
            except EntryNotFoundError:
                continue
    except LocalEntryNotFoundError as err:
        raise FileNotFoundError(
            f"{repo_id}/{where} is not in the local Hugging Face cache and downloads are off "
            "(HF_HUB_OFFLINE=1 or local_files_only=True); fetch it once online, or download "
            "the folder and pass it to SparseAutoencoder.load"
        ) from err
    except EntryNotFoundError as err:
        raise FileNotFoundError(
            f"the Hugging Face repository {repo_id!r} has no {where}/cfg.json; check the "
            "release and SAE id"
        ) from err
    local = cfg.parent
    if detect(local) == "saelens":
        return load_saelens(local, device, norm_scaling_factor=factor)
    return load_folder(local, device)
