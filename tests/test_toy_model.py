"""ToyModel: the four variants, closed-form gradients vs autograd, AdamW, persistence, errors."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from superposition import SparseFeatureDataset, ToyModel, metrics
from superposition.toy.train import TrainConfig, gradients

ACTIVATIONS = ["linear", "relu", "relu_hidden", "abs"]


def _batch(act: str, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g, dtype=torch.float64)
    x = x * (torch.rand(shape, generator=g) < 0.4)
    return 2 * x - 1 * (x != 0) if act == "abs" else x


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_forward_matches_the_written_formula(act: str) -> None:
    model = ToyModel(6, 3, n_instances=2, activation=act, seed=0)  # type: ignore[arg-type]
    x = _batch(act, (5, 2, 6)).float()
    W, b, W_out = model.W.detach(), model.b.detach(), model.W_out.detach()
    for i in range(2):
        h = x[:, i] @ W[i].T
        if act in ("relu_hidden", "abs"):
            h = torch.relu(h)
        out = h @ W_out[i] + b[i]
        want = out if act == "linear" else torch.relu(out)
        torch.testing.assert_close(model(x)[:, i].detach(), want)
    assert torch.equal(model.W_out, model.W) == (act != "abs")


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_closed_form_gradient_equals_autograd_float64(act: str) -> None:
    model = ToyModel(7, 3, n_instances=3, activation=act, seed=1).double()  # type: ignore[arg-type]
    with torch.no_grad():
        model.b.normal_(0, 0.3)  # some outputs below zero, so the ReLU masks matter
    x = _batch(act, (64, 3, 7))
    imp = torch.rand(3, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    model.loss(x, imp).backward()
    assert model.params.grad is not None
    torch.testing.assert_close(gradients(model, x, imp), model.params.grad, rtol=1e-12, atol=1e-14)


def test_medium_matmul_precision_keeps_the_gradient_to_16_bits() -> None:
    """Under ``torch.set_float32_matmul_precision("medium")`` the closed-form gradient stays
    within what one bfloat16 pass allows (operands rounded to 8 bits: unit round-off 2^-9 each,
    so ~2^-8 per product; 2.4e-3 measured on a random 256x200x20 product, 4.5e-3 on this
    gradient where oneDNN takes a single bfloat16 pass on AMX CPUs; 1.8e-7 where it splits
    operands into bfloat16 parts on avx512_bf16 CPUs without AMX), and ``fit`` leaves the
    setting as it was. A bound of 2^-6 fails for a product in float16-or-worse or garbage."""
    data = SparseFeatureDataset(200, [1.0, 0.1], importance=0.9, seed=0)
    model = ToyModel(200, 20, n_instances=2, seed=0)
    x = data.sample(256, generator=torch.Generator().manual_seed(1))
    exact = gradients(model.double(), x.double()).float()
    model.float()
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")
    try:
        medium = gradients(model, x)
        model.fit(data, steps=60, progress=False)  # the background sampler's path too
        assert torch.get_float32_matmul_precision() == "medium"
    finally:
        torch.set_float32_matmul_precision(before)
    assert float((medium - exact).norm() / exact.norm()) < 2**-6
    assert model.history is not None
    assert bool(torch.isfinite(model.history.final).all())


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_closed_form_gradient_passes_gradcheck(act: str) -> None:
    """The closed-form gradient against finite differences, through torch.autograd.gradcheck."""
    model = ToyModel(4, 2, n_instances=2, activation=act, seed=3).double()  # type: ignore[arg-type]
    with torch.no_grad():
        model.b.normal_(0, 0.3)
    x = _batch(act, (16, 2, 4))

    class ClosedFormLoss(torch.autograd.Function):
        @staticmethod
        def forward(ctx: torch.autograd.function.FunctionCtx, p: torch.Tensor) -> torch.Tensor:
            model.params.data = p.detach().clone()
            with torch.no_grad():
                return model.loss(x)

        @staticmethod
        def backward(ctx: torch.autograd.function.FunctionCtx, g: torch.Tensor) -> torch.Tensor:
            return g * gradients(model, x)

    p0 = model.params.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(ClosedFormLoss.apply, (p0,))


def _recording_batches(monkeypatch: pytest.MonkeyPatch) -> list[torch.Tensor]:
    """Record every batch ``fit`` computes gradients on, ``[batch, instances, features]``."""
    import superposition.toy.train as train_module

    seen: list[torch.Tensor] = []
    gradients_ = train_module._Buffers.gradients

    def record(self: train_module._Buffers, x: torch.Tensor) -> torch.Tensor:
        seen.append(x.transpose(0, 1).clone())
        return gradients_(self, x)

    monkeypatch.setattr(train_module._Buffers, "gradients", record)
    return seen


@pytest.mark.parametrize("n_features", [6, 24])
def test_fit_equals_autograd_plus_torch_adamw_float64(
    monkeypatch: pytest.MonkeyPatch, n_features: int
) -> None:
    """Same batches, same init: fit's fused AdamW == torch.optim.AdamW on autograd gradients.

    Few features train in the feature-major layout, many in the batch-major one: both.
    """
    n = n_features
    data = SparseFeatureDataset(n, [1.0, 0.2], importance=0.8)
    model = ToyModel(n, 2, n_instances=2, seed=0).double()
    ref = ToyModel(n, 2, n_instances=2, seed=0).double()
    batches = _recording_batches(monkeypatch)
    model.fit(
        data,
        steps=60,
        batch_size=32,
        generator=torch.Generator().manual_seed(5),
        schedule="cosine",
        warmup_steps=3,
        progress=False,
    )
    assert len(batches) == 60
    assert len({float(b.sum()) for b in batches}) == 60  # a fresh batch every step
    opt = torch.optim.AdamW(ref.parameters(), lr=1e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (0.5 * (1 + math.cos(math.pi * s / 60))) * min(1.0, (s + 1) / 3)
    )
    for x in batches:
        opt.zero_grad()
        ref.loss(x, data.importance.double()).backward()
        opt.step()
        sched.step()
    torch.testing.assert_close(model.params.detach(), ref.params.detach(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_logged_losses_are_the_models_losses_on_that_steps_batch(
    monkeypatch: pytest.MonkeyPatch, act: str
) -> None:
    """The history's loss at the last step equals ``model.losses`` on that step's batch with
    the weights before that step's update (recomputed here by replaying the run to there)."""
    dist = "signed" if act == "abs" else "uniform"
    data = SparseFeatureDataset(24, [0.5, 0.1], importance=0.9, distribution=dist, seed=2)
    batches = _recording_batches(monkeypatch)
    model = ToyModel(24, 4, n_instances=2, activation=act, seed=0).fit(  # type: ignore[arg-type]
        data, steps=12, batch_size=64, log_every=5, progress=False
    )
    assert model.history is not None
    assert model.history.steps == [0, 5, 10, 11]
    before = ToyModel(24, 4, n_instances=2, activation=act, seed=0)  # type: ignore[arg-type]
    before.fit(data, steps=11, batch_size=64, progress=False)  # the weights before step 11
    want = before.losses(batches[11], data.importance).detach()
    torch.testing.assert_close(model.history.final, want, rtol=1e-5, atol=1e-7)


