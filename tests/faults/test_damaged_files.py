"""Damaged files: every format the library reads, cut short, emptied or with a broken JSON
sidecar, fails in one ValueError that names the file and says what to do, before any work
(issue 26, first cases). Each file is a real one written by the library, then damaged."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import superposition as sp


def _sae(d: Path) -> tuple[Path, Callable[[], Any]]:
    path = sp.SparseAutoencoder(4, 8, k=2, seed=0).save(d / "sae")
    return path, lambda: sp.SparseAutoencoder.load(path)


def _toy(d: Path) -> tuple[Path, Callable[[], Any]]:
    path = sp.ToyModel(5, 2, seed=0).save(d / "toy")
    return path, lambda: sp.ToyModel.load(path)


def _activations(d: Path) -> tuple[Path, Callable[[], Any]]:
    acts = sp.Activations(
        torch.randn(3, 4),
        tokens=["a", "b", "c"],
        token_ids=torch.arange(3),
        text_index=torch.zeros(3, dtype=torch.long),
        position=torch.arange(3),
        layer=0,
        module_name="m",
        model_name="x",
    )
    path = acts.save(d / "acts")
    return path, lambda: sp.Activations.load(path)


def _stats(d: Path) -> tuple[Path, Callable[[], Any]]:
    path = sp.StreamingStatistics().update(torch.randn(5, 3)).save(d / "stats")
    return path, lambda: sp.StreamingStatistics.load(path)


def _saelens(d: Path) -> tuple[Path, Callable[[], Any]]:
    sp.SparseAutoencoder(4, 8, k=2, seed=0).save(d / "sl", format="saelens")
    return d / "sl" / "sae_weights.safetensors", lambda: sp.SparseAutoencoder.load(d / "sl")


def _sparsify(d: Path) -> tuple[Path, Callable[[], Any]]:
    sp.SparseAutoencoder(4, 8, k=2, seed=0).save(d / "sf", format="sparsify")
    return d / "sf" / "sae.safetensors", lambda: sp.SparseAutoencoder.load(d / "sf")


def _unit_records(d: Path) -> tuple[Path, Callable[[], Any]]:
    from superposition.units import UnitStatistics

    path = UnitStatistics(3, top_k=2, samples=1).save(d / "units")
    return path, lambda: UnitStatistics.load(path)


FORMATS = {
    "SparseAutoencoder": _sae,
    "ToyModel": _toy,
    "Activations": _activations,
    "StreamingStatistics": _stats,
    "SAELens folder": _saelens,
    "sparsify folder": _sparsify,
    "UnitStatistics": _unit_records,
}


def _cut(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _garbage(path: Path) -> None:
    path.write_bytes(b"\x00\xff" * 64)


@pytest.mark.parametrize("damage", [_cut, _empty, _garbage], ids=["cut", "empty", "garbage"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_a_damaged_weights_file_names_itself(
    tmp_path: Path, fmt: str, damage: Callable[[Path], None]
) -> None:
    weights, load = FORMATS[fmt](tmp_path)
    load()  # intact, it loads
    damage(weights)
    with pytest.raises(ValueError, match=re.escape(str(weights))) as err:
        load()
    assert "damaged" in str(err.value) or "not a safetensors file" in str(err.value)


def _flip(path: Path) -> None:
    """One bit of the last byte flipped: tensor data (it ends the file), the header intact, so
    the file still parses and only a checksum can tell."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x10
    path.write_bytes(bytes(data))


# The library's own formats carry a checksum of their tensors; SAELens's and sparsify's do not.
OWN = ["SparseAutoencoder", "ToyModel", "Activations", "StreamingStatistics", "UnitStatistics"]


@pytest.mark.parametrize("fmt", OWN)
def test_a_flipped_bit_is_caught_by_the_checksum(tmp_path: Path, fmt: str) -> None:
    weights, load = FORMATS[fmt](tmp_path)
    load()
    _flip(weights)
    with pytest.raises(ValueError, match=re.escape(str(weights))) as err:
        load()
    assert "do not match the checksum written with them" in str(err.value)


