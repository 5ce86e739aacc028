"""SAELens folders in and out, checked against SAELens's own classes: each architecture built
by SAELens with random weights, non-trivial biases and thresholds, saved with its
``save_model`` and loaded here, must encode and decode as SAELens does; and an SAE of this
library saved with ``format="saelens"`` must load in SAELens and agree again.

Everything runs in float64, so the two libraries' different orders of float operations differ
by ~1e-15 and cannot move a TopK choice or a threshold decision; the tolerance is 1e-9.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from superposition import SparseAutoencoder

sae_lens = pytest.importorskip("sae_lens")
from sae_lens import SAE  # noqa: E402
from sae_lens.saes import (  # noqa: E402
    BatchTopKTrainingSAE,
    BatchTopKTrainingSAEConfig,
    JumpReLUSAE,
    JumpReLUSAEConfig,
    MatryoshkaBatchTopKTrainingSAE,
    MatryoshkaBatchTopKTrainingSAEConfig,
    StandardSAE,
    StandardSAEConfig,
    TopKSAE,
    TopKSAEConfig,
)

D_IN, D_SAE, TOL = 16, 48, 1e-9


def _randomise(sae: Any, g: torch.Generator) -> None:
    """Random weights with decoder rows of varied norms, biases and (where there is one)
    thresholds that cut inside the range of the pre-activations."""
    with torch.no_grad():
        for _name, p in sae.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))
        sae.W_dec.mul_(torch.rand(D_SAE, 1, generator=g, dtype=torch.float64) * 2 + 0.2)
        if hasattr(sae, "threshold"):
            sae.threshold.copy_(torch.rand(D_SAE, generator=g, dtype=torch.float64) * 3 - 0.5)
        if hasattr(sae, "topk_threshold"):
            sae.topk_threshold.fill_(1.5)


def _generator() -> torch.Generator:
    """A fresh random stream each run (printed, so that a failure can be replayed)."""
    g = torch.Generator()
    print("seed", g.seed())
    return g


def _inputs(g: torch.Generator) -> torch.Tensor:
    return torch.randn(64, D_IN, generator=g, dtype=torch.float64) * 2 + 0.5


def _agree(theirs: Any, ours: SparseAutoencoder, x: torch.Tensor) -> None:
    with torch.no_grad():
        z_theirs, z_ours = theirs.encode(x), ours.encode(x)
        assert (z_ours != 0).any(), "the test inputs must activate some latents"
        torch.testing.assert_close(z_ours, z_theirs, atol=TOL, rtol=TOL)
        torch.testing.assert_close(ours.decode(z_ours), theirs.decode(z_theirs), atol=TOL, rtol=TOL)
        torch.testing.assert_close(ours(x), theirs(x), atol=TOL, rtol=TOL)


INFERENCE = [
    ("standard", StandardSAE, StandardSAEConfig, {}),
    ("topk", TopKSAE, TopKSAEConfig, {"k": 5}),
    ("topk-rescaled", TopKSAE, TopKSAEConfig, {"k": 5, "rescale_acts_by_decoder_norm": True}),
    ("jumprelu", JumpReLUSAE, JumpReLUSAEConfig, {}),
]


@pytest.mark.parametrize("apply_b_dec", [True, False])
@pytest.mark.parametrize(
    ("label", "cls", "cfg_cls", "extra"), INFERENCE, ids=[c[0] for c in INFERENCE]
)
def test_saelens_folders_load_and_agree(
    tmp_path: Path, label: str, cls: Any, cfg_cls: Any, extra: dict[str, Any], apply_b_dec: bool
) -> None:
    g = _generator()
    cfg = cfg_cls(
        d_in=D_IN, d_sae=D_SAE, dtype="float64", apply_b_dec_to_input=apply_b_dec, **extra
    )
    cfg.metadata.hook_name = "blocks.2.hook_mlp_out"
    theirs = cls(cfg)
    _randomise(theirs, g)
    theirs.save_model(tmp_path / "sl")
    ours = SparseAutoencoder.load(tmp_path / "sl")
    assert (ours.layer, ours.site) == (2, "mlp_out")
    assert ours.params.dtype == torch.float64
    _agree(theirs, ours, _inputs(g))

    # ... and back out: SAELens opens ours and agrees with it.
    ours.save(tmp_path / "back", format="saelens")
    again = SAE.load_from_disk(tmp_path / "back", dtype="float64")
    _agree(again, ours, _inputs(g))
    assert again.cfg.metadata.hook_name == "blocks.2.hook_mlp_out"
    # Loaded here once more: the same kind and the same function.
    twice = SparseAutoencoder.load(tmp_path / "back")
    assert twice.kind == ours.kind
    _agree(again, twice, _inputs(g))


@pytest.mark.parametrize("norm", ["layer_norm", "constant_norm_rescale"])
@pytest.mark.parametrize(
    ("label", "cls", "cfg_cls", "extra"), INFERENCE, ids=[c[0] for c in INFERENCE]
)
def test_saelens_per_row_normalisations_load_and_agree(
    tmp_path: Path, label: str, cls: Any, cfg_cls: Any, extra: dict[str, Any], norm: str
) -> None:
    """SAELens's normalize_activations that rescale each row by its own statistics: latents
    and reconstructions equal SAELens's, out to SAELens and back, and in this library's own
    format; decode needs the input, and such an SAE is not trained here."""
    g = _generator()
    cfg = cfg_cls(d_in=D_IN, d_sae=D_SAE, dtype="float64", normalize_activations=norm, **extra)
    cfg.metadata.hook_name = "blocks.1.hook_resid_post"
    theirs = cls(cfg)
    _randomise(theirs, g)
    theirs.save_model(tmp_path / "sl")
    ours = SparseAutoencoder.load(tmp_path / "sl")
    assert ours.row_norm == norm
    x = _inputs(g)
    with torch.no_grad():
        z_theirs = theirs.encode(x)
        out_theirs = theirs.decode(z_theirs)  # SAELens keeps x's statistics from encode
        z_ours = ours.encode(x)
        assert (z_ours != 0).any(), "the test inputs must activate some latents"
        torch.testing.assert_close(z_ours, z_theirs, atol=TOL, rtol=TOL)
        torch.testing.assert_close(ours.decode(z_ours, x), out_theirs, atol=TOL, rtol=TOL)
        torch.testing.assert_close(ours(x), theirs(x), atol=TOL, rtol=TOL)
        # the normalisation matters: without it the latents differ
        plain = SparseAutoencoder.load(tmp_path / "sl")
        plain.row_norm = "none"
        assert not torch.allclose(plain.encode(x), z_ours, atol=1e-3)
    with pytest.raises(ValueError, match=r"decode\(z, x\)"):
        ours.decode(z_ours)

    ours.save(tmp_path / "back", format="saelens")
    again = SAE.load_from_disk(tmp_path / "back", dtype="float64")
    assert again.cfg.normalize_activations == norm
    x = _inputs(g)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), again(x), atol=TOL, rtol=TOL)
    ours.save(tmp_path / "native")
    native = SparseAutoencoder.load(tmp_path / "native")
    assert native.row_norm == norm
    torch.testing.assert_close(native(x), ours(x), atol=0.0, rtol=0.0)
    with pytest.raises(ValueError, match=f"normalize_activations='{norm}'"):
        ours.fit(x, samples=64, batch_size=32)
    if label.startswith("topk"):
        with pytest.raises(ValueError, match="no per-row normalisation"):
            ours.save(tmp_path / "sp", format="sparsify")


TRAINING = [
    ("batchtopk", BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig, {"k": 4}),
    (
        "matryoshka_batchtopk",
        MatryoshkaBatchTopKTrainingSAE,
        MatryoshkaBatchTopKTrainingSAEConfig,
        {"k": 4, "matryoshka_widths": [12, D_SAE]},
    ),
]


@pytest.mark.parametrize(
    ("label", "cls", "cfg_cls", "extra"), TRAINING, ids=[c[0] for c in TRAINING]
)
def test_batchtopk_training_folders_load_as_their_inference_sae(
    tmp_path: Path, label: str, cls: Any, cfg_cls: Any, extra: dict[str, Any]
) -> None:
    """A BatchTopK training folder is the JumpReLU SAE SAELens exports for inference."""
    g = _generator()
    theirs = cls(cfg_cls(d_in=D_IN, d_sae=D_SAE, dtype="float64", **extra))
    _randomise(theirs, g)
    theirs.save_model(tmp_path / "train")
    theirs.save_inference_model(tmp_path / "inference")
    inference = SAE.load_from_disk(tmp_path / "inference", dtype="float64")
    assert inference.cfg.architecture() == "jumprelu"
    ours = SparseAutoencoder.load(tmp_path / "train")
    assert ours.kind == label.removesuffix("_batchtopk")  # matryoshka_batchtopk: "matryoshka"
    assert ours.k == 4
    if "matryoshka_widths" in extra:
        assert list(ours.rule.matryoshka_widths) == extra["matryoshka_widths"]  # type: ignore[attr-defined]
    _agree(inference, ours, _inputs(g))


def test_a_norm_scaling_factor_becomes_the_input_scale(tmp_path: Path) -> None:
    """``expected_average_only_in`` with the release's factor s: SAELens folds s into the
    weights (``fold_activation_norm_scaling_factor``); ours keeps it as input_scale. Same
    function."""
    g = _generator()
    theirs = StandardSAE(
        StandardSAEConfig(
            d_in=D_IN,
            d_sae=D_SAE,
            dtype="float64",
            normalize_activations="expected_average_only_in",
        )
    )
    _randomise(theirs, g)
    theirs.save_model(tmp_path / "sl")
    cfg = json.loads((tmp_path / "sl/cfg.json").read_text())
    cfg["norm_scaling_factor"] = 2.5
    (tmp_path / "sl/cfg.json").write_text(json.dumps(cfg))
    ours = SparseAutoencoder.load(tmp_path / "sl")
    assert ours.input_scale == 2.5
    theirs.fold_activation_norm_scaling_factor(2.5)
    x = _inputs(g)
    with torch.no_grad():
        torch.testing.assert_close(ours.encode(x), theirs.encode(x), atol=TOL, rtol=TOL)
        torch.testing.assert_close(ours(x), theirs(x), atol=TOL, rtol=TOL)


@pytest.mark.parametrize(
    ("normalization", "warning"),
    [("expected_average_only_in", "no norm_scaling_factor"), ("covariance_whitening", "whitened")],
)
def test_normalised_folders_without_their_statistics_load_as_saelens_loads_them(
    tmp_path: Path, normalization: str, warning: str
) -> None:
    """No norm scaling factor, or a whitening saved before SAELens folded it into the weights:
    SAELens's own load_from_disk applies nothing, and neither does this library (it warns)."""
    g = _generator()
    cfg = TopKSAEConfig(d_in=D_IN, d_sae=D_SAE, k=3, dtype="float64")
    cfg.normalize_activations = normalization  # type: ignore[assignment]
    theirs = TopKSAE(cfg)
    _randomise(theirs, g)
    theirs.save_model(tmp_path / "sl")
    with pytest.warns(UserWarning, match=warning):
        ours = SparseAutoencoder.load(tmp_path / "sl")
    _agree(SAE.load_from_disk(tmp_path / "sl", dtype="float64"), ours, _inputs(g))