def test_same_seed_gives_bit_identical_weights() -> None:
    data = SparseFeatureDataset(8, [0.5, 0.05], seed=4)
    a = ToyModel(8, 3, n_instances=2, seed=7).fit(data, steps=200, progress=False)
    b = ToyModel(8, 3, n_instances=2, seed=7).fit(data, steps=200, progress=False)
    c = ToyModel(8, 3, n_instances=2, seed=8).fit(data, steps=200, progress=False)
    assert torch.equal(a.W, b.W)
    assert not torch.equal(a.W, c.W)


def test_instance_init_does_not_depend_on_number_of_instances() -> None:
    alone = ToyModel(20, 5, n_instances=1, seed=0).W
    crowd = ToyModel(20, 5, n_instances=100, seed=0).W
    assert torch.equal(alone[0], crowd[0])
    std = float(crowd.detach().std())  # Xavier-normal of one [5, 20] matrix: sqrt(2 / 25)
    assert abs(std - math.sqrt(2 / 25)) < 0.01
    assert torch.equal(ToyModel(20, 5, n_instances=3, seed=0).b, torch.zeros(3, 20))


def test_fit_returns_self_and_logs_history() -> None:
    data = SparseFeatureDataset(5, [1.0, 0.1], seed=0)
    model = ToyModel(5, 2, n_instances=2, seed=0)
    assert model.fit(data, steps=50, log_every=10, progress=False) is model
    assert model.history is not None
    assert model.history.steps == [0, 10, 20, 30, 40, 49]
    assert model.history.losses.shape == (6, 2)
    assert bool((model.history.final < model.history.losses[0]).all())


