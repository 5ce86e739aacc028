"""SparseAutoencoder: construction, encode/decode semantics, evaluation, persistence, errors
(issue 11, result 4)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from superposition import SAEMetrics, SparseAutoencoder, SyntheticFeatures


def g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def truth() -> SyntheticFeatures:
    return SyntheticFeatures(32, 8, firing_probability=0.1, seed=0)


@pytest.mark.parametrize("kind", ["topk", "batchtopk", "jumprelu", "relu", "matryoshka"])
def test_parameters_have_the_documented_shapes_and_unit_decoder_rows(kind: str) -> None:
    kw = {"k": 3} if "topk" in kind or kind == "matryoshka" else {}
    sae = SparseAutoencoder(8, 32, kind=kind, seed=0, **kw)  # type: ignore[arg-type]
    assert sae.W_enc.shape == (8, 32)
    assert sae.b_enc.shape == (32,)
    assert sae.W_dec.shape == (32, 8)
    assert sae.b_dec.shape == (8,)
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(32))
    torch.testing.assert_close(sae.W_enc, sae.W_dec.T)  # tied initialisation


def test_topk_encode_keeps_the_k_largest_pre_activations() -> None:
    sae = SparseAutoencoder(8, 32, k=4, seed=0)
    with torch.no_grad():
        sae.b_enc.fill_(100.0)  # every pre-activation positive, so ReLU zeroes none
    x = torch.randn(16, 8, generator=g(1))
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    z = sae.encode(x)
    assert ((z != 0).sum(1) == 4).all()
    for row_z, row_pre in zip(z, pre, strict=True):
        kept = set(torch.nonzero(row_z).squeeze(1).tolist())
        assert kept == set(row_pre.argsort(descending=True)[:4].tolist())
        torch.testing.assert_close(row_z[list(kept)], row_pre[list(kept)])


def test_decode_is_affine_in_the_users_units() -> None:
    sae = SparseAutoencoder(8, 32, k=4, seed=0)
    with torch.no_grad():
        sae.scale.fill_(2.0)
        sae.b_dec.copy_(torch.arange(8.0))
    z = torch.zeros(1, 32)
    z[0, 5] = 3.0
    torch.testing.assert_close(sae.decode(z)[0], (3.0 * sae.W_dec[5] + torch.arange(8.0)) / 2)


def test_fit_normalises_inputs_to_mean_squared_norm_d_in() -> None:
    x = 7.0 * torch.randn(2048, 8, generator=g(0)) + 3.0
    sae = SparseAutoencoder(8, 16, k=2, seed=0).fit(x, samples=2048, batch_size=2048)
    assert float((x * sae.input_scale).square().sum(1).mean()) == pytest.approx(8.0, rel=1e-4)
    # data in other units (10x) trains the same SAE: same latents, reconstructions 10x
    sae10 = SparseAutoencoder(8, 16, k=2, seed=0).fit(10 * x, samples=2048, batch_size=2048)
    assert sae10.input_scale == pytest.approx(sae.input_scale / 10, rel=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(sae10.encode(10 * x), sae.encode(x), rtol=1e-3, atol=1e-3)
        torch.testing.assert_close(sae10(10 * x), 10 * sae(x), rtol=1e-3, atol=1e-2)


def test_batchtopk_inference_threshold_is_learned() -> None:
    truth = SyntheticFeatures(32, 8, firing_probability=0.1, seed=0)
    sae = SparseAutoencoder(8, 32, kind="batchtopk", k=3, seed=0)
    assert float(sae.threshold) == 0.0
    sae.fit(truth, samples=40_000, batch_size=512)
    assert float(sae.threshold) > 0
    x = truth.sample(4096, g(5))
    pre = sae.pre_activations(x)
    torch.testing.assert_close(sae.encode(x), pre * (pre > sae.threshold))


def test_evaluate_against_an_independent_computation(truth: SyntheticFeatures) -> None:
    sae = SparseAutoencoder(8, 32, k=3, seed=0).fit(truth, samples=20_000, batch_size=500)
    x = truth.sample(3000, g(3)).double()
    with torch.no_grad():
        z = sae.encode(x.float()).double()
        xhat = sae(x.float()).double()
    m = sae.evaluate(x.float(), batch_size=700)  # several chunks
    assert isinstance(m, SAEMetrics)
    assert m.samples == 3000
    assert m.l0 == pytest.approx(float((z != 0).sum()) / 3000)
    resid = float(((x - xhat) ** 2).sum())
    assert m.fvu == pytest.approx(resid / float(((x - x.mean(0)) ** 2).sum()), rel=1e-5)
    assert m.mse == pytest.approx(resid / x.numel(), rel=1e-5)
    assert m.dead_fraction == pytest.approx(float((z == 0).all(0).sum()) / 32)
    keep = x.norm(dim=1) > 0
    expected_shrink = float((xhat.norm(dim=1)[keep] / x.norm(dim=1)[keep]).mean())
    assert m.shrinkage == pytest.approx(expected_shrink, rel=1e-5)


def test_evaluate_fvu_is_centred() -> None:
    # data with a large mean: reconstructing the mean explains nothing (FVU 1), although it
    # is a tiny error relative to the norm of x (the uncentred formula would say ~0).
    sae = SparseAutoencoder(2, 2, kind="relu", seed=0)
    with torch.no_grad():
        sae.W_enc.zero_()
        sae.b_dec.copy_(torch.tensor([100.0, 100.0]))
    x = torch.tensor([[99.0, 100.0], [101.0, 100.0], [100.0, 99.0], [100.0, 101.0]])
    assert sae.evaluate(x).fvu == pytest.approx(1.0)


@pytest.mark.parametrize("rows", [1, 2, 7, 1000])
def test_evaluate_in_any_batches_gives_the_closed_form(rows: int) -> None:
    """Batch by batch (down to one row: the variance is merged across batches) equals FVU's
    closed form on the whole data, even with a mean far larger than the spread."""
    from superposition.metrics import fraction_of_variance_unexplained

    gen = torch.Generator().manual_seed(rows)
    x = torch.randn(40, 6, generator=gen, dtype=torch.float64) + 1e3
    sae = SparseAutoencoder(6, 12, k=2, seed=0, dtype=torch.float64)
    with torch.no_grad():
        xhat = sae(x)
    m = sae.evaluate(x, batch_size=rows)
    assert m.fvu == pytest.approx(fraction_of_variance_unexplained(x, xhat), rel=1e-9)


# ------------------------------------------------------------------ result 4: persistence


@pytest.mark.parametrize("kind", ["topk", "batchtopk", "jumprelu", "relu", "matryoshka"])
def test_save_load_round_trips_exactly(kind: str, tmp_path, truth: SyntheticFeatures) -> None:  # type: ignore[no-untyped-def]
    kw = {"k": 3} if "topk" in kind or kind == "matryoshka" else {}
    sae = SparseAutoencoder(8, 32, kind=kind, seed=0, **kw)  # type: ignore[arg-type]
    sae.fit(truth, samples=4096, batch_size=512)
    path = sae.save(tmp_path / "sae")
    assert path.name == "sae.safetensors"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sae.json", "sae.safetensors"]
    assert json.loads((tmp_path / "sae.json").read_text())["config"]["kind"] == kind
    loaded = SparseAutoencoder.load(tmp_path / "sae.safetensors")
    assert repr(loaded) == repr(sae)
    assert torch.equal(loaded.params, sae.params)
    assert torch.equal(loaded.scale, sae.scale)
    assert torch.equal(loaded.threshold, sae.threshold)
    x = truth.sample(256, g(1))
    assert torch.equal(loaded(x), sae(x))


def test_load_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(
        FileNotFoundError, match=r"cannot load a SparseAutoencoder .* does not exist"
    ):
        SparseAutoencoder.load(tmp_path / "missing")
    SparseAutoencoder(4, 8, k=2).save(tmp_path / "old")
    meta = json.loads((tmp_path / "old.json").read_text())
    meta["format_version"] = 99
    (tmp_path / "old.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"format_version 99, expected 1"):
        SparseAutoencoder.load(tmp_path / "old")


# ------------------------------------------------------------------ result 4: errors


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k": 33}, r"k must be at most d_sae=32 \(the number of latents\), got k=33"),
        ({}, r"kind='topk' needs k, the number of active latents"),
        ({"k": 0}, r"k must be a positive int, got 0"),
        ({"kind": "relu", "k": 3}, r"k only applies to kind='topk' or 'batchtopk' or 'matryoshka'"),
        ({"kind": "gelu"}, r"kind must be one of .*got 'gelu'"),
        ({"kind": "relu", "l1": -1.0}, r"l1 must be a non-negative finite float, got -1.0"),
        ({"k": 2, "l1": 1.0}, r"l1 only applies to kind='relu'"),
    ],
)
def test_bad_constructor_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SparseAutoencoder(8, 32, **kwargs)  # type: ignore[arg-type]


def _bad_sources() -> list[tuple[object, type[Exception], str]]:
    x = torch.randn(64, 8)
    nan = x.clone()
    nan[5, 3] = math.nan
    return [
        (
            torch.randn(64, 7),
            ValueError,
            r"source must have shape \[batch, d_in=8\], got shape \(64, 7\)",
        ),
        (nan, ValueError, r"source must be finite, got NaN or inf"),
        (x.long(), ValueError, r"source must be a floating-point tensor, got dtype torch.int64"),
        (
            SyntheticFeatures(16, 7, firing_probability=0.1),
            ValueError,
            r"source has d=7 but the SAE has d_in=8",
        ),
        ([torch.randn(64, 9)], ValueError, r"source batch must have shape \[batch, d_in=8\]"),
        ([], ValueError, r"source is an empty iterable"),
        ("data.npy", TypeError, r"source must be a tensor \[n, 8\], an iterable of"),
    ]


@pytest.mark.parametrize(("source", "error", "match"), _bad_sources())
def test_bad_sources_fail_before_any_training(
    source: object, error: type[Exception], match: str
) -> None:
    sae = SparseAutoencoder(8, 32, k=3, seed=0)
    before = sae.params.detach().clone()
    with pytest.raises(error, match=match):
        sae.fit(source, samples=1000, batch_size=64)  # type: ignore[arg-type]
    assert torch.equal(sae.params, before)
    assert sae.history is None
    assert sae.input_scale == 1.0


def test_nan_in_a_later_batch_leaves_the_model_untouched() -> None:
    good = [torch.randn(64, 8, generator=g(i)) for i in range(3)]
    bad = torch.randn(64, 8)
    bad[0, 0] = math.nan
    sae = SparseAutoencoder(8, 32, k=3, seed=0).fit(good[0], samples=64, batch_size=64)
    before = sae.params.detach().clone()
    with pytest.raises(ValueError, match="source batch must be finite"):
        sae.fit([*good, bad], samples=10_000, batch_size=64)
    assert torch.equal(sae.params, before)


def test_bad_fit_arguments() -> None:
    sae = SparseAutoencoder(8, 32, k=3, seed=0)
    with pytest.raises(ValueError, match=r"samples must be a positive int, got -5"):
        sae.fit(torch.randn(10, 8), samples=-5)
    with pytest.raises(ValueError, match=r"lr must be a positive finite float, got nan"):
        sae.fit(torch.randn(10, 8), samples=10, lr=math.nan)
    with pytest.raises(ValueError, match=r"x must have shape \[batch, d_in=8\], got shape \(8,\)"):
        sae.encode(torch.randn(8))
    with pytest.raises(ValueError, match=r"z must have shape \[batch, d_sae=32\]"):
        sae.decode(torch.randn(2, 8))


def test_iterable_source_is_rebatched_and_short_sources_warn() -> None:
    chunks = [torch.randn(n, 8, generator=g(n)) for n in (10, 100, 37, 300)]
    sae = SparseAutoencoder(8, 32, k=3, seed=0)
    with pytest.warns(RuntimeWarning, match=r"the source ran out after 447 of samples=1000"):
        sae.fit(chunks, samples=1000, batch_size=64)
    assert sae.history is not None
    assert sae.history.samples[-1] == 447
    assert sae.history.steps[-1] == 6  # 6 full batches of 64 and a last one of 63


# ------------------------------------------------------------------ devices and dtypes (issue 15)

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_an_explicit_cpu_device_changes_nothing(truth: SyntheticFeatures) -> None:
    plain = SparseAutoencoder(8, 32, k=3, seed=0).fit(truth, samples=4096, batch_size=512)
    for device in ("cpu", torch.device("cpu")):
        sae = SparseAutoencoder(8, 32, k=3, seed=0, device=device)
        sae.fit(truth, samples=4096, batch_size=512)
        assert sae.params.device == torch.device("cpu")
        assert torch.equal(sae.params, plain.params)
        assert repr(sae) == repr(plain)
    assert sae.to("cpu") is sae


def test_float64_parameters_start_from_the_same_draw_and_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    sae64 = SparseAutoencoder(8, 32, k=3, seed=0, dtype=torch.float64)
    sae32 = SparseAutoencoder(8, 32, k=3, seed=0)
    assert sae64.params.dtype == sae64.scale.dtype == sae64.threshold.dtype == torch.float64
    assert (
        repr(sae64)
        == "SparseAutoencoder(d_in=8, d_sae=32, kind='topk', k=3, seed=0, dtype=torch.float64)"
    )
    # The init is drawn in float64 either way: float32 holds its rounding.
    assert torch.equal(sae64.params.float(), sae32.params)
    x = torch.randn(64, 8, generator=g(0))
    sae64.fit(x, samples=256, batch_size=64)
    assert sae64.encode(x).dtype == torch.float64
    loaded = SparseAutoencoder.load(sae64.save(tmp_path / "sae"), device="cpu")
    assert loaded.params.dtype == torch.float64
    assert torch.equal(loaded.params, sae64.params)


def test_bad_device_and_dtype_arguments() -> None:
    with pytest.raises(
        ValueError,
        match=r"dtype must be torch.float32 or torch.float64, got "
        r"torch.bfloat16; .*fit\(autocast=torch.bfloat16\)",
    ):
        SparseAutoencoder(8, 32, k=3, dtype=torch.bfloat16)
    with pytest.raises(
        ValueError,
        match=r"device must be a torch.device or a string such as "
        r"'cpu' or 'cuda:0', got 'gpu'",
    ):
        SparseAutoencoder(8, 32, k=3, device="gpu")
    sae = SparseAutoencoder(8, 32, k=3, seed=0)
    before = sae.params.detach().clone()
    with pytest.raises(
        ValueError,
        match=r"autocast must be None, torch.bfloat16 or "
        r"torch.float16, got torch.float32",
    ):
        sae.fit(torch.randn(64, 8), samples=64, autocast=torch.float32)
    assert torch.equal(sae.params, before)
    assert sae.input_scale == 1.0


@cuda
def test_a_cuda_sae_takes_inputs_from_anywhere_and_saves_cpu_tensors(
    tmp_path,
    truth: SyntheticFeatures,  # type: ignore[no-untyped-def]
) -> None:
    cpu = SparseAutoencoder(8, 32, k=3, seed=0).fit(truth, samples=4096, batch_size=512)
    gpu = SparseAutoencoder(8, 32, k=3, seed=0).fit(truth, samples=4096, batch_size=512)
    gpu.to("cuda")
    assert repr(gpu).endswith("seed=0, device='cuda:0')")
    x = truth.sample(256, g(1))
    for inputs in (x, x.cuda()):
        z = gpu.encode(inputs)
        assert z.device.type == "cuda"
        torch.testing.assert_close(z.cpu(), cpu.encode(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(gpu(inputs).cpu(), cpu(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gpu.decode(z.cpu()).cpu(), cpu.decode(z.cpu()), atol=1e-5, rtol=1e-5)
    m_gpu, m_cpu = gpu.evaluate(x), cpu.evaluate(x)
    assert m_gpu.l0 == m_cpu.l0
    assert m_gpu.fvu == pytest.approx(m_cpu.fvu, abs=1e-5)
    loaded = SparseAutoencoder.load(gpu.save(tmp_path / "sae"))
    assert loaded.params.device.type == "cpu"
    assert torch.equal(loaded.params, gpu.params.cpu())
    back = SparseAutoencoder.load(tmp_path / "sae", device="cuda")
    assert back.params.device.type == back.scale.device.type == "cuda"
    assert torch.equal(back.params, gpu.params)