def test_a_float32_folder_loads_in_float32(tmp_path: Path) -> None:
    g = _generator()
    theirs = StandardSAE(StandardSAEConfig(d_in=D_IN, d_sae=D_SAE))
    with torch.no_grad():
        for p in theirs.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    theirs.save_model(tmp_path / "sl")
    ours = SparseAutoencoder.load(tmp_path / "sl")
    assert ours.params.dtype == torch.float32
    x = torch.randn(32, D_IN, generator=g)
    with torch.no_grad():
        torch.testing.assert_close(ours.encode(x), theirs.encode(x), atol=1e-5, rtol=1e-5)


def test_ours_trained_then_opened_by_saelens(tmp_path: Path) -> None:
    """An SAE trained here (input_scale ≠ 1, each kind) opened by SAELens gives our latents."""
    from superposition import SyntheticFeatures

    truth = SyntheticFeatures(32, 16, firing_probability=0.1, seed=0)
    x = truth.sample(256).double() * 3
    for kind, opts in [
        ("topk", {"k": 3}),
        ("batchtopk", {"k": 3}),
        ("relu", {}),
        ("jumprelu", {}),
        ("matryoshka", {"k": 3, "matryoshka_widths": [8]}),
    ]:
        ours = SparseAutoencoder(16, 32, kind=kind, seed=1, dtype=torch.float64, **opts)  # type: ignore[arg-type]
        ours.fit(x, samples=2048, batch_size=256)
        assert ours.input_scale != 1.0
        ours.save(tmp_path / kind, format="saelens")
        theirs = SAE.load_from_disk(tmp_path / kind, dtype="float64")
        _agree(theirs, ours, x[:64])


