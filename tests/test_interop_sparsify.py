"""sparsify checkpoints in and out, checked against sparsify's own ``SparseCoder``: one built
and saved by sparsify loads here and encodes and decodes as sparsify does; ours saved with
``format="sparsify"`` loads in sparsify and agrees. Float64 throughout (tolerance 1e-9)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from superposition import SparseAutoencoder

sparsify = pytest.importorskip("sparsify")
from sparsify import SaeConfig, SparseCoder  # noqa: E402

D_IN, D_SAE, K, TOL = 16, 64, 5, 1e-9


def _generator() -> torch.Generator:
    g = torch.Generator()
    print("seed", g.seed())
    return g


def _theirs(g: torch.Generator, **cfg: Any) -> Any:
    coder = SparseCoder(D_IN, SaeConfig(num_latents=D_SAE, k=K, **cfg), dtype=torch.float64)
    with torch.no_grad():
        for p in coder.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))
    return coder


def _dense(coder: Any, x: torch.Tensor) -> torch.Tensor:
    out = coder.encode(x)
    return torch.zeros(x.shape[0], D_SAE, dtype=x.dtype).scatter_(1, out.top_indices, out.top_acts)


def _agree(coder: Any, ours: SparseAutoencoder, x: torch.Tensor) -> None:
    with torch.no_grad():
        z = _dense(coder, x)
        assert (z != 0).any()
        torch.testing.assert_close(ours.encode(x), z, atol=TOL, rtol=TOL)
        top = coder.encode(x)
        torch.testing.assert_close(
            ours(x), coder.decode(top.top_acts, top.top_indices), atol=TOL, rtol=TOL
        )


def test_a_sparsify_coder_loads_and_agrees_both_ways(tmp_path: Path) -> None:
    g = _generator()
    coder = _theirs(g)
    coder.save_to_disk(tmp_path / "layers.3.mlp")
    ours = SparseAutoencoder.load(tmp_path / "layers.3.mlp")
    assert (ours.kind, ours.k, ours.layer, ours.site) == ("topk", K, 3, "mlp_out")
    x = torch.randn(64, D_IN, generator=g, dtype=torch.float64)
    _agree(coder, ours, x)

    ours.save(tmp_path / "h.1", format="sparsify")
    again = SparseCoder.load_from_disk(tmp_path / "h.1")
    _agree(again, ours, x)
    assert SparseAutoencoder.load(tmp_path / "h.1").site == "resid_post"


def test_ours_trained_then_opened_by_sparsify(tmp_path: Path) -> None:
    from superposition import SyntheticFeatures

    x = SyntheticFeatures(D_SAE, D_IN, firing_probability=0.1, seed=0).sample(512).double() * 4
    ours = SparseAutoencoder(D_IN, D_SAE, k=K, seed=0, dtype=torch.float64).fit(
        x, samples=2048, batch_size=256
    )
    assert ours.input_scale != 1.0
    ours.save(tmp_path / "sae", format="sparsify")
    _agree(SparseCoder.load_from_disk(tmp_path / "sae"), ours, x[:64])


def test_an_sae_with_a_skip_connection_is_a_skip_transcoder(tmp_path: Path) -> None:
    """sparsify's SAE with skip_connection=true reconstructs x̂ + x W_skipᵀ from x - b_dec: it
    loads as a skip Transcoder (d_out = d_in) that agrees with it, not as an SAE."""
    from superposition import Transcoder

    g = _generator()
    coder = _theirs(g, skip_connection=True)
    coder.save_to_disk(tmp_path / "skip")
    with pytest.raises(ValueError, match="a skip transcoder with d_out = d_in"):
        SparseAutoencoder.load(tmp_path / "skip")
    ours = Transcoder.load(tmp_path / "skip")
    assert (ours.skip, ours.d_out) == (True, D_IN)
    x = torch.randn(64, D_IN, generator=g, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(ours.encode(x), _dense(coder, x), atol=TOL, rtol=TOL)
        torch.testing.assert_close(ours(x), coder(x).sae_out, atol=TOL, rtol=TOL)


def test_other_kinds_cannot_be_written_as_sparsify(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="TopK coders only"):
        SparseAutoencoder(4, 8, kind="relu").save(tmp_path / "x", format="sparsify")
    assert not (tmp_path / "x").exists()


def test_a_config_that_disagrees_with_the_weights_is_refused(tmp_path: Path) -> None:
    _theirs(_generator()).save_to_disk(tmp_path / "c")
    cfg = json.loads((tmp_path / "c/cfg.json").read_text())
    cfg["num_latents"] = D_SAE * 2
    (tmp_path / "c/cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="disagree"):
        SparseAutoencoder.load(tmp_path / "c")


@pytest.mark.parametrize("skip", [False, True])
def test_sparsify_transcoders_load_save_and_agree(tmp_path: Path, skip: bool) -> None:
    """sparsify's transcoder (transcode=true, optionally a skip connection) loads here as a
    TopK Transcoder that predicts as sparsify does, and ours goes back and agrees."""
    from superposition import Transcoder

    g = _generator()
    coder = _theirs(g, transcode=True, skip_connection=skip)
    coder.save_to_disk(tmp_path / "layers.2.mlp")
    with pytest.raises(ValueError, match=r"load it with superposition\.Transcoder\.load"):
        SparseAutoencoder.load(tmp_path / "layers.2.mlp")
    ours = Transcoder.load(tmp_path / "layers.2.mlp")
    assert (ours.kind, ours.k, ours.skip, ours.layer, ours.d_out) == ("topk", K, skip, 2, D_IN)
    x = torch.randn(64, D_IN, generator=g, dtype=torch.float64)

    def agree(theirs: Any, tc: Transcoder) -> None:
        with torch.no_grad():
            z = _dense(theirs, x)
            assert (z != 0).any()
            torch.testing.assert_close(tc.encode(x), z, atol=TOL, rtol=TOL)
            torch.testing.assert_close(tc(x), theirs(x, x).sae_out, atol=TOL, rtol=TOL)

    agree(coder, ours)
    with torch.no_grad():  # scales that are not 1, folded into what sparsify reads
        ours.scale.fill_(1.7)
        ours.output_scale.fill_(0.4)
    ours.save(tmp_path / "back", format="sparsify")
    agree(SparseCoder.load_from_disk(tmp_path / "back"), ours)
    with pytest.raises(ValueError, match="sparsify's transcoders are TopK"):
        Transcoder(D_IN, D_IN + 1, D_SAE, k=K).save(tmp_path / "wide", format="sparsify")
    _theirs(g).save_to_disk(tmp_path / "sae")
    with pytest.raises(ValueError, match=r"load it with SparseAutoencoder\.load"):
        Transcoder.load(tmp_path / "sae")