def _other_version(weights: Path, fmt: str) -> None:
    """The file as a future (or past) version of the library would write it: the version or
    format its reader checks, changed, everything else intact."""
    import json

    if fmt == "StreamingStatistics":  # the format lives in the safetensors header
        from safetensors import safe_open
        from safetensors.torch import save_file

        with safe_open(str(weights), framework="pt") as f:
            header = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        header["format"] = "superposition.StreamingStatistics/99"
        save_file(tensors, str(weights), metadata=header)
        return
    sidecar = weights.with_name(weights.name.removesuffix(".safetensors") + ".json")
    meta = json.loads(sidecar.read_text())
    key = "format" if fmt == "Activations" else "format_version"
    meta[key] = "superposition.Activations/99" if fmt == "Activations" else 99
    sidecar.write_text(json.dumps(meta))


@pytest.mark.parametrize("fmt", OWN)
def test_a_file_of_another_version_says_so(tmp_path: Path, fmt: str) -> None:
    weights, load = FORMATS[fmt](tmp_path)
    load()
    _other_version(weights, fmt)
    with pytest.raises(ValueError, match=r"99") as err:
        load()
    text = str(err.value)
    assert str(weights.stem) in text
    assert any(w in text for w in ("expected", "not a saved"))


def test_a_flipped_bit_in_a_checkpoint_stops_the_resume(tmp_path: Path) -> None:
    x = torch.rand(256, 4)
    ckpt = tmp_path / "ckpt"
    sp.SparseAutoencoder(4, 8, k=2, seed=0).fit(
        x, samples=256, batch_size=32, checkpoint=ckpt, checkpoint_every=4, progress=False
    )
    _flip(ckpt.with_name("ckpt.safetensors"))
    with pytest.raises(ValueError, match="do not match the checksum") as err:
        sp.SparseAutoencoder(4, 8, k=2, seed=0).fit(
            x, samples=256, batch_size=32, resume=ckpt, progress=False
        )
    assert "start afresh without resume=" in str(err.value)


@pytest.mark.parametrize(
    "fmt", ["SparseAutoencoder", "ToyModel", "Activations", "SAELens folder", "UnitStatistics"]
)
def test_a_damaged_json_sidecar_names_itself(tmp_path: Path, fmt: str) -> None:
    weights, load = FORMATS[fmt](tmp_path)
    sidecar = (
        weights.parent / "cfg.json"
        if fmt.endswith("folder")
        else weights.with_name(weights.name.removesuffix(".safetensors") + ".json")
    )
    assert sidecar.is_file()
    sidecar.write_text(sidecar.read_text()[:10])
    with pytest.raises(ValueError, match=re.escape(str(sidecar))):
        load()


def _replaced(path: Path) -> None:
    """A valid safetensors file, but one row where the manifest lists more."""
    from safetensors.torch import save_file

    save_file({"values": torch.zeros(1, 48)}, str(path))


@pytest.mark.parametrize(
    "damage",
    [_cut, _empty, _garbage, Path.unlink, _replaced, _flip],
    ids=["cut", "empty", "garbage", "deleted", "replaced", "bit-flip"],
)
def test_a_damaged_activation_cache_shard_names_itself(
    tmp_path: Path, tokenizer: Any, damage: Callable[[Path], None]
) -> None:
    """A complete cache whose shard was later damaged or deleted: reading it fails naming
    the shard and saying to delete the cache folder, not with safetensors' own error."""
    from conftest import tiny_model

    model, _ = tiny_model("bert")
    probe = sp.ActivationProbe(model, layer=0, tokenizer=tokenizer, progress=False)
    texts = [f"the cat sat on mat number {i} while it rained" for i in range(12)]
    cache = tmp_path / "cache"

    def store() -> sp.ActivationStore:
        return sp.ActivationStore(probe, texts, batch_size=8, chunk_texts=4, cache_dir=cache)

    first = list(store())  # one epoch writes the cache
    assert store().cached
    assert first
    shard = sorted(cache.glob("*.safetensors"))[1]
    damage(shard)
    with pytest.raises(ValueError, match=re.escape(str(shard))) as err:
        list(store())
    assert "delete the cache folder" in str(err.value)