def test_training_reduces_the_loss() -> None:
    data = SparseFeatureDataset(10, 0.1, importance=0.9, seed=0)
    model = ToyModel(10, 3, seed=0)
    x = data.sample(20_000, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = float(model.loss(x, data.importance))
        model.fit(data, steps=500, progress=False)
        after = float(model.loss(x, data.importance))
    assert after < 0.8 * before, (before, after)


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_save_load_round_trip_is_exact(tmp_path: Path, act: str) -> None:
    data = SparseFeatureDataset(
        5, 0.3, n_instances=2, seed=0, distribution="signed" if act == "abs" else "uniform"
    )
    model = ToyModel(5, 2, n_instances=2, activation=act, seed=0)  # type: ignore[arg-type]
    model.fit(data, steps=10, progress=False)
    path = model.save(tmp_path / "toy")
    assert path.suffix == ".safetensors"
    assert path.with_suffix(".json").exists()
    loaded = ToyModel.load(tmp_path / "toy.safetensors")
    assert loaded.config() == model.config()
    assert torch.equal(loaded.params, model.params)
    x = data.sample(4)
    assert torch.equal(loaded(x), model(x))


def test_load_never_unpickles(tmp_path: Path) -> None:
    path = ToyModel(3, 2, seed=0).save(tmp_path / "m")
    assert b"pickle" not in path.read_bytes()[:200]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ToyModel.load(tmp_path / "nothing")


def test_views_call_metrics() -> None:
    model = ToyModel(6, 2, n_instances=3, seed=0)
    W = model.W.detach()
    assert torch.equal(model.feature_norms(), metrics.feature_norms(W))
    assert torch.equal(model.interference(), metrics.interference(W))
    assert torch.equal(model.feature_dimensionality(), metrics.feature_dimensionality(W))
    assert torch.equal(model.dimensions_per_feature(), metrics.dimensions_per_feature(W))


def test_repr_shows_what_was_passed() -> None:
    assert repr(ToyModel(20, 5)) == "ToyModel(n_features=20, n_hidden=5)"
    assert (
        repr(ToyModel(4, 2, n_instances=3, activation="linear", seed=1))
        == "ToyModel(n_features=4, n_hidden=2, n_instances=3, activation='linear', seed=1)"
    )


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((0, 2), {}, "n_features must be a positive int, got 0"),
        ((5, 2.5), {}, "n_hidden must be a positive int, got 2.5"),
        ((5, 2), {"n_instances": -1}, "n_instances must be a positive int, got -1"),
        ((5, 2), {"activation": "gelu"}, "activation must be one of .* got 'gelu'"),
        ((5, 2), {"seed": "x"}, "seed must be an int or None, got 'x'"),
    ],
)
def test_bad_model_arguments(
    args: tuple[object, ...], kwargs: dict[str, object], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        ToyModel(*args, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"steps": 0}, "steps must be a positive int, got 0"),
        ({"batch_size": 1.5}, "batch_size must be a positive int, got 1.5"),
        ({"lr": float("nan")}, "lr must be a positive finite float, got nan"),
        ({"weight_decay": -0.1}, "weight_decay must be a non-negative float, got -0.1"),
        ({"betas": (0.9, 1.0)}, r"betas must be two floats in \[0, 1\), got \(0.9, 1.0\)"),
        ({"schedule": "step"}, "schedule must be one of .* got 'step'"),
        ({"log_every": 0}, "log_every must be a positive int or None, got 0"),
        ({"warmup_steps": -1}, "warmup_steps must be a non-negative int, got -1"),
    ],
)
def test_bad_fit_arguments_raise_before_training(kwargs: dict[str, object], match: str) -> None:
    model = ToyModel(4, 2, seed=0)
    before = model.params.detach().clone()
    with pytest.raises(ValueError, match=match):
        model.fit(SparseFeatureDataset(4, 0.5), progress=False, **kwargs)  # type: ignore[arg-type]
    assert torch.equal(model.params, before)
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)  # type: ignore[arg-type]