# ---------------------------------------------------------------------------- bad folders


def _saved(tmp_path: Path) -> Path:
    theirs = TopKSAE(TopKSAEConfig(d_in=D_IN, d_sae=D_SAE, k=3))
    theirs.save_model(tmp_path / "sl")
    return tmp_path / "sl"


def test_a_folder_without_cfg_is_refused(tmp_path: Path) -> None:
    folder = _saved(tmp_path)
    (folder / "cfg.json").unlink()
    with pytest.raises(FileNotFoundError, match="not an SAELens folder"):
        SparseAutoencoder.load(folder)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"d_in": D_IN + 1}, "config and the weights disagree"),
        ({"architecture": "gated"}, "architecture 'gated'"),
        ({"normalize_activations": "whiten"}, "normalize_activations 'whiten'"),
        ({"k": 0}, "k as a positive integer"),
        ({"reshape_activations": "hook_z"}, "hook_z"),
    ],
)
def test_bad_configs_are_refused_in_one_line(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    folder = _saved(tmp_path)
    cfg = json.loads((folder / "cfg.json").read_text())
    cfg.update(change)
    (folder / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=message):
        SparseAutoencoder.load(folder)


def test_a_damaged_weights_file_names_the_file(tmp_path: Path) -> None:
    folder = _saved(tmp_path)
    weights = folder / "sae_weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:40])
    with pytest.raises(ValueError, match=r"sae_weights\.safetensors"):
        SparseAutoencoder.load(folder)


def test_an_unknown_hook_name_loads_without_a_site(tmp_path: Path) -> None:
    folder = _saved(tmp_path)
    cfg = json.loads((folder / "cfg.json").read_text())
    cfg["metadata"]["hook_name"] = "blocks.0.attn.hook_z"
    (folder / "cfg.json").write_text(json.dumps(cfg))
    with pytest.warns(UserWarning, match="not a site"):
        sae = SparseAutoencoder.load(folder)
    assert sae.layer is None
    assert sae.site is None


# ---------------------------------------------------------------------------- the command line


def test_explore_takes_an_saelens_folder_of_the_neurons(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from superposition.cli import main

    cfg = TopKSAEConfig(d_in=1536, d_sae=32, k=4)
    cfg.metadata.hook_name = "blocks.0.mlp.hook_post"
    TopKSAE(cfg).save_model(tmp_path / "sl")
    corpus = tmp_path / "texts.txt"
    corpus.write_text("The cat sat on the mat.\nA dog barked at the owl.\n")
    page = tmp_path / "p.html"
    argv = ["explore", "--sae", str(tmp_path / "sl"), "--corpus", str(corpus)]
    argv += ["--coherence-units", "0", "--no-progress", "--out", str(page)]
    assert main(argv) == 0, capsys.readouterr().err
    assert '"label":"latent","n":32' in page.read_text("utf-8")


def test_units_and_explore_read_an_saelens_sae_of_another_site_at_its_own_site(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], minilm: tuple[Any, Any]
) -> None:
    """An SAE of the MLP's output (as SAELens releases of hook_mlp_out or hook_resid_post
    are) is read where it was trained, in the same pass as the neurons: each latent's peak
    equals its encoding of that site's activations computed by hand."""
    from superposition import ActivationProbe
    from superposition.cli import main
    from superposition.units import UnitStatistics

    cfg = TopKSAEConfig(d_in=384, d_sae=32, k=4)
    cfg.metadata.hook_name = "blocks.0.hook_mlp_out"
    sl = TopKSAE(cfg)
    with torch.no_grad():
        sl.b_enc.normal_(0.0, 0.1)  # latents that do fire, and not all alike
    sl.save_model(tmp_path / "sl")
    texts = ["The cat sat on the mat.", "A dog barked at the owl.", "Rain fell all night."]
    corpus = tmp_path / "texts.txt"
    corpus.write_text("\n".join(texts) + "\n")
    argv = ["units", "--sae", str(tmp_path / "sl"), "--corpus", str(corpus)]
    argv += ["--coherence-units", "0", "--no-progress", "--out", str(tmp_path / "u")]
    assert main(argv) == 0, capsys.readouterr().err
    got = UnitStatistics.load(tmp_path / "u" / "sae_latents.units")
    model, tokenizer = minilm
    out = ActivationProbe(model, layer=0, site="mlp_out", tokenizer=tokenizer).run(texts)
    x = out.values.double()
    w = {k: v.detach().double() for k, v in sl.state_dict().items()}
    pre = torch.relu((x - w["b_dec"]) @ w["W_enc"] + w["b_enc"])
    top = pre.topk(4, dim=1)
    by_hand = torch.zeros_like(pre).scatter(1, top.indices, top.values).amax(0)
    assert got.n_units == 32
    assert got.count == out.n_tokens
    torch.testing.assert_close(got.max_activation.double(), by_hand, rtol=1e-4, atol=1e-5)
    assert (by_hand > 0).sum() >= 8  # the check compares latents that fired

    page = tmp_path / "p.html"
    argv = ["explore", "--sae", str(tmp_path / "sl"), "--corpus", str(corpus)]
    argv += ["--coherence-units", "0", "--no-progress", "--out", str(page)]
    assert main(argv) == 0, capsys.readouterr().err
    assert '"label":"latent","n":32' in page.read_text("utf-8")

    # Another layer than the SAE's: one line says which, before the model runs.
    argv[-1] = str(tmp_path / "q.html")
    assert main([*argv, "--layer", "1"]) == 2
    assert "reads layer 0 but --layer is 1; pass --layer 0" in capsys.readouterr().err
    assert not (tmp_path / "q.html").exists()


# ---------------------------------------------------------------------------- pretrained releases


def _cached(cache: Path, repo_id: str, folder: str, sae: Any) -> None:
    """Lay ``sae`` out as the Hugging Face cache holds a downloaded repository."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    sae.save_model(repo / "snapshots" / commit / folder)


def test_a_release_resolves_through_saelens_registry_and_the_hub_cache(tmp_path: Path) -> None:
    """Nothing downloads: the folder sits where huggingface_hub caches it, and the release's
    norm scaling factor from SAELens's registry becomes the input scale."""
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    release, sae_id = "gpt2-small-mlp-tm", "blocks.0.hook_mlp_out"
    lookup = get_pretrained_saes_directory()[release]
    g = _generator()
    cfg = StandardSAEConfig(
        d_in=D_IN, d_sae=D_SAE, dtype="float64", normalize_activations="expected_average_only_in"
    )
    cfg.metadata.hook_name = sae_id
    theirs = StandardSAE(cfg)
    _randomise(theirs, g)
    _cached(tmp_path, lookup.repo_id, lookup.saes_map[sae_id], theirs)
    ours = SparseAutoencoder.from_pretrained(
        release, sae_id, cache_dir=tmp_path, local_files_only=True
    )
    assert (ours.layer, ours.site) == (0, "mlp_out")
    factor = lookup.norm_scaling_factor[sae_id]
    assert ours.input_scale == factor
    theirs.fold_activation_norm_scaling_factor(factor)  # what SAELens's from_pretrained does
    x = _inputs(g)
    with torch.no_grad():
        torch.testing.assert_close(ours.encode(x), theirs.encode(x), atol=TOL, rtol=TOL)
        torch.testing.assert_close(ours(x), theirs(x), atol=TOL, rtol=TOL)


def test_a_repository_and_folder_load_without_the_registry(tmp_path: Path) -> None:
    theirs = TopKSAE(TopKSAEConfig(d_in=D_IN, d_sae=D_SAE, k=3, dtype="float64"))
    _randomise(theirs, _generator())
    _cached(tmp_path, "someone/my-saes", "layer_3", theirs)
    ours = SparseAutoencoder.from_pretrained(
        "someone/my-saes", "layer_3", cache_dir=tmp_path, local_files_only=True
    )
    _agree(theirs, ours, _inputs(_generator()))


def test_pretrained_names_that_cannot_load_fail_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not in the local Hugging Face cache"):
        SparseAutoencoder.from_pretrained(
            "gpt2-small-res-jb",
            "blocks.0.hook_resid_pre",
            cache_dir=tmp_path,
            local_files_only=True,
        )
    with pytest.raises(ValueError, match=r"has no SAE 'blocks\.99"):
        SparseAutoencoder.from_pretrained("gpt2-small-res-jb", "blocks.99.hook_resid_pre")
    with pytest.raises(ValueError, match="converter 'gemma_2'"):
        SparseAutoencoder.from_pretrained(
            "gemma-scope-2b-pt-res", "layer_0/width_16k/average_l0_46"
        )


# --------------------------------------------------------------------------- transcoders

D_OUT = 12
TRANSCODERS = ["Transcoder", "SkipTranscoder", "JumpReLUTranscoder", "JumpReLUSkipTranscoder"]


def _tc_agree(theirs: Any, ours: Any, x: torch.Tensor) -> None:
    with torch.no_grad():
        z_theirs, z_ours = theirs.encode(x), ours.encode(x)
        assert (z_ours != 0).any(), "the test inputs must activate some latents"
        torch.testing.assert_close(z_ours, z_theirs, atol=TOL, rtol=TOL)
        torch.testing.assert_close(ours(x), theirs(x), atol=TOL, rtol=TOL)


@pytest.mark.parametrize("name", TRANSCODERS)
def test_saelens_transcoders_load_save_and_agree(tmp_path: Path, name: str) -> None:
    """SAELens's own transcoder classes, saved by SAELens, load here as a Transcoder that
    encodes and predicts as theirs does; ours saved for SAELens loads there and agrees."""
    from sae_lens.saes import transcoder as T

    from superposition import Transcoder

    g = _generator()
    cfg = getattr(T, f"{name}Config")(
        d_in=D_IN, d_sae=D_SAE, d_out=D_OUT, dtype="float64", apply_b_dec_to_input=False
    )
    cfg.metadata.hook_name = "blocks.1.ln2.hook_normalized"
    theirs = getattr(T, name)(cfg)
    with torch.no_grad():
        for _, p in theirs.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5)
        if hasattr(theirs, "threshold"):
            theirs.threshold.copy_(torch.rand(D_SAE, generator=g, dtype=torch.float64) * 3 - 0.5)
    theirs.save_model(tmp_path / "sl")
    ours = Transcoder.load(tmp_path / "sl")
    assert (ours.d_in, ours.d_out, ours.skip, ours.layer) == (D_IN, D_OUT, "Skip" in name, 1)
    assert ours.kind == ("jumprelu" if "JumpReLU" in name else "relu")
    _tc_agree(theirs, ours, _inputs(g))
    with pytest.raises(ValueError, match=r"load it with superposition\.Transcoder\.load"):
        SparseAutoencoder.load(tmp_path / "sl")

    # ours, trained-like (scales that are not 1), out to SAELens and back
    with torch.no_grad():
        ours.scale.fill_(1.7)
        ours.output_scale.fill_(0.4)
    ours.save(tmp_path / "back", format="saelens")
    again = SAE.load_from_disk(tmp_path / "back", dtype="float64")
    assert type(again).__name__ == name
    _tc_agree(again, ours, _inputs(g))
    twice = Transcoder.load(tmp_path / "back")
    assert (twice.kind, twice.skip) == (ours.kind, ours.skip)
    _tc_agree(again, twice, _inputs(g))