def test_fit_rejects_mismatched_data() -> None:
    model = ToyModel(4, 2, n_instances=2, seed=0)
    with pytest.raises(
        ValueError, match="data has n_instances=1, n_features=4 but the model has n_instances=2"
    ):
        model.fit(SparseFeatureDataset(4, 0.5), progress=False)
    with pytest.raises(ValueError, match="activation='abs' expects distribution='signed'"):
        ToyModel(4, 2, activation="abs").fit(SparseFeatureDataset(4, 0.5), progress=False)
    with pytest.raises(ValueError, match=r"x must have shape \[batch, 2, 4\] .* got \(3, 4\)"):
        model(torch.rand(3, 4))


def test_import_does_not_pull_in_matplotlib_or_transformers() -> None:
    code = (
        "import sys, superposition; "
        "bad = [m for m in ('matplotlib', 'transformers') if m in sys.modules]; "
        "assert not bad, bad"
    )
    src = str(Path(__file__).resolve().parents[1] / "src")
    subprocess.run([sys.executable, "-c", code], check=True, env={"PYTHONPATH": src})


@pytest.mark.parametrize("n_features", [5, 20])
def test_background_sampling_and_threads_give_the_same_model(
    monkeypatch: pytest.MonkeyPatch, n_features: int
) -> None:
    """Drawing batches on a second thread, in chunks, or training the instances in two groups
    on two threads, changes nothing but the speed."""
    import superposition.toy.train as train_module

    data = SparseFeatureDataset(n_features, [1.0, 0.3, 0.02], importance=0.9, seed=3)
    # 64 x n features per instance and batch: chunks of 2 batches, the last one partial
    monkeypatch.setattr(train_module, "_CHUNK_ELEMENTS", 64 * n_features * 5 // 2)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    runs = []
    try:
        for background, split in ((1, 10**9), (10**9, 10**9), (10**9, 1)):
            monkeypatch.setattr(train_module, "_BACKGROUND_MIN_STEPS", background)
            monkeypatch.setattr(train_module, "_SPLIT_MIN_ELEMENTS", split)
            runs.append(
                ToyModel(n_features, 3, n_instances=3, seed=1).fit(
                    data, steps=61, batch_size=64, log_every=20, progress=False
                )
            )
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    a = runs[0]
    assert a.history is not None
    for b in runs[1:]:
        assert torch.equal(a.params, b.params)
        assert b.history is not None
        assert torch.equal(a.history.losses, b.history.losses)


def test_an_instance_trains_the_same_alone_or_in_a_sweep() -> None:
    """Each instance draws its batches from its own stream: the first k instances of a sweep
    train exactly as a k-instance model (its init already does not depend on the count)."""
    probs = [0.7, 0.2, 0.05, 0.5]
    sweep = ToyModel(20, 5, n_instances=4, seed=0).fit(
        SparseFeatureDataset(20, probs, seed=1), steps=40, batch_size=128, progress=False
    )
    pair = ToyModel(20, 5, n_instances=2, seed=0).fit(
        SparseFeatureDataset(20, probs[:2], seed=1), steps=40, batch_size=128, progress=False
    )
    assert torch.equal(sweep.params[:2], pair.params)
    assert not torch.equal(sweep.params[2:], sweep.params[:2])


@pytest.mark.parametrize("dist", ["uniform", "signed"])
def test_training_batches_have_the_datasets_distribution(
    monkeypatch: pytest.MonkeyPatch, dist: str
) -> None:
    """fit's batches (per-instance bit streams) against the closed forms: P(x != 0) = p, and
    active values uniform on [0, 1) (or [-1, 1)), by a binomial bound and Kolmogorov-Smirnov."""
    probs = [1.0, 0.3, 0.01]
    data = SparseFeatureDataset(40, probs, distribution=dist, seed=None)  # type: ignore[arg-type]
    batches = _recording_batches(monkeypatch)
    act = "abs" if dist == "signed" else "relu"
    ToyModel(40, 2, n_instances=3, activation=act).fit(  # type: ignore[arg-type]
        data, steps=25, batch_size=1000, progress=False
    )
    x = torch.cat(batches).double()  # [25000, 3, 40]
    lo = -1.0 if dist == "signed" else 0.0
    for i, p in enumerate(probs):
        xi = x[:, i].flatten()
        active = xi[xi != 0]
        n = xi.numel()
        assert abs(active.numel() - n * p) <= 5 * math.sqrt(n * p * (1 - p)) + 1
        assert float(active.min()) >= lo
        assert float(active.max()) < 1.0
        u = ((active - lo) / (1.0 - lo)).sort().values
        m = u.numel()
        ecdf_hi = torch.arange(1, m + 1, dtype=torch.float64) / m
        ks = float(torch.maximum(ecdf_hi - u, u - (ecdf_hi - 1 / m)).max())
        assert ks < 1.95 / math.sqrt(m), (i, ks)  # 0.1% level


@pytest.mark.parametrize("mode", ["background", "threads"])
def test_an_error_while_sampling_reaches_fit(monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    """The sampler thread, or the second group's thread, fails: fit raises that error (the
    other thread stops at its next step) and restores the thread count."""
    import superposition.toy.train as train_module

    data = SparseFeatureDataset(5, [0.5, 0.2], seed=0)
    fill = data._fill_from_streams_

    def broken(out: torch.Tensor, streams: object, first: int = 0, *rest: Any) -> torch.Tensor:
        if mode == "background" or first > 0:
            raise RuntimeError("sampler broke")
        return fill(out, streams, first, *rest)  # type: ignore[arg-type]

    monkeypatch.setattr(train_module, "_BACKGROUND_MIN_STEPS", 1)
    if mode == "threads":
        monkeypatch.setattr(train_module, "_SPLIT_MIN_ELEMENTS", 1)
    monkeypatch.setattr(data, "_fill_from_streams_", broken)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(RuntimeError, match="sampler broke"):
            ToyModel(5, 2, n_instances=2, seed=0).fit(data, steps=10**6, progress=False)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


# ------------------------------------------------------------------ devices (issue 15)


def test_an_explicit_cpu_device_changes_nothing(tmp_path: Path) -> None:
    data = SparseFeatureDataset(5, n_instances=2, feature_probability=0.1, seed=0)
    plain = ToyModel(5, 2, n_instances=2, seed=0).fit(data, steps=30, progress=False)
    cpu = ToyModel(5, 2, n_instances=2, seed=0, device="cpu").fit(data, steps=30, progress=False)
    assert torch.equal(cpu.params, plain.params)
    loaded = ToyModel.load(cpu.save(tmp_path / "toy"), device=torch.device("cpu"))
    assert torch.equal(loaded.params, cpu.params)
    with pytest.raises(ValueError, match=r"device must be a torch.device or a string such as "):
        ToyModel(5, 2, device="gpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("act", ["relu", "abs"])
def test_a_cuda_toy_model_trains_there_and_agrees_with_the_cpu(act: str, tmp_path: Path) -> None:
    dist = "signed" if act == "abs" else "uniform"
    data = SparseFeatureDataset(
        6, n_instances=3, feature_probability=0.2, distribution=dist, seed=0
    )
    cpu = ToyModel(6, 3, n_instances=3, activation=act, seed=0)  # type: ignore[arg-type]
    gpu = ToyModel(6, 3, n_instances=3, activation=act, seed=0, device="cuda")  # type: ignore[arg-type]
    assert torch.equal(gpu.params.cpu(), cpu.params)
    x = data.sample(64, torch.Generator().manual_seed(1))
    torch.testing.assert_close(gradients(gpu, x).cpu(), gradients(cpu, x), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(gpu.losses(x).cpu(), cpu.losses(x), atol=1e-6, rtol=1e-5)
    gpu.fit(data, steps=2000, progress=False)
    cpu.fit(data, steps=2000, progress=False)
    assert gpu.params.device.type == "cuda"
    test = data.sample(4096, torch.Generator().manual_seed(2))
    # Different random batches (drawn on each device): the same loss, not the same weights
    # (on the CPU, three generators gave losses within 0.5% of each other).
    torch.testing.assert_close(gpu.losses(test).cpu(), cpu.losses(test), atol=1e-3, rtol=0.05)
    loaded = ToyModel.load(gpu.save(tmp_path / "toy"))
    assert torch.equal(loaded.params, gpu.params.cpu())