def test_our_batchtopk_transcoder_opens_in_saelens_and_topk_is_refused(tmp_path: Path) -> None:
    from superposition import SyntheticMLP, Transcoder

    mlp = SyntheticMLP(48, D_IN, D_OUT, firing_probability=0.1, skip=0.5, noise=0.2, seed=0)
    ours = Transcoder(D_IN, D_OUT, D_SAE, kind="batchtopk", k=4, skip=True, seed=0)
    ours.fit(mlp, samples=8192, batch_size=256)
    ours = ours.double()
    ours.save(tmp_path / "btk", format="saelens")
    theirs = SAE.load_from_disk(tmp_path / "btk", dtype="float64")
    assert type(theirs).__name__ == "JumpReLUSkipTranscoder"
    x = mlp.sample(64, torch.Generator().manual_seed(3))[0].double()
    _tc_agree(theirs, ours, x)
    back = Transcoder.load(tmp_path / "btk")
    assert (back.kind, back.k) == ("batchtopk", 4)
    topk = Transcoder(D_IN, D_OUT, D_SAE, k=4)
    with pytest.raises(ValueError, match="SAELens has no transcoder of kind='topk'"):
        topk.save(tmp_path / "topk", format="saelens")
    assert not (tmp_path / "topk").exists()
    SparseAutoencoder(D_IN, D_SAE, k=4).save(tmp_path / "sae", format="saelens")
    with pytest.raises(ValueError, match="holds no SAELens transcoder"):
        Transcoder.load(tmp_path / "sae")
